import numpy as np
import pytest

from licodec.entropy.coder import CodingError, RangeDecoder, RangeEncoder, TableSet


def _tables():
    rng = np.random.default_rng(0)
    return TableSet.from_pmfs([rng.random(5), rng.random(9), np.array([1.0, 0.0, 0.0])], np.array([-2, -4, 0]))


def test_roundtrip_interleaved_calls():
    t = _tables()
    rng = np.random.default_rng(1)
    idx = [rng.integers(0, 3, size=n) for n in (50, 1, 300)]
    sym = [t.clamp(rng.integers(-6, 7, size=len(i)), i) for i in idx]
    enc = RangeEncoder()
    for s, i in zip(sym, idx):
        t.encode(enc, s, i)
    dec = RangeDecoder(enc.finish())
    for s, i in zip(sym, idx):
        np.testing.assert_array_equal(t.decode(dec, i), s)


def test_zero_probability_symbols_are_still_encodable():
    t = _tables()
    idx = np.full(10, 2)
    sym = np.full(10, 2)  # probability 0.0 in table 2
    enc = RangeEncoder()
    t.encode(enc, sym, idx)
    np.testing.assert_array_equal(t.decode(RangeDecoder(enc.finish()), idx), sym)


def test_clamp_keeps_symbols_in_support():
    t = _tables()
    out = t.clamp(np.array([-100, 100, 3]), np.array([0, 1, 2]))
    np.testing.assert_array_equal(out, [-2, 4, 2])


def test_stream_must_be_whole_words():
    with pytest.raises(CodingError):
        RangeDecoder(b"abc")


def test_lazy_tables_built_on_first_use_only():
    built = []

    def build(t):
        built.append(t)
        return np.ones(3), -1

    t = TableSet(1000, build)
    enc = RangeEncoder()
    t.encode(enc, np.array([0, 1, -1]), np.array([7, 7, 500]))
    assert sorted(built) == [7, 500]
    np.testing.assert_array_equal(t.decode(RangeDecoder(enc.finish()), np.array([7, 7, 500])), [0, 1, -1])
