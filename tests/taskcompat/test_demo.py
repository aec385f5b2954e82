"""``make demo`` (taskcompat.demo): the whole pipeline at the smallest sizes, then a rerun
that reuses every stage; and the refusal of an output folder made with other settings."""

from __future__ import annotations

import dataclasses
import json
import logging
import re

import pytest
import xarray as xr

from analysis import load_runs
from taskcompat.demo import main
from taskcompat.demo_steps import (
    DemoError,
    DemoSettings,
    check_settings,
    make_data,
    train_compressai,
)


def test_an_output_folder_with_other_settings_is_refused(tmp_path, capsys):
    quick = DemoSettings.quick()
    check_settings(tmp_path, quick)  # nothing there yet: fine
    (tmp_path / "demo.json").write_text(json.dumps({"settings": DemoSettings().as_dict()}))
    with pytest.raises(DemoError, match=r"other settings \(differing: .*base_steps"):
        check_settings(tmp_path, quick)
    assert main(["--quick", "--out", str(tmp_path)]) == 2
    assert "choose another --out" in capsys.readouterr().err


def test_a_setting_added_after_a_demo_ran_counts_only_off_its_default(tmp_path):
    stored = DemoSettings().as_dict()
    del stored["segmentation"]  # as if the demo predates the setting
    (tmp_path / "demo.json").write_text(json.dumps({"settings": stored}))
    check_settings(tmp_path, DemoSettings())  # at its default: the same demo
    with pytest.raises(DemoError, match=r"differing: segmentation\)"):
        check_settings(tmp_path, DemoSettings(segmentation=True))


def test_defaults_cover_what_the_demo_promises():
    s = DemoSettings()
    assert len(s.base_rate_targets) >= 1 and len(s.recon_rate_targets) >= 4
    assert len(s.recon_initial_weights) == len(s.recon_rate_targets)
    assert s.reward_weight > 0 and s.standalone and s.seeds == (0,)
    assert "reconstruction" in s.vinfo_targets and len(s.vinfo_seeds) >= 2
    assert len(s.vinfo_families) >= 3 and s.val_images >= s.eval_images
    study = DemoSettings.study()  # make study: 3 seeds, more data, 4-5 points, segmentation
    assert len(study.seeds) == 3 and study.segmentation and study.train_images > s.train_images
    assert 4 <= len(study.recon_rate_targets) <= 5 and 4 <= len(study.seg_rate_targets) <= 5
    assert len(study.base_rate_targets) >= 2  # base curves, not only the matched point
    assert DemoSettings.quick().smoke_test and not s.smoke_test and not study.smoke_test
    # the CompressAI standalone-independent reference: the study only (demo time unchanged)
    assert study.compressai_reference == "mbt2018-mean"
    assert s.compressai_reference is None and DemoSettings.quick().compressai_reference is None
    with pytest.raises(ValueError, match="compressai_reference must be None or one of"):
        DemoSettings(compressai_reference="mbt2018")


def test_no_compressai_stage_without_a_reference(tmp_path):
    assert train_compressai(tmp_path, DemoSettings.quick(), tmp_path) == []
    assert not (tmp_path / "sweeps").exists()


@pytest.mark.slow
def test_the_compressai_stage_trains_rate_targeted_points_and_reruns_from_cache(tmp_path,
                                                                               caplog):
    s = dataclasses.replace(DemoSettings.quick(), compressai_reference="mbt2018-mean")
    root = make_data(tmp_path, s)
    points = train_compressai(tmp_path, s, root)
    assert [p.rate_target for p in points] == sorted(s.recon_rate_targets)  # the same targets
    assert points[1].init_from == points[0].run_dir  # warm-started like the reconstruction
    runs = load_runs(tmp_path / "sweeps")
    assert [r.role for r in runs] == ["standalone", "standalone"]
    assert {r.rate_target for r in runs} == set(s.recon_rate_targets)
    assert all(r.method == "mbt2018-mean" and r.bpp_total > r.bpp_payload_total > 0
               and r.n_images == s.eval_images for r in runs)  # real bitstreams, header on top
    assert (tmp_path / "sweeps" / "compressai-reconstruction" / "sweep.nc").is_file()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="taskcompat.demo"):
        train_compressai(tmp_path, s, root)
    assert sum("reused" in r.getMessage() for r in caplog.records) == 2


