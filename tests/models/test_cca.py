"""han2024-cca: exact coding, determinism, causality of the channel groups, the auxiliary model, training."""

import json

import numpy as np
import pytest
import torch

from conftest import TINY_CCA, train_args
from licodec import train
from licodec.metrics import rd_loss
from licodec.models.cca import SMALL_CONFIG, group_sizes
from licodec.registry import create_model
from licodec.weights import load_weights



def tiny_cca(seed: int = 0, **config):
    torch.manual_seed(seed)
    return create_model("han2024-cca", {**TINY_CCA, **config}).eval()


def test_power_schedule_group_sizes():
    assert group_sizes(320, 5, 1.7) == [8, 28, 56, 92, 136]
    assert group_sizes(320, 5, even=True) == [64] * 5
    for M in (24, 96, 192, 320):
        for K in (1, 3, 5):
            for k in (0.5, 1.0, 1.7):
                sizes = group_sizes(M, K, k)
                assert sum(sizes) == M and len(sizes) == K and min(sizes) >= 1
                assert sizes[-1] == max(sizes)
    with pytest.raises(ValueError, match="too small"):
        group_sizes(3, 5, 1.7)


def test_model_uses_the_configured_groups():
    assert tiny_cca().group_sizes == group_sizes(24, 4, 1.7)
    assert tiny_cca(even_groups=True).group_sizes == [6, 6, 6, 6]
    assert create_model("han2024-cca", {**TINY_CCA, "M": 320, "num_groups": 5}).group_sizes == [8, 28, 56, 92, 136]


@pytest.mark.parametrize("hw", [(64, 64), (37, 91)])
def test_even_grouping_round_trip(hw):
    m = tiny_cca(even_groups=True)
    x = torch.rand(1, 3, *hw, generator=torch.Generator().manual_seed(1))
    enc = m.compress(x)
    assert torch.equal(m.decode_latents(enc.streams, hw)["y_hat"], enc.latents["y_hat"])


def _run(m, y, psi, perturb_group=None, delta=0.0):
    """One pass of the model's group loop; ŷ_j gets +delta for j == perturb_group. Returns the
    (μ, σ) of every group."""
    main = {}

    def code(i, y_i, mu, sigma):
        main[i] = (mu.clone(), sigma.clone())
        y_hat_i = torch.round(y_i - mu) + mu
        return (y_hat_i + delta if i == perturb_group else y_hat_i), None

    with torch.no_grad():
        m._run_groups(y, psi, code)
    return main


def _same(a, b):
    return torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


@pytest.mark.parametrize("j", [0, 1, 2])
def test_group_parameters_are_causal(j):
    m = tiny_cca(num_groups=4)
    g = torch.Generator().manual_seed(2)
    y = 3 * torch.randn(1, 24, 5, 7, generator=g)
    psi = torch.randn(1, 48, 5, 7, generator=g)
    ref = _run(m, y, psi)
    # changing ŷ_j (hence every later ŷ, through the context) leaves the parameters of groups ≤ j alone
    main = _run(m, y, psi, perturb_group=j, delta=0.3)
    for i in range(j + 1):
        assert _same(main[i], ref[i]), i
    assert not _same(main[j + 1], ref[j + 1])


@pytest.mark.parametrize("i", [1, 2, 3])
def test_auxiliary_model_never_sees_the_previous_group(i):
    m = tiny_cca(num_groups=4)
    g = torch.Generator().manual_seed(3)
    y = 3 * torch.randn(1, 24, 5, 7, generator=g)
    psi = torch.randn(1, 48, 5, 7, generator=g)
    y_hat = torch.round(y)
    start, size = sum(m.group_sizes[: i - 1]), m.group_sizes[i - 1]
    y_hat_2 = y_hat.clone()
    y_hat_2[:, start : start + size] += 0.3  # change ŷ_{i-1} only
    with torch.no_grad():
        ref = m._aux_likelihoods(y, y_hat, psi).split(m.group_sizes, dim=1)
        aux = m._aux_likelihoods(y, y_hat_2, psi).split(m.group_sizes, dim=1)
    assert not _same(_run(m, y, psi, perturb_group=i - 1, delta=0.3)[i], _run(m, y, psi)[i])  # the main model uses ŷ_{i-1} ...
    for k in range(i + 1):
        assert torch.equal(aux[k], ref[k]), k  # ... the auxiliary model for groups ≤ i does not
    if i + 1 < 4:
        assert not torch.equal(aux[i + 1], ref[i + 1])  # but it does see older groups


