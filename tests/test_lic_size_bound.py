"""Stream lengths bounded by the declared image (issue 17, item 5): a big file that declares a small
image is refused from its header, before its streams are read (`licodec info` and `decompress`)."""

import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest

from licodec import format as fmt
from licodec.cli import _Fail, _read_lic
from licodec.errors import FormatError
from licodec.format import LicFile, max_payload, pack, read_header, unpack
from testkit.fuzz import guarded

BIG = 512 * 2**20  # the file: 512 MiB declaring a 64x64 image


def header_for(total_size: int, h: int = 64, w: int = 64) -> bytes:
    """The header of a file of ``total_size`` bytes (two streams, the second filling it)."""
    small = pack(LicFile("mbt2018-mean", b"\0" * 8, 3.0, h, w, 3, 8, 0, [b"\0" * 4, b"\0" * 4]))
    head = small[: len(small) - 4 - 8 - 4 - 8]  # up to the stream table (then 8, metadata length 4, streams 8, CRC 4)
    rest = total_size - len(head) - 8 - 4 - 4 - 4
    return head + struct.pack("<III", 4, rest, 0)


def sparse_file(path, size: int, h: int = 64, w: int = 64):
    with open(path, "wb") as f:
        f.write(header_for(size, h, w))
        f.truncate(size)  # sparse: no disk, no memory
    return path


def test_max_payload_is_generous_and_grows_with_the_padded_image():
    assert max_payload(1, 1, 2) == max_payload(64, 64, 2) == 64 * 64 * 8 + 2 * fmt.STREAM_SLACK
    assert max_payload(65, 64, 2) > max_payload(64, 64, 2)
    assert max_payload(8192, 8192, 16) < fmt.MAX_FILE_BYTES


def test_streams_longer_than_the_image_can_need_are_refused(tmp_path):
    n = max_payload(64, 64, 2)
    ok = pack(LicFile("mbt2018-mean", b"\0" * 8, 3.0, 64, 64, 3, 8, 0, [b"\0" * 4, b"\0" * (n - 4)]))
    unpack(ok)
    body = header_for(len(ok) + 4)
    data = body + bytes(len(ok) + 4 - len(body) - 4)
    data += struct.pack("<I", zlib.crc32(data))
    with pytest.raises(FormatError, match="more than a 64x64 image can need"):
        unpack(data)
    with pytest.raises(ValueError, match="more than a 64x64 file may carry"):
        pack(LicFile("mbt2018-mean", b"\0" * 8, 3.0, 64, 64, 3, 8, 0, [b"\0" * 4, b"\0" * (n - 3)]))


def test_read_header_needs_only_the_first_bytes():
    head = header_for(BIG)
    with pytest.raises(FormatError, match="more than a 64x64 image can need"):
        read_header(head, BIG)
    f, lengths, pos = read_header(header_for(10_000, 512, 512), 10_000)
    assert (f.height, f.width, f.streams, sum(lengths) + pos + 4) == (512, 512, [], 10_000)


def test_a_big_file_is_refused_before_it_is_read(tmp_path):
    p = sparse_file(tmp_path / "big.lic", BIG)
    res, _ = guarded(lambda: _read_lic(str(p)), time_limit=5.0, rss_limit_mib=32)
    assert res.outcome == "clean_error" and "image can need" in res.reason, res
    assert res.rss_growth_mib < 32 and res.seconds < 1


def test_a_file_too_large_for_any_header_is_refused_by_its_size(tmp_path):
    p = tmp_path / "huge.lic"
    with open(p, "wb") as f:
        f.truncate(fmt.MAX_FILE_BYTES + 1)
    with pytest.raises(_Fail, match="too large"):
        _read_lic(str(p))


def test_buffers_are_bounded_before_they_are_copied(monkeypatch):
    monkeypatch.setattr(fmt, "MAX_FILE_BYTES", 100)
    with pytest.raises(FormatError, match="too large"):
        unpack(memoryview(bytes(101)))
    with pytest.raises(FormatError, match="not a .lic file"):
        unpack(np.zeros(50, np.uint8))


@pytest.mark.parametrize("command", ["info", "decompress"])
def test_cli_refuses_a_big_file_declaring_a_small_image(tmp_path, command):
    p = sparse_file(tmp_path / "big.lic", BIG)
    # VmHWM: the peak of this process's own memory (ru_maxrss would carry the forking pytest's
    # size across exec on Linux, so it grows with whatever tests ran before)
    code = ("import sys; from licodec.cli import main; rc = main(sys.argv[1:]); "
            "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0]); sys.exit(rc)")
    r = subprocess.run([sys.executable, "-c", code, command, str(p)], capture_output=True, text=True)
    assert r.returncode == 1, r.stderr
    assert r.stderr.startswith("licodec: error:") and "image can need" in r.stderr and r.stderr.count("\n") == 1
    assert int(r.stdout.split()[-1]) < 400 * 1024, r.stdout  # KiB: torch and friends, not the 512 MiB file
    assert sorted(x.name for x in tmp_path.iterdir()) == ["big.lic"]
