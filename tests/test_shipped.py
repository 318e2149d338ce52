"""Every shipped weight file on a real photograph (the bundled sample)."""

import pytest
import torch

from conftest import image_tensor
from licodec.codec import DEFAULT_MODEL, Codec, decode
from licodec.metrics import bpp_from_likelihoods, psnr
from licodec.weights import find_weights, shipped_files, shipped_variable_rate, shipped_weights

VR_QUALITIES = [1.0, 2.0, 3.0, 3.5, 4.0, 5.0, 6.0, 7.0, 8.0]


def files_to_test() -> dict[str, tuple[str, list[float]]]:
    """{file name: (path, qualities to test)} of every shipped file: fixed-rate ones at their
    quality, variable-rate ones (superseded generations too) at the integer qualities and 3.5."""
    return {w.path.name: (w.path, [w.quality] if w.quality is not None else [q for q in VR_QUALITIES if q <= w.levels])
            for w in shipped_files()}


FILES = files_to_test()
CASES = [(name, q) for name, (_, qs) in FILES.items() for q in qs]


def default_qualities() -> list[float]:
    vr = shipped_variable_rate().get(DEFAULT_MODEL)
    return [q for q in VR_QUALITIES if q <= vr[0]] if vr else sorted(shipped_weights().get(DEFAULT_MODEL, {}))


def test_default_model_ships_at_least_four_rate_points():
    assert len(default_qualities()) >= 4, f"shipped {DEFAULT_MODEL}: {FILES}"


@pytest.mark.parametrize(("name", "quality"), CASES)
def test_real_size_matches_estimated_rate(name, quality, sample_rgb):
    codec = Codec.from_weights(FILES[name][0], quality=quality)
    x = image_tensor(sample_rgb)
    with torch.no_grad():
        out = codec.model(x, codec.quality)
    est_bits = bpp_from_likelihoods(out["likelihoods"], 1).item()
    enc = codec.model.compress(x, codec.quality)
    real_bits = 8 * sum(len(s) for s in enc.streams)
    assert abs(real_bits - est_bits) / est_bits < 0.01, (real_bits, est_bits)


@pytest.mark.parametrize("model", sorted(set(shipped_weights()) | set(shipped_variable_rate())))
def test_higher_quality_gives_more_bytes_and_higher_psnr(model, sample_rgb):
    """Through the public path (`Codec.pretrained`): the qualities a user gets for ``model``."""
    vr = shipped_variable_rate().get(model)
    qualities = [q for q in VR_QUALITIES if q <= vr[0]] if vr else sorted(shipped_weights()[model])
    sizes, psnrs = [], []
    for q in qualities:
        data = Codec.pretrained(model, q).encode(sample_rgb)
        rgb, header = decode(data)
        assert header.quality == q and rgb.shape == sample_rgb.shape
        sizes.append(len(data))
        psnrs.append(psnr(torch.tensor(rgb, dtype=torch.float32), torch.tensor(sample_rgb, dtype=torch.float32), 255))
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes)
    assert psnrs == sorted(psnrs)


def test_every_shipped_file_is_reachable_for_decoding():
    """Files made with any shipped weights (older fixed-rate ones included) find them by fingerprint."""
    from licodec.codec import codec_for
    from licodec.format import unpack

    for name, (path, qs) in FILES.items():
        data = Codec.from_weights(path, quality=qs[0]).encode(torch.zeros(8, 8, 3, dtype=torch.uint8).numpy())
        assert codec_for(unpack(data)).info["path"] == str(path), name
    for model, qs in shipped_weights().items():
        for q in qs:
            assert find_weights(model, q).exists()


