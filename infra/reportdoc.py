"""A tiny document model and its two renderings: self-contained HTML and Markdown.

    sections = [Section("1. Results", ["A paragraph.", Table(["name", "bpp"], [["a", "0.25"]]),
                                       Image("rd", figure_png(fig), "Rate vs quality.")])]
    paths = write_document(out_dir, "My report", sections)   # report.html, report.md, figures/

In:  a title and a list of :class:`Section`; a section holds blocks, each a paragraph
     (``str``), a :class:`Table`, a :class:`Bullets` list, a :class:`Details` note (collapsed
     in HTML) or an :class:`Image` (PNG bytes). ``preamble`` blocks go between the title and
     the first section (e.g. the provenance of a short title).
Out: :func:`to_html` — one HTML page that opens offline: inline CSS, images embedded as
     ``data:image/png;base64`` URIs, no scripts, fonts or links. :func:`to_markdown` — the
     same content with images linked as ``figures/<name>.png``. Tables sit in a
     ``div.table-wrap`` that scrolls sideways when a table is wider than the page; header and
     text cells wrap (:data:`TABLE_CSS`, part of :data:`CSS`; a replacement stylesheet should
     include it). :func:`write_document` writes
     both plus the PNGs, every file atomically (:mod:`infra.io`).

All text is escaped for its target (``<&>"`` in HTML, ``|`` in Markdown table cells, ``[]``
in Markdown image alt text), so table cells and captions may hold any characters.
"""

from __future__ import annotations

import base64
import html
import io
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from matplotlib.figure import Figure

from infra.io import atomic_write_bytes, atomic_write_text

__all__ = [
    "CSS",
    "TABLE_CSS",
    "Bullets",
    "Details",
    "Image",
    "Section",
    "Table",
    "figure_png",
    "to_html",
    "to_markdown",
    "write_document",
]

FIGURE_DPI = 100
_FIGURE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_RESERVED_KEYS = ("html", "markdown")

# Tables fit the page: a wide one scrolls inside its own container instead of running past
# the page; headers and text cells wrap (long tokens too), numbers stay on one line.
TABLE_CSS = """
.table-wrap { max-width: 100%; overflow-x: auto; margin: .8rem 0; }
.table-wrap table { margin: 0; }
td.text { overflow-wrap: break-word; }
details { margin: .6rem 0; } details > p { margin: .4rem 0 0 1rem; color: #444; }
"""

# Numbers right-aligned (tabular figures); columns listed in Table.left_columns get class="text".
CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
       max-width: 72rem; margin: 2rem auto; padding: 0 1rem; color: #222; line-height: 1.45; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.25rem; margin-top: 2.2rem;
     border-bottom: 1px solid #ddd; padding-bottom: .2rem; }
