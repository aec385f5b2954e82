"""A probe (one family member), its inputs (:class:`ProbeData`) and its held-out statistics.

A probe is a *core* and, for a conditional member, a *Z pathway* (:mod:`vinfo.probes.families`).
The null is the core alone; a conditional member starts from its fitted null (the core's
parameters copied, the Z pathway's head at zero), so at step 0 it *is* its null
(:func:`vinfo.fit.loop.new_probe`).

Statistics (:func:`split_stats`) are per-sample, per-channel sums of the likelihood's
statistic (nats, squared or absolute errors; :mod:`vinfo.probes.targets`) and valid-value
counts, float64; their conversion to nats per unit is in :mod:`vinfo.stats.pvi`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from vinfo.probes.targets import Target


@dataclass
class ProbeData:
    """Inputs on one device: ``z`` [N, D] or [N, C_z, h, w] float32; ``y`` [N, C, ...]
    (int64 for categorical/discretized, float32 otherwise); ``mask`` bool like ``y``;
    ``stride`` the latent-to-target upsampling (None for vector representations)."""

    z: torch.Tensor
    y: torch.Tensor
    mask: torch.Tensor
    stride: int | None

    @property
    def dense(self) -> bool:
        return self.stride is not None


class Probe(nn.Module):
    """A family member: ``core`` (the null part), ``zpath`` (None for the null) and, for
    gaussian/laplace targets, the learned log-scale. ``forward(z, y, mask)`` gives the
    likelihood's parameters (``y`` is read only by autoregressive cores, causally, and may be
    left out for factorized ones);
    :meth:`stat` the per-value statistic."""

    def __init__(self, core: nn.Module, zpath: nn.Module | None,
                 log_scale: torch.Tensor | None, blind: bool = False) -> None:
        super().__init__()
        self.core = core
        self.zpath = zpath
        self.log_scale = None if log_scale is None else nn.Parameter(log_scale.clone())
        self.blind = blind  # the Z pathway is fed zeros: the null of a jointly trained member

    @property
    def null(self) -> bool:
        return self.zpath is None or self.blind

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """Parameters [B, P·C, ...]; ``y``/``mask`` may be omitted for factorized cores."""
        if self.zpath is None:
            features = None
        elif self.blind:  # Z zeroed: one fixed map, computed once and broadcast
            one = self.zpath(torch.zeros_like(z[:1]))
            features = one.expand(z.shape[0], *one.shape[1:])
        else:
            features = self.zpath(z)
        return self.core(features, y, mask, z.shape[0])

    def stat(self, z: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.core.stat(self(z, y, mask), y, mask)


@dataclass
class SplitStats:
    """Per-sample sums over one split: ``stat`` and ``count`` [n, C] float64, in ``idx`` order;
    ``maps`` holds the per-element statistic [C, H, W] of requested samples (by index)."""

    idx: np.ndarray
    stat: torch.Tensor
    count: torch.Tensor
    maps: dict[int, torch.Tensor] = field(default_factory=dict)
    map_masks: dict[int, torch.Tensor] = field(default_factory=dict)


def split_stats(
    probe: Probe, target: Target, data: ProbeData, idx: np.ndarray, batch_size: int,
    keep: tuple[int, ...] = (),
) -> SplitStats:
    """Statistics of ``probe`` on samples ``idx`` (no gradients), see :class:`SplitStats`."""
    stats, counts, maps, map_masks = [], [], {}, {}
    keep_set = set(int(k) for k in keep)
    probe.eval()
    with torch.no_grad():
        for start in range(0, len(idx), batch_size):
            b = torch.as_tensor(idx[start : start + batch_size], device=data.z.device)
            y, mask = data.y[b], data.mask[b]
            value = probe.stat(data.z[b], y, mask).double().cpu()
            mask = mask.cpu()
            dims = tuple(range(2, value.dim()))
            stats.append(value.sum(dims) if dims else value)
            counts.append(mask.double().sum(dims) if dims else mask.double())
            for row, sample in enumerate(b.tolist()):
                if sample in keep_set:
                    maps[sample], map_masks[sample] = value[row].clone(), mask[row].clone()
    return SplitStats(np.asarray(idx), torch.cat(stats), torch.cat(counts), maps, map_masks)


def heldout_nats(target: Target, stats: SplitStats) -> float:
    """Nats per unit on the split (scale profiled for gaussian/laplace; see vinfo.probes.targets)."""
    stat_sum, count = stats.stat.sum(0), stats.count.sum(0)
    scale = target.profile(stat_sum, count)
    nll = target.nll_from_stat(stat_sum.reshape(1, -1), count.reshape(1, -1), scale).reshape(-1)
    return float((nll / count.clamp_min(1)).sum())
