"""The representation-complexity report: a V-information result Dataset → HTML + Markdown.

In:  an ``xarray.Dataset`` following the vinfo result schema (``vinfo.estimate``'s output:
     dims ``family``, ``seed``, ``sample``, ``train_size``, ``example``/``row``/``col``;
     every data variable carries a ``units`` attr; information is in bits).
Out: ``out_dir/report.html`` (self-contained: figures embedded as base64 PNG, inline CSS, no
     scripts, fonts or links, opens offline), ``out_dir/report.md`` and the same figures as
     PNG files in ``out_dir/figures/`` (linked by the Markdown). All written atomically.

Sections: 1 header, 2 per-family table (with flags), 3 information vs compatibility,
4 loss-data curves, 5 prequential MDL, 6 pointwise V-information, 7 how to read an interval.
A missing optional variable skips its part with a sentence saying it was not computed.

Unit rule for the "available" reference line: I_V is in bits per target unit, the
representation's rate (``attrs.representation_bpp``) in bits per ORIGINAL-image pixel. The
rate is converted to bits per target unit only when the attrs say how many pixels one sample
covers: ``rate = bpp × image_pixels / units_per_sample`` with ``units_per_sample =
target_pixels`` for ``unit == "pixel"`` and 1 for ``unit == "sample"`` (``image_pixels`` and
``target_pixels`` are per sample). Otherwise both numbers are shown with their own units and
no ratio of mismatched units is formed.

The schema checks and this unit rule live in :mod:`vinfo.report.schema`, sections 1 to 6 in
:mod:`vinfo.report.sections`, the figures in :mod:`vinfo.report.figures`, the HTML/Markdown
rendering in :mod:`infra.reportdoc`; this module puts the sections in order and writes them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import matplotlib.style
import xarray as xr

from infra.reportdoc import Details, Section, write_document
from vinfo.report.schema import validated
from vinfo.report.sections import (
    curves_section,
    family_section,
    header_section,
    information_section,
    mdl_section,
    pvi_section,
)

__all__ = ["FIGURE_NAMES", "short_title", "write_report"]

FIGURE_NAMES = (
    "information_by_family",
    "loss_data_curves",
    "mdl_codelength",
    "pvi_histogram",
    "pvi_maps",
)

INTERVAL_GUIDE = (
    "Each interval is a hierarchical bootstrap over the two sources of uncertainty: the "
    "refits are resampled, then the evaluation images (paired: the same resamples for the "
    "null, the conditional probe, the rate and every family). With one refit only the "
    "evaluation images are covered. The seed spread (std over refits) is shown separately. "
    "An interval that does not lie above 0 means no usable information was detected for that "
    "family (collapsed; the guarded estimate is then 0); the minimum detectable effect (MDE) "
    "says how small an effect it could have seen. Negative raw estimates (the conditional "
    "probe did worse than the null on held-out data) are reported as they are, not hidden or "
    "clipped. A probe that reached its step limit still improving is flagged: its family is "
    "under-trained, and a gap between rungs is a capacity effect only when every rung "
    "converged."
)


def write_report(ds: xr.Dataset, out_dir: str | Path, title: str | None = None) -> dict[str, Path]:
    """Write ``report.html``, ``report.md`` and ``figures/*.png`` for ``ds`` into ``out_dir``.

    Returns the written paths: ``"html"``, ``"markdown"`` and one entry per figure keyed by
    its name (a subset of :data:`FIGURE_NAMES`). Figures of an earlier report in the same
    folder that this Dataset does not produce are removed. Raises TypeError for a non-Dataset
    and ValueError (naming the variable) for a missing required variable, a variable without a
    ``units`` attr, information not in bits or with the wrong dimensions.
    """
    ds = validated(ds)
    title = title or short_title(ds)
    written_at = datetime.now(UTC).isoformat(timespec="seconds")
    with matplotlib.style.context("default"):
        sections = [
            header_section(ds, written_at),
            family_section(ds),
            information_section(ds),
            curves_section(ds),
            mdl_section(ds),
            pvi_section(ds),
            Section("7. How to read an interval", [INTERVAL_GUIDE]),
        ]
    provenance = Details("Provenance: what Z and Y are",
                         str(ds.attrs.get("source", "not recorded (no 'source' attr)")))
    return write_document(Path(out_dir), title, sections, figure_names=FIGURE_NAMES,
                          preamble=[provenance])


def short_title(ds: xr.Dataset) -> str:
    """The report's title: "V-information: discretized target, 3 families" (the long
    provenance string, ``attrs.source``, goes in a collapsed block under it)."""
    n = ds.sizes["family"]
    kind = ds.attrs.get("target_kind", "unknown")
    return f"V-information: {kind} target, {n} famil{'y' if n == 1 else 'ies'}"

