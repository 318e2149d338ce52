"""A fast, deterministic sample of the .lic fuzzer (benchmarks/run_fuzz.py runs 10,000 cases), a
few targeted corruptions behind a valid CRC, and checks that the harness itself flags failures."""

import struct
import subprocess
import sys
import time
import zlib

import numpy as np
import pytest
import torch
from conftest import tiny_model

from licodec.codec import Codec
from licodec.format import VERSION, pack, unpack
from testkit.fuzz import Mutator, Seed, check_cli, layout, run_case, run_fuzz
from licodec.weights import save_weights


def fix_crc(data: bytes) -> bytes:
    return data[:-4] + struct.pack("<I", zlib.crc32(data[:-4]))


@pytest.fixture(scope="module")
def seeds(tmp_path_factory, sample_rgb):
    folder = tmp_path_factory.mktemp("fuzz")
    out = []
    for name in ("mbt2018-mean", "he2021-checkerboard", "han2024-cca"):
        m = tiny_model(name)
        last = [c for c in m.g_a.modules() if isinstance(c, torch.nn.Conv2d)][-1]
        with torch.no_grad():
            last.weight.mul_(20)  # a non-trivial y stream
        path = folder / f"{name}.safetensors"
        save_weights(m, path, quality=3)
        codec = Codec.from_weights(path)
        for h, w in [(1, 1), (17, 33), (64, 96)]:
            out.append(Seed(codec.encode(np.ascontiguousarray(sample_rgb[:h, :w])), str(path), f"{name} {w}x{h}"))
    # variable-rate weights: the decoder uses the header's quality
    path = folder / "vr.safetensors"
    save_weights(tiny_model("mbt2018-mean", rate_levels=8), path, quality=None)
    out.append(Seed(Codec.from_weights(path, quality=3.5).encode(sample_rgb[:40, :24].copy()), str(path), "vr 24x40"))
    return out


# size bombs decode for seconds each (and fail on the serial model: test_size_bomb_is_cheap)
NO_BOMBS = {**Mutator.KINDS, "size_bomb": 0}


def test_fuzz_sample_has_no_failures(seeds):
    s = run_fuzz(seeds, cases=500, seed=0, time_limit=5.0, kinds=NO_BOMBS)
    assert s["outcomes"]["failure"] == 0, s["failures"]
    assert sum(s["outcomes"].values()) == 500
    # the recomputed CRC lets mutations through to the entropy decoder and the latent checksum
    assert sum(n for msg, n in s["clean_errors"].items() if "cannot decode" in msg) >= 50, s["clean_errors"]


def test_size_bombs_are_valid_containers(seeds):
    m = Mutator([s.data for s in seeds], seed=0, crc_fix=1.0, kinds={"size_bomb": 1})
    for i in range(10):
        c = m.case(i)
        f = unpack(c.data)  # passes every container check: the decoder has to deal with it
        assert f.num_pixels >= 4096 * 4096 and c.kind == "size_bomb"


@pytest.mark.parametrize(("fill", "side", "error"), [(b"", 1024, "empty"), (bytes(4), 8192, "decode limit")])
def test_size_bomb_is_cheap(tmp_path, fill, side, error):
    """A 60-byte file declaring a big image: empty streams are refused at once; a declared size above
    the decode budget (``--max-pixels``) is refused before any decoding work."""
    path = tmp_path / "ctx.safetensors"
    save_weights(tiny_model("lee2019-ctx"), path, quality=3)
    f = unpack(Codec.from_weights(path).encode(np.zeros((8, 8, 3), np.uint8)))
    f.height, f.width, f.streams = side, side, [fill] * len(f.streams)
    r = run_case(pack(f), str(path), time_limit=1.0)
    assert r.outcome == "clean_error", r.reason
    assert error in r.reason


def test_cases_are_deterministic(seeds):
    data = [s.data for s in seeds]
    a, b = Mutator(data, seed=7), Mutator(data, seed=7)
    for i in (0, 1, 99, 1234):
        assert a.case(i) == b.case(i)
    assert [Mutator(data, seed=8).case(i).data for i in range(20)] != [a.case(i).data for i in range(20)]


def test_stream_boundary_shift_behind_valid_crc(seeds):
    s = seeds[2]  # mbt2018-mean 96x64: two streams
    lay = layout(s.data)
    (_, n0), (_, n1) = lay.streams
    off = lay.fields["stream_lengths"][0]
    for d in (4, -4, 1):
        bad = bytearray(s.data)
        bad[off : off + 8] = struct.pack("<II", n0 - d, n1 + d)
        r = run_case(fix_crc(bytes(bad)), s.weights)
        assert r.outcome == "clean_error" and "cannot decode" in r.reason, r


