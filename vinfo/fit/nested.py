"""Nested rungs: every autoregressive family is the one shared null plus a Z pathway.

DESIGN §7, "one null, nested rungs". The null H_V(Y|∅) of a target set is one strong causal
model (:class:`vinfo.probes.autoregressive.ARCore`: gated masked convolutions, the MED anchor, a
discretized logistic mixture or a categorical softmax), fitted once per target set and
fold (:mod:`vinfo.fit.nulls`) and shared by every rung and refit. A rung's member is::

    y ─▶ null trunk (frozen) ─▶ h [B, width, H, W] ─▶ null head ─▶ θ₀ [B, P, H, W]
    z ─▶ Z pathway of the rung (linear / MLP / CNN / synthesis, probes.families) ─▶ u [B, F, H, W]
            θ = θ₀ + C (u − ū)          C: 1x1 conv (F → P, no bias, zero-initialised)
            ū = the mean of u over the fit samples (in training: over the batch)

so that

* *optional ignorance holds by construction*: fed an uninformative input (a constant Z, which
  standardizes to zeros), u = ū and every member *is* the null (θ = θ₀ exactly); at step 0
  every conditional is the null (C starts at zero);
* *the null's deficit cannot pass for information*: the change a member makes is linear in
  the centred Z features, so its mean over Z is zero at every pixel and in every context: a
  member cannot move the null's parameters all one way (which would be the null improving
  itself), only differently for different Z. That alone is not enough where the loss is not
  convex in the parameters (mixture weights, channel coefficients): there, random moves of
  zero mean can still lower the loss of a null that stopped short of its optimum. So every
  rung also fits its *shuffled control*: the same member, same seed and budget, trained and
  scored on Z moved along a random cycle of the samples (:func:`shuffled`: Z keeps its
  distribution but carries nothing about its target). An input that carries no information
  about the sample is what the null must be able to use (optional ignorance, DESIGN §2), so
  the family's null of a refit is the better, on the selection samples, of the shared null
  and the shuffled control; I_V is what the member gains over it. Measured on the
  benchmark's scenes (benchmarks/vinfo_power.py, 3x32x64, Z independent of Y): without the
  control ``ar-mlp-64`` reported +0.158 [+0.026, +0.283] bits/pixel; with it, see
  benchmarks/RESULTS.md. (A first version coupled Z through a small network
  g(h, u) − g(h, u₀), not linear in u: on a weak null it found 1.5 bits/pixel "from"
  0.047 bits/pixel of planted information.)
* *the rungs differ only in what they can extract from Z*: the null's weights are shared and
  frozen (only the Z pathway and C train) and C is the same coupling for every rung.
  The change does not read the context h: a coupling that scaled u by a function of h (or by
  a learned per-pixel map) memorised label noise by position on the test's patch labels
  (training loss below the Bayes rate, selection loss worse than the null's from step 20);
  context-dependent use of Z is what the rung's own capacity (its receptive field, its
  per-position head) provides;
* *fitting is cheap*: the frozen null's θ₀ of the fit and selection samples is computed
  once per null (:class:`NullFeatures`) and each step runs only the Z pathway, the
  coupling and the likelihood; a ladder of rungs with several refits costs little more than its null.

Training (:func:`fit_nested`): Adam on the Z pathway and the coupling, minibatches from
:func:`vinfo.fit.loop.minibatch_plan`, warm-up, evaluation on the selection samples every
``eval_every`` steps, best checkpoint kept (step 0 — the null — included), early stopping
after ``patience`` evaluations without improvement, the budget doubling while still improving
up to ``step_limit`` (:func:`vinfo.fit.loop.next_budget`). The fit records its selection-loss
curve, so a fit that stopped while still improving by more than the estimate's minimum
detectable effect is flagged (:attr:`FitResult.recent_gain`).
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from infra.seeding import check_seed
from vinfo.fit.loop import BestCheckpoint, FitResult, minibatch_plan
from vinfo.fit.settings import FitSettings
from vinfo.probes.families import FamilySpec, PatchDecoder, build_zpath
from vinfo.probes.probe import ProbeData
from vinfo.probes.targets import Target

SHUFFLE_STREAM = 5  # the shuffled-Z control's permutation: seeded by (seed, SHUFFLE_STREAM)
CACHE_LIMIT_VALUES = 1 << 28  # cached θ₀ above this many floats (1 GiB): recomputed


class NestedProbe(nn.Module):
    """The null (frozen ``core``), a rung's ``zpath`` and the coupling ``coef`` (module
    docstring). ``stat(z, y, mask)`` gives per-value NLL (nats) like every probe; the Z
    features are centred on ``u_mean``, their mean over the fit samples (set by
    :meth:`set_mean`; in training, on the batch mean)."""

    def __init__(self, core: nn.Module, zpath: nn.Module, features: int,
                 shape: tuple[int, int]) -> None:
        super().__init__()
        self.core = core
        for p in self.core.parameters():
            p.requires_grad_(False)
        self.zpath = zpath
        self.features, self.params = features, core.out.out_channels
        self.coef = nn.Conv2d(features, self.params, 1, bias=False)
        with torch.no_grad():
            self.coef.weight.zero_()
        self.register_buffer("u_mean", torch.zeros(features, *shape))
        self.log_scale = None
        self.blind = False

    @property
    def null(self) -> bool:
        return False

    def delta(self, z: torch.Tensor) -> torch.Tensor:
        """C (u − ū): the change of the null's parameters that Z makes."""
        u = self.zpath(z)
        centred = u - (u.mean(0, keepdim=True) if self.training else self.u_mean)
        return self.coef(centred)

    def set_mean(self, z: torch.Tensor, batch_size: int) -> None:
        """ū := the mean Z feature map over ``z`` (the fit samples), [F, H, W]; for a patch
        decoder (linear, MLP, CNN rungs) computed at the latent resolution: the mean of the
        trunk's maps through the head and the shuffle (both affine, so the same mean)."""
        with torch.no_grad():
            if isinstance(self.zpath, PatchDecoder):  # the head and the shuffle are affine:
                trunk = self.zpath.trunk  # average the trunk's latent maps, then map the mean
                total = sum(trunk(z[start : start + batch_size]).sum(0, keepdim=True)
                            for start in range(0, z.shape[0], batch_size))
                mean = total / max(z.shape[0], 1)
                self.u_mean.copy_(self.zpath.shuffle(self.zpath.head(mean))[0])
                return
            total = torch.zeros_like(self.u_mean)
            for start in range(0, z.shape[0], batch_size):
                total += self.zpath(z[start : start + batch_size]).sum(0)
        self.u_mean.copy_(total / max(z.shape[0], 1))

    def forward(self, z: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            base = self.core(None, y, mask)
        return base + self.delta(z)

    def stat(self, z: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.core.stat(self(z, y, mask), y, mask)


class NullFeatures:
    """The frozen null's parameters θ₀ of samples (computed once, kept on the data's device;
    recomputed per batch when they would exceed ``CACHE_LIMIT_VALUES``)."""

    def __init__(self, core: nn.Module, data: ProbeData, idx: np.ndarray,
                 batch_size: int) -> None:
        self.core, self.data = core, data
        n_values = len(idx) * core.out.out_channels * int(np.prod(data.y.shape[2:]))
        self.rows = {int(i): r for r, i in enumerate(np.asarray(idx))}
        self.theta = None
        if n_values > CACHE_LIMIT_VALUES:
            return
        thetas = []
        core.eval()
        with torch.no_grad():
            for start in range(0, len(idx), batch_size):
                b = torch.as_tensor(idx[start : start + batch_size], device=data.y.device)
                thetas.append(core(None, data.y[b], data.mask[b]))
        self.theta = torch.cat(thetas)

    def at(self, b: torch.Tensor) -> torch.Tensor:
        """θ₀ of the samples ``b`` (original indices)."""
        if self.theta is None:
            with torch.no_grad():
                return self.core(None, self.data.y[b], self.data.mask[b])
        rows = torch.as_tensor([self.rows[int(i)] for i in b.tolist()], device=self.theta.device)
        return self.theta[rows]


def new_nested(spec: FamilySpec, null: nn.Module, data: ProbeData, settings: FitSettings,
               seed: int) -> tuple[NestedProbe, str]:
    """A member of rung ``spec`` on the fitted ``null`` core: its Z pathway (seeded by
    ``seed``, its head at the default initialisation so that g's zero output layer is the
    only zero) and the coupling; the null's weights are copied and frozen."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(check_seed(seed))
        zpath, note = build_zpath(spec, data.z.shape[1], settings.z_features, data.stride,
                                  settings.synthesis_widths, settings.synthesis_blocks)
        for module in zpath.modules():  # build_zpath zeroes the head; the coupling is the zero
            if module is not zpath and isinstance(module, nn.Conv2d | nn.ConvTranspose2d |
                                                  nn.Linear):
                if not module.weight.abs().sum() > 0:
                    module.reset_parameters()
        probe = NestedProbe(copy.deepcopy(null), zpath, settings.z_features,
                            tuple(data.y.shape[2:]))
    return probe.to(data.z.device), note


def _select_nats(probe: NestedProbe, target: Target, feats: NullFeatures, data: ProbeData,
                 idx: np.ndarray, batch_size: int) -> float:
    """Nats per unit of ``probe`` on samples ``idx`` (pooled per channel, like
    :func:`vinfo.probes.probe.heldout_nats` for a discrete target)."""
    sums = counts = None
    probe.eval()
    with torch.no_grad():
        for start in range(0, len(idx), batch_size):
            b = torch.as_tensor(idx[start : start + batch_size], device=data.y.device)
            theta = feats.at(b)
            y, mask = data.y[b], data.mask[b]
            value = probe.core.stat(theta + probe.delta(data.z[b]), y, mask).double()
            dims = tuple(d for d in range(value.dim()) if d != 1)
            s, c = value.sum(dims), mask.double().sum(dims)
            sums, counts = (s, c) if sums is None else (sums + s, counts + c)
    return float((sums / counts.clamp_min(1)).sum())


def fit_nested(
    spec: FamilySpec, null: nn.Module, target: Target, data: ProbeData, fit_idx: np.ndarray,
    val_idx: np.ndarray, settings: FitSettings, seed: int, feats: NullFeatures | None = None,
) -> FitResult:
    """Fit a member of rung ``spec`` on the shared ``null`` core (module docstring)."""
    probe, note = new_nested(spec, null, data, settings, seed)
    if feats is None:
        feats = NullFeatures(probe.core, data, np.concatenate([fit_idx, val_idx]),
                             settings.eval_batch_size)

    fit_z = data.z[torch.as_tensor(np.asarray(fit_idx), device=data.z.device)]

    def validate() -> float:
        probe.set_mean(fit_z, settings.eval_batch_size)
        return _select_nats(probe, target, feats, data, val_idx, settings.eval_batch_size)

    trainable = [p for p in probe.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trainable, lr=settings.lr)
    track = BestCheckpoint(probe, validate(), settings)  # its state carries the ū scored
    plan = minibatch_plan(fit_idx, settings, seed)
    full = torch.as_tensor(np.asarray(fit_idx), dtype=torch.long)
    step = 0
    while step < track.budget:
        step += 1
        b = (full if plan is None else plan[step - 1]).to(data.y.device)
        theta = feats.at(b)
        y, mask = data.y[b], data.mask[b]
        probe.train()
        for group in optimizer.param_groups:
            group["lr"] = settings.lr_at(step)
        loss = target.train_nll(probe.core.stat(theta + probe.delta(data.z[b]), y, mask),
                                mask, None)
        if not torch.isfinite(loss):
            note += f"; non-finite loss at step {step}, kept step {track.best_step}"
            break
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if (step % settings.eval_every == 0 or step == track.budget) and \
                track.evaluate(step, validate()):
            break
    return track.finish(step, "adam, Z pathway + coupling on the frozen shared null "
                        "(vinfo.fit.nested)", note)



def shuffled(data: ProbeData, seed: int) -> ProbeData:
    """``data`` with Z moved one place along a seeded random cycle of the samples: sample
    order[k] gets the Z of order[k + 1] (no sample keeps its own), so Z keeps its marginal
    distribution and carries no information about the target it is paired with."""
    n = data.z.shape[0]
    order = np.random.default_rng([check_seed(seed), SHUFFLE_STREAM]).permutation(n)
    source = np.empty(n, dtype=np.int64)
    source[order] = np.roll(order, -1)
    return ProbeData(data.z[torch.as_tensor(source, device=data.z.device)], data.y, data.mask,
                     data.stride)
