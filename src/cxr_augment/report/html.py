"""The study's report as one self-contained HTML file: tables, figures and missing results.

Everything is inline (CSS, figures as base64 PNG data URIs), so the file reads offline and
can be mailed or archived as is. Every number shown carries the catalog dataset it comes from
(``data-asset``); the thesis's published numbers, shown for comparison, carry
``data-source="thesis"`` instead. ``validate`` checks a rendered page for the structural
problems a reader would trip over (broken images, dangling links, external resources).
"""

from __future__ import annotations

import base64
import binascii
import html
import io
import math
import numbers
import re
import struct
import zlib
from collections import Counter
from dataclasses import dataclass, field
from html.parser import HTMLParser

import numpy as np
import pandas as pd

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_URI = "data:image/png;base64,"
WIDE_COLUMNS = 8  # tables with more columns get a smaller font
P_FLOOR = 0.001  # smaller p-values show as "< 0.001"
KV_ROWS = 12  # provenance key/value tables longer than this are split into columns

_NUM = r"[-+−]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?%?"
_VALUE = rf"(?:[<>≤≥]\s*)?{_NUM}"  # "0.81", "< 0.001", "12.5%"
_CI = rf"[\[(]\s*{_NUM}\s*[,;–]\s*{_NUM}\s*[\])]"  # "[0.512, 0.601]"
# a number, a number with a second one in brackets ("0.03 (0.09)"), with a CI, or a CI alone
_NUMERIC_TEXT = re.compile(rf"^\s*(?:{_VALUE}(?:\s*\(\s*{_VALUE}\s*\))?(?:\s*{_CI})?|{_CI})\s*$")
_MISSING_TEXT = {"nan", "none", "n/a", "na", "<na>", "nat"}
_BOLD = re.compile(r"\*\*(.+?)\*\*")


@dataclass
class Table:
    """A data frame shown as is (column order kept), with the dataset its numbers come from."""

    key: str
    title: str
    frame: pd.DataFrame
    asset: str
    notes: list[str] = field(default_factory=list)
    meta: dict[str, str] = field(default_factory=dict)
    thesis: pd.DataFrame | None = None
    digits: int = 4


@dataclass
class Figure:
    key: str
    title: str
    png: bytes
    asset: str
    caption: str = ""


@dataclass
class NotRun:
    """A result that was not produced, and the command that produces it."""

    key: str
    title: str
    asset: str
    command: str
    reason: str = "not run"


@dataclass
class Section:
    key: str
    title: str
    paragraphs: list[str] = field(default_factory=list)
    items: list[Table | Figure | NotRun] = field(default_factory=list)


def figure_png(fig, dpi: int = 110) -> bytes:
    """A matplotlib figure as PNG bytes, at its own size (no tight crop); closes the figure."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=dpi)
    finally:
        plt.close(fig)
    return buf.getvalue()


def png_size(png: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's header."""
    if not png.startswith(PNG_SIGNATURE) or png[12:16] != b"IHDR":
        raise ValueError("not a PNG")
    return struct.unpack(">II", png[16:24])


# --- cells ------------------------------------------------------------------------------------


def _is_p_column(name: object) -> bool:
    name = str(name)
    return name.endswith(("_p", "_holm")) or "p (Holm)" in name or name == "p"


def is_missing(value: object) -> bool:
    """None, pandas' NA/NaT or a float NaN: shown as "n/a"."""
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, float | np.floating):
        return math.isnan(value)
    return False


def format_cell(value: object, digits: int = 4, p_value: bool = False) -> tuple[str, str]:
    """(text, kind) of one cell; kind is "num", "na" or "text". Text is not yet escaped."""
    if is_missing(value):
        return "n/a", "na"
    if isinstance(value, bool | np.bool_):
        return str(bool(value)), "text"
    if isinstance(value, numbers.Integral):
        return f"{int(value):d}", "num"
    if isinstance(value, numbers.Real):
        v = float(value)
        if math.isinf(v):
            return ("inf" if v > 0 else "-inf"), "num"
        if p_value and 0 <= v < P_FLOOR:
            return f"< {P_FLOOR}", "num"  # as journals print them; the asset has the value
        text = f"{v:#.3g}" if p_value else f"{v:.{digits}f}"
        if p_value and "e" not in text:
            text = text.rstrip(".")
        return text, "num"
    text = str(value)
    if text.strip().lower() in _MISSING_TEXT:
        return "n/a", "na"
    return text, ("num" if _NUMERIC_TEXT.match(text) else "text")


