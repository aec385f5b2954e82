"""Sweeps: the plan of rate points, and a real (tiny) sweep gathered into sweep.nc."""

import numpy as np
import pytest
import xarray as xr

from infra.config import ConfigError
from taskcodecs.sweep import main
from taskcodecs.sweeps.sweep import commands, parse_bases, plan


def test_plan_of_a_base_family(tmp_path):
    points = plan("tiny-depth-base-proposed", [1e-3, 1e-2], [0.01, 0.1], ["proposed", "baseline"],
                  {}, tmp_path)
    keys = [(p.method, p.reward_weight, p.rate_weight) for p in points]
    assert keys == [("proposed", 0.01, 1e-3), ("proposed", 0.01, 1e-2), ("proposed", 0.1, 1e-3),
                    ("proposed", 0.1, 1e-2), ("baseline", 0.0, 1e-3), ("baseline", 0.0, 1e-2)]
    assert len({p.run_dir for p in points}) == 6
    assert [p.reward_weight for p in plan("tiny-depth-base-proposed", [1e-3], [], [], {}, tmp_path)] == [0.1]
    with pytest.raises(ConfigError, match="reward weights > 0"):
        plan("tiny-depth-base-proposed", [1e-3], [0.0], ["proposed"], {}, tmp_path)
    with pytest.raises(ConfigError, match="no rate to sweep"):
        plan("tiny-depth-uncompressed", [1e-3], [], [], {}, tmp_path)


def test_plan_of_an_enhancement_family(tmp_path):
    bases = {"b0": "runs/base0", "b1": "runs/base1"}
    points = plan("tiny-cityscapes-reconstruction-scalable", [1e-2, 3e-2], [],
                  ["standalone-refit", "direct", "scalable"], bases, tmp_path)
    assert [p.method for p in points][:4] == ["scalable"] * 4, "scalable runs before its refit"
    assert all(p.base_run == bases[p.base_label] for p in points), "every point names its base"
    direct = [p for p in points if p.method == "direct"]
    assert len(direct) == 2, "direct does not depend on the rate weight: once per base"
    refits = [p for p in points if p.method == "standalone-refit"]
    scalable_dirs = {(p.base_label, p.rate_weight): p.run_dir for p in points if p.method == "scalable"}
    assert all(p.init_from == scalable_dirs[(p.base_label, p.rate_weight)] for p in refits)
    line = commands(refits[0], {"max_steps": 5}, "val", 3)
    assert "--config tiny-cityscapes-reconstruction-standalone-refit" in line
    assert "base=runs/base0" in line and "init_from=" in line and "--limit 3" in line
    with pytest.raises(ConfigError, match="--bases label=RUN_DIR"):
        plan("tiny-cityscapes-reconstruction-scalable", [1e-2], [], [], {}, tmp_path)
    with pytest.raises(ConfigError, match="add scalable to --methods"):
        plan("tiny-cityscapes-reconstruction-scalable", [1e-2], [], ["standalone-refit"], bases, tmp_path)
    assert main(["--config", "tiny-depth-base-proposed", "--rate-weights", "1e-3", "--out",
                 str(tmp_path), "rate_weight=2"]) == 2


@pytest.mark.slow
def test_base_then_enhancement_sweep_gathers_sweep_nc(tmp_path, capsys):
    common = [f"synthetic_cache={tmp_path / 'cache'}", "synthetic.train=4", "synthetic.val=2",
              "max_steps=1", "val_every=1", "log_every=1"]
    assert main(["--config", "tiny-depth-base-proposed", "--methods", "baseline,proposed",
                 "--rate-weights", "1e-3,1e-2", "--reward-weights", "0.1", "--out",
                 str(tmp_path / "base"), "--eval-limit", "1", *common]) == 0
    ds = xr.open_dataset(tmp_path / "base" / "sweep.nc", engine="h5netcdf").load()
    assert dict(ds.sizes) == {"method": 2, "reward_weight": 2, "rate_weight": 2, "image": 1, "layer": 1}
    assert ds.bpp_actual.dims == ("method", "reward_weight", "rate_weight", "image", "layer")
    # "method" is also a keyword of .sel(): select it with a dict, .sel({"method": ...})
    ran = ds.bpp_actual.notnull().squeeze(["image", "layer"])
    assert ran.sel({"method": "baseline", "reward_weight": 0.0}).all()
    assert not ran.sel({"method": "baseline", "reward_weight": 0.1}).any()
    assert ran.sel({"method": "proposed", "reward_weight": 0.1}).all()
    assert ds.bpp_actual.attrs["units"] == "bits/pixel" and ds.psnr.attrs["units"] == "dB"
    assert (ds.run_dir.sel({"method": "baseline", "reward_weight": 0.1}) == "").all()

    base_runs = {m: str(ds.run_dir.sel({"method": m, "reward_weight": w, "rate_weight": 1e-3}).item())
                 for m, w in (("baseline", 0.0), ("proposed", 0.1))}
    assert main(["--config", "tiny-cityscapes-reconstruction-scalable", "--methods",
                 "scalable,standalone-refit,direct", "--rate-weights", "1e-2",
                 "--bases", ",".join(f"{k}={v}" for k, v in base_runs.items()),
                 "--out", str(tmp_path / "recon"), "--eval-limit", "1", *common]) == 0
    assert "points ->" in capsys.readouterr().out
    enh = xr.open_dataset(tmp_path / "recon" / "sweep.nc", engine="h5netcdf").load()
    assert dict(enh.sizes) == {"method": 3, "base": 2, "rate_weight": 1, "image": 1, "layer": 2}
    assert list(enh.base_run.sel(base=["baseline", "proposed"]).values) == list(base_runs.values())
    assert list(enh.base_reward_weight.sel(base=["baseline", "proposed"]).values) == [0.0, 0.1]
    total = enh.bpp_actual.sel(layer="enhancement")
    base_only = enh.bpp_actual.sel(layer="base")
    assert bool(np.all(total.sel({"method": "scalable"}) > base_only.sel({"method": "scalable"})))
    # direct decodes the target from the base alone: no enhancement bytes
    assert np.allclose(total.sel({"method": "direct"}), base_only.sel({"method": "direct"}))
    # a second run reuses every point (nothing retrained) and gives the same file
    assert main(["--config", "tiny-cityscapes-reconstruction-scalable", "--methods",
                 "scalable,standalone-refit,direct", "--rate-weights", "1e-2",
                 "--bases", ",".join(f"{k}={v}" for k, v in base_runs.items()),
                 "--out", str(tmp_path / "recon"), "--eval-limit", "1", *common]) == 0
    again = xr.open_dataset(tmp_path / "recon" / "sweep.nc", engine="h5netcdf").load()
    assert again.identical(enh)


