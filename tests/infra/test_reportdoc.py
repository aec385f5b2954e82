"""Tests for infra.reportdoc: the shared HTML/Markdown document renderer."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import matplotlib.style
import pytest
from matplotlib.figure import Figure

from infra import reportdoc
from infra.reportdoc import (
    Bullets,
    Details,
    Image,
    Section,
    Table,
    figure_png,
    to_html,
    to_markdown,
    write_document,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def small_png(value: float = 1.0) -> bytes:
    with matplotlib.style.context("default"):
        fig = Figure(figsize=(1.0, 1.0))
        fig.add_subplot().plot([0.0, 1.0], [0.0, value])
        return figure_png(fig)


@pytest.fixture(scope="module")
def png() -> bytes:
    return small_png()


def document(png: bytes) -> list[Section]:
    return [
        Section("1. Numbers <&>", [
            "Paragraph with <b>markup</b> & an ampersand.",
            Table(["name", "a|b", "value"], [["x<y", "p|q", "1 & 2"], ["plain", "-", "3"]],
                  left_columns=(0,)),
            Bullets(["item <one>", "item & two"]),
        ]),
        Section("2. Figures", [
            Image("curve", png, "Caption with <tags> & [brackets]."),
            Image("titled", png, "The caption.", title="A title [bits]"),
        ]),
    ]


def test_figure_png_is_a_deterministic_png(png: bytes) -> None:
    assert png.startswith(PNG_SIGNATURE)
    assert small_png() == png
    assert small_png(value=2.0) != png  # a different drawing gives different bytes
    assert b"Software" not in png and b"matplotlib" not in png.lower()


def test_html_is_self_contained_and_escaped(png: bytes) -> None:
    text = to_html("Title <T> & co", document(png))
    assert text.startswith("<!DOCTYPE html>")
    assert "<title>Title &lt;T&gt; &amp; co</title>" in text
    for forbidden in ("http://", "https://", "<script", "<link", "@import", "url("):
        assert forbidden not in text
    images = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    assert [base64.b64decode(data) for data in images] == [png, png]
    assert '<figure id="curve">' in text and '<figure id="titled">' in text
    assert "<style>" in text and reportdoc.CSS in text
    # user text never becomes markup
    assert "<b>markup</b>" not in text and "&lt;b&gt;markup&lt;/b&gt; &amp; an" in text
    assert '<tr><td class="text">x&lt;y</td><td>p|q</td><td>1 &amp; 2</td></tr>' in text
    assert '<th class="text">name</th>' in text
    assert "<li>item &lt;one&gt;</li><li>item &amp; two</li>" in text
    assert "<figcaption>Caption with &lt;tags&gt; &amp; [brackets].</figcaption>" in text
    assert 'alt="A title [bits]"' in text  # the title is the alt text when given
    assert "<h2>1. Numbers &lt;&amp;&gt;</h2>" in text


def test_html_custom_css_and_table_without_alignment(png: bytes) -> None:
    sections = [Section("s", [Table(["a", "b"], [["1", "2"]])])]
    text = to_html("t", sections, css="td { color: red; }")
    assert "<style>td { color: red; }</style>" in text and reportdoc.CSS not in text
    assert "<tr><td>1</td><td>2</td></tr>" in text and 'class="text"' not in text


def test_tables_scroll_in_a_container_and_details_collapse(png: bytes) -> None:
    """A table wider than the page scrolls inside its own container (the page keeps its width);
    a Details block is a collapsed <details> in HTML and a plain paragraph in Markdown, and a
    preamble sits between the title and the first section."""
    sections = [Section("s", [Table(["a", "b"], [["1", "2"]])])]
    preamble = [Details("Provenance", "a long <provenance> string")]
    text = to_html("Short", sections, preamble=preamble)
    assert '<div class="table-wrap"><table>' in text and "</table></div>" in text
    assert ".table-wrap" in reportdoc.CSS and "overflow-x: auto" in reportdoc.TABLE_CSS
    details = ("<details><summary>Provenance</summary><p>a long &lt;provenance&gt; string</p>"
               "</details>")
    assert text.index("<h1>Short</h1>") < text.index(details) < text.index("<h2>s</h2>")
    lines = to_markdown("Short", sections, preamble).splitlines()
    assert lines[:6] == ["# Short", "", "**Provenance**", "", "a long <provenance> string", ""]


def test_markdown_escapes_pipes_and_links_figures(png: bytes) -> None:
    text = to_markdown("Title", document(png))
    lines = text.splitlines()
    assert lines[0] == "# Title"
    assert "| name | a\\|b | value |" in lines
    assert "| :--- | ---: | ---: |" in lines
    assert "| x<y | p\\|q | 1 & 2 |" in lines
    assert "- item <one>" in lines and "- item & two" in lines
    # the caption is the alt text (brackets escaped) and is not repeated below the image
    assert "![Caption with <tags> & \\[brackets\\].](figures/curve.png)" in lines
    assert "Caption with <tags> & [brackets]." not in lines
    # with a title: the title is the alt text, the caption a line of its own
    assert "![A title \\[bits\\]](figures/titled.png)" in lines
    assert "The caption." in lines
    plain = to_markdown("t", [Section("s", [Table(["a", "b"], [["1", "2"]])])])
    assert "| --- | --- |" in plain.splitlines()


def test_unknown_block_is_a_clear_error() -> None:
    sections = [Section("Bad section", [42])]
    for render in (to_html, to_markdown):
        with pytest.raises(TypeError, match="'Bad section'.*int"):
            render("t", sections)


def test_write_document_writes_figures_and_removes_stale_ones(tmp_path: Path, png: bytes) -> None:
    names = ("curve", "titled", "old")
    first = [Section("f", [Image(name, png, name) for name in names])]
    keep = tmp_path / "figures" / "not_ours.png"
    keep.parent.mkdir()
    keep.write_bytes(b"user file")
    paths = write_document(tmp_path, "first", first, figure_names=names)
    assert set(paths) == {"html", "markdown", *names}
    assert paths["old"] == tmp_path / "figures" / "old.png" and paths["old"].read_bytes() == png

    paths = write_document(tmp_path, "second", document(png), figure_names=names)
    assert set(paths) == {"html", "markdown", "curve", "titled"}
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == [
        "curve.png", "not_ours.png", "titled.png"]
    assert keep.read_bytes() == b"user file"  # not one of figure_names: left alone
    markdown = paths["markdown"].read_text(encoding="utf-8")
    assert paths["markdown"] == tmp_path / "report.md" and markdown.startswith("# second\n")
    for link in re.findall(r"\]\((figures/[^)]+)\)", markdown):
        assert (tmp_path / link).read_bytes() == png
    assert paths["html"].read_text(encoding="utf-8") == to_html("second", document(png))
    assert [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")] == []


@pytest.mark.parametrize("name", ["../escape", "a/b", "html", "markdown", "", "with space"])
def test_bad_image_name_raises_before_writing(tmp_path: Path, png: bytes, name: str) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(name))):
        write_document(tmp_path, "t", [Section("s", [Image(name, png, "c")])])
    assert list(tmp_path.iterdir()) == []


def test_duplicate_image_name_raises(tmp_path: Path, png: bytes) -> None:
    sections = [Section("a", [Image("same", png, "1")]), Section("b", [Image("same", png, "2")])]
    with pytest.raises(ValueError, match="used twice.*'same'"):
        write_document(tmp_path, "t", sections)
    assert not (tmp_path / "report.html").exists()


def test_failed_render_keeps_the_previous_report(tmp_path: Path, png: bytes) -> None:
    write_document(tmp_path, "good", document(png))
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    broken = [*document(png), Section("broken", [Image("new", png, "c"), 3.5])]
    with pytest.raises(TypeError, match="'broken'.*float"):
        write_document(tmp_path, "bad", broken)
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before  # nothing written, not even the new figure
