import subprocess
import sys

import pytest
import torch

from conftest import HYPERPRIOR_MODELS, image_tensor, tiny_model
from licodec.models.base import LatentMismatchError


@pytest.mark.parametrize("name", HYPERPRIOR_MODELS)
@pytest.mark.parametrize("hw", [(64, 64), (37, 91), (1, 1)])
def test_compress_decompress_reproduces_latents_exactly(name, hw):
    m = tiny_model(name)
    x = torch.rand(1, 3, *hw, generator=torch.Generator().manual_seed(1))
    enc = m.compress(x)
    lat = m.decode_latents(enc.streams, hw)
    assert torch.equal(lat["z_hat"], enc.latents["z_hat"])
    assert torch.equal(lat["y_hat"], enc.latents["y_hat"])
    x_hat = m.decompress(enc.streams, hw, enc.checksum)
    assert x_hat.shape == (1, 3, *hw)
    # the decoded image is what the model's synthesis makes of the coded latents
    ref = m.g_s(enc.latents["y_hat"]).clamp(0, 1)[..., : hw[0], : hw[1]]
    assert torch.equal(x_hat, ref)


@pytest.mark.parametrize("name", HYPERPRIOR_MODELS)
def test_forward_shapes_and_modes(name):
    m = tiny_model(name).train()
    x = torch.rand(2, 3, 64, 128)
    out = m(x)
    assert out["x_hat"].shape == x.shape
    assert out["likelihoods"]["y"].shape == (2, 24, 4, 8)
    assert out["likelihoods"]["z"].shape == (2, 16, 1, 2)
    loss = out["x_hat"].square().mean() + sum(-l.log2().sum() for l in out["likelihoods"].values())
    loss.backward()
    assert all(p.grad is not None for n, p in m.named_parameters() if not n.startswith("entropy_bottleneck.factors"))


@pytest.mark.parametrize("name", HYPERPRIOR_MODELS)
def test_bytes_identical_across_runs_and_thread_counts(name, sample_rgb):
    m = tiny_model(name)
    x = image_tensor(sample_rgb[:200, :300])
    n = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        a = m.compress(x).streams
        torch.set_num_threads(2)
        b = m.compress(x).streams
        c = m.compress(x).streams
    finally:
        torch.set_num_threads(n)
    assert a == b == c


def test_checksum_mismatch_is_detected():
    m = tiny_model("mbt2018-mean")
    x = torch.rand(1, 3, 64, 64)
    enc = m.compress(x)
    with pytest.raises(LatentMismatchError):
        m.decompress(enc.streams, (64, 64), enc.checksum ^ 1)


def test_other_weights_decode_differently_and_are_caught():
    a, b = tiny_model("mbt2018-mean", seed=0), tiny_model("mbt2018-mean", seed=1)
    x = torch.rand(1, 3, 64, 64)
    enc = a.compress(x)
    with pytest.raises(LatentMismatchError):
        b.decompress(enc.streams, (64, 64), enc.checksum)
