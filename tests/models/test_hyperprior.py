"""Hyperprior models (Ballé 2018, Minnen 2018): what is specific to them.
Round trip, determinism, checksums and training are covered for every model in test_all_models.py."""

import torch

from conftest import HYPERPRIOR_MODELS, tiny_model


def test_scale_hyperprior_is_zero_mean_and_mean_scale_is_not():
    psi = torch.randn(1, 48, 2, 2)
    mu, sigma = tiny_model("bmshj2018-hyperprior").gaussian_parameters(psi[:, :24])
    assert torch.equal(mu, torch.zeros_like(mu)) and torch.equal(sigma, psi[:, :24])
    mu, sigma = tiny_model("mbt2018-mean").gaussian_parameters(psi)
    assert torch.equal(sigma, psi[:, :24]) and torch.equal(mu, psi[:, 24:])


def test_forward_pads_like_compress():
    for name in HYPERPRIOR_MODELS:
        m = tiny_model(name)
        out = m(torch.rand(1, 3, 37, 91))
        assert out["x_hat"].shape == (1, 3, 37, 91)
        assert out["likelihoods"]["y"].shape == (1, 24, 4, 8)
