"""Fitting probes by training: the loop with a growing budget.

A probe (:class:`vinfo.probes.probe.Probe`) is a *core* and, for a conditional member, a
*Z pathway* (:mod:`vinfo.probes.families`). The null is the core alone; a conditional member
starts from its fitted null (the core's parameters copied, the Z pathway's head at zero), so
at step 0 it *is* its null. Probes train on the fit samples of a split
(:mod:`vinfo.fit.splits`) with Adam (full batch, or minibatches of ``batch_size``; the
learning rate warms up linearly over the first ``warmup_steps``, whose evaluations cost no
patience), are scored on ``select`` every ``eval_every`` steps, keep their best checkpoint
(step 0 included) and stop after ``patience`` evaluations without improvement
(:class:`vinfo.fit.settings.FitSettings` holds every knob).

The budget grows. Training starts with a budget of ``max_steps``; when a probe reaches its
budget while still improving (its best checkpoint in the second half of the budget), the
budget doubles, up to ``step_limit`` (0: 8 x ``max_steps``). A probe that reaches the limit
still improving is reported ``at_cap``: under-trained, not converged (DESIGN §2: a gap between
rungs is a capacity effect only if every rung has converged).

Closed forms: the factorized Gaussian null and linear rung are not trained but fitted by
least squares (:mod:`vinfo.fit.closed_forms`, when :func:`~vinfo.fit.closed_forms.closed_form`
says so; ``ridge_alpha`` is their penalty).

Minibatches are drawn up front by :func:`minibatch_plan` (a seeded reshuffle per epoch), so
the batched fitting of :mod:`vinfo.fit.batched` gives every member the batches this loop would.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from infra.seeding import check_seed
from vinfo.fit.closed_forms import closed_form, least_squares
from vinfo.fit.settings import FitSettings
from vinfo.probes.families import FamilySpec, build_core, build_zpath
from vinfo.probes.probe import Probe, ProbeData, heldout_nats, split_stats
from vinfo.probes.targets import Target

CROP_STREAM = 7919  # the crops' positions: a generator seeded by seed + CROP_STREAM


@dataclass
class FitResult:
    """A fitted probe, its selection loss (nats/unit, profiled scale) and how it got there."""

    probe: Probe
    val_nats: float
    best_step: int
    steps_run: int
    method: str
    note: str = ""
    at_cap: bool = False  # reached step_limit still improving
    budget: int = 0  # the budget it ended with (steps)
    recent_gain: float = 0.0  # at_cap fits: selection-loss fall over the fit's second half
    #                           (nats/unit; compared with the minimum detectable effect)
    trained: Probe | None = None  # kept step 0 (the start, i.e. the null): the member at
    #                               the end of its training, scored beside it for the raw
    #                               interval and the MDE (what training found, not kept)
    data: ProbeData | None = None  # the inputs it is scored on (None: the estimate's own)


def new_probe(
    spec: FamilySpec, target: Target, data: ProbeData, fit_idx: np.ndarray, settings: FitSettings,
    seed: int, null: bool, init: Probe | None = None,
) -> tuple[Probe, str]:
    """A probe of ``spec`` (its null with ``null``) and the family's note. The core starts at
    the marginal solution of ``fit_idx``, or as a copy of ``init`` (a fitted null of the same
    likelihood); the trunk is seeded by ``seed``; the Z pathway's head is zero."""
    b = torch.as_tensor(fit_idx, device=data.y.device)
    y, mask = data.y[b], data.mask[b]
    device = data.z.device
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(check_seed(seed))
        core = build_core(spec, target, y.cpu(), mask.cpu(), data.dense, settings.context_width,
                          settings.context_kernel, settings.mixtures, settings.label_embedding,
                          settings.context_layers)
        zpath, note = None, ""
        if not null:
            out_ch = settings.context_width if spec.autoregressive else target.out_channels
            zpath, note = build_zpath(spec, data.z.shape[1], out_ch, data.stride,
                                      settings.synthesis_widths, settings.synthesis_blocks)
    probe = Probe(core, zpath, target.marginal_log_scale(y.cpu(), mask.cpu())).to(device)
    if init is not None:
        probe.core.load_state_dict(init.core.state_dict())
        if probe.log_scale is not None:
            with torch.no_grad():
                probe.log_scale.copy_(init.log_scale)
    return probe, note


