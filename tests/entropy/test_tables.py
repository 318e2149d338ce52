"""The integer coding tables of format version 4: the committed Gaussian constants, licodec's
quantization of pmfs, and constriction coding exactly the integer frequencies it is handed."""

import hashlib

import constriction
import numpy as np
import pytest

from licodec.entropy import tables
from licodec.entropy.coder import (PRECISION, CodingError, RangeDecoder, RangeEncoder, TableSet, integer_model,
                                   legacy_tables, quantize_pmf)
from licodec.entropy.gaussian import OFFSET_STEPS, SCALE_LEVELS, gaussian_tables, offset_gaussian_tables

TOTAL = 1 << PRECISION


def constriction_left_cdf(model, n: int) -> np.ndarray:
    """The left cumulative constriction gives each symbol, read back: one symbol encoded onto an
    empty ANS coder leaves exactly its left cumulative as the coder's state."""
    out = np.empty(n, dtype=np.int64)
    for s in range(n):
        c = constriction.stream.stack.AnsCoder()
        c.encode_reverse(np.array([s], dtype=np.int32), model)
        words = c.get_compressed()
        out[s] = sum(int(w) << (32 * k) for k, w in enumerate(words[::-1]))
    return out


def test_committed_file_checksum():
    data = tables.tables_path().read_bytes()
    assert hashlib.sha256(data).hexdigest() == tables.TABLES_SHA256
    assert len(data) < 600_000  # compact: deflated first differences


