"""Exact arithmetic for the entropy-parameter networks: the same symbols on every machine.

The decoder must recompute, bit for bit, the table indices the encoder used, and those come from
networks (h_s, the spatial and channel-wise context models) evaluated in floating point. A float
convolution's result depends on the order of its sums, which differs between thread counts, CPU
instruction sets (AVX2 / AVX-512 kernels), and between CPUs and GPUs; a mean or scale near a
quantization boundary then lands on the other side and the file no longer decodes. Ballé et al.
2019 ("Integer networks for data compression with latent-variable models") fix this with integer
arithmetic in the entropy-parameter networks; this module does the same for trained float models,
without retraining, at coding time:

- every activation entering a sum lives on the grid 2^-FRAC_BITS (`snap`), clamped to
  ±ACT_LIMIT: an integer number of grid steps that float32 and float64 hold exactly;
- convolutions (`F.conv2d`, `F.conv_transpose2d`) and `torch.addmv` use integer weights
  round(w·2^a) and biases round(b·2^(a+FRAC_BITS)), and are evaluated in float64, where every
  product and partial sum is an integer below 2^53 (``a`` is chosen per weight tensor from the
  worst case, `_int_weight`), hence exact in any order, on any device; the result is rounded back
  to the grid;
- means and sums add grid values in float64 (exact), then divide (correctly rounded);
- GELU and tanh are read from tables over the grid (`_table`), built once per process from
  float64 math and checked to sit at least `TABLE_MARGIN` grid steps away from every rounding
  boundary, so that any machine whose erf/tanh are accurate to 1e-7 steps builds the same table;
- elementwise +, -, ×, ÷ and sqrt, the only other float operations left, are correctly rounded
  IEEE operations on CPUs and GPUs alike (in eager PyTorch, one operation per kernel: no
  torch.compile fusion into FMAs); ReLU, clamp, round, comparisons, cat and indexing are exact;
- anything else that reduces or evaluates a transcendental function (matmul, exp, log, softmax,
  layer_norm, ...) raises `InexactOperationError` inside `exact_arithmetic()`, so a new model
  cannot silently fall back to order-dependent floats.

The scale-table index is then found by comparing σ (a grid value) with precomputed boundaries
(`licodec.entropy.gaussian.scale_index`), not through a float logarithm. What is not covered:
the transforms g_a (encoder only: it may give other, equally valid, bytes on another machine)
and g_s (its output is only rounded to 8 bits), and the probability tables themselves, which are
float64 functions of constants computed on the CPU (`licodec.entropy.coder`).
"""

from __future__ import annotations

import math
import threading
import weakref
from contextlib import contextmanager
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.overrides import TorchFunctionMode

FRAC_BITS = 12
STEP = 2.0**-FRAC_BITS  # the activation grid
ACT_LIMIT = 2.0**11  # |activation| <= ACT_LIMIT: at most 2^23 grid steps, exact in float32
_MAX_STEPS = ACT_LIMIT / STEP  # 2^23
_EXACT_LIMIT = 2.0**53  # float64 represents every integer below this exactly
MAX_WEIGHT_BITS = 24  # fractional bits of the integer weights (fewer when the worst case needs it)
TABLE_MARGIN = 1e-7  # grid steps between a table value and the nearest rounding boundary


class InexactOperationError(RuntimeError):
    """An operation whose float result may depend on the machine ran inside `exact_arithmetic()`."""


_state = threading.local()


def active() -> bool:
    """True inside `exact_arithmetic()` (on this thread)."""
    return getattr(_state, "depth", 0) > 0


def snap(x: Tensor) -> Tensor:
    """x -> the nearest grid value as an integer count of grid steps (a new float64 tensor), clamped."""
    return x.detach().to(torch.float64, copy=True).mul_(1.0 / STEP).round_().clamp_(-_MAX_STEPS, _MAX_STEPS)


def _to_grid(steps: Tensor, like: Tensor) -> Tensor:
    """Integer grid steps (float64, consumed) -> values in ``like``'s dtype (exact: < 2^24 steps)."""
    return steps.mul_(STEP).to(like.dtype)


# -- integer weights ---------------------------------------------------------------------------
# (id(weight), id(bias)) -> (weakrefs and versions of both, result): integer weights are made once
# per parameter and remade if it changes in place (training, load_state_dict)
_weights: dict[tuple[int, int], tuple] = {}


