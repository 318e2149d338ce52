import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import tiny_model
from licodec.weights import WeightsError, load_weights, read_metadata, save_weights


def test_roundtrip_restores_config_and_tensors(tmp_path):
    m = tiny_model("bmshj2018-hyperprior")
    p = tmp_path / "w.safetensors"
    fp = save_weights(m, p, quality=2, lmbda=0.0035, extra={"steps": 5})
    m2, info = load_weights(p)
    assert info["model"] == "bmshj2018-hyperprior" and info["config"] == {"N": 16, "M": 24, "rate_levels": 0}
    assert info["quality"] == 2 and info["fingerprint"] == fp and info["extra"] == {"steps": 5}
    for (k, a), (k2, b) in zip(m.state_dict().items(), m2.state_dict().items()):
        assert k == k2 and torch.equal(a, b)


def test_tampered_tensors_refused(tmp_path):
    p = tmp_path / "w.safetensors"
    save_weights(tiny_model("mbt2018-mean"), p, quality=3)
    meta = read_metadata(p)
    t = load_file(str(p))
    k = next(iter(t))
    t[k] = t[k] + 1
    save_file(t, str(p), metadata=meta)
    with pytest.raises(WeightsError, match="fingerprint"):
        load_weights(p)


def test_config_that_does_not_fit_refused(tmp_path):
    p = tmp_path / "w.safetensors"
    save_weights(tiny_model("mbt2018-mean"), p, quality=3)
    meta = read_metadata(p)
    meta["config"] = json.dumps({"N": 16, "M": 32})
    save_file(load_file(str(p)), str(p), metadata=meta)
    with pytest.raises(WeightsError, match="do not fit"):
        load_weights(p)


def test_wrong_model_and_foreign_files_refused(tmp_path):
    p = tmp_path / "w.safetensors"
    save_weights(tiny_model("mbt2018-mean"), p, quality=3)
    with pytest.raises(WeightsError, match="not 'bmshj2018-hyperprior'"):
        load_weights(p, expect_model="bmshj2018-hyperprior")
    q = tmp_path / "plain.safetensors"
    save_file({"a": torch.zeros(2)}, str(q))
    with pytest.raises(WeightsError, match="not a licodec weight file"):
        load_weights(q)
    r = tmp_path / "junk.safetensors"
    r.write_bytes(b"\x00" * 100)
    with pytest.raises(WeightsError):
        load_weights(r)


def test_half_precision_storage(tmp_path):
    """float16 storage halves the file; loading gives float32 parameters equal to the stored values."""
    m = tiny_model("han2024-cca", rate_levels=8)
    full, half = tmp_path / "full.safetensors", tmp_path / "half.safetensors"
    save_weights(m, full, quality=None)
    save_weights(m, half, quality=None, half=True)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    loaded, info = load_weights(half)
    for (name, a), b in zip(m.state_dict().items(), loaded.state_dict().values()):
        assert b.dtype == a.dtype, name
        assert torch.equal(b, a.half().float()) if a.is_floating_point() else torch.equal(a, b), name
    x = torch.rand(1, 3, 64, 64)
    enc = loaded.compress(x, 2.5)
    assert loaded.decompress(enc.streams, (64, 64), enc.checksum, 2.5).shape == (1, 3, 64, 64)


def test_the_highest_generation_of_variable_rate_weights_codes(tmp_path, monkeypatch):
    from licodec import weights as w

    def vr_file(name, generation):
        m = tiny_model("mbt2018-mean", rate_levels=8)
        extra = {"generation": generation} if generation else {}
        w.save_weights(m, tmp_path / name, quality=None, extra=extra)

    vr_file("mbt2018-mean-vr.safetensors", None)  # files from before generations: generation 1
    vr_file("mbt2018-mean-vr2.safetensors", 2)
    vr_file("mbt2018-mean-a.safetensors", 1)
    monkeypatch.setattr(w, "shipped_dir", lambda: tmp_path)
    w._shipped.cache_clear()
    try:
        assert w.shipped_variable_rate()["mbt2018-mean"][1].name == "mbt2018-mean-vr2.safetensors"
        assert w.find_weights("mbt2018-mean", 3.5).name == "mbt2018-mean-vr2.safetensors"
        assert len(w.shipped_files()) == 3  # the older ones stay listed (and findable by fingerprint)
    finally:
        w._shipped.cache_clear()
