"""Fitting probes: seeded splits, the training loop with a growing budget, held-out statistics.

Splits are by sample and come from a permutation drawn from the seed (never positional; 0 is
a seed). Without cross-fitting the last ``1 - fit - val`` share of the permutation is the
evaluation split and the rest the *pool*; with K folds each fold in turn is the evaluation
split. Each refit seed re-partitions its pool with its own permutation into::

    fit        the probes train on it
    select     model selection and early stopping (the kept checkpoint is its best)
    guard      the guard's decision "did the conditional beat the null?", on samples that
               did not select either checkpoint (:func:`select_guard`)

so the evaluation split stays fixed (paired) across families and seeds while the spread over
seeds includes training-data variation.

A probe is a *core* and, for a conditional member, a *Z pathway* (:mod:`vinfo.families`).
The null is the core alone; a conditional member starts from its fitted null (the core's
parameters copied, the Z pathway's head at zero), so at step 0 it *is* its null. Probes train
with Adam (full batch, or minibatches of ``batch_size``; the learning rate warms up
linearly over the first ``warmup_steps``, whose evaluations cost no patience), are scored on
``select`` every ``eval_every`` steps, keep their best checkpoint (step 0 included) and stop
after ``patience`` evaluations without improvement.

The budget grows. Training starts with a budget of ``max_steps``; when a probe reaches its
budget while still improving (its best checkpoint in the second half of the budget), the
budget doubles, up to ``step_limit`` (0: 8 x ``max_steps``). A probe that reaches the limit
still improving is reported ``at_cap``: under-trained, not converged (DESIGN §2: a gap between
rungs is a capacity effect only if every rung has converged).

Closed forms (factorized Gaussian targets, float64, :func:`vinfo.ridge.ridge_solve`): the
null is the fit split's mean (per position for dense targets: the positional null's MLE)
with the MSE as variance; the linear rung is least squares, on a latent grid with one
intercept per target position (the positional map) and weights shared by every latent cell
(exact "within" least squares when nothing is masked, alternating least squares otherwise).
``ridge_alpha > 0`` adds ``ridge_alpha * |W|^2`` on the head weights, which map standardized
inputs to standardized target values; 0 is plain least squares.

Minibatches are drawn up front by :func:`minibatch_plan` (a seeded reshuffle per epoch), so
the batched fitting of :mod:`vinfo.batched` gives every member the batches this loop would.

Statistics (:func:`split_stats`) are per-sample, per-channel sums of the likelihood's
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

from infra.seeding import check_seed
from vinfo.families import FamilySpec, build_core, build_zpath
from vinfo.ridge import ridge_solve
from vinfo.targets import Target

ALS_SWEEPS = 25  # alternating least squares sweeps of the masked positional linear rung


@dataclass(frozen=True)
class FitSettings:
    """The training budget of a family (part of V) and how probes are fitted."""

    max_steps: int = 400  # the starting budget; it doubles while a probe still improves
    step_limit: int = 0  # the budget's hard limit (0: 8 x max_steps)
    lr: float = 3e-3
    batch_size: int = 16  # samples per optimizer step (0: full batch)
    eval_every: int = 20
    patience: int = 5
    closed_form_linear: bool = True
    eval_batch_size: int = 256
    synthesis_widths: tuple[int, ...] = (192, 48, 24)
    synthesis_blocks: int = 1
    batched: bool = True  # fit a family's probes together as one network (vinfo.batched)
    ridge_alpha: float = 0.0  # closed form: L2 penalty on the standardized head weights
    context_width: int = 32  # autoregressive families: causal-context features per pixel
    context_kernel: int = 5  # its masked (type A) convolution, k x k
    mixtures: int = 2  # discretized autoregressive likelihood: logistic components
    context_layers: int = 2  # autoregressive null: gated masked residual blocks
    z_features: int = 16  # autoregressive rungs: Z features per target pixel (vinfo.nested)
    null_steps: int = 600  # autoregressive null: its starting step budget (it grows too)
    null_lr: float = 5e-3  # autoregressive null: its learning rate
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


@dataclass
class Split:
    """One evaluation split and its training pool (original sample indices)."""

    eval_idx: np.ndarray
    pool: np.ndarray
    fold: int = 0
    fixed: bool = False  # the probing protocol: the pool is [fit..., selection...] as given

    def partition(self, split_seed: int, refit_seed: int, val_share: float) -> np.ndarray:
        """The pool in the order of ``refit_seed``: fit = head, validation = the last
        ``val_share`` of it (use :func:`head_tail`, then :func:`select_guard`); a fixed
        split's pool as it is (every refit fits on the same samples)."""
        if self.fixed:
            return self.pool
        rng = np.random.default_rng([check_seed(split_seed), check_seed(refit_seed), self.fold])
        return self.pool[rng.permutation(self.pool.size)]