def _int_weight(weight: Tensor, bias: Tensor | None, fan_dims: tuple[int, ...]) -> tuple[int, Tensor, Tensor | None]:
    """(a, round(w·2^a), round(b·2^(a+FRAC_BITS))) as float64, with ``a`` the most fractional bits
    (<= MAX_WEIGHT_BITS) for which no output can leave the exact range: for every output channel,
    Σ|w_int|·2^23 (the largest input) + |b_int| < 2^52. ``fan_dims``: the dimensions summed into
    one output (for a transposed convolution: all but the output-channel one, an upper bound)."""
    key = (id(weight), id(bias))
    version = (weight._version, bias._version if bias is not None else None)
    hit = _weights.get(key)
    if hit is not None and hit[0]() is weight and (bias is None or hit[1]() is bias) and hit[2] == version:
        return hit[3]
    w = weight.detach().double()
    b = bias.detach().double() if bias is not None else None
    for a in range(MAX_WEIGHT_BITS, -64, -1):
        w_int = torch.round(w * 2.0**a)
        b_int = torch.round(b * 2.0 ** (a + FRAC_BITS)) if b is not None else None
        worst = w_int.abs().sum(dim=fan_dims).max().item() * _MAX_STEPS
        if b_int is not None:
            worst += b_int.abs().max().item()
        if worst < _EXACT_LIMIT / 2:  # a factor 2 of headroom for the rounding of `worst` itself
            break
    else:  # pragma: no cover - would need weights around 2^90
        raise InexactOperationError("weights too large for exact evaluation")
    result = (a, w_int, b_int)
    _weights[key] = (weakref.ref(weight), weakref.ref(bias) if bias is not None else (lambda: None), version, result)
    weakref.finalize(weight, _weights.pop, key, None)
    return result


def _requantize(acc: Tensor, a: int, like: Tensor) -> Tensor:
    """Integer accumulator in units of 2^-(a+FRAC_BITS) (consumed) -> grid values in ``like``'s dtype."""
    return _to_grid(acc.mul_(2.0**-a).round_().clamp_(-_MAX_STEPS, _MAX_STEPS), like)


def _no_cudnn():
    """cuDNN may choose FFT or Winograd algorithms, whose sums are not of the integers themselves;
    without it, PyTorch convolves by im2col + GEMM (as on the CPU), exact on integers."""
    return torch.backends.cudnn.flags(enabled=False)


def _depthwise(x: Tensor, w: Tensor, padding) -> Tensor:
    """A depthwise (groups = channels), stride-1 convolution as a sum of k·k shifted products:
    (B,C,H,W) x (C,1,k,k) -> (B,C,H',W'). The same integers as torch.conv2d, without its slow
    float64 path, which runs one convolution per group."""
    kh, kw = w.shape[-2:]
    ph, pw = _pair(padding)
    xp = F.pad(x, (pw, pw, ph, ph))
    h, wd = xp.shape[-2] - kh + 1, xp.shape[-1] - kw + 1
    acc = torch.zeros(x.shape[0], x.shape[1], h, wd, dtype=x.dtype, device=x.device)
    for i in range(kh):
        for j in range(kw):
            acc.addcmul_(xp[:, :, i : i + h, j : j + wd], w[:, 0, i, j].view(1, -1, 1, 1))
    return acc


CHUNK_BYTES = 2**26  # the float64 im2col / column buffer of one convolution call stays below 64 MiB


def _pair(v) -> tuple[int, int]:
    if isinstance(v, str):
        raise InexactOperationError("exact convolutions take numeric padding only")
    return (v, v) if isinstance(v, int) else tuple(v)


