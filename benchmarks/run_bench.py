#!/usr/bin/env python
"""Latency, parameters, FLOPs and peak memory of every registered model at 768x512; writes
benchmarks/results/bench.md (with the machine it ran on) and bench.json.

Runs ``licodec bench`` on the 768x512 validation crop (data/val768/mate-Dune.png): shipped
weights where installed, else randomly initialised models (marked "random init" in the table).
Extra arguments are passed on, e.g.::

    python benchmarks/run_bench.py                     # CPU, torch's default threads
    python benchmarks/run_bench.py --device cuda
    python benchmarks/run_bench.py --threads 1 --repeat 10
"""

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

if __name__ == "__main__":
    from licodec.cli import main

    os.chdir(REPO)
    (REPO / "benchmarks" / "results").mkdir(parents=True, exist_ok=True)
    sys.exit(main(["bench", "--size", "768x512", "--image", "data/val768/mate-Dune.png",
                   "-o", "benchmarks/results/bench.md", "--force", *sys.argv[1:]]))
