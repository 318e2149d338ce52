"""The one registry of models. The registry key is the name used by the CLI (``-m``), by weight
files (``<name>-q<quality>.safetensors``) and in the ``.lic`` header, so a file always names the
model that decodes it. Keys are never reused or renamed.

This module only holds the table and the rule for names: the model modules register themselves
(`register_model`), and the lookups that need every model registered (`create_model`,
`get_model_class`, `model_names`) are in `licodec.models`, whose import registers them all."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Callable

from .errors import LicodecError

if TYPE_CHECKING:  # pragma: no cover
    from .models.base import CompressionModel

MODELS: dict[str, type["CompressionModel"]] = {}
MODEL_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{0,63}")  # written in .lic headers; nothing a terminal would interpret


class UnknownModelError(KeyError, LicodecError):
    """A model name that is not registered (a KeyError, as before, and a LicodecError)."""

    def __str__(self) -> str:
        return self.args[0]


class ConfigError(ValueError, LicodecError):
    """A model config that does not fit the model (unknown field, impossible value); a ValueError,
    as before, and a LicodecError."""


def register_model(name: str) -> Callable[[type], type]:
    def wrap(cls):
        if not MODEL_NAME.fullmatch(name):
            raise ValueError(f"model name {name!r} must match {MODEL_NAME.pattern} (it is written in .lic headers)")
        if name in MODELS:
            raise ValueError(f"model {name!r} registered twice")
        cls.name = name
        MODELS[name] = cls
        return cls

    return wrap
