"""The ELIC residual bottleneck block, and a stack of them (shape-preserving)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from taskcodecs.layers.checks import check_positive

__all__ = ["ResidualBlock", "residual_stack"]


class ResidualBlock(nn.Module):
    """ELIC residual bottleneck block: ``x + conv1x1(elu(conv3x3(elu(conv1x1(x)))))``.

    Design choice: like ELIC's ``ResidualBottleneckBlock`` the inner 1x1 and 3x3 convs run at
    ``hidden_ch`` = ``ch // 2`` channels (a bottleneck); ELU replaces ELIC's ReLU, as DESIGN
    §3 says. Pass ``hidden_ch=ch`` for a block without bottleneck. Shape is preserved:
    (n, ch, h, w) -> (n, ch, h, w).
    """

    def __init__(self, ch: int, hidden_ch: int | None = None) -> None:
        super().__init__()
        hidden_ch = max(1, ch // 2) if hidden_ch is None else hidden_ch
        check_positive(ch=ch, hidden_ch=hidden_ch)
        self.conv1 = nn.Conv2d(ch, hidden_ch, kernel_size=1)
        self.conv2 = nn.Conv2d(hidden_ch, hidden_ch, kernel_size=3, padding=1)
        self.conv3 = nn.Conv2d(hidden_ch, ch, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.elu(self.conv1(x))
        out = F.elu(self.conv2(out))
        return x + self.conv3(out)


def residual_stack(ch: int, num_blocks: int) -> nn.Sequential:
    """``num_blocks`` :class:`ResidualBlock` of width ``ch`` in sequence (0: the identity)."""
    return nn.Sequential(*(ResidualBlock(ch) for _ in range(num_blocks)))
