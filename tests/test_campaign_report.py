"""benchmarks/campaign.py's rule for "beats the current default": a point against a curve."""

from pathlib import Path

import pytest

from testkit import load_script

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def campaign():
    return load_script(BENCH / "campaign.py", "campaign_bench")  # imports benchmarks/pausing.py beside it


CURVE = [{"bpp": 0.2, "psnr": 27.0}, {"bpp": 0.4, "psnr": 29.0}, {"bpp": 1.1, "psnr": 30.0}]


def test_within_the_curve_linear_in_log_rate(campaign):
    assert campaign.psnr_above({"bpp": 0.4, "psnr": 29.5}, CURVE) == pytest.approx(0.5)
    assert campaign.psnr_above({"bpp": 0.2 * 2**0.5, "psnr": 28.0}, CURVE) == pytest.approx(0.0)  # half way in log
    assert campaign.psnr_above({"bpp": 0.3, "psnr": 27.5}, CURVE) < 0


def test_outside_the_curve_against_its_end_points(campaign):
    # past the highest rate: better only with a PSNR the curve never reaches
    assert campaign.psnr_above({"bpp": 1.7, "psnr": 30.4}, CURVE) == pytest.approx(0.4)
    assert campaign.psnr_above({"bpp": 1.7, "psnr": 29.0}, CURVE) == pytest.approx(-1.0)
    # below the lowest rate: better only if at least as good as the lowest point with fewer bits
    assert campaign.psnr_above({"bpp": 0.15, "psnr": 27.2}, CURVE) == pytest.approx(0.2)
    assert campaign.psnr_above({"bpp": 0.15, "psnr": 26.0}, CURVE) < 0


def test_the_average_is_evaluated_only_at_the_state_s_step(campaign, tmp_path):
    import torch

    from licodec.ema import WeightEMA

    path = tmp_path / "ema.safetensors"
    assert not campaign._average_of(path, 5)
    WeightEMA(torch.nn.Linear(2, 1), 0.999).save(path, 5)
    assert campaign._average_of(path, 5) and not campaign._average_of(path, 6)
