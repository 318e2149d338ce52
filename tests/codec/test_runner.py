"""The codec's runner (`licodec.codec.runner`): how a model's networks run while it codes."""

import pytest
import torch

from conftest import TINY_CONFIGS, image_tensor, tiny_model
from licodec.codec.runner import CodingRunner, coding, coding_threads
from licodec.models.base import Runner

MODELS = sorted(TINY_CONFIGS)


def _threads_seen(m, module: str) -> list[int]:
    """torch's thread count each time ``m.<module>`` runs (recorded by a forward pre-hook)."""
    seen = []
    getattr(m, module).register_forward_pre_hook(lambda *_: seen.append(torch.get_num_threads()))
    return seen


@pytest.mark.parametrize("name", ["mbt2018-mean", "he2021-checkerboard", "han2024-cca"])
def test_symbols_are_computed_on_one_thread_only_under_the_codec(name):
    m = tiny_model(name)
    g_a, h_a, g_s = (_threads_seen(m, k) for k in ("g_a", "h_a", "g_s"))
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    n = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        enc = m.compress(x)  # the model's own runner: torch's threads everywhere
        m.decompress(enc.streams, (64, 64), enc.checksum)
        assert (g_a, h_a, g_s) == ([2], [2], [2])
        with coding(m):
            enc = m.compress(x)
            m.decompress(enc.streams, (64, 64), enc.checksum)
        assert (g_a[1:], h_a[1:], g_s[1:]) == ([1], [1], [2])  # g_s keeps its threads ...
        with coding(m, deterministic=True):
            m.decompress(enc.streams, (64, 64), enc.checksum)
        assert g_s[2:] == [1]  # ... unless decoding is deterministic
        assert torch.get_num_threads() == 2  # restored
    finally:
        torch.set_num_threads(n)


@pytest.mark.parametrize("tile", [0, 64])
def test_g_s_runs_channels_last_unless_decoding_is_deterministic(tile):
    """The codec's decoder feeds g_s channels_last tensors (oneDNN's faster NHWC kernels), whole or
    tile by tile; deterministic decoding keeps the standard layout, so its pixels stay those of
    tests/golden; both decode the same latents to pixels equal up to float noise."""
    m = tiny_model("mbt2018-mean")
    layouts = []
    m.g_s.register_forward_pre_hook(
        lambda _, args: layouts.append("cl" if args[0].is_contiguous(memory_format=torch.channels_last)
                                       else "nchw" if args[0].is_contiguous() else "other"))
    x = torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    with coding(m, tile):
        enc = m.compress(x)
        fast = m.decompress(enc.streams, (128, 128), enc.checksum)
    with coding(m, tile, deterministic=True):
        ref = m.decompress(enc.streams, (128, 128), enc.checksum)
    tiles = 4 if tile else 1  # 128x128 in 64x64 tiles
    assert layouts == ["cl"] * tiles + ["nchw"] * tiles
    assert (fast - ref).abs().max() < 1e-4


def test_coding_installs_and_restores_the_runner():
    m = tiny_model("mbt2018-mean")
    assert type(m.runner) is Runner and m.runner.tile == 0
    with coding(m, 128) as r:
        assert m.runner is r and isinstance(r, CodingRunner) and r.tile == 128
        with pytest.raises(ValueError):
            with coding(m, 100):  # not a multiple of 64
                pass
        assert m.runner is r
    assert type(m.runner) is Runner
    with pytest.raises(RuntimeError):
        with coding(m):
            raise RuntimeError
    assert type(m.runner) is Runner
    assert "runner" not in m.state_dict() and not any("runner" in k for k in m.state_dict())


def test_coding_threads_restores_the_count_on_error():
    n = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with pytest.raises(KeyError):
            with coding_threads():
                assert torch.get_num_threads() == 1
                raise KeyError
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(n)


@pytest.mark.parametrize("name", MODELS)
def test_bytes_identical_across_runs_and_thread_counts(name, sample_rgb):
    """As the codec runs every model: the same bytes with 1, 2 or 4 threads, and every file decodes."""
    m = tiny_model(name)
    with torch.no_grad():
        m.g_a[-1].weight.mul_(20)  # random-init latents are nearly all zero: make the streams non-trivial
    x = image_tensor(sample_rgb[:128, :192])
    n = torch.get_num_threads()
    hw = x.shape[-2:]
    with coding(m):
        try:
            torch.set_num_threads(1)
            enc = m.compress(x)
            a = enc.streams
            x1 = m.decompress(a, hw, enc.checksum)
            torch.set_num_threads(2)
            b = m.compress(x).streams
            c = m.compress(x).streams
            x2 = m.decompress(a, hw, enc.checksum)  # latents checked against the 1-thread encoder's
            torch.set_num_threads(4)  # more threads than this machine may have cores: other oneDNN splits
            enc4 = m.compress(x)
            torch.set_num_threads(1)
            m.decompress(enc4.streams, hw, enc4.checksum)
        finally:
            torch.set_num_threads(n)
    assert a == b == c == enc4.streams
    assert sum(map(len, a)) > 100
    # the same latents (the checksum held), and g_s of them equal up to float32 reduction order,
    # which oneDNN picks by thread count: pixels may differ by float noise, not more
    assert (x1 - x2).abs().max() < 1e-4
