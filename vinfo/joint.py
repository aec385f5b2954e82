"""Null and conditional as one network: the autoregressive families' fit (Z dropout).

An autoregressive probe's null is the same network with Z zeroed. Fitted apart, the null and
the conditional get different optimization (budgets, restarts, early stopping on noisy
selection losses), and on a Z independent of the target that difference alone showed up as
±0.1 bits/pixel of "information". So, as Pinkard et al. (NeurIPS 2025, "Information-driven
design of imaging systems") train one conditional PixelCNN for both, every step here trains
*one* member on a batch in which each sample's Z is zeroed with probability ``drop`` (1/2)::

    batch (z, y) -> keep ~ Bernoulli(1 - drop) per sample -> z · keep -> member -> NLL -> Adam

and every evaluation scores the member on the selection samples twice, fed Z and fed zeros.
Each view keeps its own best checkpoint (step 0 included: the marginal start, where both
views are equal). The family's members may ignore Z (optional ignorance), so the
conditional's candidate at an evaluation is the better of the two views there: where
feeding zeros scores better on the selection samples, the kept conditional is that blind
member (on a Z independent of the target it mostly is, and I_V is then about 0 instead of
the overfit member's negative value); training stops when neither view improved for ``patience`` evaluations,
and the budget grows (:func:`vinfo.fitting.next_budget`) while either still improves. The
result is two :class:`~vinfo.fitting.FitResult`: the null view (a ``blind`` probe: its Z
pathway sees zeros, so it outputs one fixed map: the positional null of :mod:`vinfo.families`)
and the conditional view, trained by the very same steps. The dropout draws come from the
seed (a generator of their own), so a fit is reproducible.
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from infra.seeding import check_seed
from vinfo.families import FamilySpec
from vinfo.fitting import (
    FitResult,
    FitSettings,
    Minibatches,
    Probe,
    ProbeData,
    heldout_nats,
    new_probe,
    next_budget,
    split_stats,
    still_improving,
    train_step,
)
from vinfo.targets import Target

DROP = 0.5  # share of each batch whose Z is zeroed (the null's training signal)
DROP_STREAM = 7  # the dropout generator: seeded by (seed, DROP_STREAM)


class _View:
    """One view of the member (null or conditional): its best checkpoint and patience;
    ``blind`` records whether the kept conditional checkpoint is fed zeros (see below)."""

    def __init__(self, value: float, state: dict) -> None:
        self.best_val, self.best_state, self.best_step, self.bad = value, state, 0, 0
        self.blind = False

    def update(self, value: float, step: int, state: dict, warm: bool,
               blind: bool = False) -> None:
        if value < self.best_val - 1e-7 * max(1.0, abs(self.best_val)):
            self.best_val, self.best_state, self.best_step, self.bad = value, state, step, 0
            self.blind = blind
        elif warm:
            self.bad += 1


def fit_joint(
    spec: FamilySpec, target: Target, data: ProbeData, fit_idx: np.ndarray, val_idx: np.ndarray,
    settings: FitSettings, seed: int, drop: float = DROP,
) -> tuple[FitResult, FitResult]:
    """(null, conditional) of ``spec`` trained as one member with Z dropout (module doc)."""
    probe, note = new_probe(spec, target, data, fit_idx, settings, seed, null=False)
    blind = copy.copy(probe)  # the same modules, fed zeros
    blind.blind = True

    def validate(view: Probe) -> float:
        return heldout_nats(target, split_stats(view, target, data, val_idx,
                                                settings.eval_batch_size))

    def state() -> dict:
        return copy.deepcopy(probe.state_dict())

    optimizer = torch.optim.Adam(probe.parameters(), lr=settings.lr, fused=True)
    views = {"null": _View(validate(blind), state()), "cond": _View(validate(probe), state())}
    batches = Minibatches(data, fit_idx, settings, seed)
    generator = torch.Generator().manual_seed(check_seed(seed) * 31 + DROP_STREAM)
    step, budget = 0, settings.max_steps
    while step < budget:
        step += 1
        z, y, mask = batches.at(step)
        keep = (torch.rand(z.shape[0], generator=generator) >= drop).to(z.device, z.dtype)
        z_in = z * keep.reshape(-1, *([1] * (z.dim() - 1)))
        if not train_step(probe, target, optimizer, settings.lr_at(step), z_in, y, mask):
            note += f"; non-finite loss at step {step}, kept the best checkpoints"
            break
        if step % settings.eval_every == 0 or step == budget:
            now, warm = state(), step > settings.warmup
            null_val, cond_val = validate(blind), validate(probe)
            views["null"].update(null_val, step, now, warm)
            # the family's members may ignore Z (optional ignorance): the conditional's
            # candidate at this step is the better of the member fed Z and fed zeros
            views["cond"].update(min(cond_val, null_val), step, now, warm,
                                 blind=null_val < cond_val)
            if all(v.bad >= settings.patience for v in views.values()):
                break
            if step == budget:
                budget = next_budget(budget, max(v.best_step for v in views.values()),
                                     settings)
    results = []
    method = f"adam, null and conditional as one member (Z dropout {drop:g})"
    for view, blind_view in (("null", True), ("cond", views["cond"].blind)):
        member = copy.deepcopy(probe)
        member.load_state_dict(views[view].best_state)
        member.blind = blind_view
        best = views[view].best_step
        at_cap = (step >= settings.limit and settings.max_steps > 0
                  and still_improving(best, settings.limit))
        results.append(FitResult(member, views[view].best_val, best, step, method, note,
                                 at_cap, budget))
    return results[0], results[1]
