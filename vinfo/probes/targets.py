"""Targets: the output distributions of a probe family, with their losses in nats.

A probe maps a representation Z to the parameters of a distribution over the target Y.
Shapes (``...`` is ``()`` for per-sample targets and ``(H, W)`` for dense ones)::

    y     [B, C, ...]        C target channels (D values per sample, or C image channels)
    mask  [B, C, ...] bool   True where the value counts (ignore index / invalid disparity
                             are False); the same mask applies to the null and the conditional
    out   [B, C·P, ...]      the probe's raw output, P parameters per target channel

Kinds (P, what the probe outputs, what the loss statistic is)::

    categorical  P = K   logits over K classes          stat = -log p(y)            (nats)
    gaussian     P = 1   mean, variance homoscedastic    stat = (y - mean)^2         (sq. error)
    laplace      P = 1   location, scale homoscedastic   stat = |y - loc|            (abs. error)
    discretized  P = 2   mean and log-scale per value    stat = -log P(y) over the 256 bins of
                         (logistic or Gaussian, 8 bit)   an 8-bit value, in nats ("sub-pixel")

The per-element *statistic* is what probes accumulate. Its conversion to a negative
log-likelihood, ``nll_from_stat(stat, count, scale)``, is linear in (stat, count), so it works
on single elements and on per-sample sums alike. For gaussian/laplace the homoscedastic
scale (one per channel) is *learned* while fitting and *profiled* when scoring: the scored
split's MLE, ``scale = sum(stat) / sum(count)`` (the MSE, or the MAE). With it the held-out
loss is exactly ``1/2 log(2 pi e MSE)`` (``log(2 e MAE)``), so
``I_V = 1/2 log2(MSE_null / MSE_Z)`` bits (``log2(MAE_null / MAE_Z)``) holds to rounding.
The profiled scale is one number per channel fitted on the scored split; its optimism is
O(1 / number of scored values) and it cancels between the null and the conditional.

Parametrisation: continuous locations are ``loc_c + spread_c · out`` with ``loc``/``spread``
fixed per channel from all target values (a fixed affine map, so the family is unchanged),
which lets every probe start from a zero-initialised last layer whose bias is the
*marginal* solution (:meth:`Target.marginal_bias`) — at step 0 a probe equals the null.
Everything here is in nats; bits appear where results are reported (vinfo.stats.pvi, curves, mdl).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

KINDS = ("categorical", "gaussian", "laplace", "discretized")
LOGISTIC_STD = math.pi / math.sqrt(3.0)  # std of a standard logistic distribution
MIN_LOG_SCALE, MAX_LOG_SCALE = -7.0, 7.0  # discretized scale bounds, in 8-bit units (log)


def _channel_sums(
    values: torch.Tensor, mask: torch.Tensor, dtype: torch.dtype = torch.float64
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of ``values`` and count of valid elements per channel (dim 1)."""
    dims = [d for d in range(values.dim()) if d != 1]
    m = mask.to(dtype)
    return (values.to(dtype) * m).sum(dims), m.sum(dims)


