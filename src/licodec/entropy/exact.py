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
- sqrt (the NAF LayerNorm's) is computed here, correctly rounded (`sqrt`): torch.sqrt on the
  CPU goes through MKL's vector math, whose float32 results differ between instruction sets;
- elementwise +, -, ×, ÷, the only other float operations left, are correctly rounded IEEE
  operations on CPUs and GPUs alike (in eager PyTorch, one operation per kernel: no
  torch.compile fusion into FMAs); ReLU, clamp, round, comparisons, cat and indexing are exact;
- everything else raises `InexactOperationError` inside `exact_arithmetic()`: the mode runs only
  operations on an allow-list (`_ALLOWED`, with conditions such as ``alpha == 1``), so a new
  model cannot silently fall back to order-dependent or library-dependent floats.

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
# id(weight), id(bias) -> (weakrefs of both, copies of their values, the block they were last
# checked in, result). Integer weights are made once per parameter and reused while its values are
# unchanged: at the first use in each `exact_arithmetic()` block, the parameter is compared with the
# copy (`torch.equal`, exact), so that nothing that changes it (training, load_state_dict,
# ``p.data = ...`` as Module.to does, an in-place edit of ``p.data``, none of which need to bump
# ``_version``) can leave stale integer weights in use. Within one block the weights are taken as
# fixed: a model is not edited while it codes.
_weights: dict[tuple[int, int], tuple] = {}
_blocks = iter(range(1, 2**62))  # a new token per outermost exact_arithmetic() block


def _unchanged(t: Tensor | None, copy: Tensor | None) -> bool:
    if t is None or copy is None:
        return t is None and copy is None
    return (t.dtype == copy.dtype and t.device == copy.device and t.shape == copy.shape
            and torch.equal(t.detach(), copy))


def _int_weight(weight: Tensor, bias: Tensor | None, fan_dims: tuple[int, ...]) -> tuple[int, Tensor, Tensor | None]:
    """(a, round(w·2^a), round(b·2^(a+FRAC_BITS))) as float64, with ``a`` the most fractional bits
    (<= MAX_WEIGHT_BITS) for which no output can leave the exact range: for every output channel,
    Σ|w_int|·2^23 (the largest input) + |b_int| < 2^52. ``fan_dims``: the dimensions summed into
    one output (for a transposed convolution: all but the output-channel one, an upper bound)."""
    key = (id(weight), id(bias))
    block = getattr(_state, "block", None)  # None outside a block: check at every call
    hit = _weights.get(key)
    if hit is not None and hit[0]() is weight and (bias is None or hit[1]() is bias):
        if block is not None and hit[4] == block:
            return hit[5]
        if _unchanged(weight, hit[2]) and _unchanged(bias, hit[3]):
            _weights[key] = (*hit[:4], block, hit[5])
            return hit[5]
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
    copies = (weight.detach().clone(), bias.detach().clone() if bias is not None else None)
    if hit is None:
        weakref.finalize(weight, _weights.pop, key, None)
    _weights[key] = (weakref.ref(weight), weakref.ref(bias) if bias is not None else (lambda: None), *copies,
                     block, result)
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


def sqrt(x):
    """Correctly rounded square root of float32 (or narrower) values, on every machine.

    torch.sqrt is not: on the CPU it goes through MKL's vector math, whose float32 results differ
    between instruction sets (AVX-512, AVX2, SSE4.2) in the last bit. Here the float64 square root
    (of whatever library) gives a candidate r within one float32 ulp; r is then corrected by exact
    comparisons: the midpoints m between r and its float32 neighbours have at most 25 significant
    bits, so m² (at most 50) is exact in float64, and x < m_lo² or x > m_hi² says that r is not the
    nearest float32 (x = m² cannot happen for a float32 x, so there are no ties). Narrower dtypes
    round the float32 result once more, which is still correctly rounded (24 >= 2·p + 2)."""
    if x.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise InexactOperationError(f"exact sqrt supports float32 and narrower dtypes, not {x.dtype}")
    x32 = x.float()
    x64 = x32.double()
    r = x64.sqrt().float()
    fix = torch.isfinite(r) & (r > 0)
    inf = torch.tensor(float("inf"), dtype=torch.float32, device=x.device)
    for _ in range(2):  # one step suffices for a candidate within one ulp; the second is a guard
        up, down = torch.nextafter(r, inf), torch.nextafter(r, -inf)
        r64 = r.double()
        hi, lo = (r64 + up.double()) * 0.5, (r64 + down.double()) * 0.5
        r = torch.where(fix & (x64 > hi * hi), up, torch.where(fix & (x64 < lo * lo), down, r))
    return r.to(x.dtype)


def sqrt_(x):
    return x.copy_(sqrt(x))


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
    torch.sqrt: sqrt,
    Tensor.sqrt: sqrt,
    Tensor.sqrt_: sqrt_,
}


