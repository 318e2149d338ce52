"""Edited ``.lic`` headers behind a recomputed file CRC: every case must fail.

The file CRC cannot tell an edited or mis-written header from a good one once it is recomputed; in
format versions 3 and 4 the latent check covers the header fields the decoder depends on
(`licodec.format.header_crc`). This fuzzer edits 1-3 of them in valid version 3 or 4 files — the
quality (another level, one float32 ulp, boundary values, random bits), the height and width
(alone, together, and within the same 64-pixel padding, so that the latents keep their shape), the
channel count, the bit depth, the version, the model name and the fingerprint — recomputes the file
CRC and decodes through the user's path (`testkit.fuzz.default_decode`). Outcomes as in
`testkit.fuzz`, except that a case that decodes is a failure: an edited header must not give an
image. A share of the cases (``cli_share``) also runs ``licodec decompress`` (`testkit.fuzz.check_cli`).

    summary = run_header_fuzz(seeds, cases=2000)     # seeds: [testkit.fuzz.Seed] of version >= 3 files
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Sequence
from typing import ClassVar

import numpy as np

from licodec.format import MAX_SIDE
from .fuzz import INTERESTING_F32, Case, Seed, check_cli, default_decode, layout, run_case
from .fuzz_tally import Tally


def _ulp(q: float, direction: int) -> float:
    return float(np.nextafter(np.float32(q), np.float32(direction * np.inf)))


class HeaderEditor:
    """Case ``index`` of seed ``seed``: a pure function of both."""

    FIELDS: ClassVar[tuple[str, ...]] = (
        "quality", "height", "width", "size_in_padding", "size_pair", "channels", "bit_depth", "version",
        "name", "fingerprint",
    )

    def __init__(self, seeds: Sequence[bytes], seed: int = 0, model_names: Sequence[str] = ()) -> None:
        if not seeds:
            raise ValueError("need at least one seed file")
        self.seeds = [bytes(s) for s in seeds]
        self.seed = seed
        from licodec.models import model_names as registered

        self.names = sorted(set(model_names) | set(registered()))

    def case(self, index: int) -> Case:
        rng = np.random.default_rng([self.seed, index, 3])
        si = int(rng.integers(len(self.seeds)))
        orig = self.seeds[si]
        n = 1 if rng.random() < 0.6 else int(rng.integers(2, 4))
        for _ in range(8):  # an edit can leave the bytes as they were: draw again
            fields = [str(f) for f in rng.choice(self.FIELDS, n, replace=False)]
            data, ops = orig, []
            for name in sorted(fields, key=lambda f: f == "name"):  # the name (length) last
                data, op = self._edit(rng, name, data)
                ops.append(f"{name}: {op}")
            if data != orig:
                break
        data = data[:-4] + struct.pack("<I", zlib.crc32(data[:-4]))
        kind = fields[0] if n == 1 else f"{n} fields"
        return Case(index, kind, "; ".join(ops), si, True, data)

    def _edit(self, rng, name: str, data: bytes) -> tuple[bytes, str]:
        lay = layout(data)
        buf = bytearray(data)
        hoff = lay.fields["height"][0]
        h, w = struct.unpack_from("<II", data, hoff)
        if name == "quality":
            off = lay.fields["quality"][0]
            (q,) = struct.unpack_from("<f", data, off)
            r = rng.random()
            if r < 0.3:
                v = float(rng.choice([x for x in range(1, 9) if x != q]))
            elif r < 0.5:
                v = _ulp(q, 1 if rng.random() < 0.5 else -1)
            elif r < 0.6:
                v = q + float(rng.choice((0.5, -0.5, 0.25, 1e-3)))
            elif r < 0.9:
                v = float(rng.choice(INTERESTING_F32))
            else:
                raw = rng.integers(0, 256, 4, dtype=np.uint8).tobytes()
                buf[off : off + 4] = raw
                return bytes(buf), f"bits {raw.hex()}"
            buf[off : off + 4] = struct.pack("<f", v)
            return bytes(buf), f"{q:g} -> {v!r}"
        if name in ("height", "width", "size_in_padding", "size_pair"):
            if name == "size_in_padding":  # the same padded size: the latents keep their shape
                nh = int(rng.integers((h - 1) // 64 * 64 + 1, (h - 1) // 64 * 64 + 65))
                nw = int(rng.integers((w - 1) // 64 * 64 + 1, (w - 1) // 64 * 64 + 65))
            else:
                choices = lambda v: [v + int(rng.integers(1, 64)), max(1, v - int(rng.integers(1, 64))), v + 64,  # noqa: E731
                                     max(1, v - 64), 2 * v, 1, MAX_SIDE, v + 1, max(1, v - 1)]
                nh = int(rng.choice(choices(h))) if name != "width" else h
                nw = int(rng.choice(choices(w))) if name != "height" else w  # > MAX_PIXELS: refused too
            struct.pack_into("<II", buf, hoff, nh, nw)
            return bytes(buf), f"{w}x{h} -> {nw}x{nh}"
        if name in ("channels", "bit_depth", "version"):
            off = lay.fields[name][0]
            pool = {"channels": (1, 3, 0, 2, 4, 255), "bit_depth": (7, 16, 0, 255), "version": (1, 2, 3, 1, 2, 3, 4, 0, 5)}[name]
            v = int(rng.choice([x for x in pool if x != buf[off]]))
            was, buf[off] = buf[off], v
            return bytes(buf), f"{was} -> {v}"
        if name == "fingerprint":
            off, size = lay.fields["fingerprint"]
            if rng.random() < 0.5:
                other = self.seeds[int(rng.integers(len(self.seeds)))]
                o, _ = layout(other).fields["fingerprint"]
                buf[off : off + size] = other[o : o + size]
                return bytes(buf), "another seed's"
            i = int(rng.integers(size * 8))
            buf[off + i // 8] ^= 1 << (i % 8)
            return bytes(buf), f"bit {i}"
        # name: another registered model (the name length changes with it)
        off, size = lay.fields["name"]
        new = str(rng.choice(self.names)).encode()
        return bytes(buf[:6]) + bytes([len(new)]) + new + bytes(buf[off + size :]), new.decode()


def run_header_fuzz(seeds: Sequence[Seed], cases: int = 2000, seed: int = 0, decode: Callable = default_decode,
                    time_limit: float = 5.0, rss_limit_mib: float = 512.0, cli_share: float = 0.0,
                    progress: Callable[[int, int, dict], None] | None = None) -> dict:
    """Run ``cases`` header edits over ``seeds``; a JSON-able summary (`testkit.fuzz_tally.Tally`).
    Cases that decode count as failures ("edited header decoded")."""
    from licodec.format import HEADER_BINDING, unpack

    for s in seeds:
        if unpack(s.data).version < HEADER_BINDING:
            raise ValueError(f"seed {s.label}: format version {unpack(s.data).version} does not bind its header")
    editor = HeaderEditor([s.data for s in seeds], seed)
    tally = Tally()
    for index in range(cases):
        case = editor.case(index)
        s = seeds[case.seed_index]
        res = run_case(case.data, s.weights, decode, time_limit, rss_limit_mib)
        if res.outcome == "decoded":
            res.outcome, res.reason = "failure", "an edited header decoded to an image"
        if cli_share > 0 and np.random.default_rng([seed, index, 4]).random() < cli_share:
            res.cli = check_cli(case.data, s.weights, "clean_error")
            if res.cli != "ok" and res.outcome != "failure":
                res.outcome, res.reason = "failure", res.cli
        tally.add(index, case.kind, case.op, s.label, res, case.data)
        if progress is not None:
            progress(index + 1, cases, dict(tally.outcomes))
    return tally.summary(cases, seed, time_limit, rss_limit_mib)
