#!/usr/bin/env python
"""Fuzz .lic decoding, edited headers and weight files: every case must decode or fail cleanly.

Makes a tiny random-init model of every registered kind, two also variable-rate (milliseconds
per decode), encodes seed images of a few sizes (1x1, odd sizes, a grayscale one) with each, then
runs three fuzzers:

- `testkit.fuzz.run_fuzz`: mutated .lic files, each decoded in process through
  `licodec.codec.decode(data, weights=...)`, and 1% of them also through
  `python -m licodec.cli decompress`;
- `testkit.fuzz_header.run_header_fuzz`: header fields the decoder depends on (quality, size,
  channels, version, ...) edited behind a recomputed file CRC: every case must fail;
- `testkit.fuzz_weights.run_weight_fuzz`: mutated weight files (metadata, config, shapes, dtypes,
  values, raw bytes), each loaded, used to encode a small image and to decode the result, 1% also
  through `python -m licodec.cli compress --weights`.

Writes benchmarks/results/fuzz.json and fuzz.md.

    python benchmarks/run_fuzz.py                      # 10,000 + 2,000 + 2,000 cases, seed 0
    python benchmarks/run_fuzz.py --cases 500 --header-cases 200 --weight-cases 200 --seed 3 -o /tmp/fuzz.md
    python benchmarks/run_fuzz.py --case 1234          # rerun one .lic case (same --seed), with traceback
    python benchmarks/run_fuzz.py --only weights --case 17   # one weight-file case
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # testkit: the fuzzers and tiny models (not installed)

# variable-rate weights too (gain units: the header's quality drives the decoder), coded at q 3.5
VARIABLE_RATE = ("mbt2018-mean", "han2024-cca")
VR_QUALITY = 3.5
SIZES = [(1, 1), (3, 5), (17, 33), (64, 64), (65, 97), (96, 128)]  # (height, width)
GRAY_SIZE = (33, 47)


def variants() -> list[tuple[str, str, dict, bool]]:
    """(label, model name, config, variable rate) of every weight file the seeds are made with."""
    import dataclasses

    from licodec.models import get_model_class
    from testkit import TINY_CONFIGS as MODELS

    out = [(name, name, config, False) for name, config in MODELS.items()]
    for name in VARIABLE_RATE:
        if "rate_levels" in {f.name for f in dataclasses.fields(get_model_class(name).config_cls)}:
            out.append((f"{name} vr", name, {**MODELS[name], "rate_levels": 8}, True))
    return out


def make_seeds(folder: Path):
    """One weight file per variant and its seed files: [testkit.fuzz.Seed]."""
    from importlib import resources

    import numpy as np
    import torch
    from PIL import Image

    from licodec.codec import Codec
    from testkit.fuzz import Seed
    from licodec.models import create_model
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
    from testkit.fuzz import Mutator

    o = s["outcomes"]
    lines = [
        "# Fuzzing .lic decoding and weight loading", "",
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


def _rows(by_kind: dict, outcomes: dict, good: str) -> list[str]:
    lines = [f"| mutation | clean error | {good} | failure |", "|---|---:|---:|---:|"]
    for k, v in list(by_kind.items()) + [("**all**", outcomes)]:
        lines.append(f"| {k} | {v['clean_error']:,} | {v['decoded']:,} | {v['failure']:,} |")
    return lines


def _figures(s: dict, good: str) -> str:
    o = s["outcomes"]
    return (f"**{o['failure']} failures**, {o['clean_error']:,} clean errors, {o['decoded']:,} {good}. "
            f"Slowest case {1000 * s['slowest']['seconds']:.0f} ms ({s['slowest']['kind']}: {s['slowest']['op'][:80]}; "
            f"limit {s['time_limit_s']:g} s), mean {s['decode_ms_mean']:.1f} ms per case; largest peak-RSS growth "
            f"{s['max_rss_growth_mib']:g} MiB (limit {s['rss_limit_mib']:g} MiB); {s['cli']['cases']} cases also "
            f"through the CLI ({len(s['cli']['problems'])} problems); wall time {s['wall_seconds']:.0f} s.")


def _errors_and_failures(s: dict, rerun: str) -> list[str]:
    lines = ["", "Clean errors by message (numbers and names blanked):", "", "| error | cases |", "|---|---:|"]
    for msg, n in list(s["clean_errors"].items())[:25]:
        lines.append(f"| {msg.replace('|', '/')} | {n:,} |")
    if s["failures"]:
        lines += ["", f"Failures (rerun one with `{rerun}`):", "", "| case | mutation | reason |", "|---|---|---|"]
        for f in s["failures"][:30]:
            lines.append(f"| {f['index']} | {f['kind']}: {f['op'][:60]} | {f['reason'].replace('|', '/')[:160]} |")
    return lines


def header_markdown(s: dict) -> str:
    lines = [
        "## Edited headers behind a recomputed CRC", "",
        (f"{s['cases']:,} cases (seed {s['seed']}): in the format version 3 seed files above, 1-3 of the header "
         "fields the decoder depends on edited — quality (another level, one float32 ulp, boundary values, random "
         "bits), height, width, both, a size within the same 64-pixel padding (the latents keep their shape), "
         "channels, bit depth, version, model name, fingerprint — and the file CRC recomputed, decoded with "
         "`licodec.codec.decode(data, weights=...)`. Every case must fail with a licodec error: one that decodes "
         "to an image is a failure."), "",
        _figures(s, "decoded"), "",
        *_rows(s["by_kind"], s["outcomes"], "decoded"),
        *_errors_and_failures(s, "python benchmarks/run_fuzz.py --only header --case INDEX"),
    ]
    return "\n".join(lines) + "\n"


def weights_markdown(s: dict) -> str:
    lines = [
        "## Weight files", "",
        (f"{s['cases']:,} mutated weight files (seed {s['seed']}) made from {len(s['base_files'])} valid ones "
         f"({', '.join(b['label'] for b in s['base_files'])}; -half: float16 storage): metadata keys dropped or set "
         "to hostile strings, the model name, config fields (negative, zero, huge, fractional, non-finite, strings, "
         "lists, unknown, invalid JSON; tiny_file: N = M = 1024 … 10^6 over zero or one tensor), tensor shapes "
         "(reshaped or resized with their data; header_shape: the header alone), dtypes, values (NaN, ±inf, 1e30, "
         "1e6, subnormals, scaled tensors), tensors dropped, added or renamed, raw bytes of the header and data, "
         f"truncation and extension; the fingerprint recomputed after {100 * s['refp']:.0f}% of the structured "
         "mutations. Each file is loaded (`Codec.from_weights`), encodes a 56x40 image and decodes the result "
         "(`decode(data, weights=...)`); 'coded' means both worked. A warning, another exception, more than the "
         "time limit or the peak-RSS limit is a failure."), "",
        _figures(s, "coded"), "",
        *_rows(s["by_kind"], s["outcomes"], "coded"),
        *_errors_and_failures(s, "python benchmarks/run_fuzz.py --only weights --case INDEX"),
    ]
    return "\n".join(lines) + "\n"


HALF = ("mbt2018-mean", "han2024-cca vr")  # weight files also stored as float16 for the weight fuzzer


def weight_files(seeds) -> list[str]:
    """The seeds' weight files, and float16 copies of two of them (`save_weights(half=True)`)."""
    from licodec.weights import load_weights, save_weights

    files = sorted({s.weights for s in seeds})
    for label in HALF:
        src = next(f for f in files if Path(f).stem == label.replace(" ", "-"))
        model, info = load_weights(src)
        dst = str(Path(src).with_name(Path(src).stem + "-half.safetensors"))
        save_weights(model, dst, quality=info["quality"], half=True)
        files.append(dst)
    return files