def head_tail(order: np.ndarray, size: int, val_share: float) -> tuple[np.ndarray, np.ndarray]:
    """The first ``size`` samples of ``order`` split into fit (head) and validation (tail)."""
    n_val = max(1, int(round(size * val_share)))
    return order[: size - n_val], order[size - n_val : size]


def select_guard(val: np.ndarray, guard_share: float) -> tuple[np.ndarray, np.ndarray]:
    """Validation samples -> (select, guard): the last ``guard_share`` (at least one sample)
    decide the guard. With ``guard_share`` 0, or a single validation sample, the guard
    reuses the selection samples (the caller reports it)."""
    n_guard = int(round(len(val) * guard_share))
    if guard_share <= 0 or len(val) < 2:
        return val, val
    n_guard = min(max(n_guard, 1), len(val) - 1)
    return val[: len(val) - n_guard], val[len(val) - n_guard :]


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


def protocol_split(n: int, n_fit: int, seed: int, select_fraction: float) -> Split:
    """The probing protocol (DESIGN §7): samples [0, n_fit) fit every probe (the train split);
    of the rest, a seeded ``select_fraction`` selects and guards, the others are evaluated."""
    n_rest = n - n_fit
    if n_fit < 2 or n_rest < 4:
        raise ValueError(f"fit_samples {n_fit} of {n}: need at least 2 fit samples and 4 "
                         "others (selection and evaluation)")
    perm = n_fit + np.random.default_rng(check_seed(seed)).permutation(n_rest)
    n_select = min(max(2, int(round(n_rest * select_fraction))), n_rest - 2)
    return Split(np.sort(perm[n_select:]), np.concatenate([np.arange(n_fit), perm[:n_select]]),
                 0, fixed=True)


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
    """Nats per unit on the split (scale profiled for gaussian/laplace; see vinfo.targets)."""
    stat_sum, count = stats.stat.sum(0), stats.count.sum(0)
    scale = target.profile(stat_sum, count)
    nll = target.nll_from_stat(stat_sum.reshape(1, -1), count.reshape(1, -1), scale).reshape(-1)
    return float((nll / count.clamp_min(1)).sum())


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


def closed_form(spec: FamilySpec, target: Target, settings: FitSettings) -> bool:
    """True when ``spec`` is fitted by least squares (the factorized linear-Gaussian rung and
    the factorized Gaussian null)."""
    return (settings.closed_form_linear and not spec.autoregressive
            and spec.kind in ("linear", "null") and target.kind == "gaussian")


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


