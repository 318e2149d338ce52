"""The exact path on every instruction set (issue 19): a correctly rounded sqrt, integer weights
that follow every change of the parameters, and an allow-list of operations."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import image_tensor, tiny_model
from licodec.entropy import exact


def test_sqrt_is_correctly_rounded():
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.rand(200_000, generator=g) * 4, torch.rand(50_000, generator=g) * 1e-30,
                   torch.rand(50_000, generator=g) * 1e30, torch.arange(0, 5000, dtype=torch.float32) ** 2,
                   torch.tensor([0.0, -0.0, float("inf"), 1.4e-45, 3.4e38])])
    with exact.exact_arithmetic():
        r = torch.sqrt(x)
        r2 = x.sqrt()
        r3 = x.clone().sqrt_()
    ref = np.sqrt(x.numpy())  # numpy: the hardware's correctly rounded sqrt
    assert np.array_equal(r.numpy(), ref) and torch.equal(r, r2) and torch.equal(r, r3)
    for dt in (torch.float16, torch.bfloat16):
        with exact.exact_arithmetic():
            h = torch.sqrt(x[:200_000].to(dt))
        assert torch.equal(h, torch.from_numpy(np.sqrt(x[:200_000].to(dt).float().numpy().astype(np.float64))).to(dt))
    with exact.exact_arithmetic(), pytest.raises(exact.InexactOperationError):
        torch.sqrt(x.double())


_SQRT_SCRIPT = """
import hashlib, sys, torch
from licodec.entropy import exact
x = torch.rand(2_000_000, generator=torch.Generator().manual_seed(0)) * 4
with exact.exact_arithmetic():
    r = torch.sqrt(x)
print(hashlib.sha256(r.numpy().tobytes()).hexdigest())
"""


def test_sqrt_is_the_same_under_every_mkl_instruction_set():
    """torch.sqrt differs in the last bit between MKL_ENABLE_INSTRUCTIONS=SSE4_2 and AVX512; the
    exact path's does not."""
    flags = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    settings = [s for s, f in (("SSE4_2", "sse4_2"), ("AVX2", "avx2"), ("AVX512", "avx512f")) if f in flags]
    if len(settings) < 2:
        pytest.skip("needs an x86 CPU with two MKL instruction sets")
    out = set()
    for s in (settings[0], settings[-1]):
        env = {**os.environ, "MKL_ENABLE_INSTRUCTIONS": s}
        r = subprocess.run([sys.executable, "-c", _SQRT_SCRIPT], env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        out.add(r.stdout.strip())
    assert len(out) == 1


def _encode(m, x):
    return m.compress(x).streams


@pytest.mark.parametrize("name", ["mbt2018-mean", "lee2019-ctx"])
def test_integer_weights_follow_data_reassignment_and_in_place_edits(name, sample_rgb):
    """``p.data = ...`` (as Module.to does) and edits of ``p.data`` do not bump ``_version``; the
    exact path must code with the new values anyway, as a fresh model with them would."""
    x = image_tensor(sample_rgb[:64, :64])
    m = tiny_model(name)
    with torch.no_grad():
        m.g_a[-1].weight.mul_(20)
    first = _encode(m, x)
    convs = [mod for mod in m.h_s.modules() if isinstance(mod, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    p = convs[-1].weight
    version = p._version
    p.data = p.data * 3.0  # reassignment
    assert p._version == version
    reassigned = _encode(m, x)
    fresh = tiny_model(name)
    fresh.load_state_dict(m.state_dict())
    assert reassigned == _encode(fresh, x) and reassigned != first
    version = p._version
    p.data.mul_(0.25)  # an in-place edit through .data
    assert p._version == version
    edited = _encode(m, x)
    fresh.load_state_dict(m.state_dict())
    assert edited == _encode(fresh, x) and edited != reassigned


def test_int_weight_cache_is_reused_within_a_block_and_checked_between_blocks():
    w, b = torch.randn(4, 3, 3, 3), torch.randn(4)
    with exact.exact_arithmetic():
        one = exact._int_weight(w, b, (1, 2, 3))
        assert exact._int_weight(w, b, (1, 2, 3)) is one  # cached within the block
    with exact.exact_arithmetic():
        assert exact._int_weight(w, b, (1, 2, 3)) is one  # unchanged: still the same
    w.data[0, 0, 0, 0] += 1.0
    with exact.exact_arithmetic():
        two = exact._int_weight(w, b, (1, 2, 3))
    assert two is not one and not torch.equal(two[1], one[1])
    b.data.zero_()
    three = exact._int_weight(w, b, (1, 2, 3))  # outside a block: checked at every call
    assert three is not two and not three[2].any()


@pytest.mark.parametrize("op", [
    lambda t: t.exp_(),
    lambda t: torch.var_mean(t),
    lambda t: torch.special.expit(t),
    lambda t: torch.rsqrt(t),
    lambda t: t.pow(2),
    lambda t: torch.addcmul(t, t, t),
    lambda t: t.add(t, alpha=0.5),
    lambda t: t % 0.3,
    lambda t: torch.div(t, 0.3, rounding_mode="floor"),
    lambda t: t.round(decimals=2),
    lambda t: torch.arange(0.0, 1.0, 0.1),
    lambda t: F.layer_norm(t, (4,)),
    lambda t: t @ t,
    lambda t: torch.logsumexp(t, 0),
    lambda t: t.cumsum(0),
])
def test_operations_off_the_allow_list_raise(op):
    x = torch.rand(4, 4)
    with exact.exact_arithmetic(), pytest.raises(exact.InexactOperationError, match="allow"):
        op(x.clone())
    op(x.clone())  # outside the mode: plain torch


def test_exact_operations_on_the_allow_list_pass():
    x = torch.rand(4, 4)
    i = torch.arange(16).view(4, 4)
    with exact.exact_arithmetic():
        y = (x + x - 2 * x) / 3 * x
        y = torch.where(y > 0, y, -y).clamp(0, 1).round().abs()
        _ = torch.cat([y, x]).view(-1)[3:7].shape, y.dtype, y.device, float(y.max()), torch.arange(5)
        _ = i % 3, i // 2, torch.div(i, 3, rounding_mode="floor"), x.add(x, alpha=1), F.relu(x)
        with exact.suspended():
            torch.exp(x)  # plain float, for the probability tables
