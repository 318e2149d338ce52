"""Run a fully-convolutional transform tile by tile, so that coding a large image needs memory
for one tile's activations instead of the whole image's.

`tiled` splits the input into a grid of tiles, runs ``f`` on each tile extended by a margin
(clipped at the image border) and keeps the central part of each output::

    input (B,C,H,W)                           output (B,C',H·s,W·s), s = scale (1/16 for g_a, 16 for g_s)
    ┌────────┬────────┐                       ┌────────┬────────┐
    │ ┌┄┄┄┄┄┄┼┄┄┐     │   f(tile + margin)    │        │        │
    │ ┆ tile ┆  ┆     │  ───────────────────> │ tile·s │        │  only the central tile·s is written
    │ └┄┄┄┄┄┄┼┄┄┘     │                       │        │        │
    ├────────┼────────┤                       ├────────┼────────┤

When the margin is at least the receptive-field radius of ``f`` (`receptive_field`) and the tile
corners are aligned to its stride, every written output value depends on exactly the inputs
it depends on when ``f`` runs on the whole image — zero padding included, since the margins are
clipped exactly at the image border — so the result equals ``f(x)`` up to float rounding (the
convolutions sum in another order). That holds for g_a/g_s of the hyperprior and spatial-context
models (convolutions and GDN, which is pointwise across space). It does *not* hold for layers that
pool over the whole feature map: the simplified channel attention of the NAF blocks in
``han2024-cca`` averages over the tile plus its margins instead of the whole image, so a tiled
han2024-cca transform is an approximation (`receptive_field` reports such layers;
benchmarks/results/large.md measures the difference).

Used by the codec's runner (`licodec.codec.runner.CodingRunner`), through which a model's
``analysis`` / ``synthesis`` run while it codes, in eval mode without autograd.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Callable, Optional

import torch
from torch import Tensor, nn

from ..progress import report


def _splits(n: int, tile: int, align: int) -> list[tuple[int, int]]:
    """[start, end) of ceil(n / tile) nearly equal tiles covering [0, n), starts multiples of ``align``."""
    count = max(1, -(-n // tile))
    step = -(-n // (count * align)) * align  # <= tile when tile is a multiple of align
    return [(a, min(a + step, n)) for a in range(0, n, step)]


def tiled(f: Callable[[Tensor], Tensor], x: Tensor, tile: int, margin: int, scale, *,
          out: Optional[Tensor] = None, prep: Optional[Callable[[Tensor], Tensor]] = None,
          post: Optional[Callable[[Tensor], Tensor]] = None, stage: str = "") -> Tensor:
    """``f(x)`` computed on tiles of ``tile`` x ``tile`` input positions with ``margin`` around each.

    x: (B,C,H,W), any dtype (``prep`` turns each input tile into what ``f`` takes, e.g. uint8 ->
    float); f: (B,C,h,w) -> (B,C',h·scale,w·scale); scale: int or Fraction (1/16: a 16x
    downsampling transform). ``tile`` and ``margin`` must be multiples of 1/scale when scale < 1
    (so that tiles stay aligned to f's stride), and so must H and W.
    out: (B,C',Ho,Wo) with Ho <= H·scale, Wo <= W·scale, any dtype/device/strides (e.g. a
    permuted view of an HWC uint8 image): the output is written into it, cropped to its size, and
    tiles that lie wholly outside are skipped; None: allocated like f's first output tile.
    post: applied to each kept output region before it is written (e.g. clamp + quantize).
    stage: named in the progress reports, one per tile (`licodec.progress`). Returns ``out``.
    """
    scale = Fraction(scale)
    down = scale.denominator  # input positions per output position (1 when upsampling)
    B, _, H, W = x.shape
    if H % down or W % down or tile % down or margin % down or tile <= 0 or margin < 0:
        raise ValueError(f"tiling {H}x{W} with tile {tile}, margin {margin} is not aligned to stride {down}")
    Ho, Wo = int(H * scale), int(W * scale)
    if out is not None and (out.shape[-2] > Ho or out.shape[-1] > Wo):
        raise ValueError(f"out {tuple(out.shape)} is larger than the output {Ho}x{Wo}")
    rows, cols = _splits(H, tile, down), _splits(W, tile, down)
    done = 0
    for top, bottom in rows:
        for left, right in cols:
            done += 1
            report(stage, done - 1, len(rows) * len(cols))
            # output region written by this tile, cropped to out
            o_top, o_left = int(top * scale), int(left * scale)
            o_bottom, o_right = int(bottom * scale), int(right * scale)
            if out is not None:
                o_bottom, o_right = min(o_bottom, out.shape[-2]), min(o_right, out.shape[-1])
                if o_bottom <= o_top or o_right <= o_left:
                    continue
            # input tile with its margins, clipped at the image border
            t0, t1 = max(top - margin, 0), min(bottom + margin, H)
            l0, l1 = max(left - margin, 0), min(right + margin, W)
            xt = x[..., t0:t1, l0:l1]  # (B,C,≤tile+2·margin,≤tile+2·margin)
            yt = f(prep(xt) if prep is not None else xt)  # (B,C',(t1−t0)·scale,(l1−l0)·scale)
            r0, c0 = int((top - t0) * scale), int((left - l0) * scale)  # the tile inside f's output
            keep = yt[..., r0 : r0 + o_bottom - o_top, c0 : c0 + o_right - o_left]
            if post is not None:
                keep = post(keep)
            if out is None:
                out = torch.empty((B, keep.shape[1], Ho, Wo), dtype=keep.dtype, device=keep.device)
            out[..., o_top:o_bottom, o_left:o_right] = keep
            del xt, yt, keep
    report(stage, len(rows) * len(cols), len(rows) * len(cols))
    return out


# -- receptive fields ------------------------------------------------------------------------

# layers that mix no spatial positions
_POINTWISE = (nn.ReLU, nn.LeakyReLU, nn.GELU, nn.Identity, nn.Tanh, nn.Sigmoid, nn.SiLU)


def receptive_field(m: nn.Module) -> tuple[Fraction, Fraction, bool]:
    """(radius, scale, global_pooling) of a transform built from this package's layers.

    radius: how far, in input positions, an output value's inputs reach from the input position
    it corresponds to (output o ↔ input o / scale); scale: output/input resolution (1/2 for a
    stride-2 conv, 2 for a stride-2 transposed conv); global_pooling: whether some layer pools
    over the whole feature map (then no margin makes tiling exact). Raises TypeError for a layer
    it does not know (tiling then refuses rather than guess).
    """
    from ..layers import GDN, LayerNorm2d, NAFBlock, ResidualBottleneckBlock, SimpleGate
    from ..layers.naf import SimplifiedChannelAttention

    if isinstance(m, nn.Sequential):
        radius, scale, pooled = Fraction(0), Fraction(1), False
        for layer in m:
            r, s, p = receptive_field(layer)
            radius += r / scale  # r is in units of this layer's input, which is at resolution `scale`
            scale *= s
            pooled |= p
        return radius, scale, pooled
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        attrs = (m.kernel_size, m.dilation, m.stride, m.padding)
        if isinstance(m.padding, str) or any(a[0] != a[1] for a in attrs):
            raise TypeError(f"cannot tile {m}: only square kernels, strides and numeric paddings")
        k, d, s, p = (a[0] for a in attrs)
        span = d * (k - 1)
        if isinstance(m, nn.ConvTranspose2d):
            # out[o] = Σ_i in[i]·w[o + p − s·i]: i ∈ [(o + p − span)/s, (o + p)/s], around o/s
            return Fraction(max(p, span - p), s), Fraction(s), False
        # out[j] reads in[s·j − p .. s·j − p + span], around s·j
        return Fraction(max(p, span - p)), Fraction(1, s), False
    if isinstance(m, ResidualBottleneckBlock):
        (rb, sb, pb), (rs, ss, ps) = receptive_field(m.body), receptive_field(m.skip)
        assert sb == ss == 1
        return max(rb, rs), Fraction(1), pb or ps
    if isinstance(m, NAFBlock):
        spatial = nn.Sequential(m.norm1, m.expand, m.dwconv, m.gate1, m.sca, m.project)
        (r1, _, p1), (r2, _, p2) = receptive_field(spatial), receptive_field(m.ffn)
        return max(r1, receptive_field(m.norm2)[0] + r2), Fraction(1), p1 or p2
    if isinstance(m, SimplifiedChannelAttention):
        return Fraction(0), Fraction(1), True  # x · W·mean_hw(x)
    if isinstance(m, (GDN, LayerNorm2d, SimpleGate) + _POINTWISE):
        return Fraction(0), Fraction(1), False
    raise TypeError(f"cannot tile a transform containing {type(m).__name__}: its receptive field is unknown")


def margins(g_a: nn.Module, g_s: nn.Module, stride: int = 16) -> tuple[int, int]:
    """(g_a margin in pixels, a multiple of ``stride``; g_s margin in latent positions): the
    smallest margins at least the receptive-field radii of the two transforms."""
    ra, sa, _ = receptive_field(g_a)
    rs, ss, _ = receptive_field(g_s)
    if sa != Fraction(1, stride) or ss != stride:
        raise TypeError(f"g_a/g_s scale {sa}, {ss}; tiling expects 1/{stride} and {stride}")
    return math.ceil(ra / stride) * stride, math.ceil(rs)
