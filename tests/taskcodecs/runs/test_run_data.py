"""The data of a run: a data_root without a dataset is refused, synthetic scenes are
rendered only where asked, and the log says where and how many (issue 22, item 3)."""

from __future__ import annotations

import logging

import pytest

from infra.config import ConfigError
from taskcodecs import train as train_cli
from taskcodecs.experiments.table import load_experiment
from taskcodecs.runs.run_data import ensure_data, has_dataset

NAME = "tiny-depth-base-proposed"
SMALL = {"synthetic.train": 2, "synthetic.val": 1, "synthetic.height": 32,
         "synthetic.width": 64}
log = logging.getLogger("tests.data")


def _cfg(tmp_path, **overrides):
    return load_experiment(NAME, {**SMALL, "out": str(tmp_path / "run"), **overrides})


def test_a_mistyped_data_root_is_refused_naming_it(tmp_path, capsys):
    typo = tmp_path / "datta"
    assert train_cli.main(["--config", NAME, f"out={tmp_path / 'run'}", f"data_root={typo}",
                           "synthetic.train=2", "synthetic.val=1", "max_steps=1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"data_root={typo}: no cityscapes dataset found ({typo} does not " \
        "exist" in err[0] and "render_synthetic=true" in err[0], err
    assert not typo.exists() and not (tmp_path / "run").exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="holds no leftImg8bit/"):
        ensure_data(_cfg(tmp_path, data_root=str(tmp_path / "empty")))
    assert list((tmp_path / "empty").iterdir()) == []


def test_synthetic_scenes_are_rendered_where_asked_and_logged(tmp_path, caplog):
    caplog.set_level("INFO", logger="tests.data")
    asked = tmp_path / "new"
    root = ensure_data(_cfg(tmp_path, data_root=str(asked), render_synthetic=True), log=log)
    assert root == asked and has_dataset(asked, "cityscapes")
    assert f"rendered 3 synthetic scenes (2 train + 1 val, 32x64, seed 0) into {asked}" \
        in caplog.text
    caplog.clear()
    cache = tmp_path / "cache"  # no data_root: the preset's location (synthetic_cache here)
    root = ensure_data(_cfg(tmp_path, synthetic_cache=str(cache)), log=log)
    assert root.parent == cache and has_dataset(root, "cityscapes")
    assert f"rendered 3 synthetic scenes (2 train + 1 val, 32x64, seed 0) into {root}" \
        in caplog.text
    caplog.clear()
    assert ensure_data(_cfg(tmp_path, synthetic_cache=str(cache)), log=log) == root
    assert "rendered before" in caplog.text and "rendered 3" not in caplog.text
