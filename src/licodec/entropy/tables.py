"""The Gaussian conditional's integer coding tables (format version 4): constants of the format.

Table (j, i), j = 0..OFFSET_STEPS // 2, i = 0..SCALE_LEVELS - 1, holds the integer frequencies of
N(o, σ) with o = j / OFFSET_STEPS and σ = ``scale_table()[i]``, discretized at the
integers -r..r, r = max(32, ⌈24σ⌉) (the supports of versions 1 to 3): pmf_k = Φ((k + 1/2 - o)/σ)
- Φ((k - 1/2 - o)/σ), evaluated in float64 on the side of the mean where it is accurate, turned
into frequencies by `licodec.entropy.coder.quantize_pmf` (each >= 1, total 2**PRECISION). A
negative offset -o is the mirror image (the frequencies reversed) of +o; the zero-mean tables are
j = 0.

They were computed once by `generate` (``scripts/make_gaussian_tables.py``) and are stored in
``gaussian_tables.npz`` beside this module (per table the first differences of the frequencies,
int32, deflated), whose SHA-256 is `TABLES_SHA256`: decoding reads them, never recomputes them,
so no libm, float kernel or library version decides them. tests/entropy/test_tables.py checks
the file against `generate` (a float64 reference) and every table's sanity.
"""

from __future__ import annotations

import hashlib
import math
from functools import lru_cache
from importlib import resources

import numpy as np

from .coder import PRECISION, CodingError, quantize_pmf

# the grid the tables are indexed by: log-spaced scales, and fractional mean offsets o = j/16,
# j = -8..8, for integer latents (negative offsets mirror positive ones: OFFSETS tables per scale)
SCALE_MIN = 0.11
SCALE_MAX = 256.0
SCALE_LEVELS = 128
OFFSET_STEPS = 16
OFFSETS = OFFSET_STEPS // 2 + 1  # j = 0..8: o = j/16 in [0, 1/2]
LOG_STEP = math.log(SCALE_MAX / SCALE_MIN) / (SCALE_LEVELS - 1)
TABLES_FILE = "gaussian_tables.npz"
TABLES_SHA256 = "18829f8de4427fb661189d987e9b3fab7c8056f9d944e14426460f26e05b281d"


def scale_table() -> np.ndarray:
    return np.exp(np.log(SCALE_MIN) + LOG_STEP * np.arange(SCALE_LEVELS, dtype=np.float64))


def support(sigma: float) -> int:
    return max(32, math.ceil(24 * sigma))


def reference_pmf(o: float, sigma: float) -> tuple[np.ndarray, int]:
    """float64 pmf of N(o, σ) at the integers -r..r, each bin on its accurate side: (pmf, r).
    Needs scipy (the ``test`` extra): only the generator and the tests call it, never coding."""
    from scipy.special import ndtr

    r = support(sigma)
    k = np.arange(-r, r + 1, dtype=np.float64)
    lo, hi = (k - 0.5 - o) / sigma, (k + 0.5 - o) / sigma
    right = k - o >= 0  # bins right of the mean: upper tails, Φ(-lo) - Φ(-hi)
    pmf = np.where(right, ndtr(-lo) - ndtr(-hi), ndtr(hi) - ndtr(lo))
    return pmf, r


def generate() -> list[np.ndarray]:
    """Every table's frequencies (int64), in the order (j, i), j major."""
    scales = scale_table()
    return [quantize_pmf(reference_pmf(j / OFFSET_STEPS, float(scales[i]))[0])
            for j in range(OFFSETS) for i in range(SCALE_LEVELS)]


def pack(tables: list[np.ndarray]) -> dict[str, np.ndarray]:
    lengths = np.array([len(t) for t in tables], dtype=np.int32)
    deltas = np.concatenate([np.diff(t, prepend=0) for t in tables]).astype(np.int32)
    return {"precision": np.array([PRECISION], dtype=np.int32), "lengths": lengths, "deltas": deltas}


def tables_path():
    return resources.files("licodec.entropy") / TABLES_FILE


@lru_cache(maxsize=1)
def _load() -> tuple[np.ndarray, np.ndarray]:
    data = tables_path().read_bytes()
    if hashlib.sha256(data).hexdigest() != TABLES_SHA256:
        raise CodingError(f"{TABLES_FILE} is damaged (SHA-256 mismatch): reinstall licodec")
    import io

    with np.load(io.BytesIO(data)) as z:
        if int(z["precision"][0]) != PRECISION:
            raise CodingError(f"{TABLES_FILE} has precision {int(z['precision'][0])}, not {PRECISION}")
        lengths = z["lengths"].astype(np.int64)
        deltas = z["deltas"].astype(np.int64)
    return np.concatenate(([0], np.cumsum(lengths))), deltas


def frequencies(j: int, i: int) -> tuple[np.ndarray, int]:
    """(frequencies of table (j, i), j in -8..8 (negative: the mirror of -j), low symbol -r)."""
    starts, deltas = _load()
    t = abs(j) * SCALE_LEVELS + i
    f = np.cumsum(deltas[starts[t]:starts[t + 1]])
    if j < 0:
        f = f[::-1].copy()
    return f, -((len(f) - 1) // 2)