def weight_image():
    from importlib import resources

    import numpy as np
    from PIL import Image

    photo = np.asarray(Image.open(str(resources.files("licodec") / "data" / "sample.png")).convert("RGB"))
    return np.ascontiguousarray(photo[100:140, 200:256])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cli-share", type=float, default=0.01, help="share of the cases also run through the CLI")
    p.add_argument("--crc-fix", type=float, default=0.75, help="share of the cases with a recomputed file CRC")
    p.add_argument("--time-limit", type=float, default=5.0, help="seconds per case")
    p.add_argument("--rss-limit", type=float, default=512.0, help="MiB of peak-RSS growth per case")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--case", type=int, help="run only this case (of the first fuzzer in --only) and print its outcome")
    p.add_argument("--header-cases", type=int, default=2000, help="cases of edited headers behind a valid CRC")
    p.add_argument("--weight-cases", type=int, default=2000, help="cases of mutated weight files")
    p.add_argument("--only", default="lic,header,weights", help="fuzzers to run (comma-separated: lic, header, weights)")
    p.add_argument("--save-failures", help="folder for the failing cases' .lic files")
    p.add_argument("-o", "--output", default=str(REPO / "benchmarks" / "results" / "fuzz.md"))
    a = p.parse_args(argv)
    only = [x.strip() for x in a.only.split(",") if x.strip()]
    if not only or set(only) - {"lic", "header", "weights"}:
        p.error("--only: a comma-separated list of lic, header, weights")

    import torch

    from licodec.evaluation.machine import machine_info, machine_line
    from testkit.fuzz import Mutator, check_cli, run_case, run_fuzz
    from testkit.fuzz_header import HeaderEditor, run_header_fuzz
    from testkit.fuzz_weights import WeightMutator, check_cli_weights, run_weight_case, run_weight_fuzz

    torch.set_num_threads(a.threads)
    with tempfile.TemporaryDirectory(prefix="licodec-fuzz-") as tmp:
        seeds = make_seeds(Path(tmp))
        files = weight_files(seeds) if "weights" in only else []
        if a.case is not None:
            if only[0] == "weights":
                case = WeightMutator([Path(f).read_bytes() for f in files], seed=a.seed).case(a.case)
                print(f"case {a.case}: {case.kind}: {case.op}; base file {Path(files[case.seed_index]).stem}; "
                      f"fingerprint recomputed: {case.crc_fixed}")
                rgb = weight_image()
                r = run_weight_case(case.data, Path(tmp), rgb, time_limit=a.time_limit, rss_limit_mib=a.rss_limit)
                image = Path(tmp) / "image.png"
                from PIL import Image

                Image.fromarray(rgb).save(image)
                cli = check_cli_weights(case.data, image, r.outcome)
            else:
                make = (HeaderEditor([s.data for s in seeds], seed=a.seed) if only[0] == "header"
                        else Mutator([s.data for s in seeds], seed=a.seed, crc_fix=a.crc_fix))
                case = make.case(a.case)
                s = seeds[case.seed_index]
                print(f"case {a.case}: {case.kind}: {case.op}; seed file {s.label}; crc recomputed: {case.crc_fixed}")
                print(f"bytes ({len(case.data)}): {case.data.hex()}")
                r = run_case(case.data, s.weights, time_limit=a.time_limit, rss_limit_mib=a.rss_limit)
                if only[0] == "header" and r.outcome == "decoded":
                    r.outcome, r.reason = "failure", "an edited header decoded to an image"
                cli = check_cli(case.data, s.weights, "clean_error" if only[0] == "header" else r.outcome)
            print(f"outcome: {r.outcome}: {r.reason} ({1000 * r.seconds:.1f} ms, peak RSS +{r.rss_growth_mib:.0f} MiB)")
            print(r.detail, end="")
            print("cli:", cli)
            return 0 if r.outcome != "failure" else 1
        info = machine_info("cpu")
        t0 = time.perf_counter()

        def progress(done, total, counts):
            if done % 500 == 0 or done == total:
                print(f"{done}/{total} {counts} {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)

        summary: dict = {}
        if "lic" in only:
            summary = run_fuzz(seeds, cases=a.cases, seed=a.seed, time_limit=a.time_limit, rss_limit_mib=a.rss_limit,
                               crc_fix=a.crc_fix, cli_share=a.cli_share, save_dir=a.save_failures, progress=progress)
        if "header" in only:
            summary["header_fuzz"] = run_header_fuzz(seeds, cases=a.header_cases, seed=a.seed, time_limit=a.time_limit,
                                                     rss_limit_mib=a.rss_limit, cli_share=a.cli_share,
                                                     progress=progress)
        if "weights" in only:
            summary["weight_fuzz"] = run_weight_fuzz(files, weight_image(), cases=a.weight_cases, seed=a.seed,
                                                     time_limit=a.time_limit, rss_limit_mib=a.rss_limit,
                                                     cli_share=a.cli_share, progress=progress)
    summary["machine"] = info
    summary["source"] = source_state()
    summary["weights"] = {label: {"model": name, "config": config} for label, name, config, _ in variants()}
    parts = [markdown(summary, machine_line(info))] if "lic" in only else [
        "# Fuzzing licodec\n", f"Machine: {machine_line(info)}.\n"]
    if "header" in only:
        parts.append(header_markdown(summary["header_fuzz"]))
    if "weights" in only:
        parts.append(weights_markdown(summary["weight_fuzz"]))
    text = "\n".join(parts)
    print(text)
    out = Path(a.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    out.with_suffix(".json").write_text(json.dumps(summary, indent=1, default=str) + "\n")
    failures = sum(x["outcomes"]["failure"] for x in (summary, summary.get("header_fuzz"), summary.get("weight_fuzz"))
                   if x and "outcomes" in x)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
