"""Rate–distortion points of one codec curve from the per-image rows of an evaluation."""

from __future__ import annotations

import numpy as np

from .quality import ms_ssim_db


def summarize(rows: list[dict], key: str, image: str | None = None) -> list[dict]:
    """Mean over images per setting (papers' convention), sorted by bpp. MS-SSIM in dB is taken of
    the mean MS-SSIM; it is None if any image has no MS-SSIM (smaller than 161 pixels)."""
    by_param: dict[float, list[dict]] = {}
    for r in rows:
        if r["codec"] == key and (image is None or r["image"] == image):
            by_param.setdefault(r["param"], []).append(r)
    points = []
    for p, rs in by_param.items():
        def mean(k):
            vals = [r[k] for r in rs]
            return None if any(v is None for v in vals) else float(np.mean(vals))

        ms = mean("ms_ssim")
        points.append({"param": p, "images": len(rs), "bpp": mean("bpp"), "bpp_est": mean("bpp_est"),
                       "psnr": mean("psnr"), "ms_ssim": ms, "ms_ssim_db": ms_ssim_db(ms),
                       "enc_s": mean("enc_s"), "dec_s": mean("dec_s")})
    return sorted(points, key=lambda q: q["bpp"])
