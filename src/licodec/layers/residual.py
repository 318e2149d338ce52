"""Residual bottleneck block (He et al. 2022, ELIC, fig. 5), as used in the transforms of Han et al. 2024.

    x ─┬─ 1x1 (→ c/2) ─ ReLU ─ 3x3 ─ ReLU ─ 1x1 (→ cout) ─(+)─> out
       └────────────────── skip (1x1 if cin != cout) ──────┘
"""

from __future__ import annotations

from torch import Tensor, nn


class ResidualBottleneckBlock(nn.Module):
    def __init__(self, cin: int, cout: int | None = None) -> None:
        super().__init__()
        cout = cin if cout is None else cout
        mid = min(cin, cout) // 2
        if mid < 1:
            raise ValueError(f"ResidualBottleneckBlock needs at least 2 channels, got {cin} -> {cout}")
        self.body = nn.Sequential(
            nn.Conv2d(cin, mid, 1), nn.ReLU(inplace=True),
            nn.Conv2d(mid, mid, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(mid, cout, 1),
        )
        self.skip = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.skip(x) + self.body(x)
