#!/usr/bin/env python
"""Fuzz .lic decoding: mutated files from several tiny models must decode or fail cleanly.

Makes a tiny random-init model of every registered kind, two also variable-rate (milliseconds
per decode), encodes seed images of a few sizes (1x1, odd sizes, a grayscale one) with each, then
runs `licodec.fuzz.run_fuzz`: every case is decoded in process through
`licodec.codec.decode(data, weights=...)`, and 1% of them also through
`python -m licodec.cli decompress`. Writes benchmarks/results/fuzz.json and fuzz.md.

    python benchmarks/run_fuzz.py                      # 10,000 cases, seed 0
    python benchmarks/run_fuzz.py --cases 500 --seed 3 -o /tmp/fuzz.md
    python benchmarks/run_fuzz.py --case 1234          # rerun one case (same --seed), with traceback
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# variable-rate weights too (gain units: the header's quality drives the decoder), coded at q 3.5
VARIABLE_RATE = ("mbt2018-mean", "han2024-cca")
VR_QUALITY = 3.5
SIZES = [(1, 1), (3, 5), (17, 33), (64, 64), (65, 97), (96, 128)]  # (height, width)
GRAY_SIZE = (33, 47)


def variants() -> list[tuple[str, str, dict, bool]]:
    """(label, model name, config, variable rate) of every weight file the seeds are made with."""
    import dataclasses

    from licodec.registry import get_model_class
    from licodec.testing import TINY_CONFIGS as MODELS

    out = [(name, name, config, False) for name, config in MODELS.items()]
    for name in VARIABLE_RATE:
        if "rate_levels" in {f.name for f in dataclasses.fields(get_model_class(name).config_cls)}:
            out.append((f"{name} vr", name, {**MODELS[name], "rate_levels": 8}, True))
    return out


def make_seeds(folder: Path):
    """One weight file per variant and its seed files: [licodec.fuzz.Seed]."""
    from importlib import resources

    import numpy as np
    import torch
    from PIL import Image

    from licodec.codec import Codec
    from licodec.fuzz import Seed
    from licodec.registry import create_model
    from licodec.weights import save_weights

    photo = np.asarray(Image.open(str(resources.files("licodec") / "data" / "sample.png")).convert("RGB"))
    seeds = []
    for label, name, config, vr in variants():
        torch.manual_seed(0)
        model = create_model(name, config).eval()
        last = [m for m in model.g_a.modules() if isinstance(m, torch.nn.Conv2d)][-1]
        with torch.no_grad():
            last.weight.mul_(20)  # random-init latents are nearly all zero: make the y stream non-trivial
        path = folder / f"{label.replace(' ', '-')}.safetensors"
        save_weights(model, path, quality=None if vr else 3)
        codec = Codec.from_weights(path, quality=VR_QUALITY) if vr else Codec.from_weights(path)
        for i, (h, w) in enumerate(SIZES):
            rgb = np.ascontiguousarray(photo[37 * i : 37 * i + h, 51 * i : 51 * i + w])
            seeds.append(Seed(codec.encode(rgb), str(path), f"{label} {w}x{h}"))
        h, w = GRAY_SIZE
        gray = np.asarray(Image.fromarray(photo[:h, :w]).convert("L").convert("RGB"))
        seeds.append(Seed(codec.encode(gray, channels=1), str(path), f"{label} {w}x{h} gray"))
    return seeds


def source_state() -> dict:
    """The git commit of the licodec package that ran, and its modified tracked files (if any)."""
    import subprocess

    import licodec

    root = Path(licodec.__file__).resolve().parent

    def git(*args):
        r = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)
        return r.stdout.strip() if r.returncode == 0 else None

    modified = git("status", "--porcelain", "--untracked-files=no", ".")
    return {"commit": git("rev-parse", "HEAD"), "modified": modified.splitlines() if modified else []}


def markdown(s: dict, machine: str) -> str:
    from licodec.fuzz import Mutator

    o = s["outcomes"]
    lines = [
        "# Fuzzing .lic decoding", "",
        (f"{s['cases']:,} mutated `.lic` files (seed {s['seed']}) made from {len(s['seeds'])} valid files of "
        f"{len(s['weights'])} tiny random-init weight files ({', '.join(s['weights'])}; vr: variable-rate, "
        f"coded at quality {VR_QUALITY:g}), images "
        f"{', '.join(f'{w}x{h}' for h, w in SIZES)} and a {GRAY_SIZE[1]}x{GRAY_SIZE[0]} grayscale one. "
        f"Each case is decoded with `licodec.codec.decode(data, weights=...)`; {s['cli']['cases']} of them "
        "also with `python -m licodec.cli decompress` (exit status, one-line error, no file left behind). "
        f"The trailing CRC32 is recomputed in {100 * s['crc_fix']:.0f}% of the cases so that the mutation reaches "
        "the parser and the entropy decoder."), "",
        f"Machine: {machine}.", "",
        (f"Code: licodec at commit {(s['source']['commit'] or 'unknown')[:12]}"
         + (f" with uncommitted changes in {len(s['source']['modified'])} file(s)" if s["source"]["modified"] else "")
         + "."), "",
        (f"**{o['failure']} failures**, {o['clean_error']:,} clean errors, {o['decoded']:,} decoded. "
        f"Slowest case {1000 * s['slowest']['seconds']:.0f} ms ({s['slowest']['kind']}: {s['slowest']['op']}; "
        f"limit {s['time_limit_s']:g} s), mean {s['decode_ms_mean']:.1f} ms per case; largest peak-RSS growth "
        f"{s['max_rss_growth_mib']:g} MiB (limit {s['rss_limit_mib']:g} MiB); wall time {s['wall_seconds']:.0f} s."), "",
        "| mutation | clean error | decoded | failure |", "|---|---:|---:|---:|",
    ]
    for k, v in list(s["by_kind"].items()) + [("**all**", o)] + list(s["by_crc"].items()):
        lines.append(f"| {k} | {v['clean_error']:,} | {v['decoded']:,} | {v['failure']:,} |")
    lines += ["", ("header.*: one header field set to a boundary or nearby value (size_pair: height and width "
              "together); lengths_shift: the boundary between two streams moved, the file size unchanged; "
              "stream_edit: streams dropped, duplicated, merged, split, swapped, emptied, trimmed, padded or "
              "taken from another file, with a consistent stream table; payload: bytes inside the streams; "
              "havoc: 2-4 of these in a row; size_bomb: a valid container whose header claims a huge image "
              f"({', '.join(f'{w}x{h}' for h, w in Mutator.BOMB_SIZES)}) over empty, 4-byte or the original streams.")]
    lines += ["", "Clean errors by message (numbers and names blanked):", "",
              "| error | cases |", "|---|---:|"]
    for msg, n in list(s["clean_errors"].items())[:25]:
        lines.append(f"| {msg.replace('|', '/')} | {n:,} |")
    u = s["unprintable_messages"]
    if u["count"]:
        lines += ["", (f"{u['count']} clean error(s) carry control characters from the file in their message "
                  "(e.g. a model name with a newline or ESC), which a terminal shows as they are:"), ""]
        lines += [f"- case {e['index']} ({e['kind']}): `{e['message'][:150]}`" for e in u["examples"][:5]]
    if s["failures"]:
        lines += ["", "## Failures", "", ("Rerun one with `python benchmarks/run_fuzz.py --seed "
                  f"{s['seed']} --case INDEX`; the bytes are in fuzz.json."), "",
                  "| case | mutation | seed file | reason |", "|---|---|---|---|"]
        for f in s["failures"][:30]:
            lines.append(f"| {f['index']} | {f['kind']}: {f['op']} | {f['seed']} | {f['reason'].replace('|', '/')[:160]} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cli-share", type=float, default=0.01, help="share of the cases also run through the CLI")
    p.add_argument("--crc-fix", type=float, default=0.75, help="share of the cases with a recomputed file CRC")
    p.add_argument("--time-limit", type=float, default=5.0, help="seconds per case")
    p.add_argument("--rss-limit", type=float, default=512.0, help="MiB of peak-RSS growth per case")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--case", type=int, help="run only this case and print its bytes and outcome")
    p.add_argument("--save-failures", help="folder for the failing cases' .lic files")
    p.add_argument("-o", "--output", default=str(REPO / "benchmarks" / "results" / "fuzz.md"))
    a = p.parse_args(argv)

    import torch

    from licodec.evaluation.machine import machine_info, machine_line
    from licodec.fuzz import Mutator, check_cli, run_case, run_fuzz

    torch.set_num_threads(a.threads)
    with tempfile.TemporaryDirectory(prefix="licodec-fuzz-") as tmp:
        seeds = make_seeds(Path(tmp))
        if a.case is not None:
            case = Mutator([s.data for s in seeds], seed=a.seed, crc_fix=a.crc_fix).case(a.case)
            s = seeds[case.seed_index]
            print(f"case {a.case}: {case.kind}: {case.op}; seed file {s.label}; crc recomputed: {case.crc_fixed}")
            print(f"bytes ({len(case.data)}): {case.data.hex()}")
            r = run_case(case.data, s.weights, time_limit=a.time_limit, rss_limit_mib=a.rss_limit)
            print(f"outcome: {r.outcome}: {r.reason} ({1000 * r.seconds:.1f} ms, peak RSS +{r.rss_growth_mib:.0f} MiB)")
            print(r.detail, end="")
            print("cli:", check_cli(case.data, s.weights, r.outcome))
            return 0 if r.outcome != "failure" else 1
        info = machine_info("cpu")
        t0 = time.perf_counter()

        def progress(done, total, counts):
            if done % 500 == 0 or done == total:
                print(f"{done}/{total} {counts} {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)

        summary = run_fuzz(seeds, cases=a.cases, seed=a.seed, time_limit=a.time_limit, rss_limit_mib=a.rss_limit,
                           crc_fix=a.crc_fix, cli_share=a.cli_share, save_dir=a.save_failures, progress=progress)
    summary["machine"] = info
    summary["source"] = source_state()
    summary["weights"] = {label: {"model": name, "config": config} for label, name, config, _ in variants()}
    text = markdown(summary, machine_line(info))
    print(text)
    out = Path(a.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    out.with_suffix(".json").write_text(json.dumps(summary, indent=1, default=str) + "\n")
    return 1 if summary["outcomes"]["failure"] else 0


if __name__ == "__main__":
    sys.exit(main())
