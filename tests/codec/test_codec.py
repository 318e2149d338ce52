"""The Python API (`licodec.codec`) with variable-rate and fixed-rate weights."""

import numpy as np
import pytest
import torch

from conftest import tiny_model
from licodec.codec import Codec, decode
from licodec.errors import LicodecError
from licodec.format import unpack
from licodec.weights import WeightsError, load_weights, read_metadata, save_weights


@pytest.fixture(scope="module")
def vr_weights(tmp_path_factory):
    m = tiny_model("mbt2018-mean", rate_levels=8)
    with torch.no_grad():
        m.g_a[-1].weight.mul_(20)
    path = tmp_path_factory.mktemp("w") / "tiny-vr.safetensors"
    save_weights(m, path, quality=None)
    return path


def test_variable_rate_weights_code_any_quality(vr_weights, sample_rgb):
    rgb = np.ascontiguousarray(sample_rgb[:96, :130])
    assert read_metadata(vr_weights)["quality"] == "variable"
    assert load_weights(vr_weights)[1]["quality"] is None
    sizes = []
    for q in (1, 3.5, 8):
        data = Codec.from_weights(vr_weights, quality=q).encode(rgb)
        rgb_hat, f = decode(data, weights=vr_weights)
        assert f.quality == q and rgb_hat.shape == rgb.shape
        sizes.append(len(data))
    assert sizes[0] < sizes[1] < sizes[2]
    assert Codec.from_weights(vr_weights).quality == 3  # the default quality


def test_header_quality_is_what_the_encoder_used(vr_weights, sample_rgb):
    rgb = np.ascontiguousarray(sample_rgb[:64, :64])
    codec = Codec.from_weights(vr_weights, quality=3.3)  # not a float32: stored and used as float32(3.3)
    f = unpack(codec.encode(rgb))
    assert f.quality == codec.quality == float(np.float32(3.3))
    decode(codec.encode(rgb), weights=vr_weights)  # the decoder's inverse gain uses the same value


@pytest.mark.parametrize("q", [0.5, 8.5, float("nan")])
def test_variable_rate_quality_out_of_range(vr_weights, q):
    with pytest.raises(LicodecError, match="quality"):
        Codec.from_weights(vr_weights, quality=q)


def test_fixed_rate_weights_refuse_another_quality(tiny_weights):
    assert Codec.from_weights(tiny_weights, quality=3).quality == 3
    with pytest.raises(WeightsError, match="fixed rate"):
        Codec.from_weights(tiny_weights, quality=4)


def test_quality_metadata_must_fit_the_config(tmp_path):
    with pytest.raises(ValueError):
        save_weights(tiny_model("mbt2018-mean", rate_levels=8), tmp_path / "a.safetensors", quality=3)
    with pytest.raises(ValueError):
        save_weights(tiny_model("mbt2018-mean"), tmp_path / "b.safetensors", quality=None)


def test_metadata_is_carried_not_coded(tiny_weights, sample_rgb):
    codec = Codec.from_weights(tiny_weights)
    meta = {"icc": bytes(16) + b"RGB " + b"p" * 50, "exif": b"MM\x00*" + b"e" * 20}
    plain, with_meta = codec.encode(sample_rgb), codec.encode(sample_rgb, metadata=meta)
    assert len(with_meta) == len(plain) + sum(8 + len(v) for v in meta.values())
    out, header = decode(with_meta, weights=tiny_weights)
    assert header.metadata == meta and np.array_equal(out, decode(plain, weights=tiny_weights)[0])
    assert decode(plain, weights=tiny_weights)[1].metadata == {}
    for bad, version in (({"xmp": b"x"}, 4), ({"icc": "text"}, 4), (["icc"], 4), (meta, 3)):
        with pytest.raises(LicodecError):
            codec.encode(sample_rgb, version=version, metadata=bad)
