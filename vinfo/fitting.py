"""Fitting probes: seeded splits, the training loop with early stopping, held-out statistics.

Splits are by sample and come from a permutation drawn from the seed (never positional; 0 is
a seed). Without cross-fitting the last ``1 - fit - val`` share of the permutation is the
evaluation split and the rest the *pool*; with K folds each fold in turn is the evaluation
split. Each refit seed re-partitions its pool into fit / validation (model selection and
early stopping) with its own permutation, so the evaluation split stays fixed (paired)
across families and seeds while the spread over seeds includes training-data variation.

A probe starts at the null solution (head weights zero, bias = the marginal fit, see
:mod:`vinfo.families`), trains with Adam (full batch, or minibatches of ``batch_size``) for at
most ``max_steps`` steps, is scored on the validation split every ``eval_every`` steps and
keeps its best checkpoint (step 0 included: a probe that never beats its start *is* the
marginal solution). Training stops after ``patience`` evaluations without improvement.

The linear family with a Gaussian target is fitted in closed form (least squares on the fit
split in float64, :func:`vinfo.ridge.ridge_solve`): the mean's least-squares solution is the
exact minimiser of the Gaussian NLL with a homoscedastic variance, whose MLE is then the
fit-split MSE. ``ridge_alpha > 0`` adds the penalty ``ridge_alpha * |W|^2`` on the head
weights W, which map standardized inputs to standardized target values (the bias is not
penalised); 0 is plain least squares. The null of any family is the same network fed zeros;
its output is one constant tensor, computed once per batch and broadcast.

Minibatches are drawn up front by :func:`minibatch_plan` (a seeded reshuffle per epoch), so
the batched fitting of :mod:`vinfo.batched` gives every member the batches this loop would.

Statistics (:func:`split_stats`) are per-sample, per-channel sums of the target's loss
statistic (nats, squared or absolute errors; :mod:`vinfo.targets`) and valid-value counts,
float64; their conversion to nats per unit is in :mod:`vinfo.pvi`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from taskcodecs.seeding import check_seed
from vinfo.families import FamilySpec, build_body
from vinfo.ridge import ridge_solve
from vinfo.targets import Target


@dataclass(frozen=True)
class FitSettings:
    """The training budget of a family (part of V) and how probes are fitted."""

    max_steps: int = 400
    lr: float = 3e-3
    batch_size: int = 0  # 0: full batch
    eval_every: int = 20
    patience: int = 5
    closed_form_linear: bool = True
    eval_batch_size: int = 256
    synthesis_widths: tuple[int, ...] = (192, 48, 24)
    synthesis_blocks: int = 1
    batched: bool = True  # fit a family's probes together as one network (vinfo.batched)
    ridge_alpha: float = 0.0  # closed form: L2 penalty on the standardized head weights


@dataclass
class ProbeData:
    """Inputs on one device: ``z`` [N, D] or [N, C_z, h, w] float32; ``y`` [N, C, ...]
    (int64 for categorical/discretized, float32 otherwise); ``mask`` bool like ``y``;
    ``stride`` the latent-to-target upsampling (None for vector representations)."""

    z: torch.Tensor
    y: torch.Tensor
    mask: torch.Tensor
    stride: int | None


@dataclass
class Split:
    """One evaluation split and its training pool (original sample indices)."""

    eval_idx: np.ndarray
    pool: np.ndarray
    fold: int = 0

    def partition(self, split_seed: int, refit_seed: int, val_share: float) -> np.ndarray:
        """The pool in the order of ``refit_seed``: fit = head, validation = the last
        ``val_share`` of it (use :func:`head_tail`)."""
        rng = np.random.default_rng([check_seed(split_seed), check_seed(refit_seed), self.fold])
        return self.pool[rng.permutation(self.pool.size)]


def head_tail(order: np.ndarray, size: int, val_share: float) -> tuple[np.ndarray, np.ndarray]:
    """The first ``size`` samples of ``order`` split into fit (head) and validation (tail)."""
    n_val = max(1, int(round(size * val_share)))
    return order[: size - n_val], order[size - n_val : size]


def make_splits(
    n: int, seed: int, fit_fraction: float, val_fraction: float, folds: int = 1
) -> list[Split]:
    """Seeded evaluation splits: one (folds = 1) or K cross-fitting folds."""
    perm = np.random.default_rng(check_seed(seed)).permutation(n)
    if folds <= 1:
        n_eval = max(1, int(round(n * (1.0 - fit_fraction - val_fraction))))
        return [Split(np.sort(perm[n - n_eval :]), perm[: n - n_eval], 0)]
    parts = np.array_split(perm, folds)
    return [
        Split(np.sort(part), np.concatenate([p for j, p in enumerate(parts) if j != k]), k)
        for k, part in enumerate(parts)
    ]


class Probe(nn.Module):
    """A family member: ``body`` plus, for gaussian/laplace targets, the learned log-scale.

    ``null=True`` feeds the body a zero input (one sample, broadcast to the batch).
    """

    def __init__(self, body: nn.Module, log_scale: torch.Tensor | None, null: bool) -> None:
        super().__init__()
        self.body = body
        self.log_scale = None if log_scale is None else nn.Parameter(log_scale.clone())
        self.null = null

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if not self.null:
            return self.body(z)
        out = self.body(torch.zeros_like(z[:1]))
        return out.expand(z.shape[0], *out.shape[1:])


@dataclass
class FitResult:
    """A fitted probe, its validation loss (nats/unit, profiled scale) and how it got there."""

    probe: Probe
    val_nats: float
    best_step: int
    steps_run: int
    method: str
    note: str = ""


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
            b = torch.as_tensor(idx[start : start + batch_size])
            y, mask = data.y[b], data.mask[b]
            value = target.stat(probe(data.z[b]), y, mask).double()
            dims = tuple(range(2, value.dim()))
            stats.append(value.sum(dims) if dims else value)
            counts.append(mask.double().sum(dims) if dims else mask.double())
            for row, sample in enumerate(b.tolist()):
                if sample in keep_set:
                    maps[sample], map_masks[sample] = value[row].clone(), mask[row].clone()
    return SplitStats(np.asarray(idx), torch.cat(stats), torch.cat(counts), maps, map_masks)


def heldout_nats(target: Target, stats: SplitStats) -> float:
    """Nats per unit on the split (scale profiled for gaussian/laplace; see vinfo.targets)."""
    stat_sum, count = stats.stat.sum(0), stats.count.sum(0)
    scale = target.profile(stat_sum, count)
    nll = target.nll_from_stat(stat_sum.reshape(1, -1), count.reshape(1, -1), scale).reshape(-1)
    return float((nll / count.clamp_min(1)).sum())


def new_probe(
    spec: FamilySpec, target: Target, data: ProbeData, fit_idx: np.ndarray, settings: FitSettings,
    seed: int, null: bool,
) -> tuple[Probe, str]:
    """A probe of ``spec`` at the marginal solution of ``fit_idx``, trunk seeded by ``seed``,
    and the family's note."""
    b = torch.as_tensor(fit_idx)
    y, mask = data.y[b], data.mask[b]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(check_seed(seed))
        body, note = build_body(
            spec, data.z.shape[1], target.out_channels, data.stride,
            target.marginal_bias(y, mask), settings.synthesis_widths, settings.synthesis_blocks,
        )
    return Probe(body, target.marginal_log_scale(y, mask), null), note


