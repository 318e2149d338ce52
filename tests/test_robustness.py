"""Corrupted payloads that pass the file CRC (recomputed on purpose) must still fail cleanly:
the entropy decoder may read garbage, but the latent checksum catches it."""

import struct
import zlib

import numpy as np
import pytest

from conftest import tiny_model
from licodec.codec import Codec
from licodec.errors import FormatError
from licodec.format import unpack
from licodec.weights import save_weights


@pytest.fixture(scope="module")
def codec_and_file(tmp_path_factory, sample_path):
    from PIL import Image

    path = tmp_path_factory.mktemp("r") / "w.safetensors"
    m = tiny_model("mbt2018-mean")
    import torch

    with torch.no_grad():
        m.g_a[-1].weight.mul_(20)  # a non-trivial y stream
    save_weights(m, path, quality=3)
    codec = Codec.from_weights(path)
    rgb = np.asarray(Image.open(sample_path).convert("RGB"))[:96, :128]
    return codec, codec.encode(rgb)


def test_mutated_payload_with_valid_crc_fails_cleanly(codec_and_file):
    codec, data = codec_and_file
    f = unpack(data)
    payload_start = len(data) - 4 - sum(len(s) for s in f.streams)
    caught = 0
    for seed in range(20):
        rng = np.random.default_rng(seed)
        bad = bytearray(data[:-4])
        for _ in range(int(rng.integers(1, 4))):
            i = int(rng.integers(payload_start, len(bad)))
            bad[i] ^= int(rng.integers(1, 256))
        bad = bytes(bad) + struct.pack("<I", zlib.crc32(bytes(bad)))
        try:
            rgb = codec.decode_file(unpack(bad))
        except FormatError as e:
            assert "cannot decode" in str(e)
            caught += 1
        else:  # the mutation happened to decode to the same latents (e.g. bits past the coded data)
            assert rgb.shape == (96, 128, 3)
    assert caught >= 15, caught
