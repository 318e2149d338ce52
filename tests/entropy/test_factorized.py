import torch

from licodec.entropy.coder import RangeDecoder, RangeEncoder
from licodec.entropy.factorized import Z_RANGE, FactorizedPrior


def test_likelihoods_sum_to_one_per_channel():
    torch.manual_seed(0)
    fp = FactorizedPrior(4, init_scale=2.0)
    tables = fp.tables()
    assert len(tables) == 4
    k = torch.arange(-Z_RANGE, Z_RANGE + 1, dtype=torch.float64).expand(4, 1, -1)
    s = fp._likelihood(k).sum(-1)
    assert torch.allclose(s, torch.ones_like(s), atol=1e-6)


def test_training_mode_uses_noise_for_rate_and_rounding_for_output():
    torch.manual_seed(0)
    fp = FactorizedPrior(3).train()
    z = (torch.randn(2, 3, 4, 4) * 3).requires_grad_()
    z_hat, lik = fp(z)
    assert torch.equal(z_hat, torch.round(z))
    assert lik.shape == z.shape and torch.all(lik > 0) and torch.all(lik <= 1)
    (g,) = torch.autograd.grad(z_hat.sum(), z)
    assert torch.equal(g, torch.ones_like(z))  # straight-through rounding
    fp.eval()
    z_eval, _ = fp(z)
    assert torch.equal(z_eval, torch.round(z))


def test_compress_decompress_exact_with_clamping():
    torch.manual_seed(0)
    fp = FactorizedPrior(3)
    z = torch.randn(1, 3, 5, 6) * 3
    z[0, 0, 0, 0] = 1000.0  # outside the coded support: clamped on both sides
    enc = RangeEncoder()
    z_hat = fp.compress(enc, z, fp.tables())
    assert z_hat[0, 0, 0, 0] == Z_RANGE
    out = fp.decompress(RangeDecoder(enc.finish()), z.shape, fp.tables(), "cpu")
    assert torch.equal(out, z_hat)


def test_tables_identical_across_thread_counts():
    torch.manual_seed(0)
    fp = FactorizedPrior(8)
    n = torch.get_num_threads()
    k = torch.arange(-Z_RANGE, Z_RANGE + 1, dtype=torch.float64).expand(8, 1, -1)
    try:
        torch.set_num_threads(1)
        a = fp._likelihood(k)
        torch.set_num_threads(2)
        b = fp._likelihood(k)
    finally:
        torch.set_num_threads(n)
    assert torch.equal(a, b)
