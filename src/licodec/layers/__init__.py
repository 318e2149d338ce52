"""Building blocks shared by the transforms (g_a, g_s, h_a, h_s) of every model."""

from .conv import conv, deconv
from .gdn import GDN
from .naf import LayerNorm2d, NAFBlock, NAFStack, SimpleGate
from .residual import ResidualBottleneckBlock
from .masked_conv import MaskedConv2d, named_mask, random_mask

__all__ = ["conv", "deconv", "GDN", "MaskedConv2d", "named_mask", "random_mask",
           "LayerNorm2d", "NAFBlock", "NAFStack", "SimpleGate", "ResidualBottleneckBlock"]