# -- the allow-list ------------------------------------------------------------------------------
# Everything else that reaches a torch function inside the mode must be on this list, or it raises
# `InexactOperationError`: operations whose results are exact or one correctly rounded IEEE
# operation per element (elementwise +, -, ×, ÷ of two operands), on every instruction set and
# device. Not on it, by design: matmul and other float reductions (order-dependent), exp, log,
# sigmoid, erf, pow, rsqrt ... (library-dependent), addcmul, addcdiv, lerp and `alpha` != 1 (fused
# multiply-adds on some instruction sets only), float remainder / floor division.
def _names(owner, names: str) -> set:
    return {getattr(owner, n) for n in names.split() if hasattr(owner, n)}


_ELEMENTWISE = "add sub rsub subtract mul multiply div divide true_divide neg negative abs absolute sign sgn \
    square relu clamp clip clamp_min clamp_max maximum minimum fmax fmin floor ceil trunc fix round \
    where eq ne lt le gt ge equal isfinite isnan isinf isclose logical_and logical_or logical_not \
    logical_xor bitwise_and bitwise_or bitwise_not bitwise_xor copysign nextafter"
_REDUCTIONS_EXACT = "max min amax amin argmax argmin all any count_nonzero nonzero argwhere sort argsort \
    topk unique searchsorted bucketize"
_CREATION = "zeros ones full empty zeros_like ones_like full_like empty_like tensor as_tensor scalar_tensor \
    arange eye"
_SHAPES = "cat concat concatenate stack hstack vstack dstack split split_with_sizes tensor_split chunk \
    unbind reshape view view_as flatten unflatten squeeze unsqueeze permute transpose t movedim \
    swapaxes expand expand_as broadcast_to broadcast_tensors flip roll narrow select index_select \
    gather masked_select take take_along_dim repeat repeat_interleave tile tril triu diag \
    contiguous clone detach detach_ masked_fill index_fill index_copy scatter masked_scatter \
    index_put"
_TENSOR_ONLY = "__getitem__ __setitem__ __len__ __iter__ __bool__ __int__ __float__ __index__ __format__ \
    __repr__ __str__ __hash__ __contains__ __reversed__ __array__ __deepcopy__ __reduce_ex__ \
    __add__ __radd__ __iadd__ __sub__ __rsub__ __isub__ __mul__ __rmul__ __imul__ __truediv__ \
    __rtruediv__ __itruediv__ __div__ __rdiv__ __idiv__ __neg__ __pos__ __abs__ __invert__ __and__ \
    __rand__ __iand__ __or__ __ror__ __ior__ __xor__ __rxor__ __ixor__ __eq__ __ne__ __lt__ __le__ \
    __gt__ __ge__ __floordiv__ __rfloordiv__ __ifloordiv__ __mod__ __rmod__ __imod__ \
    __lshift__ __rshift__ size dim numel nelement element_size stride storage_offset is_contiguous \
    is_floating_point is_complex data_ptr untyped_storage item tolist numpy cpu cuda to type type_as \
    float double half bfloat16 long int short bool byte char new_zeros new_ones new_full new_empty \
    new_tensor copy_ fill_ zero_ requires_grad_ retain_grad get_device dim_order \
    add_ sub_ mul_ div_ neg_ abs_ clamp_ clip_ clamp_min_ clamp_max_ floor_ ceil_ trunc_ round_ relu_ \
    square_ sign_ masked_fill_ index_fill_ index_copy_ scatter_ index_put_ masked_scatter_ \
    unsqueeze_ squeeze_ transpose_ t_ resize_ remainder fmod floor_divide remainder_ fmod_ \
    floor_divide_"
