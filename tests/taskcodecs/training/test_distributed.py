"""torchrun DDP on gloo: two ranks train a tiny preset and end with identical weights."""

import csv
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from taskcodecs.runs.codecs import load_codec
from taskcodecs.runs.links import checkpoint_path
from taskcodecs.training import distributed as D
from taskcodecs.training.run import DEBUG_HASH_ENV, weights_sha256


def test_ranks_split_every_epoch_without_overlap():
    for n, batch, world in ((10, 2, 2), (9, 1, 3), (5, 4, 2)):
        steps = D.steps_per_epoch(n, batch, world)
        per_rank = [D.epoch_batches(n, batch, seed=7, epoch=3, rank=r, world_size=world)
                    for r in range(world)]
        assert all(len(b) == steps and all(len(x) == batch for x in b) for b in per_rank)
        for step in range(steps):
            together = [i for r in range(world) for i in per_rank[r][step]]
            if n >= batch * world:  # no repetition needed: the ranks see different images
                assert len(set(together)) == len(together)
            assert set(together) <= set(range(n))
        # the sampler the trainer uses gives a rank the same batch at a step
        position = steps - 1  # the last step of epoch 3
        sampler = D.StepBatchSampler(n, batch, 7, start_step=3 * steps + position,
                                     rank=world - 1, world_size=world)
        assert next(iter(sampler)) == [(3, i) for i in per_rank[world - 1][position]]


@pytest.mark.slow
def test_torchrun_two_ranks_gloo_end_identical(tmp_path):
    out, hashes = tmp_path / "run", tmp_path / "hashes"
    env = {**os.environ, DEBUG_HASH_ENV: str(hashes), "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "taskcodecs.train", "--config", "tiny-depth-base-proposed", f"out={out}",
        f"synthetic_cache={tmp_path / 'cache'}", "synthetic.train=4", "synthetic.val=2",
        "max_steps=3", "val_every=2", "log_every=1", "device=cpu",
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300,
                            cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    rank0, rank1 = ((hashes / f"rank{r}.sha256").read_text().strip() for r in (0, 1))
    assert rank0 == rank1, "the ranks ended with different weights"
    # checkpoints hold the unwrapped weights, equal to what the ranks trained
    last = checkpoint_path(out, "last")
    tensors = load_file(str(last.with_suffix(".safetensors")))
    assert not any(key.startswith("model.module.") for key in tensors)
    assert weights_sha256(load_codec(last)) == rank0
    rng = tensors["extra.rng_state"]
    assert rng.shape[0] == 2 and not torch.equal(rng[0], rng[1]), "one RNG state per rank"
    # rank 0 alone writes: one row per step, each computed over both ranks' batches
    with (out / "log.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["step"] for r in rows if r["phase"] == "train"] == ["1", "2", "3"]
    assert [r["step"] for r in rows if r["phase"] == "val"] == ["2", "3"]
    assert "2 process(es)" in (out / "train.log").read_text()