def minibatch_plan(fit_idx: np.ndarray, settings: FitSettings, seed: int) -> torch.Tensor | None:
    """The samples of every step up to the budget's limit [limit, batch] (None: full batch,
    every fit sample each step): ``fit_idx`` reshuffled with the seed's generator whenever a
    batch would not fit."""
    fit = torch.as_tensor(np.asarray(fit_idx), dtype=torch.long)
    batch = settings.batch_size if 0 < settings.batch_size < len(fit) else len(fit)
    if batch == len(fit):
        return None
    generator = torch.Generator().manual_seed(check_seed(seed))
    order, cursor, steps = fit[torch.randperm(len(fit), generator=generator)], 0, []
    for _ in range(settings.limit if settings.max_steps > 0 else 1):
        if cursor + batch > len(order):
            order, cursor = fit[torch.randperm(len(fit), generator=generator)], 0
        steps.append(order[cursor : cursor + batch])
        cursor += batch
    return torch.stack(steps) if steps else torch.empty(0, batch, dtype=torch.long)


class Minibatches:
    """The (z, y, mask) of each optimizer step: the :func:`minibatch_plan`'s samples, or
    every fit sample (full batch)."""

    def __init__(self, data: ProbeData, fit_idx: np.ndarray, settings: FitSettings,
                 seed: int) -> None:
        self.data, self.plan = data, minibatch_plan(fit_idx, settings, seed)
        if self.plan is None:
            fit = torch.as_tensor(np.asarray(fit_idx), dtype=torch.long, device=data.z.device)
            self.full = (data.z[fit], data.y[fit], data.mask[fit])

    def at(self, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The batch of optimizer step ``step`` (1-based)."""
        if self.plan is None:
            return self.full
        b = self.plan[step - 1].to(self.data.z.device)
        return self.data.z[b], self.data.y[b], self.data.mask[b]


def crop_batch(y: torch.Tensor, mask: torch.Tensor, crop: int, margin: int,
               generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    """Random crops of whole targets for training an autoregressive null on fewer pixels
    per step: (y, mask, scored, top, left). Each sample's input window is ``crop + margin``
    rows by ``crop + 2·margin`` columns (clipped to the frame) at a uniform random position;
    only its pixels whose whole causal receptive field (``margin`` up, left and right) lies
    in the window, or whose field is cut by the frame's own edge, are scored (``scored``).
    Each scored pixel's loss is therefore exactly its loss on the whole image (the same
    context, the MED anchor included, and the positional map read at ``top``, ``left``):
    no crop-border bias; the frame's edge pixels are scored less often than the middle
    ones."""
    n, _, height, width = y.shape
    h_in, w_in = min(height, crop + margin), min(width, crop + 2 * margin)
    top = torch.randint(0, height - h_in + 1, (n,), generator=generator)
    left = torch.randint(0, width - w_in + 1, (n,), generator=generator)
    ys = torch.stack([y[i, :, t : t + h_in, s : s + w_in]
                      for i, (t, s) in enumerate(zip(top.tolist(), left.tolist()))])
    ms = torch.stack([mask[i, :, t : t + h_in, s : s + w_in]
                      for i, (t, s) in enumerate(zip(top.tolist(), left.tolist()))])
    r = torch.arange(h_in)[None, :]
    c = torch.arange(w_in)[None, :]
    row_ok = (r >= margin) | (top[:, None] == 0)  # [n, h_in]
    col_ok = (((c >= margin) | (left[:, None] == 0))
              & ((c < w_in - margin) | (left[:, None] + w_in == width)))  # [n, w_in]
    scored = (row_ok[:, :, None] & col_ok[:, None, :])[:, None].to(y.device) & ms
    return ys, ms, scored, top.to(y.device), left.to(y.device)


def train_step(probe: Probe, target: Target, optimizer: torch.optim.Optimizer, lr: float,
               z: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> bool:
    """One optimizer step at ``lr`` on the probe's training NLL of a batch; False (and no
    step) when the loss is not finite."""
    probe.train()
    return _descend(optimizer, lr, target.train_nll(probe.stat(z, y, mask), mask,
                                                     probe.log_scale))


def _descend(optimizer: torch.optim.Optimizer, lr: float, loss: torch.Tensor) -> bool:
    """One optimizer step at ``lr`` on ``loss``; False (and no step) if it is not finite."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    if not torch.isfinite(loss):
        return False
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return True


def crop_step(probe: Probe, target: Target, optimizer: torch.optim.Optimizer, lr: float,
              z: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, crop: int,
              generator: torch.Generator) -> bool:
    """:func:`train_step` of an autoregressive null on random crops of the batch's targets
    (:func:`crop_batch`): the loss is the mean NLL of the crops' scored values."""
    probe.train()
    core = probe.core
    ys, ms, scored, top, left = crop_batch(y, mask, crop, core.margin, generator)
    value = core.stat(core(None, ys, ms, offset=(top, left)), ys, ms)
    return _descend(optimizer, lr, target.train_nll(value, scored, None))


def still_improving(best_step: int, budget: int) -> bool:
    """A probe is still improving at its budget when its best checkpoint lies in the second
    half of the budget (robust to a noisy last evaluation)."""
    return best_step > budget // 2


