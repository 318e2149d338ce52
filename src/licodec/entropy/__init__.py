"""Entropy models and entropy coding shared by every licodec model."""

from .coder import CodingError, RangeDecoder, RangeEncoder, TableSet
from .factorized import FactorizedPrior
from .gaussian import GaussianConditional
from .quantize import quantize

__all__ = ["CodingError", "RangeDecoder", "RangeEncoder", "TableSet", "FactorizedPrior", "GaussianConditional", "quantize"]
