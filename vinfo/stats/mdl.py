"""Prequential (online) MDL codelength of the targets given the representation.

Following Blier & Ollivier (2018) and Voita & Titov (2020): order the samples, cut the order
into blocks at 0 < t_1 < t_2 < ... < N, and transmit block after block, each with a probe
trained only on the blocks before it::

    L_preq = L_ref(block 0) + sum_k L_{f_k}(block k)         bits (total)
    L_f(B) = sum over the valid values of B of -log2 f[z](y)

f_k is the family's conditional probe fitted on the samples before block k (with its own
fit/validation split for early stopping, as every probe here) and scored with its *learned*
scale — profiling a scale on the block being sent would not be a code. Block 0 has no probe:
it is sent with the uniform code (categorical: log2 K bits per value; discretized: 8 bits per
sub-pixel) or, for gaussian/laplace targets, with the block's own marginal Gaussian/Laplace
fit (its few parameters are not charged). Codelengths of continuous targets are
differential: relative to a quantisation step of one target unit, and may be negative.

The estimator orders the fold-0 training pool by the first refit seed and appends the
evaluation split as the last block, so the whole data set is transmitted; the last block is
sent with the main fit (trained on the whole pool). A smaller codelength at equal I_V means
the information is extractable from fewer samples (a simpler representation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from vinfo.probes.probe import Probe, ProbeData, split_stats
from vinfo.probes.targets import Target


@dataclass
class Codelength:
    """Codelength per target channel in nats [C] and the number of values it covers [C]."""

    nats: torch.Tensor
    count: torch.Tensor

    def __add__(self, other: Codelength) -> Codelength:
        return Codelength(self.nats + other.nats, self.count + other.count)

    @property
    def bits(self) -> float:
        """Total codelength in bits."""
        return float(self.nats.sum()) / math.log(2.0)

    @property
    def bits_per_unit(self) -> float:
        """Bits per unit: per channel bits per value, summed over channels (see vinfo.stats.pvi)."""
        return float((self.nats / self.count.clamp_min(1)).sum()) / math.log(2.0)


def block_codelength(
    probe: Probe, target: Target, data: ProbeData, idx: np.ndarray, batch_size: int
) -> Codelength:
    """Codelength of samples ``idx`` under ``probe`` with its learned scale."""
    stats = split_stats(probe, target, data, idx, batch_size)
    stat, count = stats.stat.sum(0), stats.count.sum(0)
    scale = None if probe.log_scale is None else target.scale_from_log(probe.log_scale)
    nats = target.nll_from_stat(stat.reshape(1, -1), count.reshape(1, -1), scale).reshape(-1)
    return Codelength(nats, count)


def reference_codelength(target: Target, data: ProbeData, idx: np.ndarray) -> Codelength:
    """Codelength of samples ``idx`` under the uniform / own-marginal code (see above)."""
    b = torch.as_tensor(np.asarray(idx), device=data.y.device)
    y, mask = data.y[b].cpu(), data.mask[b].cpu()
    dims = [d for d in range(mask.dim()) if d != 1]
    return Codelength(target.reference_code_nats(y, mask), mask.double().sum(dims))
