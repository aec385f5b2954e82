"""The training loop: learning, run directory contents, early stopping, refused bases."""

import csv
import json
import math

import numpy as np
import pytest

from infra.config import ConfigError
from taskcodecs.experiments.table import load_experiment
from taskcodecs.runs.checkpoint import read_metadata
from taskcodecs.runs.links import RunKindError, checkpoint_path
from taskcodecs.runs.rundir import RunDir
from taskcodecs.train import main
from taskcodecs.training.run import resolve_config, train

SMALL = {"synthetic.train": 4, "synthetic.val": 2, "log_every": 1, "num_workers": 0}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("synthetic")


def _train(name, out, cache, **overrides):
    return train(resolve_config(name, {**SMALL, "synthetic_cache": str(cache), "out": str(out),
                                       **overrides}))


def _rows(run_dir, phase):
    with (run_dir / "log.csv").open(newline="") as handle:
        return [row for row in csv.DictReader(handle) if row["phase"] == phase]


def test_loss_decreases_and_run_dir_is_complete(tmp_path, cache, caplog):
    caplog.set_level("INFO", logger="taskcodecs.training.run")
    run = _train("tiny-depth-base-proposed", tmp_path / "run", cache, max_steps=16, val_every=8,
                 **{"synthetic.train": 2})
    assert "generating 2+2 synthetic scenes" in caplog.text  # said in the log
    losses = [float(row["loss"]) for row in _rows(run, "train")]
    assert len(losses) == 16 and all(math.isfinite(v) for v in losses)
    assert sum(losses[-4:]) / 4 < 0.9 * sum(losses[:4]) / 4, losses
    val = _rows(run, "val")
    assert [int(r["step"]) for r in val] == [8, 16]
    # provenance and logs
    for name in ("config.yaml", "config.json", "meta.json", "pip-freeze.txt", "train.log"):
        assert (run / name).is_file(), name
    assert "git_commit" in json.loads((run / "meta.json").read_text())
    assert RunDir(run).load_config(type(load_experiment("tiny-depth-base-proposed"))).max_steps == 16
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    # best = the lower validation objective, last = the final step
    best, last = read_metadata(checkpoint_path(run, "best")), read_metadata(checkpoint_path(run, "last"))
    objective = {int(r["step"]): float(r["loss"]) for r in val}
    assert best["step"] == min(objective, key=objective.get) and last["step"] == 16
    assert best["codec_id"] == last["codec_id"] and best["model_name"] == "tiny-depth-base"
    assert "validation objective" in best["selection_rule"]


def test_early_stopping_and_cpu_fallback_of_channels_last(tmp_path, cache):
    # lr 1e-30: every update is below float32 resolution; only the batch-norm running
    # statistics still move the validation objective (by ~1e-5), up or down: the run must
    # stop at the first round that does not improve on the best (patience 1)
    with pytest.warns(UserWarning) as warned:
        run = _train("tiny-depth-base-baseline", tmp_path / "run", cache, max_steps=10,
                     val_every=1, patience=1, lr=1e-30, amp="bf16", channels_last=True,
                     warmup_steps=0, batch_size=2, **{"model_overrides.half_resolution": True})
    messages = " ".join(str(w.message) for w in warned)
    assert "channels_last is a CUDA option" in messages
    assert "amp" not in messages, "amp=bf16 runs on the CPU too (CPU autocast)"
    objective = [float(r["loss"]) for r in _rows(run, "val")]
    first_bad = next(i for i in range(1, len(objective))
                     if objective[i] >= min(objective[:i]))  # rounds are steps 1, 2, ...
    last = read_metadata(checkpoint_path(run, "last"))
    assert last["step"] == first_bad + 1 < 10 and last["trainer"]["bad_rounds"] == 1
    assert read_metadata(checkpoint_path(run, "best"))["step"] == int(np.argmin(objective)) + 1


def test_enhancement_refuses_a_base_of_the_wrong_kind(tmp_path, cache):
    detection_base = tmp_path / "detection-base"
    RunDir.create(detection_base, load_experiment("tiny-detection-base-proposed"), freeze=False)
    enhancement = tmp_path / "recon"
    RunDir.create(enhancement, load_experiment("tiny-cityscapes-reconstruction-scalable"), freeze=False)
    out = tmp_path / "out"
    cases = [
        (detection_base, r"detection-base-proposed.*needs a base run of family 'depth-base'"),
        (enhancement, r"is an enhancement run of family 'cityscapes-reconstruction'"),
    ]
    for base, message in cases:
        with pytest.raises(RunKindError, match=message) as err:
            _train("tiny-cityscapes-reconstruction-scalable", out, cache, base=str(base))
        assert str(base) in str(err.value)
    with pytest.raises(ConfigError, match="run directory not found"):
        _train("tiny-cityscapes-reconstruction-scalable", out, cache, base=str(tmp_path / "nope"))
    with pytest.raises(RunKindError, match="name its frozen base as base=RUN_DIR"):
        _train("tiny-cityscapes-segmentation-scalable", out, cache)
    with pytest.raises(RunKindError, match="only enhancement runs take a base"):
        _train("tiny-depth-base-proposed", out, cache, base=str(detection_base))
    with pytest.raises(RunKindError, match="no best checkpoint"):  # right kind, not trained
        RunDir.create(tmp_path / "untrained", load_experiment("tiny-depth-base-proposed"), freeze=False)
        _train("tiny-cityscapes-reconstruction-scalable", out, cache, base=str(tmp_path / "untrained"))
    assert not out.exists(), "a refused run writes nothing"


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["--config", "tiny-depth-base-proposed", "max_step=3"]) == 2
    assert "unknown config key 'max_step'" in capsys.readouterr().err
    assert main(["max_steps=3"]) == 2
    assert "give --config NAME" in capsys.readouterr().err
    assert main([f"resume={tmp_path / 'missing'}"]) == 2
    assert "run directory not found" in capsys.readouterr().err
    assert main(["--config", "paper-depth-base-proposed", f"out={tmp_path / 'p'}",
                 f"data_root={tmp_path / 'empty'}"]) == 2
    assert "no cityscapes dataset found" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()


def test_a_finished_run_dir_is_not_overwritten(tmp_path, cache):
    run = _train("tiny-depth-uncompressed", tmp_path / "ref", cache, max_steps=1, val_every=1)
    with pytest.raises(ConfigError, match="already holds a run.*resume="):
        _train("tiny-depth-uncompressed", run, cache, max_steps=1)
    meta = read_metadata(checkpoint_path(run, "best"))
    assert meta["experiment"] == "tiny-depth-uncompressed" and "model_name" not in meta
