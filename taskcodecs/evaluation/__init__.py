"""Evaluation: metrics with their units (metrics) and a run's eval.nc (evaluate)."""
