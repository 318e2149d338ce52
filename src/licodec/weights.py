"""Weight files: safetensors only, with the model's registry name, dataclass config, quality,
λ and a fingerprint of the tensors in the metadata. Loading treats the file as untrusted and is
strict (`licodec.weights_check`): the metadata parsed field by field, the config typed and capped,
the tensors it implies (from a model built on the ``meta`` device) compared by name, shape and
dtype with the safetensors header before any tensor is read or any model allocated, then the
fingerprint, then the values (finite, bounded). Anything wrong is a one-line `WeightsError`.

Shipped weights live in ``licodec/weights/``: ``<model>-q<quality>.safetensors`` for fixed-rate
weights (one λ each) and ``<model>-vr.safetensors`` for variable-rate weights (config
``rate_levels`` > 0, metadata quality ``"variable"``), which serve every quality in 1..L.

Coding tables: `save_weights` also stores the integer coding tables of every factorized prior
(`licodec.entropy.factorized`, format version 4), tensor ``tables:<module path>`` (int32,
(C, 2*Z_RANGE+1)), and records their SHA-256 in the metadata ``tables``. They are not model
tensors: the fingerprint covers the model tensors only (so adding tables to a file keeps its
fingerprint, and the files made with it find it by fingerprint); the tables have their own
checksum, checked at load. A file without them (made before) gets them computed at load.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import NamedTuple

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file, safe_open

from .registry import UnknownModelError
from .models import create_model, get_model_class
from .weights_check import VARIABLE, WeightsError  # noqa: F401  (WeightsError is re-exported)
from .weights_check import (_first_line, check_config, check_header, check_values, expected_tensors, parse_metadata,
                            read_header)

FORMAT = "licodec-weights-1"
TABLES_PREFIX = "tables:"  # tensor names of the stored coding tables; no state-dict key has a colon
TABLES_FORMAT = "licodec-tables-1"


def _priors(model) -> dict:
    from .entropy.factorized import FactorizedPrior

    return {name: m for name, m in model.named_modules() if isinstance(m, FactorizedPrior)}


def tables_digest(tables: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(tables):
        t = tables[name].contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def coding_tables(model, state: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """{``tables:<path>``: int32 frequencies} of every factorized prior of ``model``, computed
    from ``state`` (default: the model's own; e.g. the float16 tensors a file stores, as loading
    will see them)."""
    import copy

    from .entropy.coder import CodingError

    out = {}
    for name, prior in _priors(model).items():
        p = copy.deepcopy(prior).cpu()
        p.__dict__.pop("_frozen", None)
        if state is not None:
            sub = {k[len(name) + 1:]: v for k, v in state.items() if k.startswith(name + ".")}
            p.load_state_dict(sub, strict=True)
        try:
            out[TABLES_PREFIX + name] = torch.from_numpy(p.integer_tables().astype("int32"))
        except CodingError as e:
            raise WeightsError(f"cannot compute the coding tables of {name}: {e}") from None
    return out


def dense(t: torch.Tensor) -> torch.Tensor:
    """A CPU copy with the standard (row-major) strides, whatever the tensor's memory format
    (channels_last parameters of bf16 training have other strides, even where they count as
    contiguous)."""
    return t.detach().cpu().clone(memory_format=torch.contiguous_format)


def fingerprint(state: dict[str, torch.Tensor]) -> bytes:
    """8-byte hash of names, dtypes, shapes and bytes of every model tensor (sorted by name); the
    stored coding tables (``tables:`` names) are not model tensors and are left out."""
    h = hashlib.sha256()
    for name in sorted(state):
        if name.startswith(TABLES_PREFIX):
            continue
        t = dense(state[name])
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.digest()[:8]


def model_fingerprint(model) -> bytes:
    return fingerprint(model.state_dict())


def atomic_write(path: str | os.PathLike, write) -> None:
    """Call ``write(tmp_path)`` then rename over ``path``; a failure leaves no partial file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _half(t: torch.Tensor) -> torch.Tensor:
    """float32 -> float16 where the values fit (finite, |x| < 65504); else unchanged."""
    if t.dtype != torch.float32:
        return t
    h = t.half()
    return h if bool(torch.isfinite(h).all()) else t


