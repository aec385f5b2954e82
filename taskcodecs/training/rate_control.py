"""Rate-targeted training: the rate weight λ adapted so that a run lands on a chosen bpp.

    cfg = load_experiment("tiny-depth-base-proposed", {"rate_target_bpp": 0.1})
    python -m taskcodecs.train --config tiny-depth-base-baseline rate_target_bpp=0.1 out=runs/b
    python -m taskcodecs.sweep --config ... --rate-targets 0.05,0.1,0.2 ...
    python -m taskcodecs.training.rate_control RUN_DIR        # the final rate weight of a finished run

Instead of guessing ``rate_weight`` (the weight of bits per pixel in the loss ``d + λ·R``),
give ``rate_target_bpp`` = R*. The trainer then treats λ as a Lagrange multiplier of the
constraint R = R* and updates it by dual ascent after every optimizer step, in log space
(λ stays positive and the step is relative):

    R̄_t   = β·R̄_{t-1} + (1 − β)·R_t                  running estimated rate (bias-corrected EMA)
    e_t   = clip(ln(R̄_t / (c·R*)), −E, E)            the error, E = 1 (a factor e)
    I    ← I + gain · max(lr_t / lr, 0.3) · e_t        the integral (dual ascent)
    ln λ  = I + P · e_t                                a proportional part, P = 1
    λ     = 0 while e_t < −0.5                         cut off: the rate collapsed

R_t is the step's *estimated* rate (−log2 likelihoods, bits per pixel of the original
image, averaged over the batch and, under DDP, over ranks): ``bpp_base`` for base codecs,
``bpp_total`` = base + enhancement for enhancement codecs (the x-axis of their RD curves).
Too much rate raises λ, too little lowers it. The proportional part matters for bases whose
task needs few bits (the baseline depth base on synthetic scenes): their rate does not settle
at an equilibrium of λ but keeps falling while λ > 0, and collapses to ~0 once it starts; the
proportional part lowers λ by up to a factor e as soon as the rate crosses the target
(Stooke et al. 2020, "PID Lagrangian methods", make the same point for constrained RL), and
λ is *cut off* (set to 0, the projection λ ≥ 0 of dual ascent, which log space cannot
reach) while the running rate is far below the target, ln(R̄/(c·R*)) < −0.5 (a collapse, not
noise: within the tolerance band λ stays positive):
the rate term then pulls no more (the integral keeps lowering the operating point, which
was too high). The final rate weight reported is
exp(I), the operating point (never the 0 of a cut-off step).
The rate follows λ with a lag of tens of steps,
and early in training it falls by itself as the model learns; so the update (i) waits for the
lr warm-up to end (``hold`` steps), (ii) clips the error, so that a far-off start moves λ by
at most ``gain · E`` per step, and (iii) follows the learning rate of the step down to 30 % of
its peak, so that λ does not run away late in a decaying schedule, when the model can no
longer follow it, yet still corrects a late drift.

Anti-windup. A from-scratch run starts with a transient the controller cannot steer: while
the model learns, its rate *rises* (an enhancement from ~0.05 to ~0.2 bpp in its first ~125
steps) whatever λ is, so plain dual ascent integrates a clipped error of +1 at every step and
winds λ up by a factor e^(gain · steps) (λ 100 → 6e4 measured on the tiny presets), at which
the decoder stops learning and the point collapses (PSNR below the base's own
reconstruction). Two rules, judged on the running rate's slope s = (ln R̄_t − ln R̄_{t−K}) / K
over the last K = 25 updates (per update, in log units), stop or shorten *upward* integral
steps only:

    (i)   conditional integration: no upward step while the rate already falls towards the
          target fast enough to close the error within HORIZON = 100 updates
          (e > 0 and e + HORIZON · s ≤ 0): the lag, not λ, is what is missing;
    (ii)  a rise bounded by the rate's response: the integral rises at most ln 4 (a factor
          4) above its level at the rate's last *response* (R̄ 25 % below its peak since the
          previous one; lowered with the integral), plus RISE_LEAK = 0.005 per update since
          that response, so that a weight far too low still climbs (by e per 200 updates)
          where the rate does not respond at all. At a response the level moves to the
          current integral, so a rate that keeps dipping 25 % below its peak lets the
          ceiling climb a factor 4 per dip: the bound is on λ's rise *without* a response,
          and a rate that responds may take λ far. That is deliberate: a weight started far
          too low (1e-4 for a right weight near 90) climbs by such steps as the rate starts
          to answer. Anchoring at the λ of the peak the rate fell from instead (tried) lets
          that weight climb only a step behind and leaves it off target after 1500 updates;
          in a replay of the study's collapsed run it lowered the largest λ from 1.9e5 to
          3.6e4, not enough to save the point. What saved it is the calibration below.
          Except during the transient: for the first TRANSIENT = 150 updates after the hold
          a response does not move the level up (it still lowers with the integral), so
          there λ stays below 4 · e^(0.005 t) times its start. The learning transient of a
          from-scratch enhancement makes its rate rise and fall whatever λ does, and each
          fall looked like a response: replayed bit for bit, two collapsed 0.06 points of
          the collapse benchmark (proposed seed 0, demo scale: λ at most 5.3e3, 14.0 dB;
          study scale: 2.7e4, 14.0 dB) peak at 1.6e3 and 1.8e3 with this rule and end on
          target at validation distortions 22.6 and 23.4 (MSE, 8-bit scale) where they had
          ended at 24.9 / 29 after spending 300+ steps below the band. The bases' λ never
          rose above 1.7× its start in the benchmark, so the rule does not touch them.

Downward steps are left alone: the cut-off's recovery of a collapsed base rate needs them.
A first version also held the integral through the whole initial transient (until the rate
stopped rising) and applied (i) in both directions; it left the baseline depth base, whose
early λ growth the recipe relies on, at 0.016-0.019 bpp for a 0.03 target (off its ±20 %
tolerance in 4 of 4 base runs, seeds 0 and 1; ``benchmarks/RESULTS.md``, "Rate control
without collapse"), so the transient is bounded by (ii) instead of held. Measured since:
rule (i) is what keeps a from-scratch 0.06 point from collapsing ((ii) alone let λ reach
1.2e5 on it), and it costs the baseline bases some targeting (5 of 8 bases on target vs 8 of
8 without anti-windup); ``conditional=False`` runs (ii) alone (the benchmark's ablation).

The proportional part acts throughout (λ reacts by up to a factor e at once). ``anti_windup
= False`` restores the plain controller (for the benchmark's comparison,
``benchmarks/rate_collapse.py``).

Calibration c. Training batches are augmented (colour jitter lowers contrast), so their rate
is systematically below that of the validation images on which the target is checked (10-15 %
on the tiny presets). At every validation round c is updated from R̄ / R_val (set by the
first round, then averaged half-and-half with each new round, as one round's validation rate
is noisy): the controller steers the training rate to c·R*, i.e. the validation rate to R*.
A round whose ratio lies outside [0.5, 2] is *skipped*, not clipped: early in a from-scratch
enhancement the rounded validation rate can be 3-5× the noisy training rate (0.23 vs 0.078
bpp at step 50, 0.41 vs 0.091 at step 150 in the study's collapsed run), a transient of
training and not the augmentation's bias, and clipping it to 0.5 halved the target for the
next 250 steps. That, replayed bit for bit, is what collapsed the study's proposed seed-1
0.06 point (λ 100 → 1.9e5, validation 0.034 bpp for a 0.06 target); with such rounds skipped
the same run peaks at λ 838 and ends on target (0.0585) (``benchmarks/RESULTS.md``, "Rate
control without collapse"). Skipped rounds are counted in the summary.

Tolerance and selection. A run is *on target* when its validation estimated rate R_val is
within ``rate_tolerance`` (relative, default 0.1 = ±10 %) of R*. The trainer's selection rule
becomes: among validation rounds on target, the lowest validation objective (the run's loss
at that round's λ); a round on target always beats one off target; among rounds off target,
the one *nearest* the target (smallest |ln(R_val / R*)|, the objective breaking ties): a
target the run cannot reach then gives its closest checkpoint, reported as off target. (It
was the lowest objective, as on target; but the objective is the loss at each round's own λ,
and off target λ differs between rounds by orders of magnitude: the study-scale benchmark's
baseline seed-2 0.06 run, over a base that had landed at 0.061 bpp, kept its step-50 round
at 0.149 bpp, whose λ was still 1/50 of the later rounds', 13.8 dB, where its later rounds
sat at 0.070-0.075.) One exception: a round *below* the band whose rate-free objective
(the loss minus its rate term: the distortion, plus the reward where there is one) is no
worse than that of the best round on target dominates it -- fewer bits, no worse quality --
and competes as if on target (``selected_dominates`` in the summary says the selected round
won that way). Enhancement codecs only (rate key ``bpp_total``, whose target is a point of a
curve): a base's target is what matches the two compared bases, and with the exception on
for bases the benchmark's baseline depth bases (whose rate has no equilibrium in λ) fell to
0.013 bpp for a 0.03 target. Measured on the collapse benchmark (proposed seed 0, target 0.06, demo scale):
the only round on target was step 150, while the controller was still unwinding a λ of
3.5e3, with a validation distortion of 51.0; rounds 350-700 sat below the band (0.040-0.047
bpp) at distortions 34.2 down to 24.9; the rule without the exception kept step 150, a
point 7.4 dB below its curve and below its own base's reconstruction. Early stopping counts only rounds on target (a run still
converging to its rate is not stopped for it). The result -- target, tolerance, final λ, R_val of
the selected checkpoint and whether it is on target -- is written to the checkpoint metadata
(``rate_control``; the controller state, so that resume is exact), to the run's
``meta.json`` and, by :mod:`taskcodecs.evaluation.evaluate`, to ``eval.nc`` attrs. ``config.yaml``
keeps the target and the *initial* weight, so that it still reproduces the run.

The *actual* rate of a real bitstream adds the container header and the entropy coder's
flush bytes (about 30-40 bytes per image): on 64x128 images that is 0.03-0.04 bpp above the
estimate. The target is an estimated rate by design (the loss can only see the estimate).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

WEIGHT_MIN, WEIGHT_MAX = 1e-8, 1e8
OFF_TARGET = 1e12  # selection value offset of a validation round off target (any loss is below)
MAX_ERROR = 1.0  # |ln(R / target)| counted per step at most
P_GAIN = 1.0  # proportional part: ln λ = integral + P_GAIN · e (a factor e at most)
CUT_OFF = -0.5  # λ = 0 while ln(R̄ / target) is below this (the rate under 61 % of it)
LR_FLOOR = 0.3  # the gain follows the lr schedule down to this fraction
CALIBRATION = (0.5, 2.0)  # bounds of the train/validation rate ratio c
SLOPE_WINDOW = 25  # updates over which the rate's slope (ln R̄ per update) is measured
HORIZON = 100  # updates: the rate closing the error within this many needs no integral step
RISE = math.log(4.0)  # the integral's rise above its level at the rate's last response
RESPONSE = math.log(1.25)  # R̄ this far (25 %) below its peak: the rate responded to λ
RISE_LEAK = 0.005  # per update: the ceiling's own drift (a far-too-low λ still climbs)
TRANSIENT = 150  # updates after the hold in which a response does not move the ceiling up


class RateController:
    """Dual ascent on λ for the constraint "estimated rate = target" (module docstring)."""

    def __init__(self, target_bpp: float, initial_weight: float, tolerance: float = 0.1,
                 gain: float = 0.02, smoothing: float = 0.9, hold: int = 0,
                 anti_windup: bool = True, conditional: bool = True) -> None:
        if not target_bpp > 0:
            raise ValueError(f"rate target must be > 0 bits per pixel, got {target_bpp}")
        if not initial_weight > 0:
            raise ValueError(f"a rate-targeted run needs an initial rate_weight > 0, got "
                             f"{initial_weight}")
        self.target, self.tolerance, self.gain = float(target_bpp), float(tolerance), float(gain)
        self.smoothing, self.hold = float(smoothing), int(hold)
        self.log_weight = math.log(min(max(initial_weight, WEIGHT_MIN), WEIGHT_MAX))
        self.ema = 0.0  # biased EMA of the rate; running() corrects it
        self.updates = 0
        self.calibration = 1.0  # c: training rate / validation rate at the last validation
        self.error = 0.0  # the last clipped error e_t (the proportional part)
        self.rounds = 0  # validation rounds seen by calibrate()
        self.anti_windup = bool(anti_windup)
        self.conditional = bool(conditional)  # rule (i); False: rule (ii) alone (an ablation)
        self.history: list[float] = []  # ln R̄ of the last SLOPE_WINDOW + 1 updates
        self.anchor = self.log_weight  # (ii): the integral at the rate's last response
        self.peak = -math.inf  # (ii): the highest ln R̄ since that response
        self.skipped_rounds = 0  # validation rounds whose ratio was outside CALIBRATION
        self.since_response = 0  # (ii): updates since that response
        self.max_weight = math.exp(self.log_weight)  # the largest operating λ seen

    @property
    def cut_off(self) -> bool:
        """The running rate has fallen far below the target: λ = 0 (module docstring)."""
        return self.error < CUT_OFF

    @property
    def weight(self) -> float:
        """λ = exp(integral + P_GAIN · e): the integral holds the operating point, the
        proportional part reacts at once when the rate crosses the target; 0 while cut off."""
        if self.cut_off:
            return 0.0
        return self.operating_weight * math.exp(P_GAIN * self.error)

    @property
    def operating_weight(self) -> float:
        """exp(integral): the λ the run settles at (reported as its final rate weight)."""
        return math.exp(min(max(self.log_weight, math.log(WEIGHT_MIN)), math.log(WEIGHT_MAX)))

    def running(self) -> float:
        """The bias-corrected running rate R̄ (NaN before the first update)."""
        if self.updates == 0:
            return math.nan
        return self.ema / (1.0 - self.smoothing ** self.updates)

    def update(self, bpp: float, lr_ratio: float = 1.0) -> float:
        """One dual-ascent step after an optimizer step whose estimated rate was ``bpp``, at
        ``lr_ratio`` = that step's learning rate / the base learning rate; returns λ."""
        if not (math.isfinite(bpp) and bpp > 0):
            return self.weight  # e.g. an all-padding batch: no information about the rate
        self.updates += 1
        self.ema = self.smoothing * self.ema + (1.0 - self.smoothing) * bpp
        log_rate = math.log(self.running())
        self.history = (self.history + [log_rate])[-(SLOPE_WINDOW + 1):]
        if self.updates <= self.hold:
            return self.weight
        error = math.log(self.running() / (self.calibration * self.target))
        self.error = min(max(error, -MAX_ERROR), MAX_ERROR)
        step = self.gain * max(lr_ratio, LR_FLOOR) * self.error
        if self.anti_windup:
            step = self._anti_windup(step, log_rate)
        self.log_weight = min(max(self.log_weight + step, math.log(WEIGHT_MIN)),
                              math.log(WEIGHT_MAX))
        self.max_weight = max(self.max_weight, self.operating_weight)
        return self.weight

    def slope(self) -> float:
        """The running rate's slope, ln R̄ per update over the last SLOPE_WINDOW updates (0
        until that many exist)."""
        if len(self.history) <= SLOPE_WINDOW:
            return 0.0
        return (self.history[-1] - self.history[0]) / SLOPE_WINDOW

    def _anti_windup(self, step: float, log_rate: float) -> float:
        """The integral step after (i) and (ii) of the module docstring (they only ever stop
        or shorten an upward step)."""
        slope = self.slope()
        # (ii) the rate's response: R̄ 25 % below its peak since the last response
        self.since_response += 1
        if log_rate > self.peak:
            self.peak = log_rate
        elif log_rate <= self.peak - RESPONSE and self.updates > self.hold + TRANSIENT:
            self.anchor, self.peak, self.since_response = self.log_weight, log_rate, 0
        self.anchor = min(self.anchor, self.log_weight)  # a lowered λ must earn its rise again
        if self.conditional and step > 0 and slope < 0 and self.error <= -HORIZON * slope:
            return 0.0  # (i): already falling to the target within HORIZON updates
        if step > 0:
            ceiling = self.anchor + RISE + RISE_LEAK * self.since_response
            step = min(step, max(ceiling - self.log_weight, 0.0))  # (ii)
        return step

    def calibrate(self, val_bpp: float) -> None:
        """After a validation round: c ← R̄ / R_val, or the round skipped when the ratio is
        outside CALIBRATION (module docstring)."""
        if self.updates and math.isfinite(val_bpp) and val_bpp > 0:
            ratio = self.running() / val_bpp
            if not CALIBRATION[0] <= ratio <= CALIBRATION[1]:
                self.skipped_rounds += 1  # a transient, not the augmentation's bias
                return
            # the first round sets c, later ones average in (a validation rate is noisy)
            self.calibration = ratio if self.rounds == 0 else 0.5 * (self.calibration + ratio)
            self.rounds += 1

    def on_target(self, bpp: float) -> bool:
        return math.isfinite(bpp) and abs(bpp / self.target - 1.0) <= self.tolerance

    def below_band(self, bpp: float) -> bool:
        """``bpp`` lies below the tolerance band (fewer bits than the target allows)."""
        return math.isfinite(bpp) and bpp < self.target * (1.0 - self.tolerance)

    def selection_value(self, objective: float, bpp: float, quality: float = math.nan,
                        best_quality: float = math.nan) -> float:
        """Lower is better: the objective, plus OFF_TARGET when ``bpp`` is off target (so any
        round on target beats every round off target) -- unless the round *dominates* the
        best round on target: fewer bits than the band and a rate-free objective ``quality``
        (loss minus its rate term) no worse than that round's ``best_quality`` (NaN: there
        is no such round). Module docstring, "Tolerance and selection"."""
        if self.on_target(bpp) or (self.below_band(bpp) and quality <= best_quality):
            return float(objective)
        if not (math.isfinite(bpp) and bpp > 0):
            return math.inf
        # off target: the round nearest the target wins, the objective breaks ties
        return OFF_TARGET * (1.0 + abs(math.log(bpp / self.target))) + float(objective)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly (JSON: floats round-trip exactly)."""
        return {"log_weight": self.log_weight, "ema": self.ema, "updates": self.updates,
                "calibration": self.calibration, "error": self.error, "rounds": self.rounds,
                "history": list(self.history),
                "anchor": self.anchor, "peak": self.peak if math.isfinite(self.peak) else None,
                "since_response": self.since_response, "max_weight": self.max_weight,
                "skipped_rounds": self.skipped_rounds}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.log_weight = float(state["log_weight"])
        self.ema, self.updates = float(state["ema"]), int(state["updates"])
        self.calibration = float(state.get("calibration", 1.0))
        self.error = float(state.get("error", 0.0))
        self.rounds = int(state.get("rounds", 0))
        # checkpoints of the controller before anti-windup: no history yet
        self.history = [float(v) for v in state.get("history", [])]
        self.anchor = float(state.get("anchor", self.log_weight))
        peak = state.get("peak")
        self.peak = -math.inf if peak is None else float(peak)
        self.since_response = int(state.get("since_response", 0))
        self.max_weight = float(state.get("max_weight", self.operating_weight))
        self.skipped_rounds = int(state.get("skipped_rounds", 0))

    def summary(self, selected_bpp: float, dominated: bool = False) -> dict[str, Any]:
        """The outcome written beside the run: target, tolerance, final λ, the selected
        checkpoint's validation rate and whether it is on target."""
        def plain(value: float) -> float | None:
            return value if math.isfinite(value) else None

        return {"target_bpp": self.target, "tolerance": self.tolerance,
                "final_rate_weight": self.operating_weight,
                "running_bpp": plain(self.running()),
                "selected_val_bpp": plain(selected_bpp),
                "on_target": self.on_target(selected_bpp),
                "updates": self.updates, "gain": self.gain, "calibration": self.calibration,
                "max_rate_weight": self.max_weight, "anti_windup": self.anti_windup,
                "skipped_calibration_rounds": self.skipped_rounds,
                "selected_dominates": bool(dominated)}