def next_budget(budget: int, best_step: int, settings: FitSettings) -> int:
    """The budget after a probe reached ``budget`` with its best checkpoint at ``best_step``:
    doubled (up to the limit) while it still improves, else unchanged (it stops)."""
    if still_improving(best_step, budget) and budget < settings.limit:
        return min(2 * budget, settings.limit)
    return budget


def fit_probe(
    spec: FamilySpec, target: Target, data: ProbeData, fit_idx: np.ndarray, val_idx: np.ndarray,
    settings: FitSettings, seed: int, null: bool = False, init: Probe | None = None,
) -> FitResult:
    """Fit one member of ``spec`` (or its null) on ``fit_idx``, selected on ``val_idx``;
    ``init`` is the fitted null a conditional member starts from (see the module doc)."""
    probe, note = new_probe(spec, target, data, fit_idx, settings, seed, null, init)

    def validate() -> float:
        return heldout_nats(target, split_stats(probe, target, data, val_idx,
                                                settings.eval_batch_size))

    if closed_form(spec, target, settings):
        least_squares(probe, target, data, fit_idx, settings.ridge_alpha)
        method = "least squares" if settings.ridge_alpha == 0 or null else \
            f"ridge least squares (alpha={settings.ridge_alpha:g})"
        return FitResult(probe, validate(), 0, 0, method, note)

    optimizer = torch.optim.Adam(probe.parameters(), lr=settings.lr, fused=True)
    track = BestCheckpoint(probe, validate(), settings)
    batches = Minibatches(data, fit_idx, settings, seed)
    crops = None
    if null and spec.autoregressive and settings.null_crop > 0:  # the null on random crops
        crops = torch.Generator().manual_seed(check_seed(seed) + CROP_STREAM)
        note = "; ".join(t for t in (note, f"trained on {settings.null_crop}-pixel crops "
                                     f"({settings.batch_size} per step)") if t)
    step = 0
    while step < track.budget:
        step += 1
        if crops is not None:
            ok = crop_step(probe, target, optimizer, settings.lr_at(step), *batches.at(step),
                           settings.null_crop, crops)
        else:
            ok = train_step(probe, target, optimizer, settings.lr_at(step), *batches.at(step))
        if not ok:
            note += f"; non-finite loss at step {step}, kept step {track.best_step}"
            break
        if (step % settings.eval_every == 0 or step == track.budget) and \
                track.evaluate(step, validate()):
            break
    return track.finish(step, "adam", note)


class BestCheckpoint:
    """The bookkeeping of one fit: its best checkpoint on the selection samples (step 0, the
    start, included), patience after the warm-up, the budget that grows while the fit still
    improves (:func:`next_budget`), and the selection-loss curve (:func:`recent_gain`)."""

    def __init__(self, probe: nn.Module, value: float, settings: FitSettings) -> None:
        self.probe, self.settings = probe, settings
        self.best_val, self.best_state = value, copy.deepcopy(probe.state_dict())
        self.best_step, self.bad, self.budget = 0, 0, settings.max_steps
        self.curve = [(0, value)]

    def evaluate(self, step: int, value: float) -> bool:
        """Record the selection loss of ``step``; True when patience is spent (stop)."""
        self.curve.append((step, value))
        if value < self.best_val - 1e-7 * max(1.0, abs(self.best_val)):
            self.best_val, self.best_step, self.bad = value, step, 0
            self.best_state = copy.deepcopy(self.probe.state_dict())
        elif step > self.settings.warmup:
            self.bad += 1
            if self.bad >= self.settings.patience:
                return True
        if step == self.budget:
            self.budget = next_budget(self.budget, self.best_step, self.settings)
        return False

    def finish(self, step: int, method: str, note: str) -> FitResult:
        """Load the best checkpoint into the probe and describe the fit; where that is step
        0 (the start) of a fit that trained, the member at the end of its training comes
        along as ``trained``."""
        trained = None
        if self.best_step == 0 and step > 0:
            trained = copy.deepcopy(self.probe).eval()
        self.probe.load_state_dict(self.best_state)
        limit = self.settings.limit
        at_cap = (step >= limit and self.settings.max_steps > 0
                  and still_improving(self.best_step, limit))
        return FitResult(self.probe, self.best_val, self.best_step, step, method, note, at_cap,
                         self.budget, recent_gain(self.curve) if at_cap else 0.0, trained)


def recent_gain(curve: list[tuple[int, float]]) -> float:
    """How much a selection loss (nats/unit) fell over the second half of a fit: the value
    at the evaluation nearest half the last step minus the best value (>= 0)."""
    if len(curve) < 2:
        return 0.0
    last = curve[-1][0]
    half = min(curve, key=lambda point: abs(point[0] - last / 2))[1]
    return max(0.0, half - min(v for _, v in curve))
