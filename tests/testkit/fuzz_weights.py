"""A fuzzer for weight files: hostile safetensors files must load, code and decode, or fail cleanly.

Starting from valid weight files of tiny models, it makes mutated ones deterministically (case ``i``
of seed ``s`` is always the same bytes) and runs each through the path a user's ``licodec compress
--weights W`` then ``decompress --weights W`` takes: `licodec.codec.Codec.from_weights`, encode a
small image, `licodec.codec.decode`. Outcomes as in `testkit.fuzz`: ``clean_error`` (one of
`testkit.fuzz.CLEAN_ERRORS`), ``decoded`` (the weights coded the image and the file decoded to an
image of its size: a mutation can leave valid weights, e.g. float16 storage or a finite value), or
``failure`` — another exception, a warning (the CLI would print it), a case slower than the time
limit or one whose peak RSS grew by more than the memory limit (a small file must not allocate a
big model).

Mutations (`WeightMutator.KINDS`): metadata keys dropped or set to hostile strings, the model name,
config fields (negative, zero, huge, fractional, non-finite, strings, lists, unknown fields, the
"2048 channels over a tiny file" attack, invalid JSON), tensor shapes (reshaped, resized, or only
the header's shape changed), dtypes (float64, integers, bool, float16, bfloat16), values (NaN, ±inf,
1e30, 1e6, subnormals, scaled tensors), tensors dropped, added or renamed, and raw bytes of the
header (JSON and length prefix) and data, truncation and extension. After a structured mutation
the fingerprint is recomputed in ``refp`` of the cases so that the damage reaches the checks behind
it. A share of the cases (``cli_share``) also runs ``licodec compress --weights`` in a fresh
folder: exit status 1 with one ``licodec: error:`` line and no file left behind, or exit status 0.

    summary = run_weight_fuzz(["tiny.safetensors", ...], rgb, cases=2000)
"""

from __future__ import annotations

import json
import math
import os
import struct
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from .fuzz import DECODE_BUDGET, Case, Result, guarded
from .fuzz_tally import Tally

META_KEYS = ("format", "model", "config", "quality", "lambda", "fingerprint", "extra")
HOSTILE_STRINGS = (
    "", "abc", "nan", "inf", "-inf", "-1", "0", "0.5", "9", "1e400", "variable", "3", "{", "{oops", "[]", "null",
    "{}", "é", "\x00", "x" * 10_000, "1" * 5000, '{"N": }', "[" * 5000,
)
HOSTILE_VALUES = (
    -1, 0, 1, 2, 3, 7, 8, 9, 63, 64, 65, 2048, 4096, 4097, 10**9, 2**31, 2**63, 1.5, -0.0, 16.0, math.nan, math.inf,
    True, False, None, "16", [], [1, 2], [0, 0, 0], {}, [65, 65, 65], [-1], list(range(100)), [2048, 2048, 2048],
)
SPECIAL_FLOATS = (math.nan, math.inf, -math.inf, 1e30, -1e30, 3e38, 1e7, 1e6, 5e5, 65504.0, 1e4, -1e4, 1e-40, 0.0, -0.0)
CAST_DTYPES = (torch.float64, torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8, torch.bool,
               torch.float16, torch.bfloat16)


def split(blob: bytes) -> tuple[dict, bytes]:
    """A safetensors file -> (header JSON as a dict, the data bytes)."""
    (n,) = struct.unpack_from("<Q", blob)
    return json.loads(blob[8 : 8 + n]), blob[8 + n :]


def join(header: dict, data: bytes) -> bytes:
    raw = json.dumps(header, separators=(",", ":"), sort_keys=True).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + data


