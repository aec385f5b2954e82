"""Shared timing helpers for the benchmark scripts (``python benchmarks/<name>.py``).

Every script times competing implementations *side by side in one process*, interleaved run by
run (A, B, A, B, ...), so that a change in machine load hits both; it prints each run, the
medians, and ends with one ``ratio NAME=VALUE`` line per target (see :func:`print_ratio`).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any

import torch


def parser(description: str, runs: int = 5, quick_runs: int = 5) -> argparse.ArgumentParser:
    """The common command line: ``--quick`` (about a minute) and ``--runs``."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="a smaller, about one-minute version")
    p.add_argument("--runs", type=int, default=None,
                   help=f"timed runs of each contender (default {runs}; quick {quick_runs})")
    return p


def machine() -> str:
    """One line naming the machine and the torch threads the contenders start with."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        pass
    load = "n/a"
    if hasattr(os, "getloadavg"):
        load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{cpu}; {os.cpu_count()} CPUs; {gpu}; torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads; load average {load}")


def interleaved(
    contenders: Mapping[str, Callable[[], Any]], runs: int, warmup: int = 1,
    log: Callable[[str], None] = print,
) -> dict[str, list[float]]:
    """Seconds of each run of each contender, timed in turn (A, B, A, B, ...)."""
    for _ in range(warmup):
        for fn in contenders.values():
            fn()
    seconds: dict[str, list[float]] = {name: [] for name in contenders}
    for run in range(runs):
        for name, fn in contenders.items():
            start = time.perf_counter()
            fn()
            seconds[name].append(time.perf_counter() - start)
            log(f"run {run}: {name:<32} {seconds[name][-1]:9.4f} s")
    return seconds


def median(values: list[float]) -> float:
    return statistics.median(values)


def print_ratio(name: str, value: float) -> None:
    """The last lines of every benchmark: ``ratio NAME=VALUE`` (> 1: the target side wins)."""
    print(f"ratio {name}={value:.3f}")
