"""Batched probe fitting: K probes of one family trained at once as one grouped network.

    results = fit_probes(spec, target, data, jobs, settings)   # one FitResult per ProbeJob

A family's probes (refit seeds x folds x {null, conditional}, or the prefix fits of the
loss-data curves) share an architecture, so K of them run as *one* network in which every
layer is the K members' layers side by side (:func:`group_modules`): members sit in channel
groups, member m owning channels [m·C, (m+1)·C) of every layer; a linear layer or 1x1
conv becomes one batched matmul (:class:`GroupedPointwise`), a 3x3/5x5 conv or transposed
conv a grouped conv (groups x K), and ReLU/ELU/pixel-shuffle act per channel anyway::

    z[rows of member 0] | ... | z[rows of member K-1]    [b, K·C_z, h, w]  (row i of each)
      -> grouped trunk and head -> PixelShuffle(s)      [b, K·C·P, H, W]
      -> the target with its C channels repeated K times (stacked_target): per-channel
         losses -> the K members' NLLs -> sum -> backward -> one fused Adam

Each member keeps everything that makes it the probe :func:`vinfo.fit.loop.fit_probe` would
fit, and gets the same :class:`~vinfo.fit.loop.FitResult`:

* its initialisation (``new_probe`` with its seed: marginal-solution head, seeded trunk);
* its fit / validation samples. Each step gathers every member's rows [K, b] from a plan
  drawn up front (full batch: all its fit samples, gathered once; minibatches: the seeded
  reshuffles of ``fit_probe``, :func:`vinfo.fit.loop.minibatch_plan`). Members with fewer
  rows are padded with masked rows, which count for neither the loss nor its normalisation;
  only jobs of similar step sizes train together (the loss-data curves' prefix fits of
  different sizes form separate groups), so padding wastes little;
* its own Adam: Adam is elementwise and every live member has taken the same number of
  steps, so one Adam over the grouped parameters is K independent ones (same lr);
* its own validation score (all members in one pass per ``eval_batch_size`` chunk), best
  checkpoint and early stopping. A stopped member (patience spent, or a non-finite loss)
  leaves the network, which is rebuilt without it (parameters and Adam state sliced): its
  parameters stop changing and it costs nothing afterwards. The run ends when every member
  has stopped, or at ``max_steps``;
* its budget: it grows while the member still improves and the member stops at it
  otherwise (:func:`vinfo.fit.loop.next_budget`), and its ``at_cap`` flag;
* its null flag: nulls (cores alone) and conditionals (cores + Z pathways, started from
  their nulls) train in separate stacks; a stack of nulls computes its one output map and
  broadcasts it to the batch, as :class:`~vinfo.probes.probe.Probe` does.

Memory: the forward/backward of a step runs in row chunks of at most ``CHUNK_VALUES``
activation values (gradients accumulated; the per-channel means divide by the whole
batch's counts), which also keeps the working set in cache on a CPU.

Results equal sequential fitting up to floating-point rounding (batched kernels, summation
order), which can move an early-stopping decision by one evaluation. Measured on a 2-core
CPU (benchmarks/probes.py): batching pays where per-step work is small (vector targets,
minibatches: 2-3x for K = 8); for dense full-batch probes the arithmetic dominates and it
is about even. ``torch.func.vmap`` over ``functional_call`` was measured too and was
slower (its per-call overhead, and 0.3x for dense full-batch probes). Not batched: the
closed-form linear-Gaussian rung (a least-squares solve), and a body with a layer type
:func:`group_modules` does not know (every probe is then fitted one after another and its
note says so).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from vinfo.fit.closed_forms import closed_form
from vinfo.fit.grouped import MemberStack, group_modules, stacked_target
from vinfo.fit.loop import (
    FitResult,
    fit_probe,
    minibatch_plan,
    new_probe,
    next_budget,
    still_improving,
)
from vinfo.fit.settings import FitSettings
from vinfo.probes.families import FamilySpec
from vinfo.probes.probe import Probe, ProbeData
from vinfo.probes.targets import Target

__all__ = ["ProbeJob", "fit_probes", "group_modules", "stacked_target"]

CHUNK_VALUES = 1 << 19  # activation values per forward/backward chunk (2 MB of float32)
CACHE_VALUES = 1 << 26  # full batch: grouped targets up to this size are gathered once
SIZE_RATIO = 0.8  # members train together when their step sizes are this close


@dataclass(frozen=True)
class ProbeJob:
    """One probe to fit: fit and selection samples (original indices), seed, null flag, and
    for a conditional member the fitted null it starts from (None: the marginal start)."""

    fit_idx: np.ndarray
    val_idx: np.ndarray
    seed: int
    null: bool = False
    init: Probe | None = None


def fit_probes(
    spec: FamilySpec, target: Target, data: ProbeData, jobs: Sequence[ProbeJob],
    settings: FitSettings,
) -> list[FitResult]:
    """Fit every job's probe of ``spec``, in order; batched when ``settings.batched``.

    Jobs whose step sizes (fit samples, or the minibatch) are within ``SIZE_RATIO`` of each
    other, and that are all nulls or all conditionals, train together (padding wastes
    little); a job alone, the closed forms, autoregressive families (masked convolutions are
    not grouped) and ``batched=False`` use :func:`fit_probe`.
    """
    def one(job: ProbeJob, extra: str = "") -> FitResult:
        result = fit_probe(spec, target, data, job.fit_idx, job.val_idx, settings, job.seed,
                           job.null, job.init)
        result.note = "; ".join(t for t in (result.note, extra) if t)
        return result

    if not settings.batched or len(jobs) < 2 or closed_form(spec, target, settings):
        return [one(job) for job in jobs]
    if spec.autoregressive:
        return [one(job, "autoregressive: fitted one after another") for job in jobs]
    results: list[FitResult | None] = [None] * len(jobs)
    for group in _size_groups(jobs, settings):
        if len(group) == 1:
            results[group[0]] = one(jobs[group[0]])
            continue
        members = [jobs[i] for i in group]
        built = [new_probe(spec, target, data, j.fit_idx, settings, j.seed, j.null, j.init)
                 for j in members]
        try:
            if not members[0].null:
                group_modules([built[0][0].zpath])
        except TypeError as err:
            for i in group:
                results[i] = one(jobs[i], f"fitted one after another, not batched ({err})")
            continue
        fitted = _BatchedFit(target, data, members, [p for p, _ in built], settings)
        for i, result in zip(group, fitted.run([n for _, n in built])):
            results[i] = result
    return results


def _size_groups(jobs: Sequence[ProbeJob], settings: FitSettings) -> list[list[int]]:
    """Job indices grouped by null flag and step size, each group's smallest >= SIZE_RATIO
    x its largest."""
    def size(job: ProbeJob) -> int:
        n = len(job.fit_idx)
        return settings.batch_size if 0 < settings.batch_size < n else n

    groups: list[list[int]] = []
    for i in sorted(range(len(jobs)), key=lambda i: (jobs[i].null, -size(jobs[i]))):
        head = jobs[groups[-1][0]] if groups else None
        if head is not None and head.null == jobs[i].null and \
                size(jobs[i]) >= SIZE_RATIO * size(head):
            groups[-1].append(i)
        else:
            groups.append([i])
    return [sorted(g) for g in groups]


class _BatchedFit:
    """The training loop over one stack of members; see the module docstring."""

    def __init__(self, target: Target, data: ProbeData, jobs: list[ProbeJob],
                 probes: list[Probe], settings: FitSettings) -> None:
        self.target, self.data, self.jobs, self.probes = target, data, jobs, probes
        self.settings = settings
        device = data.z.device
        self.plan, self.pad = _padded_plan(jobs, settings, device)  # [T, K, b], [K, b]
        self.val_rows, self.val_pad = _padded([j.val_idx for j in jobs], device)
        self.row_values = _activation_values(probes[0], data)  # per member and row
        self.stack = MemberStack(list(range(len(jobs))), probes, target, settings.lr,
                                 tuple(data.z.shape[1:]))
        k = len(jobs)
        self.best_val, self.bad = [0.0] * k, [0] * k
        self.best_step, self.steps_run = [0] * k, [0] * k
        self.budget, self.at_cap = [settings.max_steps] * k, [False] * k
        self.best_state: list[dict[str, torch.Tensor]] = [{} for _ in range(k)]

    def run(self, notes: list[str]) -> list[FitResult]:
        """Train until every member stopped; the members' FitResults."""
        s, stack = self.settings, self.stack
        self._evaluate(0, set())
        if s.max_steps <= 0:  # no budget: every member is its start
            stack.members.clear()
        step = 0
        while stack.members:
            step += 1
            rows = self.plan[(step - 1) % self.plan.shape[0]]
            for group in stack.optimizer.param_groups:
                group["lr"] = s.lr_at(step)
            stack.optimizer.zero_grad(set_to_none=True)
            losses = stack.losses(*self._inputs(rows), self._chunk())
            broken = {stack.members[r] for r in
                      torch.nonzero(~torch.isfinite(losses)).flatten().tolist()}
            stack.optimizer.step()  # a broken member's NaNs stay in its own groups
            for m in broken:  # fit_probe stops before this step's update: keep the best
                notes[m] += f"; non-finite loss at step {step}, kept step {self.best_step[m]}"
            due = {m for m in stack.members if self.budget[m] == step}
            if step % s.eval_every == 0 or due:
                self._evaluate(step, broken)
            stopped = set(broken) | {m for m in stack.members if self.bad[m] >= s.patience}
            for m in due - stopped:
                self.budget[m] = next_budget(step, self.best_step[m], s)
                if self.budget[m] == step:
                    stopped.add(m)
                    self.at_cap[m] = step >= s.limit and still_improving(self.best_step[m],
                                                                         step)
            for m in stopped:
                self.steps_run[m] = step
            rows_kept = [r for r, m in enumerate(stack.members) if m not in stopped]
            if len(rows_kept) < len(stack.members):
                stack.keep(rows_kept) if rows_kept else stack.members.clear()
        method = f"adam (batched K={len(self.jobs)})"
        results = []
        for m, probe in enumerate(self.probes):
            with torch.no_grad():
                for name, p in probe.named_parameters():
                    p.copy_(self.best_state[m][name].reshape(p.shape))
            results.append(FitResult(probe, self.best_val[m], self.best_step[m],
                                     self.steps_run[m], method, notes[m], self.at_cap[m],
                                     self.budget[m]))
        return results

    def _chunk(self) -> int:
        """Rows per forward/backward chunk (``CHUNK_VALUES`` activation values)."""
        return max(1, CHUNK_VALUES // (len(self.stack.members) * self.row_values))

    def _inputs(self, rows: torch.Tensor) -> tuple:
        """The stack's grouped (z, y, mask) of one step (full batch: gathered once)."""
        stack = self.stack
        if stack.cache is not None:
            return stack.cache
        index = torch.as_tensor(stack.members, device=rows.device)
        inputs = stack.inputs(rows[index], self.pad[index], self.data)
        if self.plan.shape[0] == 1 and inputs[1].numel() <= CACHE_VALUES:
            stack.cache = inputs
        return inputs

    def _evaluate(self, step: int, skip: set[int]) -> None:
        """Selection nats/unit of every live member; best checkpoints and patience."""
        stack = self.stack
        values = self._validate()
        better = [r for r, (m, v) in enumerate(zip(stack.members, values))
                  if m not in skip and (step == 0 or _improves(v, self.best_val[m]))]
        state = stack.member_state(better) if better else {}
        for i, r in enumerate(better):
            m = stack.members[r]
            self.best_val[m], self.best_step[m], self.bad[m] = values[r], step, 0
            self.best_state[m] = {name: t[i] for name, t in state.items()}
        if step > self.settings.warmup:  # evaluations in the warm-up cost no patience
            for r, m in enumerate(stack.members):
                if r not in better and m not in skip:
                    self.bad[m] += 1

    def _validate(self) -> list[float]:
        """Held-out nats per unit of each member on its selection split, scale profiled."""
        stack = self.stack
        index = torch.as_tensor(stack.members, device=self.val_rows.device)
        rows, pad = self.val_rows[index], self.val_pad[index]
        size = min(self.settings.eval_batch_size, self._chunk())
        stat_sum, count = 0.0, 0.0
        with torch.no_grad():
            for start in range(0, rows.shape[1], size):
                part = slice(start, start + size)
                z, y, mask = stack.inputs(rows[:, part], pad[:, part], self.data)
                value = stack.target.stat(stack.forward(z, y.shape[0]), y, mask).double()
                dims = [d for d in range(value.dim()) if d != 1]
                stat_sum = stat_sum + value.sum(dims)
                count = count + mask.double().sum(dims)
        target = stack.target
        scale = target.profile(stat_sum, count)
        nll = target.nll_from_stat(stat_sum.reshape(1, -1), count.reshape(1, -1), scale)
        per_member = (nll.reshape(-1) / count.clamp_min(1)).reshape(len(stack.members), -1)
        return per_member.sum(1).tolist()


def _improves(value: float, best: float) -> bool:
    """fit_probe's rule: better than the best by more than 1e-7 (relative above 1)."""
    return value < best - 1e-7 * max(1.0, abs(best))


def _activation_values(probe: Probe, data: ProbeData) -> int:
    """The largest number of values any layer of ``probe`` outputs for one input row."""
    sizes: list[int] = [probe.core.offset().numel()]
    if probe.zpath is not None:
        hooks = [m.register_forward_hook(lambda _m, _i, out: sizes.append(out.numel()))
                 for m in probe.zpath.modules()]
        try:
            with torch.no_grad():
                probe.zpath(data.z[:1])
        finally:
            for hook in hooks:
                hook.remove()
    return max(sizes)


def _padded(index_sets: Sequence[np.ndarray], device: torch.device
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Index sets of unequal sizes -> rows [K, n_max] (padding repeats the set's first
    index) and their validity [K, n_max]."""
    n_max = max(len(s) for s in index_sets)
    rows = torch.zeros(len(index_sets), n_max, dtype=torch.long)
    valid = torch.zeros(len(index_sets), n_max, dtype=torch.bool)
    for k, s in enumerate(index_sets):
        t = torch.as_tensor(np.asarray(s), dtype=torch.long)
        rows[k, : len(t)], rows[k, len(t) :], valid[k, : len(t)] = t, t[0], True
    return rows.to(device), valid.to(device)


def _padded_plan(jobs: Sequence[ProbeJob], settings: FitSettings, device: torch.device
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of every step [T, K, b] (T = 1 when every member trains full batch) and their
    validity [K, b]: each member's minibatches as :func:`fit_probe` draws them."""
    plans = [minibatch_plan(j.fit_idx, settings, j.seed) for j in jobs]  # [T, b_k] or None
    if all(p is None for p in plans):
        rows, valid = _padded([j.fit_idx for j in jobs], device)
        return rows.unsqueeze(0), valid
    steps = max(settings.limit if settings.max_steps > 0 else 0, 1)
    full = [torch.as_tensor(np.asarray(j.fit_idx), dtype=torch.long) for j in jobs]
    plans = [full[k].expand(steps, -1) if p is None else p for k, p in enumerate(plans)]
    b_max = max(p.shape[1] for p in plans)
    rows = torch.zeros(steps, len(jobs), b_max, dtype=torch.long)
    valid = torch.zeros(len(jobs), b_max, dtype=torch.bool)
    for k, plan in enumerate(plans):
        rows[:, k, : plan.shape[1]], rows[:, k, plan.shape[1] :] = plan, plan[:, :1]
        valid[k, : plan.shape[1]] = True
    return rows.to(device), valid.to(device)
