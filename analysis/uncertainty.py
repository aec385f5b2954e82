"""Paired bootstrap intervals for RD comparisons: over evaluation images, and over seeds.

    samples = load_samples(runs)                       # per-image values of every run
    est = bootstrap([stat_seed0, stat_seed1], n_images=32, n_boot=1000, seed=0)
    est.value, est.low, est.high, est.excludes_zero

In:  runs (:func:`analysis.runs.load_runs`); each ``RUN/eval.nc`` is read again for its
     per-image values: ``bpp_actual`` (cumulative, top layer = the whole stream), ``psnr``
     and ``rmse`` per image, and ``confusion`` (per-image confusion counts) for mIoU.
Out: :class:`Estimate` (value, interval, how many replicates failed) and the curve helpers
     the results table builds its statistics from.

The scheme (one rule for every headline number):

- **Paired over images.** Every run of a comparison is evaluated on the same images (the
  first N of the validation split). One bootstrap replicate draws N image indices with
  replacement and recomputes *every* point of *both* curves on those same images (mean rate,
  mean PSNR / RMSE, mIoU from the summed confusion counts), then the statistic (a BD-rate, a
  rate gain at matched quality, a metric difference). Resampling the images of both curves
  together keeps their correlation: image difficulty cancels, as it does in the estimate.
- **Hierarchical over training seeds, then images**, wherever more than one seed exists
  (the same comparison repeated with training seeds 0, 1, 2 on the same images): the
  estimate is the mean of the per-seed statistics; a replicate first draws the seeds with
  replacement, then the images (one draw shared by every chosen seed, which keeps the
  pairing), and averages the chosen seeds' statistics on those images. The interval thus
  holds the training-seed variance as well as the images' (:attr:`Estimate.covers_training`).
  Images are shared by the seeds (crossed, not nested), so one image draw per replicate is
  the right second stage. With few seeds the seed stage is coarse: with 2 seeds a replicate's
  seed mean takes 3 values, and the percentile interval under-covers (the seeds' variance is
  estimated from 1 degree of freedom); the tests measure the coverage at 8 seeds.
- **One seed**: the interval is over images only; it says how precisely *these trained
  models* were measured, not what a rerun of the training would give. Verdicts about a
  training method then say "1 seed: training variance not covered" and claim nothing
  (:mod:`analysis.results_table`).
- The interval is the percentile interval of the replicates at ``confidence`` (default 95 %).
  A replicate where the statistic does not exist (e.g. the resampled curves stop
  overlapping) is dropped and counted in ``failed``; a large ``failed`` is reported.

A difference is *distinguishable from zero* when its interval excludes 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from analysis.runs import Run

DEFAULT_BOOT = 1000
DEFAULT_CONFIDENCE = 0.95


@dataclass(frozen=True)
class Estimate:
    """A number with its bootstrap interval."""

    value: float
    low: float
    high: float
    n_boot: int = 0
    failed: float = 0.0  # fraction of replicates where the statistic could not be computed
    n_images: int = 0
    n_seeds: int = 1

    @property
    def covers_training(self) -> bool:
        """Whether the interval includes the training-seed variance (>= 2 seeds resampled);
        with 1 seed it is over images only."""
        return self.n_seeds >= 2

    @property
    def excludes_zero(self) -> bool:
        return math.isfinite(self.low) and math.isfinite(self.high) and (
            self.low > 0 or self.high < 0)

    def text(self, digits: int = 4, unit: str = "", sign: bool = False) -> str:
        def f(x: float) -> str:
            if not math.isfinite(x):
                return "n/a"
            return f"{x:+.{digits}g}" if sign else f"{x:.{digits}g}"

        unit = f" {unit}" if unit else ""
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            return f"{f(self.value)}{unit}"
        return f"{f(self.value)} [{f(self.low)}, {f(self.high)}]{unit}"


@dataclass
class Samples:
    """One run's per-image values (aligned to ``images``)."""

    run: Run
    images: list[str]
    rate: np.ndarray  # (n,) bits per original pixel, the whole stream (top layer)
    rate_estimated: np.ndarray  # (n,) the same from −log2 likelihoods (bpp_estimated)
    values: dict[str, np.ndarray]  # "psnr" / "rmse" at the top layer, "psnr_base", (n,)
    confusion: np.ndarray | None  # (n, C, C) top layer, for mIoU
    rate_payload: np.ndarray | None = None  # (n,) bpp_payload: the coded layers without the
    #                                         container header (None: eval.nc predates it)


def load_samples(run: Run) -> Samples:
    """The per-image values of ``run`` from its eval.nc (see the module docstring)."""
    with xr.open_dataset(Path(run.path) / "eval.nc", engine="h5netcdf") as opened:
        ds = opened.load()
    images = [str(v) for v in ds["image"].values]
    layers = [str(v) for v in ds["layer"].values] if "layer" in ds.coords else []
    top = "enhancement" if "enhancement" in layers else (layers[-1] if layers else None)

    def at(name: str, layer: str | None) -> np.ndarray | None:
        if name not in ds or "image" not in ds[name].dims:
            return None
        var = ds[name]
        if "layer" in var.dims and layer is not None:
            var = var.sel(layer=layer)
        return np.asarray(var.values, dtype=float)

    values = {}
    for name in ("psnr", "rmse"):
        value = at(name, top)
        if value is not None and np.isfinite(value).any():
            values[name] = value
    base_psnr = at("psnr", "base" if "base" in layers else top)
    if base_psnr is not None:
        values["psnr_base"] = base_psnr
    rate = at("bpp_actual", top)
    estimated = at("bpp_estimated", top)
    confusion = None
    if "confusion" in ds:
        var = ds["confusion"]
        confusion = np.asarray((var.sel(layer=top) if "layer" in var.dims else var).values)
    missing = np.full(len(images), np.nan)
    return Samples(run, images, rate if rate is not None else missing,
                   estimated if estimated is not None else missing, values, confusion,
                   rate_payload=at("bpp_payload", top))


