"""The selection rule's bookkeeping (taskcodecs.training.selection): the best round, the
early-stopping count, its checkpoint state; loss_mode. (The rule inside a real run:
test_train.py's early-stopping test.)"""

from __future__ import annotations

import math

import pytest
from torch import nn

from taskcodecs.training.rate_control import RateController
from taskcodecs.training.selection import Selection, loss_mode


def test_best_round_and_patience_count_regular_rounds_only():
    sel = Selection()
    assert sel.record(2.0, 10, {"loss": 2.0}, None, regular=True)
    assert (sel.best_value, sel.best_step, sel.bad_rounds) == (2.0, 10, 0)
    assert not sel.record(2.0, 20, {"loss": 2.0}, None, regular=True)  # not strictly lower
    assert sel.bad_rounds == 1 and not sel.should_stop(2) and not sel.should_stop(None)
    assert not sel.record(3.0, 25, {"loss": 3.0}, None, regular=False)  # the final round
    assert sel.bad_rounds == 1
    assert not sel.record(2.5, 30, {"loss": 2.5}, None, regular=True)
    assert sel.should_stop(2) and sel.best_step == 10 and math.isnan(sel.best_bpp)
    assert sel.record(1.0, 40, {"loss": 1.0}, None, regular=True) and sel.bad_rounds == 0


def test_a_round_off_the_rate_target_does_not_count_against_patience():
    rate = RateController(0.1, 0.01, tolerance=0.1)
    sel = Selection()
    assert sel.record(1.0, 1, {"loss": 1.0, "bpp_base": 0.1}, rate, regular=True)
    assert sel.best_bpp == pytest.approx(0.1)
    assert not sel.record(1.5, 2, {"loss": 1.5, "bpp_base": 0.5}, rate, regular=True)  # off target
    assert sel.bad_rounds == 0
    assert not sel.record(1.5, 3, {"loss": 1.5, "bpp_base": 0.1}, rate, regular=True)  # on target
    assert sel.bad_rounds == 1


def test_load_reads_a_checkpoints_trainer_state():
    sel = Selection()
    sel.load({"bad_rounds": 2, "best_value": None, "best_step": None})  # nothing validated yet
    assert (sel.bad_rounds, sel.best_value, sel.best_step) == (2, math.inf, None)
    assert math.isnan(sel.best_bpp)
    sel.load({"bad_rounds": 0, "best_value": 0.5, "best_step": 7, "best_bpp": 0.2})
    assert (sel.best_value, sel.best_step, sel.best_bpp) == (0.5, 7, 0.2)


def test_loss_mode_is_eval_mode_and_restores_the_training_flag():
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2)).train()
    with loss_mode(model):
        assert not any(m.training for m in model.modules())
    assert all(m.training for m in model.modules())