def _conv2d_rows(x: Tensor, w: Tensor, stride, padding, dilation, groups) -> Tensor:
    """torch.conv2d in bands of output rows, so that its im2col buffer stays below CHUNK_BYTES
    (a whole-image float64 im2col at the latents' resolution would take gigabytes on large images).
    Every output is the same sum of integers as in one call."""
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    kh, kw = w.shape[-2:]
    h_out = (x.shape[-2] + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    w_out = (x.shape[-1] + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    rows = max(1, CHUNK_BYTES // (x.shape[1] * kh * kw * max(w_out, 1) * 8))
    if rows >= h_out:
        return torch.conv2d(x, w, None, stride, padding, dilation, groups)
    xp = F.pad(x, (pw, pw, ph, ph))  # zeros: the convolution's own padding
    bands = []
    for r0 in range(0, h_out, rows):
        r1 = min(h_out, r0 + rows)
        band = xp[:, :, r0 * sh : (r1 - 1) * sh + dh * (kh - 1) + 1]  # the input rows output rows r0..r1-1 read
        bands.append(torch.conv2d(band, w, None, stride, 0, dilation, groups))
    return torch.cat(bands, dim=2)


def _conv_transpose2d_rows(x: Tensor, w: Tensor, stride, padding, output_padding, dilation) -> Tensor:
    """torch.conv_transpose2d over bands of input rows, each band's (unpadded) output added at its
    place, so that the column buffer stays below CHUNK_BYTES; then the padding is cropped as
    torch does. A transposed convolution is a sum of its inputs' contributions: in integers, the same
    sums in any grouping."""
    (sh, sw), (ph, pw), (oph, opw), (dh, dw) = _pair(stride), _pair(padding), _pair(output_padding), _pair(dilation)
    b, _, h_in, w_in = x.shape
    kh, kw = w.shape[-2:]
    rows = max(1, CHUNK_BYTES // (w.shape[1] * kh * kw * max(w_in, 1) * 8))
    if rows >= h_in:
        return torch.conv_transpose2d(x, w, None, stride, padding, output_padding, 1, dilation)
    h_full, w_full = (h_in - 1) * sh + dh * (kh - 1) + 1, (w_in - 1) * sw + dw * (kw - 1) + 1
    full = x.new_zeros(b, w.shape[1], h_full + oph, w_full + opw)
    for r0 in range(0, h_in, rows):
        part = torch.conv_transpose2d(x[:, :, r0 : r0 + rows], w, None, stride, 0, 0, 1, dilation)
        full[:, :, r0 * sh : r0 * sh + part.shape[2], : part.shape[3]] += part
    return full[:, :, ph : h_full + oph - ph, pw : w_full + opw - pw]


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    a, w_int, b_int = _int_weight(weight, bias, (1, 2, 3))
    depthwise = groups > 1 and groups == x.shape[1] == weight.shape[0] and weight.shape[1] == 1
    if depthwise and _pair(stride) == (1, 1) and _pair(dilation) == (1, 1):
        acc = _depthwise(snap(x), w_int, padding)
    else:
        with _no_cudnn():
            acc = _conv2d_rows(snap(x), w_int, stride, padding, dilation, groups)
    if b_int is not None:
        acc.add_(b_int.view(1, -1, 1, 1))
    return _requantize(acc, a, x)


def conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    if groups != 1:
        raise InexactOperationError("exact conv_transpose2d supports groups=1 only")
    a, w_int, b_int = _int_weight(weight, bias, (0, 2, 3))
    with _no_cudnn():
        acc = _conv_transpose2d_rows(snap(x), w_int, stride, padding, output_padding, dilation)
    if b_int is not None:
        acc.add_(b_int.view(1, -1, 1, 1))
    return _requantize(acc, a, x)


def addmv(bias, matrix, vec, *, beta=1, alpha=1):
    """bias + matrix @ vec (the serial context loop's only linear operation)."""
    if beta != 1 or alpha != 1:
        raise InexactOperationError("exact addmv supports alpha = beta = 1 only")
    a, m_int, b_int = _int_weight(matrix, bias, (1,))
    acc = torch.mv(m_int, snap(vec)) + b_int
    return _requantize(acc, a, vec)


def _reduce(x, dim=None, keepdim=False, *, dtype=None, mean: bool):
    if dtype is not None and dtype != x.dtype:
        raise InexactOperationError("exact sum/mean keep the input dtype")
    steps = snap(x)
    s = steps.sum() if dim is None else steps.sum(dim=dim, keepdim=keepdim)
    if mean:  # correctly rounded division, then back to the grid
        return _requantize(s / (steps.numel() // max(s.numel(), 1)), 0, x)
    return _to_grid(s, x)


# -- elementwise transcendental functions as tables over the grid ---------------------------------
def _gelu64(v: Tensor) -> Tensor:
    return v * 0.5 * (1.0 + torch.special.erf(v / math.sqrt(2.0)))


@lru_cache(maxsize=None)
def _table(name: str) -> tuple[Tensor, int]:
    """(f at the grid points -R..R as integer grid steps, R in steps) for f = gelu or tanh.

    Outside ±R the function is its asymptote to within far less than a grid step (gelu: x or 0
    beyond 8; tanh: ±1 beyond 10), which `_lookup` uses. Raises if a table value is within
    TABLE_MARGIN steps of a rounding boundary, where another machine's erf/tanh could round the
    other way."""
    r = int((8.0 if name == "gelu" else 10.0) / STEP)
    x = torch.arange(-r, r + 1, dtype=torch.float64) * STEP
    v = (_gelu64(x) if name == "gelu" else torch.tanh(x)) / STEP
    frac = v - torch.floor(v)
    if ((frac - 0.5).abs() < TABLE_MARGIN).any():  # pragma: no cover - checked by the tests
        raise InexactOperationError(f"{name} table value too close to a rounding boundary")
    return torch.round(v), r


def _lookup(name: str, x: Tensor) -> Tensor:
    table, r = _table(name)
    table = table.to(x.device)
    k = snap(x)
    inside = k.abs() <= r
    out = table[(k.clamp(-r, r) + r).long()]
    if name == "gelu":
        outside = torch.where(k > 0, k, torch.zeros_like(k))
    else:
        outside = torch.sign(k) * (1.0 / STEP)
    return _to_grid(torch.where(inside, out, outside), x)


def gelu(x, approximate="none"):
    if approximate != "none":
        raise InexactOperationError("exact gelu supports approximate='none' only")
    return _lookup("gelu", x)


def tanh(x):
    return _lookup("tanh", x)


def leaky_relu(x, negative_slope=0.01, inplace=False):
    k = snap(x)
    out = _to_grid(torch.where(k >= 0, k, torch.round(k * negative_slope)), x)
    return x.copy_(out) if inplace else out


_EXACT = {
    F.conv2d: conv2d,
    F.conv_transpose2d: conv_transpose2d,
    torch.addmv: addmv,
    F.gelu: gelu,
    torch.tanh: tanh,
    Tensor.tanh: tanh,
    F.leaky_relu: leaky_relu,
    torch.sum: lambda x, *a, **k: _reduce(x, *a, **k, mean=False),
    Tensor.sum: lambda x, *a, **k: _reduce(x, *a, **k, mean=False),
    torch.mean: lambda x, *a, **k: _reduce(x, *a, **k, mean=True),
    Tensor.mean: lambda x, *a, **k: _reduce(x, *a, **k, mean=True),
}

# order-dependent reductions and inexact transcendental functions: refused inside the mode
_REFUSED = {
    F.linear, F.conv1d, F.conv3d, F.layer_norm, F.group_norm, F.batch_norm, F.instance_norm, F.softmax,
    F.log_softmax, F.softplus, F.silu, F.mish, F.elu, F.selu, F.hardswish, F.normalize, F.interpolate,
    F.avg_pool2d, F.adaptive_avg_pool2d, F.conv_transpose1d, F.conv_transpose3d,
    torch.matmul, torch.mm, torch.bmm, torch.mv, torch.einsum, torch.addmm, torch.baddbmm, torch.tensordot,
    torch.exp, torch.log, torch.log2, torch.log10, torch.log1p, torch.expm1, torch.sigmoid, torch.erf,
    torch.erfc, torch.pow, torch.prod, torch.cumsum, torch.var, torch.std, torch.norm, torch.logsumexp,
    torch.softmax, torch.sin, torch.cos, torch.atan, torch.special.ndtr, torch.special.erf, torch.rsqrt,
    torch.addcmul, torch.addcdiv, torch.lerp,
    Tensor.matmul, Tensor.__matmul__, Tensor.mm, Tensor.mv, Tensor.exp, Tensor.log, Tensor.sigmoid,
    Tensor.pow, Tensor.__pow__, Tensor.prod, Tensor.cumsum, Tensor.var, Tensor.std, Tensor.norm,
    Tensor.softmax, Tensor.erf, Tensor.rsqrt, Tensor.addcmul, Tensor.lerp,
}


class _ExactMode(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if getattr(_state, "suspended", 0):
            return func(*args, **kwargs)
        impl = _EXACT.get(func)  # runs with this mode popped: its own torch calls are plain
        if impl is not None:
            return impl(*args, **kwargs)
        if func in _REFUSED:
            name = getattr(func, "__qualname__", getattr(func, "__name__", repr(func)))
            raise InexactOperationError(f"{name} is not exact; the entropy-parameter path cannot use it")
        return func(*args, **kwargs)


@contextmanager
def suspended():
    """Plain float arithmetic inside `exact_arithmetic()`, for code that is not a network: the
    probability tables, float64 functions of constants built on the CPU (`licodec.entropy.coder`)."""
    _state.suspended = getattr(_state, "suspended", 0) + 1
    try:
        yield
    finally:
        _state.suspended -= 1


@contextmanager
def exact_arithmetic():
    """Evaluate the enclosed entropy-parameter networks exactly (see the module docstring)."""
    _state.depth = getattr(_state, "depth", 0) + 1
    try:
        with torch.no_grad(), _ExactMode():
            yield
    finally:
        _state.depth -= 1
