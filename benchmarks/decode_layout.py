#!/usr/bin/env python3
"""Decode time of a 768×512 photo with g_s on channels_last tensors (the codec's decoder) versus the
standard NCHW layout (what it ran before, and what ``deterministic`` decoding keeps); writes
``benchmarks/results/decode_layout.md`` + ``.json``.

Times `licodec.codec.decode` of one encoded file (median of ``--repeat`` after a warm-up) with 1 and
2 torch threads, for the shipped default and the campaign's checkpoint (exported to a temporary
weight file), and counts the 8-bit values on which the two layouts' decodes differ.

    python benchmarks/decode_layout.py --pause PID   # PID: a training process, stopped meanwhile
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from pausing import paused  # noqa: E402  (benchmarks/pausing.py, beside this script)

from licodec.evaluation.machine import machine_info, machine_line  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
IMAGE = REPO / "data" / "val768" / "mate-Dune.png"
CAMPAIGN = REPO / "campaign" / "checkpoint.safetensors"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pause", type=int, default=0, help="PID of a process to stop while timing (SIGSTOP/SIGCONT)")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--threads", default="1,2")
    p.add_argument("--out", default=str(RESULTS / "decode_layout"))
    a = p.parse_args()

    import numpy as np
    import torch

    import licodec.codec.runner as runner
    from licodec.codec import DEFAULT_MODEL, DEFAULT_QUALITY, Codec, decode
    from licodec.evaluation.bench import BenchSpec, bench_input
    from licodec.train import export_checkpoint
    from licodec.weights import find_weights

    rgb = bench_input(str(IMAGE) if IMAGE.exists() else None, (768, 512))
    tmp = Path(tempfile.mkdtemp())
    specs = [BenchSpec(f"{DEFAULT_MODEL} q{DEFAULT_QUALITY:g} (shipped default)",
                       Path(find_weights(DEFAULT_MODEL, DEFAULT_QUALITY)), "shipped", DEFAULT_QUALITY)]
    if CAMPAIGN.exists():
        specs.append(BenchSpec("campaign checkpoint q4 (mbt2018-mean N=128 M=192)",
                               export_checkpoint(CAMPAIGN, tmp / "campaign.safetensors"), "custom", 4))
    fast = runner._channels_last
    layouts = {"standard (NCHW)": runner._standard, "channels_last": fast}
    rows = []
    try:
        with paused(a.pause):
            for spec in specs:
                data = Codec.from_weights(str(spec.path), "cpu", spec.quality).encode(rgb)
                for threads in map(int, a.threads.split(",")):
                    torch.set_num_threads(threads)
                    pixels = {}
                    for layout, f in layouts.items():
                        runner._channels_last = f  # the layout the codec's decoder gives g_s
                        decode(data, "cpu", weights=str(spec.path))  # warm-up
                        times = []
                        for _ in range(a.repeat):
                            t0 = time.perf_counter()
                            pixels[layout] = decode(data, "cpu", weights=str(spec.path))[0]
                            times.append(time.perf_counter() - t0)
                        rows.append({"weights": spec.label, "threads": threads, "layout": layout,
                                     "decode_s": statistics.median(times), "bpp": 8 * len(data) / (768 * 512)})
                    a8, b8 = (np.asarray(v, dtype=np.int16) for v in pixels.values())
                    rows[-1].update(pixels_differing=int((a8 != b8).sum()), max_difference=int(np.abs(a8 - b8).max()),
                                    pixels=int(a8.size))
    finally:
        runner._channels_last = fast
    out = {"machine": machine_line(machine_info()), "torch": torch.__version__, "image": IMAGE.name, "size": "768x512",
           "repeat": a.repeat, "rows": rows}
    Path(a.out).with_suffix(".json").write_text(json.dumps(out, indent=1) + "\n")
    lines = [
        "# Decode layout: g_s on channels_last vs standard NCHW tensors (`benchmarks/decode_layout.py`)", "",
        f"{out['machine']}; torch {out['torch']}; {IMAGE.name} at 768×512; median of {a.repeat} "
        "decodes of one file (`licodec.codec.decode`, real weights) after one warm-up; times in ms.", "",
        "| weights | threads | decode ms, standard | decode ms, channels_last | speed-up | 8-bit values differing | max difference |",
        "|---|---|---|---|---|---|---|",
    ]
    for std, cl in zip(rows[::2], rows[1::2]):
        lines.append(f"| {std['weights']} | {std['threads']} | {1000 * std['decode_s']:.0f} | {1000 * cl['decode_s']:.0f} "
                     f"| {std['decode_s'] / cl['decode_s']:.2f}× | {cl['pixels_differing']} of {cl['pixels']} "
                     f"| {cl['max_difference']} |")
    Path(a.out).with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
