#!/usr/bin/env python
"""Determinism of the shipped weights across thread counts, summation orders and devices.

For each validation photo and quality: encode with 1, 2 and 4 torch threads (the .lic bytes must
be identical) and decode the same file with 1, 2 and 4 threads (the latents are checked by their
checksum; the decoded 8-bit pixels are compared with the 1-thread decode). Then decode it with
every convolution summing its input channels in reverse order (`testkit.reordered_sums`:
what another CPU kernel or a GPU does to float sums), once as the format version 2 file it is and
once re-encoded as version 1 (float32 entropy parameters), the control. With a CUDA device
(``--device cuda``, default: when one is available), also encode on the GPU and decode across
devices (CPU file on the GPU, GPU file on the CPU).

Writes benchmarks/results/determinism.md and .json.

    python benchmarks/run_determinism.py [--images data/val] [-m MODEL] [-q 1 3 5] [--device cuda]
"""

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # testkit.reordered_sums (not installed)
THREADS = (1, 2, 4)


def main(argv=None) -> int:
    import numpy as np
    import torch

    from licodec.codec import DEFAULT_MODEL, Codec, decode
    from licodec.data import list_images
    from licodec.errors import LicodecError
    from licodec.evaluation.machine import machine_info, machine_line
    from licodec.imageio import read_image
    from testkit import reordered_sums

    def decodes(data, device="cpu") -> bool:
        try:
            decode(data, device=device)
        except LicodecError:
            return False
        return True

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", default=str(REPO / "data" / "val"))
    p.add_argument("-m", "--model", default=DEFAULT_MODEL)
    p.add_argument("-q", "--quality", type=float, nargs="+", default=[1.0, 3.0, 5.0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else None,
                   help="also encode and decode on this GPU (default: cuda when available)")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "determinism"))
    a = p.parse_args(argv)
    rows, machine = [], machine_info("cpu")
    gpu = machine_info(a.device) if a.device else None
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
            v1 = codec.encode(rgb, version=1)
            with reordered_sums():
                reordered = {"v2": decodes(files[0]), "v1": decodes(v1)}
            rows.append({
                "image": path.name, "quality": q, "bytes": len(files[0]), "bytes_v1": len(v1),
                "bytes_identical": all(f == files[0] for f in files),
                "pixels_differing": [int((d > 0).sum()) for d in diff],
                "max_difference": [int(d.max()) for d in diff], "values": int(images[0].size),
                "reordered_sums_decode_v2": reordered["v2"], "reordered_sums_decode_v1": reordered["v1"],
            })
            if a.device:
                gpu_file = Codec.pretrained(a.model, q, device=a.device).encode(rgb)
                rows[-1].update({
                    "gpu_bytes_equal_cpu": gpu_file == files[0],
                    "cpu_file_decodes_on_gpu": decodes(files[0], a.device),
                    "gpu_file_decodes_on_cpu": decodes(gpu_file),
                })
            print(rows[-1], flush=True)
    out = Path(a.out)
    summary = {"model": a.model, "threads": THREADS, "machine": machine, "gpu": gpu, "rows": rows}
    out.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
    lines = [
        f"# Determinism across thread counts and summation orders: {a.model}\n",
        f"Machine: {machine_line(machine)}. Encoded and decoded with {', '.join(map(str, THREADS))} torch "
        "threads; pixels compared with the 1-thread decode of the same file. \"Reordered sums\": the file "
        "decoded with every convolution summing its input channels in reverse order (what another CPU "
        "kernel or a GPU does to float sums), as the format version 2 file it is (exact entropy "
        "parameters) and re-encoded as version 1 (float32 entropy parameters, the control).\n",
        "| image | q | bytes | .lic identical | 8-bit values differing (2, 4 threads) | max difference "
        "| reordered sums: v2 decodes | reordered sums: v1 decodes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    yes = lambda b, good=True: "yes" if b else ("**no**" if good else "no")  # noqa: E731
    for r in rows:
        lines.append(f"| {r['image']} | {r['quality']:g} | {r['bytes']} | {yes(r['bytes_identical'])} "
                     f"| {' / '.join(map(str, r['pixels_differing']))} of {r['values']} "
                     f"| {' / '.join(map(str, r['max_difference']))} "
                     f"| {yes(r['reordered_sums_decode_v2'])} | {yes(r['reordered_sums_decode_v1'], False)} |")
    n = len(rows)
    lines.append(f"\nReordered sums: {sum(r['reordered_sums_decode_v2'] for r in rows)} of {n} version 2 files "
                 f"decode, {sum(r['reordered_sums_decode_v1'] for r in rows)} of {n} version 1 files. Size of the "
                 f"version 2 files against version 1 (exact vs float32 entropy parameters): "
                 f"{100 * (sum(r['bytes'] for r in rows) / sum(r['bytes_v1'] for r in rows) - 1):+.3f} % in all.")
    if gpu:
        lines += [f"\nGPU: {machine_line(gpu)}.\n", "| image | q | GPU bytes = CPU bytes | CPU file on GPU | GPU file on CPU |",
                  "|---|---|---|---|---|"]
        lines += [f"| {r['image']} | {r['quality']:g} | {yes(r['gpu_bytes_equal_cpu'], False)} "
                  f"| {yes(r['cpu_file_decodes_on_gpu'])} | {yes(r['gpu_file_decodes_on_cpu'])} |" for r in rows]
    else:
        lines.append("\nNo GPU on this machine: CPU/GPU decoding not measured.")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out}.md")
    ok = all(r["bytes_identical"] and r["reordered_sums_decode_v2"] and r.get("cpu_file_decodes_on_gpu", True)
             and r.get("gpu_file_decodes_on_cpu", True) for r in rows)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
