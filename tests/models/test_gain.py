import math

import pytest
import torch

from licodec.models.gain import GainUnits
from licodec.rate import LAMBDAS


def test_initial_gains_follow_sqrt_lambda_and_are_inverse():
    g = GainUnits(3, 8)
    q = torch.tensor([1.0, 8.0])
    gain, inv = g.gain(q), g.inverse_gain(q)
    assert gain.shape == (2, 3, 1, 1)
    assert torch.allclose(gain * inv, torch.ones_like(gain))
    assert (gain[1] / gain[0]).flatten()[0].item() == pytest.approx(math.sqrt(LAMBDAS[8] / LAMBDAS[1]), rel=1e-5)


def test_interpolation_is_exponential_between_levels():
    g = GainUnits(2, 8)
    with torch.no_grad():
        g.log_gain.normal_()
    a, b, mid = (g.gain(torch.tensor([q])) for q in (3.0, 4.0, 3.25))
    assert torch.allclose(mid, a**0.75 * b**0.25, rtol=1e-5)


def test_center_makes_the_donor_quality_neutral():
    g = GainUnits(2, 8)
    before = g.gain(torch.tensor([8.0])) / g.gain(torch.tensor([1.0]))
    g.center(3)
    assert torch.allclose(g.gain(torch.tensor([3.0])), torch.ones(1, 2, 1, 1))
    assert torch.allclose(g.inverse_gain(torch.tensor([3.0])), torch.ones(1, 2, 1, 1))
    assert torch.allclose(g.gain(torch.tensor([8.0])) / g.gain(torch.tensor([1.0])), before)


@pytest.mark.parametrize("levels", [1, 9])
def test_levels_out_of_range(levels):
    with pytest.raises(ValueError):
        GainUnits(2, levels)