@pytest.mark.slow
def test_quick_demo_runs_every_stage_and_reruns_from_cache(tmp_path, capsys, caplog):
    out = tmp_path / "demo"
    assert main(["--quick", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    runs = sorted(out.glob("sweeps/*/runs/*/eval.nc"))
    assert len(runs) == 10  # 2 bases at the matched rate; 2 methods x 2 bases x 2 recon targets
    assert (out / "sweeps" / "depth-uncompressed" / "eval.nc").is_file()  # no-codec reference
    for label in ("baseline", "proposed"):
        for target in DemoSettings.quick().vinfo_targets:
            with xr.open_dataset(out / "vinfo" / label / target / "vinfo.nc") as ds:
                assert list(ds["family"].values) == ["ar-linear", "ar-mlp-16"]
                assert ds["vinfo"].attrs["units"] == "bits/pixel"
                assert ds.attrs["representation_bpp"] > 0
                # the capped I_V never exceeds the base's actual rate (the two-part code)
                assert float(ds["rate_per_unit"]) > 0
                assert (ds["vinfo_capped"] <= ds["rate_per_unit"] + 1e-9).all()
            assert (out / "vinfo" / label / target / "report.html").is_file()
    # the gap's probe side (issue 20 item 4): one point per base, in the report's gap section
    gap_files = sorted(out.glob("vinfo/*/latent_gap/*/latent_gap.nc"))
    assert [p.parts[-4] for p in gap_files] == ["baseline", "proposed"]
    with xr.open_dataset(gap_files[0], engine="h5netcdf") as ds:
        assert ds["vinfo"].attrs["units"] == "bits per pixel of the original H x W image"
        assert "target0.4" in ds.attrs["run_dir"] and ds.sizes["seed"] == 1
    page = (out / "report" / "report.html").read_text()
    assert "The gap, probe side (issue 20 item 4)" in page
    assert "operational gain (refit − scalable, bpp)" in page
    assert page.count("data:image/png;base64,") >= 3  # every figure embedded: opens offline
    assert f"Analysis report: {out / 'report' / 'report.html'}" in printed
    # the summary leads with the results table, every difference with its interval
    table = printed.split("== demo finished", 1)[1]
    assert table.splitlines()[3].startswith("Results: proposed (reward_weight=0.1) vs baseline")
    assert re.search(r"CS recon\.: scalable BD-rate, proposed vs baseline base \(%\) +\| 2 points"
                     r" +\| 2 points +\| [+-]\d", printed), printed
    assert "I_V(Ŷ_b → reconstruction), ar-linear" in printed and "Compared pairs" in printed
    # a smoke test: said first, and no verdict about the reward anywhere in the table
    assert table.splitlines()[1].startswith("SMOKE TEST of the pipeline (--quick)")
    assert "smoke test of the pipeline: no verdict" in printed
    assert not re.search(r"the reward (helps|costs)|yes: (saves|costs) rate|yes: proposed",
                         printed), printed
    assert re.search(r"Rate targeting: \d+ of 6 runs on target", printed)
    with xr.open_dataset(next(p for p in runs if "scalable" in str(p)), engine="h5netcdf") as ds:
        assert ds.attrs["rate_target_bpp"] > 0 and ds.attrs["rate_weight_final"] > 0
    assert "depth | uncompressed: the task model without a codec | no bitstream" in printed
    assert re.search(r"BD-rates .*\n(  .*: [+-]\d+\.\d\d% \(akima)", printed), printed
    assert re.search(r"Ŷ_b -> reconstruction, in bits/pixel", printed)
    assert re.search(r"proposed base: R\(Ŷ_b\) = \d\.\d+ bits/pixel", printed)
    assert re.search(r"ar-linear: H_V\(Y\|Ŷ_b\) \d+\.\d{3} \[\d+\.\d{3}, \d+\.\d{3}\]; I_V "
                     r"-?\d+\.\d{4} \[", printed)

    caplog.clear()
    assert main(["--quick", "--out", str(out)]) == 0  # everything cached
    messages = [r.getMessage() for r in caplog.records]
    assert sum("reused" in m for m in messages) == 10 + 1 + 2 * len(
        DemoSettings.quick().vinfo_targets) + 2  # + the gap's probe side, one point per base
    assert not any("trained and evaluated" in m or "estimated (" in m for m in messages)