def rate_key(terms: Mapping[str, Any]) -> str:
    """The loss term the target refers to: ``bpp_total`` (enhancements) else ``bpp_base``."""
    for key in ("bpp_total", "bpp_base"):
        if key in terms:
            return key
    raise KeyError(f"rate-targeted training needs a 'bpp_total' or 'bpp_base' loss term; the "
                   f"model's loss has {sorted(terms)}")


def final_weight(run_dir: str | Path, which: str = "best") -> float:
    """The rate weight a run ended with: the controller's final λ for a rate-targeted run,
    else its config's ``rate_weight`` (both read from the ``which`` checkpoint)."""
    from taskcodecs.runs.checkpoint import read_metadata
    from taskcodecs.runs.links import checkpoint_path

    meta = read_metadata(checkpoint_path(run_dir, which))
    control = meta.get("rate_control")
    if control:
        return float(control["final_rate_weight"])
    weight = meta.get("config", {}).get("rate_weight")
    if weight is None:
        raise ValueError(f"run {run_dir}: its checkpoint records no rate weight")
    return float(weight)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m taskcodecs.training.rate_control",
                                     description="Print the final rate weight of a run (for "
                                                 "scripts, e.g. a standalone refit's weight).")
    parser.add_argument("run_dir")
    parser.add_argument("--checkpoint", default="best", choices=("best", "last"))
    args = parser.parse_args(argv)
    try:
        print(repr(final_weight(args.run_dir, args.checkpoint)))
    except (ValueError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
