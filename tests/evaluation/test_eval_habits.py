"""`licodec eval` through the console script (issue 16, item 8, in part): --ignore-alpha, a notice
for JPEG sources, the printed report path."""

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image


def run(*args):
    return subprocess.run([sys.executable, "-m", "licodec.cli", *map(str, args)], capture_output=True, text=True)


@pytest.fixture
def folder(tmp_path, sample_rgb):
    d = tmp_path / "imgs"
    d.mkdir()
    rgba = np.dstack([sample_rgb[:128, :128], np.full((128, 128), 128, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(d / "transparent.png")
    Image.fromarray(sample_rgb[128:256, :128]).save(d / "photo.jpg", quality=95)
    return d


def test_eval_ignore_alpha_jpeg_notice_and_report_path(folder, tmp_path, tiny_weights):
    r = run("eval", folder, "--codecs", "jpeg", "--weights", tiny_weights, "-o", tmp_path / "rep", "--no-progress")
    assert r.returncode == 1 and "--ignore-alpha" in r.stderr and "Traceback" not in r.stderr, r.stderr
    r = run("eval", folder, "--codecs", "jpeg", "--weights", tiny_weights, "-o", f"{tmp_path / 'rep'}/", "--no-progress",
            "--ignore-alpha")
    assert r.returncode == 0, r.stderr
    assert "1 of 2 source images are JPEG files" in r.stderr
    assert (tmp_path / "rep" / "report.html").exists()
    line = [x for x in r.stdout.splitlines() if x.startswith("report: ")][0]
    assert "//" not in line and str(tmp_path / "rep" / "report.html") in line
    page = (tmp_path / "rep" / "report.html").read_text(encoding="utf-8")
    assert "`" not in page  # Markdown code spans are <code>, not raw backticks
