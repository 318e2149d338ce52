"""A mutation fuzzer for ``.lic`` decoding.

Starting from valid ``.lic`` files (seeds), it makes corrupt ones deterministically — case ``i``
of a run with seed ``s`` is always the same bytes — decodes each through the path users use, and
classifies what happened:

- ``clean_error``: a licodec error, i.e. one of `CLEAN_ERRORS` — the exceptions that the CLI
  turns into a one-line ``licodec: error: …`` (FormatError and the other LicodecError
  subclasses, WeightsError, UnknownModelError, ConfigError);
- ``decoded``: the decoder returned a uint8 image of the size in the file's header (a mutation
  can leave the decoded latents unchanged, e.g. in the quality field or in padding bits);
- ``failure``: anything else — another exception, a case slower than the time limit, a peak-RSS
  growth above the memory limit, or a result of the wrong shape or type.

Cases run in process (milliseconds each with tiny models). The time limit is enforced with
SIGALRM in the main thread (and checked afterwards, for native code the alarm cannot
interrupt). Memory is watched through the process's peak RSS: a case whose peak exceeds the
RSS it started with by more than ``rss_limit_mib`` fails (a corrupt header must not make the
decoder allocate gigabytes). On Linux the peak is reset before each case (``/proc/self/clear_refs``)
and read from ``VmHWM``, so every case is measured on its own; elsewhere ``getrusage``'s
process-lifetime peak is used, which misses an allocation below an earlier peak.

Mutations: bit flips, byte overwrites with 0x00/0xff/0x7f/0x80, truncation, extension, splicing
two files, targeted header fields (magic, version, flags, name length, name, fingerprint,
quality, height, width, channels, bit depth, latent CRC, k, stream lengths), stream-length
shifts that keep the container consistent, stream edits (drop, duplicate, merge, split, swap,
foreign stream), payload corruption, and a few "size bombs" (a valid container whose header
claims a huge image, up to the format's limit, over empty or tiny streams). For a share of the
cases (``crc_fix``) the trailing CRC32 is recomputed, so that the mutation gets past the file
checksum into the parser and the entropy decoder — the part that the checksum cannot protect.

A share of the cases (``cli_share``) also runs ``python -m licodec.cli decompress`` in a fresh
folder and checks the user-visible contract: on a clean error exit status 1, one line on stderr
(``licodec: error: …``, no traceback) and no output or temporary file left behind; on success
exit status 0 and an image of the header's size.

    from testkit.fuzz import Seed, run_fuzz
    summary = run_fuzz([Seed(data, weights="tiny.safetensors")], cases=1000, seed=0)
    assert summary["outcomes"]["failure"] == 0

``benchmarks/run_fuzz.py`` runs 10,000 cases over several tiny models; ``tests/test_fuzz.py`` a
fast sample.
"""

from __future__ import annotations

import ctypes
import math
import os
import re
import resource
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from licodec.errors import LicodecError
from licodec.format import MAX_PIXELS, MAX_SIDE, METADATA_VERSION
from licodec.registry import ConfigError, UnknownModelError
from licodec.weights import WeightsError

# The errors the CLI reports on one line as the input's fault (cli.main; minus OSError and the
# CLI's own path errors, which decoding bytes in memory has no business raising).
CLEAN_ERRORS: tuple[type[BaseException], ...] = (LicodecError, WeightsError, UnknownModelError, ConfigError)
OUTCOMES = ("clean_error", "decoded", "failure")
INTERESTING_BYTES = (0x00, 0xFF, 0x7F, 0x80)
INTERESTING_U8 = (0, 1, 2, 3, 4, 15, 16, 17, 0x40, 0x41, 0x7F, 0x80, 0xFE, 0xFF)
INTERESTING_U32 = (
    0, 1, 2, 3, 4, 7, 8, 15, 16, 63, 64, 65, 0x7F, 0x80, 0xFF, 0x100, 0xFFFF, MAX_SIDE, MAX_SIDE + 1,
    MAX_PIXELS, MAX_PIXELS + 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF,
)
INTERESTING_F32 = (  # the quality field: variable-rate models use it when decoding (1..levels)
    float("nan"), float("inf"), float("-inf"), 0.0, -0.0, -1.0, 1e-45, 3.4e38, 1e6,
    0.999, 1.0, 1.5, 3.0, 7.999, 8.0, 8.001, 9.0, 16.0,
)


@dataclass(frozen=True)
class Seed:
    """A valid ``.lic`` file and the weight file it was made with (None: decode finds them)."""

    data: bytes
    weights: str | None = None
    label: str = ""


