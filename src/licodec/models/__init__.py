"""Every model, registered (see `licodec.registry`) by importing this package, and the lookups
by registry name."""

import dataclasses

from ..registry import MODELS, ConfigError, UnknownModelError
from .base import CompressionModel, Encoded, LatentMismatchError
from .hyperprior import MeanScaleHyperprior, ScaleHyperprior
from .context import CheckerboardContextModel, HybridContextModel, SerialContextModel
from .cca import HanCCA
from .imported import (CompressAIJointAutoregressive, CompressAIMeanScaleHyperprior, CompressAIScaleHyperprior,
                       OfficialCCA)

__all__ = ["create_model", "get_model_class", "model_names", "CompressionModel", "Encoded", "LatentMismatchError",
           "MeanScaleHyperprior", "ScaleHyperprior",
           "CheckerboardContextModel", "HybridContextModel", "SerialContextModel", "HanCCA",
           "CompressAIScaleHyperprior", "CompressAIMeanScaleHyperprior", "CompressAIJointAutoregressive", "OfficialCCA"]


def get_model_class(name: str) -> type[CompressionModel]:
    try:
        return MODELS[name]
    except KeyError:
        known = ", ".join(sorted(MODELS)) or "none"
        raise UnknownModelError(f"unknown model {name!r} (known: {known})") from None


def create_model(name: str, config: dict | None = None, **overrides) -> CompressionModel:
    """Build a model from its registry name and a (partial) config; unknown keys are an error."""
    cls = get_model_class(name)
    fields = {f.name for f in dataclasses.fields(cls.config_cls)}
    values = {**(config or {}), **overrides}
    bad = sorted(set(values) - fields)
    if bad:
        raise ConfigError(f"unknown config field(s) for {name}: {', '.join(bad)}")
    try:
        return cls(cls.config_cls(**values))
    except (TypeError, ValueError) as e:
        raise ConfigError(f"invalid config for {name}: {e}") from None


def model_names() -> list[str]:
    return sorted(MODELS)
