"""Range coding of integer symbols with `constriction`, driven by integer table indices.

Everything the coder sees is an integer: symbols, and the index of the probability table
each symbol is coded with. The tables themselves are built once, in float64 on the CPU, from
constants (the scale table) or from the factorized prior's parameters, so encoder and decoder
build bit-identical tables whatever device or thread count ran the networks. This is the
"frozen integer tables" discipline of tensorflow/compression, with constriction doing the
fixed-point quantization and the range coding.

Typical workflow::

    enc = RangeEncoder()                      # licodec.entropy.coder.RangeEncoder
    tables.encode(enc, symbols, indices)      # any number of calls, in decoding order
    data = enc.finish()
    dec = RangeDecoder(data)
    symbols = tables.decode(dec, indices)     # the same calls, in the same order
    dec.check_finished()
"""

from __future__ import annotations

import math

import numpy as np
import constriction

from . import exact

__all__ = ["CodingError", "RangeEncoder", "RangeDecoder", "TableSet"]


class CodingError(ValueError):
    """The compressed stream does not decode (corrupt, truncated, or made with other tables)."""


class RangeEncoder:
    """Thin wrapper over `constriction.stream.queue.RangeEncoder` (queue: decode order = encode order)."""

    def __init__(self) -> None:
        self._enc = constriction.stream.queue.RangeEncoder()

    def finish(self) -> bytes:
        words = self._enc.get_compressed()  # uint32 words, little-endian on disk
        return words.astype("<u4").tobytes()


class RangeDecoder:
    def __init__(self, data: bytes) -> None:
        if len(data) % 4:
            raise CodingError("entropy-coded stream length is not a multiple of 4 bytes")
        words = np.frombuffer(data, dtype="<u4").astype(np.uint32)
        self._dec = constriction.stream.queue.RangeDecoder(words)

    def check_finished(self) -> None:
        """Best-effort check that the stream was consumed; a stream with trailing garbage is refused."""
        if self._dec.maybe_exhausted() is False:
            raise CodingError("entropy-coded stream has trailing data")


class TableSet:
    """A family of discrete distributions indexed by an integer t; table t is a pmf over the
    symbols ``low_t .. low_t + len(pmf_t) - 1``.

    Tables are built lazily by ``build(t) -> (pmf float64 array, low)`` on first use and cached,
    so large families (e.g. 17 mean offsets x 128 scales) cost only what an image uses. ``build``
    must be a pure function of t computed in float64 on the CPU: then encoder and decoder get
    bit-identical tables. Symbols are clamped into the support of their table before coding (the
    caller must use the clamped values, which `clamp` returns, so both sides agree). Every symbol
    in the support is encodable: constriction gives each at least the smallest representable
    probability.
    """

    def __init__(self, count: int, build) -> None:
        self.count = count
        self._build = build
        self._cache: dict[int, tuple] = {}

    @classmethod
    def from_pmfs(cls, pmfs: list[np.ndarray], lows) -> "TableSet":
        if len(pmfs) != len(lows):
            raise ValueError("one offset per table is required")
        return cls(len(pmfs), lambda t: (pmfs[t], int(lows[t])))

    def __len__(self) -> int:
        return self.count

    def table(self, t: int):
        """(constriction model, low, size) of table t."""
        entry = self._cache.get(t)
        if entry is None:
            if not 0 <= t < self.count:
                raise IndexError(f"table index {t} out of range")
            with exact.suspended():  # constants, not a network: plain float64 on the CPU
                pmf, low = self._build(t)
            pmf = np.asarray(pmf, dtype=np.float64)
            total = float(pmf.sum()) if pmf.ndim == 1 and pmf.size else math.nan
            if not (np.isfinite(pmf).all() and (pmf >= 0).all() and 0 < total < math.inf):
                # only learned tables (the factorized prior's) can be: damaged or hostile weights
                raise CodingError(f"probability table {t} is not a distribution (NaN, negative or all zero; damaged weights?)")
            try:
                model = constriction.stream.model.Categorical(pmf, perfect=False)
            except (ValueError, RuntimeError) as e:
                raise CodingError(f"probability table {t} cannot be used ({str(e).splitlines()[0]})") from None
            entry = (model, int(low), len(pmf))
            self._cache[t] = entry
        return entry

    def clamp(self, symbols: np.ndarray, indices: np.ndarray) -> np.ndarray:
        uniq, inv = np.unique(np.asarray(indices).reshape(-1), return_inverse=True)
        lows = np.array([self.table(int(t))[1] for t in uniq], dtype=np.int64)
        highs = lows + np.array([self.table(int(t))[2] for t in uniq], dtype=np.int64) - 1
        flat = np.clip(np.asarray(symbols).reshape(-1), lows[inv], highs[inv])
        return flat.reshape(np.shape(symbols))

    @staticmethod
    def _groups(indices: np.ndarray):
        """Positions of each table index, in a canonical order (ascending index, stable)."""
        if indices.size == 0:
            return
        order = np.argsort(indices, kind="stable")
        sorted_idx = indices[order]
        bounds = np.flatnonzero(np.diff(sorted_idx)) + 1
        starts = np.concatenate(([0], bounds))
        ends = np.concatenate((bounds, [len(order)]))
        for s, e in zip(starts, ends):
            yield int(sorted_idx[s]), order[s:e]

    def encode(self, enc: RangeEncoder, symbols: np.ndarray, indices: np.ndarray) -> None:
        """Encode ``symbols`` (already clamped) with table ``indices`` (same shape, flattened)."""
        symbols = np.asarray(symbols).reshape(-1).astype(np.int64)
        indices = np.asarray(indices).reshape(-1).astype(np.int64)
        for t, pos in self._groups(indices):
            model, low, _ = self.table(t)
            enc._enc.encode((symbols[pos] - low).astype(np.int32), model)

    def decode(self, dec: RangeDecoder, indices: np.ndarray) -> np.ndarray:
        """Decode one symbol per entry of ``indices``; returns int64 symbols of the same shape."""
        shape = np.shape(indices)
        flat = np.asarray(indices).reshape(-1).astype(np.int64)
        out = np.empty(flat.shape, dtype=np.int64)
        try:
            for t, pos in self._groups(flat):
                model, low, _ = self.table(t)
                out[pos] = np.asarray(dec._dec.decode(model, len(pos)), dtype=np.int64) + low
        except (ValueError, RuntimeError, AssertionError) as e:  # constriction reports bad data this way
            raise CodingError(f"entropy-coded stream is corrupt ({e})") from None
        return out.reshape(shape)