def test_committed_tables_are_the_float64_reference():
    """The committed constants are what the generator computes (float64 reference, then
    `quantize_pmf`). Regenerating them is a format change: never "refresh" the file."""
    ref = tables.generate()
    assert len(ref) == tables.OFFSETS * SCALE_LEVELS
    for t, f in enumerate(ref):
        got, low = tables.frequencies(t // SCALE_LEVELS, t % SCALE_LEVELS)
        assert np.array_equal(got, f), f"table {t} differs from its float64 reference"
        assert low == -tables.support(float(__import__("licodec").entropy.gaussian.scale_table()[t % SCALE_LEVELS]))


def test_committed_tables_are_sane():
    starts, deltas = tables._load()
    for t in range(tables.OFFSETS * SCALE_LEVELS):
        f = np.cumsum(deltas[starts[t]:starts[t + 1]])
        assert f.min() >= 1 and f.sum() == TOTAL  # every CDF strictly increasing, total 2**PRECISION
        cdf = np.concatenate(([0], np.cumsum(f)))
        assert (np.diff(cdf) > 0).all() and cdf[-1] == TOTAL
        assert len(f) % 2 == 1
        r = (len(f) - 1) // 2
        assert (f[r:] >= f[r::-1] - 1).all()  # N(o, σ), o in [0, 1/2]: right of 0 at least the mirror left
        assert (np.diff(f[r + 1:]) <= 1).all() and (np.diff(f[:r]) >= -1).all()  # unimodal (up to remainders)
    for i in range(SCALE_LEVELS):
        f = tables.frequencies(0, i)[0]
        assert np.abs(f - f[::-1]).max() <= 1  # zero mean: symmetric, up to the tie-breaking of remainders


def test_negative_offsets_mirror():
    for i in (0, 40, 127):
        f, low = tables.frequencies(3, i)
        g, low2 = tables.frequencies(-3, i)
        assert low == low2 and np.array_equal(g, f[::-1])


def test_quantize_pmf_rule():
    f = quantize_pmf(np.array([0.0, 1.0, 1.0, 2.0]))
    assert f.sum() == TOTAL and f.min() >= 1 and f[0] == 1
    free = TOTAL - 4  # 3 parts: 1/4, 1/4, 1/2 of free, one unit each besides
    assert list(f) == [1, 1 + free // 4, 1 + free // 4, 1 + free // 2 + (free - 2 * (free // 4) - free // 2)]
    rng = np.random.default_rng(0)
    for n in (1, 2, 129, 5000):
        p = rng.random(n) ** 8
        f = quantize_pmf(p)
        assert f.sum() == TOTAL and f.min() >= 1
        w = p * (TOTAL - n) / p.sum()
        assert np.abs(f - 1 - w).max() < 1  # largest remainder: within one unit of the ideal share
    for bad in (np.array([np.nan, 1.0]), np.array([-1.0, 2.0]), np.zeros(3), np.array([np.inf])):
        with pytest.raises(CodingError):
            quantize_pmf(bad)


@pytest.mark.parametrize("seed", range(3))
def test_constriction_codes_exactly_the_integer_frequencies(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 300))
    f = quantize_pmf(rng.random(n) ** 6)
    left = constriction_left_cdf(integer_model(f), n)
    assert np.array_equal(left, np.cumsum(f) - f)


def test_constriction_codes_the_gaussian_tables_exactly():
    for j, i in ((0, 0), (8, 0), (5, 30)):
        f, _ = tables.frequencies(j, i)
        left = constriction_left_cdf(integer_model(f), len(f))
        assert np.array_equal(left, np.cumsum(f) - f)


def test_integer_model_refuses_bad_tables():
    for bad in (np.array([0, TOTAL]), np.array([1, 2, 3]), np.array([1.0, TOTAL - 1.0])):
        with pytest.raises(CodingError):
            integer_model(bad)


def test_integer_tables_round_trip_and_legacy_differ():
    syms = np.array([-300, -20, -1, 0, 0, 1, 2, 40, 6000], dtype=np.int64)
    idx = np.array([127, 50, 3, 0, 60, 90, 127, 127, 127])
    for legacy in (False, True):
        with legacy_tables(legacy):
            ts = gaussian_tables()
            s = ts.clamp(syms, idx)
            enc = RangeEncoder()
            ts.encode(enc, s, idx)
            data = enc.finish()
            dec = RangeDecoder(data)
            assert np.array_equal(ts.decode(dec, idx), s)
    assert gaussian_tables(legacy=True) is not gaussian_tables(legacy=False)
    assert offset_gaussian_tables(legacy=False).count == (OFFSET_STEPS + 1) * SCALE_LEVELS


def test_tableset_takes_integer_frequencies():
    f = quantize_pmf(np.array([1.0, 2.0, 3.0]))
    ts = TableSet.from_pmfs([f], [-1])
    enc = RangeEncoder()
    ts.encode(enc, np.array([-1, 0, 1, 1]), np.zeros(4, dtype=np.int64))
    assert np.array_equal(ts.decode(RangeDecoder(enc.finish()), np.zeros(4, dtype=np.int64)), [-1, 0, 1, 1])


# -- the factorized prior's tables, stored in weight files ------------------------------------------


def _tiny(name="mbt2018-mean"):
    import torch

    from licodec.models import create_model
    from testkit import TINY_CONFIGS

    torch.manual_seed(0)
    return create_model(name, TINY_CONFIGS[name]).eval()


@pytest.mark.parametrize("name", ["mbt2018-mean", "compressai-mbt2018-mean"])
def test_weight_files_store_the_z_tables_outside_the_fingerprint(tmp_path, name):
    import torch
    from safetensors.torch import load_file

    from licodec.weights import TABLES_PREFIX, fingerprint, load_weights, model_fingerprint, save_weights

    m = _tiny(name)
    if hasattr(m.entropy_bottleneck, "medians"):
        m.entropy_bottleneck.medians.normal_(0, 3)
    p = tmp_path / "w.safetensors"
    fp = save_weights(m, p, None if m.variable_rate else 3.0)
    stored = load_file(str(p))
    t = stored[TABLES_PREFIX + "entropy_bottleneck"]
    assert t.dtype == torch.int32 and t.shape == (m.entropy_bottleneck.channels, 129)
    assert fp == model_fingerprint(m) == fingerprint(stored)  # the tables are not model tensors
    assert (t.sum(dim=1) == TOTAL).all() and (t >= 1).all()
    m2, _ = load_weights(p)
    frozen = m2.entropy_bottleneck.frozen_tables()
    assert frozen is not None and np.array_equal(frozen, t.numpy())
    assert np.array_equal(m.entropy_bottleneck.integer_tables(), t.numpy())
    with torch.no_grad():  # parameters changed after loading (training on): tables follow them
        m2.entropy_bottleneck.biases[0].add_(0.5)
    assert m2.entropy_bottleneck.frozen_tables() is None
    assert not np.array_equal(m2.entropy_bottleneck.integer_tables(), t.numpy())


def test_stored_tables_are_used_and_checked(tmp_path):
    import json

    import torch
    from safetensors.torch import load_file, save_file

    from licodec.weights import TABLES_PREFIX, WeightsError, load_weights, read_metadata, save_weights

    m = _tiny()
    p = tmp_path / "w.safetensors"
    save_weights(m, p, 3.0)
    meta, state = dict(read_metadata(p)), load_file(str(p))
    key = TABLES_PREFIX + "entropy_bottleneck"
    # another valid table, recorded: coding uses what the file stores, not a recomputation
    t = state[key].clone()
    t[0, 60], t[0, 64] = t[0, 60] + 1000, t[0, 64] - 1000
    from licodec.weights import tables_digest

    meta2 = {**meta, "tables": json.dumps({"format": "licodec-tables-1", "sha256": tables_digest({key: t})})}
    save_file({**state, key: t}, str(tmp_path / "other.safetensors"), metadata=meta2)
    m2, _ = load_weights(tmp_path / "other.safetensors")
    assert np.array_equal(m2.entropy_bottleneck.integer_tables(), t.numpy())
    # edited without its checksum: refused
    save_file({**state, key: t}, str(tmp_path / "bad.safetensors"), metadata=meta)
    with pytest.raises(WeightsError, match="coding tables do not match"):
        load_weights(tmp_path / "bad.safetensors")
    # recorded but not a distribution: refused
    z = state[key].clone()
    z[1, 0] = 0
    meta3 = {**meta, "tables": json.dumps({"format": "licodec-tables-1", "sha256": tables_digest({key: z})})}
    save_file({**state, key: z}, str(tmp_path / "zero.safetensors"), metadata=meta3)
    with pytest.raises(WeightsError, match="invalid coding tables"):
        load_weights(tmp_path / "zero.safetensors")
    # a file without tables (saved before): computed at load, the same as stored ones
    del meta["tables"]
    save_file({k: v for k, v in state.items() if k != key}, str(tmp_path / "old.safetensors"), metadata=meta)
    m3, _ = load_weights(tmp_path / "old.safetensors")
    assert np.array_equal(m3.entropy_bottleneck.integer_tables(), state[key].numpy())
    from licodec.weights import add_tables

    assert add_tables(tmp_path / "old.safetensors") and not add_tables(tmp_path / "old.safetensors")
    assert torch.equal(load_file(str(tmp_path / "old.safetensors"))[key], state[key])


def test_legacy_z_tables_are_the_float_pmfs():
    m = _tiny("compressai-mbt2018-mean")
    eb = m.entropy_bottleneck
    with legacy_tables():
        ts = eb.tables()
        pmf, low = ts._build(3)
    assert pmf.dtype == np.float64 and low == -64 and np.array_equal(pmf, eb.table_pmfs()[3])
    pmf, low = eb.tables()._build(3)
    assert pmf.dtype.kind == "i" and np.array_equal(pmf, quantize_pmf(eb.table_pmfs()[3]))
