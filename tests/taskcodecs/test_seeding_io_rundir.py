import os
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from infra.config import ConfigError
from infra.io import atomic_write, atomic_write_text, read_json, write_json
from infra.seeding import check_seed, make_rng, seed_everything
from taskcodecs.runs.rundir import RunDir


@dataclass
class Cfg:
    name: str = "tiny"
    max_steps: int = 10


def test_seed_zero_is_a_real_seed():
    seed_everything(0)
    a = torch.rand(3), np.random.rand(3)
    seed_everything(0)
    b = torch.rand(3), np.random.rand(3)
    seed_everything(1)
    c = torch.rand(3)
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and not torch.equal(a[0], c)
    assert make_rng(0).integers(1 << 30) == make_rng(0).integers(1 << 30)
    assert make_rng(0).integers(1 << 30) != make_rng(1).integers(1 << 30)


@pytest.mark.parametrize("bad", [None, True, 1.5, "3"])
def test_bad_seeds_rejected(bad):
    with pytest.raises(TypeError, match="seed must be an integer"):
        check_seed(bad)
    with pytest.raises(ValueError):
        check_seed(-1)


def _umask():
    current = os.umask(0)
    os.umask(current)
    return current


def test_atomic_write_keeps_old_content_on_failure(tmp_path):
    target = tmp_path / "f.txt"
    atomic_write_text(target, "old")

    def broken(tmp):
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, broken)
    assert target.read_text() == "old"
    assert target.stat().st_mode & 0o777 == 0o666 & ~_umask()
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_json_helpers_name_the_file(tmp_path):
    write_json(tmp_path / "a.json", {"b": 1, "a": [1, 2]})
    assert read_json(tmp_path / "a.json") == {"a": [1, 2], "b": 1}
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="bad.json: not valid JSON"):
        read_json(tmp_path / "bad.json")


def test_run_dir_stores_resolved_config_and_provenance(tmp_path):
    cfg = Cfg(name="run", max_steps=3)
    run = RunDir.create(tmp_path / "run", cfg, kind="test", freeze=False)
    assert run.load_config(Cfg) == cfg
    assert read_json(run.path / "config.json")["max_steps"] == 3
    meta = run.meta
    assert meta["kind"] == "test" and meta["config_class"].endswith("Cfg")
    with pytest.raises(ConfigError, match="nowhere: run directory not found"):
        RunDir(tmp_path / "nowhere").load_config(Cfg)
