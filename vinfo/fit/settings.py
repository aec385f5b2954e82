"""FitSettings: a family's training budget (part of V) and how its probes are fitted.

What the knobs do (the growing budget, warm-up, patience, minibatches) is in
:mod:`vinfo.fit.loop`, the closed forms in :mod:`vinfo.fit.closed_forms`; the autoregressive
ones in :mod:`vinfo.probes.autoregressive`,
:mod:`vinfo.fit.nested` and :mod:`vinfo.fit.nulls`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FitSettings:
    """The training budget of a family (part of V) and how probes are fitted."""

    max_steps: int = 400  # the starting budget; it doubles while a probe still improves
    step_limit: int = 0  # the budget's hard limit (0: 8 x max_steps)
    lr: float = 3e-3
    batch_size: int = 8  # samples per optimizer step (0: full batch); 16 before the evening
    #                      of 2026-12-07: 8 gave the same detections and MDEs on the planted
    #                      ladder at 120 and 240 scenes in 0.6x the CPU (benchmarks/RESULTS.md)
    eval_every: int = 20
    patience: int = 5
    closed_form_linear: bool = True
    eval_batch_size: int = 256
    synthesis_widths: tuple[int, ...] = (192, 48, 24)
    synthesis_blocks: int = 1
    batched: bool = True  # fit a family's probes together as one network (vinfo.fit.batched)
    ridge_alpha: float = 0.0  # closed form: L2 penalty on the standardized head weights
    context_width: int = 32  # autoregressive families: causal-context features per pixel
    context_kernel: int = 5  # its masked (type A) convolution, k x k
    mixtures: int = 2  # discretized autoregressive likelihood: logistic components
    context_layers: int = 2  # autoregressive null: gated masked residual blocks
    z_features: int = 16  # autoregressive rungs: Z features per target pixel (vinfo.fit.nested)
    null_steps: int = 200  # autoregressive null: its starting step budget (it grows too)
    null_lr: float = 5e-3  # autoregressive null: its learning rate
    null_crop: int = 0  # autoregressive null: train on random crops of this size (0: whole
    #                     targets; vinfo.fit.loop.crop_batch); it is scored on whole targets
    null_batch_size: int = 4  # autoregressive null: samples (crops) per step (0: batch_size)
    null_warmup_steps: int = 20  # autoregressive null: its warm-up (-1: warmup_steps's rule)
    null_eval_every: int = 40  # autoregressive null: its evaluation interval (0: eval_every);
    #                             patience x this = the steps it may go without improving
    label_embedding: int = 4  # categorical autoregressive context: dims per label
    warmup_steps: int = -1  # linear learning-rate warm-up (-1: max_steps // 5)

    @property
    def limit(self) -> int:
        """The budget's hard limit in steps."""
        return self.step_limit if self.step_limit > 0 else 8 * self.max_steps

    @property
    def warmup(self) -> int:
        """Warm-up steps; evaluations during the warm-up do not count against patience."""
        return self.max_steps // 5 if self.warmup_steps < 0 else self.warmup_steps

    def lr_at(self, step: int) -> float:
        """The learning rate of step ``step`` (1-based): warm-up, then ``lr``. The warm-up
        keeps Adam's first, sign-sized steps from kicking a probe that starts at a fitted
        null away from it (a restart would otherwise lose what the null had learnt)."""
        return self.lr * min(1.0, step / self.warmup) if self.warmup > 0 else self.lr
