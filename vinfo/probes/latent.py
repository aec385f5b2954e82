"""Probe family for the target Ŷ_e: the enhancement's own conditional entropy model.

One member scores a decoded enhancement latent ŷ_e (what the codec's decoder reconstructs,
see :mod:`vinfo.adapter.enhancement`) given the base latent ŷ_b, in bits, with the decoder's
own computation (teacher-forced: the masked context reads the decoded ŷ_e, as the decoder
does position by position)::

    ŷ_e (B, N, h, w) ─[checkerboard: ⊙ anchors]─▶ context_prediction (masked 5x5) ─┐
    ŷ_b (B, C_b, h, w) ─× g─▶ side_branch ─ − side_branch(0) + c ──────────────────┴─ concat
        ─▶ entropy_parameters (1x1 convs, ELU) ─▶ σ, μ
        bits = −log2 [Φ((s + ½)/σ) − Φ((s − ½)/σ)],  s = ⌊ŷ_e − μ⌉,  σ ≥ 0.11, p ≥ 1e-9

The side pathway enters through a scalar gate g (0 for the null, initialised 0 for a
conditional rung) and is centred: side_branch(g·ŷ_b) − side_branch(0) + c, with 0 the zero
map of ŷ_b's shape and c a learned (2N, h, w) map. The codec's standalone features
side_branch(0) are not spatially constant (its 3x3 convs zero-pad), so c is a free map: the
null (features c) contains the codec's standalone flavour and has positional freedom
(optional ignorance, DESIGN §2); the conditional family is the codec's plus that free map
(the gate is a reparametrisation), and a conditional rung started from the null's weights
*is* the null at step 0 (DESIGN §7: one null, nested rungs). On the codec's own weights (g = 1, c =
side_branch(0)) a member gives the codec's decode-time estimated bits exactly.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vinfo.adapter.enhancement import entropy_family

__all__ = ["LatentProbe"]


class LatentProbe(nn.Module):
    """A member of the Ŷ_e family; ``conditional=False`` is the null (ignores ŷ_b)."""

    def __init__(self, N: int, side_channels: int, side_blocks: int, context: str,
                 conditional: bool, size: tuple[int, int]) -> None:
        super().__init__()
        self.model = entropy_family(N, side_channels, side_blocks, context)
        self.conditional = bool(conditional)
        self.size = (int(size[0]), int(size[1]))
        self.gate = nn.Parameter(torch.zeros(()), requires_grad=self.conditional)
        with torch.no_grad():
            constant = self._side_zero()
        self.constant = nn.Parameter(constant.clone())
        self.spec = {"N": N, "side_channels": side_channels, "side_blocks": side_blocks,
                     "context": context, "size": self.size}

    def _side_zero(self) -> Tensor:
        m = self.model
        zeros = torch.zeros(1, m.side_channels, *self.size, device=self.device)
        return m.side_branch(zeros)[0]

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def load_codec_state(self, state: dict[str, Tensor]) -> None:
        """The codec's own entropy model: its weights, g = 1, c = side_branch(0)."""
        self.model.load_state_dict(state)
        with torch.no_grad():
            self.gate.fill_(1.0 if self.conditional else 0.0)
            self.constant.copy_(self._side_zero())

    def start_from_codec(self, state: dict[str, Tensor], codec_blocks: int) -> None:
        """Nest on the codec's own member (``state``, ``codec_blocks`` side blocks per stack):
        its blocks fill this probe's first ones, the extra residual blocks start as the
        identity (last conv zero), so at step 0 the probe *is* the codec's member."""
        extra = self.spec["side_blocks"] - int(codec_blocks)
        if extra < 0:
            raise ValueError(f"a probe with {self.spec['side_blocks']} side blocks cannot hold "
                             f"the codec's {codec_blocks}")

        def renamed(key: str) -> str:
            parts = key.split(".")
            if parts[0] == "side_branch" and int(parts[1]) >= codec_blocks:
                parts[1] = str(int(parts[1]) + extra)
            return ".".join(parts)

        own = self.model.state_dict()
        own.update({renamed(k): v for k, v in state.items()})
        self.model.load_state_dict(own)
        blocks = self.spec["side_blocks"]
        with torch.no_grad():
            for index in [*range(codec_blocks, blocks),
                          *range(blocks + 1 + codec_blocks, 2 * blocks + 1)]:
                block = self.model.side_branch[index]
                block.conv3.weight.zero_()
                block.conv3.bias.zero_()
            self.gate.fill_(1.0)
            self.constant.copy_(self._side_zero())

    def start_from_null(self, null: LatentProbe) -> None:
        """Nest on ``null``: copy its context and parameter network and its constant c (the
        side branch keeps its own init where the architectures differ); g = 0."""
        own = self.model.state_dict()
        shared = {k: v for k, v in null.model.state_dict().items()
                  if k in own and own[k].shape == v.shape
                  and (not k.startswith("side_branch") or null.spec == self.spec)}
        own.update(shared)
        self.model.load_state_dict(own)
        with torch.no_grad():
            self.gate.zero_()
            self.constant.copy_(null.constant)

    def features(self, zb: Tensor | None, like: Tensor) -> Tensor:
        """Side features (B, 2N, h, w): c, plus the centred pathway on g·ŷ_b."""
        if tuple(like.shape[-2:]) != self.size:
            raise ValueError(f"latent size {tuple(like.shape[-2:])} differs from the probe's "
                             f"{self.size}")
        out = self.constant.unsqueeze(0).expand(like.shape[0], -1, -1, -1)
        if not self.conditional or zb is None:
            return out
        branch = self.model.side_branch
        zeros = torch.zeros(1, *zb.shape[1:], device=zb.device, dtype=zb.dtype)
        return out + branch(self.gate * zb) - branch(zeros)

    def bits(self, ye: Tensor, zb: Tensor | None) -> Tensor:
        """(B,) bits of each ŷ_e (module docstring); differentiable in the parameters."""
        m = self.model
        context_input = ye
        if m.context == "checkerboard":
            h, w = ye.shape[-2:]
            rows = torch.arange(h, device=ye.device).view(-1, 1)
            cols = torch.arange(w, device=ye.device).view(1, -1)
            context_input = ye * ((rows + cols) % 2 == 0).to(ye.dtype)
        feats = torch.cat([m.context_prediction(context_input), self.features(zb, ye)], 1)
        scales, means = m.entropy_parameters(feats).chunk(2, dim=1)
        y_hat = ye + (torch.round(ye - means) + means - ye).detach()
        likelihood = m._gaussian_likelihood(y_hat, scales, means)
        return -torch.log2(likelihood).flatten(1).sum(1)
