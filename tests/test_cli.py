"""End to end through the console script, as a user runs it."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "licodec.cli", *map(str, args)], capture_output=True, text=True, cwd=cwd)


def assert_clean_error(r, code=1):
    assert r.returncode == code, r.stderr
    assert "Traceback" not in r.stderr
    if code == 1:
        assert r.stderr.startswith("licodec: error:") and r.stderr.count("\n") == 1, r.stderr


@pytest.fixture
def work(tmp_path, sample_path):
    shutil.copy(sample_path, tmp_path / "photo.png")
    Image.open(sample_path).convert("L").crop((0, 0, 65, 33)).save(tmp_path / "gray.png")
    return tmp_path


def test_compress_info_decompress(work, tiny_weights):
    r = run("compress", work / "photo.png", "--weights", tiny_weights)
    assert r.returncode == 0, r.stderr
    assert "bpp" in r.stdout and (work / "photo.lic").exists()
    info = json.loads(run("info", work / "photo.lic", "--json").stdout)
    assert info["model"] == "mbt2018-mean" and (info["width"], info["height"]) == (600, 400)
    assert info["bytes"] == (work / "photo.lic").stat().st_size
    assert info["format_version"] == 4
    r = run("decompress", work / "photo.lic", "--weights", tiny_weights)
    assert r.returncode == 0, r.stderr
    r2 = run("decompress", work / "photo.lic", "--weights", tiny_weights, "--deterministic", "--threads", "1",
             "-o", work / "photo.det.png")
    assert r2.returncode == 0, r2.stderr
    out = Image.open(work / "photo.decoded.png")
    assert out.size == (600, 400) and out.mode == "RGB"


def test_grayscale_roundtrip_stays_grayscale(work, tiny_weights):
    assert run("compress", work / "gray.png", "--weights", tiny_weights).returncode == 0
    assert run("decompress", work / "gray.lic", "-o", work / "g.png", "--weights", tiny_weights).returncode == 0
    assert Image.open(work / "g.png").mode == "L"


def test_icc_profile_and_exif_travel_through_the_file_unless_stripped(work, tiny_weights):
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    ex = Image.Exif()
    ex[0x010F] = "licodec-test-camera"
    Image.open(work / "photo.png").save(work / "p3.jpg", quality=95, icc_profile=icc, exif=ex)
    r = run("compress", work / "p3.jpg", "--weights", tiny_weights)
    assert r.returncode == 0 and "bytes of metadata (ICC profile, Exif)" in r.stdout, r.stdout + r.stderr
    info = json.loads(run("info", work / "p3.lic", "--json").stdout)
    assert info["metadata"]["icc"] == len(icc) and info["metadata"]["exif"] > 0
    assert run("decompress", work / "p3.lic", "--weights", tiny_weights).returncode == 0
    out = Image.open(work / "p3.decoded.png")
    assert out.info["icc_profile"] == icc and out.getexif()[0x010F] == "licodec-test-camera"
    r = run("decompress", work / "p3.lic", "--weights", tiny_weights, "-o", work / "p3.ppm")
    assert r.returncode == 0 and "not written (PPM cannot carry them)" in r.stdout, r.stdout
    r = run("compress", work / "p3.jpg", "--weights", tiny_weights, "--strip", "-o", work / "s.lic")
    assert r.returncode == 0 and "metadata" not in r.stdout
    assert json.loads(run("info", work / "s.lic", "--json").stdout)["metadata"] == {}
    assert (work / "s.lic").stat().st_size < (work / "p3.lic").stat().st_size - len(icc)
    assert run("decompress", work / "s.lic", "--weights", tiny_weights).returncode == 0
    assert "icc_profile" not in Image.open(work / "s.decoded.png").info


def test_never_overwrites_and_force(work, tiny_weights):
    (work / "photo.lic").write_bytes(b"precious")
    r = run("compress", work / "photo.png", "--weights", tiny_weights)
    assert_clean_error(r)
    assert (work / "photo.lic").read_bytes() == b"precious"
    assert run("compress", work / "photo.png", "--weights", tiny_weights, "--force").returncode == 0
    assert (work / "photo.lic").read_bytes()[:4] == b"\x89LIC"


@pytest.mark.parametrize("mutate", ["truncate", "flip", "foreign", "empty"])
def test_bad_lic_files_clean_error_and_no_output(work, tiny_weights, mutate):
    assert run("compress", work / "photo.png", "--weights", tiny_weights).returncode == 0
    data = (work / "photo.lic").read_bytes()
    bad = {"truncate": data[: len(data) // 2], "flip": data[:40] + bytes([data[40] ^ 1]) + data[41:],
           "foreign": (work / "photo.png").read_bytes(), "empty": b""}[mutate]
    (work / "bad.lic").write_bytes(bad)
    r = run("decompress", work / "bad.lic", "--weights", tiny_weights)
    assert_clean_error(r)
    assert not (work / "bad.decoded.png").exists()
    assert [p.name for p in work.iterdir() if p.name.startswith(".")] == []  # no temp files left


def test_file_from_other_weights(work, tiny_weights, tmp_path):
    from conftest import tiny_model
    from licodec.weights import save_weights

    other = tmp_path / "other.safetensors"
    save_weights(tiny_model("mbt2018-mean", seed=5), other, quality=3)
    assert run("compress", work / "photo.png", "--weights", tiny_weights).returncode == 0
    r = run("decompress", work / "photo.lic", "--weights", other)
    assert_clean_error(r)
    assert "weights" in r.stderr


def test_bad_inputs(work, tiny_weights):
    (work / "junk.png").write_bytes(b"hello")
    assert_clean_error(run("compress", work / "junk.png", "--weights", tiny_weights))
    assert_clean_error(run("compress", work / "missing.png", "--weights", tiny_weights))
    assert_clean_error(run("compress", work / "photo.png", "-m", "no-such-model"))
    r = run("compress", work / "photo.png", "-m", "lee2019-ctx", "--weights", tiny_weights)  # an mbt2018-mean file
    assert_clean_error(r)
    assert "mbt2018-mean weights, not lee2019-ctx" in r.stderr
    assert_clean_error(run("decompress", work / "missing.lic"))
    assert_clean_error(run("compress", work / "photo.png", "--weights", work / "junk.png"))
    arr = np.zeros((8, 8, 4), dtype=np.uint8)
    Image.fromarray(arr).save(work / "alpha.png")
    r = run("compress", work / "alpha.png", "--weights", tiny_weights)
    assert_clean_error(r)
    assert "alpha" in r.stderr


def test_usage_errors_exit_2(work):
    assert_clean_error(run("compress"), code=2)
    assert_clean_error(run("frobnicate"), code=2)
    assert_clean_error(run("compress", work / "photo.png", "-q", "high"), code=2)


def test_models_lists_registry():
    r = run("models")
    assert r.returncode == 0
    assert "mbt2018-mean" in r.stdout and "bmshj2018-hyperprior" in r.stdout


def test_masks_command(work, tmp_path):
    from conftest import tiny_model
    from licodec.weights import save_weights

    w = tmp_path / "rm.safetensors"
    save_weights(tiny_model("lee2019-ctx", random_mask=True), w, quality=3)
    (work / "imgs").mkdir()
    shutil.copy(work / "gray.png", work / "imgs" / "a.png")
    r = run("masks", w, work / "imgs", "--only", "serial,checkerboard", "--json")
    assert r.returncode == 0, r.stderr
    rows = {row["mask"]: row for row in json.loads(r.stdout)["masks"]}
    assert set(rows) == {"none", "serial", "checkerboard"} and rows["none"]["rate_saving"] == 0
    assert_clean_error(run("masks", w, work / "nothing-here"))


def test_outputs_get_normal_permissions(work, tiny_weights):
    import os
    import stat

    assert run("compress", work / "photo.png", "--weights", tiny_weights).returncode == 0
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((work / "photo.lic").stat().st_mode) == 0o666 & ~umask


def test_decode_budget(work, tiny_weights):
    assert run("compress", work / "gray.png", "--weights", tiny_weights).returncode == 0
    r = run("decompress", work / "gray.lic", "--weights", tiny_weights, "--max-pixels", 2000)
    assert_clean_error(r)
    assert "decode limit" in r.stderr and not (work / "gray.decoded.png").exists()
    r = run("decompress", work / "gray.lic", "--weights", tiny_weights, "--max-pixels", 65 * 33)
    assert r.returncode == 0, r.stderr