def test_a_file_made_with_retired_weights_names_the_release_that_decodes_it(monkeypatch, tmp_path, capsys):
    """Once a retired weight file is gone from the package, decoding a file made with it is a one-line
    error naming the release that ships it (here: the file hidden from the shipped list)."""
    from licodec import cli, weights
    from licodec.weights import WeightsError

    retired = [w for w in shipped_files() if w.fingerprint in weights.RETIRED]
    assert retired, "RETIRED names no shipped file: after the removal, test with a .lic made before it instead"
    w = retired[0]
    data = Codec.from_weights(w.path, quality=w.quality).encode(torch.zeros(8, 8, 3, dtype=torch.uint8).numpy())
    kept = tuple(s for s in weights._shipped() if s.fingerprint != w.fingerprint)
    monkeypatch.setattr(weights, "_shipped", lambda: kept)
    release = weights.RETIRED[w.fingerprint]
    with pytest.raises(WeightsError, match=rf"retired from this licodec: decode it with licodec {release}"):
        decode(data)
    src, out = tmp_path / "old.lic", tmp_path / "old.png"
    src.write_bytes(data)
    assert cli.main(["decompress", str(src), "-o", str(out)]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"licodec {release}" in err and not out.exists(), err
    assert decode(data, weights=w.path)[0].shape == (8, 8, 3)  # --weights still decodes it


def test_bytes_and_latents_do_not_depend_on_the_thread_count(sample_rgb):
    """With trained weights some means and scales sit near a quantization boundary, where the float
    reduction order (set by the thread count) decides the symbol: encode with 1, 2 and 4 threads
    and decode each file with 1 and 4 (the latent checksum must hold)."""
    n = torch.get_num_threads()
    try:
        for q in default_qualities():
            codec = Codec.pretrained(DEFAULT_MODEL, q)
            files = []
            for t in (1, 2, 4):
                torch.set_num_threads(t)
                files.append(codec.encode(sample_rgb))
            assert files[0] == files[1] == files[2], q
            for t in (1, 4):
                torch.set_num_threads(t)
                decode(files[0])
    finally:
        torch.set_num_threads(n)


def _latents(codec, data: bytes) -> dict:
    from licodec.format import unpack

    return codec.latents(unpack(data))


def test_files_decode_whatever_order_the_machine_sums_in(sample_rgb):
    """Format versions 2 and 3: the decoder's entropy parameters are exact, so a machine that sums
    the convolutions in another order (here: input channels reversed, as a GPU or another CPU kernel
    might) decodes every file to the same latents. Its encoder writes the same symbols except where
    the float analysis transform's output lies within rounding error of a quantization boundary
    (README: "another machine's g_a may round a latent the other way"): seen here, one y symbol of
    107 520 at one quality on an AMD EPYC, none on an Intel Xeon."""
    from licodec.format import VERSION, unpack
    from testkit import reordered_sums

    for q in default_qualities():
        codec = Codec.pretrained(DEFAULT_MODEL, q)
        v2, v1 = codec.encode(sample_rgb), codec.encode(sample_rgb, version=1)
        assert unpack(v2).version == VERSION >= 2 and unpack(v1).version == 1
        assert abs(len(v2) - len(v1)) < 0.01 * len(v1), q  # exact parameters cost nothing measurable
        with reordered_sums() as count:
            decode(v2)  # raises if a single latent differed (checksum)
            again = codec.encode(sample_rgb)
        assert count["calls"] > 0
        decode(again)
        a, b = _latents(codec, v2), _latents(codec, again)
        differ = sum(int((a[k] != b[k]).sum()) for k in a)
        assert differ <= 1e-4 * sum(t.numel() for t in a.values()), (q, differ)  # near-ties only ...
        assert all(float((a[k] - b[k]).abs().max()) <= 1 for k in a), q  # ... each one step to the other side


def test_float_parameters_would_not_survive_another_summation_order(sample_rgb):
    """The control for the test above: version 1 files (float32 entropy parameters, still decoded
    as they were made) fail under reordered sums for some quality — what version 2 removes."""
    from licodec.errors import FormatError
    from testkit import reordered_sums

    files = [Codec.pretrained(DEFAULT_MODEL, q).encode(sample_rgb, version=1) for q in default_qualities()]
    failed = 0
    with reordered_sums():
        for data in files:
            try:
                decode(data)
            except FormatError as e:
                assert "cannot decode" in str(e)
                failed += 1
    assert failed >= 1
    for data in files:  # and every one decodes as usual
        decode(data)


def test_deterministic_decoding_gives_the_same_pixels_whatever_the_thread_count(sample_rgb):
    import numpy as np

    n = torch.get_num_threads()
    try:
        for q in (1.0, 8.0):
            data = Codec.pretrained(DEFAULT_MODEL, q).encode(sample_rgb)
            images = []
            for t in (1, 4):
                torch.set_num_threads(t)
                images.append(decode(data, deterministic=True)[0])
                assert torch.get_num_threads() == t  # restored afterwards
            assert np.array_equal(*images), q
    finally:
        torch.set_num_threads(n)
