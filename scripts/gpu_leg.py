#!/usr/bin/env python3
"""The default-model campaign on a lent GPU (issue 13): pack here, train there, unpack here.

A call of the `device` tool carries the working tree (tracked files, untracked files git does not
ignore, and the ignored paths named in ``carry``) up to 64 MiB, and brings back at most 8 files of
16 MiB. The campaign's state (56 MB) and the shipped weight files (46 MB) alone are over that, so a
leg goes (campaign/README.md):

    kill -TERM PID                          # here: the CPU run writes its checkpoint and ends
    python scripts/gpu_leg.py pack          # here: .gpu/ to carry; the large tracked files held aside
    run(command="bash scripts/gpu_leg.sh 420", carry=[".gpu"], timeout_s=600)     # the device tool
    python scripts/gpu_leg.py unpack DIR    # here: DIR = the call's files_at
    python scripts/gpu_leg.py restore       # instead of unpack, when the call brought nothing back

``pack`` writes
- ``.gpu/state.safetensors``: campaign/checkpoint.safetensors without Adam's first moments
  (``exp_avg``), which a resume starts at zero and rebuilds within ~10 steps
  (`licodec.train._optim_from_tensors`); weights, second moments, step and RNG states as they are;
- ``.gpu/whl/``: the constriction wheel for the device's Python 3.12 (everything else that training
  imports is installed there);
- ``.gpu/train/``: the training photos as JPEG (quality 90, 4:4:4), each cut to its centre region of
  at most P pixels (at the photo's own scale, so the crops' statistics are those of the CPU run's;
  no side below the crop size), with P the largest that keeps the call within the limit;
and moves the tracked files that need not travel (the state, the shipped weights) to ``.gpu-hold/``
and out of git's index; ``restore`` (which ``unpack`` runs first) puts both back. Nothing is deleted.

On the device ``scripts/gpu_leg.sh SECONDS`` resumes the run there (``licodec train
@campaign/run.args --resume --device cuda``: bf16, no validation, since data/val does not travel),
stops it after SECONDS with SIGINT (the run writes its checkpoint at that step), and ``split``s the
state into parts of at most 16 MiB with a manifest (SHA-256, size, step) under $OUT, beside the
run's log.csv.

``unpack DIR`` joins the parts, checks the SHA-256, that the state holds every tensor the CPU state
holds and that its step is past the CPU state's, and that the log continues the CPU log; then it
replaces campaign/checkpoint.safetensors and campaign/log.csv, ready to commit and to resume on the
CPU. ``split`` needs only the standard library (it runs on the device before anything is installed).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LIMIT = 64 * 2**20  # bytes a device call carries, working tree and carried paths together
MARGIN = 2**20  # kept free below LIMIT
PART = 16 * 2**20 - 4096  # largest part brought back (the limit is 16 MiB a file)
STATE = Path("campaign/checkpoint.safetensors")
LOG = Path("campaign/log.csv")
PACK, HOLD = Path(".gpu"), Path(".gpu-hold")
HELD = "held.json"  # in HOLD: the paths moved there
JPEG_QUALITY = 90


class LegError(Exception):
    """A step of the leg cannot go on; the message says why and what to do."""


# -- safetensors headers (standard library only) --
def header(path: Path) -> dict:
    """The JSON header of a safetensors file: tensor names -> dtype/shape/offsets, and ``__metadata__``."""
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise LegError(f"{path}: not a safetensors file")
        (n,) = struct.unpack("<Q", raw)
        if n > 100 * 2**20:
            raise LegError(f"{path}: not a safetensors file")
        try:
            return json.loads(f.read(n))
        except ValueError:
            raise LegError(f"{path}: not a safetensors file") from None


def state_step(path: Path) -> int:
    return int(header(path).get("__metadata__", {}).get("step", -1))


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(2**20), b""):
            h.update(block)
    return h.hexdigest()


# -- the device side: split the state for the trip back --
def split(state: Path, log: Path, out: Path, part: int = PART) -> dict:
    """``state`` as parts of at most ``part`` bytes in ``out`` (state.partN), a copy of ``log`` and
    ``manifest.json`` (parts, SHA-256, size, step). Returns the manifest."""
    out.mkdir(parents=True, exist_ok=True)
    parts = []
    with open(state, "rb") as f:
        for i, block in enumerate(iter(lambda: f.read(part), b"")):
            (out / f"state.part{i}").write_bytes(block)
            parts.append(f"state.part{i}")
    shutil.copyfile(log, out / "log.csv")
    manifest = {"parts": parts, "sha256": sha256(state), "bytes": state.stat().st_size, "step": state_step(state)}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def join(folder: Path, dest: Path) -> int:
    """The state that ``split`` wrote in ``folder``, joined into ``dest`` and checked against its
    manifest (size and SHA-256). Returns its step."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError) as e:
        raise LegError(f"{folder}: no readable manifest.json ({e}); nothing came back to unpack") from None
    try:
        with open(dest, "wb") as f:
            for name in manifest["parts"]:
                if Path(name).name != name:
                    raise LegError(f"manifest names a part outside {folder}: {name!r}")
                try:
                    f.write((folder / name).read_bytes())
                except OSError as e:
                    raise LegError(f"part {name} did not come back ({e})") from None
        if dest.stat().st_size != manifest["bytes"] or sha256(dest) != manifest["sha256"]:
            raise LegError(f"the state joined from {folder} does not match its manifest (size or SHA-256)")
    except BaseException:
        dest.unlink(missing_ok=True)  # no partial state is left behind
        raise
    return state_step(dest)


