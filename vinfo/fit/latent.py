"""Fit a Ŷ_e probe (:class:`vinfo.probes.latent.LatentProbe`) to convergence.

    fit images (ŷ_e, ŷ_b) ─Adam minibatches─▶ probe ──every eval_every steps──▶ mean bits per
    image on the selection images ─▶ keep the best state; stop after ``patience`` evaluations
    without improvement; at the budget while still improving, double the budget (up to
    ``step_limit``); ``at_cap``: stopped by ``step_limit`` while still improving.

The loss is bits per image (the codelength of ŷ_e, :meth:`LatentProbe.bits`); step 0 is
evaluated too, so a rung nested on the null (started from its weights, gate 0) never ends
worse on the selection images than the null it started from.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch

from vinfo.probes.latent import LatentProbe

__all__ = ["LatentFitSettings", "fit_latent_probe", "score_bits"]


@dataclass(frozen=True)
class LatentFitSettings:
    """Optimiser and stopping rule: ``max_steps`` is the starting budget, grown ×2 up to
    ``step_limit`` while the selection loss still improves at the budget."""

    lr: float = 3e-3
    batch_size: int = 32
    max_steps: int = 400
    step_limit: int = 3200
    eval_every: int = 20
    patience: int = 8
    min_delta: float = 1e-4  # bits per image: smaller improvements do not reset patience

    def __post_init__(self) -> None:
        for name in ("batch_size", "max_steps", "step_limit", "eval_every", "patience"):
            value = getattr(self, name)
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.step_limit < self.max_steps:
            raise ValueError(f"step_limit {self.step_limit} is below max_steps {self.max_steps}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr!r}")


@torch.no_grad()
def score_bits(probe: LatentProbe, ye: torch.Tensor, zb: torch.Tensor,
               chunk: int = 256) -> np.ndarray:
    """Bits of each ŷ_e [n] (float64) under ``probe`` (eval mode, no gradient)."""
    probe.eval()
    out = [probe.bits(ye[i:i + chunk], zb[i:i + chunk]).double()
           for i in range(0, ye.shape[0], chunk)]
    return torch.cat(out).cpu().numpy()


def fit_latent_probe(probe: LatentProbe, ye_fit: torch.Tensor, zb_fit: torch.Tensor,
                     ye_sel: torch.Tensor, zb_sel: torch.Tensor, settings: LatentFitSettings,
                     seed: int) -> dict:
    """Train ``probe`` in place (it ends at its best selection state); returns
    ``{"steps_run", "best_step", "at_cap", "select_bits"}`` (mean bits per selection image)."""
    if ye_fit.shape[0] < 1 or ye_sel.shape[0] < 1:
        raise ValueError(f"need fit and selection images, got {ye_fit.shape[0]} and "
                         f"{ye_sel.shape[0]}")
    gen = torch.Generator().manual_seed(int(seed))
    params = [p for p in probe.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=settings.lr)
    n = ye_fit.shape[0]
    batch = min(settings.batch_size, n)
    best = float(score_bits(probe, ye_sel, zb_sel).mean())
    best_state, best_step, since = copy.deepcopy(probe.state_dict()), 0, 0
    budget, step, improving = settings.max_steps, 0, False
    order = torch.randperm(n, generator=gen)
    cursor = 0
    while True:
        probe.train()
        for _ in range(settings.eval_every):
            if cursor + batch > n:
                order, cursor = torch.randperm(n, generator=gen), 0
            idx = order[cursor:cursor + batch]
            cursor += batch
            loss = probe.bits(ye_fit[idx], zb_fit[idx]).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
        current = float(score_bits(probe, ye_sel, zb_sel).mean())
        improving = current < best - settings.min_delta
        if current < best:
            best, best_state, best_step = current, copy.deepcopy(probe.state_dict()), step
        since = 0 if improving else since + 1
        if since >= settings.patience:
            break
        if step >= budget:
            if best_step > step - settings.patience * settings.eval_every \
                    and budget < settings.step_limit:
                budget = min(2 * budget, settings.step_limit)
            else:
                break
    probe.load_state_dict(best_state)
    at_cap = bool(step >= settings.step_limit and since < settings.patience
                  and best_step > step - settings.patience * settings.eval_every)
    return {"steps_run": step, "best_step": best_step, "at_cap": at_cap, "select_bits": best}
