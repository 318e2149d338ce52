"""CompressAI checkpoints import and reproduce CompressAI's own outputs.

The fixtures (tests/fixtures/import/, made by scripts/make_import_fixtures.py with compressai 1.2.8
installed) hold tiny random-weight CompressAI models (N = 4, M = 6, non-integer z medians), a fixed
input and CompressAI's eval-mode forward outputs."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from licodec.codec import Codec, decode
from licodec.entropy.gaussian import gaussian_likelihood
from licodec.importers import CheckpointError
from licodec.importers.compressai import import_compressai, type_a_mask
from licodec.layers import named_mask
from licodec.weights import load_weights, read_metadata

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "import"
FILES = {"bmshj2018-hyperprior": "bmshj2018-hyperprior.pth", "mbt2018-mean": "mbt2018-mean.pth.tar",
         "mbt2018": "mbt2018.pth.tar"}
TOL = 1e-5


def imported(arch, tmp_path, quality=3):
    out = tmp_path / f"{arch}.safetensors"
    r = import_compressai(arch, FIXTURES / FILES[arch], out, quality=quality)
    model, info = load_weights(out)
    return r, model, info


def compressai_outputs(arch):
    o = load_file(str(FIXTURES / f"{arch}-outputs.safetensors"))
    return o["x8"].float() / 255, o


@torch.no_grad()
def errors(arch, model):
    """Max abs differences to CompressAI's outputs: y, x̂, y and z likelihoods."""
    x, ref = compressai_outputs(arch)
    out = model(x)
    lik_y = out["likelihoods"]["y"]
    if arch == "mbt2018":
        # CompressAI's forward gives the context and g_s ŷ = round(y), as licodec does, but evaluates
        # the y likelihoods at round(y − μ) + μ; the same expression from licodec's μ, σ:
        mu, sigma = model.params(out["psi"], model.context_prediction(out["y_hat"]))
        lik_y = gaussian_likelihood(torch.round(out["y"] - mu) + mu, mu, sigma)
    return {"y": float((out["y"] - ref["y"]).abs().max()), "x_hat": float((out["x_hat"] - ref["x_hat"]).abs().max()),
            "lik_y": float((lik_y - ref["lik_y"]).abs().max()),
            "lik_z": float((out["likelihoods"]["z"] - ref["lik_z"]).abs().max())}


@pytest.mark.parametrize("arch", list(FILES))
def test_reproduces_compressai_forward(arch, tmp_path):
    _, model, _ = imported(arch, tmp_path)
    err = errors(arch, model)
    print(f"{arch}: max abs error vs CompressAI {json.dumps(err)}")
    assert max(err.values()) <= TOL, err


@pytest.mark.parametrize("arch", list(FILES))
def test_medians_matter_and_are_reproduced(arch, tmp_path):
    """The fixtures' medians are not integers: quantizing z without them (ẑ = round(z)) would not match."""
    _, model, _ = imported(arch, tmp_path)
    med = model.entropy_bottleneck.medians
    assert float((med - med.round()).abs().max()) > 0.1
    model.entropy_bottleneck.medians.zero_()
    assert max(errors(arch, model).values()) > 100 * TOL