def save_weights(model, path, quality: float | None, lmbda: float | None = None, extra: dict | None = None,
                 half: bool = False) -> bytes:
    """quality: the ladder point of fixed-rate weights; None for variable-rate weights.

    ``half``: store float32 tensors as float16 (half the size; loading casts them back to the
    model's float32, so coding stays float32 and deterministic — the fingerprint covers the
    stored float16 values)."""
    if (quality is None) != model.variable_rate:
        raise ValueError("variable-rate weights are saved with quality=None, fixed-rate ones with a quality")
    state = {k: dense(v) for k, v in model.state_dict().items()}
    if half:
        state = {k: _half(v) for k, v in state.items()}
    fp = fingerprint(state)
    tables = coding_tables(model, state)
    meta = {
        "format": FORMAT,
        "model": model.name,
        "config": json.dumps(model.config_dict(), sort_keys=True),
        "quality": VARIABLE if quality is None else repr(float(quality)),
        "lambda": "" if lmbda is None else repr(float(lmbda)),
        "fingerprint": fp.hex(),
        "extra": json.dumps(extra or {}, sort_keys=True),
    }
    if tables:
        meta["tables"] = json.dumps({"format": TABLES_FORMAT, "sha256": tables_digest(tables)}, sort_keys=True)
    atomic_write(path, lambda tmp: save_file({**state, **tables}, tmp, metadata=meta))
    return fp


def add_tables(path) -> bool:
    """Store the coding tables in weight file ``path`` that has none (a file saved before they
    were): computed from its tensors as `load_weights` computes them, on this machine; every
    tensor, the metadata and the fingerprint stay as they are. False if it has them already."""
    meta = dict(read_metadata(path))
    model, _ = load_weights(path)
    state = load_file(str(path))
    if any(k.startswith(TABLES_PREFIX) for k in state):
        return False
    tables = coding_tables(model)
    if not tables:
        return False
    meta["tables"] = json.dumps({"format": TABLES_FORMAT, "sha256": tables_digest(tables)}, sort_keys=True)
    atomic_write(path, lambda tmp: save_file({**state, **tables}, tmp, metadata=meta))
    return True


def check_tables_header(path, meta: dict, header: dict, table_names: list[str]) -> None:
    """The stored tables, from the safetensors header: int32, 2-D, and recorded in the metadata."""
    raw = meta.get("tables")
    if not table_names and raw is None:
        return
    try:
        rec = json.loads(raw) if raw is not None else None
    except ValueError:
        rec = None
    if not isinstance(rec, dict) or rec.get("format") != TABLES_FORMAT or not isinstance(rec.get("sha256"), str):
        raise WeightsError(f"{path}: metadata 'tables' is missing or not a {TABLES_FORMAT} record")
    for k in table_names:
        shape, dtype = header[k]
        if dtype != "I32" or len(shape) != 2:
            raise WeightsError(f"{path}: coding table {k[:60]!r} must be a 2-D int32 tensor")


def attach_tables(path, model, tables: dict[str, torch.Tensor]) -> None:
    """Freeze every factorized prior's coding tables: the stored ones, else computed now."""
    from .entropy.coder import CodingError

    priors = _priors(model)
    unknown = sorted(k for k in tables if k[len(TABLES_PREFIX):] not in priors)
    if unknown:
        raise WeightsError(f"{path}: coding tables for no factorized prior of the model ({unknown[0][:60]!r})")
    for name, prior in priors.items():
        t = tables.get(TABLES_PREFIX + name)
        try:
            prior.freeze_tables(None if t is None else t.numpy())
        except CodingError as e:
            if t is not None:
                raise WeightsError(f"{path}: invalid coding tables of {name} ({e})") from None
            # computed from weights that give no distribution: coding refuses them (CodingError), as before


def metadata_quality(meta: dict) -> float | None:
    """The quality a weight file's metadata records: a number, or None for variable-rate weights."""
    return None if meta["quality"] == VARIABLE else float(meta["quality"])


