"""The outputs of ``licodec eval``, all written into one folder:

- ``results.json``   every per-image row, every curve (points and settings), BD-rates, machine
- ``summary.md``     BD-rate table, speed table, the points of every curve (+ per image)
- ``rd_psnr.png``    rate-distortion curves, PSNR
- ``rd_msssim.png``  rate-distortion curves, MS-SSIM in dB
- ``per_image/psnr-NN.png``  PSNR-vs-bpp of every curve on each image, up to 24 images a figure
- ``report.html``    the plots, the tables and side-by-side crops (original vs each codec near
                     the same bpp) to look at; ``crops/`` holds the crops as PNG

`write_report` needs only the results dict, except for the crops (pixels): without them it links
the crop images already in the folder, if any (re-rendering with ``licodec eval --from``).
"""

from __future__ import annotations

import html
import re
import json
import math
from pathlib import Path

import numpy as np

from ..weights import atomic_write
from .curves import summarize
from .machine import machine_line

Table = tuple[list[str], list[list[str]]]
PLOTS = {"psnr": ("rd_psnr.png", "PSNR (RGB) [dB]"), "ms_ssim_db": ("rd_msssim.png", "MS-SSIM [dB]")}


PER_IMAGE_PANELS = 24  # images per per-image figure (4 columns, at most 6 rows)
PER_IMAGE_COLUMNS = 4


def write_report(results: dict, out_dir: Path, original_crop: np.ndarray | None = None,
                 crops: dict[str, np.ndarray] | None = None, per_image: bool = False) -> None:
    """Every report file from ``results``. The crops are written from ``original_crop`` and
    ``crops`` (pixels) when given; else the crop images already in ``out_dir/crops`` are linked."""
    out_dir = Path(out_dir)
    if original_crop is not None:
        crop_files = _save_crops(out_dir, original_crop, crops or {})
    else:
        crop_files = existing_crops(out_dir, results)
    _write_text(out_dir / "results.json", json.dumps(jsonable(results), indent=1, allow_nan=False) + "\n")
    _write_text(out_dir / "summary.md", summary_markdown(results, per_image))
    for metric, (name, ylabel) in PLOTS.items():
        plot_rd(results, metric, ylabel, out_dir / name)
    plot_per_image(results, out_dir)
    _write_text(out_dir / "report.html", report_html(results, crop_files))


def existing_crops(out_dir: Path, results: dict) -> dict[str, str]:
    """{key: "crops/KEY.png"} of the crop images of ``results`` already in ``out_dir`` (none
    without the original's)."""
    if not (Path(out_dir) / "crops" / "original.png").is_file():
        return {}
    keys = ["original", *results["crop"].get("picked", {})]
    return {k: f"crops/{k}.png" for k in keys if (Path(out_dir) / "crops" / f"{k}.png").is_file()}


