"""What every importer shares: reading a checkpoint safely, strict tensor bookkeeping, the pieces
of CompressAI that several architectures use (GDN, EntropyBottleneck, GaussianConditional), and
the user weight folder."""

from __future__ import annotations

import hashlib
import math
import os
import pickle
from pathlib import Path
from typing import NamedTuple

import torch

from ..errors import LicodecError
from ..weights import ENV_WEIGHTS_DIR, user_weight_files, user_weights_dir  # noqa: F401  (re-exported)


class CheckpointError(ValueError, LicodecError):
    """A checkpoint that cannot be imported: unreadable, not a state dict, another architecture,
    missing or unexpected tensors, a shape that does not fit (also a ValueError)."""


class ImportResult(NamedTuple):
    path: Path  # the licodec weight file written
    model: str  # its registry name
    config: dict
    extra: dict  # the provenance recorded in its metadata


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_checkpoint(path) -> tuple[dict[str, torch.Tensor], str]:
    """The state dict in a ``.pth``/``.pth.tar`` (a bare state dict, or a training checkpoint
    holding one under ``state_dict``/``model``/``net``), DataParallel's ``module.`` prefix removed,
    and the file's SHA-256. Only ``torch.load(weights_only=True)``: a pickle that needs anything
    but tensors and plain containers is refused."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    digest = sha256_file(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, AttributeError, TypeError,
            ModuleNotFoundError) as e:
        first = " ".join(str(e).strip().splitlines()[:1])[:200]
        raise CheckpointError(f"{path}: not a loadable PyTorch state dict (torch.load(weights_only=True) "
                              f"refused it: {first})") from None
    state = obj
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "net", "model_state_dict"):
            if isinstance(obj.get(key), dict) and any(isinstance(v, torch.Tensor) for v in obj[key].values()):
                state = obj[key]
                break
    if not isinstance(state, dict) or not state:
        raise CheckpointError(f"{path}: holds a {type(obj).__name__}, not a state dict of tensors")
    bad = [k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: not a state dict: entry {str(bad[0])[:80]!r} is not a named tensor")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return dict(state), digest


class Source:
    """A source state dict consumed strictly: `take` each tensor with its expected shape, `skip`
    the ones deliberately left out (derived data, training-only parts), then `finish` refuses
    anything not accounted for."""

    def __init__(self, state: dict[str, torch.Tensor], label: str) -> None:
        self.state = state
        self.label = label
        self.used: set[str] = set()

    def has(self, key: str) -> bool:
        return key in self.state

    def shape(self, key: str) -> tuple[int, ...]:
        if key not in self.state:
            raise CheckpointError(f"{self.label}: tensor {key!r} is missing (not this architecture?)")
        return tuple(self.state[key].shape)

    def take(self, key: str, shape: tuple[int, ...] | None = None) -> torch.Tensor:
        got = self.shape(key)
        if shape is not None and got != tuple(shape):
            raise CheckpointError(f"{self.label}: tensor {key!r} has shape {list(got)}, expected {list(shape)}")
        t = self.state[key]
        if not t.is_floating_point():
            raise CheckpointError(f"{self.label}: tensor {key!r} is {t.dtype}, expected floating point")
        self.used.add(key)
        return t.detach().to(torch.float32)

    def skip(self, key: str) -> None:
        if key in self.state:
            self.used.add(key)

    def skip_prefix(self, prefix: str) -> int:
        keys = [k for k in self.state if k.startswith(prefix)]
        self.used.update(keys)
        return len(keys)

    def expect_value(self, key: str, value: float, rtol: float = 1e-4, required: bool = False) -> None:
        """A constant buffer (a bound, a pedestal): checked when present, then used up."""
        if key not in self.state:
            if required:
                raise CheckpointError(f"{self.label}: tensor {key!r} is missing")
            return
        t = self.state[key].detach().double().reshape(-1)
        if t.numel() != 1 or not math.isclose(float(t[0]), value, rel_tol=rtol, abs_tol=1e-12):
            shown = [round(float(v), 8) for v in t[:3]]
            raise CheckpointError(f"{self.label}: tensor {key!r} is {shown}, expected {value:.6g} "
                                  f"(trained with other settings than licodec reproduces)")
        self.used.add(key)

    def finish(self) -> None:
        left = sorted(set(self.state) - self.used)
        if left:
            more = f" and {len(left) - 3} more" if len(left) > 3 else ""
            raise CheckpointError(f"{self.label}: unexpected tensor(s) {', '.join(map(repr, left[:3]))}{more} "
                                  f"(another architecture or variant?)")


class Target:
    """The licodec state dict being filled; `check` requires every tensor of the model assigned once."""

    def __init__(self, model) -> None:
        self.model = model
        self.expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        self.values: dict[str, torch.Tensor] = {}

    def put(self, key: str, value: torch.Tensor, src: str = "") -> None:
        if key not in self.expected:  # a bug of the mapping, not of the input
            raise KeyError(f"no tensor {key!r} in {self.model.name}")
        if tuple(value.shape) != self.expected[key]:
            raise CheckpointError(f"tensor {src or key!r} has shape {list(value.shape)}, "
                                  f"{self.model.name} needs {list(self.expected[key])} for {key!r}")
        self.values[key] = value

    def load(self) -> None:
        missing = sorted(set(self.expected) - set(self.values))
        if missing:  # a bug of the mapping
            raise KeyError(f"mapping leaves {self.model.name} tensors unset: {missing[:5]}")
        self.model.load_state_dict(self.values, strict=True)


# -- CompressAI building blocks --------------------------------------------------------------

GDN_PEDESTAL = (2.0**-18) ** 2  # CompressAI's NonNegativeParametrizer(reparam_offset=2**-18); licodec's too
GDN_BETA_MIN = 1e-6


def map_conv(src: Source, dst: Target, s: str, d: str, cout: int, cin: int, k: int, transposed: bool = False) -> None:
    shape = (cin, cout, k, k) if transposed else (cout, cin, k, k)
    dst.put(f"{d}.weight", src.take(f"{s}.weight", shape), f"{s}.weight")
    dst.put(f"{d}.bias", src.take(f"{s}.bias", (cout,)), f"{s}.bias")


def map_gdn(src: Source, dst: Target, s: str, d: str, c: int) -> None:
    """CompressAI's GDN stores β and γ reparameterized as sqrt(x + pedestal) with lower bounds, as
    licodec's does (same pedestal, β_min = 1e-6): the tensors copy over; the bound and pedestal
    buffers, when the file has them, must hold those constants."""
    dst.put(f"{d}.beta", src.take(f"{s}.beta", (c,)), f"{s}.beta")
    dst.put(f"{d}.gamma", src.take(f"{s}.gamma", (c, c)), f"{s}.gamma")
    for p in ("beta", "gamma"):
        src.expect_value(f"{s}.{p}_reparam.pedestal", GDN_PEDESTAL)
        minimum = GDN_BETA_MIN if p == "beta" else 0.0
        src.expect_value(f"{s}.{p}_reparam.lower_bound.bound", math.sqrt(minimum + GDN_PEDESTAL))


def _eb_key(src: Source, s: str, kind: str, k: int) -> str:
    """The key of an EntropyBottleneck parameter across CompressAI versions: ``matrices.0``
    (1.2), ``_matrix0`` (earlier, and the zoo files) or ``_matrices.0`` (earliest)."""
    new = {"matrix": "matrices", "bias": "biases", "factor": "factors"}[kind]
    for key in (f"{s}.{new}.{k}", f"{s}._{kind}{k}", f"{s}._{new}.{k}"):
        if src.has(key):
            return key
    return f"{s}.{new}.{k}"


def map_entropy_bottleneck(src: Source, dst: Target, s: str, d: str, channels: int) -> float:
    """CompressAI's EntropyBottleneck (filters (3, 3, 3, 3)) onto `MedianFactorizedPrior`; the
    medians are the middle of its ``quantiles``. Its CDF tables, ``target`` and bounds are
    derived data: licodec builds its own tables. Returns the largest |median|."""
    from ..models.imported import COMPRESSAI_FILTERS

    dims = (1, *COMPRESSAI_FILTERS, 1)
    for k in range(len(dims) - 1):
        shape = (channels, dims[k + 1], dims[k])
        key = _eb_key(src, s, "matrix", k)
        dst.put(f"{d}.matrices.{k}", src.take(key, shape), key)
        key = _eb_key(src, s, "bias", k)
        dst.put(f"{d}.biases.{k}", src.take(key, (channels, dims[k + 1], 1)), key)
        if k < len(dims) - 2:
            key = _eb_key(src, s, "factor", k)
            dst.put(f"{d}.factors.{k}", src.take(key, (channels, dims[k + 1], 1)), key)
    extra = _eb_key(src, s, "matrix", len(dims) - 1)
    if src.has(extra):
        raise CheckpointError(f"{src.label}: {extra!r}: the factorized prior has more layers than "
                              f"CompressAI's default (3, 3, 3, 3), which licodec reproduces")
    q = src.take(f"{s}.quantiles", (channels, 1, 3))
    medians = q[:, 0, 1].contiguous()
    dst.put(f"{d}.medians", medians, f"{s}.quantiles")
    for buf in ("_offset", "_quantized_cdf", "_cdf_length", "target"):
        src.skip(f"{s}.{buf}")
    src.expect_value(f"{s}.likelihood_lower_bound.bound", 1e-9)
    return float(medians.abs().max()) if medians.numel() else 0.0


def check_gaussian_conditional(src: Source, s: str = "gaussian_conditional") -> None:
    """No tensors to map (licodec's Gaussian conditional has none); its scale bound 0.11 and
    likelihood bound 1e-9 are licodec's; its CDF tables and scale table are derived data."""
    for buf in ("_offset", "_quantized_cdf", "_cdf_length", "scale_table"):
        src.skip(f"{s}.{buf}")
    src.expect_value(f"{s}.scale_bound", 0.11)
    src.expect_value(f"{s}.lower_bound_scale.bound", 0.11)
    src.expect_value(f"{s}.likelihood_lower_bound.bound", 1e-9)


def write(model, out, quality, lmbda, extra: dict) -> Path:
    from ..weights import save_weights

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_weights(model, out, quality, lmbda, extra=extra)
    return out
