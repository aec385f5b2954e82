"""RunDir: a run directory stores its resolved config and provenance."""

from dataclasses import dataclass

import pytest

from infra.config import ConfigError
from infra.io import read_json
from taskcodecs.runs.rundir import RunDir


@dataclass
class Cfg:
    name: str = "tiny"
    max_steps: int = 10


def test_run_dir_stores_resolved_config_and_provenance(tmp_path):
    cfg = Cfg(name="run", max_steps=3)
    run = RunDir.create(tmp_path / "run", cfg, kind="test", freeze=False)
    assert run.load_config(Cfg) == cfg
    assert read_json(run.path / "config.json")["max_steps"] == 3
    meta = run.meta
    assert meta["kind"] == "test" and meta["config_class"].endswith("Cfg")
    with pytest.raises(ConfigError, match="nowhere: run directory not found"):
        RunDir(tmp_path / "nowhere").load_config(Cfg)
