"""Autoregressive likelihoods for dense targets: a causal context over the target itself.

A factorized probe scores every pixel on its own; its null (one distribution per pixel
position) pays the whole multi-information of the image, so H_V(Y|∅) lies far above H(Y)
and I_V measures the null, not Z (DESIGN §2, "dense targets and the rate"). Here each
value is scored given every value before it in raster order (PixelCNN, van den Oord et al.
2016, with the conditioning of its conditional variant), so the held-out loss is a lossless
codelength of the target: H_V(Y|∅) is an upper estimate of H(Y), and H_V(Y|Z) a conditional
codelength in the same bits per pixel as a codec's rate. Training is teacher-forced: one
forward pass scores every value of a batch; only sampling (never needed) is sequential.

Data flow of :class:`ARCore` (the shared null; a conditional member of :mod:`vinfo.fit.nested`
adds a Z pathway on top of its final hidden state)::

    y [B, C, H, W] ─embed (labels: learned vectors, ignore = its own; 8-bit: y/127.5 − 1,
      ⊕ mask        plus the residuals of the causal MED predictor, (y − MED(y)) · 16/127.5)
      ─▶ MaskedConv2d k x k, type A (only pixels before (i, j) in raster order)
      ─▶ + pos [width, H, W] (learned per-position map: the positional null)
      ─▶ ``layers`` x gated residual block: h + 1x1(tanh(a) · σ(b)), (a, b) = masked 3x3,
         type B (PixelCNN's gated activation, van den Oord et al. 2016)
      ─▶ ReLU ─▶ 1x1 ─▶ ReLU (+ skip) = the hidden state h [B, width, H, W]
      ─▶ 1x1 ─▶ parameters [B, P, H, W]

The likelihood of pixel (i, j) therefore depends on y at earlier pixels and on the position;
never on y at (i, j) or later, except that within one pixel the channels are coded in order
(below).

The anchor (8-bit images). The mixture means are offsets from the MED predictor of LOCO-I /
JPEG-LS (Weinberger et al. 2000), per channel from the left, upper and upper-left values
(left only on the first row, upper only in the first column, 127.5 at the origin), and the
channel coefficients multiply the earlier channels' *residuals* from their anchors. A network
at zero output then already codes like a context-free JPEG-LS; it learns the rest. Measured on
the demo's scenes with a prototype (3x64x128, 300 steps of batch 8 on one CPU thread, one
logistic): 15.5 bits/pixel at the start, 9.4 after training; without the residual inputs
10.0-10.6; without the anchor as well (4 gated blocks) 14.3 after 200 steps and 12.4 after 500
(benchmarks/RESULTS.md, "V-information with power").

Likelihoods (per value, nats; exact per channel, so per-channel sums stay meaningful):

- categorical (label maps): softmax over K classes per channel; the channels of a pixel
  are scored independently given the earlier pixels.
- discretized (8-bit images): a mixture of ``mixtures`` discretized logistics over the 256
  bins per pixel (PixelCNN++, Salimans et al. 2017: edge bins take the tails; one mixture
  indicator shared by the pixel's channels), channel c's component means shifted by
  tanh-bounded coefficients times the values of the channels before c at the same pixel.
  The pixel's joint log-likelihood is split exactly into per-channel conditionals by the
  chain rule, log P(R) + log P(G | R) + log P(B | R, G), each term a logsumexp over the
  components of the values coded so far. Parameters per pixel: K logits, then per channel K
  means and K log-scales, then K·C(C−1)/2 coefficients.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from vinfo.adapter.layers import MaskedConv2d
from vinfo.probes.targets import MAX_LOG_SCALE, MIN_LOG_SCALE, Target

__all__ = ["ARCore", "CausalConv2d", "GatedBlock", "ar_parameter_count", "med_anchor"]

HALF_RANGE = 127.5  # 8-bit values v <-> (v - 127.5) / 127.5 in [-1, 1]
EDGE = 1e4  # an edge bin's open side, in scale units: its sigmoid is exactly 1
RESIDUAL_GAIN = 16.0  # the anchor residuals as inputs, (y - MED) / 127.5 x 16: order 1


def ar_parameter_count(target: Target, mixtures: int) -> int:
    """Output parameters per pixel of the autoregressive likelihood of ``target``."""
    c = target.channels
    if target.kind == "categorical":
        return c * target.num_classes
    return mixtures * (1 + 2 * c + c * (c - 1) // 2)


class ARCore(nn.Module):
    """Causal context + positional map + output network (the module docstring's flow).

    ``shape`` (H, W) is the target's spatial size; ``init`` holds the target values and mask
    the marginal starting point is taken from ([n, C, H, W]). ``forward(features, y, mask)``
    returns the likelihood parameters (``batch`` is y's, accepted for the cores' common call); :meth:`stat` the per-value NLL (nats), 0 where masked.
    """

    def __init__(self, target: Target, shape: tuple[int, int], width: int, kernel: int,
                 mixtures: int, embedding: int, y: torch.Tensor, mask: torch.Tensor,
                 layers: int = 2) -> None:
        super().__init__()
        if target.kind not in ("categorical", "discretized"):
            raise ValueError(f"autoregressive families take categorical or discretized "
                             f"targets, not {target.kind!r}")
        if kernel < 3 or kernel % 2 == 0:
            raise ValueError(f"context kernel must be odd and >= 3, got {kernel}")
        self.kind, self.channels, self.mixtures = target.kind, target.channels, int(mixtures)
        self.num_classes = target.num_classes
        c = target.channels
        if target.kind == "categorical":
            self.embed = nn.Embedding(self.num_classes + 1, embedding)  # + the masked value
            in_ch = c * embedding
        else:
            self.embed = None
            in_ch = 2 * c  # scaled values and their residuals from the anchor
        self.context = CausalConv2d(in_ch + c, width, kernel, padding=kernel // 2,
                                    mask_type="A")
        self.pos = nn.Parameter(torch.zeros(width, *shape))
        self.hidden = nn.Conv2d(width, width, 1)
        self.out = nn.Conv2d(width, ar_parameter_count(target, mixtures), 1)
        self.blocks = nn.ModuleList(GatedBlock(width) for _ in range(int(layers)))
        with torch.no_grad():
            self.out.weight.zero_()
            self.out.bias.copy_(self._marginal_bias(target, y, mask))

    # ------------------------------------------------------------------ network
    def _inputs(self, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask.to(torch.float32)
        if self.embed is not None:
            labels = torch.where(mask, y, torch.full_like(y, self.num_classes)).long()
            e = self.embed(labels)  # [B, C, H, W, E]
            e = e.permute(0, 1, 4, 2, 3).reshape(y.shape[0], -1, *y.shape[2:])
        else:
            scaled = (y.to(torch.float32) - HALF_RANGE) / HALF_RANGE
            residual = (scaled - med_anchor(y)) * RESIDUAL_GAIN
            e = torch.cat([scaled * m, residual * m], 1)
        return torch.cat([e, m], 1)

    @property
    def margin(self) -> int:
        """How far the causal receptive field reaches up, left and right (pixels): the
        context's k//2, one per gated block, and one for the MED anchor of its inputs."""
        return self.context.kernel_size[0] // 2 + len(self.blocks) + 1

    def trunk(self, y: torch.Tensor, mask: torch.Tensor,
              features: torch.Tensor | None = None,
              offset: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """The hidden state h [B, width, H, W] before the output layer (causal in y).
        ``offset`` (top, left) [B] places crops of the target in the full frame: the
        positional map is read at the crops' positions (training on crops, see
        :func:`vinfo.fit.loop.crop_batch`)."""
        if offset is None:
            pos = self.pos
        else:
            top, left = offset
            rows = top[:, None, None] + torch.arange(y.shape[2], device=y.device)[:, None]
            cols = left[:, None, None] + torch.arange(y.shape[3], device=y.device)
            pos = self.pos[:, rows, cols].transpose(0, 1)  # [B, width, h, w]
        h = self.context(self._inputs(y, mask)) + pos
        if features is not None:
            h = h + features
        for block in self.blocks:
            h = block(h)
        h = F.relu(h)
        return F.relu(self.hidden(h)) + h

    def forward(self, features: torch.Tensor | None, y: torch.Tensor, mask: torch.Tensor,
                batch: int | None = None,
                offset: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        return self.out(self.trunk(y, mask, features, offset))

    # ------------------------------------------------------------------ likelihood
    def stat(self, out: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Per-value negative log-likelihood in nats [B, C, H, W], 0 where masked."""
        if self.kind == "categorical":
            b, _, h, w = out.shape
            logits = out.reshape(b * self.channels, self.num_classes, h, w)
            safe = torch.where(mask, y, torch.zeros_like(y)).long()
            value = F.cross_entropy(logits, safe.reshape(-1, h, w),
                                    reduction="none").reshape(y.shape)
        else:
            value = -self._mixture_logp(out, y)
        return value.masked_fill(~mask, 0.0)

    def _split(self, out: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """[B, P, H, W] -> logits [B, K, H, W], means and log-scales [B, C, K, H, W],
        coefficients: C(C-1)/2 tensors [B, K, H, W]. (split/unbind, whose backward
        concatenates, instead of slices, whose backward zero-fills the whole output.)"""
        b, _, h, w = out.shape
        c, k = self.channels, self.mixtures
        n_coeffs = out.shape[1] - k - 2 * c * k
        logits, main, coeffs = torch.split(out, [k, 2 * c * k, n_coeffs], dim=1)
        means, log_scales = main.reshape(b, c, 2, k, h, w).unbind(2)
        coeffs = torch.tanh(coeffs).reshape(b, -1, k, h, w).unbind(1) if n_coeffs else ()
        return logits, means, log_scales, coeffs

    def _mixture_logp(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """log P(y_c | y_<c, context) per sub-pixel [B, C, H, W] (chain rule, see above)."""
        logits, means, log_scales, coeffs = self._split(out)
        anchor = med_anchor(y).to(out.dtype)
        scaled = (y.to(out.dtype) - HALF_RANGE) / HALF_RANGE
        residual = (scaled - anchor).unsqueeze(2).unbind(1)
        shifted, j = [], 0
        for c, mean in enumerate(means.unbind(1)):  # channel c's means move with earlier ones
            mean = mean + anchor[:, c : c + 1]
            for prev in range(c):
                mean = mean + coeffs[j] * residual[prev]
                j += 1
            shifted.append(mean)
        mean = HALF_RANGE + HALF_RANGE * torch.stack(shifted, 1)  # 8-bit units [B, C, K, H, W]
        log_s = (log_scales + math.log(HALF_RANGE)).clamp(MIN_LOG_SCALE, MAX_LOG_SCALE)
        inv_s = torch.exp(-log_s)
        v = y.to(out.dtype).unsqueeze(2)  # [B, C, 1, H, W]
        # log P(bin) = log sigmoid(upper) + log sigmoid(-lower) + log(1 - exp(-(upper - lower)))
        # with the edge bins' open sides pushed to +-EDGE (their terms become 0): one
        # expression for every bin, no branches
        top, bottom = (v >= 255).to(out.dtype) * EDGE, (v <= 0).to(out.dtype) * EDGE
        centred = (v - mean) * inv_s
        half = 0.5 * inv_s
        logp = (F.logsigmoid(centred + half + top) + F.logsigmoid(half - centred + bottom)
                + torch.log(-torch.expm1(-(inv_s + top + bottom))))  # [B, C, K, H, W]
        joint = F.log_softmax(logits, dim=1).unsqueeze(1) + torch.cumsum(logp, dim=1)
        total = torch.logsumexp(joint, dim=2)  # log P(y_1..y_c) [B, C, H, W]
        return total - F.pad(total, (0, 0, 0, 0, 1, 0))[:, :-1]  # log P(y_c | y_<c)

    # ------------------------------------------------------------------ start
    def _marginal_bias(self, target: Target, y: torch.Tensor, mask: torch.Tensor
                       ) -> torch.Tensor:
        """Output bias of the start: class log-frequencies, or K equally weighted logistic
        components centred on the anchor, per channel with the scale of the anchor's
        residuals times 2^k for component k (distinct scales break the components' symmetry:
        a narrow one for smooth regions, wider ones for edges)."""
        if self.kind == "categorical":
            return target.marginal_bias(y, mask)
        c, k = self.channels, self.mixtures
        bias = torch.zeros(ar_parameter_count(target, k))
        main = bias[k : k + 2 * c * k].view(c, 2, k)
        residual = (y.to(torch.float64) - HALF_RANGE - HALF_RANGE * med_anchor(y).double())
        for ch in range(c):
            values = residual[:, ch][mask[:, ch]]
            mad = values.abs().mean().clamp_min(0.5) if values.numel() else torch.tensor(1.0)
            for comp in range(k):
                main[ch, 1, comp] = float(torch.log(mad * 2.0**comp / HALF_RANGE))
        return bias


class CausalConv2d(MaskedConv2d):
    """A raster-causal masked conv (type A or B, odd square kernel, "same" padding) that
    skips the taps its mask zeroes: the rows below the centre are all masked, so it runs as
    a conv with only the top k//2 + 1 kernel rows on the input padded above (and left and
    right) only. Same parameters, state dict and outputs as :class:`MaskedConv2d` (up to
    the order of the floating-point sums); measured on one CPU thread at 3x64x128: a 3x3
    type B conv does 6 of its 9 taps' work, a 5x5 type A 15 of 25 (benchmarks/RESULTS.md,
    "V-information with power")."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.kernel_size[0]
        rows = k // 2 + 1
        weight = self.masked_weight()[:, :, :rows]
        return F.conv2d(F.pad(x, (k // 2, k // 2, k // 2, 0)), weight, self.bias)


class GatedBlock(nn.Module):
    """h -> h + 1x1(tanh(a) * sigmoid(b)), (a, b) from a masked 3x3 conv of type B (it reads
    the pixel itself, whose state carries only earlier pixels after the type-A context)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv = CausalConv2d(width, 2 * width, 3, padding=1, mask_type="B")
        self.proj = nn.Conv2d(width, width, 1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        a, b = self.conv(h).chunk(2, dim=1)
        # tanh(a) = 2 sigmoid(2a) - 1: the same value, and sigmoid is about 4x cheaper than
        # tanh on one CPU thread (torch 2.x, measured)
        return h + self.proj((2.0 * torch.sigmoid(2.0 * a) - 1.0) * torch.sigmoid(b))


def med_anchor(y: torch.Tensor) -> torch.Tensor:
    """The causal MED predictor (LOCO-I) of every value from its left (a), upper (b) and
    upper-left (c) neighbours of the same channel, scaled like the values to [-1, 1]:
    min(a, b) if c >= max(a, b), max(a, b) if c <= min(a, b), else a + b - c. First row:
    a; first column: b; the origin: 0 (the middle of the range). [B, C, H, W] float32."""
    v = y.to(torch.float32)
    padded = F.pad(v, (1, 0, 1, 0), value=HALF_RANGE)
    a, b, c = padded[..., 1:, :-1], padded[..., :-1, 1:], padded[..., :-1, :-1]
    high, low = torch.maximum(a, b), torch.minimum(a, b)
    pred = torch.where(c >= high, low, torch.where(c <= low, high, a + b - c))
    pred = torch.cat([a[..., :1, :], pred[..., 1:, :]], dim=-2)  # first row: the left value
    pred = torch.cat([b[..., :, :1], pred[..., :, 1:]], dim=-1)  # first column: the upper
    return (pred - HALF_RANGE) / HALF_RANGE