@dataclass
class Case:
    index: int
    kind: str  # mutation kind, e.g. "bit_flip", "header.height", "stream_edit"
    op: str  # what exactly was done, for the report
    seed_index: int
    crc_fixed: bool
    data: bytes


@dataclass
class Result:
    outcome: str  # one of OUTCOMES
    reason: str = ""  # clean_error: the error's message; failure: what went wrong
    seconds: float = 0.0
    rss_growth_mib: float = 0.0
    detail: str = ""  # failure: traceback
    cli: str | None = None  # None: not run through the CLI; "ok" or the problem found


# The decode budget of the fuzz run, as a service decoding untrusted files would set it
# (`licodec decompress --max-pixels`): decoding work grows with the image size a header declares,
# so without a budget a 60-byte file may legitimately keep the decoder as busy as a real image of
# the format's maximum size (64 Mi pixels). Files that declare more are refused before decoding.
DECODE_BUDGET = 2**20  # pixels


def default_decode(data: bytes, weights: str | None) -> Any:
    """What `licodec decompress --weights W --max-pixels DECODE_BUDGET` does, in process."""
    from licodec.codec import decode

    return decode(data, weights=weights, max_pixels=DECODE_BUDGET)


# --------------------------------------------------------------------------------------------
# the container's layout, and mutations


@dataclass
class Layout:
    """Offsets of the fields of a valid .lic file: {name: (offset, size)} and its streams."""

    fields: dict[str, tuple[int, int]]
    streams: list[tuple[int, int]]  # (offset, length) of each stream
    k_offset: int  # offset of k; the stream table follows

    @property
    def payload(self) -> tuple[int, int]:
        start = self.streams[0][0] if self.streams else self.k_offset + 1
        return start, sum(n for _, n in self.streams)


def layout(data: bytes) -> Layout:
    n = data[6]
    p = 7 + n
    f = {
        "magic": (0, 4), "version": (4, 1), "flags": (5, 1), "name_len": (6, 1), "name": (7, n),
        "fingerprint": (p, 8), "quality": (p + 8, 4), "height": (p + 12, 4), "width": (p + 16, 4),
        "channels": (p + 20, 1), "bit_depth": (p + 21, 1), "latent_crc": (p + 22, 4), "k": (p + 26, 1),
    }
    k = data[p + 26]
    table = p + 27
    f["stream_lengths"] = (table, 4 * k)
    lengths = struct.unpack_from(f"<{k}I", data, table)
    pos, streams = table + 4 * k, []
    if data[4] >= METADATA_VERSION:  # the metadata length, then the streams, then the metadata
        f["metadata_len"] = (pos, 4)
        pos += 4
    for ln in lengths:
        streams.append((pos, ln))
        pos += ln
    if "metadata_len" in f:
        f["metadata"] = (pos, len(data) - 4 - pos)
    f["crc"] = (len(data) - 4, 4)
    return Layout(f, streams, p + 26)


def _put(buf: bytearray, off: int, raw: bytes) -> None:
    """Overwrite in place, clipped to the buffer (earlier mutations may have shortened it)."""
    end = min(len(buf), off + len(raw))
    if off < end:
        buf[off:end] = raw[: end - off]


def _u32(rng, orig: int) -> int:
    r = rng.random()
    if r < 0.6:
        return int(rng.choice(INTERESTING_U32))
    if r < 0.85:
        return (orig + int(rng.choice((-2, -1, 1, 2, 3, 4, -4)))) % 2**32
    return int(rng.integers(0, 2**32))


def _u8(rng, orig: int) -> int:
    r = rng.random()
    if r < 0.6:
        return int(rng.choice(INTERESTING_U8))
    if r < 0.85:
        return (orig + int(rng.choice((-1, 1, 2)))) % 256
    return int(rng.integers(0, 256))


def _rebuild(data: bytes, lay: Layout, streams: list[bytes], k: int | None = None) -> bytes:
    """The file with another stream list (consistent k and length table; metadata kept), old
    trailing CRC."""
    head = data[: lay.k_offset]
    k = len(streams) if k is None else k
    table = b"".join(struct.pack("<I", len(s)) for s in streams)
    meta_len = meta = b""
    if "metadata_len" in lay.fields:
        (lo, ln), (mo, mn) = lay.fields["metadata_len"], lay.fields["metadata"]
        meta_len, meta = data[lo : lo + ln], data[mo : mo + mn]
    return head + bytes([k % 256]) + table + meta_len + b"".join(streams) + meta + data[-4:]


