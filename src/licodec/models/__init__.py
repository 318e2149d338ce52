"""Importing this package registers every model (see `licodec.registry`)."""

from .base import CompressionModel, Encoded, LatentMismatchError
from .hyperprior import MeanScaleHyperprior, ScaleHyperprior

__all__ = ["CompressionModel", "Encoded", "LatentMismatchError", "MeanScaleHyperprior", "ScaleHyperprior"]
