"""The self-contained HTML report: rendering rules, and what ``validate`` catches."""

import base64
import io
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cxr_augment.report import html as report

ROOT = Path(__file__).resolve().parents[2]
ASSET = "report.table15.table"


def _figure(dpi: int = 50) -> tuple[bytes, tuple[int, int]]:
    """A small real figure as PNG, and its size in pixels."""
    fig, ax = plt.subplots(figsize=(3.2, 2.4))
    ax.plot([0, 1, 2], [0, 1, 0.5])
    width, height = fig.get_size_inches() * dpi
    png = report.figure_png(fig, dpi=dpi)
    assert not plt.fignum_exists(fig.number)  # closed
    return png, (round(width), round(height))


def _sections(png: bytes) -> list[report.Section]:
    frame = pd.DataFrame(
        {
            "experiment": ["baseline", "traditional", "<b>diffusion</b>"],
            "n_images": [234, 234, 234],
            "roc_auc": [0.812345678, np.nan, 0.5],
            "roc_auc_ci": ["[0.512, 0.601]", "[0.70, 0.80]", None],
            "delta_p": [0.0312345, 0.5, np.nan],
            "p (Holm)": ["0.03 (0.09)", "< 0.001", "n/a"],
            "f1_holm": [0.000123456, 1.0, 0.2],
        }
    )
    thesis = pd.DataFrame({"experiment": ["baseline", "diffusion"], "roc_auc": [0.79, 0.83]})
    table = report.Table(
        key="table15",
        title="Table 15: traditional versus diffusion augmentation",
        frame=frame,
        asset=ASSET,
        notes=["A <script>alert(1)</script> note with **bold** words."],
        meta={"split": "test", "N": "234 images, 200 patients", "seeds": "1"},
        thesis=thesis,
        digits=3,
    )
    small = report.Table(
        key="table16", title="Table 16", frame=frame.iloc[:1], asset="report.table16.table"
    )
    figure = report.Figure(
        key="figure20", title="Figure 20: PCA", png=png, asset="report.figure20", caption="a plot"
    )
    not_run = report.NotRun(
        key="table17",
        title="Table 17: Stable Diffusion",
        asset="report.table17.table",
        command="kedro run --pipeline generation",
        reason="needs a GPU",
    )
    return [
        report.Section("results", "Results", ["First **paragraph**."], [table, figure]),
        report.Section(
            "more", "More results", ["Lead <i>.\n- one **a**\n- two < three"], [small, not_run]
        ),
    ]


PROVENANCE = {
    "git": "abc123",
    "packages": {"torch": "2.14.1", "pandas": "3.1.1"},
    "run": {"seeds": [1, 2, 3], "params": {"lr": 1e-4}},
}


@pytest.fixture(scope="module")
def built() -> tuple[str, tuple[int, int]]:
    png, size = _figure()
    return report.render("Report <test>", _sections(png), PROVENANCE), size


