"""End to end: learned model (random init, two qualities) + JPEG + WebP on two tiny images."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import tiny_model
from licodec.cli import main
from licodec.evaluation.run import EvalOptions, evaluate
from licodec.weights import save_weights


@pytest.fixture(scope="module")
def images(tmp_path_factory, sample_rgb):
    d = tmp_path_factory.mktemp("imgs")
    Image.fromarray(sample_rgb[:176, :192]).save(d / "a.png")
    Image.fromarray(sample_rgb[200:372, 300:480]).save(d / "b.png")
    (d / "notes.txt").write_text("not an image")
    return d


@pytest.fixture(scope="module")
def weights(tiny_weights, tmp_path_factory):
    q5 = tmp_path_factory.mktemp("w5") / "tiny-q5.safetensors"
    save_weights(tiny_model("mbt2018-mean", seed=1), q5, quality=5, lmbda=0.025)
    return [tiny_weights, q5]


def test_eval_end_to_end(images, weights, tmp_path):
    out = tmp_path / "report"
    res = evaluate(EvalOptions(images, out, weights=weights, codecs=["jpeg", "webp"], keep_streams=True,
                               per_image=True, progress=False))
    for name in ("results.json", "summary.md", "rd_psnr.png", "rd_msssim.png", "report.html"):
        assert (out / name).stat().st_size > 0, name
    saved = json.loads((out / "results.json").read_text())
    assert saved["anchor"] == "jpeg" and set(saved["curves"]) == {"mbt2018-mean-custom", "jpeg", "webp"}
    n_settings = 2 + len(saved["curves"]["jpeg"]["points"]) + len(saved["curves"]["webp"]["points"])
    assert len(saved["rows"]) == 2 * n_settings == len(res["rows"])
    for row in saved["rows"]:
        # the rate is the size of the real file, which is still on disk (--keep-streams)
        learned = row["codec"] == "mbt2018-mean-custom"
        suffix = {"jpeg": ".jpg", "webp": ".webp"}.get(row["codec"], ".lic")
        f = out / "streams" / row["codec"] / f"{row['image'][:-4]}-{row['param']:g}{suffix}"
        assert f.stat().st_size == row["bytes"]
        assert row["bpp"] == pytest.approx(8 * row["bytes"] / (row["width"] * row["height"]))
        assert (row["bpp_est"] is not None) == learned
        assert row["psnr"] > 0 and 0 < row["ms_ssim"] <= 1 and row["enc_s"] > 0 and row["dec_s"] > 0
    jpeg = saved["curves"]["jpeg"]["points"]
    assert [p["bpp"] for p in jpeg] == sorted(p["bpp"] for p in jpeg)
    mean_bpp = np.mean([r["bpp"] for r in saved["rows"] if r["codec"] == "jpeg" and r["param"] == jpeg[0]["param"]])
    assert jpeg[0]["bpp"] == pytest.approx(mean_bpp)
    assert saved["bd_rate"]["psnr"]["jpeg"] == 0 and saved["bd_rate"]["psnr"]["webp"] < 0
    assert set(saved["bd_rate_per_image"]["psnr"]) == {"a.png", "b.png"}
    summary = (out / "summary.md").read_text()
    assert "BD-rate against JPEG" in summary and "Per image" in summary
    html = (out / "report.html").read_text()
    assert "rd_psnr.png" in html and "crops/original.png" in html and "crops/webp.png" in html
    assert Image.open(out / "rd_psnr.png").size[0] > 500
    assert Image.open(out / "crops" / "webp.png").size == (176, 176)
    assert Image.open(out / "per_image" / "psnr-01.png").size[0] > 500  # both images, every curve
    assert "per_image/psnr-01.png" in html and "per_image/psnr-01.png" in summary


def test_missing_codec_is_skipped_with_a_notice(images, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # as if imageio-ffmpeg were not installed
    res = evaluate(EvalOptions(images, tmp_path / "r", codecs=["jpeg", "hevc", "vvc"], progress=False))
    assert set(res["curves"]) == {"jpeg"} and set(res["skipped"]) == {"hevc", "vvc"}
    assert res["skipped"]["hevc"].startswith("HEVC") and "imageio-ffmpeg" in res["skipped"]["hevc"]
    err = capsys.readouterr().err
    assert "licodec: notice: skipping HEVC" in err and "licodec: notice: skipping VVC" in err
    assert "Skipped" in (tmp_path / "r" / "summary.md").read_text()


def test_cli_eval_and_clean_errors(images, tmp_path, capsys, monkeypatch):
    for optional in ("imageio_ffmpeg", "imagecodecs"):  # as in CI: errors stay one line despite skipped codecs
        monkeypatch.setitem(sys.modules, optional, None)
    monkeypatch.setattr("licodec.weights._shipped", lambda: ())  # as if no weights were shipped
    out = tmp_path / "cli"
    assert main(["eval", str(images), "--codecs", "jpeg", "-o", str(out), "--no-progress"]) == 0
    assert "JPEG (4:2:0) **(anchor)**" in capsys.readouterr().out
    cases = [
        (["eval", str(images), "--codecs", "jpeg", "-o", str(out)], "already holds a report"),
        (["eval", str(images), "--codecs", "jpeg,gif", "-o", str(tmp_path / "x")], "unknown codec 'gif'"),
        (["eval", str(tmp_path / "nowhere"), "-o", str(tmp_path / "x")], "no such directory"),
        (["eval", str(images), "--codecs", "none", "-o", str(tmp_path / "x")], "nothing to evaluate"),
        (["eval", str(images), "--codecs", "jpeg", "--anchor", "vvc", "-o", str(tmp_path / "x")], "--anchor"),
        (["eval", str(images), "-m", "no-such-model", "-o", str(tmp_path / "x")], "unknown model"),
        (["eval", str(images), "-m", "lee2019-ctx", "-o", str(tmp_path / "x")], "no shipped weights"),
    ]
    empty = tmp_path / "empty"
    empty.mkdir()
    cases.append((["eval", str(empty), "-o", str(tmp_path / "x")], "no images found"))
    for argv, expect in cases:
        assert main(argv) == 1, argv
        err = capsys.readouterr().err
        assert err.startswith("licodec: error:") and expect in err and err.count("\n") == 1, err


def test_core_imports_no_eval_dependency():
    code = ("import sys, licodec.cli; licodec.cli.build_parser(); "
            "print([m for m in ('matplotlib', 'scipy', 'pytorch_msssim', 'imagecodecs', 'imageio_ffmpeg') "
            "if m in sys.modules])")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stdout + r.stderr