def _streams(data: bytes, lay: Layout) -> list[bytes]:
    return [data[o : o + n] for o, n in lay.streams]


class Mutator:
    """Makes the bytes of case ``index`` from the seeds; a pure function of (seed, index)."""

    # kind -> relative weight. size_bomb (a header claiming a huge image over empty or tiny
    # streams) is rare because each such case decodes for up to seconds; havoc leaves it out.
    KINDS: ClassVar[dict[str, float]] = {
        "bit_flip": 10, "byte_overwrite": 10, "truncate": 6, "extend": 4, "splice": 5,
        "header": 24, "lengths_shift": 9, "stream_edit": 9, "payload": 13, "havoc": 10, "size_bomb": 1,
    }
    BOMB_SIZES: ClassVar[tuple[tuple[int, int], ...]] = (
        (8192, 8192), (MAX_SIDE, MAX_PIXELS // MAX_SIDE), (MAX_PIXELS // MAX_SIDE, MAX_SIDE), (4096, 4096),
    )
    HEADER_FIELDS: ClassVar[tuple[str, ...]] = (
        "magic", "version", "flags", "name_len", "name", "fingerprint", "quality", "height", "width",
        "size_pair", "channels", "bit_depth", "latent_crc", "k", "stream_lengths", "metadata_len",
    )

    def __init__(self, seeds: Sequence[bytes], seed: int = 0, crc_fix: float = 0.75,
                 kinds: dict[str, float] | None = None) -> None:
        if not seeds:
            raise ValueError("need at least one seed file")
        self.seeds = [bytes(s) for s in seeds]
        self.layouts = [layout(s) for s in self.seeds]
        self.seed = seed
        self.crc_fix = crc_fix
        from licodec.models import model_names

        names = {s[7 : 7 + s[6]].decode("ascii", "replace") for s in self.seeds}
        self.model_names = sorted(names | set(model_names()))
        weights = dict(self.KINDS if kinds is None else kinds)
        unknown = set(weights) - set(self.KINDS)
        if unknown or not any(weights.values()):
            raise ValueError(f"kinds: unknown {sorted(unknown)} or all zero (known: {', '.join(self.KINDS)})")
        names = [k for k, v in weights.items() if v > 0]
        w = np.array([weights[k] for k in names], dtype=np.float64)
        self._kinds, self._kind_p = names, w / w.sum()
        self._havoc_kinds = [k for k in self.KINDS if k not in ("havoc", "size_bomb")]

    def case(self, index: int) -> Case:
        rng = np.random.default_rng([self.seed, index])
        si = int(rng.integers(len(self.seeds)))
        data, lay = self.seeds[si], self.layouts[si]
        for _ in range(8):  # a mutation can leave the bytes as they were (0 over 0): draw again
            kind = str(rng.choice(self._kinds, p=self._kind_p))
            if kind == "havoc":
                ops = []
                buf = data
                for _ in range(int(rng.integers(2, 5))):
                    sub = str(rng.choice(self._havoc_kinds))
                    buf, _, op = self._apply(sub, rng, buf, lay, si)
                    ops.append(op)
                out, op = buf, " + ".join(ops)
            else:
                out, kind, op = self._apply(kind, rng, data, lay, si)
            if out != data:
                break
        fixed = bool(rng.random() < self.crc_fix) and len(out) >= 4
        if fixed:
            out = out[:-4] + struct.pack("<I", zlib.crc32(out[:-4]))
        return Case(index, kind, op, si, fixed, bytes(out))

    # each returns (bytes, kind, op)
    def _apply(self, kind: str, rng, data: bytes, lay: Layout, si: int) -> tuple[bytes, str, str]:
        if not data and kind not in ("extend", "splice"):  # havoc after a truncation to nothing
            return data, kind, "empty input"
        buf = bytearray(data)
        if kind == "bit_flip":
            n = int(rng.integers(1, 9))
            for _ in range(n):
                i = int(rng.integers(len(buf) * 8))
                buf[i // 8] ^= 1 << (i % 8)
            return bytes(buf), kind, f"{n} bit(s)"
        if kind == "byte_overwrite":
            n = int(rng.integers(1, 5))
            for _ in range(n):
                i = int(rng.integers(len(buf)))
                buf[i] = int(rng.choice(INTERESTING_BYTES)) if rng.random() < 0.8 else int(rng.integers(256))
            return bytes(buf), kind, f"{n} byte(s)"
        if kind == "truncate":
            r = rng.random()
            if r < 0.2:  # inside the last few bytes (CRC, end of the last stream)
                cut = max(0, len(buf) - int(rng.integers(1, 9)))
            elif r < 0.3:
                cut = int(rng.integers(0, 8))
            else:
                cut = int(rng.integers(0, len(buf)))
            return bytes(buf[:cut]), kind, f"to {cut} of {len(buf)} bytes"
        if kind == "extend":
            n = int(rng.choice((1, 2, 3, 4, 8, 64, int(rng.integers(1, 2048)))))
            fill = rng.choice(("zeros", "ones", "random", "repeat"))
            tail = {
                "zeros": bytes(n), "ones": b"\xff" * n,
                "random": rng.integers(0, 256, n, dtype=np.uint8).tobytes(),
                "repeat": (bytes(buf) * (n // max(len(buf), 1) + 1))[:n].ljust(n, b"\0"),
            }[str(fill)]
            where = rng.random()
            if where < 0.5:  # before the trailing CRC, so a recomputed CRC covers it
                out = bytes(buf[:-4]) + tail + bytes(buf[-4:])
            else:
                out = bytes(buf) + tail
            return out, kind, f"{n} {fill} bytes {'before CRC' if where < 0.5 else 'at end'}"
        if kind == "splice":
            other = self.seeds[int(rng.integers(len(self.seeds)))]
            i, j = int(rng.integers(len(buf) + 1)), int(rng.integers(len(other) + 1))
            return bytes(buf[:i]) + other[j:], kind, f"[:{i}] + other[{j}:]"
        if kind == "header":
            return self._header(rng, buf, lay)
        if kind == "lengths_shift":
            return self._lengths_shift(rng, bytes(buf), lay)
        if kind == "stream_edit":
            return self._stream_edit(rng, bytes(buf), lay, si)
        if kind == "size_bomb":  # a valid container whose header claims a huge image
            h, w = self.BOMB_SIZES[int(rng.integers(len(self.BOMB_SIZES)))]
            _put(buf, lay.fields["height"][0], struct.pack("<II", h, w))
            fill = str(rng.choice(("empty", "zero_word", "kept")))
            streams = _streams(data, lay)
            if fill != "kept":
                streams = [b"" if fill == "empty" else bytes(4)] * len(streams)
            return _rebuild(bytes(buf), lay, streams), kind, f"{w}x{h}, streams {fill}"
        if kind == "payload":
            start, size = lay.payload
            if size == 0:
                return bytes(buf), kind, "no payload"
            n = int(rng.integers(1, 5))
            mode = str(rng.choice(("flip", "byte", "word")))
            for _ in range(n):
                i = start + int(rng.integers(size))
                if i >= len(buf):
                    continue
                if mode == "flip":
                    buf[i] ^= 1 << int(rng.integers(8))
                elif mode == "byte":
                    buf[i] = int(rng.choice(INTERESTING_BYTES))
                else:
                    _put(buf, i - (i - start) % 4, bytes([int(rng.choice(INTERESTING_BYTES))]) * 4)
            return bytes(buf), kind, f"{n} {mode}"
        raise ValueError(kind)  # pragma: no cover

    def _header(self, rng, buf: bytearray, lay: Layout) -> tuple[bytes, str, str]:
        name = str(rng.choice(self.HEADER_FIELDS))
        if name not in lay.fields:  # metadata_len of a seed older than version 4
            name = "stream_lengths"
        kind = f"header.{name}"
        if name == "size_pair":
            hoff = lay.fields["height"][0]
            orig_h, orig_w = struct.unpack_from("<II", bytes(buf), hoff) if hoff + 8 <= len(buf) else (1, 1)
            h, w = [
                (MAX_SIDE, MAX_PIXELS // MAX_SIDE), (MAX_SIDE, MAX_PIXELS // MAX_SIDE + 1), (8192, 8192),
                (8192, 8193), (2**16, 2**10), (1, 1), (orig_w, orig_h), (orig_h * 16, orig_w * 16),
                (orig_h + 64, orig_w), (2**31, 2), (0, 0),
            ][int(rng.integers(11))]
            _put(buf, hoff, struct.pack("<II", h % 2**32, w % 2**32))
            return bytes(buf), kind, f"{w}x{h}"
        off, size = lay.fields[name]
        orig = bytes(buf[off : off + size])
        if name == "name":
            choice = int(rng.integers(6))
            new = [
                str(rng.choice(self.model_names)).encode(), b"", b"x" * 64, b"y" * 65,
                b"mbt2018-mean\x00", bytes([0xC3, 0xA9]) + orig[2:],
            ][choice]
            if choice == 5 or rng.random() < 0.2:  # keep n: the name bytes change in place
                _put(buf, off, new[:size].ljust(size, b"-"))
                return bytes(buf), kind, f"in place {new[:size]!r}"
            out = bytes(buf[:6]) + bytes([len(new) % 256]) + new + bytes(buf[off + size :])
            return out, kind, f"{new!r}"
        if name == "quality":
            v = float(rng.choice(INTERESTING_F32)) if rng.random() < 0.8 else None
            raw = struct.pack("<f", v) if v is not None else rng.integers(0, 256, 4, dtype=np.uint8).tobytes()
            _put(buf, off, raw)
            return bytes(buf), kind, raw.hex()
        if name in ("magic", "fingerprint", "latent_crc"):
            r = rng.random()
            if r < 0.5:
                i = off + int(rng.integers(size))
                if i < len(buf):
                    buf[i] ^= 1 << int(rng.integers(8))
                return bytes(buf), kind, "bit flip"
            raw = bytes([int(rng.choice(INTERESTING_BYTES))]) * size
            if name == "fingerprint" and r > 0.8:  # another seed's fingerprint
                other, olay = self._other(rng)
                o, s = olay.fields["fingerprint"]
                raw = other[o : o + s]
            _put(buf, off, raw)
            return bytes(buf), kind, raw.hex()
        if size == 1:
            v = _u8(rng, orig[0] if orig else 0)
            _put(buf, off, bytes([v]))
            return bytes(buf), kind, f"{orig.hex()} -> {v}"
        if name == "stream_lengths":
            if not lay.streams:
                return bytes(buf), kind, "no streams"
            i = int(rng.integers(len(lay.streams)))
            v = _u32(rng, lay.streams[i][1])
            _put(buf, off + 4 * i, struct.pack("<I", v))
            return bytes(buf), kind, f"length[{i}] {lay.streams[i][1]} -> {v}"
        v = _u32(rng, struct.unpack("<I", orig)[0] if len(orig) == 4 else 0)  # height, width
        _put(buf, off, struct.pack("<I", v))
        return bytes(buf), kind, f"{orig.hex()} -> {v}"

    def _other(self, rng) -> tuple[bytes, Layout]:
        j = int(rng.integers(len(self.seeds)))
        return self.seeds[j], self.layouts[j]

    def _lengths_shift(self, rng, data: bytes, lay: Layout) -> tuple[bytes, str, str]:
        """Move the boundary between two streams: the total still matches the file size."""
        kind = "lengths_shift"
        if len(lay.streams) < 2:
            return data, kind, "single stream"
        i, j = (int(x) for x in rng.choice(len(lay.streams), 2, replace=False))
        d = int(rng.choice((1, 2, 3, 4, 8, 12, int(rng.integers(1, 64)))))
        d = min(d, lay.streams[i][1])
        lengths = [n for _, n in lay.streams]
        lengths[i] -= d
        lengths[j] += d
        off = lay.fields["stream_lengths"][0]
        buf = bytearray(data)
        _put(buf, off, struct.pack(f"<{len(lengths)}I", *lengths))
        return bytes(buf), kind, f"{d} bytes from stream {i} to {j}"

    def _stream_edit(self, rng, data: bytes, lay: Layout, si: int) -> tuple[bytes, str, str]:
        kind = "stream_edit"
        streams = _streams(data, lay)
        if not streams:
            return data, kind, "no streams"
        i = int(rng.integers(len(streams)))
        op = str(rng.choice((
            "drop", "duplicate", "merge", "split", "swap", "foreign", "empty", "trim4", "trim1",
            "pad_zeros", "pad_ones", "random", "k_only",
        )))
        if op == "drop":
            del streams[i]
        elif op == "duplicate":
            streams.insert(i, streams[i])
        elif op == "merge":
            streams = [b"".join(streams)]
        elif op == "split":
            s = streams[i]
            cut = int(rng.integers(len(s) + 1))
            streams[i : i + 1] = [s[:cut], s[cut:]]
        elif op == "swap":
            streams.reverse()
        elif op == "foreign":  # the same stream of another file (other model, size or weights)
            other, olay = self._other(rng)
            ostreams = _streams(other, olay)
            streams[i] = ostreams[min(i, len(ostreams) - 1)]
        elif op == "empty":
            streams[i] = b""
        elif op == "trim4":
            streams[i] = streams[i][:-4]
        elif op == "trim1":
            streams[i] = streams[i][:-1]
        elif op == "pad_zeros":
            streams[i] = streams[i] + bytes(4 * int(rng.integers(1, 4)))
        elif op == "pad_ones":
            streams[i] = streams[i] + b"\xff" * 4
        elif op == "random":
            streams[i] = rng.integers(0, 256, len(streams[i]), dtype=np.uint8).tobytes()
        else:  # k_only: change k but keep the table, so the table and the payload are misread
            k = _u8(rng, len(streams))
            return _rebuild(data, lay, streams, k=k), kind, f"k_only {len(streams)} -> {k}"
        return _rebuild(data, lay, streams), kind, f"{op} (stream {i})"


# --------------------------------------------------------------------------------------------
# running one case


class CaseTimeout(BaseException):
    """Raised by the alarm in a case that runs past the time limit (BaseException: a decoder's
    ``except Exception`` cannot swallow it)."""


def _on_alarm(signum, frame):
    raise CaseTimeout()


def _status_mib(key: str) -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    return None


try:  # glibc's malloc_trim: hands the allocator's free but resident memory back to the system
    _MALLOC_TRIM = ctypes.CDLL("libc.so.6").malloc_trim
except (OSError, AttributeError):  # another C library: nothing to trim with
    _MALLOC_TRIM = None


def _start_rss_watch() -> tuple[float, bool]:
    """(the RSS to compare the peak with, whether the peak was reset) before a case. The free but
    resident memory is trimmed first: otherwise a case's allocation can be served from memory that
    earlier work freed and that still counts in the RSS (a freed model's tensors, say), and its
    growth would not show in the peak."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak RSS (VmHWM) to the current RSS
        rss = _status_mib("VmRSS")
        if rss is not None:
            return rss, True
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, False  # KiB on Linux


def _peak_rss(reset: bool) -> float:
    peak = _status_mib("VmHWM") if reset else None
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def expected_shape(data: bytes) -> tuple[int, int, int]:
    from licodec.format import unpack

    f = unpack(data)
    return (f.height, f.width, 3)


def guarded(call: Callable[[], Any], time_limit: float = 5.0, rss_limit_mib: float = 512.0) -> tuple[Result, Any]:
    """Run ``call()`` in process under a time limit, watching the peak RSS; (Result, its return
    value). The outcome is "decoded" when it returned (the caller checks what), "clean_error" for
    one of `CLEAN_ERRORS`, "failure" for anything else, a timeout or too much memory."""
    use_alarm = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    old = signal.signal(signal.SIGALRM, _on_alarm) if use_alarm else None
    rss0, reset = _start_rss_watch()
    t0 = time.perf_counter()
    outcome, reason, detail, out = "failure", "", "", None
    try:
        if use_alarm:
            signal.setitimer(signal.ITIMER_REAL, time_limit)
        try:
            out = call()
        finally:
            if use_alarm:
                signal.setitimer(signal.ITIMER_REAL, 0)
        outcome = "decoded"
    except CaseTimeout:
        reason = f"timeout: over {time_limit:g} s"
    except CLEAN_ERRORS as e:
        outcome, reason = "clean_error", f"{type(e).__name__}: {e}"
    except Exception as e:  # noqa: BLE001 - any other exception is what the fuzzer looks for
        reason = f"{type(e).__name__}: {e}"
        detail = traceback.format_exc()
    finally:
        if use_alarm:
            signal.signal(signal.SIGALRM, old)
    seconds = time.perf_counter() - t0
    growth = max(0.0, _peak_rss(reset) - rss0)
    result = Result(outcome, reason, seconds, growth, detail)
    if outcome != "failure" and seconds > time_limit:  # native code that the alarm could not interrupt
        result.outcome, result.reason = "failure", f"timeout: {seconds:.2f} s > {time_limit:g} s"
    if result.outcome != "failure" and growth > rss_limit_mib:
        result.outcome, result.reason = "failure", f"peak RSS grew by {growth:.0f} MiB (limit {rss_limit_mib:g})"
    return result, out


def run_case(data: bytes, weights: str | None, decode: Callable = default_decode,
             time_limit: float = 5.0, rss_limit_mib: float = 512.0) -> Result:
    """Decode ``data`` in process under a time limit and classify the outcome."""
    res, out = guarded(lambda: decode(data, weights), time_limit, rss_limit_mib)
    if res.outcome == "decoded":
        rgb = out[0] if isinstance(out, tuple) else out
        try:
            want = expected_shape(data)
        except Exception as e:  # noqa: BLE001 - decoded a file that the parser refuses: a bug either way
            res.outcome, res.reason = "failure", f"decoded a file that unpack refuses ({type(e).__name__}: {e})"
        else:
            if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.shape != want:
                got = (getattr(rgb, "shape", None), getattr(rgb, "dtype", type(rgb).__name__))
                res.outcome, res.reason = "failure", f"wrong result {got}, header says {want} uint8"
    return res


def check_cli(data: bytes, weights: str | None, expect: str, timeout: float = 120.0) -> str:
    """Run ``python -m licodec.cli decompress`` on ``data`` in a fresh folder; "ok" or the problem."""
    from PIL import Image

    with tempfile.TemporaryDirectory(prefix="licodec-fuzz-") as d:
        inp = Path(d) / "case.lic"
        inp.write_bytes(data)
        cmd = [sys.executable, "-m", "licodec.cli", "decompress", str(inp), "-o", str(Path(d) / "out.png"),
               "--threads", "1", "--max-pixels", str(DECODE_BUDGET)]
        if weights is not None:
            cmd += ["--weights", str(weights)]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        try:
            r = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout, env=env)
        except subprocess.TimeoutExpired:
            return f"cli: no answer in {timeout:g} s"
        left = sorted(p.name for p in Path(d).iterdir() if p.name != "case.lic")
        if "Traceback" in r.stderr:
            return f"cli: traceback on stderr: {r.stderr.strip().splitlines()[-1]}"
        if "internal error" in r.stderr:
            return f"cli: {r.stderr.strip()}"
        if expect == "clean_error":
            if r.returncode != 1:
                return f"cli: exit status {r.returncode}, expected 1 (stderr {r.stderr.strip()!r})"
            if not r.stderr.startswith("licodec: error:") or r.stderr.count("\n") != 1:
                return f"cli: stderr is not one 'licodec: error:' line: {r.stderr!r}"
            if left:
                return f"cli: left files behind after an error: {left}"
        elif expect == "decoded":
            if r.returncode != 0:
                return f"cli: exit status {r.returncode} on a file that decodes in process ({r.stderr.strip()!r})"
            want = expected_shape(data)
            with Image.open(Path(d) / "out.png") as im:
                if im.size != (want[1], want[0]):
                    return f"cli: wrote a {im.size} image, header says {want[1]}x{want[0]}"
            if left != ["out.png"]:
                return f"cli: unexpected files {left}"
        elif r.returncode not in (0, 1):
            return f"cli: exit status {r.returncode}"
    return "ok"


# --------------------------------------------------------------------------------------------
# a run


def _bucket(reason: str) -> str:
    """A clean error's message with the case-specific parts (numbers, names, paths) blanked."""
    s = reason.split(" (")[0].encode("unicode_escape").decode("ascii")
    s = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", s)
    s = re.sub(r"/\S+", "PATH", s)
    s = re.sub(r"\b[0-9a-f]{16}\b", "HEX", s)
    s = re.sub(r"with \S+ weights", "with MODEL weights", s)
    s = re.sub(r"weights are \S+", "weights are MODEL", s)
    s = re.sub(r"\b[a-z]+\d{4}-[a-z-]+\b", "MODEL", s)  # registry names: mbt2018-mean, ...
    s = re.sub(r"-?\d+(\.\d+)?", "#", s)
    return s[:100]


@dataclass
class _Stats:
    outcomes: Counter = field(default_factory=Counter)
    by_kind: dict = field(default_factory=lambda: defaultdict(Counter))
    by_crc: dict = field(default_factory=lambda: defaultdict(Counter))
    errors: Counter = field(default_factory=Counter)


def run_fuzz(
    seeds: Sequence[Seed | bytes],
    cases: int = 1000,
    seed: int = 0,
    decode: Callable = default_decode,
    time_limit: float = 5.0,
    rss_limit_mib: float = 512.0,
    crc_fix: float = 0.75,
    cli_share: float = 0.0,
    cli_timeout: float = 120.0,
    save_dir: str | os.PathLike | None = None,
    keep_failures: int = 100,
    kinds: dict[str, float] | None = None,
    progress: Callable[[int, int, dict], None] | None = None,
) -> dict:
    """Run ``cases`` mutated cases; returns a JSON-able summary (see `OUTCOMES`).

    ``decode(data, weights)`` is called with the weights of the seed a case was made from (a
    splice: its first part's). The seeds are decoded once first: they must decode, and this
    warms the caches (weights, tables) so that loading is not charged to the first cases.
    ``kinds`` overrides `Mutator.KINDS` (relative weights of the mutation kinds).
    Failing cases are kept with their bytes as hex (the first ``keep_failures``) and, with
    ``save_dir``, written there as ``case-<index>.lic`` with a ``.txt`` of the reason and
    traceback.
    """
    seeds = [s if isinstance(s, Seed) else Seed(bytes(s)) for s in seeds]
    for i, s in enumerate(seeds):
        r = run_case(s.data, s.weights, decode, time_limit=max(time_limit, 60.0), rss_limit_mib=math.inf)
        if r.outcome != "decoded":
            raise ValueError(f"seed {i} ({s.label}) does not decode: {r.reason}")
    mut = Mutator([s.data for s in seeds], seed=seed, crc_fix=crc_fix, kinds=kinds)
    st = _Stats()
    failures: list[dict] = []
    slowest: dict = {"seconds": -1.0}
    cli_runs, cli_problems = 0, []
    unprintable: list[dict] = []
    n_unprintable = 0
    max_growth, total = 0.0, 0.0
    save = Path(save_dir) if save_dir is not None else None
    t_start = time.perf_counter()
    for index in range(cases):
        case = mut.case(index)
        s = seeds[case.seed_index]
        res = run_case(case.data, s.weights, decode, time_limit, rss_limit_mib)
        if cli_share > 0 and np.random.default_rng([seed, index, 1]).random() < cli_share:
            res.cli = check_cli(case.data, s.weights, res.outcome, cli_timeout)
            cli_runs += 1
            if res.cli != "ok":
                cli_problems.append({"index": index, "kind": case.kind, "problem": res.cli})
                if res.outcome != "failure":
                    res.outcome, res.reason = "failure", res.cli
        st.outcomes[res.outcome] += 1
        st.by_kind[case.kind][res.outcome] += 1
        st.by_crc["crc recomputed" if case.crc_fixed else "crc kept"][res.outcome] += 1
        if res.outcome == "clean_error":
            st.errors[_bucket(res.reason)] += 1
            if not res.reason.isprintable():  # control characters from the file in the message
                n_unprintable += 1
                if len(unprintable) < 10:
                    unprintable.append({"index": index, "kind": case.kind, "op": case.op,
                                        "message": repr(res.reason), "hex": case.data.hex()})
        total += res.seconds
        max_growth = max(max_growth, res.rss_growth_mib)
        if res.seconds > slowest["seconds"]:
            slowest = {"index": index, "kind": case.kind, "op": case.op, "seed": s.label,
                       "seconds": round(res.seconds, 4), "outcome": res.outcome}
        if res.outcome == "failure":
            rec = {"index": index, "kind": case.kind, "op": case.op, "seed_index": case.seed_index,
                   "seed": s.label, "crc_fixed": case.crc_fixed, "reason": res.reason,
                   "seconds": round(res.seconds, 4), "traceback": res.detail}
            if len(failures) < keep_failures:
                failures.append({**rec, "hex": case.data.hex()})
            if save is not None:
                save.mkdir(parents=True, exist_ok=True)
                (save / f"case-{index}.lic").write_bytes(case.data)
                (save / f"case-{index}.txt").write_text(
                    "\n".join(f"{k}: {v}" for k, v in rec.items() if k != "traceback") + "\n\n" + res.detail)
        if progress is not None:
            progress(index + 1, cases, dict(st.outcomes))
    return {
        "cases": cases,
        "seed": seed,
        "seeds": [{"label": s.label, "bytes": len(s.data)} for s in seeds],
        "time_limit_s": time_limit,
        "rss_limit_mib": rss_limit_mib,
        "crc_fix": crc_fix,
        "outcomes": {o: st.outcomes.get(o, 0) for o in OUTCOMES},
        "by_kind": {k: {o: v.get(o, 0) for o in OUTCOMES} for k, v in sorted(st.by_kind.items())},
        "by_crc": {k: {o: v.get(o, 0) for o in OUTCOMES} for k, v in sorted(st.by_crc.items())},
        "clean_errors": dict(st.errors.most_common()),
        "slowest": slowest,
        "decode_seconds_total": round(total, 3),
        "decode_ms_mean": round(1000 * total / max(cases, 1), 3),
        "wall_seconds": round(time.perf_counter() - t_start, 1),
        "max_rss_growth_mib": round(max_growth, 1),
        "cli": {"cases": cli_runs, "problems": cli_problems},
        # clean errors whose message carries control characters (newline, ESC, CR) from the file:
        # not failures, but a terminal shows them as they are
        "unprintable_messages": {"count": n_unprintable, "examples": unprintable},
        "failures": failures,
    }


__all__ = [
    "CLEAN_ERRORS", "OUTCOMES", "Case", "CaseTimeout", "Layout", "Mutator", "Result", "Seed",
    "check_cli", "default_decode", "guarded", "layout", "run_case", "run_fuzz",
]
