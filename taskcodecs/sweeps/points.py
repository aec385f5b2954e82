"""A sweep's points and its plan (``OUT/sweep.json``): what each run of the grid is."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.config import ConfigError

__all__ = ["Point", "SweepPlan", "load_plan"]


@dataclass(frozen=True)
class Point:
    """One run of the sweep."""

    experiment: str
    method: str
    rate_weight: float
    reward_weight: float | None  # base families
    base_label: str | None  # enhancement families
    base_run: str | None
    run_dir: str
    init_from: str | None  # standalone-refit: the scalable point's run dir
    rate_target: float | None = None  # rate-targeted point: estimated bpp (rate_weight: start)
    steps: int | None = None  # max_steps of this point (warm-started points), else the config's

    @property
    def inherits_weight(self) -> bool:
        """A targeted refit, or a warm-started targeted point without its own initial weight,
        starts from its init run's final rate weight."""
        return self.rate_target is not None and self.init_from is not None and (
            self.method == "standalone-refit" or self.rate_weight is None)

    @property
    def rate_coordinate(self) -> float:
        """The point's place along the sweep's rate axis: its target, else its weight."""
        return self.rate_target if self.rate_target is not None else self.rate_weight


@dataclass(frozen=True)
class SweepPlan:
    """What ``OUT/sweep.json`` holds: the points and how to train and evaluate them."""

    config: str
    overrides: dict[str, Any]
    points: list[Point]
    split: str = "val"
    eval_limit: int | None = None


def load_plan(path: Path) -> SweepPlan:
    """The plan a sweep wrote to ``path`` (``OUT/sweep.json``)."""
    if not path.is_file():
        raise ConfigError(f"{path}: no sweep plan here (a sweep writes OUT/sweep.json)")
    spec = json.loads(path.read_text())
    return SweepPlan(spec["config"], spec["overrides"], [Point(**p) for p in spec["points"]],
                     spec.get("split", "val"), spec.get("eval_limit"))
