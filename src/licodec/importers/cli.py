"""``licodec import compressai ARCH CHECKPOINT`` and ``licodec import cca CHECKPOINT`` (argparse only
at import time: torch is imported by the handler)."""

from __future__ import annotations

import argparse


def add_import_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="source", required=True, metavar="{compressai,cca}")
    c = sub.add_parser("compressai", help="a CompressAI zoo or training checkpoint (.pth / .pth.tar)")
    c.add_argument("arch", choices=["bmshj2018-hyperprior", "mbt2018-mean", "mbt2018"], help="CompressAI architecture")
    c.add_argument("checkpoint", help="the .pth / .pth.tar file (read with torch.load(weights_only=True))")
    o = sub.add_parser("cca", help="a checkpoint of the official CCA code (LabShuHangGU/CCA, Han et al. 2024)")
    o.add_argument("checkpoint", help="the .pth / .pth.tar file (read with torch.load(weights_only=True))")
    o.add_argument("--lambda", dest="lmbda", type=float, default=None,
                   help="the λ the checkpoint was trained with (default: licodec's ladder value of --quality)")
    for sp in (c, o):
        sp.add_argument("-o", "--output", default=None,
                        help="licodec weight file to write (default: <model>-q<Q>.safetensors in the user weight "
                             "folder, $LICODEC_WEIGHTS_DIR or ~/.local/share/licodec/weights, listed by `licodec models`)")
        sp.add_argument("-q", "--quality", type=float, default=None,
                        help="the quality 1..8 (λ ladder point) the weights were trained at; for CompressAI zoo "
                             "files read from the name (ARCH-Q-HASH.pth.tar)")
        sp.add_argument("--force", action="store_true", help="overwrite an existing output file")


def run_import(args) -> int:
    if args.source == "compressai":
        from .compressai import import_compressai

        r = import_compressai(args.arch, args.checkpoint, args.output, args.quality, args.force)
    else:
        from .cca import import_cca

        r = import_cca(args.checkpoint, args.output, args.quality, args.lmbda, args.force)
    cfg = ", ".join(f"{k}={v}" for k, v in r.config.items() if k in ("N", "M"))
    print(f"{r.path}: {r.model} ({cfg}), quality {r.extra['quality']:g}, from {r.extra['source_file']} "
          f"(sha256 {r.extra['source_sha256'][:16]}…)")
    return 0
