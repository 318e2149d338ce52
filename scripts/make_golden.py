"""Regenerate tests/golden/: small .lic files per registered model (format versions 4 and 3), with the SHA-256 of its
decoded latents and of its decoded pixels (deterministic=True), checked by tests/golden/test_golden.py.

ONLY for an intended format change (a new format version, a new model): the golden files are
there to make a change that breaks old files fail. Never regenerate them to make that test pass.

    python scripts/make_golden.py            # (re)writes every model's files
    python scripts/make_golden.py lee2019-ctx  # only these models

Models with shipped weights (the default, mbt2018-mean) use them; the others use tiny random-init
weights (`testkit.TINY_CONFIGS` with N = M = 8, seed 0, g_a's last layer scaled by 20 so that y codes real
symbols, NAF blocks' residual scales nonzero), stored beside the files in float16.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import torch

GOLDEN = Path(__file__).resolve().parent.parent / "tests" / "golden"
sys.path.insert(0, str(GOLDEN.parent))  # testkit: the tiny models (not installed)
INDEX = GOLDEN / "golden.json"
# the current version, and version 3 (the float64 tables of versions 1 to 3; version 2 decodes
# alike, version 1 only on the kind of machine that wrote it)
VERSIONS = (4, 3)
SHIPPED = {"mbt2018-mean": ("mbt2018-mean-vr.safetensors", 4.0)}  # model: (shipped file, quality)


def image() -> np.ndarray:
    """A 40x48 test image: gradients, an edge and seeded noise."""
    rng = np.random.default_rng(19)
    y, x = np.mgrid[0:40, 0:48]
    rgb = np.stack([x * 5, y * 6, (x + y) * 3], axis=-1).astype(np.float64)
    rgb[:, 24:] = 255 - rgb[:, 24:]
    rgb += rng.normal(0, 12, rgb.shape)
    return np.clip(np.round(rgb), 0, 255).astype(np.uint8)


def golden_config(name: str, tiny: dict) -> dict:
    """`TINY_CONFIGS` made smaller still (N = M = 8; M = 16 where M2 = 8 hybrid channels need more)."""
    return {**tiny, "N": 8, "M": 16 if tiny.get("M2") else 8}


def tiny_weights(name: str, path: Path) -> None:
    from licodec.models import create_model
    from testkit import TINY_CONFIGS
    from licodec.weights import save_weights

    torch.manual_seed(0)
    m = create_model(name, golden_config(name, TINY_CONFIGS[name])).eval()
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        m.g_a[-1].weight.mul_(20)
        for blk in m.modules():
            if type(blk).__name__ == "NAFBlock":
                blk.beta.copy_(torch.randn(blk.beta.shape, generator=g))
                blk.gamma.copy_(torch.randn(blk.gamma.shape, generator=g))
    save_weights(m, path, None if m.variable_rate else 3.0, extra={"golden": True}, half=True)


def weights_path(name: str) -> Path:
    from licodec.weights import shipped_dir

    return shipped_dir() / SHIPPED[name][0] if name in SHIPPED else GOLDEN / f"{name}.safetensors"


def digests(codec, data: bytes) -> dict:
    """SHA-256 of the decoded latents (float32 bytes, sorted by name) and of the decoded pixels."""
    from licodec.format import unpack

    f = unpack(data)
    pixels = codec.decode_file(f, deterministic=True)  # also checks the latent CRC
    lat = codec.latents(f)
    h = hashlib.sha256()
    for k in sorted(lat):
        h.update(k.encode() + b"|" + lat[k].detach().float().cpu().contiguous().numpy().tobytes())
    return {"version": f.version, "latents_sha256": h.hexdigest(),
            "pixels_sha256": hashlib.sha256(np.ascontiguousarray(pixels).tobytes()).hexdigest()}


def main(names: list[str]) -> None:
    from licodec.codec import Codec
    from licodec.format import VERSION as FORMAT_VERSION
    from licodec.models import model_names

    index = json.loads(INDEX.read_text()) if INDEX.exists() else {}
    for name in names or model_names():
        w = weights_path(name)
        if name not in SHIPPED:
            tiny_weights(name, w)
        codec = Codec.from_weights(w, quality=SHIPPED.get(name, (None, None))[1])
        for version in VERSIONS:
            key = name if version == FORMAT_VERSION else f"{name}@v{version}"
            data = codec.encode(image(), version=version)
            (GOLDEN / f"{key}.lic").write_bytes(data)
            index[key] = {"model": name, "weights": f"shipped:{w.name}" if name in SHIPPED else w.name,
                          "lic_sha256": hashlib.sha256(data).hexdigest(), **digests(codec, data)}
            print(f"{key}: {len(data)} bytes", file=sys.stderr)
    INDEX.write_text(json.dumps(index, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
