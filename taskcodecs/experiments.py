"""Experiments: what to train (the table and the config) and how a run is built from it.

One import for everything a caller needs about experiments and their runs; the code lives in
modules that each do one thing:

- :mod:`taskcodecs.experiment_table` -- the table: one named config per experiment of the
  paper, ``{preset}-{family}-{method}`` (:data:`EXPERIMENTS`, :data:`FAMILIES`,
  :func:`list_experiments`, :func:`get_experiment`, :func:`sibling`, :func:`load_experiment`).
- :mod:`taskcodecs.train_config` -- :class:`TrainConfig` (every field a ``key=value``
  override) and :class:`SyntheticData`.
- :mod:`taskcodecs.run_links` -- the run directories a run names (``base=``,
  ``init_from=``), checked before anything is written; :func:`checkpoint_path`,
  :func:`read_run`.
- :mod:`taskcodecs.run_data` -- a run's data: its dataset folder (synthetic scenes generated
  if asked), datasets, batch collation, :func:`move_to_device`.
- :mod:`taskcodecs.run_models` -- a run's model: :func:`build_model`, the codec-free
  :class:`ReferenceModel`, :func:`load_run_model`, :func:`save_run_checkpoint`.

They are shared by :mod:`taskcodecs.train`, :mod:`taskcodecs.evaluate` and
:mod:`taskcodecs.sweep`.

    cfg = load_experiment("tiny-depth-base-proposed", ["max_steps=20"], seed=1)
    for name in list_experiments(preset="tiny"): ...
"""

from __future__ import annotations

from taskcodecs.experiment_table import (
    BASE_METHODS,
    CONFIG_DIR,
    ENHANCEMENT_METHODS,
    EXPERIMENTS,
    FAMILIES,
    PRESETS,
    REFERENCE_METHODS,
    Experiment,
    Family,
    Role,
    config_path,
    get_experiment,
    list_experiments,
    load_experiment,
    sibling,
)
from taskcodecs.run_data import (
    build_dataset,
    collate_cityscapes,
    collate_coco,
    collate_for,
    ensure_data,
    existing_data,
    has_dataset,
    move_to_device,
    synthetic_dir,
)
from taskcodecs.run_links import (
    CHECKPOINTS,
    RunKindError,
    check_base_run,
    check_init_run,
    check_links,
    checkpoint_path,
    read_run,
    resolve_links,
)
from taskcodecs.run_models import (
    ReferenceModel,
    build_model,
    load_run_model,
    save_run_checkpoint,
)
from taskcodecs.train_config import SyntheticData, TrainConfig

__all__ = [
    "BASE_METHODS", "CHECKPOINTS", "CONFIG_DIR", "ENHANCEMENT_METHODS", "EXPERIMENTS",
    "FAMILIES", "PRESETS", "REFERENCE_METHODS", "Experiment", "Family", "ReferenceModel",
    "Role", "RunKindError", "SyntheticData", "TrainConfig", "build_dataset", "build_model",
    "check_base_run", "check_init_run", "check_links", "checkpoint_path", "collate_cityscapes",
    "collate_coco", "collate_for", "config_path", "ensure_data", "existing_data", "get_experiment",
    "has_dataset", "list_experiments", "load_experiment", "load_run_model", "move_to_device",
    "read_run", "resolve_links", "save_run_checkpoint", "sibling", "synthetic_dir",
]