class WeightMutator:
    """Makes the bytes of case ``index`` from the base files; a pure function of (seed, index)."""

    KINDS: ClassVar[dict[str, float]] = {
        "meta_drop": 5, "meta_value": 10, "meta_model": 4, "config": 20, "tiny_file": 3, "shape": 10,
        "header_shape": 4, "dtype": 10, "value": 18, "tensors": 6, "raw_header": 5, "raw_data": 2, "cut": 3,
    }

    def __init__(self, files: Sequence[bytes], seed: int = 0, refp: float = 0.8) -> None:
        from safetensors.torch import load

        if not files:
            raise ValueError("need at least one base weight file")
        self.files = [bytes(f) for f in files]
        self.parsed = [(split(f)[0].get("__metadata__", {}), load(f)) for f in self.files]
        self.canonical = [join(*split(f)) for f in self.files]  # as `_save` writes it: to tell a no-op
        self.seed, self.refp = seed, refp
        w = np.array(list(self.KINDS.values()), dtype=np.float64)
        self._kinds, self._p = list(self.KINDS), w / w.sum()
        from licodec.models import model_names

        self.names = model_names()

    def case(self, index: int) -> Case:
        rng = np.random.default_rng([self.seed, index, 5])
        si = int(rng.integers(len(self.files)))
        for _ in range(8):
            kind = str(rng.choice(self._kinds, p=self._p))
            data, op, refp = self._apply(kind, rng, si)
            if data not in (self.files[si], self.canonical[si]):  # e.g. a 1-D tensor "flattened": draw again
                break
        return Case(index, kind, op, si, refp, data)

    # -- structured: metadata and tensors, saved by safetensors ---------------------------------
    def _save(self, meta: dict, tensors: dict, rng, refp: bool = True) -> tuple[bytes, bool]:
        from safetensors.torch import save

        from licodec.weights import fingerprint

        fixed = refp and "fingerprint" in meta and rng.random() < self.refp
        if fixed:
            meta = {**meta, "fingerprint": fingerprint(tensors).hex()}
        # safetensors writes its metadata map in a random order: re-serialize it sorted (deterministic cases)
        return join(*split(save({k: v.contiguous() for k, v in tensors.items()}, metadata=meta))), fixed

    def _apply(self, kind: str, rng, si: int) -> tuple[bytes, str, bool]:
        meta, tensors = dict(self.parsed[si][0]), dict(self.parsed[si][1])
        names = sorted(tensors)
        if kind == "meta_drop":
            key = str(rng.choice(META_KEYS))
            meta.pop(key, None)
            data, fixed = self._save(meta, tensors, rng)
            return data, f"drop {key}", fixed
        if kind == "meta_value":
            key = str(rng.choice(META_KEYS))
            meta[key] = HOSTILE_STRINGS[int(rng.integers(len(HOSTILE_STRINGS)))]
            data, fixed = self._save(meta, tensors, rng, refp=key != "fingerprint")
            return data, f"{key} = {meta[key][:20]!r}", fixed
        if kind == "meta_model":
            pool = self.names + ["", "nope", "../x", "MBT2018-MEAN", "mbt2018-mean\x00", "a" * 1000]
            new = pool[int(rng.integers(len(pool)))]
            meta["model"] = new
            data, fixed = self._save(meta, tensors, rng)
            return data, f"model = {new[:30]!r}", fixed
        if kind in ("config", "tiny_file"):
            return self._config(kind, rng, meta, tensors)
        if kind == "shape":
            k = str(rng.choice(names))
            t = tensors[k]
            op = str(rng.choice(("flatten", "unsqueeze", "reverse", "half", "grow", "scalar")))
            if op == "flatten":
                t = t.reshape(-1)
            elif op == "unsqueeze":
                t = t.unsqueeze(0)
            elif op == "reverse":
                t = t.reshape(tuple(reversed(t.shape)))
            elif op == "half" and t.dim() and t.shape[0] > 1:
                t = t[: t.shape[0] // 2]
            elif op == "grow" and t.dim():
                t = torch.cat([t, torch.zeros_like(t)], dim=0)
            else:
                t = t.reshape(-1)[:1].reshape(())
            tensors[k] = t
            data, fixed = self._save(meta, tensors, rng)
            return data, f"{op} {k} -> {list(t.shape)}", fixed
        if kind == "dtype":
            k = str(rng.choice(names))
            dt = CAST_DTYPES[int(rng.integers(len(CAST_DTYPES)))]
            tensors[k] = tensors[k].to(dt)
            data, fixed = self._save(meta, tensors, rng)
            return data, f"{k} as {dt}", fixed
        if kind == "value":
            return self._value(rng, meta, tensors)
        if kind == "tensors":
            op = str(rng.choice(("drop", "add", "add_big", "rename")))
            k = str(rng.choice(names))
            if op == "drop":
                del tensors[k]
            elif op == "add":
                tensors["extra.weight"] = torch.zeros(3, 3)
            elif op == "add_big":
                tensors[k + ".copy"] = torch.zeros(1024, 1024)
            else:
                tensors["renamed." + k] = tensors.pop(k)
            data, fixed = self._save(meta, tensors, rng)
            return data, f"{op} {k}", fixed
        return self._raw(kind, rng, si)

    def _config(self, kind: str, rng, meta: dict, tensors: dict) -> tuple[bytes, str, bool]:
        try:
            config = json.loads(meta.get("config", "{}"))
        except ValueError:
            config = {}
        if kind == "tiny_file":  # the attack: a big config over (almost) no tensors
            side = int(rng.choice((2048, 4096, 1024, 65536, 10**6)))
            config.update({"N": side, "M": side})
            keep = {} if rng.random() < 0.5 else {k: tensors[k] for k in sorted(tensors)[:1]}
            meta["config"] = json.dumps(config)
            data, fixed = self._save(meta, keep, rng)
            return data, f"N = M = {side} over {len(keep)} tensor(s)", fixed
        r = rng.random()
        if r < 0.55 and config:
            key = str(rng.choice(sorted(config)))
            v = HOSTILE_VALUES[int(rng.integers(len(HOSTILE_VALUES)))]
            config[key] = v
            op = f"{key} = {json.dumps(v)[:30]}"
        elif r < 0.65:
            key = str(rng.choice(("N", "M", "widths", "hyper_width", "num_groups", "em_blocks", "naf_blocks",
                                  "rate_levels", "res_blocks")))
            config[key] = [64, 64, 64] if key in ("widths", "naf_blocks") else 64
            op = f"{key} = 64"
        elif r < 0.75 and config:
            key = str(rng.choice(sorted(config)))
            del config[key]
            op = f"drop {key}"
        elif r < 0.85:
            config["bogus"] = 1
            op = "unknown field"
        else:
            pool = ("[]", "3", "null", '"x"', "{oops", "", '{"N": }', "[" * 5000 + "]" * 5000)
            meta["config"] = pool[int(rng.integers(len(pool)))]
            data, fixed = self._save(meta, tensors, rng)
            return data, f"config = {meta['config'][:20]!r}", fixed
        meta["config"] = json.dumps(config)
        data, fixed = self._save(meta, tensors, rng)
        return data, op, fixed

    def _value(self, rng, meta: dict, tensors: dict) -> tuple[bytes, str, bool]:
        k = str(rng.choice(sorted(tensors)))
        t = tensors[k].clone()
        r = rng.random()
        if r < 0.7:
            v = float(rng.choice(SPECIAL_FLOATS))
            flat = t.view(-1)
            count = 1 if rng.random() < 0.6 else (2 if rng.random() < 0.5 else flat.numel())
            idx = torch.from_numpy(rng.choice(flat.numel(), min(count, flat.numel()), replace=False))
            flat[idx] = v
            op = f"{k}[{count}] = {v:g}"
        elif r < 0.9:
            f = float(rng.choice((1e3, 1e5, -1.0, 0.0, 1e-30)))
            t = t * f
            op = f"{k} * {f:g}"
        else:
            t = torch.zeros_like(t)
            op = f"{k} = 0"
        tensors[k] = t
        data, fixed = self._save(meta, tensors, rng)
        return data, op, fixed

    # -- raw: bytes of the file, the safetensors parser's business -------------------------------
    def _raw(self, kind: str, rng, si: int) -> tuple[bytes, str, bool]:
        blob = bytearray(self.files[si])
        (n,) = struct.unpack_from("<Q", blob)
        if kind == "header_shape":  # the header's shape only: the byte ranges no longer fit
            header, data = split(bytes(blob))
            k = str(rng.choice(sorted(x for x in header if x != "__metadata__")))
            shape = [[2048, 2048, 5, 5], [0], [-1], [2**40], [1] * 64, [], [3.5], ["a"]][int(rng.integers(8))]
            header[k]["shape"] = shape
            if rng.random() < 0.3:
                header[k]["data_offsets"] = [0, 2**40]
            return join(header, data), f"{k} shape {shape}", False
        if kind == "raw_header":
            if rng.random() < 0.3:
                pool = (0, 1, n - 1, n + 1, 2**32, 2**63, 100_000_001, len(blob))
                v = pool[int(rng.integers(len(pool)))]
                struct.pack_into("<Q", blob, 0, v % 2**64)
                return bytes(blob), f"header length {n} -> {v}", False
            count = int(rng.integers(1, 5))
            for _ in range(count):
                i = 8 + int(rng.integers(n))
                blob[i] = int(rng.choice((0x00, 0xFF, 0x22, 0x7B, 0x7D, 0x5B, 0x2C, 0x30))) if rng.random() < 0.6 \
                    else blob[i] ^ (1 << int(rng.integers(8)))
            return bytes(blob), f"{count} byte(s) in the header", False
        if kind == "raw_data":
            count = int(rng.integers(1, 9))
            for _ in range(count):
                i = 8 + n + int(rng.integers(len(blob) - 8 - n))
                blob[i] ^= 1 << int(rng.integers(8))
            return bytes(blob), f"{count} bit(s) in the data", False
        cut = int(rng.integers(len(blob)))
        if rng.random() < 0.6:
            return bytes(blob[:cut]), f"truncated to {cut} bytes", False
        return bytes(blob) + bytes(int(rng.integers(1, 4096))), "extended", False


def code_with(path: str, rgb: np.ndarray) -> np.ndarray:
    """What `licodec compress --weights path` then `decompress --weights path` do, in process."""
    from licodec.codec import Codec, _load, decode

    _load.cache_clear()  # every case is a new file
    try:
        data = Codec.from_weights(path).encode(rgb)
        out, _ = decode(data, weights=path, max_pixels=DECODE_BUDGET)
    finally:
        _load.cache_clear()
    return out


def run_weight_case(data: bytes, folder: Path, rgb: np.ndarray, time_limit: float = 5.0,
                    rss_limit_mib: float = 512.0) -> Result:
    path = folder / "case.safetensors"
    path.write_bytes(data)
    caught: list = []

    def call():
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            try:
                return code_with(str(path), rgb)
            finally:
                caught.extend(w)

    try:
        res, out = guarded(call, time_limit, rss_limit_mib)
    finally:
        path.unlink(missing_ok=True)
    if res.outcome == "decoded" and not (isinstance(out, np.ndarray) and out.shape == rgb.shape and out.dtype == np.uint8):
        res.outcome, res.reason = "failure", f"wrong result {getattr(out, 'shape', type(out).__name__)}"
    if res.outcome != "failure" and caught:
        res.outcome, res.reason = "failure", f"warning: {caught[0].category.__name__}: {caught[0].message}"
    return res


def check_cli_weights(data: bytes, image: Path, expect: str, timeout: float = 120.0) -> str:
    """Run ``licodec compress IMAGE --weights W`` in a fresh folder: "ok" or the problem."""
    with tempfile.TemporaryDirectory(prefix="licodec-wfuzz-") as d:
        w = Path(d) / "w.safetensors"
        w.write_bytes(data)
        cmd = [sys.executable, "-m", "licodec.cli", "compress", str(image), "--weights", str(w),
               "-o", str(Path(d) / "out.lic"), "--threads", "1"]
        try:
            r = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})
        except subprocess.TimeoutExpired:
            return f"cli: no answer in {timeout:g} s"
        left = sorted(p.name for p in Path(d).iterdir() if p.name != "w.safetensors")
        if "Traceback" in r.stderr or "internal error" in r.stderr:
            return f"cli: {r.stderr.strip().splitlines()[-1][:200]}"
        if expect == "clean_error":
            if r.returncode != 1 or not r.stderr.startswith("licodec: error:") or r.stderr.count("\n") != 1:
                return f"cli: exit {r.returncode}, stderr {r.stderr[:200]!r}"
            if left:
                return f"cli: left files behind after an error: {left}"
        elif expect == "decoded" and (r.returncode != 0 or left != ["out.lic"]):
            return f"cli: exit {r.returncode} on weights that code in process ({r.stderr.strip()[:200]!r})"
    return "ok"


