"""Probes: what a probe family is, below any fitting.

- :mod:`vinfo.probes.targets`: the likelihoods (categorical, gaussian, laplace, discretized)
  and their losses in nats;
- :mod:`vinfo.probes.autoregressive`: the causal cores of dense targets (the shared null);
- :mod:`vinfo.probes.families`: the family specs and registry (a core plus a Z pathway);
- :mod:`vinfo.probes.probe`: a family member (:class:`~vinfo.probes.probe.Probe`), its inputs
  and its held-out statistics.
"""
