"""Range coding of integer symbols with `constriction`, driven by integer table indices.

Everything the coder sees is an integer: symbols, the index of the probability table each
symbol is coded with, and (format version 4) the tables themselves: integer frequencies, each at
least 1, summing to ``2**PRECISION``, handed to constriction so that its own quantization is the
identity (`integer_model`). The frequencies are constants of the format (the Gaussian tables,
`licodec.entropy.tables`) or stored in the weight file (the factorized prior's); `quantize_pmf`
is licodec's rule for turning a float64 pmf into frequencies. No float kernel, libm or
constriction version decides a table.

Files of format versions 1 to 3 were made with float64 pmfs quantized by constriction
(``Categorical(perfect=False)``); they decode as they were made: `legacy_tables` (entered by
`licodec.codec` for those versions) selects that construction.

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
from contextlib import contextmanager
from contextvars import ContextVar

import numpy as np
import constriction

from . import exact

__all__ = ["CodingError", "RangeEncoder", "RangeDecoder", "TableSet", "PRECISION", "quantize_pmf", "integer_model",
           "legacy_tables", "legacy_active"]

PRECISION = 24  # bits of the integer frequencies: constriction's default range coder (u32 words, 24-bit models)
TOTAL = 1 << PRECISION

_LEGACY: ContextVar[bool] = ContextVar("licodec_legacy_tables", default=False)


@contextmanager
def legacy_tables(active: bool = True):
    """Within: tables built as format versions 1 to 3 built them (float64 pmfs quantized by
    constriction); outside: the integer tables of version 4."""
    token = _LEGACY.set(bool(active))
    try:
        yield
    finally:
        _LEGACY.reset(token)


def legacy_active() -> bool:
    return _LEGACY.get()


def quantize_pmf(pmf) -> np.ndarray:
    """licodec's quantization of a pmf into integer frequencies (int64, same length n): every
    symbol gets 1, and the other ``2**PRECISION - n`` units are shared in proportion to the pmf by
    largest remainder: with w_i = pmf_i * (2**PRECISION - n) / S in float64 (S the exactly rounded
    sum, `math.fsum`), symbol i gets 1 + floor(w_i), and the units left over go one each to the
    largest fractional parts w_i - floor(w_i), ties to the lower index. Only correctly rounded
    float64 operations: the same frequencies on every machine for the same pmf."""
    pmf = np.asarray(pmf, dtype=np.float64)
    n = pmf.size
    if pmf.ndim != 1 or not 1 <= n < TOTAL:
        raise CodingError(f"a probability table needs 1..{TOTAL - 1} symbols, got shape {pmf.shape}")
    if not (np.isfinite(pmf).all() and (pmf >= 0).all()):
        raise CodingError("probability table is not a distribution (NaN, infinite or negative)")
    total = math.fsum(pmf.tolist())
    if not 0 < total < math.inf:
        raise CodingError("probability table is not a distribution (all zero)")
    free = TOTAL - n
    w = pmf * float(free) / total
    base = np.floor(w)
    freq = base.astype(np.int64)
    left = free - int(freq.sum())
    if left < 0:  # rounding up in w can overshoot by a few units: take them from the smallest remainders
        order = np.lexsort((-np.arange(n), w - base))  # smallest remainder first, ties: higher index
        order = order[freq[order] > 0][:-left]
        freq[order] -= 1
    elif left > 0:
        order = np.lexsort((np.arange(n), -(w - base)))  # largest remainder first, ties: lower index
        freq[order[:left]] += 1
    return freq + 1


def check_frequencies(freq, what: str = "table") -> np.ndarray:
    """``freq`` as int64 if it is a valid integer table (every entry >= 1, sum 2**PRECISION)."""
    f = np.asarray(freq)
    if f.ndim != 1 or f.size < 1 or f.dtype.kind not in "iu":
        raise CodingError(f"{what}: integer frequencies must be a non-empty 1-D integer array")
    f = f.astype(np.int64)
    if int(f.min()) < 1 or int(f.sum()) != TOTAL:
        raise CodingError(f"{what}: integer frequencies must be >= 1 and sum to 2**{PRECISION} (damaged tables?)")
    return f


def integer_model(freq) -> "constriction.stream.model.Categorical":
    """A constriction model with exactly these integer frequencies (validated by `check_frequencies`).

    constriction (``perfect=False``, every version in 0.4..0.5) gives symbol i the left cumulative
    ``floor(c_i * (2**P - n) / S) + i`` where c_i is the float sum of the probabilities before i
    and S their sum: passed ``freq - 1`` (integers, summed exactly in float64), the scale is exactly
    1 and the left cumulatives are exactly those of ``freq`` (tests/entropy/test_tables.py reads
    them back through constriction's ANS coder)."""
    f = check_frequencies(freq)
    return constriction.stream.model.Categorical((f - 1).astype(np.float64), perfect=False)


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

    Tables are built lazily by ``build(t) -> (pmf, low)`` on first use and cached; a pmf of an
    integer dtype is a table of integer frequencies (format version 4: `integer_model`, exactly
    those), a float one is quantized by constriction (format versions 1 to 3). So
    large families (e.g. 17 mean offsets x 128 scales) cost only what an image uses. ``build``
    must be a pure function of t (integer constants, or float64 on the CPU for the old versions):
    then encoder and decoder get bit-identical tables. Symbols are clamped into the support of their table before coding (the
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
            if np.asarray(pmf).dtype.kind in "iu":
                model = integer_model(np.asarray(pmf))
                entry = (model, int(low), len(pmf))
                self._cache[t] = entry
                return entry
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