def _display_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A meaningful index (named, or not integers) becomes leading columns; a plain row
    number index is dropped."""
    index = frame.index
    named = any(n is not None for n in index.names)
    if named or index.nlevels > 1 or not pd.api.types.is_integer_dtype(index.dtype):
        frame = frame.reset_index()
        if not named and index.nlevels == 1:
            frame = frame.rename(columns={"index": ""})
    return frame


def _column_label(column: object) -> str:
    if isinstance(column, tuple):
        return " / ".join(str(c) for c in column if str(c))
    return str(column)


# --- rendering --------------------------------------------------------------------------------


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _prose(text: str) -> str:
    """Plain text, escaped, with **bold** only."""
    return _BOLD.sub(r"<strong>\1</strong>", _e(text))


def _paragraph(text: str) -> str:
    """A paragraph: its lines that start with "- " are a list under the text before them."""
    lead, *items = text.split("\n- ")
    out = f"<p>{_prose(lead)}</p>" if lead.strip() else ""
    if items:
        out += "<ul>" + "".join(f"<li>{_prose(i)}</li>" for i in items) + "</ul>"
    return out


#: a value and its interval or bracketed second value: "0.0497 [-0.060, 0.165]", "0.402 (1.00)"
_PAIR = re.compile(r"^(\S+) ([\[(].*[\])])$")


def _num_cell(text: str, stack: bool) -> str:
    """A number cell's HTML; with ``stack`` (a wide table) a value and its interval or
    bracketed second value go on two lines, so that the table keeps to the page."""
    m = _PAIR.match(text) if stack else None
    return f"{_e(m.group(1))}<br>{_e(m.group(2))}" if m else _e(text)


def _frame_html(
    frame: pd.DataFrame,
    digits: int,
    attrs: str,
    cell_attr: str,
    caption: str,
    table_id: str,
    stack: bool = False,
) -> str:
    frame = _display_frame(frame)
    columns = list(frame.columns)
    p_cols = [_is_p_column(_column_label(c)) for c in columns]
    cells = [
        [format_cell(v, digits, p) for v, p in zip(row, p_cols, strict=True)]
        for row in frame.itertuples(index=False, name=None)
    ]
    numeric_col = [
        sum(r[j][1] == "num" for r in cells) > sum(r[j][1] == "text" for r in cells)
        for j in range(len(columns))
    ]
    head = "".join(
        ('<th scope="col" class="num">' if numeric_col[j] else '<th scope="col">')
        + f"{_e(_column_label(c))}</th>"
        for j, c in enumerate(columns)
    )
    body = []
    for row in cells:
        tds = []
        for text, kind in row:
            if kind == "num":
                tds.append(f'<td class="num" {cell_attr}>{_num_cell(text, stack)}</td>')
            elif kind == "na":
                tds.append(f'<td class="na">{_e(text)}</td>')
            else:  # names break after their underscores when the table needs the room
                tds.append(f"<td>{_e(text).replace('_', '_<wbr>')}</td>")
        body.append(f"<tr>{''.join(tds)}</tr>")
    if not cells:
        body.append(f'<tr><td class="na" colspan="{max(len(columns), 1)}">no rows</td></tr>')
    id_attr = f' id="{_e(table_id)}"' if table_id else ""
    return (
        f'<div class="scroll"><table{id_attr} {attrs}>'
        f"<caption><div>{caption}</div></caption>"
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
    )


def _table_html(item: Table) -> str:
    asset = _e(item.asset)
    wide = " wide" if len(_display_frame(item.frame).columns) > WIDE_COLUMNS else ""
    parts = [f'<div class="item table-item{wide}">']
    if item.meta:
        parts.append(
            '<dl class="meta">'
            + "".join(f"<div><dt>{_e(k)}</dt><dd>{_e(v)}</dd></div>" for k, v in item.meta.items())
            + "</dl>"
        )
    caption = (
        f'<span class="title">{_e(item.title)}</span> <span class="source">source: {asset}</span>'
    )
    # the thesis's table sits beside ours when both fit, else below it; notes follow both
    parts.append('<div class="pair">')
    parts.append(
        _frame_html(
            item.frame,
            item.digits,
            attrs=f'class="data" data-asset="{asset}"',
            cell_attr=f'data-asset="{asset}"',
            caption=caption,
            table_id=item.key,
            stack=bool(wide),
        )
    )
    if item.thesis is not None:
        caption = (
            '<span class="title">Thesis</span> '
            '<span class="source">published numbers, not computed here</span>'
        )
        parts.append(
            '<div class="thesis-block">'
            + _frame_html(
                item.thesis,
                item.digits,
                attrs='class="thesis" data-source="thesis"',
                cell_attr='data-source="thesis"',
                caption=caption,
                table_id=f"{item.key}-thesis",
            )
            + "</div>"
        )
    parts.append("</div>")
    parts.extend(f'<p class="note">{_prose(n)}</p>' for n in item.notes)
    parts.append("</div>")
    return "".join(parts)


def _figure_html(item: Figure) -> str:
    width, height = png_size(item.png)
    src = PNG_URI + base64.b64encode(item.png).decode("ascii")
    caption = _e(item.title) + (f" — {_prose(item.caption)}" if item.caption else "")
    return (
        f'<figure id="{_e(item.key)}" class="item" data-asset="{_e(item.asset)}">'
        f'<img src="{src}" alt="{_e(item.title)}" width="{width}" height="{height}">'
        f'<figcaption>{caption} <span class="source">(source: {_e(item.asset)})</span>'
        "</figcaption></figure>"
    )


def _not_run_html(item: NotRun) -> str:
    return (
        f'<div class="item not-run" id="{_e(item.key)}">'
        f'<p class="title"><strong>{_e(item.title)}: not run</strong></p>'
        f"<p>{_prose(item.reason)}</p>"
        f"<p>Produce it with: <code>{_e(item.command)}</code></p>"
        f'<p class="source">source: {_e(item.asset)}</p></div>'
    )


def _item_html(item: Table | Figure | NotRun) -> str:
    if isinstance(item, Table):
        return _table_html(item)
    if isinstance(item, Figure):
        return _figure_html(item)
    if isinstance(item, NotRun):
        return _not_run_html(item)
    raise TypeError(f"not a report item: {type(item).__name__}")


def _is_scalar(value: object) -> bool:
    return not isinstance(value, dict | list | tuple)


def _value_html(value: object) -> str:
    """Provenance values: a dict of scalars is a key/value table, other dicts nest as
    definition lists, lists of scalars are comma separated, other lists are bullet lists."""
    if isinstance(value, dict):
        if not value:
            return '<span class="na">none</span>'
        if all(_is_scalar(v) for v in value.values()):
            rows = [
                f'<tr><th scope="row">{_e(k)}</th><td>{_value_html(v)}</td></tr>'
                for k, v in value.items()
            ]
            # long lists (package versions) in up to four side-by-side columns
            n = min(4, math.ceil(len(rows) / KV_ROWS))
            per = math.ceil(len(rows) / n)
            tables = [
                f'<table class="kv"><tbody>{"".join(rows[i : i + per])}</tbody></table>'
                for i in range(0, len(rows), per)
            ]
            return tables[0] if n == 1 else f'<div class="kv-columns">{"".join(tables)}</div>'
        return (
            '<dl class="prov">'
            + "".join(f"<dt>{_e(k)}</dt><dd>{_value_html(v)}</dd>" for k, v in value.items())
            + "</dl>"
        )
    if isinstance(value, list | tuple):
        if not value:
            return '<span class="na">none</span>'
        if all(_is_scalar(v) for v in value):
            text = ", ".join("n/a" if v is None else str(v) for v in value)
            return f'<span class="val">{_e(text)}</span>'
        return "<ul>" + "".join(f"<li>{_value_html(v)}</li>" for v in value) + "</ul>"
    if value is None:
        return '<span class="na">n/a</span>'
    return f'<span class="val">{_e(value)}</span>'


def _check_keys(sections: list[Section]) -> None:
    keys = ["toc", "provenance"]
    for section in sections:
        keys.append(section.key)
        for item in section.items:
            keys.append(item.key)
            if isinstance(item, Table) and item.thesis is not None:
                keys.append(f"{item.key}-thesis")
    dup = sorted(k for k, n in Counter(keys).items() if n > 1)
    if dup:
        raise ValueError(f"duplicate report ids: {', '.join(dup)}")
    bad = [k for k in keys if not k or any(c.isspace() for c in k)]
    if bad:
        raise ValueError(f"report ids must be non-empty without spaces: {bad}")


def render(title: str, sections: list[Section], provenance: dict[str, object]) -> str:
    """The whole page: header, table of contents, the sections, then provenance."""
    _check_keys(sections)
    toc = []
    not_run = ' <span class="tag">not run</span>'
    for section in sections:
        sub = "".join(
            f'<li><a href="#{_e(i.key)}">{_e(i.title)}</a>'
            f"{not_run if isinstance(i, NotRun) else ''}</li>"
            for i in section.items
        )
        toc.append(
            f'<li><a href="#{_e(section.key)}">{_e(section.title)}</a>'
            f"{f'<ol>{sub}</ol>' if sub else ''}</li>"
        )
    toc.append('<li><a href="#provenance">Provenance</a></li>')
    body = []
    for section in sections:
        body.append(f'<section id="{_e(section.key)}"><h2>{_e(section.title)}</h2>')
        body.extend(_paragraph(p) for p in section.paragraphs)
        body.extend(_item_html(i) for i in section.items)
        body.append("</section>")
    body.append(
        f'<section id="provenance"><h2>Provenance</h2>{_value_html(dict(provenance))}</section>'
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{CSS}</style></head>\n<body><main>"
        f"<header><h1>{_e(title)}</h1></header>\n"
        f'<nav id="toc"><h2>Contents</h2><ol>{"".join(toc)}</ol></nav>\n'
        + "\n".join(body)
        + "\n</main></body></html>\n"
    )


CSS = """
:root { --fg: #1f2328; --muted: #59636e; --line: #d1d9e0; --zebra: rgba(31, 35, 40, .045);
  --zebra-solid: #f4f5f5; --accent: #0b5cad; }
* { box-sizing: border-box; }
html { background: #fff; }
body { margin: 0; color: var(--fg); font: 15px/1.5 system-ui, -apple-system, "Segoe UI",
  Roboto, "Helvetica Neue", Arial, "Noto Sans", "Liberation Sans", sans-serif; }
main { max-width: 1100px; margin: 0 auto; padding: 24px 28px 48px; }
header h1 { font-size: 1.7em; line-height: 1.25; margin: 0 0 16px;
  padding-bottom: 10px; border-bottom: 2px solid var(--fg); }
h2 { font-size: 1.3em; margin: 2em 0 .6em; padding-bottom: 4px;
  border-bottom: 1px solid var(--line); }
p { margin: .5em 0 .8em; }
a { color: var(--accent); text-decoration: none; }
a:hover { text-decoration: underline; }
code { font: .88em/1.4 ui-monospace, "SFMono-Regular", "DejaVu Sans Mono", Menlo, Consolas,
  monospace; background: var(--zebra); padding: 1px 4px; border-radius: 3px;
  overflow-wrap: anywhere; }
nav#toc { background: var(--zebra); border: 1px solid var(--line); border-radius: 6px;
  padding: 4px 20px 12px; }
nav#toc h2 { border: 0; margin: .6em 0 .2em; font-size: 1.1em; }
nav#toc ol { margin: 0; padding-left: 1.4em; }
nav#toc ol ol { font-size: .92em; list-style: lower-alpha; }
nav#toc li { margin: 2px 0; }
.tag { font-size: .75em; color: #8a4b00; background: #fff4e5; border: 1px solid #f0c58a;
  border-radius: 3px; padding: 0 4px; }
.item { margin: 1.4em 0 1.8em; }
/* a table wider than the page scrolls in its own box; a shadow marks the hidden side */
.scroll { overflow-x: auto; max-width: 100%;
  background: linear-gradient(to right, #fff 40%, rgba(255, 255, 255, 0)) left / 48px 100%,
    linear-gradient(to left, #fff 40%, rgba(255, 255, 255, 0)) right / 48px 100%,
    radial-gradient(farthest-side at 0 50%, rgba(0, 0, 0, .22), transparent) left / 16px 100%,
    radial-gradient(farthest-side at 100% 50%, rgba(0, 0, 0, .22), transparent) right / 16px 100%;
  background-repeat: no-repeat; background-attachment: local, local, scroll, scroll; }
table { border-collapse: collapse; font-size: 13px; }
table.data, table.thesis { margin: 0 0 .4em; }
caption { caption-side: top; text-align: left; padding: 0 0 6px; }
caption > div { position: sticky; left: 0; max-width: 1040px; }
caption .title { font-weight: 600; font-size: 14px; }
.source { color: var(--muted); font-size: 12px; font-weight: normal; }
th, td { padding: 4px 10px; border-bottom: 1px solid var(--line); vertical-align: top; }
thead th { text-align: left; border-bottom: 2px solid var(--fg); white-space: nowrap; }
tbody tr:nth-child(even) { background: var(--zebra); }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.na { color: var(--muted); font-style: italic; }
.wide table { font-size: 11.5px; }
.wide th, .wide td { padding: 3px 6px; }
.wide thead th { white-space: normal; }  /* a long header wraps rather than widen the table */
.wide thead th:first-child, .wide tbody td:first-child { position: sticky; left: 0;
  background: #fff; }
.wide tbody tr:nth-child(even) td:first-child { background: var(--zebra-solid); }
.pair { display: flex; flex-wrap: wrap; align-items: flex-start; gap: 12px 36px; }
.pair > * { min-width: 0; max-width: 100%; }
.thesis-block { padding-left: 10px; border-left: 3px solid #c8a2e0; }
table.thesis caption .title { color: #6a2c91; }
.note { font-size: 13.5px; color: #333; max-width: 1040px; }
dl.meta { display: flex; flex-wrap: wrap; gap: 4px 18px; margin: 0 0 8px; font-size: 12.5px;
  color: var(--muted); }
dl.meta div { display: flex; gap: 5px; }
dl.meta dt { font-weight: 600; }
dl.meta dd { margin: 0; color: var(--fg); }
figure { margin: 1.4em 0 1.8em; }
figure img { display: block; max-width: 100%; height: auto; border: 1px solid var(--line); }
figcaption { font-size: 13.5px; margin-top: 6px; max-width: 1040px; }
.not-run { border: 1px solid #f0c58a; border-left: 5px solid #d98a00; background: #fffaf2;
  border-radius: 4px; padding: 8px 16px; }
.not-run p { margin: .3em 0; }
.not-run .title { color: #8a4b00; }
#provenance table.kv { font-size: 12.5px; margin: .2em 0 .6em; }
#provenance table.kv th { text-align: left; font-weight: 600; white-space: nowrap; }
#provenance table.kv td { overflow-wrap: anywhere; }
.kv-columns { display: flex; flex-wrap: wrap; align-items: flex-start; gap: 0 32px; }
dl.prov { margin: 0; font-size: 13.5px; }
dl.prov dt { font-weight: 600; margin-top: .6em; }
dl.prov dd { margin: .1em 0 .2em 1.2em; overflow-wrap: anywhere; }
.na { color: var(--muted); font-style: italic; }
@media print {
  body { font-size: 11pt; }
  main { max-width: none; padding: 0; }
  a { color: inherit; }
  .scroll { overflow: visible; background: none; }
  .wide thead th:first-child, .wide tbody td:first-child { position: static; }
  .item, figure, tr { break-inside: avoid; }
  h2 { break-after: avoid; }
  nav#toc { break-after: page; }
  .wide table { font-size: 8pt; }
}
"""


# --- validation -------------------------------------------------------------------------------


def _png_problem(data: bytes) -> str | None:
    """Why ``data`` is not a complete PNG (chunk CRCs checked), or None."""
    if not data.startswith(PNG_SIGNATURE):
        return "does not start with the PNG signature"
    pos = len(PNG_SIGNATURE)
    seen_end = False
    while pos < len(data):
        if pos + 12 > len(data):
            return "truncated chunk"
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        end = pos + 8 + length
        if end + 4 > len(data):
            return "truncated chunk"
        (crc,) = struct.unpack(">I", data[end : end + 4])
        if zlib.crc32(data[pos + 4 : end]) != crc:
            return f"bad CRC in {kind!r} chunk"
        pos = end + 4
        if kind == b"IEND":
            seen_end = True
            break
    return None if seen_end else "no IEND chunk"


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: list[str] = []
        self.problems: list[str] = []
        self.anchors: list[str] = []
        self.tables: list[tuple[str, bool]] = []  # (id, thesis) of the open tables
        self.in_style = False
        self.style: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: (v or "") for k, v in attrs}
        classes = a.get("class", "").split()
        where = f"<{tag}{' id=' + a['id'] if a.get('id') else ''}>"
        if "id" in a:
            self.ids.append(a["id"])
        for name in ("src", "href", "srcset", "poster", "data", "action"):
            if name in a:
                self._resource(tag, name, a[name])
        if tag == "img":
            self._image(a.get("src"), a.get("id") or a.get("alt", "")[:40])
        elif tag == "table":
            thesis = a.get("data-source") == "thesis" or "thesis" in classes
            if "data" in classes and not a.get("data-asset"):
                self.problems.append(f"{where}: data table without data-asset")
            self.tables.append((a.get("id", "?"), thesis))
        elif tag == "td" and self.tables:
            table, thesis = self.tables[-1]
            if thesis and "data-asset" in a:
                self.problems.append(f"table {table}: a thesis cell carries data-asset")
            elif not thesis and "num" in classes and not a.get("data-asset"):
                self.problems.append(f"table {table}: a numeric cell without data-asset")
        elif tag == "style":
            self.in_style = True
        elif tag in ("script", "iframe", "object", "embed"):
            self.problems.append(f"{where}: embedded {tag}")

    def handle_endtag(self, tag: str) -> None:
        if tag == "table" and self.tables:
            self.tables.pop()
        elif tag == "style":
            self.in_style = False

    def handle_data(self, data: str) -> None:
        if self.in_style:
            self.style.append(data)

    def _resource(self, tag: str, name: str, value: str) -> None:
        value = value.strip()
        if name == "href" and value.startswith("#"):
            self.anchors.append(value[1:])
        elif not value.startswith("data:"):
            self.problems.append(f"<{tag} {name}={value[:60]!r}>: external resource")

    def _image(self, src: str | None, label: str) -> None:
        if not src or not src.startswith(PNG_URI):
            self.problems.append(f"image {label!r}: src is not a base64 PNG data URI")
            return
        try:
            data = base64.b64decode(src[len(PNG_URI) :], validate=True)
        except (binascii.Error, ValueError):
            self.problems.append(f"image {label!r}: base64 does not decode")
            return
        problem = _png_problem(data)
        if problem:
            self.problems.append(f"image {label!r}: {problem}")


def validate(html_text: str) -> list[str]:
    """Structural problems of a rendered page; an empty list means none was found."""
    parser = _Collector()
    parser.feed(html_text)
    parser.close()
    problems = list(parser.problems)
    counts = Counter(parser.ids)
    problems += [f"duplicate id {k!r} ({n} times)" for k, n in counts.items() if n > 1]
    problems += [f"link to #{k} has no target" for k in parser.anchors if k not in counts]
    style = "".join(parser.style)
    for m in re.finditer(r"url\(\s*['\"]?([^'\")\s]*)|@import\s+['\"]?([^'\";\s]*)", style):
        target = m.group(1) or m.group(2) or ""
        if not target.startswith(("data:", "#")):
            problems.append(f"stylesheet loads {target[:60]!r}: external resource")
    return problems
