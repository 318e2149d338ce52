#!/usr/bin/env python
"""Determinism of the shipped weights across thread counts: for each validation photo and quality,
encode with 1, 2 and 4 torch threads (the .lic bytes must be identical) and decode the same file
with 1, 2 and 4 threads (the latents are checked by their checksum; the decoded 8-bit pixels are
compared with the 1-thread decode).

Writes benchmarks/results/determinism.md and .json.

    python benchmarks/run_determinism.py [--images data/val] [-m MODEL] [-q 1 3 5]
"""

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
THREADS = (1, 2, 4)


def main(argv=None) -> int:
    import numpy as np
    import torch

    from licodec.codec import DEFAULT_MODEL, Codec, decode
    from licodec.data import list_images
    from licodec.evaluation.machine import machine_info, machine_line
    from licodec.imageio import read_image

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", default=str(REPO / "data" / "val"))
    p.add_argument("-m", "--model", default=DEFAULT_MODEL)
    p.add_argument("-q", "--quality", type=float, nargs="+", default=[1.0, 3.0, 5.0])
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "determinism"))
    a = p.parse_args(argv)
    rows, machine = [], machine_info("cpu")
    for path in list_images(a.images):
        rgb = read_image(path).rgb
        for q in a.quality:
            codec = Codec.pretrained(a.model, q)
            files, images = [], []
            for t in THREADS:
                torch.set_num_threads(t)
                files.append(codec.encode(rgb))
            for t in THREADS:
                torch.set_num_threads(t)
                images.append(decode(files[0])[0].astype(np.int16))
            diff = [np.abs(im - images[0]) for im in images[1:]]
            rows.append({
                "image": path.name, "quality": q, "bytes": len(files[0]),
                "bytes_identical": all(f == files[0] for f in files),
                "pixels_differing": [int((d > 0).sum()) for d in diff],
                "max_difference": [int(d.max()) for d in diff], "values": int(images[0].size),
            })
            print(rows[-1], flush=True)
    out = Path(a.out)
    summary = {"model": a.model, "threads": THREADS, "machine": machine, "rows": rows}
    out.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
    lines = [
        f"# Determinism across thread counts: {a.model}\n",
        f"Machine: {machine_line(machine)}. Encoded and decoded with {', '.join(map(str, THREADS))} torch "
        "threads; pixels compared with the 1-thread decode of the same file.\n",
        "| image | q | bytes | .lic identical | 8-bit values differing (2, 4 threads) | max difference |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['image']} | {r['quality']:g} | {r['bytes']} | {'yes' if r['bytes_identical'] else '**no**'} "
                     f"| {' / '.join(map(str, r['pixels_differing']))} of {r['values']} "
                     f"| {' / '.join(map(str, r['max_difference']))} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out}.md")
    return 0 if all(r["bytes_identical"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
