"""Run directories: one folder per run holding its resolved config and provenance.

    run = RunDir.create("runs/depth-base", cfg)   # writes config.yaml, config.json, meta.json
    run.path / "checkpoints"                        # where the trainer puts weights
    cfg = RunDir("runs/depth-base").load_config(TrainConfig)
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from infra.config import ConfigError, config_to_dict, load_config, save_config
from infra.io import atomic_write_text, read_json, write_json

T = TypeVar("T")


def git_commit(cwd: str | os.PathLike | None = None) -> str | None:
    """The current git commit (with ``-dirty`` if there are uncommitted changes), or None."""
    cwd = cwd or Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10
        )
        if commit.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd, capture_output=True, text=True, timeout=10,
        )
        return commit.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def pip_freeze() -> str:
    """``pip freeze`` of the running interpreter ("" if pip is unavailable)."""
    try:
        out = subprocess.run(
            [sys.executable, "-m", "pip", "freeze", "--disable-pip-version-check"],
            capture_output=True, text=True, timeout=120,
        )
        return out.stdout
    except (OSError, subprocess.SubprocessError):
        return ""


@dataclass
class RunDir:
    """A run's folder; ``create`` writes the resolved config and provenance into it."""

    path: Path

    def __post_init__(self) -> None:
        self.path = Path(self.path)

    @classmethod
    def create(cls, path: str | os.PathLike, cfg: Any, kind: str | None = None,
               freeze: bool = True, exist_ok: bool = True) -> RunDir:
        run = cls(Path(path))
        if run.path.exists() and not exist_ok:
            raise FileExistsError(f"{run.path}: run directory already exists")
        run.path.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run.path / "config.yaml")
        write_json(run.path / "config.json", config_to_dict(cfg))
        write_json(run.path / "meta.json", {
            "kind": kind or type(cfg).__name__,
            "config_class": f"{type(cfg).__module__}.{type(cfg).__qualname__}",
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "git_commit": git_commit(),
            "python": sys.version.split()[0],
            "platform": platform.platform(),
        })
        if freeze:
            atomic_write_text(run.path / "pip-freeze.txt", pip_freeze())
        return run

    @property
    def meta(self) -> dict[str, Any]:
        return read_json(self.path / "meta.json")

    def load_config(self, cls: type[T]) -> T:
        """The run's resolved config as ``cls``; errors name the run directory."""
        if not self.path.is_dir():
            raise ConfigError(f"{self.path}: run directory not found")
        try:
            return load_config(cls, self.path / "config.yaml")
        except ConfigError as err:
            raise ConfigError(f"run {self.path}: {err}") from err
