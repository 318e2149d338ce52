#!/usr/bin/env python
"""Serial (Lee 2019) vs checkerboard (He 2021) decoding on the same backbone: decode time of a
768x512 image on this machine and their ratio (He 2021 reports >40x on a GPU), for files of format
version 2 (exact entropy parameters, what licodec writes) and version 1 (float32 entropy
parameters: the networks alone, as the papers time them).

Writes benchmarks/results/context_speed.md and .json.

    python benchmarks/run_context_speed.py                       # random-init N=128, M=192 models
    python benchmarks/run_context_speed.py --weights SERIAL.safetensors CHECKERBOARD.safetensors
    python benchmarks/run_context_speed.py --device cuda

Random-init models decode the same network work as trained ones, but their latents are nearly all
zero, which makes their entropy coding cheaper than a trained model's: the table says which
weights were used.
"""

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", nargs=2, metavar=("SERIAL", "CHECKERBOARD"))
    p.add_argument("--config", default='{"N": 128, "M": 192}', help="config of the random-init models")
    p.add_argument("--image", default=str(REPO / "data" / "val768" / "mate-Dune.png"))
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("-o", "--output", default=str(REPO / "benchmarks" / "results" / "context_speed.md"))
    a = p.parse_args(argv)

    import torch

    from licodec.evaluation.bench import BenchSpec, bench_input, bench_one
    from licodec.evaluation.machine import machine_info, machine_line
    from licodec.models import create_model
    from licodec.weights import save_weights

    if a.threads:
        torch.set_num_threads(a.threads)
    image = a.image if Path(a.image).exists() else None
    rgb = bench_input(image, (768, 512))
    info = machine_info(a.device)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, name in enumerate(("lee2019-ctx", "he2021-checkerboard")):
            if a.weights:
                spec = BenchSpec(name, Path(a.weights[i]), "trained")
            else:
                torch.manual_seed(0)
                path = Path(tmp) / f"{name}.safetensors"
                save_weights(create_model(name, json.loads(a.config)).eval(), path, quality=0)
                spec = BenchSpec(name, path, "random init")
            for version in (2, 1):
                rows.append(bench_one(spec, rgb, a.device, a.repeat, warmup=1, version=version))
    lines = [
        "# Serial vs checkerboard decoding (768x512)", "",
        f"Machine: {machine_line(info)}. Median of {a.repeat} runs after 1 warm-up. Format version 2: the "
        "entropy parameters in exact arithmetic (`licodec.entropy.exact`), what licodec writes; version 1: "
        "in float32.", "",
        "| model | weights | format | params (M) | encode ms | decode ms (entropy coding) | bpp |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['model']} | {r['weights']} | v{r['format_version']} | {r['params'] / 1e6:.2f} | "
                     f"{1000 * r['encode_s']:.0f} | {1000 * r['decode_s']:.0f} ({1000 * r['decode_entropy_s']:.0f}) "
                     f"| {r['bpp']:.3f} |")
    ratios = {}
    for version in (2, 1):
        serial, checker = (r for r in rows if r["format_version"] == version)
        ratio = serial["decode_s"] / checker["decode_s"]
        net = (serial["decode_s"] - serial["decode_entropy_s"]) / (checker["decode_s"] - checker["decode_entropy_s"])
        ratios[version] = {"decode_ratio": ratio, "network_decode_ratio": net}
        lines.append(f"\nDecode-time ratio serial / checkerboard, format v{version}: **{ratio:.1f}x** "
                     f"(networks only, entropy coding excluded: {net:.1f}x).")
    lines.append("")
    text = "\n".join(lines)
    print(text)
    out = Path(a.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    out.with_suffix(".json").write_text(json.dumps(
        {"machine": info, "rows": rows, "ratios": ratios}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    os.chdir(REPO)
    sys.exit(main())
