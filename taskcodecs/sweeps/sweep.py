"""Train and evaluate a grid of rate points, gathered into one Dataset for the RD plots.

    python -m taskcodecs.sweep --config tiny-depth-base-proposed --methods baseline,proposed \\
        --rate-weights 1e-3,3e-3,1e-2 --reward-weights 0.01,0.1 --out sweeps/depth [key=value ...]
    python -m taskcodecs.sweep --config tiny-cityscapes-reconstruction-scalable \\
        --methods scalable,direct,standalone-refit,standalone-independent \\
        --bases baseline=sweeps/depth/runs/A,proposed=sweeps/depth/runs/B \\
        --rate-weights 3e-3,1e-2,3e-2 --out sweeps/recon
    python -m taskcodecs.sweep --config tiny-depth-base-proposed --methods baseline,proposed \
        --rate-targets 0.05,0.1 --out sweeps/depth-matched          # rate-targeted points

Points. ``--methods`` are siblings of ``--config`` in its family (same preset), default
its own method. Base families: ``baseline`` runs at reward_weight 0 only, ``proposed`` at
every ``--reward-weights`` value (which must be > 0; default: the config's). Enhancement
families: every point names its frozen base explicitly, from ``--bases label=RUN_DIR,...``
(or a single ``base=RUN_DIR`` override, labelled by the folder name); ``standalone-refit``
points start from the ``scalable`` point of the same base and rate weight (so ``scalable``
must be among the methods). ``direct`` points do not depend on the rate weight; they are
run once per base and repeated along ``rate_weight``.

Rate targets. ``--rate-targets`` (estimated bits per pixel, instead of ``--rate-weights``)
trains every point with ``rate_target_bpp`` (:mod:`taskcodecs.training.rate_control`): its rate weight
is adapted during training, starting from the config's ``rate_weight`` (or the single value
of ``--rate-weights`` if given), so that it lands on the target. The point's coordinate is then
``rate_target`` instead of ``rate_weight``, its folder ``...-target<bpp>``; a
``standalone-refit`` point is not targeted (it refits the entropy model of fixed transforms)
but trained at the *final* rate weight of the scalable point it refits.

Warm start (``--warm-start STEPS``): along each curve (method and base, or method and reward
weight) the lowest-rate point is trained from scratch and every next (higher-rate) point
starts from the previous point's best weights (``init_from``) and final rate weight (its own
initial weight when ``--rate-weights`` gives one per target), for STEPS steps: a learned
codec at several rates for a fraction of the cost. Upwards, so that extra training and extra
rate move quality the same way (measured on the tiny presets: chained downwards, the
from-scratch highest-rate point was the worst-trained and the curve bent back at the top).
Refits also train for STEPS steps.

Each point is a run directory ``OUT/runs/<experiment>[-<base label>]-{rate<λ>|target<R>}[-reward<w>]``,
trained with :func:`taskcodecs.training.run.train` and evaluated with
:func:`taskcodecs.evaluation.evaluate.evaluate_run`; a point whose ``eval.nc`` exists is reused, one
with a last checkpoint is resumed, so an interrupted sweep is re-run with the same command.
The plan is ``OUT/sweep.json``; the result ``OUT/sweep.nc`` (h5netcdf, atomic) holds every
variable of the points' eval.nc with the dims

    base families         (method, reward_weight, rate_weight, image, layer)
    enhancement families  (method, base, rate_weight, image, layer)

(``rate_target`` in place of ``rate_weight`` for rate-targeted sweeps; ``map``/``miou``
without ``image``), NaN where a combination was not run, plus per point ``run_dir``,
``codec_id``, ``checkpoint_step`` and ``rate_weight_final`` (the weight it ended with); enhancement sweeps also carry the
coordinates ``base_run`` and ``base_reward_weight`` along ``base``. The sweep is one
process (``--launcher local``, the default); ``--launcher submitit`` runs every point as a job
of a SLURM job array (:mod:`taskcodecs.sweeps.launch`: partitions, GPUs, torchrun inside multi-GPU
jobs, requeue on timeout, ``--gather OUT`` to rebuild sweep.nc); ``--dry-run`` prints each
point's train and evaluate command to dispatch by hand (train commands can be prefixed with
torchrun).
"""

from __future__ import annotations

