"""NAF blocks (Chen et al. 2022, "Simple Baselines for Image Restoration", NAFNet), as used by the
transforms and the channel-context entropy model of Han et al. 2024 (CCA).

A NAF block is two pre-norm residual branches with learnable residual scales (both zero at
initialization, so a fresh block is the identity)::

    x ─┬─ LN ─ 1x1 (c→2c) ─ 3x3 depthwise ─ SimpleGate (→c) ─ SCA ─ 1x1 (c→c) ─ ×β ─(+)─┬─ LN ─ 1x1 (c→2c) ─ SimpleGate (→c) ─ 1x1 ─ ×γ ─(+)─> out
       └──────────────────────────────────────────────────────────────────────────────┘  └──────────────────────────────────────────────┘

- LN: layer normalization over the channels of each pixel (`LayerNorm2d`);
- SimpleGate: split the channels in two halves and multiply them (no nonlinearity otherwise);
- SCA, simplified channel attention: x · conv1x1(global average of x).

SCA pools over the whole feature map, so a NAF block is not translation-local: its output
depends on the size of the image it sees (the same on encoder and decoder, which see the same
tensors).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .float32 import as_float32, float32_region


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel dimension of (B, C, H, W), with a per-channel affine map; in
    float32 even under bfloat16 autocast (`licodec.layers.float32`)."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        with float32_region(x):
            x = as_float32(x)
            mu = x.mean(dim=1, keepdim=True)  # (B,1,H,W)
            var = (x - mu).square().mean(dim=1, keepdim=True)  # (B,1,H,W), biased as in LayerNorm
            x = (x - mu) / torch.sqrt(var + self.eps)
            return x * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


class SimpleGate(nn.Module):
    """(B, 2c, H, W) -> (B, c, H, W): the product of the two channel halves."""

    def forward(self, x: Tensor) -> Tensor:
        a, b = x.chunk(2, dim=1)
        return a * b


class SimplifiedChannelAttention(nn.Module):
    """x · W·mean_hw(x): channel reweighting from the global average (NAFNet's SCA)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return x * self.conv(x.mean(dim=(2, 3), keepdim=True))  # (B,c,1,1) broadcast over H,W


class NAFBlock(nn.Module):
    """NAFNet block on ``channels`` channels (expansion 2 in both branches); shape-preserving."""

    def __init__(self, channels: int, expand: int = 2) -> None:
        super().__init__()
        c, e = channels, channels * expand
        # spatial-mixing branch
        self.norm1 = LayerNorm2d(c)
        self.expand = nn.Conv2d(c, e, 1)
        self.dwconv = nn.Conv2d(e, e, 3, padding=1, groups=e)
        self.gate1 = SimpleGate()  # e -> e/2
        self.sca = SimplifiedChannelAttention(e // 2)
        self.project = nn.Conv2d(e // 2, c, 1)
        self.beta = nn.Parameter(torch.zeros(1, c, 1, 1))
        # channel-mixing (feed-forward) branch
        self.norm2 = LayerNorm2d(c)
        self.ffn = nn.Sequential(nn.Conv2d(c, e, 1), SimpleGate(), nn.Conv2d(e // 2, c, 1))
        self.gamma = nn.Parameter(torch.zeros(1, c, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        h = self.dwconv(self.expand(self.norm1(x)))  # (B,e,H,W)
        h = self.project(self.sca(self.gate1(h)))  # (B,c,H,W)
        x = x + self.beta * h
        return x + self.gamma * self.ffn(self.norm2(x))


class NAFStack(nn.Module):
    """1x1 conv ``cin -> width``, ``depth`` NAF blocks with a skip around them, 1x1 conv ``width -> cout``.

    The context transform of every channel group in the CCA entropy model (the official code's
    ``blocks``)."""

    def __init__(self, cin: int, cout: int, width: int, depth: int) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(cin, width, 1)
        self.blocks = nn.Sequential(*(NAFBlock(width) for _ in range(depth)))
        self.conv_out = nn.Conv2d(width, cout, 1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv_in(x)
        return self.conv_out(h + self.blocks(h))
