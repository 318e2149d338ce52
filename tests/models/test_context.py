"""Serial (Lee 2019), hybrid and checkerboard (He 2021) context models: causality and the
equivalence of their training, encoding and decoding paths. Round trip and determinism are
covered for every model in test_all_models.py."""

import pytest
import torch

from conftest import tiny_model
from licodec.layers import named_mask

def _serial_params(m, y_hat, c1):
    return m.params(c1, m.context_prediction(y_hat))


def test_serial_causality_by_perturbation():
    """μ, σ at a position never change when a latent at or after it (raster order) changes."""
    m = tiny_model("lee2019-ctx")
    g = torch.Generator().manual_seed(0)
    y_hat = torch.round(torch.randn(1, 24, 6, 7, generator=g) * 3)
    c1 = torch.randn(1, 48, 6, 7, generator=g)
    mu0, s0 = _serial_params(m, y_hat, c1)
    for (h, w) in [(0, 0), (2, 3), (5, 6), (3, 0)]:
        y2 = y_hat.clone()
        y2[0, :, h, w] += 5
        mu1, s1 = _serial_params(m, y2, c1)
        changed = ((mu1 - mu0).abs() + (s1 - s0).abs()).sum(1)[0]  # (6, 7)
        order = torch.arange(42).view(6, 7)
        assert changed[order <= h * 7 + w].abs().max() == 0
        if (h, w) != (5, 6):
            assert changed[order > h * 7 + w].abs().max() > 0  # the context is used at all


def test_serial_loop_matches_parallel_masked_convolution():
    """The decoder's per-position evaluation computes the same μ, σ as training's one-pass conv."""
    m = tiny_model("lee2019-ctx")
    x = torch.rand(1, 3, 64, 128)
    enc = m.compress(x)
    y_hat = enc.latents["y_hat"]
    c1 = m.h_s(enc.latents["z_hat"])
    mu_ref, s_ref = _serial_params(m, y_hat, c1)
    seen = {}

    def record(hw, mu, sigma):
        seen[hw] = (mu.clone(), sigma.clone())
        return y_hat[0, :, hw[0], hw[1]]

    m._serial(c1, record)
    for (h, w), (mu, sigma) in seen.items():
        assert torch.allclose(mu, mu_ref[0, :, h, w], atol=1e-5)
        assert torch.allclose(sigma, s_ref[0, :, h, w], atol=1e-5)
    assert len(seen) == y_hat.shape[2] * y_hat.shape[3]


def _checkerboard_pass_params(m, c1, y):
    """The (μ, σ) of the two passes of `_two_pass` when the latents are ``y``."""
    seen = []

    def code(sel, mu, sigma):
        seen.append((mu, sigma))
        return torch.round(y) * sel

    m._two_pass(c1, code)
    return seen


def test_checkerboard_anchors_use_the_hyperprior_alone_and_nonanchors_use_the_anchors():
    m = tiny_model("he2021-checkerboard")
    g = torch.Generator().manual_seed(0)
    c1 = torch.randn(1, 48, 6, 6, generator=g)
    y = torch.randn(1, 24, 6, 6, generator=g) * 3
    anchors = m.anchor_mask(6, 6)[0, 0]  # (6, 6)
    (mu_a, s_a), (mu_n, s_n) = _checkerboard_pass_params(m, c1, y)

    y_n = y.clone()
    y_n[:, :, ~anchors] += 7  # every non-anchor changed: no parameter of either pass changes
    (mu_a2, s_a2), (mu_n2, s_n2) = _checkerboard_pass_params(m, c1, y_n)
    assert torch.equal(mu_a, mu_a2) and torch.equal(s_a, s_a2)
    assert torch.equal(mu_n, mu_n2) and torch.equal(s_n, s_n2)

    y_a = y.clone()
    y_a[:, :, anchors] += 7  # every anchor changed: the anchors' parameters stay (hyperprior only) ...
    (mu_a3, s_a3), (mu_n3, s_n3) = _checkerboard_pass_params(m, c1, y_a)
    assert torch.equal(mu_a, mu_a3) and torch.equal(s_a, s_a3)
    changed = ((mu_n3 - mu_n).abs() + (s_n3 - s_n).abs()).sum(1)[0]  # (6, 6)
    assert bool((changed[~anchors] > 0).all())  # ... and every non-anchor's parameters follow them


