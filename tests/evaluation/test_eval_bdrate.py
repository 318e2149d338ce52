import math

import numpy as np
import pytest

from licodec.evaluation.bdrate import bd_rate, monotone_points

RATE = [0.12, 0.25, 0.48, 0.81, 1.35]
PSNR = [26.1, 28.9, 31.7, 34.2, 36.8]


def test_curve_against_itself_is_zero():
    assert bd_rate(RATE, PSNR, RATE, PSNR) == pytest.approx(0.0, abs=1e-9)


def test_rate_scaled_by_0_9_is_minus_10_percent():
    assert bd_rate(RATE, PSNR, [0.9 * r for r in RATE], PSNR) == pytest.approx(-10.0, abs=0.1)
    assert bd_rate([0.9 * r for r in RATE], PSNR, RATE, PSNR) == pytest.approx(100 / 0.9 - 100, abs=0.1)


def test_independent_of_point_order_and_of_points_off_the_overlap():
    order = [3, 0, 4, 1, 2]
    test_r, test_d = [0.8 * r for r in RATE], [d + 0.3 for d in PSNR]
    ref = bd_rate(RATE, PSNR, test_r, test_d)
    assert ref < 0
    assert bd_rate(np.take(RATE, order), np.take(PSNR, order), np.take(test_r, order), np.take(test_d, order)) == ref


def test_higher_quality_at_the_same_rate_is_a_saving():
    assert bd_rate(RATE, PSNR, RATE, [d + 1 for d in PSNR]) < -5


def test_undefined_without_overlap_or_points():
    assert math.isnan(bd_rate(RATE, PSNR, RATE, [d + 20 for d in PSNR]))
    assert math.isnan(bd_rate(RATE, PSNR, [0.5], [30.0]))


def test_dominated_points_are_dropped():
    r, d = monotone_points([0.5, 0.2, 0.4, 0.6], [30.0, 27.0, 30.5, 29.0])
    assert r.tolist() == [0.2, 0.4] and d.tolist() == [27.0, 30.5]
    with pytest.raises(ValueError):
        monotone_points([0.0, 1.0], [20.0, 30.0])
