"""Training: a few steps on a tiny config, checkpoint + exact resume, export, LR schedules, TensorBoard."""

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from conftest import TINY_CONFIGS, train_args
from licodec import train
from licodec.weights import load_weights

FIXED = ("mbt2018-mean", {"N": 8, "M": 12}, [])
# variable rate on the model it is meant for, with the cosine schedule (resumed by step alone)
VARIABLE = ("han2024-cca", TINY_CONFIGS["han2024-cca"], ["--variable-rate", "--lr-schedule", "cosine"])


def _args(tmp_path, out, steps, resume=False, stop_at=None, setup=FIXED, extra=()):
    model, config, flags = setup
    return train_args(
        "-m", model, "--config", json.dumps(config), "--data", tmp_path / "imgs",
        "--val", tmp_path / "imgs", "--out", tmp_path / out, "--steps", steps,
        "--batch-size", "2", "--patch", "64", "--val-every", "2", "--checkpoint-minutes", "0",
        *flags, *extra,
        *(["--resume"] if resume else []), *(["--stop-at", stop_at] if stop_at else []),
    )


def log_rows(path):
    """log.csv without its wall-clock column: step, lr, loss, bpp, psnr and the val columns."""
    lines = path.read_text().splitlines()
    return [[c for i, c in enumerate(line.split(",")) if i != 1] for line in lines]


