"""scripts/gpu_leg.py, the campaign's GPU leg, on tiny stand-ins: what travels, the trip back, and
that the files held aside always come back."""

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from testkit import load_script

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_leg.py"


@pytest.fixture(scope="module")
def leg():
    return load_script(SCRIPT, "gpu_leg")


def state(path: Path, step: int, keys=("model.w", "optim.0.exp_avg", "optim.0.exp_avg_sq", "optim.0.step")) -> Path:
    torch.manual_seed(step)
    save_file({k: torch.randn(64) for k in keys}, str(path), metadata={"step": str(step)})
    return path


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def repo(tmp_path):
    """A git repository shaped like licodec's: a campaign state and log, shipped weights, other files."""
    root = tmp_path / "repo"
    (root / "campaign").mkdir(parents=True)
    (root / "src/licodec/weights").mkdir(parents=True)
    state(root / "campaign/checkpoint.safetensors", 10)
    (root / "campaign/log.csv").write_text("step,loss\n5,2.0\n10,1.5\n")
    (root / "src/licodec/weights/m.safetensors").write_bytes(b"w" * 5000)
    (root / "README.md").write_text("readme\n")
    (root / ".gitignore").write_text("/.gpu/\n/.gpu-hold/\n")
    git(root, "init", "-q")
    git(root, "add", ".")
    git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "x")
    return root


def test_strip_first_moments_keeps_everything_else(leg, tmp_path):
    src = state(tmp_path / "s.safetensors", 3)
    left_out = leg.strip_first_moments(src, tmp_path / "t.safetensors")
    assert left_out > 64 * 4
    h = leg.header(tmp_path / "t.safetensors")
    assert set(h) == {"__metadata__", "model.w", "optim.0.exp_avg_sq", "optim.0.step"}
    assert leg.state_step(tmp_path / "t.safetensors") == 3


