import json

import numpy as np
import pytest
import torch

from conftest import tiny_model
from licodec.cli import main
from licodec.entropy.coder import TableSet
from licodec.evaluation.bench import BenchSpec, bench_one, bench_table, entropy_coding_time, parse_size, peak_memory


def test_entropy_coding_time_measures_and_restores():
    methods = (TableSet.__init__, TableSet.encode, TableSet.decode)
    m = tiny_model("mbt2018-mean")
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with entropy_coding_time() as acc:
        enc = m.compress(x)
    assert acc["seconds"] > 0
    after = acc["seconds"]
    m.decompress(enc.streams, (64, 64))
    assert acc["seconds"] == after  # not counting outside the block
    assert (TableSet.__init__, TableSet.encode, TableSet.decode) == methods


def test_bench_one_and_table(tiny_weights, sample_rgb):
    rgb = np.ascontiguousarray(sample_rgb[:128, :192])
    row = bench_one(BenchSpec("tiny", tiny_weights, "custom"), rgb, "cpu", repeat=2, warmup=1)
    assert row["params"] == sum(p.numel() for p in tiny_model("mbt2018-mean").parameters())
    assert row["flops"] > 0 and row["kmac_per_pixel"] == pytest.approx(row["flops"] / 2 / (128 * 192) / 1000)
    assert 0 < row["encode_entropy_s"] < row["encode_s"] and 0 < row["decode_entropy_s"] < row["decode_s"]
    assert "| tiny | custom |" in bench_table([row])


def test_peak_memory_subprocess(tiny_weights):
    mem = peak_memory(BenchSpec("tiny", tiny_weights, "custom"), None, (128, 96), "cpu", threads=1)
    assert mem["peak_mib"] > 50 and mem["coding_mib"] >= 0


def test_cli_bench(tiny_weights, tmp_path, capsys):
    out = tmp_path / "bench.md"
    argv = ["bench", "--weights", str(tiny_weights), "--size", "96x64", "--repeat", "1", "--no-memory", "-o", str(out)]
    assert main(argv) == 0
    assert "tiny-mbt.safetensors" in out.read_text() and "Machine:" in out.read_text()
    assert json.loads(out.with_suffix(".json").read_text())["rows"][0]["width"] == 96
    capsys.readouterr()
    assert main(argv) == 1 and "exists" in capsys.readouterr().err
    assert main(["bench", "--size", "big", "--weights", str(tiny_weights)]) == 1
    assert "--size" in capsys.readouterr().err
    assert parse_size("768x512") == (768, 512)


def test_bench_variable_rate_weights(tmp_path):
    from licodec.weights import save_weights

    path = tmp_path / "vr.safetensors"
    save_weights(tiny_model("mbt2018-mean", rate_levels=8), path, quality=None)
    row = bench_one(BenchSpec("vr", path, "custom", 2.5), np.zeros((64, 96, 3), np.uint8), "cpu", 1, 0)
    assert row["quality"] == 2.5 and row["flops"] > 0
