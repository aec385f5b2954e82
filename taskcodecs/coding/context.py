"""The context-model coding engine: decoding schedules and the step-by-step coder.

:mod:`taskcodecs.coding.entropy` builds the models; this module runs them step by step.
Encoder and decoder call the *same* :meth:`AutoregressiveCoder.run` with the same inputs, so
they compute bitwise-identical means and scale indexes (the rANS tables are chosen by scale
index, so any disagreement would desynchronize the stream).

Two context models (``context``), each with its 5x5 masked conv
(:class:`taskcodecs.layers.MaskedConv2d`) and its schedule::

    autoregressive (type A)            checkerboard (He et al., CVPR 2021)
    x x x x x                          . x . x .      taps: odd dy + dx (12 of 25)
    x x x x x                          x . x . x      context input: ŷ at the anchors
    x x o . .                          . x o x .      ((row + col) even), zero at the
    . . . . .                          x . x . x      non-anchors
    . . . . .                          . x . x .

* ``autoregressive``: position (r, c) reads the 12 causal taps. ``order="wavefront"``
  decodes wavefront t = 3*r + c in one step (every tap lies on a wavefront t' < t;
  t = 2*r + c would not do, tap (r-1, c+2) has the same t), 3*(h-1) + w steps instead of
  h*w; ``order="raster"`` (one position per step) is kept as a reference.
* ``checkerboard``: two steps ("two-pass"). All anchors first: their taps all land on
  non-anchors, which the context never reads (zero), so their context is the conv's bias
  alone; then all non-anchors, whose taps all land on (decoded) anchors.

Causality (:func:`check_schedule`, run before every coding): every tap of every position of
a step must land on padding, on a position the context never reads (checkerboard
non-anchors), or on a position decoded in an earlier step. A mask that would read an
undecoded position under the chosen schedule is rejected with a ValueError.

Each step gathers the context input at the taps of that step's positions, applies the
masked conv as one matmul over the taps (masked-out taps are never read, not even
multiplied by a zero weight; a step whose taps all read zeros gets the bias alone), then
the 1x1 parameter network as matmuls, then takes all symbols of the step at once (the
decoder: one ``RansDecoder.decode_stream`` call). The symbols of all steps form one rANS
stream (:mod:`taskcodecs.coding.rans`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from taskcodecs.coding.rans import scale_indexes, single_threaded
from taskcodecs.layers import MaskedConv2d

__all__ = [
    "CONTEXTS",
    "ORDERS",
    "SCHEDULES",
    "AutoregressiveCoder",
    "CodedLatent",
    "anchor_mask",
    "check_context",
    "check_order",
    "check_schedule",
    "context_sources",
    "decoding_schedule",
]

CONTEXTS: tuple[str, ...] = ("autoregressive", "checkerboard")
ORDERS: tuple[str, ...] = ("wavefront", "raster")  # of an autoregressive context
SCHEDULES: tuple[str, ...] = ("wavefront", "raster", "two-pass")

Step = tuple[Tensor, Tensor]  # (rows, cols) int64 index tensors of the positions of one step


# -- contexts and schedules ------------------------------------------------------------------


def check_context(context: str) -> str:
    if context not in CONTEXTS:
        raise ValueError(f"context must be one of {CONTEXTS}, got {context!r}")
    return context


def check_order(order: str) -> str:
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
    return order


def anchor_mask(height: int, width: int) -> Tensor:
    """(h, w) bool: the checkerboard's anchors, the positions with (row + col) even."""
    return (torch.arange(height)[:, None] + torch.arange(width)[None, :]) % 2 == 0


def context_sources(context: str, height: int, width: int) -> Tensor:
    """(h, w) bool: where the context model reads ŷ (elsewhere its input is zero).
    Autoregressive: everywhere; checkerboard: the anchors."""
    if check_context(context) == "checkerboard":
        return anchor_mask(height, width)
    return torch.ones(height, width, dtype=torch.bool)


