#!/usr/bin/env python
"""Rate-distortion evaluation on the validation photos; writes benchmarks/results/eval/.

Runs ``licodec eval data/val`` with every shipped model and every classical codec available
(full presets), and writes results.json, summary.md (with the machine it ran on), rd_psnr.png,
rd_msssim.png, report.html and crops/ into benchmarks/results/eval/, replacing the previous
run, ready to commit. Extra arguments are passed on to ``licodec eval``, e.g.::

    python benchmarks/run_eval.py                      # the committed benchmark
    python benchmarks/run_eval.py --threads 4          # limit threads on a shared machine
    python benchmarks/run_eval.py --weights runs/q*/mbt2018-mean-q*.safetensors

It needs the [eval] extra (pip install -e ".[eval]") and the validation photos in data/val.
"""

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

if __name__ == "__main__":
    from licodec.cli import main

    os.chdir(REPO)  # relative paths in the report
    sys.exit(main(["eval", "data/val", "-o", "benchmarks/results/eval", "--force", "--per-image", *sys.argv[1:]]))