def closed_form(spec: FamilySpec, target: Target, settings: FitSettings) -> bool:
    """True when ``spec`` is fitted by least squares (the linear-Gaussian rung)."""
    return settings.closed_form_linear and spec.kind == "linear" and target.kind == "gaussian"


def minibatch_plan(fit_idx: np.ndarray, settings: FitSettings, seed: int) -> torch.Tensor | None:
    """The samples of every step [max_steps, batch] (None: full batch, every fit sample each
    step): ``fit_idx`` reshuffled with the seed's generator whenever a batch would not fit."""
    fit = torch.as_tensor(np.asarray(fit_idx), dtype=torch.long)
    batch = settings.batch_size if 0 < settings.batch_size < len(fit) else len(fit)
    if batch == len(fit):
        return None
    generator = torch.Generator().manual_seed(check_seed(seed))
    order, cursor, steps = fit[torch.randperm(len(fit), generator=generator)], 0, []
    for _ in range(settings.max_steps):
        if cursor + batch > len(order):
            order, cursor = fit[torch.randperm(len(fit), generator=generator)], 0
        steps.append(order[cursor : cursor + batch])
        cursor += batch
    return torch.stack(steps) if steps else torch.empty(0, batch, dtype=torch.long)


def fit_probe(
    spec: FamilySpec, target: Target, data: ProbeData, fit_idx: np.ndarray, val_idx: np.ndarray,
    settings: FitSettings, seed: int, null: bool = False,
) -> FitResult:
    """Fit one member of ``spec`` (or its null) on ``fit_idx``, selected on ``val_idx``."""
    probe, note = new_probe(spec, target, data, fit_idx, settings, seed, null)

    def validate() -> float:
        return heldout_nats(target, split_stats(probe, target, data, val_idx,
                                                settings.eval_batch_size))

    if closed_form(spec, target, settings):
        _least_squares(probe, target, data, fit_idx, settings.ridge_alpha)
        method = "least squares" if settings.ridge_alpha == 0 else \
            f"ridge least squares (alpha={settings.ridge_alpha:g})"
        return FitResult(probe, validate(), 0, 0, method, note)

    optimizer = torch.optim.Adam(probe.parameters(), lr=settings.lr, fused=True)
    best_val, best_state = validate(), copy.deepcopy(probe.state_dict())
    best_step, bad, step = 0, 0, 0
    plan = minibatch_plan(fit_idx, settings, seed)
    fit = torch.as_tensor(np.asarray(fit_idx), dtype=torch.long)
    full = (data.z[fit], data.y[fit], data.mask[fit]) if plan is None else None
    for step in range(1, settings.max_steps + 1):
        if full is not None:
            z, y, mask = full
        else:
            b = plan[step - 1]
            z, y, mask = data.z[b], data.y[b], data.mask[b]
        probe.train()
        loss = target.train_nll(probe(z), y, mask, probe.log_scale)
        if not torch.isfinite(loss):
            note += f"; non-finite loss at step {step}, kept step {best_step}"
            break
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % settings.eval_every == 0 or step == settings.max_steps:
            val = validate()
            if val < best_val - 1e-7 * max(1.0, abs(best_val)):
                best_val, best_step, bad = val, step, 0
                best_state = copy.deepcopy(probe.state_dict())
            else:
                bad += 1
                if bad >= settings.patience:
                    break
    probe.load_state_dict(best_state)
    return FitResult(probe, best_val, best_step, step, "adam", note)