def miou_of(confusion: np.ndarray) -> float:
    """mIoU of summed confusion counts (C, C), over the classes present (as the evaluator)."""
    tp = np.diag(confusion).astype(float)
    union = confusion.sum(0) + confusion.sum(1) - tp
    present = union > 0
    return float(np.mean(tp[present] / union[present])) if present.any() else math.nan


class Point:
    """One RD point as a function of the resampled image indices."""

    def __init__(self, samples: Samples, metric: str, images: Sequence[str],
                 rate: str = "actual") -> None:
        where = {name: i for i, name in enumerate(samples.images)}
        missing = [name for name in images if name not in where]
        if missing:
            raise ValueError(f"run {samples.run.name} was not evaluated on images {missing[:3]}"
                             " that the other runs of the comparison were")
        order = np.array([where[name] for name in images])
        self.run, self.metric = samples.run, metric
        rates = {"actual": samples.rate, "estimated": samples.rate_estimated,
                 "payload": samples.rate_payload}
        if rates.get(rate) is None:
            raise ValueError(f"run {samples.run.name}: no per-image {rate!r} rate (expected "
                             f"one of {', '.join(k for k, v in rates.items() if v is not None)})")
        self.rate = rates[rate][order]
        if metric == "miou":
            if samples.confusion is None:
                raise ValueError(f"run {samples.run.name}: its eval.nc has no per-image "
                                 "'confusion' counts; re-evaluate it to bootstrap mIoU")
            self.confusion = samples.confusion[order]
        else:
            if metric not in samples.values:
                raise ValueError(f"run {samples.run.name}: no per-image {metric!r} values")
            self.quality = samples.values[metric][order]

    def at(self, idx: np.ndarray | None) -> tuple[float, float]:
        """(mean rate, quality) on the images ``idx`` (None: all)."""
        sel = slice(None) if idx is None else idx
        if self.metric == "miou":
            return float(np.mean(self.rate[sel])), miou_of(self.confusion[sel].sum(0))
        return float(np.mean(self.rate[sel])), float(np.mean(self.quality[sel]))


def common_images(samples: Sequence[Samples]) -> list[str]:
    """The images every run was evaluated on, in the first run's order."""
    if not samples:
        return []
    shared = set(samples[0].images).intersection(*(s.images for s in samples[1:]))
    return [name for name in samples[0].images if name in shared]


def curve_at(points: Sequence[Point], idx: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(rates, qualities) of a curve on the images ``idx``, sorted by rate."""
    pairs = sorted(p.at(idx) for p in points)
    return np.array([r for r, _ in pairs]), np.array([q for _, q in pairs])


def bootstrap(stats: Sequence[Callable[[np.ndarray | None], float]], n_images: int,
              n_boot: int = DEFAULT_BOOT, confidence: float = DEFAULT_CONFIDENCE,
              seed: int = 0) -> Estimate:
    """The paired bootstrap of the module docstring, hierarchical (seeds, then images) when
    ``stats`` holds more than one. ``stats``: one statistic per training seed, each a function
    of image indices (None = all images) that returns a float (NaN or ValueError when it
    does not exist on those images)."""
    def value(stat, idx) -> float:
        try:
            return float(stat(idx))
        except (ValueError, FloatingPointError, ZeroDivisionError):
            return math.nan

    estimate = float(np.mean([value(stat, None) for stat in stats]))
    rng = np.random.default_rng(seed)
    reps = np.full(n_boot, np.nan)
    for b in range(n_boot):
        chosen = rng.integers(0, len(stats), len(stats)) if len(stats) > 1 else [0]  # seeds
        idx = rng.integers(0, n_images, n_images)  # then images, shared by the chosen seeds
        reps[b] = np.mean([value(stats[c], idx) for c in chosen])
    ok = reps[np.isfinite(reps)]
    if ok.size < max(10, n_boot // 10):
        return Estimate(estimate, math.nan, math.nan, n_boot, 1.0 - ok.size / max(n_boot, 1),
                        n_images, len(stats))
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(ok, [tail, 100 - tail])
    return Estimate(estimate, float(low), float(high), n_boot, 1.0 - ok.size / n_boot,
                    n_images, len(stats))


def bootstrap_mean_difference(a: np.ndarray, b: np.ndarray, n_boot: int = DEFAULT_BOOT,
                              confidence: float = DEFAULT_CONFIDENCE,
                              seed: int = 0) -> Estimate:
    """mean(b − a) over paired samples with its bootstrap interval (e.g. per-sample PVI of
    two bases on the same evaluation images)."""
    diff = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
    return bootstrap([lambda idx: float(np.mean(diff if idx is None else diff[idx]))],
                     diff.size, n_boot, confidence, seed)
