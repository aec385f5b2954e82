"""Alias of :mod:`taskcodecs.runs.run_model` for the modules that still import it here
(taskcodecs.evaluation, vinfo.adapter.codec); new code imports ``taskcodecs.runs.run_model``."""

from taskcodecs.runs.run_model import load_run_model  # noqa: F401