def test_training_forward_with_cca():
    m = tiny_cca().train()
    x = torch.rand(2, 3, 64, 128)
    out = m(x)
    assert out["x_hat"].shape == x.shape
    assert out["likelihoods"]["y"].shape == (2, 24, 4, 8)
    assert out["likelihoods"]["z"].shape == (2, 8, 1, 2)
    assert out["aux_loss"].shape == () and torch.isfinite(out["aux_loss"])
    terms = rd_loss(out, x, 0.01)
    assert torch.allclose(terms["loss"], 0.01 * 255**2 * terms["mse"] + terms["bpp"] + out["aux_loss"])
    assert terms["aux"] is out["aux_loss"]
    terms["loss"].backward()
    no_grad = [n for n, p in m.named_parameters() if p.grad is None]
    assert no_grad == [], no_grad
    # the auxiliary model gets its gradient from aux_loss only
    assert m.aux_context_model.cc_mean_transforms[1][0].weight.grad.abs().sum() > 0
    m.eval()
    assert "aux_loss" not in m(x)  # evaluation: no auxiliary model


def test_aux_loss_is_weighted_by_alpha():
    x = torch.rand(1, 3, 64, 64)
    losses = []
    for alpha in (0.0, 1.0, 2.5):
        m = tiny_cca(alpha=alpha).train()
        torch.manual_seed(5)  # same quantization noise in every run
        losses.append(m(x)["aux_loss"])
    assert losses[0] == 0
    assert torch.allclose(losses[2], 2.5 * losses[1])


def test_no_cca_ablation():
    m = tiny_cca(use_cca=False).train()
    assert not any(n.startswith("aux_") for n, _ in m.named_parameters())
    x = torch.rand(2, 3, 64, 64)
    out = m(x)
    assert "aux_loss" not in out
    terms = rd_loss(out, x, 0.01)
    assert terms["aux"] == 0
    terms["loss"].backward()
    assert all(p.grad is not None for p in m.parameters())
    # the coding path is the same model: ŷ round-trips
    m.eval()
    enc = m.compress(torch.rand(1, 3, 40, 50))
    assert torch.equal(m.decode_latents(enc.streams, (40, 50))["y_hat"], enc.latents["y_hat"])


def test_three_training_steps_on_the_small_config(tmp_path, train_images):
    config = json.dumps({**SMALL_CONFIG, "N": 8, "M": 16})
    args = train_args(
        "-m", "han2024-cca", "--config", config, "--data", train_images, "--val", train_images,
        "--out", tmp_path / "run", "--steps", "3", "--batch-size", "2", "--patch", "64", "--val-every", "3",
        "--checkpoint-minutes", "0",
    )
    path = train.run(args)
    m, info = load_weights(path)
    assert info["model"] == "han2024-cca" and info["config"]["M"] == 16 and info["extra"]["steps"] == 3
    lines = (tmp_path / "run" / "log.csv").read_text().splitlines()
    assert len(lines) == 2 and all(np.isfinite(float(v)) for v in lines[1].split(",")[3:5])
    x = torch.rand(1, 3, 30, 40)
    enc = m.compress(x)
    assert torch.equal(m.decode_latents(enc.streams, (30, 40))["y_hat"], enc.latents["y_hat"])
