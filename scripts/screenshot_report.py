"""Screenshots of the HTML report, whole page, in tiles, with headless Chromium.

    python scripts/screenshot_report.py data/08_reporting/report.html \\
        --out data/08_reporting/screenshots --width 1280

Chromium captures one tall window (``--height``, 20000 px by default); the uniform background
below the page's end is trimmed and the rest cut into tiles of about ``--tile`` px, saved as
page_01.png, page_02.png, ... (earlier tiles in ``--out`` are removed first). A page taller
than the window is captured again with a taller one, up to ``--max-height``.
"""

from __future__ import annotations

import argparse
import math
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
MARGIN = 24  # background rows kept below the last content row


def find_browser() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    raise SystemExit(
        f"no headless browser found (looked for {', '.join(BROWSERS)}); "
        "install one, e.g. `apt-get install chromium`"
    )


def chromium_screenshot(
    url: str,
    shot: Path,
    width: int,
    height: int,
    browser: str,
    budget_ms: int | None = None,
    timeout: float = 300,
) -> None:
    """Headless Chromium saves ``url`` in a ``width`` x ``height`` window as ``shot``: a fresh
    profile, no network but 127.0.0.1 (a font link fails at once instead of waiting), and with
    ``budget_ms`` that much virtual time for the page's scripts."""
    with tempfile.TemporaryDirectory(prefix="shot-") as tmp:
        cmd = [
            browser, "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars",
            "--force-device-scale-factor=1", "--no-first-run", "--no-default-browser-check",
            "--disable-background-networking", "--disable-component-update",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            f"--user-data-dir={Path(tmp) / 'profile'}",
            *([f"--virtual-time-budget={budget_ms}"] if budget_ms else []),
            f"--screenshot={shot}", f"--window-size={width},{height}", url,
        ]  # fmt: skip
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if not shot.exists():
        raise RuntimeError(
            f"{browser} wrote no screenshot (exit {result.returncode}):\n{result.stderr[-2000:]}"
        )


def capture(page: Path, width: int, height: int, browser: str, timeout: float = 180) -> Image.Image:
    """One screenshot of ``page`` in a ``width`` x ``height`` window."""
    with tempfile.TemporaryDirectory(prefix="report-shot-") as tmp:
        shot = Path(tmp) / "shot.png"
        chromium_screenshot(page.resolve().as_uri(), shot, width, height, browser, None, timeout)
        with Image.open(shot) as img:
            return img.convert("RGB")


def content_height(img: Image.Image) -> int:
    """Rows down to the last one that differs from the background (the bottom-right pixel),
    plus a margin; the full height when the content reaches the bottom."""
    a = np.asarray(img)
    background = a[-1, -1]
    differs = np.flatnonzero((a != background).any(axis=(1, 2)))
    if len(differs) == 0:
        return 0
    return min(int(differs[-1]) + 1 + MARGIN, a.shape[0])


def tiles(img: Image.Image, tile: int) -> list[Image.Image]:
    """Equal slices of about ``tile`` rows each."""
    n = max(1, math.ceil(img.height / tile))
    step = math.ceil(img.height / n)
    return [
        img.crop((0, top, img.width, min(top + step, img.height)))
        for top in range(0, img.height, step)
    ]


def screenshot(
    page: Path,
    out: Path,
    width: int = 1280,
    height: int = 20000,
    tile: int = 1600,
    max_height: int = 60000,
) -> list[Path]:
    """Tiles of the whole page ``page`` in ``out``; returns their paths."""
    if not page.is_file():
        raise SystemExit(f"no such file: {page}")
    browser = find_browser()
    while True:
        img = capture(page, width, height, browser)
        used = content_height(img)
        if used < img.height or height >= max_height:
            break
        height = min(2 * height, max_height)  # the page goes on below the window
    if used == img.height:
        print(f"warning: the page may be taller than {img.height} px; cut there", file=sys.stderr)
    if used == 0:
        raise RuntimeError(f"the screenshot of {page} is blank")
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("page_*.png"):
        old.unlink()
    paths = []
    for i, part in enumerate(tiles(img.crop((0, 0, img.width, used)), tile), start=1):
        path = out / f"page_{i:02d}.png"
        part.save(path, optimize=True)
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("page", type=Path, help="the HTML file")
    parser.add_argument("--out", type=Path, default=Path("data/08_reporting/screenshots"))
    parser.add_argument("--width", type=int, default=1280, help="window width, px")
    parser.add_argument("--height", type=int, default=20000, help="capture height, px")
    parser.add_argument("--tile", type=int, default=1600, help="tile height, px (about)")
    args = parser.parse_args(argv)
    paths = screenshot(args.page, args.out, args.width, args.height, args.tile)
    for path in paths:
        print(path)
    return paths


if __name__ == "__main__":
    main()
