"""The demo's printed summary (taskcompat.demo_summary): the gap line and a ladder that
detected nothing (the whole summary: the quick demo test, tests/taskcompat/test_demo.py)."""

from __future__ import annotations

import xarray as xr


def test_the_gap_line_names_the_independent_reference():
    from taskcompat.demo_summary import _independent_text

    row = {"gain_standalone-independent_bpp": 0.0123, "usable_standalone-independent": 0.4,
           "source_standalone-independent": "CompressAI mbt2018-mean + base"}
    assert _independent_text(row) == ("; vs standalone-independent (CompressAI mbt2018-mean + "
                                      "base) 0.0123 bpp, usable fraction 0.4")
    assert _independent_text({"gain_standalone-independent_bpp": float("nan")}) == ""


def test_a_ladder_that_collapsed_everywhere_is_explained_not_reported_as_a_measured_zero():
    import numpy as np

    from taskcompat.demo_summary import _collapse_verdict

    def ladder(collapsed):
        return xr.Dataset({"collapsed": ("family", np.array(collapsed)),
                           "vinfo_mde": ("family", np.array([0.21, 0.34]))},
                          attrs={"n_samples": 240, "n_eval": 24})

    line, = _collapse_verdict(ladder([True, True]), 0.05, "bits/pixel")
    assert "not a measured zero" in line and "R(Ŷ_b) = 0.05 bits/pixel" in line
    # how small an effect it could have seen: the range of its rungs' MDEs, at its N (the
    # smallest alone can come from a member that never moved off the null: the demo's
    # proposed ar-mlp-64, MDE 0.0018 bits/pixel, trained I_V -0.0016)
    assert "0.21 to 0.34 bits/pixel" in line and "24 held-out images" in line
    assert "optimistic where its trained member hardly moved" in line
    assert _collapse_verdict(ladder([True, False]), 0.05, "bits/pixel") == []
