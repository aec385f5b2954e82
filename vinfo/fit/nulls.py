"""The null bank: one fitted null per (likelihood, refit seed, fold), shared by every rung.

Autoregressive likelihoods (DESIGN §7, "one null, nested rungs"): one null per target set and
fold, *not* per refit seed: the strongest causal model the budget allows (``null_steps`` at
``null_lr``, its own warm-up ``null_warmup_steps`` and evaluation interval ``null_eval_every``
(default: the rungs'); optionally on
random crops, ``null_crop`` and ``null_batch_size``, :func:`vinfo.fit.loop.crop_batch`;
:class:`vinfo.probes.autoregressive.ARCore`), fitted once on the fit samples, selected
on the selection samples (whole targets), and frozen; every rung and every refit is that null plus a Z
pathway (:mod:`vinfo.fit.nested`). Its parameters θ₀ of the samples are computed once
(``NullFit.features``).

Every family of one likelihood has the same null family: the core alone (a bias and a
learned positional map for factorized families, the causal context with its positional
map for autoregressive ones; :mod:`vinfo.probes.families` states why). So a ladder needs one null
fit per (seed, fold) and per loss-data-curve prefix, not one per rung, and an estimate on
the same targets with another representation (the baseline and the proposed base of the
demo, say) needs none at all: the null never sees Z. The bank keys each fit by everything
that determines it: the likelihood, a digest of the targets, their mask, the target's
parametrisation and the fit settings (:meth:`NullBank.data_key`), and the fit and selection
samples and seed of the job.

    bank = NullBank()
    key = bank.data_key(target, data, settings)
    nulls = bank.fits("autoregressive", key, target, data, jobs, settings)
    cond_start, reported_null = nulls[0].start, nulls[0].final

Two phases, so that the null and the conditional are trained alike. A conditional member
starts from a fitted null and is trained again (a fresh Adam, its own budget and early
stopping); had the null not quite converged, that second phase alone would make the
conditional better than its start without any help from Z (measured: 0.12 bits/pixel of
"information" from a Z independent of the 8-bit target). So the null gets the same second
phase: ``start`` (phase 1, the marginal start trained to convergence) is where every
conditional starts; ``final`` (phase 2, a restart from ``start`` with the same rules) is the
null that is scored. Both are then "phase 1 + one restart"; only the Z pathway differs.
Closed-form nulls (factorized Gaussian) are exact: there ``final`` is ``start``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np

from vinfo.fit.batched import ProbeJob, fit_probes
from vinfo.fit.closed_forms import closed_form
from vinfo.fit.loop import FitResult
from vinfo.fit.settings import FitSettings
from vinfo.probes.families import null_spec
from vinfo.probes.probe import ProbeData
from vinfo.probes.targets import Target

NULL_SEED = 0  # the shared autoregressive null's initialisation and minibatch order
# The null's own warm-up and evaluation interval (``null_warmup_steps``, ``null_eval_every``):
# 20 and 20 by default (since 2026-12-07; before, the rungs' rules). Measured on the demo's
# scenes (benchmarks/RESULTS.md, "V-information with power"): evaluated at the rungs' interval
# (every 10 steps, patience 5) the null stopped on the noise of its selection curve at 9.27
# bits/pixel; with a 60-step warm-up 300 steps reached 8.07 on held-out scenes, with 20 steps
# 7.23 (JPEG-XL: 7.25). On tests/vinfo/test_power.py's scenes the default null went from
# 1.25x to 0.92x JPEG-XL. With it, the exact-information case on 48 fit scenes collapses on
# every rung: the rungs' trained members lose 25-240 bits/image to the null on held-out scenes
# (their Z pathway overfits 48 images) against 2 bits/image of information; the weaker null
# had let ar-mlp-64 report 12 bits/image [7, 18] there -- its deficit, not Z. That test now
# fits 192 scenes.
# Its stopping rule (since the evening of 2026-12-07): evaluated every 40 steps (patience 5 =
# 200 steps without improvement) and a limit of NULL_LIMIT x null_steps (before: every 20,
# and 2x). Its selection curve at batch 4, lr 5e-3 is noisy early (recorded without early
# stopping on 6 target sets: 5 of 60-240 scenes of 3x64x128, one of 3x32x64;
# benchmarks/RESULTS.md "The null's stopping rule"): on 120 scenes it read 6.98 nats/unit at
# step 60, then 8.5, 10.1, 8.7, 7.8, 7.2, so 100 steps of patience stopped it at step 160 at
# 1.40x JPEG-XL (another set: +32 %); 200 steps of patience and the 8x limit kept all six
# within 1.8 % of their 1600-step minimum, only the 3x32x64 set at its limit (0.3 % from it;
# tests/vinfo/fit/test_nulls.py replays the 120-scene curve).
NULL_LIMIT = 8  # the null's budget grows to at most this many times null_steps


def null_settings(settings: FitSettings) -> FitSettings:
    """The shared autoregressive null's own fit rules, from the ``null_*`` knobs: a starting
    budget of ``null_steps`` that grows (doubling while still improving) to at most
    ``NULL_LIMIT`` times that (or ``step_limit``, if larger), evaluated every
    ``null_eval_every`` steps, so that its patience in steps is ``patience`` x that."""
    return replace(settings, max_steps=settings.null_steps, lr=settings.null_lr,
                   batch_size=settings.null_batch_size or settings.batch_size,
                   eval_every=settings.null_eval_every or settings.eval_every,
                   warmup_steps=(settings.null_warmup_steps if settings.null_warmup_steps >= 0
                                 else settings.warmup_steps),
                   step_limit=max(settings.step_limit, NULL_LIMIT * settings.null_steps))


@dataclass
class NullFit:
    """One null: ``start`` (where conditionals start) and ``final`` (the scored null);
    autoregressive: one fit (both), and the cached parameters θ₀ of its samples."""

    start: FitResult
    final: FitResult
    features: object = None  # vinfo.fit.nested.NullFeatures, made on first use


class NullBank:
    """Fitted nulls by key (see the module docstring); ``hits`` counts the reused ones."""

    def __init__(self) -> None:
        self._fits: dict[tuple, NullFit] = {}
        self.hits = 0

    @staticmethod
    def data_key(target: Target, data: ProbeData, settings: FitSettings) -> str:
        """A digest of what a null fit depends on besides its samples and seed."""
        digest = hashlib.sha256()
        for array in (data.y, data.mask):
            digest.update(str((tuple(array.shape), str(array.dtype))).encode())
            digest.update(np.ascontiguousarray(array.detach().cpu().numpy()).tobytes())
        digest.update(repr((target.kind, target.channels, target.num_classes,
                            target.discretized_dist, target.loc.tolist(),
                            target.spread.tolist(), data.stride is None,
                            str(data.z.device), asdict(settings))).encode())
        return digest.hexdigest()

    def fits(self, likelihood: str, data_key: str, target: Target, data: ProbeData,
             jobs: Sequence[ProbeJob], settings: FitSettings) -> list[NullFit]:
        """The null of every job (fitted together where missing, reused otherwise)."""
        shared = likelihood == "autoregressive"  # one null for every refit seed
        keys = [(likelihood, data_key, None if shared else j.seed,
                 np.asarray(j.fit_idx).tobytes(), np.asarray(j.val_idx).tobytes())
                for j in jobs]
        first: dict[tuple, int] = {}  # the first job of every key not fitted yet
        for i, k in enumerate(keys):
            if k not in self._fits:
                first.setdefault(k, i)
        missing = list(first.values())  # a shared null once
        self.hits += len(jobs) - len(missing)
        spec = null_spec(likelihood)
        if shared:
            for i in missing:
                fit = fit_probes(spec, target, data, [ProbeJob(
                    jobs[i].fit_idx, jobs[i].val_idx, NULL_SEED, True)],
                    null_settings(settings))[0]
                self._fits[keys[i]] = NullFit(fit, fit)
            return [self._fits[k] for k in keys]
        first = fit_probes(spec, target, data, [
            ProbeJob(jobs[i].fit_idx, jobs[i].val_idx, jobs[i].seed, True) for i in missing],
            settings)
        if closed_form(spec, target, settings):
            second = first
        else:
            second = fit_probes(spec, target, data, [
                ProbeJob(jobs[i].fit_idx, jobs[i].val_idx, jobs[i].seed, True, start.probe)
                for i, start in zip(missing, first)], settings)
        for i, start, final in zip(missing, first, second):
            self._fits[keys[i]] = NullFit(start, final)
        return [self._fits[k] for k in keys]