# -- this side: hold the large tracked files aside, and put them back --
def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True).stdout


def large_tracked(root: Path) -> list[Path]:
    """The tracked files a leg leaves behind: the campaign state and the shipped weight files."""
    names = _git(root, "ls-files", "-z", "--", str(STATE), "src/licodec/weights/*.safetensors").split("\0")
    return [Path(n) for n in names if n]


def hold(root: Path) -> list[Path]:
    """Move the large tracked files to HOLD and out of git's index (`restore` undoes both)."""
    hold_dir = root / HOLD
    if (hold_dir / HELD).exists():
        raise LegError(f"{HOLD}/{HELD} exists: a leg is packed already (unpack or restore it first)")
    paths = large_tracked(root)
    hold_dir.mkdir(exist_ok=True)
    (hold_dir / HELD).write_text(json.dumps([p.as_posix() for p in paths]) + "\n")
    for p in paths:
        (hold_dir / p).parent.mkdir(parents=True, exist_ok=True)
        os.replace(root / p, hold_dir / p)
    if paths:
        _git(root, "rm", "-q", "--cached", "--", *map(str, paths))
    return paths


def restore(root: Path) -> list[Path]:
    """Put the files `hold` moved back in place and in git's index (as the last commit has them)."""
    hold_dir = root / HOLD
    if not (hold_dir / HELD).exists():
        return []
    paths = [Path(p) for p in json.loads((hold_dir / HELD).read_text())]
    for p in paths:
        if (hold_dir / p).exists():
            os.replace(hold_dir / p, root / p)
    if paths:
        _git(root, "reset", "-q", "--", *map(str, paths))
    shutil.rmtree(hold_dir)
    return paths


def travel_size(root: Path, carry: Path) -> int:
    """Bytes a device call would carry: the files git tracks or does not ignore, and ``carry``."""
    names = _git(root, "ls-files", "-z", "--cached", "--others", "--exclude-standard").split("\0")
    total = sum((root / n).stat().st_size for n in names if n and (root / n).is_file())
    return total + sum(p.stat().st_size for p in (root / carry).rglob("*") if p.is_file())


