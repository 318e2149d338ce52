"""Importing this package registers every model (see `licodec.registry`)."""

from .base import CompressionModel, Encoded, LatentMismatchError
from .hyperprior import MeanScaleHyperprior, ScaleHyperprior
from .context import CheckerboardContextModel, HybridContextModel, SerialContextModel
from .cca import HanCCA
from .imported import (CompressAIJointAutoregressive, CompressAIMeanScaleHyperprior, CompressAIScaleHyperprior,
                       OfficialCCA)

__all__ = ["CompressionModel", "Encoded", "LatentMismatchError", "MeanScaleHyperprior", "ScaleHyperprior",
           "CheckerboardContextModel", "HybridContextModel", "SerialContextModel", "HanCCA",
           "CompressAIScaleHyperprior", "CompressAIMeanScaleHyperprior", "CompressAIJointAutoregressive", "OfficialCCA"]