def run_weight_fuzz(files: Sequence[str | os.PathLike], rgb: np.ndarray, cases: int = 2000, seed: int = 0,
                    time_limit: float = 5.0, rss_limit_mib: float = 512.0, refp: float = 0.8,
                    cli_share: float = 0.0, progress: Callable[[int, int, dict], None] | None = None) -> dict:
    """Run ``cases`` mutated weight files made from ``files`` (valid weight files), coding ``rgb``
    ((H, W, 3) uint8) with each; a JSON-able summary (`testkit.fuzz_tally.Tally`)."""
    from PIL import Image

    blobs = [Path(f).read_bytes() for f in files]
    labels = [Path(f).stem for f in files]
    with tempfile.TemporaryDirectory(prefix="licodec-wfuzz-") as d:
        folder = Path(d)
        image = folder / "image.png"
        Image.fromarray(rgb).save(image)
        for f in files:  # the base files must code: this also warms the caches (tables, imports)
            r = run_weight_case(Path(f).read_bytes(), folder, rgb, time_limit=max(time_limit, 60.0),
                                rss_limit_mib=math.inf)
            if r.outcome != "decoded":
                raise ValueError(f"base weight file {f} does not code: {r.reason}")
        mut = WeightMutator(blobs, seed, refp)
        tally = Tally()
        for index in range(cases):
            case = mut.case(index)
            res = run_weight_case(case.data, folder, rgb, time_limit, rss_limit_mib)
            if cli_share > 0 and np.random.default_rng([seed, index, 6]).random() < cli_share:
                res.cli = check_cli_weights(case.data, image, res.outcome)
                if res.cli != "ok" and res.outcome != "failure":
                    res.outcome, res.reason = "failure", res.cli
            kind = case.kind + (" (fingerprint recomputed)" if case.crc_fixed else "")
            tally.add(index, kind, case.op, labels[case.seed_index], res, case.data)
            if progress is not None:
                progress(index + 1, cases, dict(tally.outcomes))
    s = tally.summary(cases, seed, time_limit, rss_limit_mib)
    s["base_files"] = [{"label": lab, "bytes": len(b)} for lab, b in zip(labels, blobs)]
    s["refp"] = refp
    return s
