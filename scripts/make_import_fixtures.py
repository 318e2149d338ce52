"""Make the CompressAI and official-CCA fixtures of tests/importers (tests/fixtures/import/): run in a
scratch venv with CompressAI installed, never in licodec's own environment (the CCA part: see its
section below; ``--cca-code DIR --only cca``).

    python3 -m venv /tmp/caivenv
    /tmp/caivenv/bin/pip install --no-deps torch-2.13.0+cpu-…whl   # or torch==2.14.1 with its CUDA deps
    /tmp/caivenv/bin/pip install --no-deps compressai
    /tmp/caivenv/bin/pip install tqdm requests pandas scipy einops pytorch_msssim torch_geometric safetensors
    /tmp/caivenv/bin/python scripts/make_import_fixtures.py tests/fixtures/import

For each architecture it builds CompressAI's own model at a tiny size (N = 4, M = 6) with random
weights — the GDN parameters, the factorized prior and its quantiles (hence non-integer medians)
perturbed too, so that every tensor the importer maps carries information — and saves:

- ``<arch>.pth[.tar]``: the state dict as a CompressAI user has it (one as a training checkpoint
  ``{"state_dict": …}`` with DataParallel's ``module.`` prefix, one with the old ``_matrix0`` key names);
- ``<arch>-outputs.safetensors``: the fixed input x (as uint8 ``x8``, x = x8 / 255) and CompressAI's eval-mode forward outputs
  (x_hat, likelihoods y and z, and y = g_a(x)).

torchvision is only used by CompressAI's data-transform registry; where the installed one does not
load beside this torch, an empty stand-in module is used (the models do not touch it).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import re
import sys
import types
from pathlib import Path

import numpy as np
import torch


def _import_compressai():
    try:
        import torchvision.transforms  # noqa: F401
    except Exception:  # a torchvision built for another torch: CompressAI's models never use it
        for n in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[n]
        tv, tvt = types.ModuleType("torchvision"), types.ModuleType("torchvision.transforms")
        tv.transforms = tvt
        sys.modules.update({"torchvision": tv, "torchvision.transforms": tvt})
    import compressai
    from compressai import models

    return compressai, models


N, M = 4, 6
ARCHS = {  # arch -> (CompressAI class name, input size, how the file is saved)
    "bmshj2018-hyperprior": ("ScaleHyperprior", (64, 64), "plain"),
    "mbt2018-mean": ("MeanScaleHyperprior", (64, 64), "checkpoint"),
    "mbt2018": ("JointAutoregressiveHierarchicalPriors", (64, 64), "old-names"),
}


@torch.no_grad()
def randomize(net, g: torch.Generator) -> None:
    for name, mod in net.named_modules():
        if type(mod).__name__ == "GDN":
            c = mod.beta.shape[0]
            mod.beta.copy_(torch.sqrt(0.5 + torch.rand(c, generator=g)))
            mod.gamma.copy_(torch.sqrt(0.1 * torch.eye(c) + 0.05 * torch.rand(c, c, generator=g)))
    eb = net.entropy_bottleneck
    for p in [*eb.matrices, *eb.biases, *eb.factors]:
        p.add_(0.3 * torch.randn(p.shape, generator=g))
    c = eb.quantiles.shape[0]
    med = 3 * (2 * torch.rand(c, generator=g) - 1)  # medians in (-3, 3), not integers
    eb.quantiles.copy_(torch.stack([med - 6, med, med + 6], dim=1).view(c, 1, 3))
    # CompressAI's random init gives |y| < 0.3 (ŷ = 0 everywhere, likelihoods ~1): scale the layers that
    # make y, z and the Gaussian parameters so that the latents take many values (|y| ~ 5, σ ~ 0.1..10)
    gains = {"g_a.6": 25.0, "h_a.4": 40.0, "h_s.0": 3.0, "h_s.2": 3.0, "h_s.4": 10.0, "entropy_parameters.4": 30.0,
             "context_prediction": 4.0}
    for name, mod in net.named_modules():
        if name in gains:
            mod.weight.mul_(gains[name])
    M = net.h_s[4].bias.shape[0] // (1 if type(net).__name__ == "ScaleHyperprior" else 2)
    net.h_s[4].bias[:M].add_(0.5)  # σ (the first M channels): mostly above CompressAI's bound 0.11
    if hasattr(net, "entropy_parameters"):
        net.entropy_parameters[4].bias[:M].add_(3.0)
    for name, p in net.named_parameters():  # the convolutions: CompressAI's random init, a bit larger
        if name.endswith(".bias") and not name.startswith("entropy_bottleneck"):
            p.add_(0.05 * torch.randn(p.shape, generator=g))


def main(out: str) -> None:
    compressai, models = _import_compressai()
    from safetensors.torch import save_file

    d = Path(out)
    d.mkdir(parents=True, exist_ok=True)
    for i, (arch, (cls_name, (h, w), how)) in enumerate(ARCHS.items()):
        torch.manual_seed(100 + i)
        g = torch.Generator().manual_seed(200 + i)
        net = getattr(models, cls_name)(N=N, M=M)
        randomize(net, g)
        net.entropy_bottleneck.update(force=True)  # fills its CDF buffers, as a zoo file has them
        net.eval()
        x8 = torch.randint(0, 256, (1, 3, h, w), generator=g, dtype=torch.uint8)
        x = x8.float() / 255  # stored as uint8 (small fixtures); the input is x8 / 255
        with torch.no_grad():
            out_net = net(x)
            y = net.g_a(x)
        state = {k: v.clone() for k, v in net.state_dict().items()}
        if how == "checkpoint":
            path = d / f"{arch}.pth.tar"
            torch.save({"epoch": 3, "loss": 1.5, "state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
        elif how == "old-names":
            path = d / f"{arch}.pth.tar"
            ren = {"matrices": "_matrix", "biases": "_bias", "factors": "_factor"}
            old = {}
            for k, v in state.items():
                parts = k.split(".")
                if parts[0] == "entropy_bottleneck" and len(parts) == 3 and parts[1] in ren:
                    k = f"entropy_bottleneck.{ren[parts[1]]}{parts[2]}"
                old[k] = v
            torch.save(old, path)
        else:
            path = d / f"{arch}.pth"
            torch.save(state, path)
        save_file({"x8": x8, "x_hat": out_net["x_hat"].contiguous(), "lik_y": out_net["likelihoods"]["y"].contiguous(),
                   "lik_z": out_net["likelihoods"]["z"].contiguous(), "y": y.contiguous()},
                  str(d / f"{arch}-outputs.safetensors"),
                  metadata={"compressai": compressai.__version__, "torch": torch.__version__, "class": cls_name,
                            "N": str(N), "M": str(M)})
        print(f"{arch}: {path.name} ({path.stat().st_size} bytes), compressai {compressai.__version__}")


# -- the official CCA model (Han et al. 2024, github LabShuHangGU/CCA) ---------------------------------
#
#     git clone (or copy) the official code to /tmp/cca_official    (models/vae.py, models/aux_em.py, models/__init__.py)
#     /tmp/caivenv/bin/python scripts/make_import_fixtures.py tests/fixtures/import --cca-code /tmp/cca_official --only cca
#
# The official code is put on sys.path and used as it is, unmodified (never copied into licodec; the
# fixtures were made from its commit 840309c; ``cca_training`` is passed explicitly, as its default
# differs between versions of vae.py). Two fixtures:
#
# - ``cca-official-keys.json.gz``: the key/shape/dtype list of ``LICAutoencoder`` at the paper's size
#   (train.py's defaults, ``cca_training`` on as train.py saves it, so with the auxiliary model), the
#   buffers (bounds, CompressAI's still empty CDF tables) with their values.
# - ``cca-official-tiny.json.gz`` + ``cca-official-tiny-outputs.safetensors``: a tiny-width instance
#   (M = 40, five uneven groups 1/3/7/11/18 as k = 1.7 gives, ae_dim 8/10/12, NAF blocks 1/0/2, em_dim 8)
#   with random weights, a fixed 64x128 input and the official eval-mode forward outputs.
#
# The constructor hard-codes N = 192 and 224/128-channel heads for every group (main and auxiliary
# model), so even this instance has ~10 M parameters (~40 MB as a checkpoint): too large to commit.
# Its weights are therefore *generated*, not stored: tensor = offset + scale·u, u uniform in [-1, 1)
# from SHAKE-256 of "<seed>:<key>" (`cca_uniform`: the same numbers with any numpy/torch), with
# (offset, scale) per tensor in the json; the quantiles (non-integer medians) and the buffers are
# stored by value. The json (gzipped, as the key list) records the SHA-256 (`cca_state_digest`) of
# the state dict as the official model holds it after loading: the test rebuilds it
# (`cca_state_from_spec`), checks that digest, writes it in the official checkpoint layout
# (`save_cca_checkpoint`) and imports that file.

CCA_K = 1.7  # the official --prop-slices default
CCA_PROPS = [1, 2**CCA_K, 3**CCA_K, 4**CCA_K, 5**CCA_K]  # train.py / eval.py: prop_slices = [1, 2**k, ..., 5**k]
CCA_FULL = dict(M=320, prop_slices=CCA_PROPS, ae_dim=[192, 224, 256], em_dim=224, ae_layers=[4, 4, 4], em_layers=4,
                cca_training=True)
CCA_TINY = dict(M=40, prop_slices=CCA_PROPS, ae_dim=[8, 10, 12], em_dim=8, ae_layers=[1, 0, 2], em_layers=2,
                cca_training=True)
CCA_SEED = 15
CCA_INPUT = (64, 128)


def cca_uniform(seed: int, key: str, n: int) -> np.ndarray:
    """n numbers uniform in [-1, 1) (float64), a function of (seed, key) only."""
    raw = hashlib.shake_256(f"{seed}:{key}".encode()).digest(4 * n)
    return np.frombuffer(raw, dtype="<u4").astype(np.float64) / 2.0**31 - 1.0


def cca_state_from_spec(spec: dict) -> dict:
    """The state dict a ``cca-official-tiny.json`` describes."""
    state = {}
    for key, shape, dtype, how in spec["tensors"]:
        dt = getattr(torch, dtype)
        if isinstance(how, dict):  # by value
            t = torch.tensor(how["value"], dtype=torch.float64)
        else:
            offset, scale = how
            t = torch.from_numpy(offset + scale * cca_uniform(spec["seed"], key, math.prod(shape)))
        state[key] = t.to(dt).reshape(shape)
    return state


def cca_state_digest(state: dict) -> str:
    h = hashlib.sha256()
    for k in sorted(state):
        t = state[k].detach().cpu().contiguous()
        h.update(f"{k}:{t.dtype}:{list(t.shape)};".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def write_json_gz(path, obj) -> None:
    path.write_bytes(gzip.compress((json.dumps(obj, separators=(",", ":")) + "\n").encode(), 9, mtime=0))


def read_json_gz(path):
    return json.loads(gzip.decompress(Path(path).read_bytes()))


def save_cca_checkpoint(state: dict, path) -> None:
    """As the official train.py saves (under DistributedDataParallel: the ``module.`` prefix)."""
    torch.save({"epoch": 0, "state_dict": {f"module.{k}": v for k, v in state.items()}, "loss": 1.0,
                "optimizer": {"state": {}, "param_groups": [{"lr": 1e-4, "params": [0, 1]}]},
                "aux_optimizer": {"state": {}, "param_groups": [{"lr": 1e-3, "params": [2]}]},
                "lr_scheduler": {"milestones": {3: 1}, "gamma": 0.1, "last_epoch": 1}}, path)


# (offset, scale) of the generated tensors, by key pattern (first match). Convolutions: scale =
# gain / sqrt(fan_in) (PyTorch's default init has gain 1; sqrt(3) keeps the activations' size);
# larger gains where y, z and the Gaussian parameters are made, so that ŷ takes many values and
# σ spans CompressAI's bound 0.11 to ~10; NAF β/γ (zero at init: the block would be the identity),
# the layer norms and the factorized prior moved away from their init.
CCA_RULES = [
    (r"\.norm[12]\.weight$", (1.0, 0.5)),
    (r"\.norm[12]\.bias$", (0.0, 0.3)),
    (r"\.(beta|gamma)$", (0.0, 0.5)),
    (r"entropy_bottleneck\.matrices\.\d+$", ("init", 0.3)),
    (r"entropy_bottleneck\.biases\.\d+$", (0.0, 1.0)),
    (r"entropy_bottleneck\.factors\.\d+$", (0.0, 0.5)),
    (r"^g_a\.down\.3\.weight$", (0.0, "gain", 0.6)),
    (r"^g_s\.up\.3\.weight$", (0.0, "gain", 0.4)),
    (r"^h_a\.4\.weight$", (0.0, "gain", 1.5)),
    (r"scale_cc_transforms\.\d+\.4\.bias$", (1.0, 1.0)),
    (r"scale_cc_transforms\.\d+\.4\.weight$", (0.0, "gain", 1.0)),
    (r"mean_cc_transforms\.\d+\.4\.weight$", (0.0, "gain", 3.0)),
    (r"\.weight$", (0.0, "gain", 3.0**0.5)),
    (r"\.bias$", (0.0, 0.1)),
]


def _cca_how(net, key: str, v: torch.Tensor, seed: int):
    if key.endswith("quantiles"):  # non-integer medians in (-3, 3), the support ±6 around them
        c = v.shape[0]
        med = torch.from_numpy(3 * cca_uniform(seed, key, c)).float()
        return {"value": torch.stack([med - 6, med, med + 6], 1).reshape(-1).tolist()}
    for pattern, rule in CCA_RULES:
        if re.search(pattern, key):
            break
    else:
        raise KeyError(key)
    if rule[0] == "init":
        assert bool((v == v.flatten()[0]).all()), key
        return [float(v.flatten()[0]), rule[1]]
    if len(rule) == 3:
        mod = net.get_submodule(key.rsplit(".", 1)[0])
        fan_in = v.shape[1] * v.shape[2] * v.shape[3]  # as torch's init: weight.size(1) * k * k (also transposed)
        assert isinstance(mod, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)) and v.dim() == 4, key
        return [rule[0], rule[2] / math.sqrt(fan_in)]
    return list(rule)


def make_cca(out: str, code: str) -> None:
    sys.path.insert(0, str(Path(code).resolve()))
    compressai, _ = _import_compressai()
    from models import LICAutoencoder  # the official code
    from safetensors.torch import save_file

    d = Path(out)
    d.mkdir(parents=True, exist_ok=True)
    full = LICAutoencoder(**CCA_FULL)
    keys = {"official": "LabShuHangGU/CCA models/vae.py LICAutoencoder", "config": CCA_FULL,
            "tensors": []}
    full_params = {k for k, _ in full.named_parameters()}
    for k, v in full.state_dict().items():  # buffers (bounds, CompressAI's CDF tables: empty) with their values
        how = [] if k in full_params else [{"value": v.reshape(-1).tolist()}]
        keys["tensors"].append([k, list(v.shape), str(v.dtype).removeprefix("torch."), *how])
    write_json_gz(d / "cca-official-keys.json.gz", keys)
    n_par = sum(p.numel() for p in full.parameters())
    print(f"cca full: {len(keys['tensors'])} tensors, {n_par} parameters")
    del full

    torch.manual_seed(CCA_SEED)
    net = LICAutoencoder(**CCA_TINY)
    params = {k for k, _ in net.named_parameters()}
    tensors = []
    for k, v in net.state_dict().items():
        how = _cca_how(net, k, v, CCA_SEED) if k in params else {"value": v.reshape(-1).tolist()}
        tensors.append([k, list(v.shape), str(v.dtype).removeprefix("torch."), how])
    spec = {"official": "LabShuHangGU/CCA models/vae.py LICAutoencoder", "config": CCA_TINY, "seed": CCA_SEED,
            "compressai": compressai.__version__, "torch": torch.__version__, "tensors": tensors}
    state = cca_state_from_spec(spec)
    net.load_state_dict(state)  # the official load (strict=False): checked through the digest
    assert set(net.state_dict()) == set(state)
    spec["sha256"] = cca_state_digest(net.state_dict())
    assert spec["sha256"] == cca_state_digest(state)
    net.eval()
    g = torch.Generator().manual_seed(CCA_SEED)
    x8 = torch.randint(0, 256, (1, 3, *CCA_INPUT), generator=g, dtype=torch.uint8)
    x = x8.float() / 255
    with torch.no_grad():
        o = net(x)
        z = net.h_a(o["y"])
    lik_y, lik_z = o["likelihoods"]["y"], o["likelihoods"]["z"]
    bits = lambda t: float(-torch.log2(t).sum())  # noqa: E731
    print(f"cca tiny: sizes {net.size_slices}, {sum(v.numel() for v in state.values())} numbers; |y| max "
          f"{float(o['y'].abs().max()):.2f} mean {float(o['y'].abs().mean()):.2f}; |z| max {float(z.abs().max()):.2f}; "
          f"y bits {bits(lik_y):.0f} (lik min {float(lik_y.min()):.2e}, share < 0.9: {float((lik_y < 0.9).float().mean()):.2f}); "
          f"z bits {bits(lik_z):.0f} (share < 0.9: {float((lik_z < 0.9).float().mean()):.2f}); "
          f"x_hat in [{float(o['x_hat'].min()):.2f}, {float(o['x_hat'].max()):.2f}]")
    write_json_gz(d / "cca-official-tiny.json.gz", spec)
    save_file({"x8": x8, "x_hat": o["x_hat"].contiguous(), "lik_y": lik_y.contiguous(), "lik_z": lik_z.contiguous(),
               "y": o["y"].contiguous()}, str(d / "cca-official-tiny-outputs.safetensors"),
              metadata={"compressai": compressai.__version__, "torch": torch.__version__, "sha256": spec["sha256"]})
    for f in ("cca-official-keys.json.gz", "cca-official-tiny.json.gz", "cca-official-tiny-outputs.safetensors"):
        print(f"{f}: {(d / f).stat().st_size} bytes")


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", nargs="?", default="tests/fixtures/import")
    ap.add_argument("--cca-code", help="a copy of the official CCA code (LabShuHangGU/CCA): also make its fixtures")
    ap.add_argument("--only", choices=["compressai", "cca"], help="make only these fixtures")
    a = ap.parse_args()
    if a.only == "cca" and not a.cca_code:
        ap.error("--only cca needs --cca-code")
    if a.only != "cca":
        main(a.out)
    if a.cca_code and a.only != "compressai":
        make_cca(a.out, a.cca_code)
