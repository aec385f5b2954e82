"""The trainer's state in a checkpoint (taskcodecs.training.trainer_state): what save writes
is what restore loads back; RNG rows of another world size are dropped. (Exact resume of a
real run: tests/taskcodecs/runs/test_resume.py.)"""

from __future__ import annotations

import logging

import torch
from torch import nn

from taskcodecs.experiments.table import load_experiment
from taskcodecs.runs.checkpoint import read_metadata
from taskcodecs.training import trainer_state
from taskcodecs.training.precision import Precision
from taskcodecs.training.rate_control import RateController
from taskcodecs.training.selection import SELECTION_RULE, Selection


def _parts(seed: int):
    torch.manual_seed(seed)
    model = nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    return model, optimizer


def test_save_then_restore_round_trips_the_trainer_state(tmp_path, caplog):
    cfg = load_experiment("tiny-depth-base-baseline")
    model, optimizer = _parts(0)
    selection = Selection(best_value=0.5, best_step=4, bad_rounds=1, best_bpp=0.12,
                          best_quality=0.3)
    rate = RateController(0.1, 0.01)
    rate.update(0.2, 1.0)
    rng_rows = torch.arange(6, dtype=torch.int64).reshape(2, 3)
    trainer_state.save(tmp_path / "last", model, optimizer, rng_rows, {"loss": 0.7},
                       experiment="x", step=6, selection=selection, world_size=2,
                       elapsed_s=1.5, precision=Precision("none", torch.device("cpu")),
                       rate=rate, cfg=cfg)
    meta = read_metadata(tmp_path / "last")
    assert meta["selection_rule"] == SELECTION_RULE and meta["validation"] == {"loss": 0.7}
    assert set(meta["trainer"]) == {"step", "bad_rounds", "best_value", "best_step",
                                    "world_size", "elapsed_s", "grad_scaler", "best_bpp",
                                    "best_quality", "rate_control"}
    assert meta["rate_control"]["target_bpp"] == 0.1

    fresh_model, fresh_optimizer = _parts(1)
    fresh, fresh_rate = Selection(), RateController(0.1, 0.01)
    restored = trainer_state.restore(tmp_path / "last", fresh_model, fresh_optimizer,
                                     torch.device("cpu"), 2, fresh, fresh_rate,
                                     Precision("none", torch.device("cpu")))
    assert (restored.step, restored.elapsed_s) == (6, 1.5)
    assert torch.equal(restored.rng_rows, rng_rows)
    assert fresh == selection and fresh_rate.state_dict() == rate.state_dict()
    assert torch.equal(fresh_model.weight, model.weight)
    assert fresh_optimizer.state_dict()["state"][0]["step"] == 1

    with caplog.at_level(logging.WARNING, logger="taskcodecs.training.run"):
        other = trainer_state.restore(tmp_path / "last", fresh_model, fresh_optimizer,
                                      torch.device("cpu"), 3, Selection(), None,
                                      Precision("none", torch.device("cpu")))
    assert other.rng_rows is None and "RNG state of 2 processes, this run has 3" in caplog.text