# -- this side: what travels --
def strip_first_moments(src: Path, dst: Path) -> int:
    """``src`` without the ``optim.*.exp_avg`` tensors, as ``dst``. Returns the bytes left out."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(src), framework="pt") as f:
        meta = f.metadata()
        keep = {k: f.get_tensor(k) for k in f.keys() if not (k.startswith("optim.") and k.endswith(".exp_avg"))}
    save_file(keep, str(dst), metadata=meta)
    return src.stat().st_size - dst.stat().st_size


def _jpeg(im, cap: int, patch: int) -> bytes:
    """The centre of ``im`` with at most ``cap`` pixels, at the photo's own scale (the aspect ratio
    kept, neither side below ``patch`` unless the photo's is), as JPEG."""
    w, h = im.size
    s = min(1.0, (cap / (w * h)) ** 0.5)
    cw, ch = min(w, max(patch, round(w * s))), min(h, max(patch, round(h * s)))
    left, top = (w - cw) // 2, (h - ch) // 2
    buf = io.BytesIO()
    im.crop((left, top, left + cw, top + ch)).save(buf, "JPEG", quality=JPEG_QUALITY, subsampling=0)
    return buf.getvalue()


def pack_photos(src: Path, dst: Path, budget: int, patch: int) -> dict:
    """Every image of ``src`` as JPEG in ``dst`` (same stem), cut to at most P pixels (`_jpeg`) with
    the largest P whose total fits ``budget`` bytes (bisection to 1 %). Returns P and the sizes."""
    from PIL import Image

    sys.path.insert(0, str(REPO / "src"))
    from licodec.data import list_images

    images = []
    for p in list_images(src):
        with Image.open(p) as im:
            images.append((p.stem, im.convert("RGB")))
    largest = max(im.size[0] * im.size[1] for _, im in images)
    cache: dict[tuple[str, int], bytes] = {}

    def encode(cap: int) -> list[bytes]:
        out = []
        for stem, im in images:
            key = (stem, min(cap, im.size[0] * im.size[1]))  # images under the cap are not scaled
            if key not in cache:
                cache[key] = _jpeg(im, cap, patch)
            out.append(cache[key])
        return out

    lo, hi = patch * patch, largest
    if sum(map(len, encode(lo))) > budget:
        raise LegError(f"the photos do not fit in {budget / 2**20:.1f} MiB even at {patch}x{patch} pixels each")
    while hi - lo > 0.01 * hi:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if sum(map(len, encode(mid))) <= budget else (lo, mid)
    if sum(map(len, encode(hi))) <= budget:
        lo = hi
    shutil.rmtree(dst, ignore_errors=True)
    dst.mkdir(parents=True)
    blobs = encode(lo)
    for (stem, _), blob in zip(images, blobs):
        (dst / f"{stem}.jpg").write_bytes(blob)
    return {"max_pixels": lo, "photos": len(images), "bytes": sum(map(len, blobs))}


def constriction_wheel(dst: Path) -> Path:
    """The wheel of the installed constriction version for CPython 3.12 on x86-64 Linux, in ``dst``."""
    from importlib.metadata import version

    dst.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version",
           "3.12", "--implementation", "cp", "--platform", "manylinux_2_28_x86_64", "--platform",
           "manylinux_2_17_x86_64", "--platform", "manylinux2014_x86_64", "-d", str(dst),
           f"constriction=={version('constriction')}"]
    if subprocess.run(cmd, capture_output=True).returncode != 0:
        raise LegError("pip could not download the constriction wheel for Python 3.12 (the device has none)")
    return next(dst.glob("constriction-*.whl"))


def campaign_running(root: Path) -> list[int]:
    """PIDs of the processes that train the campaign of ``root`` (a `licodec train` naming campaign/
    started in ``root``)."""
    pids = []
    for d in Path("/proc").glob("[0-9]*"):
        try:
            argv = (d / "cmdline").read_bytes().split(b"\0")
            cwd = (d / "cwd").resolve()
        except OSError:
            continue
        text = b" ".join(argv)
        if b"train" in argv and b"campaign" in text and b"licodec" in text and cwd == root.resolve():
            pids.append(int(d.name))
    return pids


