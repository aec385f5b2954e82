"""The experiment table: every config constructs, and every tiny preset trains a step."""

import dataclasses
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from infra.config import ConfigError
from infra.seeding import seed_everything
from taskcodecs.experiments.registry import list_models, model_config
from taskcodecs.experiments.table import (
    CONFIG_DIR,
    EXPERIMENTS,
    FAMILIES,
    get_experiment,
    list_experiments,
    load_experiment,
    sibling,
)
from taskcodecs.experiments.train_config import TrainConfig
from taskcodecs.runs.links import checkpoint_path, read_run
from taskcodecs.runs.run_model import build_model
from taskcodecs.training.run import resolve_config, train

SMALL = {"synthetic.train": 4, "synthetic.val": 2, "log_every": 1, "num_workers": 0}


def test_every_experiment_has_exactly_one_yaml():
    on_disk = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
    assert on_disk == list_experiments()
    assert len(list_experiments(preset="paper")) == len(list_experiments(preset="tiny"))
    assert set(list_experiments(role="reference")) == {
        f"{p}-{t}-uncompressed" for p in ("paper", "tiny") for t in ("depth", "detection", "segmentation")}


@pytest.mark.parametrize("name", list_experiments())
def test_every_config_constructs(name):
    cfg = load_experiment(name)
    exp = get_experiment(name)
    assert isinstance(cfg, TrainConfig) and cfg.experiment == name
    family = FAMILIES[exp.family]  # the family table agrees with the YAML files
    assert (exp.role, exp.base_family) == (family.role, family.base_family)
    assert exp.method in family.methods and cfg.dataset == family.dataset
    assert cfg.clip == 1.0
    if exp.preset == "paper":
        assert cfg.lr == 1e-4 and cfg.synthetic is None and cfg.max_steps >= 100_000
        assert cfg.dataset != "coco" or cfg.paper_filter
    else:
        assert cfg.synthetic is not None and cfg.synthetic.height == 64 and cfg.synthetic.width == 128
        assert cfg.num_workers == 0
        if cfg.dataset == "cityscapes":
            # the tiny recipe (benchmarks/RESULTS.md): batch 8, warm-up + cosine decay
            assert cfg.batch_size == 8 and cfg.lr_schedule == "cosine" and cfg.warmup_steps > 0
            assert cfg.lr in (3e-3, 4e-3)
        else:  # COCO tiny presets: not tuned (no demo or study preset measures them)
            assert cfg.batch_size <= 2 and cfg.lr == 1e-3
    if exp.role == "reference":
        assert cfg.model is None and cfg.task == exp.family and cfg.rate_weight is None
        return
    # the codec name and its overrides (loss weights included) are valid registry input
    assert cfg.model in list_models()
    weights = {k: getattr(cfg, k) for k in ("rate_weight", "reward_weight") if getattr(cfg, k) is not None}
    model_cfg = model_config(cfg.model, **cfg.model_overrides, **weights)
    assert model_cfg.rate_weight == cfg.rate_weight
    if exp.role == "base":
        assert (cfg.reward_weight == 0) == (exp.method == "baseline")
    elif exp.role == "standalone":  # a CompressAI zoo architecture, no base
        assert exp.base_family is None and cfg.reward_weight is None and cfg.base is None
        assert model_cfg.architecture == exp.method and "compressai" in cfg.model
    else:
        assert exp.base_family in ("depth-base", "detection-base") and cfg.reward_weight is None
        assert model_cfg.mode == exp.method
        assert model_cfg.base_model == f"{exp.preset}-{exp.base_family}"
    assert (cfg.dataset == "coco") == exp.family.startswith(("detection", "coco"))
    assert cfg.voc_only == (exp.family == "coco-reconstruction")