class _Tree(HTMLParser):
    """Start tags with their attributes and text, enough to inspect the page."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict, list[str]]] = []
        self.open: list[list[str]] = []

    def handle_starttag(self, tag, attrs):
        entry = (tag, dict(attrs), [])
        self.tags.append(entry)
        if tag not in ("img", "meta", "br"):
            self.open.append(entry[2])

    def handle_endtag(self, tag):
        if self.open:
            self.open.pop()

    def handle_data(self, data):
        for texts in self.open:
            texts.append(data)


def _tree(page: str) -> _Tree:
    t = _Tree()
    t.feed(page)
    return t


def _table_cells(page: str, table_id: str) -> list[tuple[dict, str]]:
    """(attributes, text) of the body cells of one table."""
    block = re.search(rf'<table id="{table_id}".*?</table>', page, re.S).group(0)
    return [(attrs, "".join(text)) for tag, attrs, text in _tree(block).tags if tag == "td"]


def test_a_good_report_validates(built):
    page, _ = built
    assert report.validate(page) == []
    assert "http" not in page and "<script>" not in page and "<link" not in page


def test_every_key_is_an_id_and_in_the_toc(built):
    page, _ = built
    tree = _tree(page)
    ids = [a["id"] for _, a, _ in tree.tags if "id" in a]
    assert len(ids) == len(set(ids))
    toc = re.search(r'<nav id="toc">.*?</nav>', page, re.S).group(0)
    for key in ("results", "more", "table15", "table16", "figure20", "table17", "provenance"):
        assert key in ids
        assert f'href="#{key}"' in toc


def test_figure_is_an_embedded_png_of_the_figure_size(built):
    page, size = built
    (img,) = [a for tag, a, _ in _tree(page).tags if tag == "img"]
    assert img["src"].startswith("data:image/png;base64,")
    assert img["alt"] == "Figure 20: PCA"
    with Image.open(io.BytesIO(base64.b64decode(img["src"].split(",", 1)[1]))) as im:
        assert im.format == "PNG" and im.size == size
    fig = next(a for tag, a, _ in _tree(page).tags if tag == "figure")
    assert fig["id"] == "figure20" and fig["data-asset"] == "report.figure20"
    assert "(source: report.figure20)" in page


def test_cells_formatting_and_assets(built):
    page, _ = built
    cells = _table_cells(page, "table15")
    texts = [t for _, t in cells]
    by_text = dict((t, a) for a, t in cells)
    # floats to `digits`, ints plain, p columns to 3 significant digits (below 0.001: "< 0.001")
    assert "0.812" in texts and "0.500" in texts and "234" in texts
    assert "0.0312" in texts and "0.000123" not in texts and "1.00" in texts
    assert texts.count("< 0.001") == 2  # the string cell and f1_holm's 0.000123
    # strings kept; numbers, CIs and p-value strings are numeric cells
    for text in ("[0.512, 0.601]", "0.03 (0.09)", "< 0.001", "0.812", "234"):
        assert by_text[text]["class"] == "num"
    assert by_text["baseline"].get("class") is None
    # missing values
    assert texts.count("n/a") == 4
    assert all(a["class"] == "na" for a, t in cells if t == "n/a")
    # every numeric cell names the table's asset
    nums = [a for a, _ in cells if a.get("class") == "num"]
    assert len(nums) == 14 and all(a["data-asset"] == ASSET for a in nums)
    table = next(a for tag, a, _ in _tree(page).tags if a.get("id") == "table15")
    assert table["class"] == "data" and table["data-asset"] == ASSET
    caption = re.search(r'<table id="table15".*?</caption>', page, re.S).group(0)
    assert "Table 15: traditional versus diffusion augmentation" in caption
    assert f"source: {ASSET}" in caption


def test_thesis_cells_are_marked_and_carry_no_asset(built):
    page, _ = built
    cells = _table_cells(page, "table15-thesis")
    assert [t for _, t in cells] == ["baseline", "0.790", "diffusion", "0.830"]
    for attrs, _ in cells:
        assert "data-asset" not in attrs
    assert all(a["data-source"] == "thesis" for a, _ in cells if a.get("class") == "num")
    block = re.search(r'<table id="table15-thesis".*?</caption>', page, re.S).group(0)
    assert 'data-source="thesis"' in block and "Thesis" in block and "data-asset" not in block


def test_text_is_escaped_and_bold_supported(built):
    page, _ = built
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;b&gt;diffusion&lt;/b&gt;" in page
    assert "<strong>bold</strong>" in page and "<strong>paragraph</strong>" in page
    assert "<title>Report &lt;test&gt;</title>" in page


def test_lines_starting_with_a_dash_are_a_list_under_their_paragraph(built):
    page, _ = built
    assert (
        "<p>Lead &lt;i&gt;.</p><ul><li>one <strong>a</strong></li><li>two &lt; three</li></ul>"
        in page
    )
    assert "<p>First <strong>paragraph</strong>.</p>" in page  # no dash, no list


def test_not_run_box_and_provenance(built):
    page, _ = built
    box = re.search(r'<div class="item not-run" id="table17">.*?</div>', page, re.S).group(0)
    assert "Table 17: Stable Diffusion: not run" in box and "needs a GPU" in box
    assert "<code>kedro run --pipeline generation</code>" in box
    assert "report.table17.table" in box
    prov = page[page.index('<section id="provenance">') :]
    for text in ("abc123", "torch", "2.14.1", "1, 2, 3", "0.0001"):
        assert text in prov


def test_wide_tables_scroll_in_their_own_container():
    frame = pd.DataFrame(np.arange(30.0).reshape(1, 30), columns=[f"c{i}" for i in range(30)])
    page = report.render(
        "t", [report.Section("s", "S", items=[report.Table("w", "Wide", frame, "a")])], {}
    )
    assert re.search(
        r'<div class="item table-item wide"><div class="pair"><div class="scroll"><table id="w"',
        page,
    )
    assert re.search(r"\.scroll \{[^}]*overflow-x: auto", page)
    assert report.validate(page) == []


def test_index_shown_only_when_meaningful():
    def headers(frame):
        page = report.render(
            "t", [report.Section("s", "S", items=[report.Table("k", "K", frame, "a")])], {}
        )
        return re.findall(r'<th scope="col"[^>]*>([^<]*)</th>', page)

    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0]})
    assert headers(frame.iloc[1:]) == ["x"]
    assert headers(frame.rename_axis("run")) == ["run", "x"]
    assert headers(frame.set_index(pd.Index(["a", "b", "c"]))) == ["", "x"]


def test_duplicate_keys_raise():
    png, _ = _figure()
    sections = _sections(png)
    sections[1].items[0].key = "figure20"
    with pytest.raises(ValueError, match="figure20"):
        report.render("t", sections, {})
    with pytest.raises(ValueError, match="provenance"):
        report.render("t", [report.Section("provenance", "P")], {})


def test_validate_catches_broken_pages(built):
    page, _ = built
    start = page.index("data:image/png;base64,") + len("data:image/png;base64,")
    corrupt = page[: start + 40] + "!!!!" + page[start + 44 :]
    assert any("base64" in p for p in report.validate(corrupt))
    truncated = page[: start + 200] + page[page.index('"', start) :]
    assert any("image" in p for p in report.validate(truncated))
    not_png = page[:start] + "R0lGODlhAQABAAAAACw=" + page[page.index('"', start) :]
    assert any("PNG signature" in p for p in report.validate(not_png))

    external = page.replace('src="data:image/png;base64,', 'src="http://example.org/x.png?', 1)
    assert any("external" in p for p in report.validate(external))
    local = page.replace("</main>", '<a href="results/table.csv">csv</a></main>')
    assert any("external" in p for p in report.validate(local))

    dangling = page.replace('href="#table16"', 'href="#table99"', 1)
    assert any("#table99" in p for p in report.validate(dangling))
    no_asset = page.replace(
        '<table id="table16" class="data" data-asset="report.table16.table"',
        '<table id="table16" class="data"',
        1,
    )
    assert any("without data-asset" in p for p in report.validate(no_asset))
    cell = page.replace('<td class="num" data-asset="report.table16.table">', '<td class="num">', 1)
    assert any("numeric cell" in p for p in report.validate(cell))
    dup = page.replace('id="table16"', 'id="table15"', 1)
    assert any("duplicate id 'table15'" in p for p in report.validate(dup))


def test_cell_formatting_rules():
    assert report.format_cell(np.float32(0.25), 2) == ("0.25", "num")
    assert report.format_cell(np.int64(7)) == ("7", "num")
    assert report.format_cell(pd.NA) == ("n/a", "na")
    assert report.format_cell(0.04567, p_value=True) == ("0.0457", "num")
    assert report.format_cell(3e-7, p_value=True) == ("< 0.001", "num")
    assert report.format_cell(0.001, p_value=True) == ("0.00100", "num")
    assert report.format_cell(3e-7) == ("0.0000", "num")  # not a p-value: as it is
    assert report.format_cell(True) == ("True", "text")
    assert report.format_cell("0.81 [0.75, 0.86]")[1] == "num"
    assert report.format_cell("12.5%")[1] == "num"
    assert report.format_cell("234 images")[1] == "text"


@pytest.mark.slow
@pytest.mark.skipif(
    not any(shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome")),
    reason="no headless browser",
)
def test_screenshot_script_tiles_the_page(built, tmp_path):
    page, _ = built
    path = tmp_path / "report.html"
    path.write_text(page, encoding="utf-8")
    out = tmp_path / "shots"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts/screenshot_report.py"),
            str(path),
            "--out",
            str(out),
            "--width",
            "900",
            "--height",
            "3000",
            "--tile",
            "800",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    tiles = sorted(out.glob("page_*.png"))
    assert tiles and [str(t) for t in tiles] == result.stdout.split()
    with Image.open(tiles[0]) as im:
        assert im.width == 900 and np.asarray(im.convert("L")).std() > 0