import json
import logging
import re
import shlex
from dataclasses import replace
from pathlib import Path
from typing import Any

from infra import cli
from infra.config import ConfigError
from taskcodecs.experiments.table import get_experiment, load_experiment, sibling
from taskcodecs.runs.checkpoint import CheckpointError, read_metadata
from taskcodecs.runs.links import checkpoint_path
from taskcodecs.sweeps.gather import gather, gather_again
from taskcodecs.sweeps.points import Point, SweepPlan, load_plan
from taskcodecs.training.rate_control import final_weight

# gather, gather_again (sweeps.gather), Point, SweepPlan, load_plan (sweeps.points) are
# re-exported: callers import them from here.
__all__ = ["Point", "SweepPlan", "commands", "gather", "gather_again", "load_plan", "plan",
           "run_point", "train_argv", "training_finished", "validate_overrides"]

log = logging.getLogger("taskcodecs.sweeps.sweep")


def parse_floats(text: str | None, what: str) -> list[float]:
    if text is None:
        return []
    try:  # NaN and inf are refused here, not as a non-finite loss mid-training
        return cli.finite_floats(text, what)
    except ValueError as err:
        raise ConfigError(str(err)) from None


_SAFE_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def check_label(label: str, where: str) -> str:
    """A base label becomes part of a run folder name: letters, digits, '.', '_', '-' only,
    starting with a letter or digit (no '/', no '..' path), at most 64 characters."""
    if not _SAFE_LABEL.fullmatch(label) or ".." in label:
        raise ConfigError(f"{where}: base label {label!r} is not a safe folder name (letters, "
                          "digits, '.', '_', '-'; starting with a letter or digit; no '..')")
    return label


def parse_bases(text: str | None, overrides: dict[str, Any]) -> dict[str, str]:
    if text:
        pairs = [item.partition("=") for item in text.split(",") if item.strip()]
        if any(not sep or not label or not path for label, sep, path in pairs):
            raise ConfigError(f"--bases: expected label=RUN_DIR,..., got {text!r}")
        return {check_label(label.strip(), "--bases"): path.strip() for label, _, path in pairs}
    if overrides.get("base"):
        base = str(overrides["base"])
        label = Path(base).resolve().name  # "runs/x/.." is labelled by the folder it names
        return {check_label(label, f"base={base} (labelled by its folder name; give "
                                   "--bases LABEL=RUN_DIR instead)"): base}
    return {}


def _rate_points(rate_weights: list[float], rate_targets: list[float] | None,
                 ) -> list[tuple[float | None, float | None, str]]:
    """(rate weight, rate target, folder tag) of each rate point of a sweep."""
    if not rate_targets:
        if not rate_weights:
            raise ConfigError("--rate-weights: give at least one rate weight (or --rate-targets)")
        return [(lam, None, f"rate{lam:g}") for lam in rate_weights]
    if len(rate_weights) not in (0, 1, len(rate_targets)):
        raise ConfigError("with --rate-targets, --rate-weights gives the initial rate weight: "
                          f"one value, or one per target ({len(rate_targets)}), not {rate_weights}")
    if any(t <= 0 for t in rate_targets):
        raise ConfigError(f"--rate-targets: expected bits per pixel > 0, got {rate_targets}")
    starts = rate_weights * len(rate_targets) if len(rate_weights) == 1 else (
        rate_weights or [None] * len(rate_targets))
    return [(w, t, f"target{t:g}") for w, t in zip(starts, rate_targets)]


def _warm_start(points: list[Point], steps: int, own_weights: bool) -> list[Point]:
    """Chain the points of each (method, base or reward weight) from the lowest rate up:
    the first is trained from scratch, each next one starts from the previous one's best
    checkpoint (``init_from``) for ``steps`` steps, at its own initial rate weight if
    ``own_weights`` (one per target was given), else at the previous one's final weight. Refits (which start from their scalable
    point anyway) also train for ``steps`` steps; direct points are unchanged."""
    def rate_order(p: Point) -> float:  # lowest rate first (targets up, weights down)
        return p.rate_target if p.rate_target is not None else -p.rate_weight

    chains: dict[tuple, list[int]] = {}
    for i, p in enumerate(points):
        if p.method not in ("direct", "standalone-refit"):
            chains.setdefault((p.method, p.reward_weight, p.base_label), []).append(i)
    out = [replace(p, steps=steps) if p.method == "standalone-refit" else p for p in points]
    for members in chains.values():
        chain = sorted((points[i] for i in members), key=rate_order)
        for slot, k in zip(members, range(len(chain))):
            point = chain[k]
            if k > 0:
                point = replace(point, init_from=chain[k - 1].run_dir, steps=steps,
                                rate_weight=point.rate_weight if own_weights else None)
            out[slot] = point
    return out


