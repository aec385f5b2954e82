"""The selection rule's bookkeeping (taskcodecs.training.selection): the best round, the
early-stopping count, its checkpoint state; loss_mode. (The rule inside a real run:
test_train.py's early-stopping test.)"""

from __future__ import annotations

import math

import pytest
from torch import nn

from taskcodecs.training.rate_control import OFF_TARGET, RateController
from taskcodecs.training.selection import Selection, loss_mode, quality, rate_adjusted


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


def test_a_round_below_the_band_that_dominates_the_best_round_on_target_wins():
    # The collapse benchmark's proposed seed 0 at 0.06 (demo scale): the only round on target
    # was an early one (distortion 51); later rounds sat below the band at distortion 25-34.
    rate = RateController(0.06, 100.0, tolerance=0.1)
    sel = Selection()

    def round_(step, distortion, bpp, weight):
        terms = {"loss": distortion + weight * bpp, "distortion": distortion,
                 "rate": weight * bpp, "bpp_total": bpp}
        value = rate_adjusted(terms["loss"], terms, rate, sel)
        return sel.record(value, step, terms, rate, regular=True)

    assert round_(100, 56.1, 0.0673, 3740.0)  # off target, above the band: the only round yet
    assert round_(150, 51.0, 0.0616, 2128.0)  # on target beats it
    assert not sel.won_below_band(rate) and sel.quality_to_beat() == pytest.approx(51.0)
    assert not round_(250, 55.3, 0.1549, 0.0)  # above the band: off target
    assert not round_(350, 60.0, 0.0399, 10.0)  # below the band but worse: off target
    assert round_(700, 24.9, 0.0471, 145.0)  # below the band and better: it dominates
    assert sel.best_step == 700 and sel.won_below_band(rate)
    summary = rate.summary(sel.best_bpp, sel.won_below_band(rate))
    assert summary["selected_dominates"] and not summary["on_target"]
    fresh = Selection()  # the bookkeeping survives a checkpoint
    fresh.load({"bad_rounds": sel.bad_rounds, "best_value": sel.best_value,
                "best_step": sel.best_step, "best_bpp": sel.best_bpp,
                "best_quality": sel.best_quality})
    assert fresh == sel


def test_nothing_dominates_while_no_round_is_on_target():
    rate = RateController(0.06, 100.0, tolerance=0.1)
    sel = Selection()
    terms = {"loss": 60.0, "rate": 10.0, "bpp_total": 0.1}  # above the band
    sel.record(rate.selection_value(60.0, 0.1, quality(terms), sel.quality_to_beat()), 50,
               terms, rate, regular=True)
    assert math.isnan(sel.quality_to_beat())
    value = rate.selection_value(20.0, 0.03, 19.0, sel.quality_to_beat())  # below, better
    assert value > OFF_TARGET  # nothing on target to dominate: an ordinary off-target round


def test_a_base_below_the_band_never_dominates():
    # a base's target matches the compared bases: fewer bits is off target, however good
    rate = RateController(0.03, 1.0, tolerance=0.2)
    sel = Selection()
    on = {"loss": 3.0, "distortion": 2.0, "rate": 0.03, "bpp_base": 0.03}
    assert sel.record(rate_adjusted(3.0, on, rate, sel), 50, on, rate, regular=True)
    below = {"loss": 1.0, "distortion": 0.9, "rate": 0.013, "bpp_base": 0.013}
    assert rate_adjusted(1.0, below, rate, sel) > OFF_TARGET
    below_total = {**below, "bpp_total": 0.013}  # the same round of an enhancement: it wins
    assert rate_adjusted(1.0, below_total, rate, sel) == 1.0
