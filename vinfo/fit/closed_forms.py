"""The closed forms: the factorized Gaussian null and linear rung fitted by least squares.

:func:`vinfo.fit.loop.fit_probe` fits a probe here instead of training it when
:func:`closed_form` says so (``closed_form_linear``, a factorized family, the linear rung or
the null, a Gaussian target); float64, :func:`vinfo.fit.ridge.ridge_solve`. The
null is the fit split's mean (per position for dense targets: the positional null's MLE)
with the MSE as variance; the linear rung is least squares, on a latent grid with one
intercept per target position (the positional map) and weights shared by every latent cell
(exact "within" least squares when nothing is masked, alternating least squares otherwise).
``ridge_alpha > 0`` adds ``ridge_alpha * |W|^2`` on the head weights, which map standardized
inputs to standardized target values; 0 is plain least squares.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vinfo.fit.ridge import ridge_solve
from vinfo.fit.settings import FitSettings
from vinfo.probes.families import FamilySpec
from vinfo.probes.probe import Probe, ProbeData
from vinfo.probes.targets import Target

ALS_SWEEPS = 25  # alternating least squares sweeps of the masked positional linear rung


def closed_form(spec: FamilySpec, target: Target, settings: FitSettings) -> bool:
    """True when ``spec`` is fitted by least squares (the factorized linear-Gaussian rung and
    the factorized Gaussian null)."""
    return (settings.closed_form_linear and not spec.autoregressive
            and spec.kind in ("linear", "null") and target.kind == "gaussian")


def least_squares(
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