def plan(config: str, rate_weights: list[float], reward_weights: list[float],
         methods: list[str], bases: dict[str, str], out: Path,
         rate_targets: list[float] | None = None, warm_start: int | None = None) -> list[Point]:
    """The points of a sweep, in the order they must run (scalable before its refit);
    ``warm_start``: steps of each warm-started point (:func:`_warm_start`), None: none."""
    exp = get_experiment(config)
    methods = methods or [exp.method]
    order = {"scalable": 0}  # refits need their scalable point first
    methods = sorted(methods, key=lambda m: order.get(m, 1))
    rates = _rate_points(rate_weights, rate_targets)
    runs = out / "runs"
    points: list[Point] = []
    for method in methods:
        name = sibling(exp.name, method)
        if exp.role == "base":
            if method == "baseline":
                rewards = [0.0]
            else:
                rewards = reward_weights or [load_experiment(name).reward_weight]
                if any(w == 0 for w in rewards):
                    raise ConfigError(f"--reward-weights: {method} needs reward weights > 0 "
                                      "(reward_weight 0 is the baseline)")
            points += [Point(name, method, lam, w, None, None,
                             str(runs / f"{name}-{tag}-reward{w:g}"), None, target)
                       for w in rewards for lam, target, tag in rates]
        elif exp.role == "enhancement":
            if not bases:
                raise ConfigError(f"{exp.name} is an enhancement: name the base of every point "
                                  "with --bases label=RUN_DIR,... (or base=RUN_DIR)")
            if reward_weights:
                raise ConfigError("--reward-weights applies to base families; an enhancement "
                                  "sweep varies the base with --bases")
            for label, base in bases.items():
                for lam, target, tag in rates if method != "direct" else rates[:1]:
                    init = None
                    if method == "standalone-refit":
                        if "scalable" not in methods:
                            raise ConfigError("standalone-refit points refit the scalable points: "
                                              "add scalable to --methods")
                        init = str(runs / f"{sibling(exp.name, 'scalable')}-{label}-{tag}")
                    folder = f"{name}-{label}" + ("" if method == "direct" else f"-{tag}")
                    points.append(Point(name, method, lam, None, label, base,
                                        str(runs / folder), init,
                                        None if method == "direct" else target))
        elif exp.role == "standalone":  # a CompressAI reference: rate points only
            if reward_weights or bases:
                raise ConfigError(f"{exp.name} is a standalone codec: it takes neither "
                                  "--reward-weights nor --bases")
            points += [Point(name, method, lam, None, None, None, str(runs / f"{name}-{tag}"),
                             None, target) for lam, target, tag in rates]
        else:
            raise ConfigError(f"{exp.name} is a codec-free reference: there is no rate to sweep")
    if warm_start is not None:
        if warm_start < 1:
            raise ConfigError(f"--warm-start: expected a number of steps >= 1, got {warm_start}")
        own = bool(rate_targets) and len(rate_weights) == len(rate_targets) > 1
        points = _warm_start(points, warm_start, own)
    return points


def run_point(point: Point, overrides: dict[str, Any], split: str, limit: int | None) -> Path:
    """Train (or resume, or reuse) and evaluate one point; returns its eval.nc path."""
    from taskcodecs.evaluation.evaluate import evaluate_run
    from taskcodecs.training.run import resolve_config, train

    run_dir = Path(point.run_dir)
    result = run_dir / "eval.nc"
    if result.is_file():
        log.info("%s: reusing %s", run_dir.name, result)
        return result
    if not training_finished(point, overrides):
        train(resolve_config(*_train_request(point, overrides)))
    evaluate_run(run_dir, split=split, checkpoint="best", limit=limit)
    return result


