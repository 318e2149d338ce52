"""Tiled transforms (`licodec.codec.tiling`, run by `licodec.codec.runner`): equal to the whole-image transforms for convolutional
models, bounded memory for large images, the codec's and the CLI's ``--tile``."""

import json
import subprocess
import sys
import textwrap
from fractions import Fraction

import numpy as np
import pytest
import torch
from torch import nn

from conftest import TINY_CONFIGS, tiny_model
from licodec.codec import Codec, decode, to_tensor, to_uint8
from licodec.errors import LicodecError
from licodec.layers.naf import NAFBlock, SimplifiedChannelAttention
from licodec.codec import runner
from licodec.codec.runner import CodingRunner, coding
from licodec.codec.tiling import margins, receptive_field, tiled
from licodec.defaults import check_tile
from licodec.models import create_model, model_names

CONV_MODELS = [n for n in TINY_CONFIGS if not n.startswith("han2024-cca")]  # transforms without global pooling


def _image(h, w, seed=0):
    return torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(seed))


def test_tiled_copies_every_position_once():
    x = torch.arange(2 * 3 * 48 * 80, dtype=torch.float32).reshape(2, 3, 48, 80)
    calls = []

    def f(t):
        calls.append(tuple(t.shape[-2:]))
        return t * 2

    assert torch.equal(tiled(f, x, 32, 16, 1), 2 * x)
    assert max(calls) <= (48, 64) and len(calls) == 2 * 3
    # a smaller `out` crops, skips the tiles outside it and receives `post`ed values
    calls.clear()
    out = torch.zeros(2, 3, 20, 25, dtype=torch.float64)  # inside the first of 2 x 3 tiles of 24 x 27
    tiled(f, x, 32, 16, 1, out=out, post=lambda t: t + 1)
    assert torch.equal(out, (2 * x + 1)[..., :20, :25].double()) and len(calls) == 1


def test_tiled_aligns_to_the_stride():
    conv = nn.Conv2d(3, 4, 5, stride=4, padding=2)
    x = _image(64, 96)
    with torch.no_grad():
        want = conv(x)
        got = tiled(conv, x, 32, 4, Fraction(1, 4))
    torch.testing.assert_close(got, want)
    with pytest.raises(ValueError, match="aligned"):
        tiled(conv, x, 30, 4, Fraction(1, 4))


def test_receptive_fields_and_margins():
    m = create_model("mbt2018-mean")
    assert receptive_field(m.g_a)[:2] == (30, Fraction(1, 16))  # 2·(1+2+4+8) pixels
    assert receptive_field(m.g_s)[0] == Fraction(15, 8)  # 1 + 1/2 + 1/4 + 1/8 latents
    assert margins(m.g_a, m.g_s) == (32, 2)
    cca = create_model("han2024-cca")  # the paper's config: 3 residual + 4 NAF blocks per stage
    assert margins(cca.g_a, cca.g_s) == (128, 8)
    assert receptive_field(cca.g_a)[2] and receptive_field(cca.g_s)[2]  # NAF's global pooling
    for name in model_names():  # every registered model can tile
        m = tiny_model(name)
        assert CodingRunner(64).margins(m)[0] % 16 == 0
    with pytest.raises(TypeError, match="unknown"):
        receptive_field(nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), nn.Upsample(scale_factor=2)))


@pytest.mark.parametrize("name", CONV_MODELS)
def test_tiled_transforms_equal_whole_image(name):
    m = tiny_model(name)
    x = _image(192, 256)  # 3 x 4 tiles of 64 pixels
    with torch.no_grad():
        y = m.analysis(x, None)
        x_hat = m.synthesis(y, None)
        with coding(m, 64) as r:
            torch.testing.assert_close(m.analysis(x, None), y, rtol=0, atol=1e-5)
            torch.testing.assert_close(m.synthesis(y, None), x_hat, rtol=0, atol=1e-5)
            # the margins are tight: one stride less and the tiles' borders show
            ma, ms = r.margins(m)
            r.margins = lambda model: (ma - 16, ms - 1)
            assert (m.analysis(x, None) - y).abs().max() > 1e-3
            assert (m.synthesis(y, None) - x_hat).abs().max() > 1e-3


def test_cca_tiles_exactly_without_the_global_pooling(monkeypatch):
    """With the NAF blocks' global average replaced by a pointwise map, the margins make tiled
    han2024-cca transforms exact; with it, tiles differ (measured in benchmarks/run_large.py)."""
    m = tiny_model("han2024-cca")
    with torch.no_grad():
        for blk in m.modules():
            if isinstance(blk, NAFBlock):  # zero at init: make the blocks do something
                blk.beta.normal_(0, 0.5)
                blk.gamma.normal_(0, 0.5)
    x = _image(192, 192)

    def run(tile):
        with torch.no_grad(), coding(m, tile):
            y = m.analysis(x, None)
            return y, m.synthesis(y, None)

    y, x_hat = run(0)
    y64, x_hat64 = run(64)
    assert y64.shape == y.shape and x_hat64.shape == x_hat.shape
    assert (y64 - y).abs().max() > 1e-4  # tile-local averages
    monkeypatch.setattr(SimplifiedChannelAttention, "forward", lambda self, t: t * self.conv(t))
    y, x_hat = run(0)
    y64, x_hat64 = run(64)
    torch.testing.assert_close(y64, y, rtol=0, atol=1e-5)
    torch.testing.assert_close(x_hat64, x_hat, rtol=0, atol=1e-5)