def _least_squares(
    probe: Probe, target: Target, data: ProbeData, fit_idx: np.ndarray, alpha: float = 0.0
) -> None:
    """Closed-form linear-Gaussian fit: head weights and bias by (ridge) least squares per
    output value (rows with a masked target left out), log-scale = the fit-split MSE (its
    MLE). Rows are samples, or latent positions on a grid (columns: the s x s patch values)."""
    b = torch.as_tensor(fit_idx)
    z = torch.zeros_like(data.z[b]) if probe.null else data.z[b]
    y, mask = data.y[b].double(), data.mask[b]
    loc = target.loc.reshape(1, -1, *([1] * (y.dim() - 2)))
    y_std = (y - loc) / target.spread.reshape(loc.shape)  # the head predicts standardized values
    if data.stride is not None:  # grid: rows are latent positions, columns patch values
        s = data.stride
        x = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1]).double()
        cols = F.pixel_unshuffle(y_std, s).permute(0, 2, 3, 1).reshape(x.shape[0], -1)
        valid = F.pixel_unshuffle(mask.double(), s).permute(0, 2, 3, 1).reshape(x.shape[0], -1) > 0
    else:
        x, cols, valid = z.double(), y_std, mask
    weight, bias = masked_ridge(x, cols, valid, alpha)
    head = probe.body.head
    with torch.no_grad():
        head.weight.copy_(weight.T.reshape(head.weight.shape).float())
        head.bias.copy_(bias.float())
        value = target.stat(probe(data.z[b]), data.y[b], mask).double()
        dims = [d for d in range(value.dim()) if d != 1]
        mse = value.sum(dims) / mask.double().sum(dims).clamp_min(1)
        probe.log_scale.copy_(torch.log(mse.clamp_min(1e-12).sqrt() / target.spread).float())


def masked_ridge(
    x: torch.Tensor, cols: torch.Tensor, valid: torch.Tensor, alpha: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Ridge weights [D, O] and bias [O] of each output column over its valid rows only.

    All rows valid: one multi-output solve. Otherwise one solve per distinct validity
    pattern (outputs sharing a pattern are solved together); a column with no valid row
    gets weights and bias 0."""
    if bool(valid.all()):
        return ridge_solve(x, cols, alpha)
    weight = torch.zeros(x.shape[1], cols.shape[1], dtype=torch.float64)
    bias = torch.zeros(cols.shape[1], dtype=torch.float64)
    patterns, which = torch.unique(valid.T, dim=0, return_inverse=True)
    for p, rows in enumerate(patterns):
        if bool(rows.any()):
            outputs = torch.nonzero(which == p).flatten()
            weight[:, outputs], bias[outputs] = ridge_solve(x[rows], cols[rows][:, outputs], alpha)
    return weight, bias
