"""Alias of :mod:`taskcodecs.runs.run_data` for the modules that still import it here
(taskcodecs.evaluation.evaluate); new code imports ``taskcodecs.runs.run_data``."""

from taskcodecs.runs.run_data import (  # noqa: F401
    build_dataset,
    collate_for,
    existing_data,
    move_to_device,
)
