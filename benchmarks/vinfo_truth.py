"""Benchmark: the V-information estimator against cases whose truth is known exactly.

    python benchmarks/vinfo_truth.py            # every part (about 20-40 minutes, 1 thread)
    python benchmarks/vinfo_truth.py --quick    # fewer repeats and samples (a few minutes)
    python benchmarks/vinfo_truth.py --part coverage|softmax|patches|speed

(a) coverage: linear-Gaussian vectors, Y = a.Z + noise with population R^2 = 0.5, D = 4,
    N = 2000; truth I(Z;Y) = -1/2 log2(1 - R^2) = 0.5 bits/sample. 20 data seeds (quick:
    6), the ``linear`` rung (closed form), 3 refit seeds, 90% intervals (images + refits).
    Printed: each estimate, the mean error, coverage (target >= 85%) and
    ``coverage linear_gaussian=``.
(b) softmax: Z ~ N(0, I_4), Y ~ softmax(Z W + b), 3 classes, N = 5000; truth by Monte Carlo
    over 400 000 draws. The ``linear`` rung (logistic regression: it contains the true
    model) with the default budget (400 steps, growing to 3200 while it improves). 20 data
    seeds (quick: 4); mean error, 90% coverage, how many runs ended at the step limit.
(c) patches: 16 scene states set the colours of 8 patches (2 x 4 of 8 x 8 pixels, 3 x 16 x
    32 targets) plus discretized-logistic pixel noise (scale 1: the likelihood family's own),
    N = 800; Z = the state, one-hot on a 1 x 2 grid. I(Y;Z) = H(Z) = 4 bits per image; the
    conditional entropy H(Y|Z) is computed exactly. Families ``linear`` (factorized) and
    ``ar-linear``; printed per family: H_V(Y|∅), H_V(Y|Z) and I_V per image against H(Y),
    H(Y|Z) and 4 bits, and the capped I_V with R = H(Z) = 4 bits per image.
(d) speed: fitting time per image and per step of the autoregressive rungs on targets the
    size of ``make demo``'s (3 x 64 x 128, N = 48, Z [N, 32, 2, 4]) and of the segmentation
    target (1 x 64 x 128, 19 classes + ignore): one refit seed, a fixed budget of 60 steps
    (quick: 20) of 8 images, the whole estimate timed.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("OMP_NUM_THREADS", "1")
import torch  # noqa: E402
from scipy.special import expit, softmax  # noqa: E402

import infra  # noqa: E402,F401 - hides known third-party warnings (infra.cli.KNOWN_WARNINGS)
import vinfo  # noqa: E402


def coverage(quick: bool) -> None:
    truth, d, n = 0.5, 4, 2000
    r2 = 1 - 2 ** (-2 * truth)
    hits, errors = 0, []
    repeats = 6 if quick else 20
    for rep in range(repeats):
        rng = np.random.default_rng(1000 + rep)
        z = rng.normal(size=(n, d))
        a = rng.normal(size=d)
        signal = z @ a / np.linalg.norm(a)  # unit population variance: R^2 exactly r2
        y = math.sqrt(r2) * signal + math.sqrt(1 - r2) * rng.normal(size=n)
        ds = vinfo.estimate(z, y, "gaussian", families=["linear"], seeds=[0, 1, 2],
                            bootstrap=1000, confidence=0.9, curves=False, seed=rep)
        est, low, high = (float(ds[v][0]) for v in ("vinfo", "vinfo_low", "vinfo_high"))
        hits += low <= truth <= high
        errors.append(est - truth)
        print(f"  seed {rep}: I_V {est:.4f} [{low:.4f}, {high:.4f}] bits/sample")
    print(f"linear-Gaussian: truth {truth} bits/sample, mean error {np.mean(errors):+.4f}, "
          f"max |error| {np.max(np.abs(errors)):.4f}, 90% interval coverage {hits}/{repeats}")
    print(f"coverage linear_gaussian={hits / repeats:.3f}")


def softmax_case(quick: bool) -> None:
    n, d, k = 5000, 4, 3
    repeats = 4 if quick else 20
    hits, errors, capped = 0, [], 0
    for rep in range(repeats):
        rng = np.random.default_rng(2000 + rep)
        weights, bias = rng.normal(size=(d, k)), np.array([0.3, 0.0, -0.3])

        def draw(m, rng=rng, weights=weights, bias=bias):
            z = rng.normal(size=(m, d))
            p = softmax(z @ weights + bias, axis=1)
            return z, (rng.random(m)[:, None] > np.cumsum(p, 1)).sum(1), p

        z, y, _ = draw(n)
        _, _, p_mc = draw(400_000)
        marginal = p_mc.mean(0)
        truth = float(-(marginal * np.log2(marginal)).sum()
                      + (p_mc * np.log2(p_mc)).sum(1).mean())
        ds = vinfo.estimate(z, y, "categorical", families=["linear"], seeds=[0, 1, 2],
                            bootstrap=1000, confidence=0.9, curves=False, seed=rep)
        est, low, high = (float(ds[v][0]) for v in ("vinfo", "vinfo_low", "vinfo_high"))
        hits += low <= truth <= high
        capped += bool(ds["at_cap"].values.any())
        errors.append(est - truth)
        print(f"  seed {rep}: truth {truth:.4f}, I_V {est:.4f} [{low:.4f}, {high:.4f}] "
              f"bits/sample, steps {ds['steps_run'].values[0].tolist()}")
    print(f"softmax: mean error {np.mean(errors):+.4f} bits/sample, 90% coverage "
          f"{hits}/{repeats}, runs at the step limit {capped}/{repeats}")
    print(f"coverage softmax={hits / repeats:.3f}")


def _disc_entropy(mu: float, scale: float) -> float:
    v = np.arange(256)
    upper, lower = expit((v + 0.5 - mu) / scale), expit((v - 0.5 - mu) / scale)
    upper[-1], lower[0] = 1.0, 0.0
    p = upper - lower
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


def patches(quick: bool) -> None:
    n, h, w, states, scale = (400 if quick else 800), 16, 32, 16, 1.0
    rng = np.random.default_rng(0)
    base = rng.uniform(40, 60, size=(8, 3))
    step = rng.choice([-1, 1], size=(8, 3)) * rng.uniform(9, 11, size=(8, 3))
    base = np.where(step < 0, 255 - base, base)
    s = rng.integers(0, states, size=n)
    colour = np.round(base[None] + step[None] * s[:, None, None])  # [n, 8, 3], integers
    image = colour.reshape(n, 2, 4, 3).repeat(8, 1).repeat(8, 2).transpose(0, 3, 1, 2)
    y = np.clip(np.round(image + rng.logistic(0, scale, size=image.shape)), 0, 255)
    h_y_given_z = _disc_entropy(100.0, scale) * 3 * h * w  # colours far from 0 and 255
    z = np.zeros((n, states, 1, 2), np.float32)
    z[np.arange(n), s] = 1.0
    start = time.perf_counter()
    ds = vinfo.estimate(z, y.astype(np.int64), "discretized", families=["linear", "ar-linear"],
                        seeds=[0], bootstrap=500, curves=False, batch_size=32, eval_every=20,
                        patience=5, lr=3e-3, max_steps=400, eval_batch_size=64,
                        representation_bits=np.full(n, 4.0), attrs={"image_pixels": h * w})
    px = h * w
    print(f"patch colours: N {n}, H(Y|Z) = {h_y_given_z:.1f}, H(Y) = {h_y_given_z + 4:.1f}, "
          f"I(Y;Z) = 4 bits per image ({time.perf_counter() - start:.0f} s)")
    for family in ds["family"].values:
        d = ds.sel(family=family)
        print(f"  {family}: H_V(Y|∅) {float(d['h_null']) * px:.1f}, H_V(Y|Z) "
              f"{float(d['h_cond']) * px:.1f}, I_V {float(d['vinfo_per_image']):.1f} "
              f"[{float(d['vinfo_low']) * px:.1f}, {float(d['vinfo_high']) * px:.1f}], capped "
              f"{float(d['vinfo_capped']) * px:.2f} bits per image; steps "
              f"{d['steps_run'].values.tolist()}, at the limit {bool(d['at_cap'].any())}")


def speed(quick: bool) -> None:
    rng = np.random.default_rng(0)
    n = 48
    z = rng.normal(size=(n, 32, 2, 4)).astype(np.float32)
    image = np.clip(np.round(128 + 60 * np.repeat(np.repeat(rng.normal(size=(n, 3, 8, 16)), 8,
                    2), 8, 3) + rng.logistic(0, 4, size=(n, 3, 64, 128))), 0, 255)
    labels = np.repeat(np.repeat(rng.integers(0, 19, size=(n, 1, 8, 16)), 8, 2), 8, 3)
    labels[:, :, :4] = 19
    cases = [("image 3x64x128, discretized", image.astype(np.int64), "discretized", {}),
             ("labels 64x128, 19 classes", labels, "categorical",
              {"ignore_value": 19, "num_classes": 19})]
    steps = 20 if quick else 60
    for name, y, kind, extra in cases:
        for family in ("ar-linear", "ar-cnn-1x32"):
            start = time.perf_counter()
            ds = vinfo.estimate(z, y, kind, families=[family], seeds=[0], bootstrap=10,
                                curves=False, max_steps=steps, step_limit=steps, patience=1000,
                                eval_every=steps, batch_size=8, **extra)
            took = time.perf_counter() - start
            run_steps = int(ds["steps_run"].values.max())
            fit = ds.attrs["n_fit"]
            # one member (null and conditional, Z dropout): run_steps x batch 8 images; the
            # time includes the selection/guard/evaluation passes and the bootstrap
            images = run_steps * 8
            print(f"  {name}, {family}: {took:.1f} s for one estimate ({run_steps} steps of 8 "
                  f"images, fit split {fit}); {1000 * took / images:.1f} ms per image-step, "
                  f"{took / fit:.2f} s per fit image")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--part", choices=["coverage", "softmax", "patches", "speed"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    parts = {"coverage": coverage, "softmax": softmax_case, "patches": patches,
             "speed": speed}
    for name, run in parts.items():
        if args.part in (None, name):
            start = time.perf_counter()
            print(f"== {name}")
            run(args.quick)
            print(f"   ({time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