def test_plan_with_rate_targets_and_warm_start(tmp_path):
    bases = {"b": "runs/base"}
    points = plan("tiny-cityscapes-reconstruction-scalable", [], [],
                  ["scalable", "standalone-refit"], bases, tmp_path,
                  rate_targets=[0.1, 0.4, 0.2], warm_start=50)
    scalable = [p for p in points if p.method == "scalable"]
    # the chain runs from the lowest rate up, each point from the previous one's weights
    assert [p.rate_target for p in scalable] == [0.1, 0.2, 0.4]
    assert scalable[0].init_from is None and scalable[0].steps is None
    assert [p.init_from for p in scalable[1:]] == [p.run_dir for p in scalable[:-1]]
    assert all(p.steps == 50 and p.inherits_weight for p in scalable[1:])
    assert scalable[0].run_dir.endswith("tiny-cityscapes-reconstruction-scalable-b-target0.1")
    refit = next(p for p in points if p.method == "standalone-refit" and p.rate_target == 0.2)
    assert refit.init_from == scalable[1].run_dir and refit.steps == 50 and refit.inherits_weight
    # a targeted refit is not targeted itself: it trains at its scalable point's final weight
    line = commands(refit, {}, "val", None)
    assert "rate_target_bpp" not in line and "rate_weight=$(python -m taskcodecs.training.rate_control " in line
    assert "rate_target_bpp=0.2" in commands(scalable[1], {}, "val", None)
    # one initial weight per target: the warm-started points keep their own
    own = plan("tiny-depth-base-proposed", [5.0, 1.0], [0.1], ["proposed"], {}, tmp_path,
               rate_targets=[0.05, 0.1], warm_start=10)
    assert [(p.rate_target, p.rate_weight, p.inherits_weight) for p in own] == [
        (0.05, 5.0, False), (0.1, 1.0, False)]
    assert own[1].init_from == own[0].run_dir
    with pytest.raises(ConfigError, match="one value, or one per target"):
        plan("tiny-depth-base-proposed", [1.0, 2.0], [], [], {}, tmp_path,
             rate_targets=[0.1, 0.2, 0.3])
    with pytest.raises(ConfigError, match="--warm-start"):
        plan("tiny-depth-base-proposed", [1.0], [], [], {}, tmp_path, rate_targets=[0.1],
             warm_start=0)
    assert main(["--config", "tiny-depth-base-proposed", "--rate-targets", "0.1", "--out",
                 str(tmp_path), "rate_target_bpp=0.2"]) == 2


@pytest.mark.parametrize("label", ["../../x", "a/b", "..", ".hidden", "-x", "a b", "x" * 65])
def test_unsafe_base_labels_are_refused(tmp_path, capsys, label):
    """Issue 22 (d): a --bases label becomes part of a run path; only safe names pass."""
    out = tmp_path / "sweep"
    assert main(["--config", "tiny-cityscapes-reconstruction-scalable", "--rate-weights", "1",
                 f"--bases={label}={tmp_path / 'base'}", "--out", str(out), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not a safe folder name" in err, err
    assert not out.exists() and not (tmp_path / "x").exists()
    parse_bases("proposed-0.1=runs/a,base_2=runs/b", {})  # ordinary labels pass