def read_metadata(path) -> dict:
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise WeightsError(f"{path}: not a readable safetensors weight file ({e})") from None
    if meta.get("format") != FORMAT:
        raise WeightsError(f"{path}: not a licodec weight file (metadata format {meta.get('format')!r})")
    return meta


def load_weights(path, device: str | torch.device = "cpu", expect_model: str | None = None):
    """Build the model named in the file from its stored config and load the tensors strictly,
    validating everything first (`licodec.weights_check`; the order is in the module docstring).
    Returns (model in eval mode, metadata dict with parsed fields). Raises `WeightsError`."""
    meta = read_metadata(path)
    m = parse_metadata(path, meta)
    name, config, quality = m["model"], m["config"], m["quality"]
    if expect_model is not None and name != expect_model:
        raise WeightsError(f"{path}: holds weights for {name!r:.80}, not {expect_model!r}")
    try:
        get_model_class(name)
    except UnknownModelError as e:
        raise WeightsError(f"{path}: {e}") from None
    check_config(path, name, config)
    expected, variable_rate = expected_tensors(path, name, config)  # on the meta device: no allocation
    if (quality is None) != variable_rate:
        raise WeightsError(f"{path}: metadata quality {meta['quality']!r:.40} does not fit the config's rate_levels")
    header = read_header(path)
    table_names = sorted(k for k in header if k.startswith(TABLES_PREFIX))
    check_tables_header(path, meta, header, table_names)
    check_header(path, f"{name} config {config}", expected, {k: v for k, v in header.items() if k not in table_names})
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise WeightsError(f"{path}: invalid weight file ({_first_line(e)})") from None
    tables = {k: state.pop(k) for k in table_names}
    if tables and tables_digest(tables) != json.loads(meta["tables"])["sha256"]:
        raise WeightsError(f"{path}: coding tables do not match their recorded checksum (tampered or damaged file)")
    if fingerprint(state) != m["fingerprint"]:
        raise WeightsError(f"{path}: tensors do not match the recorded fingerprint (tampered or damaged file)")
    check_values(path, state)
    model = create_model(name, config)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:  # not expected after check_header; kept as a last line of defence
        first = str(e).strip().splitlines()
        raise WeightsError(f"{path}: weights do not fit {name} config {config}: {first[1].strip() if len(first) > 1 else first[0]}") from None
    attach_tables(path, model, tables)
    info = {
        "model": name,
        "config": config,
        "quality": quality,  # None: variable rate (any quality in 1..config rate_levels)
        "lambda": m["lambda"],
        "fingerprint": m["fingerprint"],
        "extra": m["extra"],
        "path": str(path),
    }
    return model.to(device).eval(), info


def shipped_dir() -> Path:
    return Path(str(resources.files("licodec") / "weights"))


class Shipped(NamedTuple):
    model: str
    quality: float | None  # None: variable rate
    levels: int  # rate levels of variable-rate weights (0: fixed rate)
    fingerprint: str  # hex, as in the metadata
    path: Path
    generation: int = 1  # metadata extra "generation": of several variable-rate files, the highest codes


@lru_cache(maxsize=1)
def _shipped() -> tuple[Shipped, ...]:
    """Every weight file bundled in the package, read once per process (the package does not change)."""
    d = shipped_dir()
    out = []
    for p in sorted(d.glob("*.safetensors")) if d.is_dir() else []:
        try:
            meta = read_metadata(p)
            levels = int(json.loads(meta["config"]).get("rate_levels", 0))
            generation = int(json.loads(meta.get("extra") or "{}").get("generation", 1))
            out.append(Shipped(meta["model"], metadata_quality(meta), levels, meta["fingerprint"], p, generation))
        except (WeightsError, ValueError, KeyError):
            continue
    return tuple(out)


def shipped_weights() -> dict[str, dict[float, Path]]:
    """{model name: {quality: path}} for the fixed-rate weights bundled in the package."""
    out: dict[str, dict[float, Path]] = {}
    for w in _shipped():
        if w.quality is not None:
            out.setdefault(w.model, {})[w.quality] = w.path
    return out


def shipped_files() -> tuple[Shipped, ...]:
    """Every weight file bundled in the package, the superseded ones (kept to decode old files) too."""
    return _shipped()


