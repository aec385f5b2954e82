"""Exact resume: a run stopped and resumed ends bit-identical to an uninterrupted one."""

import csv
import random

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from infra.config import ConfigError
from taskcodecs.runs.checkpoint import read_metadata
from taskcodecs.runs.links import checkpoint_path
from taskcodecs.training import distributed as D
from taskcodecs.training.run import resolve_config, train

SMALL = {"synthetic.train": 4, "synthetic.val": 2, "log_every": 1, "num_workers": 0}


def _tensors(run_dir):
    return load_file(str(checkpoint_path(run_dir, "last").with_suffix(".safetensors")))


def _log(run_dir):
    with (run_dir / "log.csv").open(newline="") as handle:
        return [{k: v for k, v in row.items() if k != "elapsed_s"} for row in csv.DictReader(handle)]


@pytest.mark.slow
def test_stopped_and_resumed_run_equals_uninterrupted_run(tmp_path):
    # The detection base draws RPN/ROI samples from torch's RNG and the data is augmented
    # (flips): equal weights need the RNG state and the data order restored exactly.
    # 4 training images, batch 2: the resume at step 2 also crosses an epoch boundary.
    name, k = "tiny-detection-base-proposed", 2
    common = {**SMALL, "synthetic_cache": str(tmp_path / "cache"), "val_every": 2}
    a, b = tmp_path / "A", tmp_path / "B"
    train(resolve_config(name, {**common, "out": str(a), "max_steps": 2 * k}))
    train(resolve_config(name, {**common, "out": str(b), "max_steps": k}))
    assert read_metadata(checkpoint_path(b, "last"))["step"] == k
    train(resolve_config(None, {"resume": str(b), "max_steps": 2 * k}))

    ta, tb = _tensors(a), _tensors(b)
    assert sorted(ta) == sorted(tb)
    assert any(key.startswith("optimizer.adam.") for key in ta)
    different = [key for key in ta if not torch.equal(ta[key], tb[key])]
    assert different == [], f"differ after resume: {different[:5]}"
    assert _log(a) == _log(b)  # the same rows, the resumed run's CSV continued in place
    meta = read_metadata(checkpoint_path(b, "last"))
    assert meta["step"] == 2 * k and meta["config"]["max_steps"] == 2 * k
    assert meta["trainer"]["world_size"] == 1 and meta["config"]["resume"] == str(b)
    # resuming a finished run does nothing; a resume must stay in its own directory
    train(resolve_config(None, {"resume": str(b), "max_steps": 2 * k}))
    assert all(torch.equal(tb[key], v) for key, v in _tensors(b).items())
    with pytest.raises(ConfigError, match="continues in its own directory"):
        resolve_config(None, {"resume": str(b), "out": str(tmp_path / "elsewhere")})


def test_rng_state_round_trips():
    torch.manual_seed(3)
    np.random.seed(4)
    random.seed(5)
    np.random.standard_normal()  # leaves a cached Gaussian in NumPy's state
    random.gauss(0, 1)  # and in Python's
    state = D.rng_state()
    first = (torch.rand(4), np.random.standard_normal(3), random.gauss(0, 1), random.random())
    torch.manual_seed(99)
    np.random.seed(99)
    random.seed(99)
    D.set_rng_state(state)
    second = (torch.rand(4), np.random.standard_normal(3), random.gauss(0, 1), random.random())
    assert torch.equal(first[0], second[0]) and np.array_equal(first[1], second[1])
    assert first[2:] == second[2:]
    assert state.dtype == torch.int64 and state.dim() == 1


def test_data_order_is_a_function_of_seed_and_step():
    n, batch = 7, 2
    steps = D.steps_per_epoch(n, batch, 1)
    assert steps == 3  # 7 // 2, the incomplete last batch dropped
    sampler = D.StepBatchSampler(n, batch, seed=0, start_step=0)
    stream = [next(it) for it in [iter(sampler)] for _ in range(8)]
    assert stream[:3] != stream[3:6], "each epoch is a new permutation"
    for start in (0, 2, 3, 5):
        resumed = iter(D.StepBatchSampler(n, batch, seed=0, start_step=start))
        assert [next(resumed) for _ in range(8 - start)] == stream[start:]
        epoch, position = divmod(start, steps)
        indices = D.epoch_batches(n, batch, seed=0, epoch=epoch)[position]
        assert stream[start] == [(epoch, i) for i in indices]
    epoch0 = [i for batch_ in D.epoch_batches(n, batch, seed=0, epoch=0) for i in batch_]
    assert len(set(epoch0)) == 6 and set(epoch0) <= set(range(n))
    assert D.epoch_batches(n, batch, seed=1, epoch=0) != D.epoch_batches(n, batch, seed=0, epoch=0)
    # a dataset smaller than one batch is repeated to fill it
    (only_batch,) = D.epoch_batches(3, 4, seed=0, epoch=0)
    assert len(only_batch) == 4 and set(only_batch) == {0, 1, 2}
