"""A training process killed (SIGKILL) while it writes a checkpoint leaves the previous one usable."""

import os
import signal
import subprocess
import sys

import pytest
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from conftest import train_args
from licodec import train
from licodec.models import create_model
from licodec.weights import load_weights
from test_train import assert_same_tensors, log_rows

# Runs `licodec train` with a save_file that writes the checkpoint's temp file, cuts it in half and
# kills its own process with SIGKILL: a kill in the middle of the write, made deterministic.
DYING_TRAINER = r"""
import argparse, os, signal, sys
from licodec import train

real_save_file = train.save_file

def dying_save_file(tensors, filename, metadata=None):
    real_save_file(tensors, filename, metadata=metadata)
    with open(filename, "r+b") as f:
        f.truncate(os.path.getsize(filename) // 2)
    with open(sys.argv[1], "w") as f:
        f.write(str(filename))
    os.kill(os.getpid(), signal.SIGKILL)

train.save_file = dying_save_file
p = argparse.ArgumentParser()
train.add_arguments(p)
train.run(p.parse_args(sys.argv[2:]))
"""


def _argv(tmp_path, out, *extra):
    return [
        "-m", "mbt2018-mean", "--config", '{"N": 8, "M": 12}', "--data", str(tmp_path / "imgs"),
        "--val", str(tmp_path / "imgs"), "--out", str(tmp_path / out), "--steps", "4", "--batch-size", "2",
        "--patch", "64", "--val-every", "1", "--checkpoint-minutes", "0", *extra,
    ]


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_while_writing_checkpoint_keeps_the_previous_one(tmp_path, train_images):
    reference = train.run(train_args(*_argv(tmp_path, "a")))  # 4 steps, never interrupted

    train.run(train_args(*_argv(tmp_path, "b", "--stop-at", "2")))
    ckpt = tmp_path / "b" / train.CKPT
    before = ckpt.read_bytes()

    # resume from step 2; the process dies writing the checkpoint of step 3
    script, told = tmp_path / "dying_trainer.py", tmp_path / "tmp_name.txt"
    script.write_text(DYING_TRAINER)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(script), str(told), *_argv(tmp_path, "b", "--resume")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    partial = tmp_path / "b" / os.path.basename(told.read_text())
    assert partial.name.startswith(f".{train.CKPT}.") and partial.name.endswith(".tmp")

    # the checkpoint is the one of step 2, byte for byte: nothing partial replaced it
    assert ckpt.read_bytes() == before
    # the half-written temp file is left behind (SIGKILL skips atomic_write's cleanup), and is no checkpoint
    assert partial.exists() and 0 < partial.stat().st_size < len(before)
    with pytest.raises(SafetensorError):
        load_file(partial)
    # the killed run logged step 3 before it died
    assert [r[0] for r in log_rows(tmp_path / "b" / "log.csv")[1:]] == ["1", "2", "3"]

    model = create_model("mbt2018-mean", {"N": 8, "M": 12})
    assert train.load_checkpoint(ckpt, model, torch.optim.Adam(model.parameters()), torch.Generator()) == 2

    # --resume continues from step 2, ignores the leftover temp file, and ends exactly where the
    # uninterrupted run ends; the rows the killed run logged past its checkpoint are not repeated
    resumed = train.run(train_args(*_argv(tmp_path, "b", "--resume")))
    assert log_rows(tmp_path / "b" / "log.csv") == log_rows(tmp_path / "a" / "log.csv")
    assert_same_tensors(load_weights(reference)[0].state_dict(), load_weights(resumed)[0].state_dict())
    assert_same_tensors(load_file(tmp_path / "a" / train.CKPT), load_file(ckpt))
    assert partial.exists()  # still there: resume neither reads nor removes it
