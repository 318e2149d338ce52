"""Checkpoints of the official CCA code (Han et al. 2024, github LabShuHangGU/CCA, ``LICAutoencoder``
in ``models/vae.py``) -> licodec weight files of ``han2024-cca-official``.

That model is our han2024-cca (`licodec.models.cca`, written from the same paper and code) with
CompressAI's factorized prior for z, which the official code uses (`licodec.models.imported`).
The key names are the official module names; the mapping, read off the official code:

| official                                  | licodec                                      |
|-------------------------------------------|----------------------------------------------|
| g_a.down.i (i = 0..3)                     | g_a.(2i)                                     |
| g_a.blocks.i.j (3 residual, then NAF)     | g_a.(2i+1).j                                 |
| g_s.up.i (i = 0..3, M → 256 → … → 3)      | g_s.(2i)                                     |
| g_s.blocks.i.j (NAF, then 3 residual)     | g_s.(2i+1).j                                 |
| ResidualBottleneckBlock conv1/conv2/conv3 | body.0 / body.2 / body.4                     |
| NAFBlock dwconv.0 / dwconv.1 / sca.1 / conv1 / FFN.0 / FFN.2 | expand / dwconv / sca.conv / project / ffn.0 / ffn.2 |
| h_a.k, h_mean_s.k, h_scale_s.k            | h_a.k, h_s.mean.k, h_s.scale.k               |
| mean_NAF_transforms.i in_conv/blocks.j/out_conv (and scale_) | context_model.mean_naf_transforms.i conv_in/blocks.j/conv_out |
| mean_cc_transforms / scale_cc_transforms / lrp_transforms | context_model.cc_mean_transforms / cc_scale_transforms / lrp_transforms |
| z_entropy_bottleneck                      | entropy_bottleneck                           |
| aux_entropymodel.* (CCA training only)    | not imported                                 |

The official checkpoints are training checkpoints ``{"state_dict": …}`` (``module.`` prefixes
removed, as the official eval.py does). The group sizes come from the official
``--prop-slices`` k: group i ∝ i^k (default 1.7), inferred here from the tensors' shapes.
"""

from __future__ import annotations

import math
from pathlib import Path

from ..models.cca import group_sizes
from ..rate import LAMBDAS, check_quality
from ..models import create_model
from .common import (CheckpointError, ImportResult, Source, Target, check_gaussian_conditional, map_conv,
                     map_entropy_bottleneck, read_checkpoint, user_weights_dir, write)

MODEL = "han2024-cca-official"


def _count(src: Source, prefix: str, suffix: str) -> int:
    n = 0
    while src.has(f"{prefix}{n}{suffix}"):
        n += 1
    return n


def map_naf(src: Source, dst: Target, s: str, d: str, c: int) -> None:
    e = 2 * c
    for p in ("norm1", "norm2"):
        for q in ("weight", "bias"):
            dst.put(f"{d}.{p}.{q}", src.take(f"{s}.{p}.{q}", (c,)), f"{s}.{p}.{q}")
    map_conv(src, dst, f"{s}.dwconv.0", f"{d}.expand", e, c, 1)
    dst.put(f"{d}.dwconv.weight", src.take(f"{s}.dwconv.1.weight", (e, 1, 3, 3)), f"{s}.dwconv.1.weight")
    dst.put(f"{d}.dwconv.bias", src.take(f"{s}.dwconv.1.bias", (e,)), f"{s}.dwconv.1.bias")
    map_conv(src, dst, f"{s}.sca.1", f"{d}.sca.conv", c, c, 1)
    map_conv(src, dst, f"{s}.conv1", f"{d}.project", c, c, 1)
    map_conv(src, dst, f"{s}.FFN.0", f"{d}.ffn.0", e, c, 1)
    map_conv(src, dst, f"{s}.FFN.2", f"{d}.ffn.2", c, c, 1)
    for p in ("beta", "gamma"):
        dst.put(f"{d}.{p}", src.take(f"{s}.{p}", (1, c, 1, 1)), f"{s}.{p}")
    for p in ("in_conv", "out_conv"):  # the official NAFBlock's optional projections: never used by LICAutoencoder
        if src.has(f"{s}.{p}.weight"):
            raise CheckpointError(f"{src.label}: {s}.{p}: a NAF block with inner projections, not the official model's")


def map_res(src: Source, dst: Target, s: str, d: str, c: int) -> None:
    mid = c // 2
    map_conv(src, dst, f"{s}.conv1", f"{d}.body.0", mid, c, 1)
    map_conv(src, dst, f"{s}.conv2", f"{d}.body.2", mid, mid, 3)
    map_conv(src, dst, f"{s}.conv3", f"{d}.body.4", c, mid, 1)


