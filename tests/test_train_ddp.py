"""`torchrun --nproc_per_node=2 -m licodec.cli train` on CPU (gloo): a few steps, checkpoint with
every rank's RNG states, resume with 2 processes, export; resuming with 1 process is refused; the
resumed run equals an uninterrupted one (slow)."""

import json
import os
import socket
import subprocess
import sys

import pytest
import torch.distributed as dist
from safetensors import safe_open
from safetensors.torch import load_file

from conftest import TINY_CONFIGS, train_args
from licodec import train
from licodec.errors import LicodecError
from licodec.weights import load_weights
from test_train import assert_same_tensors, log_rows

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="needs torch.distributed with gloo")

CONFIG = json.dumps(TINY_CONFIGS["han2024-cca"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _argv(tmp_path, out, *extra):
    return ["-m", "han2024-cca", "--config", CONFIG, "--variable-rate", "--data", str(tmp_path / "imgs"),
            "--val", str(tmp_path / "imgs"), "--out", str(tmp_path / out), "--steps", "3", "--batch-size", "2",
            "--patch", "64", "--val-every", "1", "--checkpoint-minutes", "0", *extra]


def _torchrun(tmp_path, *argv):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={_free_port()}", "-m", "licodec.cli", "train", *argv]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def test_ddp_two_processes_checkpoint_resume_export(tmp_path, train_images):
    out = _torchrun(tmp_path, *_argv(tmp_path, "b", "--stop-at", "2"))
    assert "stopped at step 2" in out
    ckpt = tmp_path / "b" / train.CKPT
    with safe_open(str(ckpt), framework="pt") as f:
        meta = f.metadata()
    assert meta["step"] == "2" and meta["ranks"] == "2"
    tensors = load_file(ckpt)
    assert {k for k in tensors if k.startswith("rng.")} == {
        "rng.0.torch", "rng.0.sampler", "rng.1.torch", "rng.1.sampler"}
    # each rank draws its own crops and noise (seed + rank), so its states are its own
    assert not tensors["rng.0.sampler"].equal(tensors["rng.1.sampler"])
    assert not tensors["rng.0.torch"].equal(tensors["rng.1.torch"])

    # a 2-process checkpoint is refused by a single process (its batches would differ)
    with pytest.raises(LicodecError, match="2 process"):
        train.run(train_args(*_argv(tmp_path, "b", "--resume")))

    out = _torchrun(tmp_path, *_argv(tmp_path, "b", "--resume"))
    assert "resumed from" in out and "at step 2" in out
    model, info = load_weights(tmp_path / "b" / "han2024-cca-vr.safetensors")
    assert model.variable_rate and info["extra"]["steps"] == 3 and info["extra"]["processes"] == 2
    assert [r[0] for r in log_rows(tmp_path / "b" / "log.csv")[1:]] == ["1", "2", "3"]  # rank 0 alone logs


@pytest.mark.slow  # three torchrun launches, about 25 s on 2 busy cores
def test_ddp_resume_is_exact(tmp_path, train_images):
    _torchrun(tmp_path, *_argv(tmp_path, "b", "--stop-at", "2"))
    _torchrun(tmp_path, *_argv(tmp_path, "b", "--resume"))
    _torchrun(tmp_path, *_argv(tmp_path, "a"))  # never interrupted
    assert log_rows(tmp_path / "a" / "log.csv") == log_rows(tmp_path / "b" / "log.csv")
    assert_same_tensors(load_file(tmp_path / "a" / train.CKPT), load_file(tmp_path / "b" / train.CKPT))
    w = "han2024-cca-vr.safetensors"
    assert_same_tensors(load_weights(tmp_path / "a" / w)[0].state_dict(),
                        load_weights(tmp_path / "b" / w)[0].state_dict())