def training_finished(point: Point, overrides: dict[str, Any]) -> bool:
    """Whether the last checkpoint of ``point`` ended its training (the sweep's max_steps
    reached, or stopped early), so a requeued job evaluates it instead of training on."""
    path = checkpoint_path(point.run_dir, "last")
    if not path.with_suffix(".json").is_file():
        return False
    try:
        meta = read_metadata(path)
        state, cfg = meta["trainer"], meta["config"]
    except (CheckpointError, KeyError):  # damaged: resume= picks a checkpoint that verifies
        return False
    patience = cfg.get("patience")
    return state["step"] >= overrides.get("max_steps", cfg["max_steps"]) or (patience is not None
                                                 and state["bad_rounds"] >= patience)


def _train_request(point: Point, overrides: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """(--config, overrides) that train ``point``: resume=RUN_DIR once it has a checkpoint
    (``resume`` continues from the newest one that verifies, taskcodecs.runs.resume)."""
    if any(checkpoint_path(point.run_dir, w).with_suffix(".json").is_file() for w in ("last", "best")):
        return None, {**_train_overrides(point, overrides), "resume": point.run_dir}
    return point.experiment, _train_overrides(point, overrides)


def train_argv(point: Point, overrides: dict[str, Any]) -> list[str]:
    """``-m taskcodecs.train ...`` arguments that train (or resume) ``point``."""
    config, flat = _train_request(point, overrides)
    items = [f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in flat.items()]
    return ["-m", "taskcodecs.train", *(["--config", config] if config else []), *items]


def _train_overrides(point: Point, overrides: dict[str, Any],
                     refit_weight: float | str | None = None) -> dict[str, Any]:
    """The point's train overrides. A targeted point with an ``init_from`` run (a refit, a
    warm start) starts at that run's final rate weight: ``refit_weight`` (default: read from
    its checkpoint); a refit is not targeted itself."""
    out = {k: v for k, v in overrides.items() if k != "base"}
    out["out"] = point.run_dir
    if point.rate_weight is not None:
        out["rate_weight"] = point.rate_weight
    if point.inherits_weight:
        out["rate_weight"] = final_weight(point.init_from) if refit_weight is None else refit_weight
    if point.rate_target is not None and point.method != "standalone-refit":
        out["rate_target_bpp"] = point.rate_target
    if point.steps is not None:
        out["max_steps"] = point.steps
    if point.reward_weight is not None:
        out["reward_weight"] = point.reward_weight
    if point.base_run is not None:
        out["base"] = point.base_run
    if point.init_from is not None:
        out["init_from"] = point.init_from
    return out


def commands(point: Point, overrides: dict[str, Any], split: str, limit: int | None) -> str:
    """The public train and evaluate command lines of ``point`` (for --dry-run):
    ``python -m taskcodecs.train --config NAME --out RUN_DIR key=value ...`` then
    ``python -m taskcodecs.evaluate RUN_DIR --split SPLIT``."""
    later = "REFIT_WEIGHT"  # a targeted refit's weight exists once its scalable point ran
    flat = _train_overrides(point, overrides, refit_weight=later)
    run_dir = flat.pop("out")
    items = [f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in flat.items()]
    train = shlex.join(["python", "-m", "taskcodecs.train", "--config", point.experiment,
                        "--out", run_dir, *items])
    if f"rate_weight={later}" in items:
        train = train.replace(f"rate_weight={later}", "rate_weight=$(python -m "
                              f"taskcodecs.training.rate_control {shlex.quote(point.init_from)})")
    evaluate = ["python", "-m", "taskcodecs.evaluate", point.run_dir, "--split", split]
    if limit is not None:
        evaluate += ["--limit", str(limit)]
    return train + " && " + shlex.join(evaluate)


def validate_overrides(points: list[Point], overrides: dict[str, Any]) -> None:
    """Apply each experiment's train overrides to its config before anything runs, so an
    unknown or invalid key (``max_stepz=``, ``model_overrides.latent_chh=``) is a
    :class:`ConfigError` naming it, at planning time (and in ``--dry-run``)."""
    from taskcodecs.experiments.registry import model_config

    seen: set[str] = set()
    for point in points:
        if point.experiment in seen:
            continue
        seen.add(point.experiment)
        flat = _train_overrides(point, overrides, refit_weight=1.0)
        cfg = load_experiment(point.experiment, flat)
        if cfg.model is not None:
            model_config(cfg.model, **cfg.model_overrides)
