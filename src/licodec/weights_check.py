"""Validation of untrusted weight files, before anything is allocated.

A weight file is a safetensors file: an 8-byte header length, a JSON header (each tensor's name,
dtype, shape and byte range, and licodec's metadata), then the tensor bytes. `licodec.weights.
load_weights` checks, in this order, and refuses with a one-line `WeightsError` at the first
thing wrong:

1. the metadata (`parse_metadata`): model name, config (a JSON object), quality, λ, fingerprint
   and extra, each parsed, none trusted;
2. the config (`check_config`): every field of the model's config dataclass of its type (int,
   float, bool, tuple of ints), within generous caps (`MAX_CHANNELS`, `MAX_COUNT`, `MAX_ITEMS`);
3. the tensors that the config implies (`expected_tensors`): the model is built on PyTorch's
   ``meta`` device — shapes and dtypes, no storage — with at most `MAX_PARAMETERS` parameters and
   no empty tensor;
4. the tensors that the file holds (`check_header`): names, shapes and dtypes from the
   safetensors header alone, which must be exactly those of 3; a tensor is stored in the model's
   dtype, or a float32 one in float16 or bfloat16 (`save_weights(half=True)`, bf16 training);

then the tensors are read — their size is the header's, and safetensors refuses a header whose
byte ranges do not cover the file exactly, so reading costs what the file holds — and, after the
fingerprint, their values are checked (`check_values`: finite, |x| <= `MAX_ABS_VALUE`). Only then
is the real model built. A small file therefore cannot make the loader allocate more than a
model of the size the file holds.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
import warnings

import torch

from .errors import LicodecError
from .rate import check_quality
from .registry import ConfigError
from .models import create_model, get_model_class

VARIABLE = "variable"  # the metadata quality of variable-rate weights
MAX_CHANNELS = 4096  # any int config field (channels, widths): the models' papers use <= 320
MAX_COUNT = 64  # fields that count blocks or groups (each adds modules)
COUNT_FIELDS = frozenset({"rate_levels", "res_blocks", "num_groups", "em_blocks", "naf_blocks"})
MAX_ITEMS = 16  # entries of a tuple field (per-stage widths, block counts)
MAX_FLOAT = 1e6  # |value| of a float config field
MAX_PARAMETERS = 2**28  # 268 M parameters, 1 GiB in float32 (the paper-size han2024-cca has 91 M)
MAX_ABS_VALUE = 1e6  # |tensor value|: trained weights are O(1..100); float16 storage stops at 65504

# torch dtype -> safetensors dtype name
_ST_DTYPE = {
    torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
    torch.bool: "BOOL",
}


class WeightsError(ValueError, LicodecError):
    """A weight file that cannot be used: unreadable, foreign, inconsistent, tampered or out of
    bounds (a ValueError, as before, and a LicodecError)."""


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


# -- 1. metadata --------------------------------------------------------------------------------


def _json_object(path, meta: dict, key: str, default: dict | None = None) -> dict:
    raw = meta.get(key)
    if raw in (None, "") and default is not None:
        return default
    if raw is None:
        raise WeightsError(f"{path}: metadata has no {key!r}")
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError) as e:
        raise WeightsError(f"{path}: metadata {key!r} is not valid JSON ({_first_line(e)})") from None
    if not isinstance(value, dict):
        raise WeightsError(f"{path}: metadata {key!r} must be a JSON object, not {type(value).__name__}")
    return value


def parse_metadata(path, meta: dict) -> dict:
    """The metadata of a licodec weight file, parsed: {"model", "config", "quality" (None: variable
    rate), "lambda" (None: not recorded), "fingerprint" (8 bytes), "extra"}."""
    name = meta.get("model")
    if not name:
        raise WeightsError(f"{path}: metadata has no model name")
    config = _json_object(path, meta, "config")
    raw_q = meta.get("quality")
    if raw_q is None:
        raise WeightsError(f"{path}: metadata has no quality")
    if raw_q == VARIABLE:
        quality = None
    else:
        try:
            quality = check_quality(raw_q)
        except ValueError as e:
            raise WeightsError(f"{path}: metadata quality: {e}") from None
    raw_l = meta.get("lambda") or ""
    lmbda = None
    if raw_l:
        try:
            lmbda = float(raw_l)
        except ValueError:
            lmbda = math.nan
        if not (0 < lmbda < math.inf):
            raise WeightsError(f"{path}: metadata lambda must be a positive number, got {raw_l[:40]!r}")
    raw_fp = meta.get("fingerprint") or ""
    try:
        fp = bytes.fromhex(raw_fp)
    except ValueError:
        fp = b""
    if len(fp) != 8:
        raise WeightsError(f"{path}: metadata fingerprint must be 16 hex digits, got {raw_fp[:40]!r}")
    extra = _json_object(path, meta, "extra", default={})
    return {"model": name, "config": config, "quality": quality, "lambda": lmbda, "fingerprint": fp, "extra": extra}


# -- 2. config ----------------------------------------------------------------------------------


def _check_int(name: str, key: str, v) -> None:
    if not isinstance(v, int) or isinstance(v, bool):
        raise WeightsError(f"config {key} of {name} must be an integer, got {v!r:.40}")
    cap = MAX_COUNT if key in COUNT_FIELDS else MAX_CHANNELS
    if not 0 <= v <= cap:
        raise WeightsError(f"config {key}={v} of {name} is outside 0..{cap}")


def _check_field(name: str, key: str, kind, v) -> None:
    origin = typing.get_origin(kind)
    if kind is int:
        _check_int(name, key, v)
    elif kind is float:
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not abs(v) <= MAX_FLOAT:
            raise WeightsError(f"config {key} of {name} must be a number of at most {MAX_FLOAT:g} in size, got {v!r:.40}")
    elif kind is bool:
        if not isinstance(v, bool):
            raise WeightsError(f"config {key} of {name} must be true or false, got {v!r:.40}")
    elif origin is tuple and typing.get_args(kind)[:1] == (int,):
        if not isinstance(v, (list, tuple)) or not 1 <= len(v) <= MAX_ITEMS:
            raise WeightsError(f"config {key} of {name} must be a list of 1..{MAX_ITEMS} integers, got {v!r:.60}")
        for item in v:
            _check_int(name, key, item)
    # other annotations: left to the model's own checks (create_model)


def check_config(path, name: str, config: dict) -> dict:
    """The config, its field types and sizes checked (unknown fields refused); the same dict."""
    cls = get_model_class(name).config_cls
    kinds = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    bad = sorted(str(k) for k in set(config) - fields)
    if bad:
        raise WeightsError(f"{path}: unknown config field(s) for {name}: {', '.join(b[:40] for b in bad[:5])}")
    try:
        for key, v in config.items():
            _check_field(name, key, kinds.get(key), v)
    except WeightsError as e:
        raise WeightsError(f"{path}: {e}") from None
    return config


# -- 3. the tensors the config implies ------------------------------------------------------------


def expected_tensors(path, name: str, config: dict) -> tuple[dict[str, tuple[tuple[int, ...], torch.dtype]], bool]:
    """({tensor name: (shape, dtype)} of the model's state dict, whether it is variable-rate),
    from a model built on the ``meta`` device: nothing is allocated."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. torch's "Initializing zero-element tensors is a no-op"
        try:
            with torch.device("meta"):
                model = create_model(name, config)
        except ConfigError as e:
            raise WeightsError(f"{path}: {_first_line(e)}") from None
        except Exception as e:  # noqa: BLE001 - an untrusted config: whatever the constructor makes of it
            raise WeightsError(f"{path}: invalid config for {name}: {type(e).__name__}: {_first_line(e)}") from None
    state = model.state_dict()
    count = sum(t.numel() for t in state.values())
    if count > MAX_PARAMETERS:
        raise WeightsError(f"{path}: config of {name} gives {count:,} parameters, more than licodec loads "
                           f"({MAX_PARAMETERS:,})")
    empty = sorted(k for k, t in state.items() if t.numel() == 0)
    if empty:
        raise WeightsError(f"{path}: config of {name} gives empty tensors ({empty[0]}, ...): a size of 0?")
    return {k: (tuple(t.shape), t.dtype) for k, t in state.items()}, model.variable_rate


# -- 4. the tensors the file holds ----------------------------------------------------------------


def storage_dtypes(dtype: torch.dtype) -> set[str]:
    """Safetensors dtypes accepted for a tensor of ``dtype``: its own; float16/bfloat16 for float32."""
    ok = {_ST_DTYPE.get(dtype, str(dtype))}
    return ok | {"F16", "BF16"} if dtype == torch.float32 else ok


def check_header(path, what: str, expected: dict, header: dict[str, tuple[tuple[int, ...], str]]) -> None:
    """``header``: {name: (shape, safetensors dtype)} as the file's header declares them.
    ``what``: the model and config, for the message."""
    missing = sorted(set(expected) - set(header))
    extra = sorted(set(header) - set(expected))
    if missing or extra:
        parts = ([f"missing tensor(s) {', '.join(missing[:3])}"] if missing else []) + (
            [f"unexpected tensor(s) {', '.join(repr(k)[:60] for k in extra[:3])}"] if extra else [])
        raise WeightsError(f"{path}: weights do not fit {what}: {'; '.join(parts)}")
    for k in sorted(expected):
        (want_shape, want_dtype), (shape, dtype) = expected[k], header[k]
        if tuple(shape) != want_shape:
            raise WeightsError(f"{path}: weights do not fit {what}: {k} has shape {list(shape)}, "
                               f"the config gives {list(want_shape)}")
        if dtype not in storage_dtypes(want_dtype):
            raise WeightsError(f"{path}: tensor {k} is stored as {dtype}; licodec reads "
                               f"{' or '.join(sorted(storage_dtypes(want_dtype)))} for it")


def read_header(path) -> dict[str, tuple[tuple[int, ...], str]]:
    """{name: (shape, dtype)} from the safetensors header (reads no tensor data)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: (tuple(f.get_slice(k).get_shape()), f.get_slice(k).get_dtype()) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, TypeError) as e:
        raise WeightsError(f"{path}: not a readable safetensors weight file ({_first_line(e)})") from None


# -- values -----------------------------------------------------------------------------------------


def check_values(path, state: dict[str, torch.Tensor]) -> None:
    """Every float tensor finite and within ±`MAX_ABS_VALUE`."""
    for k in sorted(state):
        t = state[k]
        if not t.is_floating_point() or t.numel() == 0:
            continue
        if not bool(torch.isfinite(t).all()):
            raise WeightsError(f"{path}: tensor {k} holds NaN or infinite values (damaged or diverged weights)")
        big = float(t.abs().max())
        if big > MAX_ABS_VALUE:
            raise WeightsError(f"{path}: tensor {k} holds a value of magnitude {big:.3g}, beyond what trained "
                               f"weights hold (at most {MAX_ABS_VALUE:g})")