table { border-collapse: collapse; margin: .8rem 0; font-size: .9rem; }
th, td { border: 1px solid #ccc; padding: .25rem .55rem; text-align: right; }
th { background: #f3f3f3; } td.text, th.text { text-align: left; }
td { font-variant-numeric: tabular-nums; }
figure { margin: 1rem 0; } figure img { max-width: 100%; }
figcaption { font-size: .85rem; color: #555; }
""" + TABLE_CSS


@dataclass(frozen=True)
class Table:
    """A table of text cells.

    ``left_columns``: indices of text columns. With a tuple, those cells get ``class="text"``
    in HTML (left-aligned by :data:`CSS`, the others right-aligned) and the Markdown
    separator row aligns them left (``:---``) and the rest right (``---:``). ``None`` (the
    default) adds no alignment at all: the stylesheet decides, Markdown uses ``---``.
    """

    header: list[str]
    rows: list[list[str]]
    left_columns: tuple[int, ...] | None = None
    # (row, column) -> tooltip text of that body cell (HTML ``title``; Markdown has none)
    titles: dict[tuple[int, int], str] | None = None


@dataclass(frozen=True)
class Image:
    """A PNG figure: ``name`` is its file stem (``figures/<name>.png``) and HTML id.

    The alt text is ``title``, or ``caption`` when there is no title. The caption is shown
    under the image (HTML ``figcaption``); Markdown prints it as a line below the image only
    when it differs from the alt text.
    """

    name: str
    png: bytes
    caption: str
    title: str = ""

    @property
    def alt(self) -> str:
        return self.title or self.caption


@dataclass(frozen=True)
class Bullets:
    """An unordered list of text items."""

    items: list[str]
    collapsed: str | None = None  # HTML: a <details> element with this summary line


@dataclass(frozen=True)
class Details:
    """A note behind a summary line: HTML ``<details>`` (collapsed), Markdown the summary in
    bold followed by the text as a plain paragraph."""

    summary: str
    text: str


Block = str | Table | Image | Bullets | Details


@dataclass
class Section:
    """A titled part of the document (an ``h2``); blocks render in order."""

    title: str
    blocks: list[Block] = field(default_factory=list)


def figure_png(fig: Figure) -> bytes:
    """``fig`` as PNG bytes at a fixed dpi and without the 'Software' text chunk.

    Matplotlib writes no timestamp into a PNG, so equal figures give equal bytes.
    """
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=FIGURE_DPI, metadata={"Software": None})
    return buffer.getvalue()


def to_html(title: str, sections: Sequence[Section], css: str | None = None,
            preamble: Sequence[Block] = ()) -> str:
    """One self-contained HTML page; ``css`` replaces the default stylesheet :data:`CSS`;
    ``preamble`` blocks come right after the ``<h1>`` title."""
    esc = html.escape
    parts = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
             f"<title>{esc(title)}</title>", f"<style>{CSS if css is None else css}</style>",
             "</head>", "<body>", f"<h1>{esc(title)}</h1>"]
    parts += [_html_block(block, None) for block in preamble]
    for section in sections:
        parts.append(f"<h2>{esc(section.title)}</h2>")
        parts += [_html_block(block, section) for block in section.blocks]
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)


def _html_block(block: Block, section: Section | None) -> str:
    esc = html.escape
    if isinstance(block, Table):
        titles = block.titles or {}
        return "\n".join(['<div class="table-wrap"><table>',
                          _html_row("th", block.header, block.left_columns),
                          *(_html_row("td", row, block.left_columns,
                                      {j: t for (r, j), t in titles.items() if r == i})
                            for i, row in enumerate(block.rows)),
                          "</table></div>"])
    if isinstance(block, Bullets):
        items = "<ul>" + "".join(f"<li>{esc(i)}</li>" for i in block.items) + "</ul>"
        if block.collapsed:
            items = f"<details><summary>{esc(block.collapsed)}</summary>{items}</details>"
        return items
    if isinstance(block, Details):
        return (f"<details><summary>{esc(block.summary)}</summary><p>{esc(block.text)}</p>"
                "</details>")
    if isinstance(block, Image):
        data = base64.b64encode(block.png).decode("ascii")
        return (f'<figure id="{esc(block.name)}"><img src="data:image/png;base64,'
                f'{data}" alt="{esc(block.alt)}"><figcaption>'
                f"{esc(block.caption)}</figcaption></figure>")
    if isinstance(block, str):
        return f"<p>{esc(block)}</p>"
    raise TypeError(_block_error(block, section))


def to_markdown(title: str, sections: Sequence[Section], preamble: Sequence[Block] = ()) -> str:
    """The document as Markdown; images link to ``figures/<name>.png`` next to the file."""
    parts = [f"# {title}", ""]
    for block in preamble:
        parts += _md_block(block, None)
    for section in sections:
        parts += [f"## {section.title}", ""]
        for block in section.blocks:
            parts += _md_block(block, section)
    return "\n".join(parts)


def _md_block(block: Block, section: Section | None) -> list[str]:
    if isinstance(block, Table):
        if block.left_columns is None:
            align = ["---"] * len(block.header)
        else:
            align = [":---" if j in block.left_columns else "---:"
                     for j in range(len(block.header))]
        return [_md_row(block.header), _md_row(align), *map(_md_row, block.rows), ""]
    if isinstance(block, Bullets):
        return [*([block.collapsed, ""] if block.collapsed else []),
                *(f"- {item}" for item in block.items), ""]
    if isinstance(block, Details):
        return [f"**{block.summary}**", "", block.text, ""]
    if isinstance(block, Image):
        alt = block.alt.replace("[", "\\[").replace("]", "\\]")
        lines = [f"![{alt}](figures/{block.name}.png)", ""]
        return lines + ([block.caption, ""] if block.caption != block.alt else [])
    if isinstance(block, str):
        return [block, ""]
    raise TypeError(_block_error(block, section))


def write_document(out_dir: str | Path, title: str, sections: Sequence[Section],
                   css: str | None = None, figure_names: Iterable[str] = (),
                   preamble: Sequence[Block] = ()) -> dict[str, Path]:
    """Write ``report.html``, ``report.md`` and ``figures/<name>.png`` into ``out_dir``.

    Every file is written atomically; figures first, so the pages never link a missing PNG.
    ``figure_names``: every figure this kind of document can contain; those of them that
    ``sections`` do not contain are deleted from ``figures/`` (stale figures of an earlier
    report); other files there are left alone. Returns ``{"html": path, "markdown": path}``
    plus one entry per image, keyed by its name. Raises ValueError for an image name that is
    not a plain file stem, is used twice, or is ``"html"``/``"markdown"``.
    """
    out_dir = Path(out_dir)
    images = [b for b in (*preamble, *(b for s in sections for b in s.blocks))
              if isinstance(b, Image)]
    names = [image.name for image in images]
    figure_names = list(figure_names)
    for name in (*names, *figure_names):
        if not _FIGURE_NAME.fullmatch(name) or name in _RESERVED_KEYS:
            raise ValueError(f"image name {name!r} is not usable as a file stem; expected "
                             "letters, digits, '_', '.', '-' and not 'html' or 'markdown'")
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"image names must be unique in a document; used twice: {twice}")
    markdown = to_markdown(title, sections, preamble)
    page = to_html(title, sections, css, preamble)
    paths: dict[str, Path] = {}
    figures_dir = out_dir / "figures"
    for image in images:
        paths[image.name] = atomic_write_bytes(figures_dir / f"{image.name}.png", image.png)
    for stale in sorted(set(figure_names) - set(names)):
        (figures_dir / f"{stale}.png").unlink(missing_ok=True)
    paths["markdown"] = atomic_write_text(out_dir / "report.md", markdown)
    paths["html"] = atomic_write_text(out_dir / "report.html", page)
    return paths


def _html_row(tag: str, cells: Sequence[str], left_columns: tuple[int, ...] | None,
              titles: dict[int, str] | None = None) -> str:
    def cell(j: int, text: str) -> str:
        css = ' class="text"' if left_columns is not None and j in left_columns else ""
        if titles and j in titles:
            css += f' title="{html.escape(titles[j])}"'
        return f"<{tag}{css}>{html.escape(text)}</{tag}>"

    return "<tr>" + "".join(cell(j, text) for j, text in enumerate(cells)) + "</tr>"


def _md_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def _block_error(block: object, section: Section | None) -> str:
    where = "the preamble" if section is None else f"section {section.title!r}"
    return (f"{where} holds a {type(block).__name__}; expected str, Table, Bullets, Details "
            "or Image")
