"""Models whose weights come from elsewhere (`licodec.importers`): CompressAI's zoo and the CCA authors.

They are the registered architectures they name, with the one part where CompressAI (which the
CCA code also builds on) differs from ours: the factorized prior of z. CompressAI's
``EntropyBottleneck`` has four hidden layers of 3 (``filters=(3, 3, 3, 3)``; ours three) and
quantizes z around per-channel medians (the middle of its learned ``quantiles``):
ẑ = round(z − m) + m, in the forward pass and when coding. `MedianFactorizedPrior` does both,
with the medians stored as a buffer, so that imported weights reproduce CompressAI's outputs;
the coded support is [−Z_RANGE, Z_RANGE] around the medians. Everything else (transforms,
Gaussian conditional, context models, exact entropy parameters, streams) is the base model's.

- ``compressai-bmshj2018-hyperprior``: `ScaleHyperprior` (CompressAI ``ScaleHyperprior``)
- ``compressai-mbt2018-mean``: `MeanScaleHyperprior` (CompressAI ``MeanScaleHyperprior``)
- ``compressai-mbt2018``: `SerialContextModel` with M2 = 0 (CompressAI
  ``JointAutoregressiveHierarchicalPriors``); like lee2019-ctx it codes ŷ = round(y), the ŷ that
  CompressAI's forward pass (hence its training) gives the context and the synthesis
- ``han2024-cca-official``: `HanCCA` without the auxiliary model (the official ``LICAutoencoder``)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from ..entropy.coder import CodingError, RangeDecoder, RangeEncoder, TableSet
from ..entropy.factorized import LIKELIHOOD_MIN, Z_RANGE, FactorizedPrior
from ..entropy.quantize import quantize
from ..layers.bound import lower_bound
from ..registry import register_model
from .cca import CCAConfig, HanCCA
from .context import SerialContextConfig, SerialContextModel
from .hyperprior import MeanScaleHyperprior, ScaleHyperprior

COMPRESSAI_FILTERS = (3, 3, 3, 3)  # compressai.entropy_models.EntropyBottleneck's default


class MedianFactorizedPrior(FactorizedPrior):
    """`FactorizedPrior` with CompressAI's layer count and quantization around the medians m (C,)."""

    def __init__(self, channels: int, filters: tuple[int, ...] = COMPRESSAI_FILTERS) -> None:
        super().__init__(channels, filters)
        self.register_buffer("medians", torch.zeros(channels))

    def _m(self, like: Tensor) -> Tensor:
        return self.medians.to(like).view(1, -1, 1, 1)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        m = self._m(z)
        soft_round = getattr(self, "soft_round", None)  # encoder effort's stand-in for rounding, where it exists
        if self.training:
            z_rate, z_hat = quantize(z, "noise"), quantize(z, "ste", m)
        elif soft_round is not None:
            z_rate = z_hat = soft_round(z - m) + m
        else:
            z_rate = z_hat = quantize(z, "round", m)
        b, c, h, w = z.shape
        flat = z_rate.permute(1, 0, 2, 3).reshape(c, 1, -1)
        lik = self._likelihood(flat).reshape(c, b, h, w).permute(1, 0, 2, 3)
        return z_hat, lower_bound(lik, LIKELIHOOD_MIN)

    @torch.no_grad()
    def table_pmfs(self) -> np.ndarray:
        k = torch.arange(-Z_RANGE, Z_RANGE + 1, dtype=torch.float64)
        x = k.view(1, 1, -1) + self.medians.detach().double().cpu().view(-1, 1, 1)  # (C, 1, n): k + m_c
        return self._likelihood(x)[:, 0, :].numpy()

    def compress(self, enc: RangeEncoder, z: Tensor, tables: TableSet) -> Tensor:
        idx = self._indices(z.shape)
        z = z.detach().float()
        if not bool(torch.isfinite(z).all()):
            raise CodingError("the hyper-latent z is not finite (NaN or inf: weights that overflow)")
        m = self._m(z)
        sym = tables.clamp(torch.round(z - m).cpu().numpy().astype(np.int64), idx)
        tables.encode(enc, sym, idx)
        return torch.from_numpy(sym).float().to(z.device) + m

    def decompress(self, dec: RangeDecoder, shape, tables: TableSet, device) -> Tensor:
        sym = tables.decode(dec, self._indices(shape))
        z = torch.from_numpy(sym).float().to(device)
        return z + self._m(z)


def _with_compressai_prior(model: nn.Module, channels: int) -> None:
    model.entropy_bottleneck = MedianFactorizedPrior(channels)


@register_model("compressai-bmshj2018-hyperprior")
class CompressAIScaleHyperprior(ScaleHyperprior):
    """Ballé et al. 2018 scale hyperprior with CompressAI's z prior (weights imported from CompressAI)."""

    def __init__(self, config) -> None:
        super().__init__(config)
        _with_compressai_prior(self, config.N)


@register_model("compressai-mbt2018-mean")
class CompressAIMeanScaleHyperprior(MeanScaleHyperprior):
    """Minnen et al. 2018 mean-scale hyperprior with CompressAI's z prior (weights imported from CompressAI)."""

    def __init__(self, config) -> None:
        super().__init__(config)
        _with_compressai_prior(self, config.N)


@register_model("compressai-mbt2018")
class CompressAIJointAutoregressive(SerialContextModel):
    """Minnen et al. 2018 joint autoregressive + hyperprior model with CompressAI's z prior (weights imported from CompressAI)."""

    config_cls = SerialContextConfig

    def __init__(self, config: SerialContextConfig) -> None:
        if config.M2 or config.random_mask:
            raise ValueError("compressai-mbt2018 has no hybrid channels (M2 = 0) and no random mask")
        super().__init__(config)
        _with_compressai_prior(self, config.N)


@dataclass
class OfficialCCAConfig(CCAConfig):
    """`CCAConfig` (defaults: the paper's model) without the training-only auxiliary model."""

    use_cca: bool = False


@register_model("han2024-cca-official")
class OfficialCCA(HanCCA):
    """Han et al. 2024 (CCA) as the official code builds it, CompressAI's z prior (weights imported from the CCA authors)."""

    config_cls = OfficialCCAConfig

    def __init__(self, config: OfficialCCAConfig) -> None:
        if config.use_cca:
            raise ValueError("han2024-cca-official holds coding weights only: use_cca must be false")
        super().__init__(config)
        _with_compressai_prior(self, config.N)