def _stage_counts(src: Source, prefix: str, decoder: bool) -> tuple[int, int]:
    """(NAF blocks, residual blocks) of one official g_a/g_s stage (a Sequential of both kinds)."""
    kinds = []
    while True:
        j = len(kinds)
        if src.has(f"{prefix}.{j}.norm1.weight"):
            kinds.append("naf")
        elif src.has(f"{prefix}.{j}.conv1.weight"):
            kinds.append("res")
        else:
            break
    naf, res = kinds.count("naf"), kinds.count("res")
    expect = ["naf"] * naf + ["res"] * res if decoder else ["res"] * res + ["naf"] * naf
    if kinds != expect:
        raise CheckpointError(f"{src.label}: {prefix}: blocks in an order the official model does not have")
    return naf, res


def infer_config(src: Source) -> dict:
    for key in ("g_a.down.0.weight", "g_a.down.3.weight", "h_a.4.weight", "mean_cc_transforms.0.4.weight"):
        if not src.has(key):
            raise CheckpointError(f"{src.label}: no tensor {key!r}: not a checkpoint of the official CCA model")
    widths = [src.shape(f"g_a.down.{i}.weight")[0] for i in range(3)]
    M, N = src.shape("g_a.down.3.weight")[0], src.shape("h_a.4.weight")[0]
    counts = [_stage_counts(src, f"g_a.blocks.{i}", decoder=False) for i in range(3)]
    res = {r for _, r in counts}
    if len(res) != 1:
        raise CheckpointError(f"{src.label}: residual blocks per stage differ ({[r for _, r in counts]})")
    K = _count(src, "mean_cc_transforms.", ".4.weight")
    sizes = [src.shape(f"mean_cc_transforms.{i}.4.weight")[0] for i in range(K)]
    if sum(sizes) != M:
        raise CheckpointError(f"{src.label}: channel groups {sizes} do not add up to M = {M}")
    if sizes == group_sizes(M, K, even=True):
        grouping = {"power": 1.7, "even_groups": True}
    else:
        # the official --prop-slices k: find the one (to 0.01) whose groups have these sizes, 1.7 first
        ks = [1.7] + [round(0.01 * i, 2) for i in range(1, 501)]
        k = next((k for k in ks if group_sizes(M, K, k) == sizes), None)
        if k is None:
            raise CheckpointError(f"{src.label}: channel groups {sizes} follow no power schedule i^k")
        grouping = {"power": k, "even_groups": False}
    return {
        "N": N, "M": M, "widths": widths, "naf_blocks": [n for n, _ in counts], "res_blocks": res.pop(),
        "hyper_width": src.shape("h_a.0.weight")[0], "num_groups": K, **grouping,
        "em_width": src.shape("mean_NAF_transforms.0.in_conv.weight")[0],
        "em_blocks": _count(src, "mean_NAF_transforms.0.blocks.", ".norm1.weight"),
        "head_widths": [src.shape("mean_cc_transforms.0.0.weight")[0], src.shape("mean_cc_transforms.0.2.weight")[0]],
        "use_cca": False,
    }