def test_no_tiling_when_training_or_with_autograd(monkeypatch):
    m = tiny_model("mbt2018-mean")
    calls = []
    monkeypatch.setattr(runner, "tiled", lambda *a, **k: calls.append(1) or tiled(*a, **k))
    x = _image(128, 128)
    with torch.no_grad():
        m(x)  # the model's own runner never tiles
    assert not calls
    with coding(m, 64):
        m(x)  # eval, but autograd on
        m.train()
        with torch.no_grad():
            m(x)
        assert not calls
        m.eval()
        with torch.no_grad():
            m(x)
            m.analysis(_image(64, 64), None)  # not larger than a tile
    assert len(calls) == 2  # g_a and g_s of the 128x128 image


def test_check_tile():
    assert check_tile(0) == 0 and check_tile(1024) == 1024
    for bad in (-64, 100, 32, 64.5):
        with pytest.raises(ValueError):
            check_tile(bad)
    with pytest.raises(ValueError):
        CodingRunner(48)


def test_uint8_input_and_output_match_float(sample_rgb):
    """compress(uint8) == compress(float); decompress into a uint8 HWC image == to_uint8(decompress())."""
    m = tiny_model("mbt2018-mean")
    rgb = np.ascontiguousarray(sample_rgb[:150, :230])
    u8 = torch.from_numpy(rgb).permute(2, 0, 1).unsqueeze(0)
    for tile in (0, 64):
        with coding(m, tile):
            enc = m.compress(to_tensor(rgb, "cpu"))
            assert m.compress(u8).streams == enc.streams
            out = torch.empty(1, 150, 230, 3, dtype=torch.uint8)
            m.decompress(enc.streams, (150, 230), enc.checksum, out=out.permute(0, 3, 1, 2))
        assert np.array_equal(out[0].numpy(), to_uint8(m.decompress(enc.streams, (150, 230), enc.checksum)))


def test_codec_tile_sizes_agree(tiny_weights, sample_rgb):
    """Files do not depend on the encoder's tile size in practice (y changes only by float rounding),
    and any decoder tile size decodes any file to within one grey level (in practice: exactly)."""
    rgb = sample_rgb  # 600 x 400: 10 x 7 tiles of 64
    data = Codec.from_weights(tiny_weights, tile=0).encode(rgb)
    tiled_data = Codec.from_weights(tiny_weights, tile=64).encode(rgb)
    assert len(tiled_data) == pytest.approx(len(data), rel=1e-3)
    whole = decode(data, weights=tiny_weights, tile=0)[0]
    for tile in (64, 128, 1024):
        got = decode(data, weights=tiny_weights, tile=tile)[0]
        assert got.shape == whole.shape and np.abs(got.astype(int) - whole).max() <= 1
    assert decode(tiled_data, weights=tiny_weights, tile=192)[0].shape == rgb.shape
    with pytest.raises(LicodecError, match="multiple of 64"):
        Codec.from_weights(tiny_weights, tile=100)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "licodec.cli", *map(str, args)], capture_output=True, text=True)


def test_cli_tile(tmp_path, sample_path, tiny_weights):
    from PIL import Image

    r = _cli("compress", sample_path, "-o", tmp_path / "a.lic", "--weights", tiny_weights, "--tile", "128")
    assert r.returncode == 0, r.stderr
    for tile in ("0", "64"):
        r = _cli("decompress", tmp_path / "a.lic", "-o", tmp_path / f"{tile}.png", "--weights", tiny_weights,
                 "--tile", tile)
        assert r.returncode == 0, r.stderr
    a, b = (np.asarray(Image.open(tmp_path / f"{t}.png")).astype(int) for t in ("0", "64"))
    assert a.shape == (400, 600, 3) and np.abs(a - b).max() <= 1
    r = _cli("compress", sample_path, "-o", tmp_path / "b.lic", "--weights", tiny_weights, "--tile", "100")
    assert r.returncode == 2 and "multiple of 64" in r.stderr and not (tmp_path / "b.lic").exists()


# peak RSS of one encode + decode of a WxH photo-like image with the shipped default model, in a
# fresh process (as `licodec bench` measures it): the peak mark is reset after loading
_MEMORY_CHILD = textwrap.dedent("""
    import json, sys, torch
    from licodec.codec import Codec, decode
    from licodec.evaluation.bench import _proc_status_kib, bench_input
    tile, w, h = map(int, sys.argv[1:4])
    torch.set_num_threads(1)
    codec = Codec.pretrained(tile=tile)
    rgb = bench_input(None, (w, h))
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = _proc_status_kib("VmRSS")
    rgb_hat, _ = decode(codec.encode(rgb), tile=tile)
    assert rgb_hat.shape == rgb.shape
    print(json.dumps({"coding_mib": (_proc_status_kib("VmHWM") - before) / 1024}))
""")


def _coding_mib(tile: int, w: int, h: int) -> float:
    r = subprocess.run([sys.executable, "-c", _MEMORY_CHILD, str(tile), str(w), str(h)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])["coding_mib"]


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs /proc/self/clear_refs")
def test_large_image_peak_memory_is_bounded():
    """3000x2000 with the default tile: far less than untiled (measured: see benchmarks/results/large.md)."""
    tiled_mib = _coding_mib(1024, 3000, 2000)
    untiled_mib = _coding_mib(0, 3000, 2000)
    assert tiled_mib < 700 < untiled_mib, (tiled_mib, untiled_mib)


def test_tiled_transforms_report_their_progress():
    from licodec.progress import reporting

    model = tiny_model("mbt2018-mean")
    seen = []
    with torch.no_grad(), coding(model, 64), reporting(lambda *a: seen.append(a)):
        model.analysis(torch.rand(1, 3, 128, 192), None)
    assert [s for s in seen if s[0] == "analysis"] == [("analysis", i, 6) for i in range(7)]