@pytest.mark.parametrize(("field", "value", "message"), [
    ("height", 0xFFFFFFFF, "exceeds the limit"),
    ("width", 0, "invalid image size"),
    ("k", 0, "stream table"),
    ("channels", 2, "unsupported image layout"),
    ("version", VERSION + 1, "newer than this licodec"),
    ("version", 0, "invalid .lic format version"),
])
def test_header_fields_behind_valid_crc(seeds, field, value, message):
    s = seeds[1]
    off, size = layout(s.data).fields[field]
    bad = bytearray(s.data)
    bad[off : off + size] = value.to_bytes(size, "little")
    r = run_case(fix_crc(bytes(bad)), s.weights)
    assert r.outcome == "clean_error" and message in r.reason, r


@pytest.mark.parametrize(("quality", "version", "outcome"), [
    (float("nan"), 3, "clean_error"), (9.0, 3, "clean_error"), (0.5, 3, "clean_error"),
    (5.0, 3, "clean_error"),  # in range: format version 3 binds the header to the latent check
    (5.0, 2, "decoded"),  # version 2 files decode as before: only the file CRC covered the quality
])
def test_variable_rate_quality_behind_valid_crc(seeds, quality, version, outcome):
    s = seeds[-1]
    data = s.data
    if version != VERSION:
        data = Codec.from_weights(s.weights, quality=3.5).encode(np.ascontiguousarray(
            np.zeros((40, 24, 3), np.uint8) + 100), version=version)
    off, _ = layout(data).fields["quality"]
    bad = data[:off] + struct.pack("<f", quality) + data[off + 4 :]
    r = run_case(fix_crc(bad), s.weights)
    assert r.outcome == outcome, r


def test_other_model_name_behind_valid_crc(seeds):
    s = seeds[0]  # mbt2018-mean
    n = s.data[6]
    name = b"he2021-checkerboard"
    bad = s.data[:6] + bytes([len(name)]) + name + s.data[7 + n :]
    r = run_case(fix_crc(bad), s.weights)
    assert r.outcome == "clean_error" and r.reason.startswith("WeightsError"), r


def test_harness_flags_bugs():
    def raises(data, weights):
        raise IndexError("oops")

    assert run_case(b"", None, raises).outcome == "failure"

    def sleeps(data, weights):
        time.sleep(5)

    t0 = time.perf_counter()
    r = run_case(b"", None, sleeps, time_limit=0.2)
    assert r.outcome == "failure" and "timeout" in r.reason and time.perf_counter() - t0 < 2


def test_harness_flags_wrong_shape_and_memory(seeds):
    s = seeds[1]  # 33x17
    r = run_case(s.data, s.weights, lambda d, w: np.zeros((17, 32, 3), np.uint8))
    assert r.outcome == "failure" and "wrong result" in r.reason
    assert run_case(s.data, s.weights, lambda d, w: np.zeros((17, 33, 3), np.uint8)).outcome == "decoded"

    def allocates(data, weights):
        a = np.ones(96 * 2**20 // 8)  # 96 MiB, touched
        return np.zeros((17, 33, 3), np.uint8) + int(a[0] - 1)

    r = run_case(s.data, s.weights, allocates, rss_limit_mib=32)
    if sys.platform.startswith("linux"):  # the per-case peak needs /proc/self/clear_refs
        assert r.outcome == "failure" and "RSS" in r.reason, r


def test_cli_contract_on_a_corrupt_file(seeds):
    s = seeds[2]
    lay = layout(s.data)
    o, n = lay.streams[1]
    bad = bytearray(s.data)
    bad[o + n // 2] ^= 0x10  # corrupt y behind a valid CRC
    assert check_cli(fix_crc(bytes(bad)), s.weights, "clean_error") == "ok"
    assert check_cli(s.data, s.weights, "decoded") == "ok"


def test_cli_check_notices_a_traceback(tmp_path, monkeypatch):
    def fake_run(*args, **kwargs):
        return subprocess.CompletedProcess(args, 1, "", "Traceback (most recent call last):\n  boom\nKeyError: 1\n")

    monkeypatch.setattr(subprocess, "run", fake_run)
    assert "traceback" in check_cli(b"x", None, "clean_error")