def map_state(state: dict, label: str):
    """(licodec model with the weights, its config, max |median|, tensors of the auxiliary model left out)."""
    src = Source(state, label)
    config = infer_config(src)
    try:
        model = create_model(MODEL, config)
    except ValueError as e:
        raise CheckpointError(f"{label}: the inferred config does not make a {MODEL} model ({e})") from None
    dst = Target(model)
    c = model.config
    w, M, N, H = list(c.widths), c.M, c.N, c.hyper_width
    dims = [3, *w, M]
    for i in range(4):
        map_conv(src, dst, f"g_a.down.{i}", f"g_a.{2 * i}", dims[i + 1], dims[i], 5)
    for i in range(3):
        for j in range(c.res_blocks):
            map_res(src, dst, f"g_a.blocks.{i}.{j}", f"g_a.{2 * i + 1}.{j}", w[i])
        for j in range(c.naf_blocks[i]):
            jj = c.res_blocks + j
            map_naf(src, dst, f"g_a.blocks.{i}.{jj}", f"g_a.{2 * i + 1}.{jj}", w[i])
    for i in range(4):  # up[i]: dims[4-i] -> dims[3-i]
        map_conv(src, dst, f"g_s.up.{i}", f"g_s.{2 * i}", dims[3 - i], dims[4 - i], 5, transposed=True)
    for i in range(3):  # blocks[i] works on width w[2-i]
        s = 2 - i
        if _stage_counts(src, f"g_s.blocks.{i}", decoder=True) != (c.naf_blocks[s], c.res_blocks):
            raise CheckpointError(f"{label}: g_s.blocks.{i} does not mirror g_a.blocks.{s}")
        for j in range(c.naf_blocks[s]):
            map_naf(src, dst, f"g_s.blocks.{i}.{j}", f"g_s.{2 * i + 1}.{j}", w[s])
        for j in range(c.res_blocks):
            jj = c.naf_blocks[s] + j
            map_res(src, dst, f"g_s.blocks.{i}.{jj}", f"g_s.{2 * i + 1}.{jj}", w[s])
    for k, (cin, cout, ks) in zip((0, 2, 4), ((M, H, 3), (H, H, 5), (H, N, 5))):
        map_conv(src, dst, f"h_a.{k}", f"h_a.{k}", cout, cin, ks)
    for off, ours in (("h_mean_s", "mean"), ("h_scale_s", "scale")):
        for k, (cin, cout, ks) in zip((0, 2, 4), ((N, H, 5), (H, H, 5), (H, M, 3))):
            map_conv(src, dst, f"{off}.{k}", f"h_s.{ours}.{k}", cout, cin, ks, transposed=True)
    sizes, E, (h1, h2) = model.group_sizes, c.em_width, c.head_widths
    for i in range(c.num_groups):
        cin = M + sum(sizes[:i])
        for off, ours in (("mean_NAF_transforms", "mean_naf_transforms"), ("scale_NAF_transforms", "scale_naf_transforms")):
            s, d = f"{off}.{i}", f"context_model.{ours}.{i}"
            map_conv(src, dst, f"{s}.in_conv", f"{d}.conv_in", E, cin, 1)
            map_conv(src, dst, f"{s}.out_conv", f"{d}.conv_out", cin, E, 1)
            for j in range(c.em_blocks):
                map_naf(src, dst, f"{s}.blocks.{j}", f"{d}.blocks.{j}", E)
        for off, ours, extra in (("mean_cc_transforms", "cc_mean_transforms", 0),
                                 ("scale_cc_transforms", "cc_scale_transforms", 0),
                                 ("lrp_transforms", "lrp_transforms", sizes[i])):
            s, d = f"{off}.{i}", f"context_model.{ours}.{i}"
            for k, (a, b) in zip((0, 2, 4), ((cin + extra, h1), (h1, h2), (h2, sizes[i]))):
                map_conv(src, dst, f"{s}.{k}", f"{d}.{k}", b, a, 3)
    max_median = map_entropy_bottleneck(src, dst, "z_entropy_bottleneck", "entropy_bottleneck", N)
    check_gaussian_conditional(src)
    aux = src.skip_prefix("aux_entropymodel.")  # the CCA loss's auxiliary model: training only
    src.finish()
    dst.load()
    return model.eval(), model.config_dict(), max_median, aux


def import_cca(checkpoint, output=None, quality: float | None = None, lmbda: float | None = None,
               force: bool = False) -> ImportResult:
    """Convert an official CCA checkpoint into a ``han2024-cca-official`` weight file (default: in
    the user weight folder). ``quality`` 1..8 names the rate point on licodec's scale (the CCA
    authors train at CompressAI's λ ladder); ``lmbda`` overrides the λ recorded."""
    if quality is None:
        raise CheckpointError("pass --quality Q (1..8): a CCA checkpoint does not record its λ")
    try:
        quality = check_quality(quality)
    except ValueError as e:
        raise CheckpointError(str(e)) from None
    if lmbda is None and float(quality).is_integer():
        lmbda = LAMBDAS[int(quality)]
    if lmbda is not None and not (math.isfinite(lmbda) and lmbda > 0):
        raise CheckpointError(f"λ must be a positive number, got {lmbda}")
    checkpoint = Path(checkpoint)
    state, digest = read_checkpoint(checkpoint)
    model, config, max_median, aux = map_state(state, str(checkpoint))
    out = Path(output) if output else user_weights_dir() / f"{MODEL}-q{quality:g}.safetensors"
    if out.exists() and not force:
        raise CheckpointError(f"{out}: exists (pass --force to overwrite)")
    extra = {"source": "cca-official", "architecture": "LICAutoencoder (LabShuHangGU/CCA)", "quality": quality,
             "lambda": lmbda, "source_file": checkpoint.name, "source_sha256": digest,
             "aux_tensors_dropped": aux, "max_abs_median": round(max_median, 6)}
    write(model, out, quality, lmbda, extra)
    return ImportResult(out, MODEL, config, extra)
