"""How the codec runs a model's networks: tile by tile on large images, and on one CPU thread
where float outputs become entropy-coded symbols.

A model runs g_a and g_s through its ``runner`` (`licodec.models.base.Runner`: the whole image on
torch's threads). While it codes, the codec installs a `CodingRunner` (`coding`), which

- runs g_a and g_s tile by tile (`licodec.codec.tiling.tiled`) on images larger than ``tile``
  pixels, in eval mode without autograd, so that their activations — most of the memory of coding —
  are bounded by the tile size (the entropy models run on the whole y, 1/16 of the resolution, and
  z, 1/64);
- runs the float networks whose outputs the encoder rounds to symbols (g_a and h_a, which the
  model marks with ``runner.symbols()``) on one thread (`coding_threads`), so that the ``.lic``
  bytes do not depend on ``torch.set_num_threads``;
- runs g_s on channels_last tensors (on an AMD Zen 4, g_s 1.25-1.7x faster and a 768x512 decode
  1.2-1.4x, benchmarks/results/decode_layout.md; the pixels differ from the standard layout's by at
  most one 8-bit level, as between thread counts) — except with ``deterministic``, which runs g_s on one
  thread in the standard layout: the same pixels whatever the thread count, and as recorded in
  tests/golden.
"""

from __future__ import annotations

import weakref
from contextlib import contextmanager, nullcontext
from fractions import Fraction
from typing import Optional

import torch
from torch import Tensor

from ..defaults import check_tile
from ..models.base import CompressionModel, Runner, _as_float, _clamp_to
from .tiling import margins, tiled

_MARGINS: "weakref.WeakKeyDictionary[CompressionModel, tuple[int, int]]" = weakref.WeakKeyDictionary()


@contextmanager
def coding_threads():
    """Run float networks whose outputs become entropy-coded symbols on one CPU thread.

    oneDNN splits a convolution's float reductions by thread count, so g_a or h_a give slightly
    different floats with 1, 2 or 4 threads; a latent near a quantization boundary then lands on
    the other side and the symbols change. The entropy-parameter networks run in exact arithmetic
    instead (`licodec.models.base.CompressionModel.parameter_arithmetic`), except for format
    version 1 files, whose encoder and decoder ran them here too. g_s, whose output is only
    rounded to 8 bits, keeps every thread unless decoding is ``deterministic``.
    """
    n = torch.get_num_threads()
    if n == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


class CodingRunner(Runner):
    """The codec's runner: ``tile`` pixels (a multiple of 64; 0: never tile), ``deterministic``:
    g_s on one thread too."""

    def __init__(self, tile: int = 0, deterministic: bool = False) -> None:
        self.tile = check_tile(tile)
        self.deterministic = deterministic

    def margins(self, model: CompressionModel) -> tuple[int, int]:
        """(g_a margin in pixels, g_s margin in latent positions): at least the receptive-field
        radius of each transform (`licodec.codec.tiling.margins`); computed once per model."""
        if model not in _MARGINS:
            _MARGINS[model] = margins(model.g_a, model.g_s, model.analysis_stride)
        return _MARGINS[model]

    def _tiles(self, model: CompressionModel, height: int, width: int) -> bool:
        """Whether to tile a transform whose full-resolution side is height x width pixels."""
        return 0 < self.tile < max(height, width) and not model.training and not torch.is_grad_enabled()

    def analysis(self, model: CompressionModel, x: Tensor) -> Tensor:
        if not self._tiles(model, *x.shape[-2:]):
            return super().analysis(model, x)
        return tiled(model.g_a, x, self.tile, self.margins(model)[0], Fraction(1, model.analysis_stride),
                     prep=_as_float, stage="analysis")

    def synthesis(self, model: CompressionModel, y_hat: Tensor, out: Optional[Tensor] = None) -> Tensor:
        s = model.analysis_stride
        layout = _standard if self.deterministic else _channels_last
        with coding_threads() if self.deterministic else nullcontext():
            if not self._tiles(model, s * y_hat.shape[-2], s * y_hat.shape[-1]):
                return super().synthesis(model, layout(y_hat), out)
            post = None if out is None else _clamp_to(out.dtype)
            return tiled(model.g_s, y_hat, self.tile // s, self.margins(model)[1], s, out=out, prep=layout,
                         post=post, stage="synthesis")

    def symbols(self):
        return coding_threads()


def _channels_last(t: Tensor) -> Tensor:
    """(B,C,h,w) in channels_last memory order: oneDNN then picks its NHWC convolution kernels."""
    return t.contiguous(memory_format=torch.channels_last)


def _standard(t: Tensor) -> Tensor:
    """(B,C,h,w) in the standard (NCHW) memory order: the reference layout of deterministic decoding."""
    return t.contiguous()


@contextmanager
def coding(model: CompressionModel, tile: int = 0, deterministic: bool = False):
    """The model runs through a `CodingRunner` meanwhile (the previous runner is restored after)."""
    before, model.runner = model.runner, CodingRunner(tile, deterministic)
    try:
        yield model.runner
    finally:
        model.runner = before
