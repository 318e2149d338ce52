"""The one registry of models. The registry key is the name used by the CLI (``-m``), by weight
files (``<name>-q<quality>.safetensors``) and in the ``.lic`` header, so a file always names the
model that decodes it. Keys are never reused or renamed."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Callable

from .errors import LicodecError

if TYPE_CHECKING:  # pragma: no cover
    from .models.base import CompressionModel

MODELS: dict[str, type["CompressionModel"]] = {}


class UnknownModelError(KeyError, LicodecError):
    """A model name that is not registered (a KeyError, as before, and a LicodecError)."""

    def __str__(self) -> str:
        return self.args[0]


class ConfigError(ValueError, LicodecError):
    """A model config that does not fit the model (unknown field, impossible value); a ValueError,
    as before, and a LicodecError."""


def register_model(name: str) -> Callable[[type], type]:
    def wrap(cls):
        from .format import MODEL_NAME

        if not MODEL_NAME.fullmatch(name):
            raise ValueError(f"model name {name!r} must match {MODEL_NAME.pattern} (it is written in .lic headers)")
        if name in MODELS:
            raise ValueError(f"model {name!r} registered twice")
        cls.name = name
        MODELS[name] = cls
        return cls

    return wrap


def get_model_class(name: str) -> type["CompressionModel"]:
    from . import models  # noqa: F401  (importing registers every model)

    try:
        return MODELS[name]
    except KeyError:
        known = ", ".join(sorted(MODELS)) or "none"
        raise UnknownModelError(f"unknown model {name!r} (known: {known})") from None


def create_model(name: str, config: dict | None = None, **overrides) -> "CompressionModel":
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
    from . import models  # noqa: F401

    return sorted(MODELS)