_INTEGER_ONLY = "remainder fmod floor_divide remainder_ fmod_ floor_divide_ __floordiv__ __rfloordiv__ \
    __ifloordiv__ __mod__ __rmod__ __imod__"
_ATTRIBUTES = {"shape", "dtype", "device", "ndim", "is_cuda", "is_cpu", "is_meta", "is_mps", "is_sparse",
               "is_quantized", "is_leaf", "layout", "data", "requires_grad", "grad", "grad_fn", "names",
               "T", "mT", "itemsize", "nbytes", "_version", "output_nr", "is_nested"}

_ALLOWED = (
    _names(torch, " ".join([_ELEMENTWISE, _REDUCTIONS_EXACT, _CREATION, _SHAPES, _INTEGER_ONLY]))
    | _names(Tensor, " ".join([_ELEMENTWISE, _REDUCTIONS_EXACT, _SHAPES, _TENSOR_ONLY]))
    | _names(Tensor, " ".join(n + "_" for n in _ELEMENTWISE.split()))
    | _names(F, "relu relu_ relu6 hardtanh pad")
    | {torch._C._set_grad_enabled, torch.is_grad_enabled, torch.is_tensor, torch.numel}
)
_INTEGER_ONLY_FUNCS = _names(torch, _INTEGER_ONLY) | _names(Tensor, _INTEGER_ONLY)
_WITH_ALPHA = _names(torch, "add sub rsub subtract") | _names(Tensor, "add sub rsub subtract add_ sub_ subtract_")
_DIVISIONS = _names(torch, "div divide") | _names(Tensor, "div divide div_ divide_")
_ROUNDS = {torch.round, Tensor.round, Tensor.round_}


def _name(func) -> str:
    owner = getattr(func, "__self__", None)
    if type(owner).__name__ == "getset_descriptor":
        return f"Tensor.{owner.__name__}"
    return getattr(func, "__qualname__", getattr(func, "__name__", repr(func)))


def _floating(args, kwargs) -> bool:
    vals = list(args) + list(kwargs.values())
    return any(isinstance(v, float) or (isinstance(v, Tensor) and (v.is_floating_point() or v.is_complex()))
               for v in vals)


def _refusal(func, args, kwargs) -> str | None:
    """Why ``func(*args, **kwargs)`` is not allowed inside the mode, or None if it is."""
    owner = getattr(func, "__self__", None)
    if type(owner).__name__ == "getset_descriptor":  # attribute access: x.shape, x.dtype, ...
        return None if owner.__name__ in _ATTRIBUTES and func.__name__ == "__get__" else "not on the allow-list"
    if func not in _ALLOWED:
        return "not on the allow-list"
    if func in _INTEGER_ONLY_FUNCS and _floating(args, kwargs):
        return "floor division and remainder are allowed on integers only"
    if func in _WITH_ALPHA:
        alpha = kwargs.get("alpha", 1)
        if alpha != 1:
            return "alpha != 1 may be a fused multiply-add on some instruction sets only"
    if func in _DIVISIONS and kwargs.get("rounding_mode") == "floor" and _floating(args, kwargs):
        return "floor division is allowed on integers only"
    if func in _ROUNDS and kwargs.get("decimals", 0) != 0:
        return "round(decimals != 0) is not exact"
    if func is torch.arange and (_floating(args, kwargs) or (kwargs.get("dtype") or torch.int64).is_floating_point):
        return "float arange is not exact"
    return None


class _ExactMode(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if getattr(_state, "suspended", 0):
            return func(*args, **kwargs)
        impl = _EXACT.get(func)  # runs with this mode popped: its own torch calls are plain
        if impl is not None:
            return impl(*args, **kwargs)
        why = _refusal(func, args, kwargs)
        if why is not None:
            raise InexactOperationError(f"{_name(func)} is not allowed in exact arithmetic ({why}); the "
                                        "entropy-parameter path may use only operations that are exact on "
                                        "every machine (licodec.entropy.exact)")
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
    outer = getattr(_state, "depth", 0) == 0
    if outer:
        _state.block = next(_blocks)
    _state.depth = getattr(_state, "depth", 0) + 1
    try:
        with torch.no_grad(), _ExactMode():
            yield
    finally:
        _state.depth -= 1
        if outer:
            _state.block = None
