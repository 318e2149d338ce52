"""`licodec eval --from REPORT_DIR/results.json` (issue 16, item 8): the report rendered again from
results.json alone, with another anchor, and the per-image RD curves. Small fake results (no
codec runs), so these tests are fast."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from licodec.cli import main
from licodec.evaluation import report, run
from licodec.evaluation.curves import summarize
from licodec.evaluation.quality import ms_ssim_db

# key: (label, kind, settings, rate scale): a curve of scale s needs s times the bits of scale 1
CURVES = {"tiny": ("tiny model", "learned", [1.0, 2.0, 3.0, 4.0], 0.6),
          "jpeg": ("JPEG (4:2:0)", "classical", [30.0, 50.0, 70.0, 90.0], 1.0),
          "webp": ("WebP", "classical", [40.0, 60.0, 75.0, 95.0], 0.8)}
MACHINE = {"cpu": "Test CPU", "cores": 2, "memory_gib": 4.0, "platform": "Linux", "python": "3.12",
           "torch": "2.x", "torch_threads": 2, "licodec": "0", "device": "cpu", "load_average_1min": 0.5}


def fake_results(names=("a.png", "b.png")) -> dict:
    rows = []
    for j, name in enumerate(names):
        for key, (_, kind, params, scale) in CURVES.items():
            for i, p in enumerate(params):
                bpp = scale * 0.15 * 2 ** i * (1 + 0.1 * j)
                rel = bpp / scale
                ms = 1 - 0.05 / (1 + 8 * rel)
                rows.append({"image": name, "width": 64, "height": 48, "codec": key, "param": p,
                             "bytes": round(bpp * 64 * 48 / 8), "bpp": bpp,
                             "bpp_est": 0.95 * bpp if kind == "learned" else None,
                             "psnr": 30 + 10 * math.log10(rel) - j, "ms_ssim": ms, "ms_ssim_db": ms_ssim_db(ms),
                             "enc_s": 0.01, "dec_s": 0.005})
    curves = {}
    for key, (label, kind, params, _) in CURVES.items():
        files = {f"{q:g}": f"w{q:g}.safetensors" for q in params}
        info = ({"model": "mbt2018-mean", "weights": "custom", "files": files} if kind == "learned"
                else {"settings": {"timing": "in process"}, "sweep": params})
        curves[key] = {"label": label, "kind": kind, "param": "quality", **info, "points": summarize(rows, key)}
    return {"format": "licodec-eval-1", "created": "2026-01-01T00:00:00+00:00", "command": ["licodec", "eval"],
            "machine": MACHINE, "seconds": 1.0, "folder": "imgs",
            "images": [{"name": n, "width": 64, "height": 48} for n in names], "anchor": "jpeg", "curves": curves,
            "skipped": {}, "bd_rate": {}, "rows": rows,
            "crop": {"image": names[0], "target_bpp": 0.4, "box": [48, 48],
                     "picked": {k: {"param": CURVES[k][2][1], "bpp": 0.3, "psnr": 30.0} for k in CURVES}}}


def make_report(folder, crops=True, **kw):
    """A report as `evaluate` writes it (same `render` path), from fake results."""
    folder.mkdir(parents=True, exist_ok=True)
    res = fake_results(**kw)
    tile = np.zeros((48, 48, 3), np.uint8)
    run.render(res, folder, "jpeg", False, tile if crops else None, {k: tile for k in CURVES} if crops else None)
    return folder / "results.json"


@pytest.fixture
def no_codec(monkeypatch):
    """Any attempt to find images or run a codec fails the test."""
    def boom(*a, **k):
        raise AssertionError("a codec was run")

    for name in ("find_images", "classical_curves", "learned_curves", "_code_one", "evaluate"):
        monkeypatch.setattr(run, name, boom)


def test_from_rerenders_with_another_anchor(tmp_path, no_codec, capsys):
    path = make_report(tmp_path / "rep")
    before = json.loads(path.read_text())
    assert before["anchor"] == "jpeg" and before["bd_rate"]["psnr"]["webp"] == pytest.approx(-20, abs=0.5)

    assert main(["eval", "--from", str(path), "--anchor", "webp", "--per-image"]) == 0  # in place, no --force
    out = capsys.readouterr().out
    assert "WebP **(anchor)**" in out and "re-rendered" in out
    after = json.loads(path.read_text())
    points = {k: c["points"] for k, c in before["curves"].items()}
    for m in run.METRICS:
        expect = run.bd_rates(points, "webp", m)
        assert after["bd_rate"][m] == pytest.approx(expect)
        assert after["bd_rate"][m] != before["bd_rate"][m]
    assert after["bd_rate"]["psnr"]["jpeg"] == pytest.approx(25, abs=0.6)  # 1 / 0.8 of the bits
    for img in ("a.png", "b.png"):  # per image: the same function on that image's rows
        pts = {k: summarize(before["rows"], k, img) for k in CURVES}
        assert after["bd_rate_per_image"]["psnr"][img] == pytest.approx(run.bd_rates(pts, "webp", "psnr"))
    # nothing measured is changed: only the anchor, the BD-rates and the re-render record
    changed = {k for k in after if after[k] != before.get(k)}
    assert changed == {"anchor", "bd_rate", "bd_rate_per_image", "rerendered"}
    assert after["rerendered"]["previous_anchor"] == "jpeg"
    summary = (path.parent / "summary.md").read_text()
    assert "BD-rate against WebP" in summary and "Per image: BD-rate" in summary and "re-rendered" in summary
    page = (path.parent / "report.html").read_text()
    assert "crops/original.png" in page and "crops/webp.png" in page  # the crops already there are kept

    other = tmp_path / "other"  # another folder: everything, the crops copied over
    assert main(["eval", "--from", str(path.parent), "-o", str(other), "--anchor", "tiny"]) == 0
    again = json.loads((other / "results.json").read_text())
    assert again["anchor"] == "tiny" and again["rows"] == before["rows"]
    assert "bd_rate_per_image" in again  # kept, against the new anchor
    assert (other / "crops" / "webp.png").is_file() and "crops/webp.png" in (other / "report.html").read_text()
    for name in run.REPORT_FILES:
        assert (other / name).stat().st_size > 0
    capsys.readouterr()
    assert main(["eval", "--from", str(path), "-o", str(other)]) == 1  # a report there: --force
    assert "already holds a report" in capsys.readouterr().err
    assert main(["eval", "--from", str(path), "-o", str(other), "--force"]) == 0


def test_from_without_crop_images_says_so(tmp_path, no_codec):
    path = make_report(tmp_path / "rep", crops=False)
    assert main(["eval", "--from", str(path)]) == 0
    page = (path.parent / "report.html").read_text()
    assert "crops/" not in page and "Not available" in page


def test_per_image_plots(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "PER_IMAGE_PANELS", 2)  # 3 images: two figures
    path = make_report(tmp_path / "rep", names=("a.png", "b.png", "c.png"))
    d = path.parent
    assert Image.open(d / "per_image" / "psnr-01.png").size[0] > 400
    assert (d / "per_image" / "psnr-02.png").stat().st_size > 0
    summary, page = (d / "summary.md").read_text(), (d / "report.html").read_text()
    assert "[per_image/psnr-01.png](per_image/psnr-01.png): a.png … b.png (2 images)" in summary
    assert "[per_image/psnr-02.png](per_image/psnr-02.png): c.png" in summary
    assert "<img src='per_image/psnr-01.png'" in page and "<img src='per_image/psnr-02.png'" in page
    monkeypatch.setattr(report, "PER_IMAGE_PANELS", 24)  # re-rendered: one figure, the stale one removed
    run.render(json.loads(path.read_text()), d, "jpeg")
    assert sorted(p.name for p in (d / "per_image").iterdir()) == ["psnr-01.png"]


def cli(*args):
    return subprocess.run([sys.executable, "-m", "licodec.cli", "eval", *map(str, args)],
                          capture_output=True, text=True)


def test_bad_from_inputs_are_one_line_errors(tmp_path, capsys):
    good = make_report(tmp_path / "rep", crops=False)
    text = good.read_text()
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{not json")
    wrong = tmp_path / "wrong" / "results.json"
    wrong.parent.mkdir()
    res = json.loads(good.read_text())
    del res["rows"][0]["psnr"]
    wrong.write_text(json.dumps(res))
    for what in ([1, 2], {"format": "other"}):
        (tmp_path / f"{type(what).__name__}.json").write_text(json.dumps(what))
    # through the console script: one line, exit 1, no traceback
    for args, expect in [
        (["--from", bad_json], "not valid JSON"),
        (["--from", wrong], "malformed 'rows'"),
    ]:
        r = cli(*args)
        assert r.returncode == 1 and r.stderr.startswith("licodec: error:") and r.stderr.count("\n") == 1, r.stderr
        assert expect in r.stderr and str(args[1]) in r.stderr and "Traceback" not in r.stderr, r.stderr
    # the same handler in process (faster) for the rest
    for argv, expect in [
        (["eval", "--from", str(tmp_path / "nowhere.json")], f"{tmp_path / 'nowhere.json'}: no such file"),
        (["eval", "--from", str(good), "--anchor", "vvc"],
         "--anchor 'vvc' is not among the evaluated curves (tiny, jpeg, webp)"),
        (["eval"], "not neither"),
        (["eval", str(tmp_path), "--from", str(good)], "not both"),
        (["eval", "--from", str(tmp_path / "list.json")], "a JSON list, not an object"),
        (["eval", "--from", str(tmp_path / "dict.json")], "format 'other'"),
        (["eval", "--from", str(good), "--codecs", "jpeg"], "--codecs chooses what to measure"),
    ]:
        assert main(argv) == 1, argv
        err = capsys.readouterr().err
        assert err.startswith("licodec: error:") and expect in err and err.count("\n") == 1, err
    assert good.read_text() == text  # a failed re-render writes nothing