def train_step(probe: Probe, target: Target, optimizer: torch.optim.Optimizer, lr: float,
               z: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> bool:
    """One optimizer step at ``lr`` on the probe's training NLL of a batch; False (and no
    step) when the loss is not finite."""
    probe.train()
    for group in optimizer.param_groups:
        group["lr"] = lr
    loss = target.train_nll(probe.stat(z, y, mask), mask, probe.log_scale)
    if not torch.isfinite(loss):
        return False
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return True


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
        _least_squares(probe, target, data, fit_idx, settings.ridge_alpha)
        method = "least squares" if settings.ridge_alpha == 0 or null else \
            f"ridge least squares (alpha={settings.ridge_alpha:g})"
        return FitResult(probe, validate(), 0, 0, method, note)

    optimizer = torch.optim.Adam(probe.parameters(), lr=settings.lr, fused=True)
    track = BestCheckpoint(probe, validate(), settings)
    batches = Minibatches(data, fit_idx, settings, seed)
    step = 0
    while step < track.budget:
        step += 1
        if not train_step(probe, target, optimizer, settings.lr_at(step), *batches.at(step)):
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


def _least_squares(
    probe: Probe, target: Target, data: ProbeData, fit_idx: np.ndarray, alpha: float = 0.0
) -> None:
    """Closed-form Gaussian fit of the null or the linear rung (module docstring): core
    (bias, positional map) and head weights by least squares in standardized units,
    log-scale = the fit split's MSE (its MLE)."""
    device = data.z.device
    b = torch.as_tensor(fit_idx, device=device)
    y, mask = data.y[b].double().cpu(), data.mask[b].cpu()
    loc = target.loc.reshape(1, -1, *([1] * (y.dim() - 2)))
    y_std = (y - loc) / target.spread.reshape(loc.shape)  # the model predicts standardized values
    core = probe.core
    if probe.null:
        valid = mask.double()
        if core.pos is None:
            offset = (y_std * valid).sum(0) / valid.sum(0).clamp_min(1)
        else:  # per position; a position never valid keeps the channel's overall mean
            dims = [0, *range(2, y.dim())]
            overall = (y_std * valid).sum(dims) / valid.sum(dims).clamp_min(1)
            count = valid.sum(0)
            offset = torch.where(count > 0, (y_std * valid).sum(0) / count.clamp_min(1),
                                 overall.reshape(-1, 1, 1))
        _set_core(core, offset)
    elif data.stride is not None:
        weight, offset = _positional_least_squares(data.z[b].double().cpu(), y_std, mask,
                                                   data.stride, alpha)
        head = probe.zpath.head
        with torch.no_grad():
            head.weight.copy_(weight.T.reshape(head.weight.shape).float())
            head.bias.zero_()
        _set_core(core, offset)
    else:
        weight, bias = masked_ridge(data.z[b].double().cpu(), y_std, mask, alpha)
        with torch.no_grad():
            probe.zpath.head.weight.copy_(weight.T.float())
            probe.zpath.head.bias.zero_()
        _set_core(core, bias)
    with torch.no_grad():
        value = probe.stat(data.z[b], data.y[b], data.mask[b]).double().cpu()
        dims = [d for d in range(value.dim()) if d != 1]
        mse = value.sum(dims) / mask.double().sum(dims).clamp_min(1)
        probe.log_scale.copy_(torch.log(mse.clamp_min(1e-12).sqrt() / target.spread).float())


def _set_core(core: nn.Module, offset: torch.Tensor) -> None:
    """Core output := ``offset`` ([C] for vectors, [C, H, W] dense): bias 0 + map, or bias."""
    with torch.no_grad():
        if core.pos is None:
            core.bias.copy_(offset.float())
        else:
            core.bias.zero_()
            core.pos.copy_(offset.float())


def _positional_least_squares(
    z: torch.Tensor, y_std: torch.Tensor, mask: torch.Tensor, s: int, alpha: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Linear rung on a latent grid with one intercept per target position: weights [D, O]
    shared by the latent cells (O = C·s² patch values) and the intercept map [C, H, W]."""
    n, d, h, w = z.shape
    x = z.permute(0, 2, 3, 1).reshape(n, h * w, d)  # [n, L, D]
    cols = F.pixel_unshuffle(y_std, s).permute(0, 2, 3, 1).reshape(n, h * w, -1)  # [n, L, O]
    valid = F.pixel_unshuffle(mask.double(), s).permute(0, 2, 3, 1).reshape(n, h * w, -1) > 0
    if bool(valid.all()):  # exact: demean per latent cell across samples ("within" estimator)
        x_bar, y_bar = x.mean(0, keepdim=True), cols.mean(0, keepdim=True)
        weight, _ = ridge_solve((x - x_bar).reshape(-1, d), (cols - y_bar).reshape(-1,
                                cols.shape[2]), alpha)
        intercept = y_bar[0] - x_bar[0] @ weight  # [L, O]
    else:  # alternating least squares over the valid values
        v = valid.double()
        intercept = (cols * v).sum(0) / v.sum(0).clamp_min(1)
        for _ in range(ALS_SWEEPS):
            weight, bias = masked_ridge(x.reshape(-1, d), (cols - intercept).reshape(
                -1, cols.shape[2]), valid.reshape(-1, cols.shape[2]), alpha)
            residual, count = cols - x @ weight, v.sum(0)
            intercept = torch.where(count > 0, (residual * v).sum(0) / count.clamp_min(1),
                                    intercept + bias)
    offset = F.pixel_shuffle(intercept.T.reshape(1, -1, h, w), s)[0]  # [C, H, W]
    return weight, offset


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
