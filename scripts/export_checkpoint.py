#!/usr/bin/env python
"""Export the weights of a training run's checkpoint (a run stopped early, or one still running).

    python scripts/export_checkpoint.py runs/cca-vr/checkpoint.safetensors out.safetensors [--half]
"""

import argparse
from pathlib import Path

from licodec.train import export_checkpoint

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint")
    p.add_argument("output")
    p.add_argument("--half", action="store_true", help="store float16 weights")
    a = p.parse_args()
    print(f"wrote {export_checkpoint(Path(a.checkpoint), Path(a.output), a.half)}")
