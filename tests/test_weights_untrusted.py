"""Untrusted weight files (issue 17, items 1-3): the config is checked against the tensor shapes of
the safetensors header before anything is allocated, sizes are capped, hostile metadata ends in a
one-line error, and non-finite values or unexpected dtypes are refused at load."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import tiny_model
from licodec import cli
from licodec.codec import Codec, decode
from licodec.errors import LicodecError
from testkit.fuzz import guarded
from licodec.weights import WeightsError, fingerprint, load_weights, read_metadata, save_weights


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / "base.safetensors"
    save_weights(tiny_model("mbt2018-mean"), path, quality=3, lmbda=0.0067)
    return path


@pytest.fixture(scope="module")
def vr_base(tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / "vr.safetensors"
    save_weights(tiny_model("mbt2018-mean", rate_levels=8), path, quality=None)
    return path


def variant(src, dst, meta_edit=None, tensor_edit=None, refp=True):
    """A copy of weight file ``src`` with edited metadata and tensors, the fingerprint recomputed."""
    meta, tensors = dict(read_metadata(src)), load_file(str(src))
    if tensor_edit:
        tensor_edit(tensors)
    if meta_edit:
        meta_edit(meta)
    if refp and "fingerprint" in meta:
        meta["fingerprint"] = fingerprint(tensors).hex()
    save_file(tensors, str(dst), metadata=meta)
    return dst


def set_config(**kw):
    def edit(meta):
        meta["config"] = json.dumps({**json.loads(meta["config"]), **kw})
    return edit


def set_value(prefix, value, everywhere=False):
    def edit(t):
        k = sorted(k for k in t if k.startswith(prefix))[0]
        t[k] = t[k].clone()
        if everywhere:
            t[k].fill_(value)
        else:
            t[k].view(-1)[0] = value
    return edit


def cast(prefix, dtype):
    def edit(t):
        for k in [k for k in t if k.startswith(prefix)][:1]:
            t[k] = t[k].to(dtype)
    return edit


def cli_error(capsys, weights, tmp_path) -> str:
    """`licodec compress` with these weights, in process: its one stderr line (exit status 1)."""
    from PIL import Image

    img = tmp_path / "x.png"
    Image.fromarray(np.full((20, 30, 3), 128, np.uint8)).save(img)
    capsys.readouterr()
    rc = cli.main(["compress", str(img), "--weights", str(weights), "-o", str(tmp_path / "x.lic")])
    err = capsys.readouterr().err
    assert rc == 1 and err.startswith("licodec: error:") and err.count("\n") == 1, err
    assert not (tmp_path / "x.lic").exists()
    return err


# -- item 1: no allocation from the config before the shapes are checked ----------------------------


@pytest.mark.parametrize("side", [2048, 4096])
def test_a_big_config_over_a_tiny_file_is_refused_without_allocating(base, tmp_path, side):
    meta = dict(read_metadata(base))
    meta["fingerprint"] = fingerprint({}).hex()
    p = tmp_path / "tiny.safetensors"
    meta["config"] = json.dumps({"N": 16, "M": 16, "rate_levels": 0})
    save_file({}, str(p), metadata=meta)
    with pytest.raises(WeightsError):  # warm up: the first model built on the meta device loads code
        load_weights(p)
    meta["config"] = json.dumps({"N": side, "M": side, "rate_levels": 0})
    save_file({}, str(p), metadata=meta)
    assert p.stat().st_size < 1000
    res, _ = guarded(lambda: load_weights(p), time_limit=5.0, rss_limit_mib=64)
    assert res.outcome == "clean_error", res
    assert ("do not fit" in res.reason) or ("parameters" in res.reason), res.reason
    assert res.seconds < 2 and res.rss_growth_mib < 64


def test_config_sizes_and_parameter_counts_are_capped(base, tmp_path):
    with pytest.raises(WeightsError, match="outside 0..4096"):
        load_weights(variant(base, tmp_path / "a.safetensors", set_config(N=5000)))
    with pytest.raises(WeightsError, match="parameters, more than licodec loads"):
        load_weights(variant(base, tmp_path / "b.safetensors", set_config(N=4096, M=4096)))


def test_the_config_is_checked_against_the_header_before_any_tensor_is_read(base, tmp_path, monkeypatch):
    import licodec.weights as w

    p = variant(base, tmp_path / "c.safetensors", set_config(M=32))

    def no_read(*a, **k):
        raise AssertionError("tensors read before the header was checked")

    monkeypatch.setattr(w, "load_file", no_read)
    monkeypatch.setattr(w, "create_model", no_read)
    with pytest.raises(WeightsError, match="do not fit mbt2018-mean config .*: g_a.6.bias has shape \\[24\\], the config gives \\[32\\]"):
        load_weights(p)


def test_a_missing_or_extra_tensor_is_named(base, tmp_path):
    def drop(t):
        del t["g_s.0.bias"]

    def add(t):
        t["extra.weight"] = torch.zeros(2)

    with pytest.raises(WeightsError, match="missing tensor.*g_s.0.bias"):
        load_weights(variant(base, tmp_path / "d.safetensors", tensor_edit=drop))
    with pytest.raises(WeightsError, match="unexpected tensor.*extra.weight"):
        load_weights(variant(base, tmp_path / "e.safetensors", tensor_edit=add))


# -- item 2: hostile metadata ends in one `licodec: error:` line --------------------------------


def _drop(key):
    return lambda meta: meta.pop(key)


def _put(key, value):
    return lambda meta: meta.update({key: value})


@pytest.mark.parametrize(("edit", "message"), [
    (set_config(N=-1), "N=-1 of mbt2018-mean is outside"),
    (set_config(N=0), "empty tensors"),
    (set_config(N=16.5), "must be an integer"),
    (set_config(N=True), "must be an integer"),
    (set_config(N="16"), "must be an integer"),
    (set_config(rate_levels=99), "outside 0..64"),
    (set_config(rate_levels=9), "rate_levels"),
    (set_config(bogus=1), "unknown config field"),
    (_put("lambda", "abc"), "lambda must be a positive number"),
    (_put("lambda", "nan"), "lambda must be a positive number"),
    (_put("extra", "{oops"), "'extra' is not valid JSON"),
    (_put("extra", "[1]"), "'extra' must be a JSON object"),
    (_put("config", "[]"), "'config' must be a JSON object"),
    (_put("config", "[" * 100_000), "'config' is not valid JSON"),
    (_put("quality", "abc"), "quality must be a number"),
    (_put("quality", "9"), "outside the range"),
    (_put("quality", "variable"), "does not fit the config's rate_levels"),
    (_put("model", "no-such-model"), "unknown model"),
    (_put("fingerprint", "zz"), "fingerprint must be 16 hex digits"),
    (_drop("model"), "no model name"),
    (_drop("config"), "no 'config'"),
    (_drop("quality"), "no quality"),
])
def test_hostile_metadata_is_one_clean_error(base, tmp_path, capsys, edit, message):
    p = variant(base, tmp_path / "m.safetensors", edit, refp=not message.startswith("fingerprint"))
    with pytest.raises(WeightsError, match=message) as e:
        load_weights(p)
    assert "\n" not in str(e.value)
    assert cli_error(capsys, p, tmp_path) == f"licodec: error: {e.value}\n"


def test_hostile_weight_files_through_the_cli(base, tmp_path):
    """As a user sees it: one line on stderr, exit status 1, no traceback, no warning, no file."""
    from PIL import Image

    Image.fromarray(np.full((20, 30, 3), 128, np.uint8)).save(tmp_path / "x.png")
    cases = [
        variant(base, tmp_path / "n.safetensors", set_config(N=-1)),
        variant(base, tmp_path / "z.safetensors", set_config(N=0)),
        variant(base, tmp_path / "eb.safetensors", tensor_edit=set_value("entropy_bottleneck.biases", float("nan"))),
    ]
    for w in cases:
        r = subprocess.run([sys.executable, "-m", "licodec.cli", "compress", str(tmp_path / "x.png"), "--weights",
                            str(w), "-o", str(tmp_path / "x.lic")], capture_output=True, text=True)
        assert r.returncode == 1 and r.stderr.startswith("licodec: error:") and r.stderr.count("\n") == 1, r.stderr
        assert not (tmp_path / "x.lic").exists()


# -- item 3: values and dtypes -------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["g_s.", "g_a.", "h_a.", "h_s.", "entropy_bottleneck.", "g_a.1.gamma",
                                    "gain.log_inv_gain", "gain.log_gain"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf"), 1e30])
def test_non_finite_or_absurd_values_are_refused_at_load(base, vr_base, tmp_path, prefix, value):
    src = vr_base if prefix.startswith("gain") else base
    p = variant(src, tmp_path / "v.safetensors", tensor_edit=set_value(prefix, value))
    with pytest.raises(WeightsError, match="NaN or infinite|magnitude"):
        load_weights(p)


@pytest.mark.parametrize("dtype", [torch.float64, torch.int64, torch.int32, torch.bool, torch.uint8])
def test_unexpected_dtypes_are_refused(base, tmp_path, dtype):
    p = variant(base, tmp_path / "t.safetensors", tensor_edit=cast("g_s.", dtype))
    with pytest.raises(WeightsError, match="is stored as"):
        load_weights(p)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_storage_of_float32_tensors_is_accepted(base, tmp_path, dtype):
    def all_half(t):
        for k in t:
            if t[k].is_floating_point():  # not the int32 coding tables
                t[k] = t[k].to(dtype)

    p = variant(base, tmp_path / "h.safetensors", tensor_edit=all_half)
    model, _ = load_weights(p)
    assert all(v.dtype == torch.float32 for v in model.state_dict().values())
    rgb = np.full((20, 30, 3), 90, np.uint8)
    out, _ = decode(Codec.from_weights(p).encode(rgb), weights=p)
    assert out.shape == rgb.shape


def test_weights_that_overflow_while_coding_are_a_clean_error(base, monkeypatch):
    """Finite weights can still overflow in the float networks; the entropy coder refuses
    non-finite latents and broken tables instead of warning and writing garbage."""
    from licodec.entropy.coder import CodingError, TableSet
    from licodec.entropy.factorized import FactorizedPrior
    from licodec.entropy.gaussian import GaussianConditional
    from licodec.entropy.coder import RangeEncoder

    with pytest.raises(CodingError, match="not a distribution"):
        TableSet.from_pmfs([np.array([0.5, np.nan])], [0]).table(0)
    prior = FactorizedPrior(2)
    with pytest.raises(CodingError, match="not finite"):
        prior.compress(RangeEncoder(), torch.tensor([[[[float("inf")]], [[0.0]]]]), prior.tables())
    with pytest.raises(CodingError, match="not finite"):
        GaussianConditional().compress(RangeEncoder(), torch.tensor([float("nan")]), torch.zeros(1), torch.ones(1))
    codec = Codec.from_weights(base)

    def overflow(*a, **k):
        raise CodingError("the latent y or its mean is not finite")

    monkeypatch.setattr(codec.model, "compress", overflow)
    with pytest.raises(WeightsError, match="cannot code with these weights"):
        codec.encode(np.zeros((8, 8, 3), np.uint8))
    assert issubclass(WeightsError, LicodecError)
