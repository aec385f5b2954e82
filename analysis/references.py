"""The standalone references the conditional coding gain is measured against, per base.

    ref = standalone_reference(runs, "reconstruction", "cityscapes", "baseline",
                               "standalone-independent")
    ref.curve, ref.source, ref.why_not     # Curve | None, "CompressAI mbt2018-mean + base", ""

A scalable system sends the base layer and an enhancement coded *given* the base; its
standalone reference codes the target without the base (DESIGN §3, "Standalone"), and the
base is sent beside it, so every reference point sits at base + reference rate. Flavours:

- ``standalone-refit``: our runs of that name on that base (the conditional enhancement with
  its side input zeroed and only the entropy model refitted); their eval.nc already counts the
  base layer (cumulative rates).
- ``standalone-independent``: our ``*-standalone-independent`` runs on that base where they
  exist (preferred: the same architecture as the scalable codec, so the gain isolates the side
  information). Otherwise, for the reconstruction target, a CompressAI zoo codec trained on the
  same dataset (experiments ``*-compressai-reconstruction-*``; ``mbt2018-mean`` preferred,
  the stronger of the two, so the tighter reference). A system that sends the base layer plus
  an independent CompressAI stream pays R(base) + R(CompressAI): the reference curve is the
  CompressAI curve (quality vs its actual bpp) shifted right by the base's *actual* total rate
  (mean ``bpp_actual``, container header included, as in the scalable totals) of the base runs
  the scalable runs sit on (:func:`base_runs`). The shift is the same for every point, so the
  CompressAI curve's shape is kept.

``source`` names which one was used (shown in the gap table, the BD-rate table, the figure
legend and the demo's summary); ``why_not`` says why there is none.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from analysis.runs import COMPRESSAI_METHODS, Curve, Run, curve, select

COMPRESSAI_PREFERENCE = ("mbt2018-mean", "bmshj2018-hyperprior")  # first found is used
OWN_SOURCE = {"standalone-refit": "standalone-refit runs (side input zeroed, entropy model "
                                  "refitted)",
              "standalone-independent": "standalone-independent runs (our codec, side input "
                                        "zeroed, trained alone)"}


@dataclass(frozen=True)
class Reference:
    """A standalone reference curve of one base (rates: base + reference, bpp actual)."""

    curve: Curve | None
    source: str = ""  # what the curve is, in words ("" when there is none)
    why_not: str = ""  # why there is no curve ("" when there is one)
    base_shift_bpp: float = float("nan")  # the base rate added to a CompressAI curve


def base_runs(runs: list[Run], task: str, dataset: str, variant: str) -> tuple[list[Run], bool]:
    """The base runs that ``task`` runs on ``variant`` bases sit on, and whether they were
    found through those runs' links (else: every base run of that variant and dataset)."""
    enhancements = [r for r in select(runs, task=task, dataset=dataset, base_variant=variant)
                    if r.base is not None]
    bases = {r.base.name: r.base for r in enhancements} or {
        r.name: r for r in runs if r.role == "base" and r.dataset == dataset
        and r.base_variant == variant}
    return list(bases.values()), bool(enhancements)


def standalone_reference(runs: list[Run], task: str, dataset: str, variant: str,
                         flavour: str) -> Reference:
    """The ``flavour`` reference of ``task`` on the ``variant`` base (module docstring)."""
    own = curve(runs, task=task, method=flavour, dataset=dataset, base_variant=variant)
    if own is not None:
        return Reference(own, OWN_SOURCE.get(flavour, f"{flavour} runs"))
    why = f"no {flavour} runs"
    if flavour != "standalone-independent" or task != "reconstruction":
        return Reference(None, why_not=why)
    for arch in (*COMPRESSAI_PREFERENCE, *sorted(set(COMPRESSAI_METHODS)
                                                 - set(COMPRESSAI_PREFERENCE))):
        found = curve(runs, task=task, method=arch, dataset=dataset)
        if found is None:
            continue
        rates = np.array([b.bpp_total for b in base_runs(runs, task, dataset, variant)[0]])
        rates = rates[np.isfinite(rates)]
        if rates.size == 0:
            return Reference(None, why_not=f"{why}, and no {variant} base run whose actual "
                                           f"rate could be added to the CompressAI {arch} curve")
        shift = float(rates.mean())
        source = f"CompressAI {arch} + base"
        shifted = replace(found, rate=found.rate + shift, base_variant=variant,
                          label=f"CompressAI {arch} + {variant} base")
        return Reference(shifted, source, base_shift_bpp=shift)
    return Reference(None, why_not=f"{why} and no CompressAI reconstruction runs on {dataset}")