def test_lookup_errors_name_the_problem(tmp_path):
    with pytest.raises(ConfigError, match="unknown experiment 'tiny-depth-bass'.*tiny-depth-base-proposed"):
        load_experiment("tiny-depth-bass")
    with pytest.raises(ConfigError, match="unknown config key 'max_step'"):
        load_experiment("tiny-depth-base-proposed", ["max_step=3"])
    with pytest.raises(ConfigError, match="batch_size must be >= 1"):
        load_experiment("tiny-depth-base-proposed", batch_size=0)
    with pytest.raises(ConfigError, match="has no method 'proposed'"):
        sibling("tiny-cityscapes-segmentation-scalable", "proposed")
    assert sibling("paper-depth-base-baseline", "proposed") == "paper-depth-base-proposed"
    yaml = tmp_path / "mine.yaml"
    yaml.write_text("experiment: not-in-the-table\n")
    with pytest.raises(ConfigError, match="unknown experiment 'not-in-the-table'"):
        load_experiment(yaml)


# ------------------------------------------------------------------------ every tiny preset


class Runs:
    """Trains tiny runs on demand (one step each), each once per test module."""

    def __init__(self, root: Path) -> None:
        self.root, self.done = root, {}

    def get(self, name: str) -> Path:
        if name not in self.done:
            exp = get_experiment(name)
            overrides = {**SMALL, "synthetic_cache": str(self.root / "cache"),
                         "out": str(self.root / name), "max_steps": 1, "val_every": 1}
            if exp.role == "enhancement":
                overrides["base"] = str(self.get(f"tiny-{exp.base_family}-proposed"))
            if exp.method == "standalone-refit":
                overrides["init_from"] = str(self.get(sibling(name, "scalable")))
                del overrides["base"]  # taken from the scalable run
            self.done[name] = train(resolve_config(name, overrides))
        return self.done[name]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return Runs(tmp_path_factory.mktemp("tiny-presets"))


@pytest.mark.slow
@pytest.mark.parametrize("name", list_experiments(preset="tiny"))
def test_every_tiny_preset_trains(runs, name):
    run_dir = runs.get(name)
    cfg, exp = read_run(run_dir)
    last = checkpoint_path(run_dir, "last")
    saved = load_file(str(last.with_suffix(".safetensors")))
    weights = {k[len("model."):]: v for k, v in saved.items() if k.startswith("model.")}
    seed_everything(cfg.seed)
    fresh = build_model(cfg)  # the initial weights of the run (same seed)
    trainable = {n for n, p in fresh.named_parameters() if p.requires_grad}
    changed = {n for n, p in fresh.named_parameters() if not torch.equal(p, weights[n])}
    log_rows = (run_dir / "log.csv").read_text().splitlines()
    val = [row for row in log_rows if ",val," in row]
    assert len(val) == 1 and all(math.isfinite(float(x)) for x in val[0].split(",")[5:])
    if not trainable:  # direct reconstruction: the base's g_a, nothing to train
        assert name.endswith("reconstruction-direct") and not changed
        return
    assert ",train," in log_rows[1]
    assert changed and changed <= trainable, "one step changes trainable weights only"
    if exp.method == "standalone-refit":
        assert all(n.startswith("entropy_model.") for n in changed)
    assert EXPERIMENTS[name].config_path.is_file()


@pytest.mark.parametrize("name", ["rate_weight", "reward_weight"])
def test_a_loss_weight_has_one_way_in(name):
    """The top-level field reaches the loss; the same key under model_overrides is refused
    (it used to be silently overridden by the top-level field)."""
    with pytest.raises(ConfigError, match=rf"model_overrides.{name}: set the top-level {name}="):
        load_experiment("tiny-depth-base-proposed", [f"model_overrides.{name}=0.5"])
    cfg = load_experiment("tiny-depth-base-proposed", [f"{name}=0.5"])
    assert getattr(cfg, name) == 0.5


@pytest.mark.parametrize(("value", "message"), [(-0.1, "must be >= 0"), (math.inf, "must be a finite number")])
def test_a_loss_weight_has_one_validation_wherever_it_is_set(value, message):
    """The training config and the model configs run the same check (infra.config)."""
    cfg = load_experiment("tiny-depth-base-proposed")
    with pytest.raises(ConfigError, match=f"reward_weight {message}"):
        dataclasses.replace(cfg, reward_weight=value)  # runs TrainConfig's checks
    with pytest.raises(ConfigError, match=f"reward_weight {message}"):
        model_config("tiny-depth-base", reward_weight=value)
    with pytest.raises(ConfigError, match=f"rate_weight {message}"):
        model_config("tiny-cityscapes-reconstruction-scalable", rate_weight=value)