def pack(root: Path, patch: int = 256) -> dict:
    running = campaign_running(root)
    if running:
        raise LegError(f"the campaign is training here (PID {', '.join(map(str, running))}): stop it first with "
                       "kill -TERM, which writes its checkpoint")
    if not (root / STATE).exists():
        raise LegError(f"{STATE} is missing: nothing to carry")
    pack_dir = root / PACK
    shutil.rmtree(pack_dir, ignore_errors=True)
    pack_dir.mkdir()
    strip_first_moments(root / STATE, pack_dir / "state.safetensors")
    wheel = constriction_wheel(pack_dir / "whl")
    held = hold(root)
    try:
        budget = LIMIT - MARGIN - travel_size(root, PACK)
        photos = pack_photos(root / "data" / "train", pack_dir / "train", budget, patch)
    except BaseException:
        restore(root)
        raise
    return {"step": state_step(pack_dir / "state.safetensors"), "wheel": wheel.name, "held": [p.as_posix() for p in held],
            "photos": photos, "travel_bytes": travel_size(root, PACK)}


def check_log(ours: Path, theirs: Path, step: int) -> None:
    """The device's log must continue ours: our rows up to ``step`` are the start of its rows."""
    def rows(p: Path) -> list[list[str]]:
        with open(p, newline="") as f:
            return list(csv.reader(f))

    a, b = rows(ours), rows(theirs)
    head = [a[0]] + [r for r in a[1:] if int(r[0]) <= step]
    if b[: len(head)] != head:
        raise LegError(f"the log that came back does not continue {LOG} up to step {step}")


def unpack(root: Path, folder: Path) -> dict:
    restore(root)
    ours = state_step(root / STATE)
    incoming = root / STATE.with_suffix(".incoming")
    step = join(folder, incoming)
    try:
        missing = set(header(root / STATE)) - set(header(incoming))
        if missing:
            raise LegError(f"the state that came back lacks {len(missing)} tensor(s), e.g. {sorted(missing)[0]}")
        if step <= ours:
            raise LegError(f"the state that came back is at step {step}, not past the CPU state's {ours}")
        check_log(root / LOG, folder / "log.csv", ours)
    except BaseException:
        incoming.unlink()
        raise
    os.replace(incoming, root / STATE)
    shutil.copyfile(folder / "log.csv", root / LOG)
    shutil.rmtree(root / PACK, ignore_errors=True)
    return {"from_step": ours, "to_step": step}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("pack", help="write .gpu/ and hold the large tracked files aside")
    s = sub.add_parser("split", help="(device side) the state in parts of <= 16 MiB, a manifest and the log")
    s.add_argument("state", type=Path)
    s.add_argument("log", type=Path)
    s.add_argument("out", type=Path)
    u = sub.add_parser("unpack", help="install the state that came back (restores the held files first)")
    u.add_argument("folder", type=Path, help="the device call's files_at")
    sub.add_parser("restore", help="put the held files back (after a call that brought nothing back)")
    a = p.parse_args(argv)
    try:
        if a.cmd == "pack":
            r = pack(REPO)
            print(json.dumps(r, indent=1))
            print(f'now: run(command="bash scripts/gpu_leg.sh 420", carry=["{PACK}"], timeout_s=600), then '
                  "python scripts/gpu_leg.py unpack FILES_AT")
        elif a.cmd == "split":
            print(json.dumps(split(a.state, a.log, a.out)))
        elif a.cmd == "unpack":
            r = unpack(REPO, a.folder)
            print(f"campaign state: step {r['from_step']} -> {r['to_step']}; commit {STATE} and {LOG}, then resume "
                  "on the CPU")
        else:
            print("restored: " + (", ".join(p.as_posix() for p in restore(REPO)) or "nothing was held"))
    except LegError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
