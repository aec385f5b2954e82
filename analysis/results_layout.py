"""What the results table holds and how it prints: its rows, its compared pairs of curves, its
notes and conclusions; as report tables (:mod:`infra.reportdoc`) and as aligned text.

    table.report_table()      # the report's first section (a Table)
    table.pairs_table()       # the compared pairs: points, monotone, span, overlap, BD, health
    table.text_lines()        # the demo's summary: the rows, the pairs, the verdicts

The table is built by :func:`analysis.results_table.results_table`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from analysis.uncertainty import Estimate
from infra.reportdoc import Table


@dataclass
class Row:
    quantity: str
    unit: str
    baseline: str
    proposed: str
    difference: Estimate | None
    verdict: str


@dataclass
class Pair:
    """One compared pair of curves (per seed: points, monotone; pooled: overlap, BD)."""

    name: str
    reference: str
    test: str
    points: tuple[int, int]
    monotone: tuple[bool, bool]
    overlap: float  # fraction of the union of both quality ranges (seed 0's curves)
    span: tuple[float, float]  # quality span of each curve (display units)
    bd: Estimate | None
    note: str = ""
    health: str = ""  # "healthy" or the failed checks (Health.text); "" where not checked


@dataclass
class ResultsTable:
    title: str
    rows: list[Row] = field(default_factory=list)
    pairs: list[Pair] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    conclusions: list[str] = field(default_factory=list)
    # (target name or "base rate", base variant) -> estimate in bits/pixel (the gap figure)
    gains: dict[tuple[str, str], Estimate] = field(default_factory=dict)

    def report_table(self) -> Table:
        return Table(["quantity", "unit", "baseline", "proposed", "proposed − baseline",
                      "distinguishable from zero?"],
                     [[r.quantity, r.unit, r.baseline, r.proposed,
                       r.difference.text(sign=True) if r.difference else "–", r.verdict]
                      for r in self.rows])

    def pairs_table(self) -> Table:
        return Table(["compared pair", "points (ref, test)", "monotone (ref, test)",
                      "quality span (ref, test)", "overlap", "BD-rate (%) [interval]",
                      "health"],
                     [[p.name, f"{p.points[0]}, {p.points[1]}",
                       ", ".join("yes" if m else "NO" for m in p.monotone),
                       f"{p.span[0]:.3g}, {p.span[1]:.3g}", f"{100 * p.overlap:.0f}%",
                       (p.bd.text(sign=True) if p.bd else "not computed") + (
                           f" ({p.note})" if p.note else ""), p.health or "–"]
                      for p in self.pairs])

    def text_lines(self) -> list[str]:
        """The table as aligned text (the demo's summary), then the pairs, then the verdicts."""
        body = [[r.quantity + (f" ({r.unit})" if r.unit else ""), r.baseline, r.proposed,
                 r.difference.text(sign=True) if r.difference else "–", r.verdict]
                for r in self.rows]
        header = ["quantity", "baseline", "proposed", "proposed − baseline", "difference"]
        width = [max(len(row[j]) for row in [header, *body]) for j in range(4)]
        lines = [self.title]
        for row in [header, *body]:
            lines.append("  " + " | ".join(cell.ljust(width[j]) if j < 4 else cell
                                           for j, cell in enumerate(row)))
        lines += ["", "Compared pairs (points per curve, monotone, overlap, BD-rate [interval]):"]
        for p in self.pairs:
            lines.append(f"  {p.name}: {p.points[0]} vs {p.points[1]} points, monotone "
                         f"{'/'.join('yes' if m else 'NO' for m in p.monotone)}, overlap "
                         f"{100 * p.overlap:.0f}%, BD-rate "
                         + (p.bd.text(sign=True) + " %" if p.bd else "not computed")
                         + (f" ({p.note})" if p.note else "")
                         + (f"; health: {p.health}" if p.health else ""))
        lines += ["", *self.notes, *self.conclusions]
        return lines
