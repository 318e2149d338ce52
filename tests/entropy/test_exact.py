"""Exact arithmetic of the entropy-parameter path (format version 2): results that cannot depend
on summation order, hence on thread count, instruction set or device."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import TINY_CONFIGS, image_tensor, tiny_model
from licodec.entropy import exact
from licodec.entropy.gaussian import SCALE_LEVELS, scale_boundaries, scale_index
from testkit import reordered_sums

MODELS = sorted(TINY_CONFIGS)


def _grid(*shape, scale=4.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.round(torch.randn(*shape, generator=g) * scale / exact.STEP) * exact.STEP


def test_conv2d_equals_an_integer_reference():
    """The float64 evaluation gives exactly what int64 arithmetic gives: no rounding anywhere."""
    g = torch.Generator().manual_seed(1)
    x = _grid(1, 12, 9, 11)
    w, b = torch.randn(10, 12, 3, 3, generator=g) * 0.3, torch.randn(10, generator=g)
    out = exact.conv2d(x, w, b, 1, 1)
    a, w_int, b_int = exact._int_weight(w, b, (1, 2, 3))
    cols = F.unfold(exact.snap(x), 3, padding=1).long()  # (1, 12·9, 99) integer grid steps
    acc = (w_int.long().view(10, -1) @ cols[0]) + b_int.long().view(-1, 1)  # (10, 99) int64
    ref = torch.round(acc.double() * 2.0**-a).view(1, 10, 9, 11) * exact.STEP
    assert torch.equal(out.double(), ref)
    assert (out - F.conv2d(x, w, b, 1, 1)).abs().max() < 1e-3  # and it is the convolution


def test_results_do_not_depend_on_summation_order():
    """Reversing the input channels reorders every sum of a convolution. On these inputs that
    changes the float32 results (the control: the reordering has something to change), and leaves
    the exact ones as they are."""
    g = torch.Generator().manual_seed(2)
    x = _grid(1, 64, 8, 8)
    w, b = torch.randn(32, 64, 5, 5, generator=g) * 0.05, torch.randn(32, generator=g)
    assert not torch.equal(F.conv2d(x, w, b, 1, 2), F.conv2d(x.flip(1), w.flip(1), b, 1, 2))
    assert torch.equal(exact.conv2d(x, w, b, 1, 2), exact.conv2d(x.flip(1), w.flip(1), b, 1, 2))
    wt = torch.randn(64, 16, 5, 5, generator=g) * 0.05
    assert not torch.equal(F.conv_transpose2d(x, wt, None, 2, 2, 1), F.conv_transpose2d(x.flip(1), wt.flip(0), None, 2, 2, 1))
    assert torch.equal(exact.conv_transpose2d(x, wt, None, 2, 2, 1),
                       exact.conv_transpose2d(x.flip(1), wt.flip(0), None, 2, 2, 1))
    m, v, b0 = torch.randn(40, 64, generator=g), _grid(64), b[:1].expand(40).clone()
    assert not torch.equal(torch.addmv(b0, m, v), torch.addmv(b0, m.flip(1), v.flip(0)))
    assert torch.equal(exact.addmv(b0, m, v), exact.addmv(b0, m.flip(1), v.flip(0)))
    n = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = exact.conv2d(_grid(1, 64, 40, 40), w, b, 1, 2)
        torch.set_num_threads(4)
        four = exact.conv2d(_grid(1, 64, 40, 40), w, b, 1, 2)
    finally:
        torch.set_num_threads(n)
    assert torch.equal(one, four)


@pytest.mark.parametrize(("stride", "padding", "output_padding"), [(1, 1, 0), (2, 2, 1), (2, 1, 0)])
def test_convolutions_in_bands_equal_one_call(monkeypatch, stride, padding, output_padding):
    """Large inputs are convolved in bands of rows (bounded buffers): the same integers."""
    g = torch.Generator().manual_seed(3)
    x = _grid(1, 6, 23, 17)
    w, wt = torch.randn(5, 6, 5, 5, generator=g), torch.randn(6, 4, 5, 5, generator=g)
    whole = (exact.conv2d(x, w, None, stride, padding), exact.conv_transpose2d(x, wt, None, stride, padding, output_padding))
    monkeypatch.setattr(exact, "CHUNK_BYTES", 6 * 25 * 20 * 8 * 2)  # two or three rows per band
    banded = (exact.conv2d(x, w, None, stride, padding), exact.conv_transpose2d(x, wt, None, stride, padding, output_padding))
    for a, b in zip(whole, banded):
        assert a.shape == b.shape and torch.equal(a, b)
    assert whole[1].shape == F.conv_transpose2d(x, wt, None, stride, padding, output_padding).shape


def test_worst_case_stays_exact():
    """Inputs at the clamp limit and large weights: the weight precision adapts, nothing overflows 2^53."""
    x = torch.full((1, 8, 4, 4), exact.ACT_LIMIT * 4)  # clamped to ±ACT_LIMIT
    w = torch.full((4, 8, 3, 3), 1000.0)
    a, w_int, _ = exact._int_weight(w, None, (1, 2, 3))
    assert w_int.abs().sum(dim=(1, 2, 3)).max().item() * exact.ACT_LIMIT / exact.STEP < 2.0**53
    out = exact.conv2d(x, w, None, 1, 1)
    assert out.max().item() == exact.ACT_LIMIT  # clamped back into the grid's range


def test_tables_and_scale_boundaries_keep_their_margin():
    # building them runs the margin checks (they raise if a value sits near a rounding boundary)
    for name in ("gelu", "tanh"):
        table, r = exact._table(name)
        assert table.shape == (2 * r + 1,)
    assert scale_boundaries().shape == (SCALE_LEVELS - 1,)


def test_exact_functions_match_their_float_versions():
    x = _grid(1000, scale=6.0)
    assert (exact.gelu(x) - F.gelu(x)).abs().max() <= exact.STEP
    assert (exact.tanh(x) - torch.tanh(x)).abs().max() <= exact.STEP
    assert (exact.leaky_relu(x, 0.01) - F.leaky_relu(x, 0.01)).abs().max() <= exact.STEP
    far = torch.tensor([-50.0, 50.0])
    assert exact.gelu(far).tolist() == [0.0, 50.0] and exact.tanh(far).tolist() == [-1.0, 1.0]
    y = x.clone()
    assert exact.leaky_relu(y, 0.01, inplace=True) is y
    m = _grid(2, 3, 5, 7)
    assert (exact._reduce(m, (2, 3), True, mean=True) - m.mean((2, 3), keepdim=True)).abs().max() <= exact.STEP


def test_scale_index_agrees_with_the_logarithm_away_from_boundaries():
    sigma = _grid(5000, scale=20.0).abs() + 0.05
    float_idx = scale_index(sigma)
    with exact.exact_arithmetic():
        exact_idx = scale_index(sigma)
    # they differ only where log rounding in float32 sits within ~1e-6 of a boundary
    assert (float_idx != exact_idx).sum() <= 1


def test_inexact_operations_are_refused_inside_the_mode():
    x = torch.rand(4, 4)
    with exact.exact_arithmetic():
        for f in (torch.exp, torch.sigmoid, lambda t: t @ t, lambda t: F.softmax(t, 0)):
            with pytest.raises(exact.InexactOperationError):
                f(x)
        with exact.suspended():
            torch.exp(x)  # the probability tables are built like this
        assert exact.active()
    assert not exact.active()
    torch.exp(x)


@pytest.mark.parametrize("name", MODELS)
def test_decoding_does_not_depend_on_how_the_machine_sums(name, sample_rgb):
    """What another machine would do to the float sums of h_s and the context models, done here:
    the exact decoder reconstructs the same latents (the checksum holds)."""
    m = tiny_model(name)
    with torch.no_grad():
        m.g_a[-1].weight.mul_(20)  # a non-trivial y stream
    x = image_tensor(sample_rgb[:64, :96])
    enc = m.compress(x)
    with reordered_sums() as count:
        lat = m.decode_latents(enc.streams, x.shape[-2:])
        assert count["calls"] > 0  # h_s at least
        assert torch.equal(lat["y_hat"], enc.latents["y_hat"])
        assert m.compress(x).streams == enc.streams  # and the encoder writes the same bytes


@pytest.mark.parametrize("name", MODELS)
def test_format_version_1_streams_still_decode(name, sample_rgb):
    m = tiny_model(name)
    with torch.no_grad():
        m.g_a[-1].weight.mul_(20)
    x = image_tensor(sample_rgb[:64, :64])
    enc = m.compress(x, exact=False)
    lat = m.decode_latents(enc.streams, x.shape[-2:], exact=False)
    assert torch.equal(lat["y_hat"], enc.latents["y_hat"])
    x_hat = m.decompress(enc.streams, x.shape[-2:], enc.checksum, exact=False)
    assert np.isfinite(x_hat.numpy()).all()
