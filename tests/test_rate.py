import math

import pytest
import torch

from licodec.rate import LAMBDAS, check_quality, lambda_for, level_weights


def test_lambda_ladder_and_interpolation():
    for q, lam in LAMBDAS.items():
        assert lambda_for(q) == pytest.approx(lam, rel=1e-12)
    assert lambda_for(3.5) == pytest.approx(math.sqrt(LAMBDAS[3] * LAMBDAS[4]), rel=1e-12)
    t = lambda_for(torch.tensor([1.0, 2.25, 8.0], dtype=torch.float64))
    assert t[0].item() == pytest.approx(LAMBDAS[1]) and t[2].item() == pytest.approx(LAMBDAS[8])
    assert LAMBDAS[2] < t[1].item() < LAMBDAS[3]


def test_level_weights_are_hat_functions():
    w = level_weights(torch.tensor([1.0, 3.0, 3.25, 8.0]), 8)
    assert torch.equal(w[1], torch.eye(8)[2])  # integer quality: exactly one level
    assert w[2, 2].item() == pytest.approx(0.75) and w[2, 3].item() == pytest.approx(0.25)
    assert torch.allclose(w.sum(1), torch.ones(4))


@pytest.mark.parametrize("bad", [0.5, 8.01, float("nan"), "x", None])
def test_check_quality_refuses(bad):
    with pytest.raises(ValueError):
        check_quality(bad)


def test_balance_weights():
    from licodec.rate import balance_weights

    q = torch.arange(1.0, 9.0)
    assert torch.allclose(balance_weights(q, 0.0), torch.ones(8))
    w = balance_weights(q, 1.0)
    assert w.mean().item() == pytest.approx(1.0, rel=1e-6)  # mean 1 over the ladder
    assert (w[0] / w[7]).item() == pytest.approx(LAMBDAS[8] / LAMBDAS[1], rel=1e-5)  # power 1: ∝ 1/λ
    half = balance_weights(q, 0.5)
    assert (half[0] / half[7]).item() == pytest.approx((LAMBDAS[8] / LAMBDAS[1]) ** 0.5, rel=1e-5)
    assert all(a > b for a, b in zip(half, half[1:]))  # lower qualities weigh more
