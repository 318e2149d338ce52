
import torch

from licodec.entropy.coder import RangeDecoder, RangeEncoder
from licodec.entropy.gaussian import (
    MEAN_STEP, SCALE_LEVELS, GaussianConditional, gaussian_likelihood, gaussian_tables, quantize_mean,
    scale_index, scale_table,
)


def test_likelihood_sums_to_one_over_integers():
    k = torch.arange(-200, 201, dtype=torch.float64)
    for mu, s in [(0.0, 0.2), (0.3, 1.0), (-2.7, 10.0)]:
        p = gaussian_likelihood(k, torch.tensor(mu, dtype=torch.float64), torch.tensor(s, dtype=torch.float64))
        assert abs(p.sum().item() - 1) < 1e-6


def test_scale_index_is_nearest_in_log_space():
    t = scale_table()
    idx = scale_index(torch.tensor(t, dtype=torch.float32) * 1.01)
    assert idx.tolist() == list(range(SCALE_LEVELS))
    assert scale_index(torch.tensor([1e-5, 1e5])).tolist() == [0, SCALE_LEVELS - 1]


def test_tables_are_built_once_and_match_the_scales():
    a, b = gaussian_tables(), gaussian_tables()
    assert a is b and len(a) == SCALE_LEVELS
    _, low, size = a.table(SCALE_LEVELS - 1)
    assert low <= -24 * scale_table()[-1] and size == 1 - 2 * low


def test_compress_decompress_exact_and_on_mean_grid():
    torch.manual_seed(0)
    y = torch.randn(2, 5, 7, 3) * 4
    mu = torch.randn_like(y)
    sigma = torch.rand_like(y) * 5
    enc = RangeEncoder()
    y_hat = GaussianConditional().compress(enc, y, mu, sigma)
    out = GaussianConditional().decompress(RangeDecoder(enc.finish()), mu, sigma)
    assert torch.equal(out, y_hat)
    # ŷ = integer + μ_q, and rounding is around the (snapped) mean
    assert torch.all(((y_hat - quantize_mean(mu)) - torch.round(y_hat - quantize_mean(mu))) == 0)
    assert torch.all((y_hat - y).abs() <= 0.5 + MEAN_STEP)


def test_rate_close_to_information_content():
    torch.manual_seed(0)
    sigma = torch.full((20000,), 3.0)
    mu = torch.zeros(20000)
    y = torch.randn(20000) * 3
    enc = RangeEncoder()
    y_hat = GaussianConditional().compress(enc, y, mu, sigma)
    bits = 8 * len(enc.finish())
    est = -torch.log2(gaussian_likelihood(y_hat, mu, sigma)).sum().item()
    assert abs(bits - est) / est < 0.01


def test_integer_latents_mode_codes_round_y_with_fractional_means():
    torch.manual_seed(0)
    gc = GaussianConditional(round_around_mean=False).eval()
    y = torch.randn(4000) * 3
    mu = y + torch.randn(4000) * 0.7  # informative, fractional means
    sigma = torch.full_like(y, 0.8)
    enc = RangeEncoder()
    y_hat = gc.compress(enc, y, mu, sigma)
    assert torch.equal(y_hat, torch.round(y))
    data = enc.finish()
    assert torch.equal(gc.decompress(RangeDecoder(data), mu, sigma), y_hat)
    est = -torch.log2(gaussian_likelihood(y_hat, mu, sigma)).sum().item()
    assert abs(8 * len(data) - est) / est < 0.01
    assert torch.equal(gc(y, mu, sigma)[0], torch.round(y))
