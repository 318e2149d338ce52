"""Every shipped weight file on a real photograph (the bundled sample)."""

import pytest
import torch

from conftest import image_tensor
from licodec.codec import DEFAULT_MODEL, Codec, decode
from licodec.metrics import bpp_from_likelihoods, psnr
from licodec.weights import shipped_variable_rate, shipped_weights


def shipped_settings() -> dict[str, list[float]]:
    """{model: qualities to test}: the fixed-rate qualities, or 1..L plus 3.5 for variable-rate weights."""
    out = {m: sorted(qs) for m, qs in shipped_weights().items()}
    for m, (levels, _) in shipped_variable_rate().items():
        out[m] = sorted({*map(float, range(1, levels + 1)), 3.5})
    return out


SETTINGS = shipped_settings()
CASES = [(m, q) for m, qs in SETTINGS.items() for q in qs]


def test_default_model_ships_at_least_four_rate_points():
    assert len(SETTINGS.get(DEFAULT_MODEL, [])) >= 4, f"shipped {DEFAULT_MODEL} qualities: {SETTINGS}"


@pytest.mark.parametrize(("model", "quality"), CASES)
def test_real_size_matches_estimated_rate(model, quality, sample_rgb):
    codec = Codec.pretrained(model, quality)
    x = image_tensor(sample_rgb)
    with torch.no_grad():
        out = codec.model(x, codec.quality)
    est_bits = bpp_from_likelihoods(out["likelihoods"], 1).item()
    enc = codec.model.compress(x, codec.quality)
    real_bits = 8 * sum(len(s) for s in enc.streams)
    assert abs(real_bits - est_bits) / est_bits < 0.01, (real_bits, est_bits)


@pytest.mark.parametrize("model", sorted(SETTINGS))
def test_higher_quality_gives_more_bytes_and_higher_psnr(model, sample_rgb):
    sizes, psnrs = [], []
    for q in SETTINGS[model]:
        data = Codec.pretrained(model, q).encode(sample_rgb)
        rgb, header = decode(data)
        assert header.quality == q and rgb.shape == sample_rgb.shape
        sizes.append(len(data))
        psnrs.append(psnr(torch.tensor(rgb, dtype=torch.float32), torch.tensor(sample_rgb, dtype=torch.float32), 255))
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes)
    assert psnrs == sorted(psnrs)
