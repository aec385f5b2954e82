"""Grids of runs: plan and run a sweep (sweep), its points and plan (points), its results in
one sweep.nc (gather); as SLURM job arrays (launch; submitting one and waiting: job_array)."""
