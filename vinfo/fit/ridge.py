"""Closed-form multi-output ridge regression in float64 (scikit-learn's conventions).

    weight, intercept = ridge_solve(x, y, alpha)      # x [n, D], y [n, O] or [n]
    prediction = x @ weight + intercept               # weight [D, O], intercept [O]

minimises ``sum over rows and outputs of (y - x @ weight - intercept)^2 + alpha * |weight|^2``:
the intercept is not penalised (with ``fit_intercept`` the columns of x are centred first and
the intercept recovered from the means), ``alpha = 0`` is ordinary least squares. Equal to
``sklearn.linear_model.Ridge(alpha, fit_intercept=...)`` (``coef_.T``, ``intercept_``).

How: the normal equations on the centred design, one float64 matmul each for
``xc^T xc + alpha I`` [D, D] and ``[xc, 1]^T y`` [D + 1, O] (no centred copy of y: the
centred columns already sum to zero, and the ones column gives y's means in the same pass),
solved by a Cholesky factorisation. More features than rows: the dual
(kernel) form ``xc^T (xc xc^T + alpha I)^-1 yc``. A singular system (alpha = 0 with collinear
or constant columns, e.g. a null probe's all-zero input) falls back to the SVD solution, the
minimum-norm least-squares weights (the weights of a constant column are 0).
"""

from __future__ import annotations

import math

import torch


def ridge_solve(
    x: torch.Tensor, y: torch.Tensor, alpha: float = 0.0, fit_intercept: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Ridge weights [D, O] and intercept [O] (float64) for ``x`` [n, D] and ``y`` [n, O].

    A 1-D ``y`` [n] gives weights [D] and a 0-d intercept. Raises ValueError for a negative or
    non-finite ``alpha`` or mismatched shapes. See the module docstring.
    """
    if not (math.isfinite(alpha) and alpha >= 0):
        raise ValueError(f"ridge alpha must be a finite number >= 0, got {alpha}")
    x = torch.as_tensor(x).to(torch.float64)
    y = torch.as_tensor(y).to(torch.float64)
    if x.dim() != 2 or y.dim() not in (1, 2) or y.shape[0] != x.shape[0]:
        raise ValueError(f"ridge_solve expects x [n, D] and y [n, O] or [n] with the same n; "
                         f"got x {list(x.shape)} and y {list(y.shape)}")
    single = y.dim() == 1
    y2 = y.unsqueeze(1) if single else y
    n, d = x.shape
    if n == 0 or d == 0 or d > n:
        weight, x_mean, y_mean = _small(x, y2, alpha, fit_intercept)
    else:
        weight, x_mean, y_mean = _primal(x, y2, alpha, fit_intercept)
    intercept = y_mean - x_mean @ weight
    return (weight[:, 0], intercept[0]) if single else (weight, intercept)


def _primal(
    x: torch.Tensor, y: torch.Tensor, alpha: float, fit_intercept: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rows >= features: weights from (xc^T xc + alpha I) w = xc^T y; x and y means.

    With an intercept, one pass over y gives both xc^T y and y's column sums: the design is
    the centred x with a column of ones appended."""
    n, d = x.shape
    if fit_intercept:
        x_mean = x.mean(0)
        design = torch.empty(n, d + 1, dtype=torch.float64, device=x.device)
        torch.sub(x, x_mean, out=design[:, :d])
        design[:, d] = 1.0
        product = design.T @ y  # [D + 1, O]
        rhs, y_mean = product[:d], product[d] / n
        xc = design[:, :d]
    else:
        x_mean = torch.zeros(d, dtype=torch.float64, device=x.device)
        y_mean = torch.zeros(y.shape[1], dtype=torch.float64, device=x.device)
        rhs, xc = x.T @ y, x
    gram = xc.T @ xc
    gram.diagonal().add_(alpha)
    factor, info = torch.linalg.cholesky_ex(gram)
    if int(info) == 0:
        return torch.cholesky_solve(rhs, factor), x_mean, y_mean
    return _svd_solve(xc, y - y_mean, alpha), x_mean, y_mean


def _small(
    x: torch.Tensor, y: torch.Tensor, alpha: float, fit_intercept: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """More features than rows (or an empty side): the dual form xc^T (xc xc^T + alpha I)^-1
    yc; x and y means."""
    n, d = x.shape
    zeros = torch.zeros(d, y.shape[1], dtype=torch.float64, device=x.device)
    if fit_intercept and n:
        x_mean, y_mean = x.mean(0), y.mean(0)
    else:
        x_mean = torch.zeros(d, dtype=torch.float64, device=x.device)
        y_mean = torch.zeros(y.shape[1], dtype=torch.float64, device=x.device)
    if n == 0 or d == 0:
        return zeros, x_mean, y_mean
    xc, yc = x - x_mean, y - y_mean
    kernel = xc @ xc.T
    kernel.diagonal().add_(alpha)
    factor, info = torch.linalg.cholesky_ex(kernel)
    if int(info) == 0:
        return xc.T @ torch.cholesky_solve(yc, factor), x_mean, y_mean
    return _svd_solve(xc, yc, alpha), x_mean, y_mean


def _svd_solve(xc: torch.Tensor, y: torch.Tensor, alpha: float) -> torch.Tensor:
    """Singular systems: V diag(s / (s^2 + alpha)) U^T y over the non-negligible s."""
    u, s, vh = torch.linalg.svd(xc, full_matrices=False)
    cutoff = s.max().clamp_min(0) * max(xc.shape) * torch.finfo(torch.float64).eps
    keep = s > cutoff
    scale = torch.where(keep, s / (s * s + alpha).clamp_min(1e-300), torch.zeros_like(s))
    return vh.T @ (scale.unsqueeze(1) * (u.T @ y))
