"""NAF blocks and residual bottleneck blocks (the building blocks of han2024-cca)."""

import torch
import torch.nn.functional as F

from licodec.layers import LayerNorm2d, NAFBlock, NAFStack, ResidualBottleneckBlock, SimpleGate


def test_layernorm2d_normalizes_each_pixel_over_channels():
    torch.manual_seed(0)
    ln = LayerNorm2d(6)
    with torch.no_grad():
        ln.weight.uniform_(0.5, 2)
        ln.bias.uniform_(-1, 1)
    x = torch.randn(2, 6, 5, 7)
    ref = F.layer_norm(x.permute(0, 2, 3, 1), (6,), ln.weight, ln.bias, eps=ln.eps).permute(0, 3, 1, 2)
    assert torch.allclose(ln(x), ref, atol=1e-5)


def test_simple_gate_multiplies_halves():
    x = torch.randn(1, 4, 3, 3)
    assert torch.equal(SimpleGate()(x), x[:, :2] * x[:, 2:])


def test_naf_block_is_identity_at_init_and_learns_its_residual_scales():
    torch.manual_seed(0)
    block = NAFBlock(8)
    x = torch.randn(2, 8, 9, 11)
    assert torch.equal(block(x), x)  # β = γ = 0
    block(x).square().sum().backward()
    assert block.beta.grad.abs().sum() > 0 and block.gamma.grad.abs().sum() > 0
    with torch.no_grad():
        block.beta.fill_(1.0)
        block.gamma.fill_(1.0)
    y = block(x)
    assert y.shape == x.shape and not torch.equal(y, x)


def test_naf_stack_and_residual_block_shapes():
    x = torch.randn(1, 5, 6, 4)
    assert NAFStack(5, 7, width=8, depth=2)(x).shape == (1, 7, 6, 4)
    assert ResidualBottleneckBlock(5)(x).shape == x.shape
    assert ResidualBottleneckBlock(5, 12)(x).shape == (1, 12, 6, 4)
