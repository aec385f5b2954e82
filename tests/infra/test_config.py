"""Typed configs (infra.config): YAML, overrides, type checks, parent chains."""

from dataclasses import dataclass, field
from typing import Literal

import pytest

from infra.config import (
    ConfigError,
    apply_overrides,
    config_to_dict,
    load_config,
    load_yaml,
    parse_overrides,
    read_yaml,
    save_config,
)


@dataclass
class Optim:
    lr: float = 1e-4
    clip: float | None = 1.0


@dataclass
class Cfg:
    name: str = "tiny"
    max_steps: int = 10
    rate_weight: float = 0.01
    flip: bool = True
    mode: Literal["ste", "noise"] = "ste"
    sizes: list[int] = field(default_factory=lambda: [1, 2])
    optim: Optim = field(default_factory=Optim)


def test_defaults_yaml_overrides_and_kwargs(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: paper\nmax_steps: 100\noptim:\n  lr: 0.001\n")
    cfg = load_config(Cfg, path, ["max_steps=5", "optim.clip=null", "sizes=[3,4]"], flip=False)
    assert cfg.name == "paper" and cfg.max_steps == 5 and cfg.flip is False
    assert cfg.optim.lr == 0.001 and cfg.optim.clip is None and cfg.sizes == [3, 4]
    # notebook style: nested mapping as a keyword argument
    cfg2 = load_config(Cfg, path, optim={"lr": 0.5})
    assert cfg2.optim.lr == 0.5 and cfg2.optim.clip == 1.0


def test_int_accepted_for_float_but_nothing_else_coerced():
    assert apply_overrides(Cfg(), rate_weight=1).rate_weight == 1.0
    assert isinstance(apply_overrides(Cfg(), rate_weight=1).rate_weight, float)
    with pytest.raises(ConfigError, match="max_steps: expected an integer, got 'ten'"):
        apply_overrides(Cfg(), ["max_steps=ten"])
    with pytest.raises(ConfigError, match="max_steps: expected an integer, got 1.5"):
        apply_overrides(Cfg(), max_steps=1.5)
    with pytest.raises(ConfigError, match="flip: expected true or false"):
        apply_overrides(Cfg(), ["flip=1"])
    with pytest.raises(ConfigError, match=r"mode: expected one of \['ste', 'noise'\]"):
        apply_overrides(Cfg(), mode="round")
    with pytest.raises(ConfigError, match=r"sizes\[1\]: expected an integer"):
        apply_overrides(Cfg(), sizes=[1, "x"])


def test_unknown_keys_are_named_with_the_valid_ones():
    with pytest.raises(ConfigError, match=r"unknown config key 'max_step'.*valid keys: .*max_steps"):
        apply_overrides(Cfg(), ["max_step=3"])
    with pytest.raises(ConfigError, match=r"unknown config key 'optim.beta'"):
        apply_overrides(Cfg(), ["optim.beta=3"])


def test_bad_files_are_named(tmp_path):
    with pytest.raises(ConfigError, match="missing.yaml: config file not found"):
        load_config(Cfg, tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_config(Cfg, bad)
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("max_steps: many\n")
    with pytest.raises(ConfigError, match="wrong.yaml: max_steps: expected an integer"):
        load_config(Cfg, wrong)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="list.yaml: expected a mapping"):
        load_config(Cfg, listy)


def test_override_syntax_errors():
    with pytest.raises(ConfigError, match="not of the form key=value"):
        parse_overrides(["max_steps"])
    assert parse_overrides(["a=1", "b=x=y", "c="]) == {"a": 1, "b": "x=y", "c": ""}


def test_save_and_reload_round_trip(tmp_path):
    cfg = apply_overrides(Cfg(), name="x", optim={"lr": 3e-4})
    save_config(cfg, tmp_path / "config.yaml")
    again = load_config(Cfg, tmp_path / "config.yaml")
    assert again == cfg
    assert config_to_dict(again)["optim"] == {"lr": 3e-4, "clip": 1.0}
    assert not list(tmp_path.glob(".*tmp"))


# -- parents: a YAML states only what differs from the file it names -------------------------


def test_a_parent_chain_resolves_nearest_last(tmp_path):
    (tmp_path / "a.yaml").write_text("name: a\nmax_steps: 100\noptim: {lr: 0.5, clip: 2.0}\n")
    (tmp_path / "b.yaml").write_text("parent: a\nmax_steps: 50\noptim: {lr: 0.1}\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.yaml").write_text("parent: ../b.yaml\nname: c\n")
    cfg = load_config(Cfg, tmp_path / "sub" / "c.yaml", ["flip=false"])
    assert (cfg.name, cfg.max_steps, cfg.flip) == ("c", 50, False)
    assert cfg.optim.lr == 0.1 and cfg.optim.clip == 2.0  # mappings merge key by key
    assert "parent" not in load_yaml(tmp_path / "sub" / "c.yaml")
    assert read_yaml(tmp_path / "sub" / "c.yaml") == {"parent": "../b.yaml", "name": "c"}


def test_a_parent_is_found_in_the_parent_dirs(tmp_path):
    (tmp_path / "presets").mkdir()
    (tmp_path / "presets" / "base.yaml").write_text("max_steps: 7\n")
    (tmp_path / "mine.yaml").write_text("parent: base\nname: mine\n")
    with pytest.raises(ConfigError, match="parent 'base' not found"):
        load_config(Cfg, tmp_path / "mine.yaml")
    cfg = load_config(Cfg, tmp_path / "mine.yaml", parent_dirs=[tmp_path / "presets"])
    assert (cfg.name, cfg.max_steps) == ("mine", 7)


def test_a_loop_of_parents_is_an_error_naming_the_files(tmp_path):
    (tmp_path / "a.yaml").write_text("parent: b\nmax_steps: 1\n")
    (tmp_path / "b.yaml").write_text("parent: c\n")
    (tmp_path / "c.yaml").write_text("parent: a\n")
    with pytest.raises(ConfigError, match=r"a\.yaml: the chain of parents loops: .*a\.yaml -> "
                                          r".*b\.yaml -> .*c\.yaml -> .*a\.yaml"):
        load_config(Cfg, tmp_path / "a.yaml")
    (tmp_path / "self.yaml").write_text("parent: self\n")
    with pytest.raises(ConfigError, match="self.yaml: the chain of parents loops"):
        load_config(Cfg, tmp_path / "self.yaml")


def test_a_missing_or_bad_parent_is_an_error_naming_the_file(tmp_path):
    (tmp_path / "orphan.yaml").write_text("parent: nowhere\nmax_steps: 1\n")
    with pytest.raises(ConfigError, match=r"orphan\.yaml: parent 'nowhere' not found "
                                          r"\(looked for .*nowhere\.yaml\)"):
        load_config(Cfg, tmp_path / "orphan.yaml")
    (tmp_path / "empty.yaml").write_text("parent: ''\n")
    with pytest.raises(ConfigError, match="empty.yaml: parent must name"):
        load_config(Cfg, tmp_path / "empty.yaml")
    (tmp_path / "broken.yaml").write_text("max_steps: [\n")
    (tmp_path / "child.yaml").write_text("parent: broken\n")
    with pytest.raises(ConfigError, match="broken.yaml: not valid YAML"):
        load_config(Cfg, tmp_path / "child.yaml")
