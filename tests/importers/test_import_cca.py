"""Official CCA checkpoints (LabShuHangGU/CCA, ``models/vae.py``'s ``LICAutoencoder``).

The official model cannot be built here (its code is not a package and is not copied into this
project), so these tests use synthetic checkpoints whose key names and shapes are those of the
official code — written out below from reading it (`official_state`) — at a tiny width and, shapes
only, at the paper's full size. They check the mapping (every official tensor lands in exactly one
licodec tensor, config inferred), the errors, and a .lic round trip; not numerical fidelity to the
official forward pass, which needs the official code."""

import dataclasses
import math

import numpy as np
import pytest
import torch

from licodec.codec import Codec, decode
from licodec.importers import CheckpointError
from licodec.importers.cca import MODEL, import_cca, infer_config
from licodec.importers.common import Source
from licodec.models.cca import CCAConfig
from licodec.weights import load_weights


def official_state(M=24, ae_dim=(8, 8, 8), ae_layers=(1, 1, 1), em_dim=8, em_layers=1, prop=1.7, slices=3,
                   N=192, head=(224, 128), aux=True, device="cpu", seed=0):
    """{key: tensor} with the official names and shapes (random values; ``device="meta"``: shapes only)."""
    g = torch.Generator().manual_seed(seed)
    sd = {}

    def t(*shape):
        if device == "meta":
            return torch.empty(shape, device="meta")
        return 0.1 * torch.randn(shape, generator=g)

    def conv(p, cout, cin, k):
        sd[f"{p}.weight"], sd[f"{p}.bias"] = t(cout, cin, k, k), t(cout)

    def deconv(p, cin, cout, k):
        sd[f"{p}.weight"], sd[f"{p}.bias"] = t(cin, cout, k, k), t(cout)

    def naf(p, c):
        conv(f"{p}.dwconv.0", 2 * c, c, 1)
        sd[f"{p}.dwconv.1.weight"], sd[f"{p}.dwconv.1.bias"] = t(2 * c, 1, 3, 3), t(2 * c)
        conv(f"{p}.sca.1", c, c, 1)
        conv(f"{p}.FFN.0", 2 * c, c, 1)
        conv(f"{p}.FFN.2", c, c, 1)
        for n in ("norm1", "norm2"):
            sd[f"{p}.{n}.weight"], sd[f"{p}.{n}.bias"] = 1 + t(c), t(c)
        conv(f"{p}.conv1", c, c, 1)
        sd[f"{p}.beta"], sd[f"{p}.gamma"] = t(1, c, 1, 1), t(1, c, 1, 1)

    def rbb(p, c):
        conv(f"{p}.conv1", c // 2, c, 1)
        conv(f"{p}.conv2", c // 2, c // 2, 3)
        conv(f"{p}.conv3", c, c // 2, 1)

    props = [1] + [i ** prop for i in range(2, slices + 1)]
    sizes = [math.floor(M / sum(props) * p) for p in props]
    sizes[-1] += M - sum(sizes)
    dims = [3, *ae_dim, M]
    for i in range(4):
        conv(f"g_a.down.{i}", dims[i + 1], dims[i], 5)
    for i in range(3):
        for j in range(3):
            rbb(f"g_a.blocks.{i}.{j}", ae_dim[i])
        for j in range(ae_layers[i]):
            naf(f"g_a.blocks.{i}.{3 + j}", ae_dim[i])
    for n, i in enumerate(reversed(range(4))):
        deconv(f"g_s.up.{n}", dims[i + 1], dims[i], 5)
    for n, i in enumerate(reversed(range(3))):
        for j in range(ae_layers[i]):
            naf(f"g_s.blocks.{n}.{j}", ae_dim[i])
        for j in range(3):
            rbb(f"g_s.blocks.{n}.{ae_layers[i] + j}", ae_dim[i])
    a2 = ae_dim[2]
    conv("h_a.0", a2, M, 3)
    conv("h_a.2", a2, a2, 5)
    conv("h_a.4", N, a2, 5)
    for h in ("h_mean_s", "h_scale_s"):
        deconv(f"{h}.0", N, a2, 5)
        deconv(f"{h}.2", a2, a2, 5)
        deconv(f"{h}.4", a2, M, 3)
    for i in range(slices):
        cin = M + sum(sizes[:i])
        for b in ("mean_NAF_transforms", "scale_NAF_transforms"):
            conv(f"{b}.{i}.in_conv", em_dim, cin, 1)
            conv(f"{b}.{i}.out_conv", cin, em_dim, 1)
            for j in range(em_layers):
                naf(f"{b}.{i}.blocks.{j}", em_dim)
        for b, extra in (("mean_cc_transforms", 0), ("scale_cc_transforms", 0), ("lrp_transforms", sizes[i])):
            conv(f"{b}.{i}.0", head[0], cin + extra, 3)
            conv(f"{b}.{i}.2", head[1], head[0], 3)
            conv(f"{b}.{i}.4", sizes[i], head[1], 3)
    e = "z_entropy_bottleneck"  # CompressAI 1.2's EntropyBottleneck(192), filters (3, 3, 3, 3)
    fd = (1, 3, 3, 3, 3, 1)
    for k in range(5):
        sd[f"{e}.matrices.{k}"] = t(N, fd[k + 1], fd[k])
        sd[f"{e}.biases.{k}"] = t(N, fd[k + 1], 1)
        if k < 4:
            sd[f"{e}.factors.{k}"] = t(N, fd[k + 1], 1)
    med = t(N) if device == "meta" else torch.rand(N, generator=g) - 0.5
    sd[f"{e}.quantiles"] = t(N, 1, 3) if device == "meta" else torch.stack([med - 5, med, med + 5], 1).view(N, 1, 3)
    for b in ("_offset", "_quantized_cdf", "_cdf_length"):
        sd[f"{e}.{b}"] = torch.zeros(0, dtype=torch.int32)
    sd[f"{e}.target"] = torch.tensor([-21.4164, 0.0, 21.4164])
    sd[f"{e}.likelihood_lower_bound.bound"] = torch.tensor([1e-9])
    for b in ("_offset", "_quantized_cdf", "_cdf_length"):
        sd[f"gaussian_conditional.{b}"] = torch.zeros(0, dtype=torch.int32)
    sd["gaussian_conditional.scale_table"] = torch.zeros(0)
    sd["gaussian_conditional.scale_bound"] = torch.tensor([0.11])
    sd["gaussian_conditional.likelihood_lower_bound.bound"] = torch.tensor([1e-9])
    sd["gaussian_conditional.lower_bound_scale.bound"] = torch.tensor([0.11])
    if aux:  # the CCA loss's auxiliary model (a few of its tensors): training only
        conv("aux_entropymodel.mean_NAF_transforms.0.in_conv", em_dim, M, 1)
        sd["aux_entropymodel.y_entropy_bottleneck.quantiles"] = t(M, 1, 3)
    return sd, sizes


TINY = dict(M=24, ae_dim=(8, 10, 12), ae_layers=(1, 0, 2), em_dim=8, em_layers=2, prop=1.7, slices=3, N=8,
            head=(12, 6))


def save_official(path, sd):
    torch.save({"epoch": 10, "state_dict": {f"module.{k}": v for k, v in sd.items()}}, path)  # as train.py saves


def test_tiny_checkpoint_maps_every_tensor_once(tmp_path):
    sd, sizes = official_state(**TINY)
    save_official(tmp_path / "cca.pth.tar", sd)
    r = import_cca(tmp_path / "cca.pth.tar", tmp_path / "w.safetensors", quality=4)
    model, info = load_weights(r.path)
    assert info["model"] == MODEL and model.group_sizes == sizes
    c = info["config"]
    assert (c["M"], c["N"], c["widths"], c["naf_blocks"], c["res_blocks"], c["hyper_width"]) == (24, 8, [8, 10, 12], [1, 0, 2], 3, 12)
    assert (c["num_groups"], c["power"], c["em_width"], c["em_blocks"], c["head_widths"], c["use_cca"]) == (3, 1.7, 8, 2, [12, 6], False)
    # every official tensor (the aux model's, buffers and CDF tables aside) is one licodec tensor
    ours = {tuple(v.flatten()[:6].tolist()) + (tuple(v.shape),): k for k, v in model.state_dict().items()
            if v.numel() >= 6}
    used = set()
    for k, v in sd.items():
        if k.startswith("aux_entropymodel.") or not v.is_floating_point() or v.numel() < 6 or "quantiles" in k:
            continue
        key = tuple(v.flatten()[:6].tolist()) + (tuple(v.shape),)
        assert key in ours, f"official {k} not found in the licodec weights"
        used.add(ours[key])
    assert used == {k for k, v in model.state_dict().items() if v.numel() >= 6 and not k.endswith("medians")}
    assert torch.equal(model.entropy_bottleneck.medians, sd["z_entropy_bottleneck.quantiles"][:, 0, 1])
    assert r.extra["aux_tensors_dropped"] == 3 and r.extra["source"] == "cca-official"


def test_tiny_checkpoint_codes_lic(tmp_path):
    sd, _ = official_state(**TINY)
    save_official(tmp_path / "cca.pth", sd)
    r = import_cca(tmp_path / "cca.pth", tmp_path / "w.safetensors", quality=2)
    rgb = (np.random.default_rng(1).random((64, 64, 3)) * 255).astype(np.uint8)
    data = Codec.from_weights(r.path).encode(rgb)
    back, header = decode(data, weights=r.path)
    assert back.shape == rgb.shape and header.model == MODEL


def test_full_size_key_list_infers_the_paper_config():
    """The paper's model (official defaults: M 320, ae_dim 192/224/256, 4 NAF + 3 residual blocks per
    stage, em_dim 224, 4 NAF blocks, k = 1.7, heads 224/128), shapes only."""
    sd, sizes = official_state(M=320, ae_dim=(192, 224, 256), ae_layers=(4, 4, 4), em_dim=224, em_layers=4,
                               prop=1.7, slices=5, N=192, head=(224, 128), aux=False, device="meta")
    assert sizes == [8, 28, 56, 92, 136]
    cfg = infer_config(Source(sd, "full"))
    want = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(CCAConfig()).items()}
    assert set(want) - set(cfg) == {"rate_levels", "alpha"}  # their defaults: fixed rate; alpha is training-only
    assert cfg == {k: want[k] for k in cfg} | {"use_cca": False}
    from licodec.models import create_model
    with torch.device("meta"):
        model = create_model(MODEL, cfg)
    n_official = sum(v.numel() for k, v in sd.items() if v.is_floating_point() and "quantiles" not in k
                     and not k.endswith(("bound", "target", "scale_table")))
    n_ours = sum(v.numel() for k, v in model.state_dict().items() if not k.endswith("medians"))
    assert n_official == n_ours


@pytest.mark.parametrize("edit, needle", [
    (lambda sd: sd.pop("g_s.blocks.1.0.conv1.weight"), "g_s.blocks.1"),
    (lambda sd: sd.pop("lrp_transforms.2.4.bias"), "'lrp_transforms.2.4.bias' is missing"),
    (lambda sd: sd.update({"g_a.down.1.bias": torch.zeros(3)}), "'g_a.down.1.bias' has shape [3]"),
    (lambda sd: sd.update({"z_entropy_bottleneck.matrices.5": torch.zeros(8, 1, 1)}), "more layers"),
    (lambda sd: sd.update({"other.weight": torch.zeros(1)}), "unexpected tensor(s) 'other.weight'"),
    (lambda sd: sd.pop("g_a.down.0.weight"), "not a checkpoint of the official CCA model"),
])
def test_bad_checkpoints(edit, needle, tmp_path):
    sd, _ = official_state(**TINY)
    edit(sd)
    save_official(tmp_path / "bad.pth", sd)
    with pytest.raises(CheckpointError) as e:
        import_cca(tmp_path / "bad.pth", tmp_path / "w.safetensors", quality=3)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_a_compressai_checkpoint_is_not_cca(tmp_path):
    from pathlib import Path

    fx = Path(__file__).resolve().parents[1] / "fixtures" / "import" / "mbt2018.pth.tar"
    with pytest.raises(CheckpointError, match="not a checkpoint of the official CCA model"):
        import_cca(fx, tmp_path / "w.safetensors", quality=3)
    with pytest.raises(CheckpointError, match="pass --quality"):
        import_cca(fx, tmp_path / "w.safetensors")