def _per_channel(y: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
    """The valid values of each channel as 1-D float64 tensors."""
    return [y[:, c][mask[:, c]].to(torch.float64) for c in range(y.shape[1])]


def log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(-x)) for x > 0, accurate for small and large x."""
    return torch.where(x < math.log(2.0), torch.log(-torch.expm1(-x)), torch.log1p(-torch.exp(-x)))


@dataclass
class Target:
    """A target kind with its fixed parametrisation constants (see the module docstring).

    ``loc``/``spread`` ([C], float64) map raw outputs to target units; ``num_classes`` is K for
    categorical targets. Build one with :func:`make_target`.
    """

    kind: str
    channels: int
    loc: torch.Tensor
    spread: torch.Tensor
    num_classes: int = 0
    discretized_dist: str = "logistic"

    # ------------------------------------------------------------------ layout
    @property
    def params_per_channel(self) -> int:
        return {"categorical": self.num_classes, "gaussian": 1, "laplace": 1, "discretized": 2}[
            self.kind
        ]

    @property
    def out_channels(self) -> int:
        return self.channels * self.params_per_channel

    @property
    def has_scale(self) -> bool:
        """True for gaussian/laplace: a learned homoscedastic scale per channel."""
        return self.kind in ("gaussian", "laplace")

    def _split(self, out: torch.Tensor) -> torch.Tensor:
        """[B, C·P, ...] -> [B, C, P, ...]."""
        return out.reshape(out.shape[0], self.channels, self.params_per_channel, *out.shape[2:])

    def _view(self, vec: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """Per-channel constants [C] shaped to broadcast against [B, C, ...]."""
        return vec.to(like.device, like.dtype).reshape(1, -1, *([1] * (like.dim() - 2)))

    def location(self, out: torch.Tensor) -> torch.Tensor:
        """Continuous kinds: predicted location (mean) in target units, [B, C, ...]."""
        raw = self._split(out)[:, :, 0]
        return self._view(self.loc, raw) + self._view(self.spread, raw) * raw

    # ------------------------------------------------------------------ losses
    def stat(self, out: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Per-element loss statistic [B, C, ...] (see the table above), 0 where masked."""
        if self.kind == "categorical":
            safe = torch.where(mask, y, torch.zeros_like(y)).long()
            if out.shape[0] > 1 and out.stride(0) == 0:  # a null's broadcast output: one pass
                logp = F.log_softmax(self._split(out[:1]), dim=2).expand(
                    out.shape[0], *self._split(out[:1]).shape[1:])
                value = -logp.gather(2, safe.unsqueeze(2)).squeeze(2)
            else:  # [B, C·K, ...] -> [B·C, K, ...]: cross_entropy's fast path over dim 1
                logits = out.reshape(out.shape[0] * self.channels, self.num_classes, *out.shape[2:])
                value = F.cross_entropy(logits, safe.reshape(-1, *safe.shape[2:]),
                                        reduction="none").reshape(safe.shape)
        elif self.kind == "gaussian":
            value = (y - self.location(out)) ** 2
        elif self.kind == "laplace":
            value = (y - self.location(out)).abs()
        else:
            value = -self._discretized_logp(out, y)
        return torch.where(mask, value, torch.zeros_like(value))

    def nll_from_stat(
        self, stat: torch.Tensor, count: torch.Tensor, scale: torch.Tensor | None
    ) -> torch.Tensor:
        """Negative log-likelihood in nats from statistics and a ``scale`` [C] (MSE or MAE).

        ``stat`` and ``count`` have the same shape with channels on dim 1 (elements
        [B, C, ...] or per-sample sums [n, C]); kinds without a scale return ``stat``.
        """
        if not self.has_scale:
            return stat
        s = scale.to(stat.device, stat.dtype).reshape(1, -1, *([1] * (stat.dim() - 2)))
        if self.kind == "gaussian":  # scale = variance
            return count * 0.5 * torch.log(2 * math.pi * s) + stat / (2 * s)
        return count * torch.log(2 * s) + stat / s  # laplace: scale = b

    def train_nll(
        self, value: torch.Tensor, mask: torch.Tensor, log_scale: torch.Tensor | None
    ) -> torch.Tensor:
        """The training loss from the per-element statistic ``value`` (:meth:`stat`, or an
        autoregressive core's): NLL in nats per unit (per-channel mean over valid elements,
        summed over channels), with the *learned* scale ``spread · exp(log_scale)``."""
        if self.has_scale:
            std = self.spread.to(value.device, value.dtype) * torch.exp(log_scale)
            scale = std**2 if self.kind == "gaussian" else std
            value = self.nll_from_stat(value, mask.to(value.dtype), scale)
        sums, counts = _channel_sums(value, mask, dtype=value.dtype)
        return (sums / counts.clamp_min(1)).sum()

    def scale_from_log(self, log_scale: torch.Tensor) -> torch.Tensor:
        """Learned ``log_scale`` parameter [C] -> the scale in target units (variance or b)."""
        std = self.spread * torch.exp(log_scale.detach().to(torch.float64))
        return std**2 if self.kind == "gaussian" else std

    def profile(self, stat_sum: torch.Tensor, count: torch.Tensor) -> torch.Tensor | None:
        """Closed-form MLE scale [C] on the scored data (MSE or MAE), None without a scale."""
        if not self.has_scale:
            return None
        return (stat_sum / count.clamp_min(1)).clamp_min(1e-12)

    def _discretized_logp(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """log P(y) for y in 0..255 under a discretized logistic/Gaussian, [B, C, ...]."""
        params = self._split(out)
        mean = self.location(out)
        base = math.log(1.0 / LOGISTIC_STD) if self.discretized_dist == "logistic" else 0.0
        log_s = (torch.log(self._view(self.spread, mean)) + params[:, :, 1] + base).clamp(
            MIN_LOG_SCALE, MAX_LOG_SCALE
        )
        inv_s = torch.exp(-log_s)
        y = y.to(mean.dtype)
        upper, lower = (y + 0.5 - mean) * inv_s, (y - 0.5 - mean) * inv_s
        if self.discretized_dist == "logistic":
            first, last = F.logsigmoid(upper), F.logsigmoid(-lower)
            middle = F.logsigmoid(upper) + F.logsigmoid(-lower) + log1mexp(inv_s)
        else:
            log_ndtr = torch.special.log_ndtr
            first, last = log_ndtr(upper), log_ndtr(-lower)
            flip = lower > 0  # both bounds in the upper tail: use the mirrored lower tail
            hi = torch.where(flip, -lower, upper)
            lo = torch.where(flip, -upper, lower)
            log_hi, log_lo = log_ndtr(hi), log_ndtr(lo)
            middle = log_hi + log1mexp((log_hi - log_lo).clamp_min(1e-12))
        return torch.where(y <= 0, first, torch.where(y >= 255, last, middle))

    # ------------------------------------------------------------------ marginal solution
    def marginal_bias(self, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Output bias [C·P] of the marginal (null) solution on the training values."""
        parts = []
        for c, values in enumerate(_per_channel(y, mask)):
            if self.kind == "categorical":
                counts = torch.bincount(values.long(), minlength=self.num_classes).double()
                parts.append(torch.log((counts + 0.5) / (counts + 0.5).sum()))
                continue
            centre = values.median() if self.kind == "laplace" else values.mean()
            parts.append(((centre - self.loc[c]) / self.spread[c]).reshape(1))
            if self.kind == "discretized":
                std = values.std(unbiased=False).clamp_min(0.5)
                parts.append(torch.log(std / self.spread[c]).reshape(1))
        return torch.cat(parts).float()

    def marginal_log_scale(self, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor | None:
        """Initial learned log-scale [C] (gaussian/laplace): the training values' spread."""
        if not self.has_scale:
            return None
        out = []
        for c, values in enumerate(_per_channel(y, mask)):
            if self.kind == "gaussian":
                spread = values.std(unbiased=False)
            else:
                spread = (values - values.median()).abs().mean()
            out.append(torch.log(spread.clamp_min(1e-6) / self.spread[c]))
        return torch.stack(out).float()

    def marginal_nats(
        self, y_train: torch.Tensor, m_train: torch.Tensor, y_eval: torch.Tensor,
        m_eval: torch.Tensor,
    ) -> float:
        """Closed-form marginal null, held out: nats per unit (summed over channels).

        categorical: training class frequencies (add-1/2) scored on the evaluation values;
        gaussian/laplace: training mean/median, scale profiled on the evaluation values (as
        for the probes); discretized: the training mean and standard deviation, moment
        matched, scored on the evaluation values.
        """
        c_out = self.out_channels
        bias = self.marginal_bias(y_train, m_train)
        out = bias.reshape(1, c_out, *([1] * (y_eval.dim() - 2))).expand(
            y_eval.shape[0], c_out, *y_eval.shape[2:]
        )
        stat = self.stat(out, y_eval, m_eval)
        sums, counts = _channel_sums(stat, m_eval)
        scale = self.profile(sums, counts)
        nll = self.nll_from_stat(sums.reshape(1, -1), counts.reshape(1, -1), scale).reshape(-1)
        return float((nll / counts.clamp_min(1)).sum())

    def reference_code_nats(self, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Codelength [C] (nats) of these values under the uniform code (categorical: log K,
        discretized: log 256 per value) or, for continuous kinds, under their own marginal
        Gaussian/Laplace fit (a density code: differential, relative to a step of 1 unit)."""
        _, counts = _channel_sums(torch.zeros_like(y, dtype=torch.float64), mask)
        if self.kind == "categorical":
            return counts * math.log(self.num_classes)
        if self.kind == "discretized":
            return counts * math.log(256.0)
        out = []
        for values in _per_channel(y, mask):
            if self.kind == "gaussian":
                var = ((values - values.mean()) ** 2).mean().clamp_min(1e-12)
                out.append(values.numel() * 0.5 * torch.log(2 * math.pi * math.e * var))
            else:
                b = (values - values.median()).abs().mean().clamp_min(1e-12)
                out.append(values.numel() * torch.log(2 * math.e * b))
        return torch.stack(out)


def make_target(
    kind: str, y: torch.Tensor, mask: torch.Tensor, num_classes: int = 0,
    discretized_dist: str = "logistic",
) -> Target:
    """A :class:`Target` for ``kind`` with its constants taken from all valid values of ``y``."""
    if kind not in KINDS:
        raise ValueError(f"unknown target kind {kind!r}; expected one of {', '.join(KINDS)}")
    if discretized_dist not in ("logistic", "gaussian"):
        raise ValueError(
            f"discretized_dist must be 'logistic' or 'gaussian', got {discretized_dist!r}")
    channels = y.shape[1]
    loc = torch.zeros(channels, dtype=torch.float64)
    spread = torch.ones(channels, dtype=torch.float64)
    if kind != "categorical":
        for c, values in enumerate(_per_channel(y, mask)):
            loc[c] = values.mean()
            spread[c] = values.std(unbiased=False).clamp_min(1e-6)
    return Target(kind, channels, loc, spread, int(num_classes), discretized_dist)
