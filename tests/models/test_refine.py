"""Encoder effort (`licodec.models.refine`): refined latents code with the unchanged decoder."""

import numpy as np
import pytest
import torch

from conftest import TINY_CONFIGS, tiny_model
from licodec.codec import Codec, decode, to_uint8_tensor
from licodec.models import refine
from licodec.weights import save_weights


@pytest.fixture(scope="module")
def rgb(sample_rgb):
    return np.ascontiguousarray(sample_rgb[:96, :128])


def _codec(tmp_path, name, effort, **kw):
    path = tmp_path / f"{name}.safetensors"
    if not path.exists():
        save_weights(tiny_model(name, **kw), path, quality=None if kw.get("rate_levels") else 3)
    return Codec.from_weights(path, effort=effort), path


def _loud(model):
    """A random-init model's latents are ~0.03 and all round to 0: nothing to refine. Scaled up to
    ~1 (the last layer of g_a), rounding matters, as in a trained model."""
    with torch.no_grad():
        model.g_a[-1].weight.mul_(30)
        model.g_a[-1].bias.mul_(30)
    return model


def test_effort_lowers_the_coded_loss_and_never_raises_it(rgb):
    m, x = _loud(tiny_model("mbt2018-mean")), to_uint8_tensor(rgb, "cpu")
    y0, z0 = m.analysis_latents(x, 3)
    start = refine.coded_loss(m, x, 3, m.compress_latents(y0, z0))
    losses = {effort: refine.coded_loss(m, x, 3, m.compress(x, 3, effort=effort)) for effort in (1, 2)}
    assert start * 0.995 > losses[1] > losses[2]  # measured: 27.55 -> 27.27 -> 27.00
    quiet = tiny_model("mbt2018-mean")  # nothing to gain: the starting latents are coded
    y0, z0 = quiet.analysis_latents(x, 3)
    assert quiet.compress(x, 3, effort=2).streams == quiet.compress_latents(y0, z0).streams


def test_effort_zero_is_the_plain_encoder(tmp_path, rgb):
    c0, path = _codec(tmp_path, "mbt2018-mean", 0)
    m, x = c0.model, to_uint8_tensor(rgb, "cpu")
    y0, z0 = m.analysis_latents(x, c0.quality)
    assert m.compress(x, c0.quality).streams == m.compress_latents(y0, z0).streams
    assert Codec.from_weights(path, effort=0).encode(rgb) == c0.encode(rgb)


@pytest.mark.parametrize("name", sorted(TINY_CONFIGS))
def test_every_model_decodes_its_refined_latents_exactly(tmp_path, rgb, name):
    c, path = _codec(tmp_path, name, 1)
    data = c.encode(rgb)
    assert data == Codec.from_weights(path, effort=1).encode(rgb)  # the same bytes twice
    out, header = decode(data, weights=path)  # the latent checksum is verified inside
    assert out.shape == rgb.shape and header.model == name


def test_variable_rate_fractional_quality_and_tiles(tmp_path, rgb):
    path = tmp_path / "vr.safetensors"
    torch.manual_seed(0)
    save_weights(tiny_model("mbt2018-mean", rate_levels=8), path, quality=None)
    c = Codec.from_weights(path, quality=3.5, effort=1, tile=64)  # 96x128 > 64: refined tile by tile
    seen = []
    from licodec.progress import reporting

    with reporting(lambda *a: seen.append(a)):
        data = c.encode(rgb)
    steps = [s for s in seen if s[0] == refine.STAGE]
    assert steps[-1] == (refine.STAGE, 10 * 4, 10 * 4)  # 2x2 tiles of 10 steps
    out, header = decode(data, weights=path)
    assert header.quality == 3.5 and out.shape == rgb.shape


def test_tiled_refinement_margin_covers_the_synthesis_reach():
    """Each refined tile of y carries g_s's reach (the runner's margin, in latent positions) around it,
    rounded up to whole z positions: a han2024-cca with the paper's block counts reaches 8 positions."""
    from licodec.codec.runner import coding
    from licodec.models import create_model

    torch.manual_seed(0)
    m = create_model("han2024-cca", {**TINY_CONFIGS["han2024-cca"], "naf_blocks": [4, 4, 4], "res_blocks": 3}).eval()
    with coding(m, tile=128):
        reach = m.runner.margins(m)[1]
        assert reach == 8
        assert refine._tile_in_y(m, 128, 128, 16, 4) == (0, 0)  # not larger than the tile: refined whole
        assert refine._tile_in_y(m, 96, 256, 16, 4) == (8, 8)  # 128 px = 8 y positions; the margin covers the reach
    with coding(m, tile=192):
        assert refine._tile_in_y(m, 256, 64, 16, 4) == (12, 8)


def test_effort_levels_are_checked():
    assert refine.check_effort("max") == refine.MAX_EFFORT == max(refine.EFFORT_STEPS)
    for bad in (-1, refine.MAX_EFFORT + 1, 1.5, True, "2", None):
        with pytest.raises(ValueError):
            refine.check_effort(bad)


def test_sga_round_anneals_to_rounding():
    from licodec.entropy.quantize import sga_round

    v = torch.linspace(-3, 3, 101, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    cold = sga_round(v, 1e-3, g)
    clear = ((v - torch.floor(v)) - 0.5).abs() > 0.05  # away from the ties
    assert ((cold - torch.round(v)).abs()[clear] < 1e-3).all()
    warm = sga_round(v.requires_grad_(), 0.5, g)
    warm.sum().backward()
    assert v.grad is not None and torch.isfinite(v.grad).all() and ((warm - torch.floor(v)).abs() <= 1 + 1e-9).all()
