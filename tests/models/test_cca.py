"""han2024-cca: exact coding, determinism, causality of the channel groups, the auxiliary model, training."""

import json

import numpy as np
import pytest
import torch

from conftest import TINY_CCA, train_args
from licodec import train
from licodec.metrics import rd_loss
from licodec.models.cca import SMALL_CONFIG, group_sizes
from licodec.models import create_model
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
    assert out["aux_likelihoods"].shape == (2, 24, 4, 8) and out["cca_alpha"] == 1.0
    terms = rd_loss(out, x, 0.01)
    assert torch.allclose(terms["loss"], 0.01 * 255**2 * terms["mse"] + terms["bpp"] + terms["aux"])
    assert len(terms["r_groups"]) == 4
    assert torch.allclose(sum(terms["r_groups"]), terms["r_y"])
    terms["loss"].backward()
    no_grad = [n for n, p in m.named_parameters() if p.grad is None]
    assert no_grad == [], no_grad
    m.eval()
    assert "aux_likelihoods" not in m(x)  # evaluation: no auxiliary model


def test_cca_loss_equals_the_hand_computed_value():
    """rd_loss on fixed likelihoods: 2 images of 4x4 pixels (32 pixels), λ = (0.01, 0.05)."""
    x = torch.zeros(2, 3, 4, 4)
    x_hat = torch.stack([torch.full((3, 4, 4), 0.1), torch.full((3, 4, 4), 0.2)])  # MSE 0.01, 0.04
    out = {
        "x_hat": x_hat,
        "likelihoods": {"y": torch.full((2, 2, 1, 1), 0.5), "z": torch.full((2, 1, 1, 1), 0.25)},  # 1 and 2 bits
        "aux_likelihoods": torch.full((2, 2, 1, 1), 0.125),  # 3 bits each
        "cca_alpha": 1.0,
        "y_groups": [1, 1],
    }
    t = rd_loss(out, x, torch.tensor([0.01, 0.05]))
    # distortion: mean(0.01·0.01, 0.05·0.04)·255² = 0.00105·65025
    # rates: y 4 bits, z 4 bits over 32 pixels; α_b = λ_b/0.05 = (0.2, 1.0);
    # per image R_y = 2 bits, R_aux = 6 bits
    assert t["r_y"].item() == pytest.approx(4 / 32) and t["r_z"].item() == pytest.approx(4 / 32)
    assert [g.item() for g in t["r_groups"]] == pytest.approx([2 / 32, 2 / 32])
    assert t["r_aux"].item() == pytest.approx(12 / 32)
    assert t["cca"].item() == pytest.approx((0.2 * (2 - 6) + 1.0 * (2 - 6)) / 32)  # -0.15
    assert t["aux"].item() == pytest.approx((0.2 * (2 + 6) + 1.0 * (2 + 6)) / 32)  # 0.3: see rd_loss
    assert t["loss"].item() == pytest.approx(0.00105 * 65025 + 0.25 + 0.3, rel=1e-6)
    assert t["aux_floor"].item() == 0
    out["aux_likelihoods"] = torch.tensor([1e-9, 0.5, 0.5, 0.5]).reshape(2, 2, 1, 1)
    assert rd_loss(out, x, 0.01)["aux_floor"].item() == 0.25


def _grads(m, loss):
    m.zero_grad(set_to_none=True)
    loss.backward(retain_graph=True)
    return {n: p.grad for n, p in m.named_parameters()}


def _touched(grads, prefix):
    return [n for n, g in grads.items() if n.startswith(prefix) and g is not None and g.abs().sum() > 0]


def test_cca_gradient_flow_tensor_by_tensor():
    """R_aux trains the auxiliary model and, reversed, g_a; nothing else. α·R_main reaches the
    main entropy model. Neither reaches g_s or the factorized prior of z."""
    m = tiny_cca(seed=1, naf_blocks=[1, 1, 1]).train()
    for name, p in m.named_parameters():  # NAF residual scales start at 0 and would hide the gradients behind them
        if name.endswith((".beta", ".gamma")) and "naf" in name.lower() or name.endswith((".beta", ".gamma")) and p.dim() == 4:
            torch.nn.init.constant_(p, 0.1)
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    torch.manual_seed(0)
    out = m(x)
    r_aux = -torch.log2(out["aux_likelihoods"]).sum()
    g = _grads(m, r_aux)
    aux = [n for n in g if n.startswith("aux_context_model.")]
    assert aux and all(g[n] is not None for n in aux)  # every auxiliary tensor is in the graph ...
    assert len(_touched(g, "aux_context_model.")) > 0.8 * len(aux)  # ... and nearly all move
    assert _touched(g, "g_a.") == [n for n in g if n.startswith("g_a.")]  # every g_a tensor, reversed
    for prefix in ("g_s.", "h_a.", "h_s.", "context_model.", "entropy_bottleneck."):
        assert _touched(g, prefix) == [], prefix

    # the reversal: y gets minus the gradient of R_aux
    y = out["y"].detach().requires_grad_()
    y_hat, psi = out["y_hat"].detach(), out["psi"].detach()
    torch.manual_seed(2)
    (gy,) = torch.autograd.grad(-torch.log2(m._aux_likelihoods(y, y_hat, psi)).sum(), y)
    y2 = out["y"].detach().requires_grad_()
    torch.manual_seed(2)
    with _no_reversal():
        (gy_plain,) = torch.autograd.grad(-torch.log2(m._aux_likelihoods(y2, y_hat, psi)).sum(), y2)
    assert gy.abs().sum() > 0 and torch.equal(gy, -gy_plain)

    # the whole CCA part of the loss: α·(R_main + R_aux) with the reversal
    t = rd_loss(out, x, 0.05)
    g = _grads(m, t["aux"])
    for prefix in ("g_a.", "h_a.", "h_s.", "context_model.", "aux_context_model."):
        assert _touched(g, prefix), prefix
    for prefix in ("g_s.", "entropy_bottleneck."):
        assert _touched(g, prefix) == [], prefix


