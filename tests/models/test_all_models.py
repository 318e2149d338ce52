"""Properties every registered model must have, on a random-init tiny config of each."""

import pytest
import torch

from licodec.metrics import rd_loss

from conftest import TINY_CONFIGS, image_tensor, tiny_model
from licodec.entropy import CodingError
from licodec.models.base import LatentMismatchError
from licodec.models import model_names

MODELS = sorted(TINY_CONFIGS)


def test_every_registered_model_is_covered():
    assert sorted(model_names()) == MODELS


@pytest.mark.parametrize("name", MODELS)
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
    # the decoded image is what the synthesis makes of the coded latents
    assert torch.equal(x_hat, m.g_s(enc.latents["y_hat"]).clamp(0, 1)[..., : hw[0], : hw[1]])


@pytest.mark.parametrize("name", MODELS)
def test_other_weights_are_caught_by_the_latent_checksum(name):
    a, b = tiny_model(name, seed=0), tiny_model(name, seed=1)
    x = torch.rand(1, 3, 64, 64)
    enc = a.compress(x)
    # other weights read the streams differently: caught by the latent checksum, or earlier when
    # the entropy decoder finds the stream does not end where it should
    with pytest.raises((LatentMismatchError, CodingError)):
        b.decompress(enc.streams, (64, 64), enc.checksum)
    with pytest.raises(LatentMismatchError):
        a.decompress(enc.streams, (64, 64), enc.checksum ^ 1)


@pytest.mark.parametrize("name", MODELS)
def test_training_forward_backward(name):
    m = tiny_model(name).train()
    with torch.no_grad():
        m.g_a[-1].weight.mul_(50)  # random-init latents are all |y| < 1/2: make every context non-zero
        m.h_a[-1].weight.mul_(50)  # ... and ẑ too, so that h_s gets a gradient
    x = torch.rand(2, 3, 64, 64)
    out = m(x)
    assert out["x_hat"].shape == (2, 3, 64, 64)
    assert out["likelihoods"]["y"].shape[2:] == (4, 4) and out["likelihoods"]["z"].shape[2:] == (1, 1)
    loss = out["x_hat"].square().mean() + sum(-l.log2().sum() for l in out["likelihoods"].values())
    (loss + rd_loss(out, x, 0.01)["aux"]).backward()  # with the CCA term of models that have one
    # every parameter is on the loss's graph (NAF blocks start with zero residual scales, so some
    # gradients are legitimately zero at initialization: only "not connected" is a failure)
    no_grad = [n for n, p in m.named_parameters() if p.grad is None]
    assert no_grad == [], no_grad
    if hasattr(m, "context_prediction"):
        assert m.context_prediction.weight.grad.abs().sum() > 0


def test_bf16_transforms_only_in_training():
    m = tiny_model("mbt2018-mean").train()
    m.bf16_transforms = True
    x = torch.rand(1, 3, 64, 64)
    seen = {}
    for name, mod in m.g_a.named_children():
        mod.register_forward_hook(lambda mod, inp, out, name=name: seen.update({name: (inp[0], out)}))
    out = m(x)
    assert out["x_hat"].dtype == torch.float32 and out["likelihoods"]["y"].dtype == torch.float32
    # the convolutions of g_a run in bfloat16 on channels_last tensors, GDN in float32
    assert seen["0"][1].dtype == torch.bfloat16 and seen["0"][1].is_contiguous(memory_format=torch.channels_last)
    assert seen["1"][0].dtype == torch.bfloat16 and seen["1"][1].dtype == torch.float32  # GDN
    m.eval()
    enc = m.compress(x)
    m.bf16_transforms = False
    assert m.compress(x).streams == enc.streams  # coding never uses bfloat16


