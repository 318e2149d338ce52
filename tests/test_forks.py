"""benchmarks/forks.py: the equal-steps comparison of forks of one training state."""

from pathlib import Path

import pytest

from testkit import load_script

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
COLS = "step,time,lr,loss,val_bpp_q1,val_psnr_q1,val_bpp_q4,val_psnr_q4,val_bpp_q8,val_psnr_q8"


def _log(path: Path, last: str) -> Path:
    path.mkdir()
    (path / "log.csv").write_text(f"{COLS}\n100,0,1e-4,1.0,,,,,,\n200,0,1e-4,1.0,{last}\n250,0,1e-4,1.0,,,,,,\n")
    return path


def test_rd_cost_change_against_the_first_fork(tmp_path):
    forks = load_script(BENCH / "forks.py", "forks_bench")
    a = forks.last_validation(_log(tmp_path / "a", "0.2,26,0.6,29,1.6,31") / "log.csv")
    b = forks.last_validation(_log(tmp_path / "b", "0.2,27,0.6,29,1.7,31") / "log.csv")
    assert a["step"] == 200 and a["val_psnr_q1"] == 26.0  # the last row with validation, not the last row
    rows = forks.compare({"a": a, "b": b})
    assert [r["fork"] for r in rows] == ["a", "b"] and all(r["weights"] == "weights" for r in rows)
    assert all(rows[0][f"q{q}"]["rd_cost_vs_first_pct"] == 0 for q in (1, 4, 8))
    assert rows[1]["q4"]["rd_cost_vs_first_pct"] == pytest.approx(0)
    # q1: 1 dB better at the same rate lowers the cost; q8: more rate at the same PSNR raises it
    assert rows[1]["q1"]["rd_cost_vs_first_pct"] < 0 < rows[1]["q8"]["rd_cost_vs_first_pct"]
    cost = 0.2 + 0.0018 * 255**2 * 10 ** -2.6
    assert rows[0]["q1"]["rd_cost"] == pytest.approx(cost)
