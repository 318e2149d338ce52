"""CompressAI checkpoints (its zoo files ``<arch>-<q>-<hash>.pth.tar``, or a training checkpoint of
CompressAI's ``examples/train.py``) -> licodec weight files.

| CompressAI architecture | its class                              | licodec model                      |
|-------------------------|----------------------------------------|------------------------------------|
| bmshj2018-hyperprior    | ScaleHyperprior                        | compressai-bmshj2018-hyperprior    |
| mbt2018-mean            | MeanScaleHyperprior                    | compressai-mbt2018-mean            |
| mbt2018                 | JointAutoregressiveHierarchicalPriors  | compressai-mbt2018                 |

The licodec models are bmshj2018-hyperprior, mbt2018-mean and lee2019-ctx (M2 = 0) layer for
layer — same convolutions, GDN/IGDN, hyper transforms, [σ; μ] split of h_s and of the entropy
parameters, 5x5 type-A masked context — with CompressAI's factorized prior (four hidden layers,
quantization of z around its medians: `licodec.models.imported`). Keys map one to one except
bmshj2018's h_a, where licodec's |y| is a layer of its own (CompressAI's ``h_a.0`` is ``h_a.1``).
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from ..rate import LAMBDAS, check_quality
from ..models import create_model
from .common import (CheckpointError, ImportResult, Source, Target, check_gaussian_conditional, map_conv,
                     map_entropy_bottleneck, map_gdn, read_checkpoint, user_weights_dir, write)

ARCHS = {"bmshj2018-hyperprior": "compressai-bmshj2018-hyperprior",
         "mbt2018-mean": "compressai-mbt2018-mean",
         "mbt2018": "compressai-mbt2018"}

# CompressAI's zoo: (N, M) per quality (compressai.zoo.image.cfgs), for a notice when a file differs.
ZOO_SIZES = {
    "bmshj2018-hyperprior": {q: (128, 192) if q <= 5 else (192, 320) for q in range(1, 9)},
    "mbt2018-mean": {q: (128, 192) if q <= 4 else (192, 320) for q in range(1, 9)},
    "mbt2018": {q: (192, 192) if q <= 4 else (192, 320) for q in range(1, 9)},
}
_ZOO_NAME = re.compile(r"(?P<arch>[a-z0-9-]+?)-(?P<q>[1-8])-[0-9a-f]{6,}\.pth(\.tar)?$")


def type_a_mask(cout: int, cin: int, k: int = 5) -> torch.Tensor:
    """CompressAI's MaskedConv2d mask "A": the positions before the centre in raster order."""
    m = torch.ones(cout, cin, k, k)
    m[:, :, k // 2, k // 2:] = 0
    m[:, :, k // 2 + 1:] = 0
    return m


def _map_transforms(src: Source, dst: Target, N: int, M: int) -> None:
    for i, (cin, cout) in zip((0, 2, 4, 6), ((3, N), (N, N), (N, N), (N, M))):
        map_conv(src, dst, f"g_a.{i}", f"g_a.{i}", cout, cin, 5)
    for i in (1, 3, 5):
        map_gdn(src, dst, f"g_a.{i}", f"g_a.{i}", N)
    for i, (cin, cout) in zip((0, 2, 4, 6), ((M, N), (N, N), (N, N), (N, 3))):
        map_conv(src, dst, f"g_s.{i}", f"g_s.{i}", cout, cin, 5, transposed=True)
    for i in (1, 3, 5):
        map_gdn(src, dst, f"g_s.{i}", f"g_s.{i}", N)


def map_state(arch: str, state: dict[str, torch.Tensor], label: str):
    """(licodec model with the weights, config, max |median|) for a CompressAI state dict of ``arch``."""
    src = Source(state, label)
    if not src.has("g_a.0.weight") or not src.has("g_a.6.weight"):
        raise CheckpointError(f"{label}: no g_a.0/g_a.6 convolutions: not a CompressAI {arch} checkpoint")
    N, M = src.shape("g_a.0.weight")[0], src.shape("g_a.6.weight")[0]
    name = ARCHS[arch]
    config = {"N": N, "M": M}
    try:
        model = create_model(name, config)
    except ValueError as e:
        raise CheckpointError(f"{label}: N={N}, M={M} do not make a {name} model ({e})") from None
    dst = Target(model)
    _map_transforms(src, dst, N, M)
    if arch == "bmshj2018-hyperprior":
        for i, (cin, cout, k) in zip((0, 2, 4), ((M, N, 3), (N, N, 5), (N, N, 5))):
            map_conv(src, dst, f"h_a.{i}", f"h_a.{i + 1}", cout, cin, k)  # licodec's h_a.0 is |y|
        for i, (cin, cout, k, t) in zip((0, 2, 4), ((N, N, 5, True), (N, N, 5, True), (N, M, 3, False))):
            map_conv(src, dst, f"h_s.{i}", f"h_s.{i}", cout, cin, k, transposed=t)
    else:
        for i, (cin, cout, k) in zip((0, 2, 4), ((M, N, 3), (N, N, 5), (N, N, 5))):
            map_conv(src, dst, f"h_a.{i}", f"h_a.{i}", cout, cin, k)
        for i, (cin, cout, k, t) in zip((0, 2, 4), ((N, M, 5, True), (M, M * 3 // 2, 5, True),
                                                     (M * 3 // 2, 2 * M, 3, False))):
            map_conv(src, dst, f"h_s.{i}", f"h_s.{i}", cout, cin, k, transposed=t)
    if arch == "mbt2018":
        mask = type_a_mask(2 * M, M)
        if src.has("context_prediction.mask"):
            got = src.take("context_prediction.mask", (2 * M, M, 5, 5))
            if not torch.equal(got, mask):
                raise CheckpointError(f"{label}: context_prediction.mask is not CompressAI's 5x5 type-A mask")
        w = src.take("context_prediction.weight", (2 * M, M, 5, 5))
        dst.put("context_prediction.weight", w * mask, "context_prediction.weight")  # what CompressAI convolves with
        dst.put("context_prediction.bias", src.take("context_prediction.bias", (2 * M,)), "context_prediction.bias")
        for i, (cin, cout) in zip((0, 2, 4), ((4 * M, 10 * M // 3), (10 * M // 3, 8 * M // 3), (8 * M // 3, 2 * M))):
            map_conv(src, dst, f"entropy_parameters.{i}", f"entropy_parameters.{i}", cout, cin, 1)
    elif src.has("context_prediction.weight"):
        raise CheckpointError(f"{label}: has a context model (context_prediction): an mbt2018 checkpoint, not {arch}")
    max_median = map_entropy_bottleneck(src, dst, "entropy_bottleneck", "entropy_bottleneck", N)
    check_gaussian_conditional(src)
    src.finish()
    dst.load()
    return model.eval(), config, max_median


def quality_from_name(path: Path, arch: str) -> int | None:
    m = _ZOO_NAME.match(path.name)
    return int(m["q"]) if m and m["arch"] == arch else None


def import_compressai(arch: str, checkpoint, output=None, quality: float | None = None,
                      force: bool = False) -> ImportResult:
    """Convert a CompressAI checkpoint of ``arch`` into a licodec weight file (default: in the user
    weight folder). ``quality``: the zoo quality 1..8 the weights were trained at (λ from
    CompressAI's MSE ladder, licodec's too); read from a zoo file name when not given."""
    if arch not in ARCHS:
        raise CheckpointError(f"unknown CompressAI architecture {arch!r} (known: {', '.join(ARCHS)})")
    checkpoint = Path(checkpoint)
    if quality is None:
        quality = quality_from_name(checkpoint, arch)
        if quality is None:
            raise CheckpointError(f"{checkpoint}: pass --quality Q (1..8): the file name does not say it "
                                  f"(CompressAI's zoo names are {arch}-Q-HASH.pth.tar)")
    try:
        quality = check_quality(quality)
    except ValueError as e:
        raise CheckpointError(str(e)) from None
    lmbda = LAMBDAS.get(int(quality)) if float(quality).is_integer() else None
    state, digest = read_checkpoint(checkpoint)
    model, config, max_median = map_state(arch, state, str(checkpoint))
    name = ARCHS[arch]
    out = Path(output) if output else user_weights_dir() / f"{name}-q{quality:g}.safetensors"
    if out.exists() and not force:
        raise CheckpointError(f"{out}: exists (pass --force to overwrite)")
    extra = {"source": "compressai", "architecture": arch, "quality": quality, "lambda": lmbda,
             "source_file": checkpoint.name, "source_sha256": digest,
             "zoo_size": list(ZOO_SIZES[arch].get(int(quality), ())) == [config["N"], config["M"]],
             "max_abs_median": round(max_median, 6)}
    write(model, out, quality, lmbda, extra)
    return ImportResult(out, name, config, extra)
