"""Golden files: every registered model's small .lic files (format version 4, and 3: the tables
of versions 1 to 3) decode to the latents and pixels it
decoded to when it was made (tests/golden/golden.json: SHA-256 of the latents and of the pixels,
decoded with deterministic=True).

A failure here means that a change broke the decoding of existing files. Regenerate the golden
files (scripts/make_golden.py) ONLY for an intended format change — a new format version whose
old files still decode as before — never to make this test pass.
"""

import hashlib
import json
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
INDEX = json.loads((HERE / "golden.json").read_text())
sys.path.insert(0, str(HERE.parents[1] / "scripts"))
import make_golden  # noqa: E402


def test_every_model_has_a_golden_file():
    from licodec.models import model_names

    assert sorted(k for k in INDEX if "@" not in k) == model_names(), (
        "a model without a golden file: run scripts/make_golden.py MODEL")
    assert {e["model"] for e in INDEX.values()} == set(model_names())


@pytest.mark.parametrize("name", sorted(INDEX))
def test_golden_file_decodes_as_recorded(name):
    from licodec.codec import Codec, codec_for
    from licodec.format import VERSION, unpack

    entry = INDEX[name]
    data = (HERE / f"{name}.lic").read_bytes()
    assert hashlib.sha256(data).hexdigest() == entry["lic_sha256"], "the golden .lic file itself changed"
    f = unpack(data)
    assert f.model == entry["model"] and f.version == entry["version"] <= VERSION
    if entry["weights"].startswith("shipped:"):
        codec = codec_for(f)  # the shipped weights, found by the file's fingerprint
        assert Path(codec.info["path"]).name == entry["weights"][len("shipped:"):]
    else:
        codec = Codec.from_weights(HERE / entry["weights"])
    got = make_golden.digests(codec, data)
    assert got["latents_sha256"] == entry["latents_sha256"], (
        f"{name}: the golden file decodes to other latents: a change broke decoding of existing files")
    assert got["pixels_sha256"] == entry["pixels_sha256"], (
        f"{name}: the golden file decodes to other pixels (deterministic=True)")