def decoding_schedule(height: int, width: int, schedule: str, slope: int = 3) -> list[Step]:
    """(rows, cols) index tensors of each decoding step, in decoding order.

    ``wavefront``: step t holds the positions with ``slope * row + col == t`` (rows
    ascending; empty wavefronts skipped), ``slope * (h - 1) + w`` steps at most;
    ``raster``: one position per step, row by row; ``two-pass``: the checkerboard's anchors
    ((row + col) even), then the non-anchors, each in raster order (one step for a 1x1
    latent, which has no non-anchor).
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    if schedule == "raster":
        return [(torch.tensor([r]), torch.tensor([c])) for r in range(height) for c in range(width)]
    if schedule == "two-pass":
        anchors = anchor_mask(height, width)
        passes = [torch.nonzero(anchors), torch.nonzero(~anchors)]
        return [(p[:, 0], p[:, 1]) for p in passes if len(p)]
    rows = torch.arange(height)
    steps = []
    for t in range(slope * (height - 1) + width):
        cols = t - slope * rows
        keep = (cols >= 0) & (cols < width)
        if bool(keep.any()):  # latents narrower than the slope leave some wavefronts empty
            steps.append((rows[keep], cols[keep]))
    return steps


def check_schedule(steps: Sequence[Step], dy: Tensor, dx: Tensor, sources: Tensor) -> None:
    """Raise ValueError unless ``steps`` visit every position of the (h, w) latent once and
    every tap (``dy``, ``dx``) of every position of a step lands on padding, on a position
    outside ``sources`` (the context reads zero there) or on a position decoded in an
    earlier step: the decoder never needs what it has not decoded yet."""
    height, width = sources.shape
    visits = torch.zeros((height, width), dtype=torch.int64)
    step_of = torch.full((height, width), -1, dtype=torch.int64)
    for t, (rows, cols) in enumerate(steps):
        visits.index_put_((rows, cols), torch.ones_like(rows), accumulate=True)
        step_of[rows, cols] = t
    if not bool((visits == 1).all()):
        raise ValueError("a decoding schedule must visit every position exactly once")
    pad = int(max(dy.abs().max(), dx.abs().max())) if len(dy) else 0
    # step at which each tap's target becomes readable: -1 for padding and non-sources
    readable = torch.full((height + 2 * pad, width + 2 * pad), -1, dtype=torch.int64)
    readable[pad : pad + height, pad : pad + width] = torch.where(sources, step_of, -1)
    for tap_dy, tap_dx in zip(dy.tolist(), dx.tolist()):
        target = readable[pad + tap_dy : pad + tap_dy + height, pad + tap_dx : pad + tap_dx + width]
        late = target >= step_of
        if bool(late.any()):
            r, c = (int(i) for i in torch.nonzero(late)[0])
            raise ValueError(
                f"context tap (dy={tap_dy}, dx={tap_dx}) of position ({r}, {c}) reads a position "
                f"not decoded before step {int(step_of[r, c])}: the context mask does not fit "
                "this decoding schedule"
            )


# (rows, cols, means (k, C), scale indexes (k, C)) -> integer symbols (k, C)
SymbolSource = Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class CodedLatent:
    """What :meth:`AutoregressiveCoder.run` produced, each (C, h, w), CPU float32."""

    y_hat: Tensor
    means: Tensor
    scales: Tensor


class AutoregressiveCoder:
    """Runs context model + parameter network step by step over a decoding schedule.

    Give it CPU modules: ``context_prediction`` (a :class:`MaskedConv2d`; its mask, the
    same for every channel pair, is the tap set), ``entropy_parameters`` (an
    ``nn.Sequential`` of 1x1 convs and elementwise activations whose output splits into
    scales then means; float64 recommended), the float32 scale table, and the ``context``
    the mask belongs to ("autoregressive": wavefront or raster schedule by ``order``;
    "checkerboard": the two-pass schedule, ``order`` ignored). The schedule is checked
    against the taps before coding (:func:`check_schedule`). Arithmetic runs in the
    parameter network's dtype; the decoded latent, the conditioning and the resulting μ, σ
    are float32 (rounded from float64), so results do not depend on how many positions a
    step holds.
    """

    def __init__(
        self,
        context_prediction: MaskedConv2d,
        entropy_parameters: nn.Sequential,
        scale_table: Tensor,
        scale_bound: float,
        context: str = "autoregressive",
    ) -> None:
        self.context = check_context(context)
        dtype = next(entropy_parameters.parameters()).dtype
        weight = context_prediction.masked_weight().detach().to(dtype)
        mask = context_prediction.mask
        if not bool((mask == mask[:1, :1]).all()):
            raise ValueError("context_prediction's mask must be the same for every channel pair")
        kernel_h, kernel_w = weight.shape[-2:]
        taps = torch.nonzero(mask[0, 0])  # (T, 2): (ky, kx) of the taps the conv reads
        self.dy = taps[:, 0] - kernel_h // 2
        self.dx = taps[:, 1] - kernel_w // 2
        self.pad = max(kernel_h, kernel_w) // 2
        # masked conv over the taps as one matrix: (2N, C * T), columns ordered (channel, tap)
        self.context_weight = weight[:, :, taps[:, 0], taps[:, 1]].flatten(1)
        self.context_bias = context_prediction.bias.detach().to(dtype)
        self.dtype = dtype
        for layer in entropy_parameters:
            if isinstance(layer, nn.Conv2d) and (
                layer.kernel_size != (1, 1) or layer.stride != (1, 1)
            ):
                raise ValueError(f"entropy_parameters must use 1x1 convs only, found {layer}")
        self.entropy_parameters = entropy_parameters
        self.scale_table = scale_table.detach().float()
        self.scale_bound = float(scale_bound)
        self._step_plans: dict[tuple[int, int, str], list[_StepPlan]] = {}

    def schedule(self, height: int, width: int, order: str) -> list[Step]:
        """The checked decoding steps of an (h, w) latent (see the class docstring); coding
        builds them once per shape and order, with its step plans."""
        check_order(order)
        if self.context == "checkerboard":
            steps = decoding_schedule(height, width, "two-pass")
        elif order == "wavefront":
            steps = decoding_schedule(height, width, "wavefront", self._wavefront_slope())
        else:
            steps = decoding_schedule(height, width, "raster")
        check_schedule(steps, self.dy, self.dx, context_sources(self.context, height, width))
        return steps

    def _wavefront_slope(self) -> int:
        """The smallest a with a*dy + dx < 0 for every tap (3 for the type-A 5x5 mask)."""
        for slope in range(1, 2 * self.pad + 2):
            if bool((slope * self.dy + self.dx < 0).all()):
                return slope
        raise ValueError(
            "this context mask reads a position below or at its own (a type-B or checkerboard "
            "mask?): it has no wavefront schedule"
        )

    def run(
        self,
        conditioning: Tensor | None,
        shape: tuple[int, int, int],
        order: str,
        next_symbols: SymbolSource,
    ) -> CodedLatent:
        """Code a (C, h, w) latent; ``conditioning`` (K, h, w) float32, concatenated after the
        context features. ``next_symbols`` supplies each step's symbols (encoder: from the
        latent; decoder: from the stream)."""
        with single_threaded():
            return self._run(conditioning, shape, order, next_symbols)

    def _run(self, conditioning, shape, order, next_symbols) -> CodedLatent:
        channels, height, width = shape
        plans = self._plans(height, width, order)
        # the context input, flattened padded plane in the arithmetic dtype (float32 values
        # held exactly): decoded ŷ at source positions, zero elsewhere and in the padding
        pad = self.pad
        context_plane = torch.zeros(channels, (height + 2 * pad) * (width + 2 * pad),
                                    dtype=self.dtype)
        done_values, done_means, done_scales = [], [], []
        for plan in plans:
            k = len(plan.rows)
            if plan.gather is None:  # every tap reads a zero: the bias alone (anchors)
                features = self.context_bias.expand(k, -1)
            else:
                patches = context_plane.index_select(1, plan.gather)  # (C, k * T)
                patches = patches.view(channels, k, -1).transpose(0, 1).reshape(k, -1)
                features = F.linear(patches, self.context_weight, self.context_bias)
            if conditioning is not None:
                side = conditioning[:, plan.rows, plan.cols].T.to(self.dtype)
                features = torch.cat([features, side], dim=1)
            params = _pointwise(self.entropy_parameters, features).float()  # (k, 2C)
            scales, means = params[:, :channels], params[:, channels:]
            indexes = scale_indexes(scales, self.scale_table, self.scale_bound)
            symbols = next_symbols(plan.rows, plan.cols, means, indexes)
            values = symbols.to(torch.float32) + means  # (k, C)
            if plan.scatter is not None:
                context_plane[:, plan.scatter] = values[plan.read].T.to(self.dtype)
            done_values.append(values)
            done_means.append(means)
            done_scales.append(scales)
        order_of = torch.cat([plan.flat for plan in plans])  # position (r * w + c) of each row

        def assemble(rows: list[Tensor]) -> Tensor:
            out = torch.empty(height * width, channels)
            out[order_of] = torch.cat(rows)
            return out.T.reshape(channels, height, width).contiguous()

        return CodedLatent(y_hat=assemble(done_values), means=assemble(done_means),
                           scales=assemble(done_scales))

    def _plans(self, height: int, width: int, order: str) -> list[_StepPlan]:
        """Index tensors of each step, precomputed once per shape and order: the flat
        padded-plane positions of its taps (position-major: k x T), its own flat positions,
        and where its decoded values enter the context input."""
        key = (height, width, order)
        if key not in self._step_plans:
            pad, padded_w = self.pad, width + 2 * self.pad
            sources = context_sources(self.context, height, width)
            sources_pad = F.pad(sources, (pad, pad, pad, pad))
            plans = []
            for rows, cols in self.schedule(height, width, order):
                tap_rows = rows[:, None] + pad + self.dy[None, :]  # (k, T)
                tap_cols = cols[:, None] + pad + self.dx[None, :]
                reads_any = bool(sources_pad[tap_rows, tap_cols].any())
                read = sources[rows, cols]
                plans.append(_StepPlan(
                    rows=rows,
                    cols=cols,
                    flat=rows * width + cols,
                    gather=(tap_rows * padded_w + tap_cols).reshape(-1) if reads_any else None,
                    read=read,
                    scatter=((rows[read] + pad) * padded_w + cols[read] + pad)
                    if bool(read.any()) else None,
                ))
            self._step_plans[key] = plans
        return self._step_plans[key]


@dataclass(frozen=True)
class _StepPlan:
    rows: Tensor  # (k,) positions of the step
    cols: Tensor
    flat: Tensor  # (k,) row * w + col
    gather: Tensor | None  # (k * T,) flat padded positions of the taps; None: reads no source
    read: Tensor  # (k,) bool: the position is a context source
    scatter: Tensor | None  # flat padded positions of the step's sources (None: none)


def _pointwise(layers: nn.Sequential, features: Tensor) -> Tensor:
    """Apply a stack of 1x1 convs and elementwise activations to (k, channels) features."""
    for layer in layers:
        if isinstance(layer, nn.Conv2d):
            features = F.linear(features, layer.weight.flatten(1), layer.bias)
        else:
            features = layer(features)
    return features
