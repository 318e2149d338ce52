"""licodec.metrics.rd_loss with per-image weights (variable-rate training's --rate-balance)."""

import pytest
import torch

from licodec.metrics import rd_loss


def _out(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(2, 3, 16, 16, generator=g)
    out = {"x_hat": x + 0.05 * torch.randn(x.shape, generator=g),
           "likelihoods": {"y": torch.rand(2, 4, 2, 2, generator=g) * 0.9 + 0.05,
                           "z": torch.rand(2, 2, 1, 1, generator=g) * 0.9 + 0.05}}
    return out, x


def test_weights_scale_each_image_s_loss():
    out, x = _out()
    lam = torch.tensor([0.0018, 0.18])
    plain = rd_loss(out, x, lam)
    assert rd_loss(out, x, lam, torch.ones(2))["loss"].item() == pytest.approx(plain["loss"].item(), rel=1e-6)
    # by hand: per image λ·255²·MSE + its own bits per pixel, weighted, then the batch mean
    mse = ((out["x_hat"] - x) ** 2).mean(dim=(1, 2, 3))
    bpp = sum(-torch.log2(v).sum(dim=(1, 2, 3)) for v in out["likelihoods"].values()) / (16 * 16)
    w = torch.tensor([3.0, 0.5])
    expected = (w * (lam * mse * 255**2 + bpp)).mean()
    t = rd_loss(out, x, lam, w)
    assert t["loss"].item() == pytest.approx(expected.item(), rel=1e-6)
    assert t["loss"].item() != pytest.approx(plain["loss"].item(), rel=1e-3)
    assert t["bpp"].item() == pytest.approx(plain["bpp"].item()) and t["mse"].item() == pytest.approx(plain["mse"].item())
