import numpy as np
import pytest

from licodec.evaluation.codecs import CODEC_KEYS, make_codec, rgb_to_ycbcr, ycbcr_to_rgb
from licodec.evaluation.quality import ms_ssim_db, ms_ssim_rgb8, psnr_rgb8


@pytest.fixture(scope="module")
def photo(sample_rgb):
    return np.ascontiguousarray(sample_rgb[100:171, 200:297])  # odd sizes on purpose (71x97)


@pytest.mark.parametrize("key", CODEC_KEYS)
def test_codec_roundtrip_and_sweep(key, photo):
    codec = make_codec(key, fast=True, threads=1)
    reason = codec.unavailable()
    if reason:
        pytest.skip(f"{key} not available here: {reason}")  # these libraries are optional
    low, high = codec.sweep[0], codec.sweep[-1]
    small, big = codec.encode(photo, low), codec.encode(photo, high)
    assert isinstance(big, bytes) and len(small) < len(big)  # sweep runs from low to high rate
    out = codec.roundtrip(photo, big)
    assert out.shape == photo.shape and out.dtype == np.uint8
    assert psnr_rgb8(photo, out) > 30


@pytest.mark.parametrize("bits", [8, 10])
def test_ycbcr_conversion_roundtrip(photo, bits):
    planes = rgb_to_ycbcr(photo, bits)
    assert planes.shape == (3, *photo.shape[:2]) and planes.max() < 2**bits
    assert psnr_rgb8(photo, ycbcr_to_rgb(planes, bits)) > (50 if bits == 8 else 99)


def test_unknown_codec_key():
    with pytest.raises(KeyError):
        make_codec("gif")


def test_quality_measures(sample_rgb):
    a = sample_rgb[:200, :200]
    noisy = np.clip(a.astype(int) + np.random.default_rng(0).integers(-4, 5, a.shape), 0, 255).astype(np.uint8)
    assert psnr_rgb8(a, a) == float("inf")
    assert 35 < psnr_rgb8(a, noisy) < 45
    ms = ms_ssim_rgb8(a, noisy)
    assert 0.9 < ms < 1 and ms_ssim_db(ms) > 10
    assert ms_ssim_rgb8(a[:100], noisy[:100]) is None  # five scales need 161 pixels a side
