"""Grids of runs: plan, run and gather a sweep (sweep); as SLURM job arrays (launch)."""