def test_checkerboard_training_encoder_and_decoder_see_identical_parameters():
    """The one context model serves all three: the encoder (over known latents) and the two-pass
    decoder use the same (μ, σ) for each latent, and so does the training forward (eval mode) for
    the anchors; for the non-anchors it differs only through the anchors' ŷ, which the coder puts
    on the mean grid (ŷ = round(y - μ_q) + μ_q, μ_q a multiple of 1/64: `gaussian.MEAN_STEP`)."""
    m = tiny_model("he2021-checkerboard")
    x = torch.rand(1, 3, 64, 64)
    seen = {"train": [], "enc": [], "dec": []}
    gc = m.gaussian_conditional
    orig_f, orig_c, orig_d = gc.forward, gc.compress, gc.decompress
    gc.forward = lambda y, mu, sigma, *a, **k: seen["train"].append((mu, sigma)) or orig_f(y, mu, sigma, *a, **k)
    gc.compress = lambda enc, y, mu, sigma: seen["enc"].append((mu, sigma)) or orig_c(enc, y, mu, sigma)
    gc.decompress = lambda dec, mu, sigma: seen["dec"].append((mu, sigma)) or orig_d(dec, mu, sigma)
    with torch.no_grad():
        m(x)
        enc = m.compress(x, exact=False)
        m.decode_latents(enc.streams, (64, 64), exact=False)
    anchors = m.anchor_mask(4, 4)
    for k, sel in enumerate((anchors, ~anchors)):  # pass 1: anchors, pass 2: non-anchors
        sel = sel.expand_as(seen["train"][k][0])
        for p in range(2):  # μ, σ
            train, coded = seen["train"][k][p][sel], seen["enc"][k][p]
            assert torch.equal(coded, seen["dec"][k][p])
            if k == 0:
                assert torch.equal(train, coded)
            else:
                assert (train - coded).abs().max() < 0.01  # the anchors' ŷ moved by < 1/128


def test_named_masks():
    assert named_mask("serial").sum() == 12 and named_mask("checkerboard").sum() == 12
    assert named_mask("all").sum() == 24 and named_mask("all")[2, 2] == 0


def test_random_mask_training_changes_mask_but_coding_uses_serial():
    m = tiny_model("lee2019-ctx", random_mask=True).train()
    masks = {tuple(m.context_mask().flatten().tolist()) for _ in range(5)}
    assert len(masks) > 1
    m.eval()
    assert m.context_mask() is None
    enc = m.compress(torch.rand(1, 3, 64, 64))
    assert torch.equal(m.decode_latents(enc.streams, (64, 64))["y_hat"], enc.latents["y_hat"])


def test_hybrid_config_validation():
    with pytest.raises(ValueError):
        tiny_model("lee2019-ctx-hybrid", M2=24)


def test_mask_analysis_ratios():
    from licodec.analysis.masks import mask_bpp, rate_saving, standard_masks

    m = tiny_model("lee2019-ctx", random_mask=True)
    with torch.no_grad():
        m.g_a[-1].weight.mul_(50)  # non-zero latents, so that masks matter
    masks = standard_masks()
    assert len(masks) == 7 + 24 and all(mk[2, 2] == 0 for mk in masks.values())
    x = torch.rand(1, 3, 64, 64)
    y_bpp, bpp = mask_bpp(m, [x], {k: masks[k] for k in ("none", "serial", "all")})
    r = rate_saving(y_bpp)
    assert r["none"] == 0 and len({round(b, 6) for b in bpp.values()}) == 3
    # z's bits are in both totals: the y-only ratio is the larger one (He 2021's non-reference bpp)
    z = {k: bpp[k] - y_bpp[k] for k in bpp}
    assert max(z.values()) - min(z.values()) < 1e-6 and min(z.values()) > 0
    assert abs(r["all"]) > abs(rate_saving(bpp)["all"])
    # the serial mask reproduces the coding model's own rate estimate
    with torch.no_grad():
        out = m.eval()(x)
    est = sum(-l.log2().sum() for l in out["likelihoods"].values()).item() / (64 * 64)
    assert abs(bpp["serial"] - est) < 1e-4
