"""Building blocks shared by the transforms (g_a, g_s, h_a, h_s) of every model."""

from .conv import conv, deconv
from .gdn import GDN

__all__ = ["conv", "deconv", "GDN"]
