"""torchrun DDP in a few lines, deterministic per-rank batches, and per-rank RNG state.

How a run is launched (``taskcodecs.training.run`` reads the torchrun environment itself):

    python -m taskcodecs.train --config NAME ...                       one process
    torchrun --standalone --nproc_per_node=K -m taskcodecs.train ...   one node, K processes
    torchrun --nnodes=N --nproc_per_node=K --node_rank=I \\
        --rdzv_backend=c10d --rdzv_endpoint=HOST:29500 --rdzv_id=JOB \\
        -m taskcodecs.train ...                                          N nodes (run on each)

The backend is NCCL when the device is CUDA (one GPU per process, ``cuda:LOCAL_RANK``) and
gloo on CPU. ``batch_size`` is per process: a step sees ``world_size x batch_size`` images.

Data order (:func:`epoch_batches`): the images of epoch ``e`` are a permutation drawn from
``numpy.random.default_rng([seed, e])``, cut into ``world_size x batch_size`` blocks (the
remainder is dropped; a dataset smaller than one block is repeated to fill it); rank ``r``
takes positions ``r, r + world_size, ...`` of every block. Step ``s`` is therefore a pure
function of (seed, s, rank, world size, dataset size), which is what makes resume exact:
nothing about the data order has to be stored but the step.

RNG state (:func:`rng_state` / :func:`set_rng_state`): torch (CPU, and the current CUDA
device), NumPy's global MT19937 and Python's ``random`` packed into one int64 tensor, so a
checkpoint stores it with the weights (safetensors, no pickle) and ranks can all-gather it.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from infra.seeding import check_seed


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: rank, world size and the device it trains on."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes files (run dir, logs, checkpoints)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(request: str, local_rank: int = 0) -> torch.device:
    """``auto`` → ``cuda:LOCAL_RANK`` if CUDA is available, else CPU; otherwise as given.
    A device that is not ``cpu``/``cuda``/``cuda:K`` or not on this machine is a ConfigError."""
    from infra.config import ConfigError

    asked = request
    if request == "auto":
        request = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(request)
    except (RuntimeError, TypeError):
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise ConfigError(f"device={asked!r}: expected auto, cpu, cuda or cuda:K")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device={asked!r}: CUDA is not available on this machine; use "
                              "device=cpu (or auto)")
        if device.index is None:
            device = torch.device("cuda", local_rank)
        if device.index >= torch.cuda.device_count():
            raise ConfigError(f"device={asked!r}: this machine has {torch.cuda.device_count()} "
                              f"CUDA device(s), cuda:0..cuda:{torch.cuda.device_count() - 1}")
        torch.cuda.set_device(device)
    return device


def setup(device_request: str = "auto") -> DistInfo:
    """Join the torchrun process group if ``WORLD_SIZE`` > 1; pick this process's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_request, local_rank)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, device_id=device if backend == "nccl" else None)
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


