"""Presets as defaults plus differences: every experiment YAML names its parent and states what
differs; the resolved configs are the complete ones the presets always had."""

from __future__ import annotations

import pytest

from infra.config import ConfigError, read_yaml
from taskcodecs import train
from taskcodecs.experiments.table import (
    CONFIG_DIR,
    EXPERIMENTS,
    list_experiments,
    load_experiment,
    preset_chain,
    preset_values,
)


@pytest.mark.parametrize("name", list_experiments())
def test_every_preset_resolves_to_a_complete_config_of_its_own(name):
    values = preset_values(name)
    assert values["experiment"] == name
    assert read_yaml(EXPERIMENTS[name].config_path)["experiment"] == name  # stated, not inherited
    chain = preset_chain(name)
    assert chain[0] == name and len(set(chain)) == len(chain)
    assert all(EXPERIMENTS[p].preset == EXPERIMENTS[name].preset for p in chain)


def test_hand_checked_values_of_resolved_presets():
    """Values read off the full YAMLs before they were rewritten as differences."""
    proposed = preset_values("tiny-depth-base-proposed")
    assert (proposed["reward_weight"], proposed["rate_weight"]) == (0.1, 15.0)
    assert (proposed["lr"], proposed["max_steps"], proposed["rate_tolerance"]) == (3e-3, 250, 0.2)
    assert proposed["synthetic"] == {"train": 192, "val": 40, "height": 64, "width": 128,
                                     "seed": 0}
    # (the checkerboard context was added after the rewrite, on purpose: one rate, issue 20)
    assert proposed["model_overrides"] == {"half_resolution": False, "context": "checkerboard"}
    baseline = preset_values("tiny-depth-base-baseline")
    assert (baseline["reward_weight"], baseline["rate_weight"]) == (0.0, 0.5)
    assert {k for k in proposed if proposed[k] != baseline[k]} == {
        "experiment", "reward_weight", "rate_weight"}
    seg = preset_values("tiny-cityscapes-segmentation-direct")
    assert seg["model"] == "tiny-cityscapes-segmentation-direct"
    assert (seg["targets"], seg["max_steps"], seg["model_overrides"]) == (["labels"], 500, {})
    unc = preset_values("paper-depth-uncompressed")
    assert (unc["model"], unc["task"], unc["reward_weight"], unc["rate_weight"]) == (
        None, "depth", None, None)
    assert preset_chain("paper-cityscapes-segmentation-direct") == [
        "paper-cityscapes-segmentation-direct", "paper-cityscapes-segmentation-scalable",
        "paper-depth-base-baseline"]


def test_siblings_differ_in_a_few_lines():
    for name in list_experiments():
        own = read_yaml(EXPERIMENTS[name].config_path)
        if "parent" in own:
            assert len(own) <= 7, (name, sorted(own))
    pair = read_yaml(CONFIG_DIR / "paper-depth-base-proposed.yaml")
    assert pair == {"parent": "paper-depth-base-baseline", "experiment": "paper-depth-base-proposed",
                    "reward_weight": 0.1}


def test_a_yaml_of_ones_own_may_start_from_a_preset(tmp_path):
    mine = tmp_path / "mine.yaml"
    mine.write_text("parent: tiny-depth-base-proposed\nmax_steps: 7\n")
    cfg = load_experiment(mine, ["seed=3"])
    assert (cfg.experiment, cfg.max_steps, cfg.reward_weight, cfg.seed) == (
        "tiny-depth-base-proposed", 7, 0.1, 3)
    (tmp_path / "loop.yaml").write_text("parent: loop\n")
    with pytest.raises(ConfigError, match="loop.yaml: the chain of parents loops"):
        load_experiment(tmp_path / "loop.yaml")


def test_train_help_shows_a_presets_resolved_values(capsys):
    with pytest.raises(SystemExit):
        train.main(["--config", "tiny-depth-base-proposed", "--help"])
    text = capsys.readouterr().out
    assert "tiny-depth-base-proposed <- tiny-depth-base-baseline, resolved" in text
    assert "reward_weight" in text and "= 0.1" in text and "max_steps               int = 250" in text