def shipped_variable_rate() -> dict[str, tuple[int, Path]]:
    """{model name: (rate levels L, path)}: the variable-rate weights a model codes with, the file of
    the highest ``generation`` (older generations stay installed so that their files decode)."""
    best: dict[str, Shipped] = {}
    for w in _shipped():
        if w.quality is None and (w.model not in best or w.generation > best[w.model].generation):
            best[w.model] = w
    return {m: (w.levels, w.path) for m, w in best.items()}


def shipped_models() -> list[str]:
    return sorted({w.model for w in _shipped()})


def find_weights(model: str, quality: float) -> Path:
    """The shipped weights for ``model`` at ``quality``: the model's variable-rate weights when it has
    some and quality is in their range (one file serves the whole quality scale, so quality is
    monotone), else fixed-rate weights trained at exactly that quality. Older fixed-rate weights stay
    installed beside variable-rate ones so that the files made with them still decode (by fingerprint)."""
    from .rate import MAX_QUALITY, MIN_QUALITY

    get_model_class(model)  # UnknownModelError naming the registered models
    if not MIN_QUALITY <= quality <= MAX_QUALITY:  # NaN too
        raise WeightsError(f"quality {quality:g} is outside the range {MIN_QUALITY:g}..{MAX_QUALITY:g}")
    fixed = shipped_weights().get(model, {})
    vr = shipped_variable_rate().get(model)
    if vr is not None and 1 <= quality <= vr[0]:
        return vr[1]
    if quality in fixed:
        return fixed[quality]
    if not fixed and vr is None:
        raise WeightsError(f"no shipped weights for {model!r}; pass --weights FILE (see `licodec models`)")
    have = [f"{q:g}" for q in sorted(fixed)] + ([f"any in 1..{vr[0]}"] if vr else [])
    raise WeightsError(f"{model!r} has no shipped weights for quality {quality:g} (available: {', '.join(have)})")


# Shipped weight files that a later release removes from the package (issue 18: superseded by the
# variable-rate default), by fingerprint: the last licodec release that ships them. A .lic file made
# with one of them names it; where it is no longer installed, `retired_release` lets the decoder
# say which release decodes the file instead of only "not installed".
RETIRED = {
    # the fixed-rate mbt2018-mean-q1..q6 of licodec 0.1 (N=64, M=96), superseded in 0.2
    "2a3b13602123f69e": "0.3",
    "ed1fd0bdebfb9b0f": "0.3",
    "b17869a006c5c0bb": "0.3",
    "65ab0207482d000d": "0.3",
    "457c5bbaf497a9d9": "0.3",
    "01778db91a8b06ff": "0.3",
}


def retired_release(fp: bytes) -> str | None:
    """The last licodec release that ships the weights with fingerprint ``fp``, if they are retired."""
    return RETIRED.get(fp.hex())


def find_by_fingerprint(model: str, fp: bytes) -> Path | None:
    """The weight file with this model name and fingerprint: a shipped one, else one in the user's
    weight folder (`user_weights_dir`, where `licodec import` writes)."""
    shipped = next((w.path for w in _shipped() if w.model == model and w.fingerprint == fp.hex()), None)
    if shipped is not None:
        return shipped
    return next((p for p, meta in user_weight_files()
                 if meta.get("model") == model and meta.get("fingerprint") == fp.hex()), None)


ENV_WEIGHTS_DIR = "LICODEC_WEIGHTS_DIR"


def user_weights_dir() -> Path:
    """The folder of the user's own (imported) weight files: ``$LICODEC_WEIGHTS_DIR``, else
    ``$XDG_DATA_HOME/licodec/weights``, else ``~/.local/share/licodec/weights``."""
    env = os.environ.get(ENV_WEIGHTS_DIR)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "licodec" / "weights"


def user_weight_files() -> list[tuple[Path, dict]]:
    """(path, metadata) of every readable licodec weight file in `user_weights_dir` (others skipped)."""
    d = user_weights_dir()
    out = []
    for p in sorted(d.glob("*.safetensors")) if d.is_dir() else []:
        try:
            out.append((p, read_metadata(p)))
        except WeightsError:
            continue
    return out