class _no_reversal:
    def __enter__(self):
        import licodec.models.cca as cca

        self.saved, cca.reverse_gradient = cca.reverse_gradient, lambda t: t

    def __exit__(self, *exc):
        import licodec.models.cca as cca

        cca.reverse_gradient = self.saved


def test_alpha_follows_lambda():
    """α(λ) = alpha·λ/0.05 per image: the CCA term of one image scales with its λ and alpha."""
    x = torch.zeros(1, 3, 4, 4)
    out = {"x_hat": x.clone(), "likelihoods": {"y": torch.full((1, 2, 1, 1), 0.5), "z": torch.full((1, 1, 1, 1), 0.5)},
           "aux_likelihoods": torch.full((1, 2, 1, 1), 0.25)}
    for alpha, lam in [(1.0, 0.0018), (1.0, 0.18), (2.0, 0.013), (0.0, 0.013)]:
        t = rd_loss({**out, "cca_alpha": alpha}, x, lam)
        assert t["cca"].item() == pytest.approx(alpha * lam / 0.05 * (2 - 4) / 16)


def test_short_training_run_trains_the_auxiliary_model(tmp_path, sample_path):
    """On crops of the bundled photo, R_aux falls, stays finite, above R_y and far below the floor."""
    from PIL import Image

    d = tmp_path / "imgs"
    d.mkdir()
    Image.open(sample_path).save(d / "sample.png")
    args = train_args(
        "-m", "han2024-cca", "--config", json.dumps(TINY_CCA), "--data", d, "--val", "", "--out", tmp_path / "run",
        "--steps", "100", "--batch-size", "2", "--patch", "64", "--lr", "1e-3", "--log-every", "10",
        "--checkpoint-minutes", "0", "--precision", "fp32", "-q", "8",
    )
    args.val = ""
    train.run(args)
    import csv

    with open(tmp_path / "run" / "log.csv") as f:
        rows = list(csv.DictReader(f))
    r_aux, r_y, floor = (np.array([float(r[k]) for r in rows]) for k in ("r_aux", "r_y", "aux_floor"))
    floor_rate = TINY_CCA["M"] / 256 * -np.log2(1e-9)  # 2.8 bpp: every auxiliary likelihood at the floor
    assert len(rows) == 10 and np.isfinite(r_aux).all()
    assert r_aux[-3:].mean() < 0.5 * r_aux[0]  # falls
    assert (r_aux[-3:] < 0.1 * floor_rate).all()  # far below the floor
    assert r_aux[-3:].mean() > r_y[-3:].mean()  # the auxiliary model lacks ŷ_{i-1}: it needs more bits
    assert floor[-3:].max() < 0.01


def test_collapsed_auxiliary_model_stops_the_run():
    from licodec.errors import LicodecError

    train._check_auxiliary({"aux_floor": torch.tensor(0.5)}, train.AUX_FLOOR_AFTER)  # warm-up: allowed
    train._check_auxiliary({"aux_floor": torch.tensor(0.005)}, train.AUX_FLOOR_AFTER + 1)
    with pytest.raises(LicodecError, match="collapsed"):
        train._check_auxiliary({"aux_floor": torch.tensor(0.02)}, train.AUX_FLOOR_AFTER + 1)


def test_no_cca_ablation():
    m = tiny_cca(use_cca=False).train()
    assert not any(n.startswith("aux_") for n, _ in m.named_parameters())
    x = torch.rand(2, 3, 64, 64)
    out = m(x)
    assert "aux_likelihoods" not in out
    terms = rd_loss(out, x, 0.01)
    assert terms["aux"] == 0 and "cca" not in terms
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
    head = lines[0].split(",")
    assert {"r_y", "r_z", "r_aux", "cca", "aux_floor", "r_g1", "r_g5"} <= set(head)
    row = dict(zip(head, lines[1].split(",")))
    assert all(np.isfinite(float(row[k])) for k in ("r_y", "r_z", "r_aux", "cca", "aux_floor", "r_g5"))
    x = torch.rand(1, 3, 30, 40)
    enc = m.compress(x)
    assert torch.equal(m.decode_latents(enc.streams, (30, 40))["y_hat"], enc.latents["y_hat"])
