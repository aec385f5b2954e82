"""The experiment table: one named training config per experiment of the paper, two presets.

Every experiment ``NAME`` is a YAML file ``taskcodecs/experiments/configs/NAME.yaml`` holding a
:class:`~taskcodecs.experiments.train_config.TrainConfig`, plus a row of :data:`EXPERIMENTS` saying what
kind of run it is (a *base*, an *enhancement* on a frozen base, or a codec-free *reference*)
and, for enhancements, which kind of base it needs. Names are ``{preset}-{family}-{method}``:

======================================  =========================  =========================
family                                  methods                    role (needs)
======================================  =========================  =========================
depth-base           (Cityscapes)       baseline, proposed         base
detection-base       (COCO 2017)        baseline, proposed         base
coco-reconstruction                     scalable, direct,          enhancement (base=RUN_DIR
                                        standalone-refit,          of a detection base)
                                        standalone-independent
cityscapes-reconstruction               the same                   enhancement (depth base)
cityscapes-segmentation                 the same                   enhancement (depth base)
depth / detection / segmentation        uncompressed               reference (no codec)
compressai-reconstruction               bmshj2018-hyperprior,      standalone (a CompressAI
                                        mbt2018-mean               zoo architecture, no base)
======================================  =========================  =========================

*standalone* runs train one reconstruction codec on the images alone, no base: the CompressAI
zoo architectures wrapped by :mod:`taskcodecs.models.compressai_codec` (registry names
``{preset}-compressai-{architecture}``), an independent reference trained on the same data
and evaluated through real bitstreams like every codec.

:data:`FAMILIES` is that table (role, the task a family's runs are scored on, its dataset,
the base family of enhancements), the one source of truth: ``analysis.runs`` reads it too.
This module imports no torch, so the analysis side stays light.

``direct`` reconstruction is the base's own g_a: its run trains nothing (it validates and
saves once) so that evaluate and sweep treat it like the other methods. ``standalone-refit``
starts from a trained ``scalable`` run of the same family (``init_from=RUN_DIR``; its base
is reused) and refits only the entropy model with the side information zeroed.

Presets: ``paper-…`` (real datasets at full resolution, the paper's network sizes) and
``tiny-…`` (synthetic scenes at 64x128, small networks; a CPU trains one in minutes).

Presets are defaults plus differences: a YAML names its ``parent`` (another experiment of
the table) and states only what differs, e.g. ``tiny-depth-base-proposed`` is
``tiny-depth-base-baseline`` with another ``reward_weight`` and ``rate_weight``. The loader
resolves the chain (:func:`infra.config.load_yaml`: mappings merged key by key; a loop or
a missing parent is an error naming the file); every run still writes its complete resolved
config. :func:`preset_chain` lists a preset's parents, :func:`preset_values` its resolved
values (``python -m taskcodecs.train --config NAME --help`` prints them).

    cfg = load_experiment("tiny-depth-base-proposed", ["max_steps=20"], seed=1)
    for name in list_experiments(preset="tiny"): ...
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from infra.config import PARENT_KEY, ConfigError, config_to_dict, load_config, read_yaml
from taskcodecs.experiments.train_config import TrainConfig
from taskcodecs.models.names import MODES, PRESETS

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
Role = Literal["base", "enhancement", "reference", "standalone"]
BASE_METHODS = ("baseline", "proposed")
REFERENCE_METHODS = ("uncompressed",)
COMPRESSAI_METHODS = ("bmshj2018-hyperprior", "mbt2018-mean")  # compressai.zoo names


@dataclass(frozen=True)
class Family:
    """One family of experiments: its role, the task its runs are scored on, its dataset."""

    role: Role
    task: str  # depth | detection | reconstruction | segmentation
    dataset: str  # cityscapes | coco
    base_family: str | None = None  # enhancements: the family their frozen base comes from

    @property
    def methods(self) -> tuple[str, ...]:
        return {"base": BASE_METHODS, "enhancement": MODES, "reference": REFERENCE_METHODS,
                "standalone": COMPRESSAI_METHODS}[self.role]


FAMILIES: dict[str, Family] = {
    "depth-base": Family("base", "depth", "cityscapes"),
    "detection-base": Family("base", "detection", "coco"),
    "coco-reconstruction": Family("enhancement", "reconstruction", "coco", "detection-base"),
    "cityscapes-reconstruction": Family("enhancement", "reconstruction", "cityscapes",
                                        "depth-base"),
    "cityscapes-segmentation": Family("enhancement", "segmentation", "cityscapes", "depth-base"),
    "depth": Family("reference", "depth", "cityscapes"),
    "detection": Family("reference", "detection", "coco"),
    "segmentation": Family("reference", "segmentation", "cityscapes"),
    "compressai-reconstruction": Family("standalone", "reconstruction", "cityscapes"),
}


@dataclass(frozen=True)
class Experiment:
    """One row of the table: what kind of run ``name`` is."""

    name: str
    preset: str
    family: str
    method: str
    role: Role
    base_family: str | None  # enhancements: the family their frozen base must come from
    description: str

    @property
    def config_path(self) -> Path:
        return CONFIG_DIR / f"{self.name}.yaml"


_DATASET_NAMES = {"cityscapes": "Cityscapes", "coco": "COCO"}
_BASE_NOTES = {"baseline": "; g_a trained on a detached latent (reward_weight 0)",
               "proposed": " with the reconstruction reward (reward_weight > 0)"}
_ENHANCED_DATA = {"coco": "COCO (VOC images) over a detection base",
                  "cityscapes": "Cityscapes over a depth base"}


def _description(family: Family, method: str) -> str:
    if family.role == "base":
        return f"{_DATASET_NAMES[family.dataset]} {family.task} base{_BASE_NOTES[method]}"
    if family.role == "enhancement":
        return f"{method} {family.task} on {_ENHANCED_DATA[family.dataset]}"
    if family.role == "standalone":
        return (f"CompressAI {method} trained for {family.task} on "
                f"{_DATASET_NAMES[family.dataset]} images (standalone, no base)")
    return f"the {family.task} model on uncompressed images (no codec, no bitstream)"


EXPERIMENTS: dict[str, Experiment] = {
    f"{preset}-{name}-{method}": Experiment(
        f"{preset}-{name}-{method}", preset, name, method, family.role, family.base_family,
        _description(family, method),
    )
    for preset in PRESETS
    for name, family in FAMILIES.items()
    for method in family.methods
}


def list_experiments(preset: str | None = None, role: str | None = None) -> list[str]:
    """Experiment names, sorted; optionally only one preset ("paper"/"tiny") or role."""
    return sorted(
        name for name, exp in EXPERIMENTS.items()
        if (preset is None or exp.preset == preset) and (role is None or exp.role == role)
    )


def get_experiment(name: str) -> Experiment:
    """The table row of ``name``; an unknown name lists the valid ones."""
    try:
        return EXPERIMENTS[name]
    except KeyError:
        raise ConfigError(
            f"unknown experiment {name!r}; valid names: {', '.join(list_experiments())}"
        ) from None


def sibling(name: str, method: str) -> str:
    """The experiment of the same preset and family with another ``method``."""
    exp = get_experiment(name)
    other = f"{exp.preset}-{exp.family}-{method}"
    if other not in EXPERIMENTS:
        methods = sorted(e.method for e in EXPERIMENTS.values()
                         if e.preset == exp.preset and e.family == exp.family)
        raise ConfigError(f"family {exp.family!r} has no method {method!r}; it has: {methods}")
    return other


def config_path(name_or_path: str | os.PathLike) -> Path:
    """A YAML path: an experiment name resolves to ``configs/NAME.yaml``; a path is kept."""
    text = str(name_or_path)
    if text in EXPERIMENTS:
        return EXPERIMENTS[text].config_path
    path = Path(text)
    if path.suffix not in (".yaml", ".yml") and not path.exists():
        get_experiment(text)  # raises ConfigError with the list of valid names
    return path


def load_experiment(
    name_or_path: str | os.PathLike,
    overrides: Mapping[str, Any] | Iterable[str] = (),
    **kwargs: Any,
) -> TrainConfig:
    """The :class:`TrainConfig` of an experiment name (or YAML path) with overrides applied.

    A YAML's ``parent`` may be an experiment name (looked up beside the file, then in
    :data:`CONFIG_DIR`), so a YAML of one's own can start from a preset.
    """
    path = config_path(name_or_path)
    if path.parent.resolve() == CONFIG_DIR and path.stem in EXPERIMENTS:
        stated = read_yaml(path).get("experiment")
        if stated != path.stem:  # not inherited from a parent, not another preset's
            raise ConfigError(f"{path}: states experiment {stated!r}, expected {path.stem!r}")
    cfg = load_config(TrainConfig, path, overrides, parent_dirs=(CONFIG_DIR,), **kwargs)
    get_experiment(cfg.experiment)  # the YAML must name a table entry
    return cfg


def preset_chain(name: str) -> list[str]:
    """Experiment ``name`` and its parents, nearest first (``[name]`` without a parent)."""
    chain = [name]
    while (parent := read_yaml(get_experiment(chain[-1]).config_path).get(PARENT_KEY)) is not None:
        if parent in chain:
            raise ConfigError(f"{get_experiment(name).config_path}: the chain of parents loops: "
                              f"{' -> '.join([*chain, parent])}")
        chain.append(str(parent))
    return chain


def preset_values(name: str) -> dict[str, Any]:
    """The resolved config of experiment ``name`` as a plain dict (defaults filled in)."""
    return config_to_dict(load_experiment(name))