def jsonable(x):
    """NaN and infinities become null (JSON has neither); numpy scalars become Python numbers."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


# ----------------------------------------------------------------------------------------------
# tables


def _pct(v: float | None) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v:+.1f} %"


def _num(v: float | None, fmt: str) -> str:
    return "–" if v is None or not math.isfinite(v) else format(v, fmt)


def bd_table(results: dict) -> Table:
    anchor = results["anchor"]
    head = ["codec", "points", "bpp range", "BD-rate (PSNR)", "BD-rate (MS-SSIM dB)"]
    rows = []
    for key, c in results["curves"].items():
        pts = c["points"]
        label = c["label"] + (" **(anchor)**" if key == anchor else "")
        rng = f"{pts[0]['bpp']:.3f}–{pts[-1]['bpp']:.3f}" if pts else "–"
        rows.append([label, str(len(pts)), rng, _pct(results["bd_rate"]["psnr"].get(key)),
                     _pct(results["bd_rate"]["ms_ssim_db"].get(key))])
    return head, rows


def speed_table(results: dict) -> Table:
    head = ["codec", "encode (ms / image)", "decode (ms / image)", "measured"]
    rows = []
    for key, c in results["curves"].items():
        rs = [r for r in results["rows"] if r["codec"] == key]
        enc = 1000 * float(np.mean([r["enc_s"] for r in rs]))
        dec = 1000 * float(np.mean([r["dec_s"] for r in rs]))
        if c["kind"] == "learned":
            how = f"licodec on {results['machine']['device']}, networks + entropy coding"
        else:
            how = (c.get("settings") or {}).get("timing", "in process")
        rows.append([c["label"], f"{enc:.1f}", f"{dec:.1f}", how])
    return head, rows


def points_table(curve: dict) -> Table:
    learned = curve["kind"] == "learned"
    head = [curve["param"], "bpp"] + (["est. bpp"] if learned else []) + ["PSNR", "MS-SSIM", "MS-SSIM dB"]
    rows = []
    for q in curve["points"]:
        row = [f"{q['param']:g}", f"{q['bpp']:.4f}"]
        if learned:
            row.append(_num(q["bpp_est"], ".4f"))
        row += [_num(q["psnr"], ".2f"), _num(q["ms_ssim"], ".4f"), _num(q["ms_ssim_db"], ".2f")]
        rows.append(row)
    return head, rows


def per_image_table(results: dict, metric: str) -> Table:
    keys = list(results["curves"])
    head = ["image"] + [results["curves"][k]["label"] for k in keys]
    per = results["bd_rate_per_image"][metric]
    return head, [[name] + [_pct(per[name].get(k)) for k in keys] for name in per]


def markdown(table: Table) -> str:
    head, rows = table
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _dataset_line(results: dict) -> str:
    imgs = results["images"]
    px = np.mean([i["width"] * i["height"] for i in imgs]) if imgs else 0.0
    line = (f"{len(imgs)} images from `{results['folder']}` (mean {px / 1e6:.2f} Mpixel); "
            f"{results['created']}; {results['seconds']:g} s in all")
    again = results.get("rerendered")
    if again:
        line += f"; report re-rendered from results.json on {again['created']} (no codec run again)"
    return line


def summary_markdown(results: dict, per_image: bool = False) -> str:
    anchor = results["curves"][results["anchor"]]["label"]
    out = [
        "# licodec evaluation\n",
        _dataset_line(results) + ".\n",
        f"Machine: {machine_line(results['machine'])}.\n",
        f"## BD-rate against {anchor}\n",
        "Negative: fewer bits than the anchor for the same quality. Rates are the sizes of the coded "
        "files; each curve is the mean bpp and mean quality over the images at each setting; BD-rate "
        "interpolates log-rate with a monotone cubic (PCHIP) over the overlapping quality range "
        "(see docs/evaluation.md).\n",
        markdown(bd_table(results)),
        "## Speed\n",
        "Mean wall-clock time per image over all settings, on the machine above.\n",
        markdown(speed_table(results)),
    ]
    if results["skipped"]:
        out.append("## Skipped\n")
        out += [f"- `{k}`: {why}" for k, why in results["skipped"].items()]
        out.append("")
    out.append("## Rate–distortion points (mean over images)\n")
    for c in results["curves"].values():
        if c["kind"] == "learned":
            detail = f"{c['weights']} weights: " + ", ".join(f"q{q}: `{f}`" for q, f in c["files"].items())
        else:
            detail = "; ".join(f"{k}: {v}" for k, v in (c.get("settings") or {}).items())
        out += [f"### {c['label']}\n", f"{detail}\n" if detail else "", markdown(points_table(c))]
    pages = per_image_pages(results)
    if pages:
        out.append("## Rate–distortion per image (PSNR)\n")
        out.append("Every curve on each image (its own settings, not the mean over the images):\n")
        out += [f"- [{name}]({name}): {_image_range(names)}" for name, names in pages]
        out.append("")
    if per_image and "bd_rate_per_image" in results:
        out.append(f"## Per image: BD-rate against {anchor}\n")
        out += ["### PSNR\n", markdown(per_image_table(results, "psnr")),
                "### MS-SSIM (dB)\n", markdown(per_image_table(results, "ms_ssim_db"))]
    return "\n".join(out)


# ----------------------------------------------------------------------------------------------
# plots


def plot_rd(results: dict, metric: str, ylabel: str, path: Path) -> None:
    """One line per curve (learned: solid, classical: dashed), mean over images per setting."""
    from matplotlib.figure import Figure  # the object API: no pyplot, no global backend change

    fig = Figure(figsize=(7.5, 5.2), dpi=120)
    ax = fig.add_subplot()
    drawn = 0
    for key, c in results["curves"].items():
        pts = [q for q in c["points"] if q[metric] is not None and math.isfinite(q[metric])]
        if not pts:
            continue
        learned = c["kind"] == "learned"
        label = c["label"] + (" (anchor)" if key == results["anchor"] else "")
        ax.plot([q["bpp"] for q in pts], [q[metric] for q in pts], "-" if learned else "--",
                marker="o" if learned else ".", lw=2 if learned else 1.3, ms=5, label=label)
        drawn += 1
    if not drawn:
        ax.text(0.5, 0.5, "no data (MS-SSIM needs images of at least 161 pixels a side)",
                ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("bits per pixel (coded file size)")
    ax.set_ylabel(ylabel)
    ax.set_title(f"{Path(results['folder']).name}: {len(results['images'])} images, mean per setting")
    ax.grid(True, alpha=0.35)
    if drawn:
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))


def per_image_pages(results: dict) -> list[tuple[str, list[str]]]:
    """[(file name in the report folder, the images it shows)]: PER_IMAGE_PANELS images a figure."""
    names = [i["name"] for i in results["images"]]
    n = PER_IMAGE_PANELS
    return [(f"per_image/psnr-{k + 1:02d}.png", names[i:i + n]) for k, i in enumerate(range(0, len(names), n))]


def _image_range(names: list[str]) -> str:
    if len(names) == 1:
        return names[0]
    return f"{names[0]} … {names[-1]} ({len(names)} images)"


def _finite(v) -> bool:
    return v is not None and math.isfinite(v)


def plot_per_image(results: dict, out_dir: Path) -> list[str]:
    """The per-image PSNR-vs-bpp figures of `per_image_pages` (stale ones removed); their names."""
    from matplotlib.figure import Figure

    out_dir = Path(out_dir)
    pages = per_image_pages(results)
    folder = out_dir / "per_image"
    if pages:
        folder.mkdir(exist_ok=True)
    for name, images in pages:
        cols = min(PER_IMAGE_COLUMNS, len(images))
        rows = math.ceil(len(images) / cols)
        fig = Figure(figsize=(3.3 * cols, 2.7 * rows + 0.6), dpi=100)
        axes = fig.subplots(rows, cols, squeeze=False).ravel()
        handles: dict[str, object] = {}
        for ax, image in zip(axes, images):
            for i, (key, c) in enumerate(results["curves"].items()):
                pts = [q for q in summarize(results["rows"], key, image) if _finite(q["psnr"])]
                if not pts:
                    continue
                learned = c["kind"] == "learned"
                (line,) = ax.plot([q["bpp"] for q in pts], [q["psnr"] for q in pts], "-" if learned else "--",
                                  color=f"C{i % 10}", marker="o" if learned else ".", lw=1.6 if learned else 1.0,
                                  ms=3)
                handles.setdefault(c["label"], line)
            ax.set_title(image if len(image) <= 40 else image[:37] + "…", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(True, alpha=0.35)
        for ax in axes[len(images):]:
            ax.set_visible(False)
        for ax in axes[::cols]:
            ax.set_ylabel("PSNR [dB]", fontsize=7)
        for i, ax in enumerate(axes[:len(images)]):
            if i + cols >= len(images):  # the lowest panel of its column
                ax.set_xlabel("bpp", fontsize=7)
        # one colour per curve in every panel (C0, C1, ... in the order of the curves)
        fig.legend(list(handles.values()), list(handles), loc="upper center", ncol=min(len(handles), 4),
                   fontsize=7, frameon=False)
        fig.tight_layout(rect=(0, 0, 1, 1 - 0.5 / (2.7 * rows + 0.6)))
        atomic_write(out_dir / name, lambda tmp, f=fig: f.savefig(tmp, format="png"))
    wanted = {out_dir / name for name, _ in pages}
    for old in folder.glob("psnr-*.png") if folder.is_dir() else []:
        if old not in wanted:
            old.unlink()
    return [name for name, _ in pages]


# ----------------------------------------------------------------------------------------------
# HTML


def _save_crops(out_dir: Path, original: np.ndarray | None, crops: dict[str, np.ndarray]) -> dict[str, str]:
    from PIL import Image

    if original is None:
        return {}
    d = out_dir / "crops"
    d.mkdir(exist_ok=True)
    files = {}
    for key, arr in [("original", original), *crops.items()]:
        name = f"crops/{key}.png"
        atomic_write(out_dir / name, lambda tmp, a=arr: Image.fromarray(a, "RGB").save(tmp, format="PNG"))
        files[key] = name
    return files


def _inline(s: str) -> str:
    """Markdown text as HTML: escaped, with `code` spans as <code> (not raw backticks)."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(str(s)))


