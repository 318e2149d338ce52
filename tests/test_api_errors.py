"""The Python API's errors (issue 17, item 6): every input-caused failure of `licodec.codec.decode`
and `Codec` is a `LicodecError` (WeightsError and UnknownModelError stay a ValueError and a
KeyError); ``max_pixels=nan`` does not disable the budget; bytes-like inputs work."""

import numpy as np
import pytest

from conftest import tiny_model
from licodec.codec import Codec, decode
from licodec.errors import FormatError, ImageError, LicodecError
from licodec.format import pack, unpack
from licodec.registry import ConfigError, UnknownModelError
from licodec.models import create_model
from licodec.weights import WeightsError, save_weights


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    path = tmp_path_factory.mktemp("api") / "w.safetensors"
    save_weights(tiny_model("mbt2018-mean"), path, quality=3)
    rgb = np.full((20, 30, 3), 77, np.uint8)
    return path, rgb, Codec.from_weights(path).encode(rgb)


def test_error_classes_are_licodec_errors_and_keep_their_old_bases():
    assert issubclass(WeightsError, LicodecError) and issubclass(WeightsError, ValueError)
    assert issubclass(UnknownModelError, LicodecError) and issubclass(UnknownModelError, KeyError)
    assert issubclass(ConfigError, LicodecError) and issubclass(ConfigError, ValueError)
    with pytest.raises(KeyError):
        create_model("no-such-model")


def test_decode_errors_are_licodec_errors(setup, tmp_path):
    path, rgb, data = setup
    f = unpack(data)
    f.model = "no-such-model"
    with pytest.raises(UnknownModelError):
        decode(pack(f))
    with pytest.raises(LicodecError, match="not installed"):
        decode(data)  # tiny weights are not shipped
    with pytest.raises(WeightsError):
        decode(data, weights=tmp_path / "missing.safetensors")
    other = tmp_path / "other.safetensors"
    save_weights(tiny_model("mbt2018-mean", seed=3), other, quality=3)
    with pytest.raises(WeightsError, match="file was made with"):
        decode(data, weights=other)
    bad = bytearray(data)
    bad[-10] ^= 1
    with pytest.raises(FormatError):
        decode(bytes(bad), weights=path)


@pytest.mark.parametrize("budget", [float("nan"), -1, "1000", True, [5]])
def test_a_bad_budget_is_an_error_not_no_budget(setup, budget):
    path, _, data = setup
    with pytest.raises(LicodecError, match="max_pixels"):
        decode(data, weights=path, max_pixels=budget)


def test_budgets_that_work(setup):
    path, rgb, data = setup
    decode(data, weights=path, max_pixels=float("inf"))
    decode(data, weights=path, max_pixels=np.int64(600))
    with pytest.raises(FormatError, match="decode limit"):
        decode(data, weights=path, max_pixels=599.5)


@pytest.mark.parametrize("wrap", [bytearray, memoryview, lambda d: np.frombuffer(d, np.uint8),
                                  lambda d: memoryview(bytearray(d))])
def test_bytes_like_inputs_decode(setup, wrap):
    path, rgb, data = setup
    out, f = decode(wrap(data), weights=path)
    assert out.shape == rgb.shape and f.width == 30


@pytest.mark.parametrize("data", ["a string", None, 42, [1, 2, 3]])
def test_other_inputs_are_a_format_error(setup, data):
    with pytest.raises(FormatError, match="a .lic file is bytes"):
        decode(data, weights=setup[0])


def test_codec_arguments(setup):
    path, rgb, _ = setup
    for kwargs in ({"device": 5}, {"device": "tpu"}, {"tile": None}, {"tile": "abc"}, {"tile": 65},
                   {"quality": "abc"}, {"quality": 4}):
        with pytest.raises(LicodecError):
            Codec.from_weights(path, **kwargs)
    with pytest.raises(LicodecError):
        Codec.pretrained("mbt2018-mean", quality="high")
    with pytest.raises(LicodecError):
        Codec.pretrained("no-such-model")
    codec = Codec.from_weights(path)
    for bad in (rgb.astype(np.float32), rgb[..., 0], rgb[..., :2], "image", None, np.zeros((0, 5, 3), np.uint8)):
        with pytest.raises(ImageError):
            codec.encode(bad)
    with pytest.raises(ImageError):
        codec.encode(rgb, channels=2)
    with pytest.raises(LicodecError, match="format version"):
        codec.encode(rgb, version=9)


def test_corrupt_streams_in_a_valid_container_are_format_errors(setup):
    path, _, data = setup
    f = unpack(data)
    f.streams = [b"\xff" * 8, f.streams[1]]
    with pytest.raises(FormatError, match="cannot decode"):
        decode(pack(f), weights=path)  # pack recomputes the file CRC