def assert_same_tensors(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("setup", [FIXED, VARIABLE], ids=["fixed-rate", "variable-rate"])
def test_resume_continues_exactly(tmp_path, train_images, setup):
    full = train.run(_args(tmp_path, "a", 4, setup=setup))
    train.run(_args(tmp_path, "b", 4, stop_at=2, setup=setup))
    assert [r[0] for r in log_rows(tmp_path / "b" / "log.csv")[1:]] == ["2"]  # stopped at step 2
    assert not list((tmp_path / "b").glob("*-q*.safetensors")) + list((tmp_path / "b").glob("*-vr.safetensors"))
    resumed = train.run(_args(tmp_path, "b", 4, resume=True, setup=setup))
    rows = log_rows(tmp_path / "a" / "log.csv")
    assert [r[0] for r in rows[1:]] == ["2", "4"]
    assert rows == log_rows(tmp_path / "b" / "log.csv")  # losses, lr, bpp, psnr and validation alike
    # the last checkpoints agree in everything: weights, Adam moments, every RNG state
    assert_same_tensors(load_file(tmp_path / "a" / train.CKPT), load_file(tmp_path / "b" / train.CKPT))
    ma, _ = load_weights(full)
    mb, info = load_weights(resumed)
    assert info["extra"]["steps"] == 4
    assert_same_tensors(ma.state_dict(), mb.state_dict())
    if setup is VARIABLE:
        assert mb.variable_rate and info["quality"] is None and full.name == "han2024-cca-vr.safetensors"
        assert "val_psnr_q8" in log_rows(tmp_path / "a" / "log.csv")[0]


def test_bf16_moments_halve_the_state_and_resume(tmp_path, train_images):
    train.run(_args(tmp_path, "f", 4, stop_at=2))
    train.run(_args(tmp_path, "h", 4, stop_at=2, extra=("--state-moments", "bf16")))
    full, half = load_file(tmp_path / "f" / train.CKPT), load_file(tmp_path / "h" / train.CKPT)
    moments = [k for k in full if k.endswith((".exp_avg", ".exp_avg_sq"))]
    assert moments and all(half[k].dtype == torch.bfloat16 and full[k].dtype == torch.float32 for k in moments)
    assert all(torch.equal(full[k], half[k]) for k in full if k not in moments)  # weights, step, RNG: exact
    assert all(torch.equal(full[k].to(torch.bfloat16), half[k]) for k in moments)
    assert (tmp_path / "h" / train.CKPT).stat().st_size < (tmp_path / "f" / train.CKPT).stat().st_size
    train.run(_args(tmp_path, "h", 4, resume=True, extra=("--state-moments", "bf16")))
    rows = log_rows(tmp_path / "h" / "log.csv")
    assert [r[0] for r in rows[1:]] == ["2", "4"] and all(math.isfinite(float(c)) for c in rows[-1][1:4])


def test_state_without_first_moments_resumes_with_them_at_zero(tmp_path, train_images):
    """A state packed for travel without Adam's exp_avg (scripts/gpu_leg.py) resumes: the first
    moments start at zero, the second moments, weights, step and RNG states are those stored."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from licodec.models import create_model

    train.run(_args(tmp_path, "m", 4, stop_at=2))
    ckpt = tmp_path / "m" / train.CKPT
    full = load_file(ckpt)
    with safe_open(str(ckpt), framework="pt") as f:
        meta = f.metadata()
    assert json.loads(meta["clock"])["gpu_s"] == 0.0  # trained on the CPU
    save_file({k: v for k, v in full.items() if not k.endswith(".exp_avg")}, str(ckpt), metadata=meta)
    model = create_model("mbt2018-mean", FIXED[1])
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    assert train.load_checkpoint(ckpt, model, opt, torch.Generator()) == 2
    states = [opt.state[p] for p in model.parameters()]
    assert states and all(not st["exp_avg"].any() for st in states)
    sq = sorted(k for k in full if k.endswith(".exp_avg_sq"))
    assert all(torch.equal(opt.state_dict()["state"][int(k.split(".")[1])]["exp_avg_sq"], full[k]) for k in sq)
    train.run(_args(tmp_path, "m", 4, resume=True))
    resumed = load_file(ckpt)
    assert resumed.keys() == full.keys()  # a full state again
    assert any(resumed[k].any() for k in full if k.endswith(".exp_avg"))
    rows = log_rows(tmp_path / "m" / "log.csv")
    assert [r[0] for r in rows[1:]] == ["2", "4"] and all(math.isfinite(float(c)) for c in rows[-1][1:4])


def test_random_mask_and_warm_start_from_another_model(tmp_path, train_images):
    from conftest import tiny_model
    from licodec.weights import save_weights

    donor = tmp_path / "mbt.safetensors"
    save_weights(tiny_model("mbt2018-mean", N=8, M=12), donor, quality=3)
    args = train_args(
        "-m", "lee2019-ctx", "--config", '{"N": 8, "M": 12}', "--data", train_images, "--val", "",
        "--out", tmp_path / "rm", "--steps", "2", "--batch-size", "2", "--patch", "64",
        "--random-mask", "--warm-start", donor, "--lr", "0",
    )
    model, info = load_weights(train.run(args))
    assert model.config.random_mask
    d, _ = load_weights(donor)
    assert (model.g_a[0].weight == d.g_a[0].weight).all()  # copied (lr 0 keeps it)


def test_step_schedule():
    a = train_args("-m", "mbt2018-mean", "--out", "x", "--steps", "1000", "--lr", "1e-4", "--lr-drop", "0.9")
    assert a.lr_schedule == "step"  # the default
    lr = lambda s: train.learning_rate(a, s)  # noqa: E731
    assert lr(0) == 1e-4 and lr(899) == 1e-4  # full rate up to the drop point
    assert lr(900) == pytest.approx(1e-5) and lr(999) == pytest.approx(1e-5) and lr(1000) == pytest.approx(1e-5)


def test_cosine_schedule():
    a = train_args("-m", "mbt2018-mean", "--out", "x", "--steps", "1000", "--lr", "1e-4", "--lr-schedule", "cosine")
    lr = lambda s: train.learning_rate(a, s)  # noqa: E731
    assert lr(0) == pytest.approx(1e-4)
    assert lr(500) == pytest.approx(1e-4 * (0.01 + 0.99 * 0.5))  # half way: the mean of the two ends
    assert lr(250) == pytest.approx(1e-4 * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi / 4))))
    assert lr(1000) == pytest.approx(1e-6)  # lr/100 at --steps ...
    assert lr(5000) == pytest.approx(1e-6)  # ... and after it
    values = [lr(s) for s in range(0, 1001, 50)]
    assert all(x > y for x, y in zip(values, values[1:]))  # strictly decreasing


def test_tensorboard_event_file(tmp_path, train_images):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train.run(_args(tmp_path, "tb", 2, extra=["--tensorboard"]))
    events = list((tmp_path / "tb" / "tensorboard").glob("events.out.tfevents.*"))
    assert len(events) == 1
    acc = EventAccumulator(str(events[0]))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert {"train/loss", "train/bpp", "train/psnr", "train/lr", "val/val_bpp", "val/val_psnr"} <= set(tags)
    assert [e.step for e in acc.Scalars("train/loss")] == [2]  # logged at the validation step
    assert acc.Scalars("train/lr")[0].value == pytest.approx(1e-5)  # step schedule: dropped at 0.9·2 = 1


def test_config_from_a_file_and_flags_from_an_args_file(tmp_path, train_images):
    import subprocess
    import sys

    cfg = tmp_path / "model.json"
    cfg.write_text('{"N": 16, "M": 24}')
    args = tmp_path / "run.args"
    args.write_text("\n".join(["train", "-m", "mbt2018-mean", "--config", str(cfg), "--data", str(train_images),
                               "--val", "", "--out", str(tmp_path / "run"), "--steps", "1", "--batch-size", "1",
                               "--patch", "64"]))
    r = subprocess.run([sys.executable, "-m", "licodec.cli", f"@{args}"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    from licodec.weights import load_weights

    model, info = load_weights(tmp_path / "run" / "mbt2018-mean-q3.safetensors")
    assert info["config"]["M"] == 24
    bad = subprocess.run([sys.executable, "-m", "licodec.cli", "train", "-m", "mbt2018-mean", "--config", "nope.json",
                          "--out", str(tmp_path / "x")], capture_output=True, text=True)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr and "--config nope.json" in bad.stderr


def test_export_checkpoint_of_a_stopped_run(tmp_path, train_images):
    train.run(_args(tmp_path, "s", 4, stop_at=2, setup=VARIABLE))
    ckpt = load_file(tmp_path / "s" / train.CKPT)
    path = train.export_checkpoint(tmp_path / "s" / train.CKPT, tmp_path / "s.safetensors", half=True)
    model, info = load_weights(path)
    assert info["quality"] is None and info["extra"]["steps"] == 2 and info["extra"]["from_checkpoint"]
    for k, v in model.state_dict().items():
        assert torch.equal(v, ckpt[f"model.{k}"].half().float()), k


def test_widen_keeps_the_old_channels_and_starts_close_to_the_donor():
    from conftest import tiny_model

    donor = tiny_model("mbt2018-mean", seed=1, M=24, rate_levels=8)
    wide = tiny_model("mbt2018-mean", seed=2, M=40, rate_levels=8)
    assert train.widen(wide, donor) == len(donor.state_dict())
    d, w = donor.state_dict(), wide.state_dict()
    assert torch.equal(w["g_a.6.weight"][:24], d["g_a.6.weight"])
    assert torch.equal(w["g_s.0.weight"][:24], d["g_s.0.weight"])
    # h_s stacks [σ; μ]: each half's leading channels are the donor's σ and μ
    assert torch.equal(w["h_s.4.weight"][:24, :36], d["h_s.4.weight"][:24])
    assert torch.equal(w["h_s.4.weight"][40:64, :36], d["h_s.4.weight"][24:])
    assert torch.equal(w["gain.log_gain"][:, 30], d["gain.log_gain"].mean(dim=1))
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = donor(x, 4.0)["x_hat"], wide(x, 4.0)["x_hat"]
    assert (a - b).abs().mean() < 0.1 * (a - x).abs().mean()  # new channels barely change the output


def test_scale_augmentation_draws_reproducible_downscaled_crops(train_images):
    from licodec.data import CropSampler

    batches = [CropSampler(train_images, 32, torch.Generator().manual_seed(3), 2.0).batch(6) for _ in range(2)]
    assert torch.equal(*batches) and batches[0].shape == (6, 3, 32, 32)
    assert 0 <= batches[0].min() and batches[0].max() <= 1
    plain = CropSampler(train_images, 32, torch.Generator().manual_seed(3)).batch(6)
    assert not torch.equal(plain, batches[0])
    # on these noise images, area downscaling averages neighbouring pixels: smoother crops
    tv = lambda b: (b[..., 1:, :] - b[..., :-1, :]).abs().mean()  # noqa: E731
    assert tv(batches[0]) < tv(plain)
    with pytest.raises(ValueError):
        CropSampler(train_images, 32, torch.Generator(), 0.5)


def _cli(*argv, **kw):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "licodec.cli", "train", *map(str, argv)], capture_output=True,
                          text=True, timeout=300, **kw)


def _tiny_cli_args(train_images, out, steps=2):
    return ["-m", "mbt2018-mean", "--config", json.dumps(FIXED[1]), "--data", train_images, "--val", "",
            "--out", out, "--steps", steps, "--batch-size", "1", "--patch", "64", "--checkpoint-minutes", "0"]


def test_an_existing_run_is_never_overwritten(tmp_path, train_images):
    out = tmp_path / "run"
    assert _cli(*_tiny_cli_args(train_images, out)).returncode == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    r = _cli(*_tiny_cli_args(train_images, out, steps=4))
    assert r.returncode == 1 and "holds a training run" in r.stderr and "--resume" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # checkpoint, log and weights untouched
    r = _cli(*_tiny_cli_args(train_images, out, steps=4), "--resume")
    assert r.returncode == 0 and "resumed" in r.stdout
    assert _cli(*_tiny_cli_args(train_images, out, steps=2), "--force").returncode == 0  # asked for: replaced


def test_a_run_in_use_by_a_live_process_is_refused(tmp_path, train_images):
    """Two trainers in one --out would interleave checkpoints and logs: the second one stops at once."""
    import os

    out = tmp_path / "run"
    assert _cli(*_tiny_cli_args(train_images, out)).returncode == 0
    assert (out / train.LOCK_FILE).exists()  # released when that run ended: the next one may take it
    held = train.lock_run_directory(out)  # a live run (this process) holds it
    try:
        before = {p.name: p.read_bytes() for p in out.iterdir()}
        for extra in (["--resume"], ["--force"]):
            r = _cli(*_tiny_cli_args(train_images, out, steps=4), *extra)
            assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
            assert f"in use by another training process (pid {os.getpid()})" in r.stderr
            assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing of the live run touched
    finally:
        held.close()
    r = _cli(*_tiny_cli_args(train_images, out, steps=4), "--resume")
    assert r.returncode == 0 and "resumed" in r.stdout


def test_resume_without_a_checkpoint(tmp_path, train_images):
    out = tmp_path / "empty"
    r = _cli(*_tiny_cli_args(train_images, out), "--resume")
    assert r.returncode == 1 and "no checkpoint.safetensors" in r.stderr and "--force" in r.stderr
    assert not out.exists()
    r = _cli(*_tiny_cli_args(train_images, out), "--resume", "--force")
    assert r.returncode == 0 and "starting from scratch" in r.stderr


def test_bad_data_creates_nothing(tmp_path, train_images):
    out = tmp_path / "run"
    args = _tiny_cli_args(train_images, out)
    r = _cli(*[a if a != train_images else tmp_path / "nosuch" for a in args])
    assert r.returncode == 1 and "no such directory" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not out.exists()
    (tmp_path / "none").mkdir()
    (tmp_path / "none" / "notes.txt").write_text("no images")
    r = _cli(*[a if a != train_images else tmp_path / "none" for a in args])
    assert r.returncode == 1 and "no images found" in r.stderr and not out.exists()
    small = tmp_path / "small"
    small.mkdir()
    from PIL import Image

    Image.new("RGB", (32, 32)).save(small / "a.png")
    r = _cli(*[a if a != train_images else small for a in args])
    assert r.returncode == 1 and "no image is at least 64x64" in r.stderr and "internal" not in r.stderr
    Image.new("RGB", (80, 80)).save(small / "b.png")
    r = _cli(*[a if a != train_images else small for a in args])
    assert r.returncode == 0 and "1 image(s)" in r.stderr and "smaller than --patch 64" in r.stderr


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_a_signal_writes_a_checkpoint(tmp_path, train_images, sig):
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "run"
    args = _tiny_cli_args(train_images, out, steps=100000)
    args[args.index("--checkpoint-minutes") + 1] = "60"  # only the signal writes one
    p = subprocess.Popen([sys.executable, "-m", "licodec.cli", "train", *map(str, args), "--log-every", "1"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not ((out / "log.csv").exists() and len((out / "log.csv").read_text().splitlines()) > 2):
        time.sleep(0.2)
    assert not (out / train.CKPT).exists()
    p.send_signal(getattr(signal, sig))
    _, err = p.communicate(timeout=120)
    assert p.returncode == 1 and f"{sig} at step" in err and "--resume" in err, err
    step = int(err.split(f"{sig} at step ")[1].split(":")[0])
    assert step >= 2
    meta = __import__("safetensors").safe_open(str(out / train.CKPT), "pt").metadata()
    assert int(meta["step"]) == step


def test_cpu_budget_ends_the_run_and_is_summed_over_resumes(tmp_path, train_images):
    out = tmp_path / "run"
    budget = ["--budget-cpu-minutes", "0.02"]  # 1.2 s of CPU time
    train.run(_args(tmp_path, "run", 100000, stop_at=1, extra=budget))
    first = train.checkpoint_clock(out / train.CKPT)
    assert first["cpu_s"] > 0 and first["wall_s"] > 0
    path = train.run(_args(tmp_path, "run", 100000, resume=True, extra=budget))
    clock = train.checkpoint_clock(out / train.CKPT)
    assert 1.2 <= clock["cpu_s"] < 60 and clock["cpu_s"] > first["cpu_s"]
    _, info = load_weights(path)  # exported as at the end of a run
    assert 1 < info["extra"]["steps"] < 100000 and info["extra"]["train_cpu_s"] >= 1.2


def test_compiled_transforms_train_like_eager_ones():
    """--compile: the same parameters and state_dict keys, training outputs equal to eager ones,
    evaluation untouched."""
    from licodec.models import create_model

    torch.manual_seed(0)
    m = create_model("mbt2018-mean", {"N": 8, "M": 12}).train()
    keys = list(m.state_dict())
    x = torch.rand(1, 3, 64, 64)
    torch.manual_seed(1)
    eager = m(x)["x_hat"]
    m.compile_transforms()
    assert list(m.state_dict()) == keys
    torch.manual_seed(1)
    compiled = m(x)["x_hat"]
    assert torch.allclose(eager, compiled, atol=1e-5)
    compiled.sum().backward()
    assert m.g_a[0].weight.grad is not None


def test_rate_balance_trains_and_needs_variable_rate(tmp_path, train_images):
    balanced = load_weights(train.run(_args(tmp_path, "b", 2, setup=VARIABLE, extra=["--rate-balance", "0.5"])))[0]
    plain = load_weights(train.run(_args(tmp_path, "p", 2, setup=VARIABLE)))[0]
    sb, sp = balanced.state_dict(), plain.state_dict()
    assert any(not torch.equal(sb[k], sp[k]) for k in sb)  # same batches and seed: the weighting moved them
    r = _cli(*_tiny_cli_args(train_images, tmp_path / "f"), "--rate-balance", "0.5")
    assert r.returncode == 1 and "--variable-rate" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "f").exists()