@pytest.mark.parametrize("arch", list(FILES))
def test_round_trip_through_lic(arch, tmp_path):
    r, model, _ = imported(arch, tmp_path)
    x, _ = compressai_outputs(arch)
    rgb = (x[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    codec = Codec.from_weights(r.path)
    data = codec.encode(rgb)
    back, header = decode(data, weights=r.path)
    assert back.shape == rgb.shape and header.model == r.model
    with torch.no_grad():  # the coded ẑ is CompressAI's round(z − m) + m
        enc = model.compress(x)
        assert torch.equal(enc.latents["z_hat"], model(x)["z_hat"])


@pytest.mark.parametrize("arch", list(FILES))
def test_provenance_metadata(arch, tmp_path):
    r, _, info = imported(arch, tmp_path, quality=5)
    meta = read_metadata(r.path)
    extra = json.loads(meta["extra"])
    digest = hashlib.sha256((FIXTURES / FILES[arch]).read_bytes()).hexdigest()
    assert extra["source"] == "compressai" and extra["architecture"] == arch
    assert extra["source_sha256"] == digest and extra["source_file"] == FILES[arch]
    assert info["quality"] == 5 and info["lambda"] == 0.025 and extra["lambda"] == 0.025
    assert info["config"] == {"rate_levels": 0, "N": 4, "M": 6, **({"M2": 0, "random_mask": False} if arch == "mbt2018" else {})}


def test_masks_agree():
    assert torch.equal(type_a_mask(1, 1)[0, 0], named_mask("serial"))


def test_quality_from_zoo_name(tmp_path):
    src = tmp_path / "mbt2018-mean-4-6dba02a3.pth.tar"
    src.write_bytes((FIXTURES / FILES["mbt2018-mean"]).read_bytes())
    r = import_compressai("mbt2018-mean", src, tmp_path / "w.safetensors")
    assert r.extra["quality"] == 4
    with pytest.raises(CheckpointError, match="pass --quality"):
        import_compressai("mbt2018-mean", FIXTURES / FILES["mbt2018-mean"], tmp_path / "v.safetensors")


def _state(arch):
    sd = torch.load(FIXTURES / FILES[arch], weights_only=True)
    return {k.removeprefix("module."): v for k, v in sd.get("state_dict", sd).items()}


@pytest.mark.parametrize("arch, given, needle", [
    ("bmshj2018-hyperprior", "mbt2018-mean", "h_s.0.weight"),
    ("mbt2018", "mbt2018-mean", "context_prediction"),
    ("mbt2018-mean", "mbt2018", "context_prediction.weight"),
    ("mbt2018-mean", "bmshj2018-hyperprior", "h_s.0.weight"),
])
def test_wrong_architecture(arch, given, needle, tmp_path):
    with pytest.raises(CheckpointError, match=needle) as e:
        import_compressai(given, FIXTURES / FILES[arch], tmp_path / "w.safetensors", quality=3)
    assert "\n" not in str(e.value)


def test_missing_unexpected_and_misshapen_tensors(tmp_path):
    sd = _state("mbt2018-mean")
    cases = {"missing": ({k: v for k, v in sd.items() if k != "g_s.3.gamma"}, "'g_s.3.gamma' is missing"),
             "unexpected": ({**sd, "extra.weight": torch.zeros(2)}, "unexpected tensor(s) 'extra.weight'"),
             "shape": ({**sd, "g_a.2.bias": torch.zeros(5)}, "'g_a.2.bias' has shape [5], expected [4]"),
             "gdn": ({**sd, "g_a.1.beta_reparam.lower_bound.bound": torch.tensor([0.5])}, "other settings")}
    for name, (state, needle) in cases.items():
        p = tmp_path / f"{name}.pth"
        torch.save(state, p)
        with pytest.raises(CheckpointError, match=needle.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[").replace("]", r"\]")):
            import_compressai("mbt2018-mean", p, tmp_path / f"{name}.safetensors", quality=3)


class NotAStateDict:  # a pickle of an arbitrary class: torch.load(weights_only=True) refuses it
    pass


def test_not_a_state_dict(tmp_path):
    bad = {"object.pth": NotAStateDict(), "list.pth": [torch.zeros(1)], "empty.pth": {}}
    for name, obj in bad.items():
        torch.save(obj, tmp_path / name)
        with pytest.raises(CheckpointError) as e:
            import_compressai("mbt2018", tmp_path / name, tmp_path / "w.safetensors", quality=3)
        assert "\n" not in str(e.value)
    (tmp_path / "junk.pth").write_bytes(b"not a pickle at all")
    with pytest.raises(CheckpointError, match="not a loadable PyTorch state dict"):
        import_compressai("mbt2018", tmp_path / "junk.pth", tmp_path / "w.safetensors", quality=3)


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "licodec.cli", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})})


def test_cli_import_and_models_listing(tmp_path):
    env = {"LICODEC_WEIGHTS_DIR": str(tmp_path / "mine")}
    r = _cli("import", "compressai", "mbt2018", FIXTURES / FILES["mbt2018"], "--quality", "2", env=env)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "mine" / "compressai-mbt2018-q2.safetensors"
    assert out.is_file() and str(out) in r.stdout
    r = _cli("models", env=env)
    assert r.returncode == 0 and "compressai-mbt2018-q2.safetensors: compressai-mbt2018, quality 2.0, from compressai" in r.stdout
    r = _cli("import", "compressai", "mbt2018", FIXTURES / FILES["mbt2018"], "--quality", "2", env=env)
    assert r.returncode == 1 and r.stderr.startswith("licodec: error:") and r.stderr.count("\n") == 1
    assert "--force" in r.stderr
    r = _cli("import", "compressai", "mbt2018-mean", FIXTURES / FILES["mbt2018"], "-q", "2", "-o", tmp_path / "x.safetensors")
    assert r.returncode == 1 and "Traceback" not in r.stderr and r.stderr.count("\n") == 1, r.stderr
    img = tmp_path / "img.png"
    from PIL import Image
    Image.fromarray((np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)).save(img)
    r = _cli("compress", img, "--weights", out, "-o", tmp_path / "img.lic")
    assert r.returncode == 0, r.stderr
    r = _cli("decompress", tmp_path / "img.lic", "--weights", out, "-o", tmp_path / "back.png")
    assert r.returncode == 0, r.stderr
    # the user folder is searched by fingerprint: no --weights needed to decode
    r = _cli("decompress", tmp_path / "img.lic", "-o", tmp_path / "back2.png", env=env)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "back2.png").read_bytes() == (tmp_path / "back.png").read_bytes()
    r = _cli("decompress", tmp_path / "img.lic", "-o", tmp_path / "back3.png", env={"LICODEC_WEIGHTS_DIR": str(tmp_path)})
    assert r.returncode == 1 and "not installed" in r.stderr, r.stderr
