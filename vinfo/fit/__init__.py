"""Fitting probes: settings, splits, the fit loop and what builds on it.

- :mod:`vinfo.fit.settings`: :class:`~vinfo.fit.settings.FitSettings`, a family's budget;
- :mod:`vinfo.fit.splits`: the seeded splits (evaluation, fit, select, guard);
- :mod:`vinfo.fit.loop`: the training loop with a growing budget;
- :mod:`vinfo.fit.closed_forms`: the factorized Gaussian null and linear rung by least
  squares (:mod:`vinfo.fit.ridge`);
- :mod:`vinfo.fit.grouped`, :mod:`vinfo.fit.batched`: K probes of a family fitted as one network;
- :mod:`vinfo.fit.nested`: autoregressive rungs, the shared null plus a Z pathway;
- :mod:`vinfo.fit.nulls`: the null bank, one fitted null shared by every rung.
"""
