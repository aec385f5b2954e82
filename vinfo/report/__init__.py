"""The V-information report: a result Dataset -> HTML + Markdown (``write_report``).

It reads a finished Dataset only and imports nothing else of vinfo:

- :mod:`vinfo.report.schema`: the result schema the report reads and the rate unit rule;
- :mod:`vinfo.report.figures`: the figures, as deterministic PNG bytes;
- :mod:`vinfo.report.sections`: sections 1 to 6 (tables, text, the figures placed);
- :mod:`vinfo.report.document`: their order and :func:`~vinfo.report.document.write_report`.

    from vinfo.report import write_report
    write_report(ds, "out")        # out/report.html, out/report.md, out/figures/*.png
"""

from __future__ import annotations

from infra.lazy import lazy_exports

__all__ = ["write_report"]

# Lazy: the schema helpers (``vinfo.report.schema``) stay importable without matplotlib.
__getattr__ = lazy_exports(__name__, {"write_report": "vinfo.report.document"})
