"""The capability matrix: a file encoded under one CPU instruction set decodes, to the same
latents, under every other (issue 19).

PyTorch picks its CPU kernels by ``ATEN_CPU_CAPABILITY`` (default = scalar, avx2, avx512) and MKL
its vector math by ``MKL_ENABLE_INSTRUCTIONS`` (SSE4_2, AVX2, AVX512); both are read at start-up,
so every setting runs in its own subprocess: one per setting encodes every model's files, then one
per setting decodes every file. Every encode must give the same bytes, and every decode the same
latents (the decoder also checks the file's latent CRC).

The models are tiny random-init ones (`testkit.TINY_CONFIGS`), each in three variants:
``plain``; ``busy``, g_a's output scaled up so that y has real symbol variety and the NAF blocks'
residual scales made nonzero, so that han2024-cca's LayerNorm (whose torch.sqrt differs between MKL
instruction sets) decides symbols; ``extreme``, g_a and h_a scaled so far that z and y symbols
reach the tails and the clamp limits of the tables.

The default run takes the two ends (scalar ATen with SSE4.2 MKL, AVX-512 with AVX-512); marked
slow: every ATen capability and MKL instruction set paired (3 settings) and the full product (9).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve()
VARIANTS = ("plain", "busy", "extreme")


def _cpu_flags() -> set[str]:
    from licodec.precision import cpu_flags

    return cpu_flags()


FLAGS = _cpu_flags()
ATEN = [c for c, need in (("default", None), ("avx2", "avx2"), ("avx512", "avx512f")) if need is None or need in FLAGS]
MKL = [c for c, need in (("SSE4_2", "sse4_2"), ("AVX2", "avx2"), ("AVX512", "avx512f")) if need in FLAGS]
if not MKL:
    MKL = [""]  # not an x86 CPU (or no cpuinfo): MKL's own choice only


def _paired() -> list[tuple[str, str]]:
    """Each ATen capability and each MKL instruction set at least once (the lowest with the lowest, ...)."""
    n = max(len(ATEN), len(MKL))
    return [(ATEN[min(i, len(ATEN) - 1)], MKL[min(i, len(MKL) - 1)]) for i in range(n)]


def _env(aten: str, mkl: str) -> dict:
    env = {**os.environ, "ATEN_CPU_CAPABILITY": aten, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    if mkl:
        env["MKL_ENABLE_INSTRUCTIONS"] = mkl
    else:
        env.pop("MKL_ENABLE_INSTRUCTIONS", None)
    src = str(HERE.parents[1] / "src")
    env["PYTHONPATH"] = os.pathsep.join([src, str(HERE.parent), env.get("PYTHONPATH", "")])
    return env


# -- the worker (run as a script in the subprocesses) -------------------------------------------------
def _make_weights(out: Path) -> None:
    import torch

    from conftest import TINY_CONFIGS, tiny_model
    from licodec.layers.naf import NAFBlock
    from licodec.weights import save_weights

    for name in sorted(TINY_CONFIGS):
        for variant in VARIANTS:
            m = tiny_model(name)
            g = torch.Generator().manual_seed(7)
            with torch.no_grad():
                if variant != "plain":
                    m.g_a[-1].weight.mul_(20 if variant == "busy" else 2000)
                    for blk in m.modules():
                        if isinstance(blk, NAFBlock):
                            blk.beta.copy_(torch.randn(blk.beta.shape, generator=g))
                            blk.gamma.copy_(torch.randn(blk.gamma.shape, generator=g))
                if variant == "extreme":
                    last = [mod for mod in m.h_a.modules() if isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear))][-1]
                    last.weight.mul_(500)
            save_weights(m, out / f"{name}.{variant}.safetensors", None if m.variable_rate else 3.0)


def _encode(weights: Path, image: Path, out: Path) -> None:
    from licodec.codec import Codec

    rgb = np.load(image)
    report = {}
    for w in sorted(weights.glob("*.safetensors")):
        data = Codec.from_weights(w).encode(rgb)
        (out / (w.name[: -len(".safetensors")] + ".lic")).write_bytes(data)
        report[w.name] = hashlib.sha256(data).hexdigest()
    (out / "encoded.json").write_text(json.dumps(report, sort_keys=True))


def _decode(weights: Path, files: list[Path], out: Path) -> None:
    import torch

    from licodec.codec import Codec
    from licodec.format import unpack

    codecs = {}
    report = {}
    for d in files:
        for lic in sorted(d.glob("*.lic")):
            f = unpack(lic.read_bytes())
            c = codecs.get(lic.stem) or codecs.setdefault(lic.stem, Codec.from_weights(weights / f"{lic.stem}.safetensors"))
            key = f"{d.name}/{lic.name}"
            try:
                c.decode_file(f)  # raises if the latents' CRC does not match the encoder's
                lat = c.latents(f)
                h = hashlib.sha256()
                symbols = {}
                for k in sorted(lat):
                    h.update(lat[k].detach().cpu().contiguous().numpy().tobytes())
                    symbols[k] = float(lat[k].abs().max())
                report[key] = {"latents": h.hexdigest(), "max": symbols,
                               "nonzero_y": int(torch.count_nonzero(lat["y_hat"]))}
            except Exception as e:  # noqa: BLE001 - reported to the parent
                report[key] = {"error": f"{type(e).__name__}: {e}"}
    (out / "decoded.json").write_text(json.dumps(report, sort_keys=True))


# -- the test ---------------------------------------------------------------------------------------
def _run(args: list[str], aten: str, mkl: str) -> None:
    r = subprocess.run([sys.executable, str(HERE), *args], env=_env(aten, mkl), capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, f"{args[0]} under ATEN={aten} MKL={mkl}:\n{r.stderr[-3000:]}"


def _matrix(tmp_path: Path, sample_rgb, settings: list[tuple[str, str]]) -> dict:
    weights = tmp_path / "weights"
    weights.mkdir()
    image = tmp_path / "image.npy"
    np.save(image, np.ascontiguousarray(sample_rgb[:64, :96]))
    _run(["weights", str(weights)], *settings[0])
    enc_dirs = []
    for aten, mkl in settings:
        d = tmp_path / f"enc-{aten}-{mkl or 'mkl'}"
        d.mkdir()
        _run(["encode", str(weights), str(image), str(d)], aten, mkl)
        enc_dirs.append(d)
    # every encode gives the same bytes
    encoded = [json.loads((d / "encoded.json").read_text()) for d in enc_dirs]
    for d, e in zip(enc_dirs[1:], encoded[1:]):
        differ = sorted(k for k in e if e[k] != encoded[0][k])
        assert not differ, f"{d.name} wrote other bytes than {enc_dirs[0].name} for {differ}"
    decoded = {}
    for aten, mkl in settings:
        d = tmp_path / f"dec-{aten}-{mkl or 'mkl'}"
        d.mkdir()
        _run(["decode", str(weights), str(d), *map(str, enc_dirs)], aten, mkl)
        decoded[d.name] = json.loads((d / "decoded.json").read_text())
    errors = {f"{s}: {k}": v["error"] for s, rep in decoded.items() for k, v in rep.items() if "error" in v}
    assert not errors, errors
    # every decode of every file gives the same latents
    by_file: dict[str, set] = {}
    for rep in decoded.values():
        for k, v in rep.items():
            by_file.setdefault(k.split("/", 1)[1], set()).add(v["latents"])
    assert all(len(v) == 1 for v in by_file.values()), {k: len(v) for k, v in by_file.items() if len(v) > 1}
    return next(iter(decoded.values()))


def _check_variety(report: dict) -> None:
    """The busy and extreme files code real symbols (not only zeros), the extreme ones large ones."""
    for k, v in report.items():
        if ".busy." in k or ".extreme." in k:
            assert v["nonzero_y"] > 0, k
        if ".extreme." in k:
            assert v["max"]["y_hat"] > 10 and v["max"]["z_hat"] > 20, (k, v["max"])
    from licodec.entropy.factorized import Z_RANGE

    assert any(v["max"]["z_hat"] == Z_RANGE for v in report.values())  # z at its clamp limit


def _ends() -> list[tuple[str, str]]:
    """The lowest and the highest setting: scalar ATen with SSE4.2 MKL, AVX-512 with AVX-512."""
    return [(ATEN[0], MKL[0]), (ATEN[-1], MKL[-1])]


def test_capability_matrix_ends(tmp_path, sample_rgb):
    _check_variety(_matrix(tmp_path, sample_rgb, _ends()))


@pytest.mark.slow
def test_capability_matrix_paired(tmp_path, sample_rgb):
    _check_variety(_matrix(tmp_path, sample_rgb, _paired()))


@pytest.mark.slow
def test_capability_matrix_full(tmp_path, sample_rgb):
    settings = [(a, m) for a in ATEN for m in MKL]
    _check_variety(_matrix(tmp_path, sample_rgb, settings))


if __name__ == "__main__":
    cmd, *rest = sys.argv[1:]
    if cmd == "weights":
        _make_weights(Path(rest[0]))
    elif cmd == "encode":
        _encode(Path(rest[0]), Path(rest[1]), Path(rest[2]))
    elif cmd == "decode":
        _decode(Path(rest[0]), [Path(p) for p in rest[2:]], Path(rest[1]))
    else:
        raise SystemExit(f"unknown command {cmd}")
