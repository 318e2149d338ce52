"""The average of the weights (`licodec.ema`) and `licodec train --ema`."""

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from conftest import train_args
from licodec import train
from licodec.ema import EMA_FILE, WeightEMA
from licodec.errors import LicodecError
from licodec.weights import load_weights


def _linear(value: float) -> torch.nn.Linear:
    m = torch.nn.Linear(2, 1)
    with torch.no_grad():
        m.weight.fill_(value)
        m.bias.fill_(value)
    return m


def test_the_average_follows_the_formula_with_its_warm_up():
    m = _linear(0.0)
    ema = WeightEMA(m, decay=0.5)
    expected = 0.0
    for t, value in enumerate([1.0, 3.0, -2.0, 5.0, 4.0] + [1.0] * 20):
        d = min(0.5, (1 + t) / (10 + t))  # the warm-up decides the first steps, the decay the rest
        with torch.no_grad():
            m.weight.fill_(value)
        ema.update(m)
        expected = d * expected + (1 - d) * value
        assert ema.shadow["weight"].flatten().tolist() == pytest.approx([expected] * 2, abs=1e-6), t
    assert ema.rate() == 0.5 and expected != pytest.approx(1.0)  # the decay of 0.5 is reached and used
    assert ema.shadow["bias"].item() == 0.0  # a tensor that did not move keeps its value


def test_applied_swaps_the_average_in_and_restores_the_weights():
    m = _linear(2.0)
    ema = WeightEMA(m, decay=0.9)
    with torch.no_grad():
        m.weight.fill_(7.0)
    with ema.applied(m):
        assert m.weight.eq(2.0).all() and m(torch.ones(1, 2)).item() == pytest.approx(6.0)
    assert m.weight.eq(7.0).all() and m.bias.eq(2.0).all()
    with pytest.raises(RuntimeError), ema.applied(m):  # also after an error inside the block
        raise RuntimeError
    assert m.weight.eq(7.0).all()


def test_bad_decay():
    with pytest.raises(ValueError, match="decay"):
        WeightEMA(_linear(0.0), decay=1.0)


def _args(tmp_path, out, steps, images, stop_at=None, resume=False, ema="0.9"):
    return train_args(
        "-m", "mbt2018-mean", "--config", json.dumps({"N": 8, "M": 12}), "--data", images, "--val", images,
        "--out", tmp_path / out, "--steps", steps, "--batch-size", "2", "--patch", "64", "--val-every", "2",
        "--checkpoint-minutes", "0", "--ema", ema, "--lr", "1e-2",
        *(["--stop-at", stop_at] if stop_at else []), *(["--resume"] if resume else []))


def test_training_keeps_resumes_validates_and_exports_the_average(tmp_path, train_images):
    full = train.run(_args(tmp_path, "a", 4, train_images))
    train.run(_args(tmp_path, "b", 4, train_images, stop_at=2))
    resumed = train.run(_args(tmp_path, "b", 4, train_images, resume=True))
    ema_a, ema_b = load_file(tmp_path / "a" / EMA_FILE), load_file(tmp_path / "b" / EMA_FILE)
    assert ema_a.keys() == ema_b.keys()
    assert all(torch.equal(ema_a[k], ema_b[k]) for k in ema_a)  # a resume continues the average exactly
    weights = load_file(tmp_path / "a" / train.CKPT)
    assert any(not torch.equal(ema_a[k], weights[f"model.{k}"]) for k in ema_a)  # it is not the weights
    for path in (full, resumed):  # the run exports the average
        model, info = load_weights(path)
        assert info["extra"]["ema_decay"] == 0.9
        assert all(torch.equal(v, ema_a[k]) for k, v in model.state_dict().items() if k in ema_a)
    head, *rows = [line.split(",") for line in (tmp_path / "a" / "log.csv").read_text().splitlines()]
    assert head[-2:] == ["ema_val_bpp", "ema_val_psnr"] and rows[-1][-1] and rows[-1][-1] != rows[-1][-3]
    exported = train.export_checkpoint(tmp_path / "a" / train.CKPT, tmp_path / "e.safetensors", ema=True)
    model, _ = load_weights(exported)
    assert all(torch.equal(v, ema_a[k]) for k, v in model.state_dict().items() if k in ema_a)


def test_an_average_of_another_step_is_not_used(tmp_path, train_images, capsys):
    import shutil

    ckpt = tmp_path / "a" / train.CKPT
    train.run(_args(tmp_path, "a", 4, train_images, stop_at=2))
    (tmp_path / "a" / EMA_FILE).unlink()
    with pytest.raises(LicodecError, match="no average of the weights"):
        train.export_checkpoint(ckpt, tmp_path / "e.safetensors", ema=True)
    train.run(_args(tmp_path, "a", 4, train_images, stop_at=3, resume=True))
    assert "starts at step 2" in capsys.readouterr().out
    (tmp_path / "a" / EMA_FILE).write_bytes(b"not a safetensors file")
    train.run(_args(tmp_path, "a", 4, train_images, stop_at=4, resume=True))
    assert "unreadable" in capsys.readouterr().out and load_file(ckpt)  # training went on
    train.run(_args(tmp_path, "c", 4, train_images, stop_at=3))  # an average of step 3 beside a state of step 4
    shutil.copy(tmp_path / "c" / EMA_FILE, tmp_path / "a" / EMA_FILE)
    with pytest.raises(LicodecError, match="at step 3, not at the checkpoint's step 4"):
        train.export_checkpoint(ckpt, tmp_path / "e.safetensors", ema=True)
    train.run(_args(tmp_path, "a", 5, train_images, resume=True))
    assert "does not fit (saved at step 3" in capsys.readouterr().out


def test_a_bad_decay_is_one_line_before_anything_is_made(tmp_path, train_images):
    out = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "licodec.cli", "train", "-m", "mbt2018-mean", "--data", str(train_images),
                        "--val", "", "--out", str(out), "--ema", "1.5"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and r.stderr.strip().splitlines() == [r.stderr.strip()] and "--ema 1.5" in r.stderr
    assert "Traceback" not in r.stderr and not out.exists()
