"""Make the CompressAI fixtures of tests/importers (tests/fixtures/import/): run in a scratch venv
with CompressAI installed, never in licodec's own environment.

    python3 -m venv /tmp/caivenv
    /tmp/caivenv/bin/pip install --no-deps torch-2.13.0+cpu-…whl   # or torch==2.14.1 with its CUDA deps
    /tmp/caivenv/bin/pip install --no-deps compressai
    /tmp/caivenv/bin/pip install tqdm requests pandas scipy einops pytorch_msssim torch_geometric safetensors
    /tmp/caivenv/bin/python scripts/make_import_fixtures.py tests/fixtures/import

For each architecture it builds CompressAI's own model at a tiny size (N = 4, M = 6) with random
weights — the GDN parameters, the factorized prior and its quantiles (hence non-integer medians)
perturbed too, so that every tensor the importer maps carries information — and saves:

- ``<arch>.pth[.tar]``: the state dict as a CompressAI user has it (one as a training checkpoint
  ``{"state_dict": …}`` with DataParallel's ``module.`` prefix, one with the old ``_matrix0`` key names);
- ``<arch>-outputs.safetensors``: the fixed input x (as uint8 ``x8``, x = x8 / 255) and CompressAI's eval-mode forward outputs
  (x_hat, likelihoods y and z, and y = g_a(x)).

torchvision is only used by CompressAI's data-transform registry; where the installed one does not
load beside this torch, an empty stand-in module is used (the models do not touch it).
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import torch


def _import_compressai():
    try:
        import torchvision.transforms  # noqa: F401
    except Exception:  # a torchvision built for another torch: CompressAI's models never use it
        for n in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[n]
        tv, tvt = types.ModuleType("torchvision"), types.ModuleType("torchvision.transforms")
        tv.transforms = tvt
        sys.modules.update({"torchvision": tv, "torchvision.transforms": tvt})
    import compressai
    from compressai import models

    return compressai, models


N, M = 4, 6
ARCHS = {  # arch -> (CompressAI class name, input size, how the file is saved)
    "bmshj2018-hyperprior": ("ScaleHyperprior", (64, 64), "plain"),
    "mbt2018-mean": ("MeanScaleHyperprior", (64, 64), "checkpoint"),
    "mbt2018": ("JointAutoregressiveHierarchicalPriors", (64, 64), "old-names"),
}


@torch.no_grad()
def randomize(net, g: torch.Generator) -> None:
    for name, mod in net.named_modules():
        if type(mod).__name__ == "GDN":
            c = mod.beta.shape[0]
            mod.beta.copy_(torch.sqrt(0.5 + torch.rand(c, generator=g)))
            mod.gamma.copy_(torch.sqrt(0.1 * torch.eye(c) + 0.05 * torch.rand(c, c, generator=g)))
    eb = net.entropy_bottleneck
    for p in [*eb.matrices, *eb.biases, *eb.factors]:
        p.add_(0.3 * torch.randn(p.shape, generator=g))
    c = eb.quantiles.shape[0]
    med = 3 * (2 * torch.rand(c, generator=g) - 1)  # medians in (-3, 3), not integers
    eb.quantiles.copy_(torch.stack([med - 6, med, med + 6], dim=1).view(c, 1, 3))
    # CompressAI's random init gives |y| < 0.3 (ŷ = 0 everywhere, likelihoods ~1): scale the layers that
    # make y, z and the Gaussian parameters so that the latents take many values (|y| ~ 5, σ ~ 0.1..10)
    gains = {"g_a.6": 25.0, "h_a.4": 40.0, "h_s.0": 3.0, "h_s.2": 3.0, "h_s.4": 10.0, "entropy_parameters.4": 30.0,
             "context_prediction": 4.0}
    for name, mod in net.named_modules():
        if name in gains:
            mod.weight.mul_(gains[name])
    M = net.h_s[4].bias.shape[0] // (1 if type(net).__name__ == "ScaleHyperprior" else 2)
    net.h_s[4].bias[:M].add_(0.5)  # σ (the first M channels): mostly above CompressAI's bound 0.11
    if hasattr(net, "entropy_parameters"):
        net.entropy_parameters[4].bias[:M].add_(3.0)
    for name, p in net.named_parameters():  # the convolutions: CompressAI's random init, a bit larger
        if name.endswith(".bias") and not name.startswith("entropy_bottleneck"):
            p.add_(0.05 * torch.randn(p.shape, generator=g))


def main(out: str) -> None:
    compressai, models = _import_compressai()
    from safetensors.torch import save_file

    d = Path(out)
    d.mkdir(parents=True, exist_ok=True)
    for i, (arch, (cls_name, (h, w), how)) in enumerate(ARCHS.items()):
        torch.manual_seed(100 + i)
        g = torch.Generator().manual_seed(200 + i)
        net = getattr(models, cls_name)(N=N, M=M)
        randomize(net, g)
        net.entropy_bottleneck.update(force=True)  # fills its CDF buffers, as a zoo file has them
        net.eval()
        x8 = torch.randint(0, 256, (1, 3, h, w), generator=g, dtype=torch.uint8)
        x = x8.float() / 255  # stored as uint8 (small fixtures); the input is x8 / 255
        with torch.no_grad():
            out_net = net(x)
            y = net.g_a(x)
        state = {k: v.clone() for k, v in net.state_dict().items()}
        if how == "checkpoint":
            path = d / f"{arch}.pth.tar"
            torch.save({"epoch": 3, "loss": 1.5, "state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
        elif how == "old-names":
            path = d / f"{arch}.pth.tar"
            ren = {"matrices": "_matrix", "biases": "_bias", "factors": "_factor"}
            old = {}
            for k, v in state.items():
                parts = k.split(".")
                if parts[0] == "entropy_bottleneck" and len(parts) == 3 and parts[1] in ren:
                    k = f"entropy_bottleneck.{ren[parts[1]]}{parts[2]}"
                old[k] = v
            torch.save(old, path)
        else:
            path = d / f"{arch}.pth"
            torch.save(state, path)
        save_file({"x8": x8, "x_hat": out_net["x_hat"].contiguous(), "lik_y": out_net["likelihoods"]["y"].contiguous(),
                   "lik_z": out_net["likelihoods"]["z"].contiguous(), "y": y.contiguous()},
                  str(d / f"{arch}-outputs.safetensors"),
                  metadata={"compressai": compressai.__version__, "torch": torch.__version__, "class": cls_name,
                            "N": str(N), "M": str(M)})
        print(f"{arch}: {path.name} ({path.stat().st_size} bytes), compressai {compressai.__version__}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/import")