def _html_table(table: Table) -> str:
    head, rows = table

    def cell(s: str) -> str:  # the markdown tables mark the anchor with **…**
        return _inline(s).replace("**", "")

    out = ["<table><tr>" + "".join(f"<th>{cell(h)}</th>" for h in head) + "</tr>"]
    out += ["<tr>" + "".join(f"<td>{cell(c)}</td>" for c in r) + "</tr>" for r in rows]
    return "\n".join(out) + "</table>"


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; max-width: 1400px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; } td, th { border: 1px solid #ccc; padding: 4px 8px; text-align: right; }
td:first-child, th:first-child { text-align: left; }
.plots img { width: 48%; min-width: 420px; }
.crops { display: flex; flex-wrap: wrap; gap: 12px; }
.crops figure { margin: 0; } .crops img { image-rendering: pixelated; border: 1px solid #999; }
figcaption { font-size: 0.85em; max-width: 512px; }
.note { color: #555; font-size: 0.9em; }
.per-image img { max-width: 100%; } .per-image figcaption { max-width: none; }
"""


def report_html(results: dict, crop_files: dict[str, str]) -> str:
    e = html.escape
    anchor = results["curves"][results["anchor"]]["label"]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>licodec evaluation</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>licodec evaluation</h1>",
        f"<p>{_inline(_dataset_line(results))}.<br>Machine: {_inline(machine_line(results['machine']))}.</p>",
        "<p class='note'>Data: <a href='results.json'>results.json</a> (every image, every setting) · "
        "<a href='summary.md'>summary.md</a></p>",
        "<h2>Rate–distortion</h2><div class='plots'>"
        "<img src='rd_psnr.png' alt='RD curves, PSNR'> <img src='rd_msssim.png' alt='RD curves, MS-SSIM'></div>",
        f"<h2>BD-rate against {e(anchor)}</h2>",
        "<p class='note'>Negative: fewer bits than the anchor for the same quality.</p>",
        _html_table(bd_table(results)),
        "<h2>Speed</h2>", _html_table(speed_table(results)),
    ]
    if results["skipped"]:
        parts.append("<h2>Skipped</h2><ul>" + "".join(
            f"<li><code>{e(k)}</code>: {_inline(v)}</li>" for k, v in results["skipped"].items()) + "</ul>")
    if crop_files:
        crop = results["crop"]
        side = crop["box"][0] if crop["box"] else 0
        scale = 2 if side <= 256 else 1
        parts.append(f"<h2>Crops of {e(crop['image'])}</h2>")
        parts.append(f"<p class='note'>The central {side}×{side} pixels, shown at {scale}× without smoothing. "
                     f"Each codec at its setting closest to {crop['target_bpp']:g} bpp on this image; the captions give "
                     "that setting and the bpp and PSNR of the whole image.</p>")
        parts.append("<div class='crops'>")
        items = [("original", "original", None)] + [
            (k, results["curves"][k]["label"], crop["picked"][k]) for k in crop_files if k != "original"]
        for key, label, pick in items:
            cap = e(label)
            if pick:
                cap += (f"<br>{e(results['curves'][key]['param'])} {pick['param']:g}: "
                        f"{pick['bpp']:.3f} bpp, {_num(pick['psnr'], '.2f')} dB")
            parts.append(f"<figure><img src='{e(crop_files[key])}' width='{side * scale}' height='{side * scale}' "
                         f"alt='{e(label)}'><figcaption>{cap}</figcaption></figure>")
        parts.append("</div>")
    elif results["crop"].get("box"):
        parts.append(f"<h2>Crops of {e(results['crop']['image'])}</h2>")
        parts.append("<p class='note'>Not available: this report was rendered from results.json, which holds "
                     "no pixels, and no crop images were in its folder. Run <code>licodec eval</code> on the "
                     "images again for them.</p>")
    pages = per_image_pages(results)
    if pages:
        parts.append("<h2>Rate–distortion per image (PSNR)</h2>")
        parts.append("<p class='note'>Every curve on each image, at its own settings.</p>")
        parts += [f"<figure class='per-image'><img src='{e(name)}' alt='per-image RD curves, PSNR'>"
                  f"<figcaption>{e(_image_range(names))}</figcaption></figure>" for name, names in pages]
    parts.append("<h2>Points</h2>")
    for c in results["curves"].values():
        parts += [f"<h3>{_inline(c['label'])}</h3>", _html_table(points_table(c))]
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _write_text(path: Path, text: str) -> None:
    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    atomic_write(path, write)
