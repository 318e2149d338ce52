"""The shipped default weights on a real photograph (the bundled sample)."""

import pytest
import torch

from conftest import image_tensor
from licodec.codec import DEFAULT_MODEL, Codec, decode
from licodec.metrics import bpp_from_likelihoods, psnr
from licodec.weights import shipped_weights

QUALITIES = sorted(shipped_weights().get(DEFAULT_MODEL, {}))


def test_default_model_ships_at_least_four_rate_points():
    assert len(QUALITIES) >= 4, f"shipped {DEFAULT_MODEL} qualities: {QUALITIES}"


@pytest.mark.parametrize("quality", QUALITIES)
def test_real_size_matches_estimated_rate(quality, sample_rgb):
    codec = Codec.pretrained(DEFAULT_MODEL, quality)
    x = image_tensor(sample_rgb)
    with torch.no_grad():
        out = codec.model(x)
    est_bits = bpp_from_likelihoods(out["likelihoods"], 1).item()
    enc = codec.model.compress(x)
    real_bits = 8 * sum(len(s) for s in enc.streams)
    assert abs(real_bits - est_bits) / est_bits < 0.01, (real_bits, est_bits)


def test_higher_quality_gives_more_bytes_and_higher_psnr(sample_rgb):
    sizes, psnrs = [], []
    for q in QUALITIES:
        data = Codec.pretrained(DEFAULT_MODEL, q).encode(sample_rgb)
        rgb, header = decode(data)
        assert header.quality == q and rgb.shape == sample_rgb.shape
        sizes.append(len(data))
        psnrs.append(psnr(torch.tensor(rgb, dtype=torch.float32), torch.tensor(sample_rgb, dtype=torch.float32), 255))
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes)
    assert psnrs == sorted(psnrs)