@pytest.mark.parametrize("name", MODELS)
def test_variable_rate_every_model(name):
    """Gain units (rate_levels > 0) work for every model: exact latents at a fractional quality,
    more bytes at higher quality, every gain parameter on the training graph."""
    m = tiny_model(name, rate_levels=8)
    with torch.no_grad():
        m.g_a[-1].weight.mul_(20)
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    sizes = []
    for q in (1, 3.5, 8):
        enc = m.compress(x, q)
        lat = m.decode_latents(enc.streams, (64, 64))
        assert torch.equal(lat["y_hat"], enc.latents["y_hat"]) and torch.equal(lat["z_hat"], enc.latents["z_hat"])
        m.decompress(enc.streams, (64, 64), enc.checksum, q)
        sizes.append(sum(map(len, enc.streams)))
    assert sizes[0] < sizes[1] < sizes[2]
    with pytest.raises(ValueError, match="quality"):
        m.compress(x)  # a variable-rate model needs a quality
    m.train()
    out = m(torch.rand(2, 3, 64, 64), torch.tensor([1.5, 7.0]))
    (out["x_hat"].square().mean() + out.get("aux_loss", 0)).backward()
    assert m.gain.log_gain.grad is not None and m.gain.log_inv_gain.grad is not None


@pytest.mark.parametrize("name", MODELS)
def test_trailing_data_and_empty_streams_are_refused(name):
    from licodec.entropy import CodingError

    m = tiny_model(name)
    enc = m.compress(torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(4)))
    for i in range(len(enc.streams)):
        for bad in (enc.streams[i] + b"\x00" * 8, enc.streams[i] + b"\xff" * 8, b""):
            streams = list(enc.streams)
            streams[i] = bad
            with pytest.raises(CodingError):
                m.decode_latents(streams, (64, 64))


@pytest.mark.parametrize("name", MODELS)
def test_a_latent_flipped_in_the_decoder_is_caught(name, monkeypatch):
    """Encoder/decoder divergence (simulated: one decoded latent off by one) never reaches g_s."""
    m = tiny_model(name)
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    enc = m.compress(x)
    decode_latents = m.decode_latents

    def diverging(streams, hw, exact=True):
        lat = decode_latents(streams, hw, exact)
        lat["y_hat"] = lat["y_hat"].clone()
        lat["y_hat"].view(-1)[7] += 1
        return lat

    monkeypatch.setattr(m, "decode_latents", diverging)
    with pytest.raises(LatentMismatchError):
        m.decompress(enc.streams, (64, 64), enc.checksum)


@pytest.mark.parametrize("name", MODELS)
def test_real_bits_match_the_estimated_rate(name, sample_rgb):
    """The coded streams are as long as the model's own likelihoods say (eval forward: rounded
    latents), within the range coder's overhead: what the RD figures and the training loss count
    is what the files cost. Random-init latents are nearly all zero, so g_a's output is scaled up
    as far as it goes without symbols in the far tails (likelihoods at the 1e-9 floor, which the
    coder clamps instead of paying their 30 bits: no trained model puts latents there)."""
    x = image_tensor(sample_rgb[:128, :192])
    for scale in (10, 6, 3, 1):
        m = tiny_model(name)
        with torch.no_grad():
            m.g_a[-1].weight.mul_(scale)
            lik = m(x)["likelihoods"]
        if all(float((v <= 1.01e-9).float().mean()) <= 1e-3 for v in lik.values()):
            break
    est = sum(float(-torch.log2(v).sum()) for v in lik.values())
    streams = m.compress(x).streams
    real = 8 * sum(len(s) for s in streams)
    assert est > 400, (scale, est)  # enough symbols for the comparison to mean something
    assert abs(real - est) <= 0.05 * est + 32 * len(streams), (scale, real, est)


@pytest.mark.parametrize("name", MODELS)
def test_training_lowers_the_loss(name):
    """A few Adam steps on one batch lower its RD loss (the training step trains)."""
    torch.manual_seed(0)
    m = tiny_model(name).train()
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    losses = []
    for _ in range(25):
        opt.zero_grad()
        terms = rd_loss(m(x), x, 0.01)
        terms["loss"].backward()
        opt.step()
        losses.append(float(terms["loss"].detach()))
    assert sum(losses[-5:]) / 5 < 0.9 * sum(losses[:5]) / 5, losses
