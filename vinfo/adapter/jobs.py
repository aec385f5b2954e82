"""The sweep's job launcher (local processes or SLURM job arrays through submitit) and its
``label=RUN_DIR`` parser, for V-information ladders run like sweeps."""

from taskcodecs.sweeps import launch
from taskcodecs.sweeps.sweep import parse_bases

__all__ = ["launch", "parse_bases"]