def test_split_and_join_round_trip_and_check(leg, tmp_path):
    src = state(tmp_path / "s.safetensors", 7)
    log = tmp_path / "log.csv"
    log.write_text("step\n7\n")
    m = leg.split(src, log, tmp_path / "out", part=300)
    assert len(m["parts"]) == -(-src.stat().st_size // 300) > 1 and m["step"] == 7
    assert all((tmp_path / "out" / p).stat().st_size <= 300 for p in m["parts"])
    assert leg.join(tmp_path / "out", tmp_path / "j.safetensors") == 7
    assert (tmp_path / "j.safetensors").read_bytes() == src.read_bytes()
    part = tmp_path / "out" / m["parts"][1]
    part.write_bytes(b"x" + part.read_bytes()[1:])  # one byte changed on the way
    with pytest.raises(leg.LegError, match="does not match"):
        leg.join(tmp_path / "out", tmp_path / "j.safetensors")
    assert not (tmp_path / "j.safetensors").exists()
    with pytest.raises(leg.LegError, match="manifest"):
        leg.join(tmp_path / "nothing", tmp_path / "j.safetensors")
    (tmp_path / "out" / m["parts"][0]).unlink()  # a part that did not come back
    with pytest.raises(leg.LegError, match="did not come back"):
        leg.join(tmp_path / "out", tmp_path / "j.safetensors")
    assert not (tmp_path / "j.safetensors").exists()


def test_hold_and_restore(leg, repo):
    before = leg.travel_size(repo, Path(".gpu"))
    held = leg.hold(repo)
    assert sorted(p.as_posix() for p in held) == ["campaign/checkpoint.safetensors", "src/licodec/weights/m.safetensors"]
    assert not (repo / "campaign/checkpoint.safetensors").exists()
    assert "checkpoint" not in git(repo, "ls-files") and "m.safetensors" not in git(repo, "ls-files")
    size = (repo / ".gpu-hold/campaign/checkpoint.safetensors").stat().st_size + 5000
    assert leg.travel_size(repo, Path(".gpu")) == before - size  # neither travels
    with pytest.raises(leg.LegError, match="packed already"):
        leg.hold(repo)
    assert leg.restore(repo) == held
    assert git(repo, "status", "--porcelain") == "" and not (repo / ".gpu-hold").exists()
    assert leg.restore(repo) == []  # nothing held: nothing to do


def test_photos_fit_the_budget_at_their_own_scale(leg, tmp_path):
    src = tmp_path / "photos"
    src.mkdir()
    rng = np.random.default_rng(0)
    sizes = [(640, 480), (300, 260), (1000, 400)]
    for i, (w, h) in enumerate(sizes):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(src / f"p{i}.png")
    budget = 600_000
    r = leg.pack_photos(src, tmp_path / "out", budget, patch=256)
    files = sorted((tmp_path / "out").glob("*.jpg"))
    assert [f.stem for f in files] == ["p0", "p1", "p2"] and r["photos"] == 3
    assert r["bytes"] == sum(f.stat().st_size for f in files) <= budget
    got = [Image.open(f).size for f in files]
    assert all(min(s) >= 256 for s in got)
    assert all(g[0] <= w and g[1] <= h for g, (w, h) in zip(got, sizes))
    assert got[1] == (300, 260)  # below the cap: whole
    assert got[0][0] * got[0][1] <= r["max_pixels"] * 1.01 < 640 * 480  # cut, not scaled: the centre
    a = np.asarray(Image.open(src / "p0.png"), dtype=float)
    w, h = got[0]
    centre = a[(480 - h) // 2 : (480 - h) // 2 + h, (640 - w) // 2 : (640 - w) // 2 + w]
    assert np.abs(np.asarray(Image.open(files[0]), dtype=float) - centre).mean() < 12  # JPEG q90 of noise
    with pytest.raises(leg.LegError, match="do not fit"):
        leg.pack_photos(src, tmp_path / "out2", 1000, patch=256)


def test_unpack_installs_only_a_state_that_continues_the_run(leg, repo, tmp_path):
    leg.hold(repo)
    back = tmp_path / "back"
    log = tmp_path / "log.csv"
    log.write_text("step,loss\n5,2.0\n10,1.5\n50,1.1\n")
    leg.split(state(tmp_path / "old.safetensors", 10), log, back)  # not past the CPU state's step
    with pytest.raises(leg.LegError, match="not past"):
        leg.unpack(repo, back)
    assert git(repo, "status", "--porcelain") == ""  # held files restored, nothing replaced
    leg.hold(repo)
    leg.split(state(tmp_path / "new.safetensors", 50, keys=("model.w",)), log, back)
    with pytest.raises(leg.LegError, match="lacks"):
        leg.unpack(repo, back)
    leg.hold(repo)
    (tmp_path / "bad.csv").write_text("step,loss\n5,9.9\n50,1.1\n")
    leg.split(state(tmp_path / "new.safetensors", 50), tmp_path / "bad.csv", back)
    with pytest.raises(leg.LegError, match="does not continue"):
        leg.unpack(repo, back)
    assert git(repo, "status", "--porcelain") == ""
    leg.hold(repo)
    (repo / ".gpu").mkdir()
    leg.split(state(tmp_path / "new.safetensors", 50), log, back)
    assert leg.unpack(repo, back) == {"from_step": 10, "to_step": 50}
    assert (repo / "campaign/checkpoint.safetensors").read_bytes() == (tmp_path / "new.safetensors").read_bytes()
    assert (repo / "campaign/log.csv").read_text() == log.read_text()
    assert sorted(git(repo, "status", "--porcelain").split("\n")[:-1]) == [
        " M campaign/checkpoint.safetensors", " M campaign/log.csv"]
    assert not (repo / ".gpu").exists() and not (repo / ".gpu-hold").exists()


def test_pack_refuses_while_the_campaign_trains(leg, repo, monkeypatch):
    monkeypatch.setattr(leg, "campaign_running", lambda root: [4242])
    with pytest.raises(leg.LegError, match="PID 4242"):
        leg.pack(repo)
    assert git(repo, "status", "--porcelain") == "" and not (repo / ".gpu").exists()


def test_split_needs_only_the_standard_library(tmp_path):
    """The device runs `split` before anything of licodec is installed there."""
    src = state(tmp_path / "s.safetensors", 4)
    log = tmp_path / "log.csv"
    log.write_text("step\n")
    out = subprocess.run(["python3", "-S", "-c", f"import runpy, sys; sys.argv = ['gpu_leg', 'split', '{src}', "
                          f"'{log}', '{tmp_path / 'out'}']; runpy.run_path('{SCRIPT}', run_name='__main__')"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["step"] == 4