def all_reduce_sum(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum ``values`` (float64 on CPU) over ranks; the identity for one process."""
    if not info.distributed:
        return values
    on_device = values.to(info.device)
    dist.all_reduce(on_device, op=dist.ReduceOp.SUM)
    return on_device.cpu()


def all_gather(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Stack every rank's ``values`` (same shape everywhere) into (world_size, ...)."""
    if not info.distributed:
        return values.unsqueeze(0)
    on_device = values.to(info.device)
    gathered = [torch.empty_like(on_device) for _ in range(info.world_size)]
    dist.all_gather(gathered, on_device)
    return torch.stack([g.cpu() for g in gathered])


def broadcast_buffers(module: torch.nn.Module, info: DistInfo) -> None:
    """Rank 0's buffers (batch-norm statistics) on every rank. DDP does this at the start of
    each forward; the trainer also does it before validating and at the end, so every rank
    validates, and ends with, the same model."""
    if info.distributed:
        for buffer in module.buffers():
            dist.broadcast(buffer.data, src=0)


# --------------------------------------------------------------------------- data order


def steps_per_epoch(num_items: int, batch_size: int, world_size: int) -> int:
    """Optimizer steps in one epoch (the last incomplete block is dropped; at least 1)."""
    if num_items < 1:
        raise ValueError("the training set is empty")
    return max(1, num_items // (batch_size * world_size))


def epoch_batches(
    num_items: int, batch_size: int, seed: int, epoch: int, rank: int = 0, world_size: int = 1
) -> list[list[int]]:
    """The batches (lists of dataset indices) rank ``rank`` trains on in epoch ``epoch``."""
    check_seed(seed)
    block = batch_size * world_size
    steps = steps_per_epoch(num_items, batch_size, world_size)
    order = np.random.default_rng([seed, epoch]).permutation(num_items)
    order = np.resize(order, steps * block)  # repeats the permutation if it is too short
    mine = order.reshape(steps, block)[:, rank::world_size]
    return [[int(i) for i in row] for row in mine]


class StepBatchSampler(torch.utils.data.Sampler):
    """Yields ``[(epoch, index), ...]`` per step from ``start_step`` on, for ever.

    Each element carries its epoch so the dataset (wrapped in :class:`EpochIndexed`) draws
    its augmentation from (seed, epoch, index) in any worker process.
    """

    def __init__(self, num_items: int, batch_size: int, seed: int, start_step: int = 0,
                 rank: int = 0, world_size: int = 1) -> None:
        self.num_items, self.batch_size, self.seed = num_items, batch_size, seed
        self.start_step, self.rank, self.world_size = start_step, rank, world_size

    def __iter__(self):
        steps = steps_per_epoch(self.num_items, self.batch_size, self.world_size)
        epoch, position = divmod(self.start_step, steps)
        while True:
            batches = epoch_batches(self.num_items, self.batch_size, self.seed, epoch,
                                    self.rank, self.world_size)
            for batch in batches[position:]:
                yield [(epoch, index) for index in batch]
            epoch, position = epoch + 1, 0


class EpochIndexed(torch.utils.data.Dataset):
    """``dataset[(epoch, index)]`` = ``dataset.set_epoch(epoch); dataset[index]``."""

    def __init__(self, dataset: torch.utils.data.Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        epoch, index = key
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        return self.dataset[index]


# --------------------------------------------------------------------------- RNG state


def derived_seed(seed: int, *words: int) -> int:
    """A seed for a sub-stream (rank, purpose...) of ``seed``, in [0, 2**63)."""
    return int(np.random.SeedSequence([check_seed(seed), *words]).generate_state(1, np.uint64)[0]
               >> np.uint64(1))


def _float_bits(value: float) -> int:
    return int(np.array([value], dtype=np.float64).view(np.int64)[0])


def _bits_float(bits: int) -> float:
    return float(np.array([bits], dtype=np.int64).view(np.float64)[0])


def rng_state(device: torch.device | None = None) -> torch.Tensor:
    """torch, CUDA (if ``device`` is CUDA), NumPy and Python RNG states as one int64 tensor.

    Layout: [n_torch, torch bytes..., n_cuda, cuda bytes..., numpy pos, has_gauss,
    cached_gaussian bits, 624 numpy keys..., python version, has_gauss_next,
    gauss_next bits, 625 python words...].
    """
    torch_state = torch.get_rng_state().to(torch.int64)
    cuda_state = (torch.cuda.get_rng_state(device).to(torch.int64)
                  if device is not None and device.type == "cuda" else torch.zeros(0, dtype=torch.int64))
    name, keys, pos, has_gauss, cached = np.random.get_state()
    if name != "MT19937":
        raise RuntimeError(f"unexpected NumPy bit generator {name!r}")
    version, words, gauss_next = random.getstate()
    head = [len(torch_state)]
    middle = [len(cuda_state)]
    numpy_part = [int(pos), int(has_gauss), _float_bits(cached), *(int(k) for k in keys)]
    python_part = [int(version), int(gauss_next is not None),
                   _float_bits(gauss_next if gauss_next is not None else 0.0), *words]
    return torch.cat([
        torch.tensor(head, dtype=torch.int64), torch_state,
        torch.tensor(middle, dtype=torch.int64), cuda_state,
        torch.tensor(numpy_part + python_part, dtype=torch.int64),
    ])


def set_rng_state(state: torch.Tensor, device: torch.device | None = None) -> None:
    """Restore what :func:`rng_state` packed."""
    values = state.to(torch.int64).tolist()
    n_torch = values[0]
    torch.set_rng_state(torch.tensor(values[1 : 1 + n_torch], dtype=torch.uint8))
    rest = values[1 + n_torch :]
    n_cuda, rest = rest[0], rest[1:]
    if n_cuda and device is not None and device.type == "cuda":
        torch.cuda.set_rng_state(torch.tensor(rest[:n_cuda], dtype=torch.uint8), device)
    rest = rest[n_cuda:]
    pos, has_gauss, cached_bits = rest[:3]
    keys = np.array(rest[3 : 3 + 624], dtype=np.uint32)
    np.random.set_state(("MT19937", keys, pos, has_gauss, _bits_float(cached_bits)))
    rest = rest[3 + 624 :]
    version, has_next, next_bits = rest[:3]
    words = tuple(rest[3:])
    random.setstate((version, words, _bits_float(next_bits) if has_next else None))
