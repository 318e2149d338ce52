"""benchmarks/vr_balance.py: per-quality PSNRs and gradient norms of a variable-rate model."""

from pathlib import Path

import torch

from conftest import tiny_model
from testkit import load_script

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def test_measure_reports_every_quality_and_leaves_the_model_untouched():
    vrb = load_script(BENCH / "vr_balance.py", "vr_balance_bench")
    model = tiny_model("mbt2018-mean", seed=0, rate_levels=8).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    g = torch.Generator().manual_seed(0)
    val = [torch.rand(1, 3, 64, 64, generator=g)]
    batch = torch.rand(2, 3, 64, 64, generator=g)
    rows = vrb.measure(model, val, batch, range(1, 9))
    assert [r["quality"] for r in rows] == list(range(1, 9))
    for r in rows:
        assert r["grad_g_a"] > 0 and r["grad_g_s"] > 0 and r["grad_h_a, h_s"] > 0
        assert 0 < r["bpp_forward"] and all(5 < r[k] < 60 for k in ("psnr_unquantized", "psnr_rounded", "psnr_forward"))
    # the loss weighs distortion by λ(q): it grows with the quality on the same batch and noise
    assert all(a["loss"] < b["loss"] for a, b in zip(rows, rows[1:]))
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items()) and not model.training
