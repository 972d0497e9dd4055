"""Screenshots of kedro-viz's flowchart of registered pipelines, with headless Chromium.

    python scripts/screenshot_viz.py                      # classification, augmentation
    python scripts/screenshot_viz.py --pipeline demo_data --no-build --focus none

Runs ``kedro viz build`` (the static site in ``build/``; ``--no-build`` reuses it), serves it
on 127.0.0.1 at a free port, and saves in ``--out`` (data/08_reporting/screenshots):

- ``viz_<pipeline>.png`` (1600 x 2400): the pipeline as kedro-viz opens it (``?pid=``), each
  experiment one collapsed modular pipeline (``expandAllPipelines=false``, its default);
- ``viz_<pipeline>__<experiment>.png`` (1600 x 1000): one experiment alone (``?tags=``, its
  name is a tag), expanded, with its datasets.

Offline: the build's ``api/version`` is static (no PyPI request, no update banner) and
Chromium resolves no host but 127.0.0.1. Each page opens in a fresh profile seeded with the
display settings kedro-viz keeps in ``localStorage``: no feature-hint pop-up, no mini-map,
parameters hidden (its default); in the overviews datasets hidden too and the flow left to
right, so the ~35 experiments form a labelled column instead of a row of ~200 elements at 10 %
zoom (``--datasets``, ``--vertical`` give kedro-viz's own defaults back).
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import urlencode

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from screenshot_report import chromium_screenshot, find_browser  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PIPELINES = ("classification", "augmentation")
SETUP = "/__screenshot_setup__.html"


def build_site(root: Path = ROOT) -> Path:
    """``kedro viz build`` in the project: the static site in ``build/``."""
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1"}
    kedro = Path(sys.executable).with_name("kedro")
    cmd = [str(kedro) if kedro.exists() else "kedro", "viz", "build"]
    result = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"kedro viz build failed:\n{result.stdout[-3000:]}{result.stderr[-3000:]}")
    return root / "build"


def viz_settings(datasets: bool, horizontal: bool, theme: str, sidebar: bool = True) -> dict:
    """What kedro-viz reads from ``localStorage['KedroViz']`` at start."""
    return {
        "showFeatureHints": False,
        "theme": theme,
        "orientation": "horizontal" if horizontal else "vertical",
        "expandAllPipelines": False,
        "textLabels": True,
        "isPrettyName": False,
        "nodeType": {"disabled": {"parameters": True, "task": False, "data": not datasets}},
        "visible": {"miniMap": False, "sidebar": sidebar, "code": False, "traceback": False},
    }


SETUP_PAGE = (
    b"<!doctype html><meta charset=utf-8><script>"
    b"const q = new URLSearchParams(location.search);"
    b"localStorage.setItem('KedroViz', q.get('settings'));"
    b"location.replace(q.get('to'));"
    b"</script>"
)


def setup_url(port: int, settings: dict, target: str) -> str:
    """A page of the site's origin that stores the settings where kedro-viz reads them, then
    opens ``target`` (a path and query of the site)."""
    query = urlencode({"settings": json.dumps(settings), "to": target})
    return f"http://127.0.0.1:{port}{SETUP}?{query}"


class _Handler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        if self.path.split("?")[0] == SETUP:
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(SETUP_PAGE)))
            self.end_headers()
            self.wfile.write(SETUP_PAGE)
            return
        super().do_GET()

    def guess_type(self, path):
        if not os.path.splitext(path)[1]:  # the site's api/* responses
            return "application/json"
        return super().guess_type(path)

    def log_message(self, format, *args):  # quiet
        pass


def serve(site: Path) -> http.server.ThreadingHTTPServer:
    """The site on 127.0.0.1 at a free port, in a daemon thread."""
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Handler, directory=str(site))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def capture(url: str, shot: Path, width: int, height: int, browser: str, budget_ms: int) -> None:
    chromium_screenshot(url, shot, width, height, browser, budget_ms)


def graph_drawn(shot: Path) -> bool:
    """Whether the flowchart area (right of the sidebar) holds more than a uniform
    background."""
    with Image.open(shot) as img:
        a = np.asarray(img.convert("L"), dtype=np.int16)
    area = a[60:-60, 520:-20]
    return area.size > 0 and float(area.std()) > 2.0


def modular_pipelines(site: Path, pipeline: str) -> list[str]:
    """The top-level modular pipelines (experiments) of ``pipeline`` in the built site."""
    tree = json.loads((site / "api" / "pipelines" / pipeline).read_text())["modular_pipelines"]
    return sorted(c["id"] for c in tree["__root__"]["children"] if c["type"] == "modularPipeline")


def screenshot(
    pipelines: list[str],
    out: Path,
    site: Path,
    width: int = 1600,
    height: int = 2400,
    focus: dict[str, list[str]] | None = None,
    datasets: bool = False,
    horizontal: bool = True,
    theme: str = "light",
    budget_ms: int = 20000,
) -> list[Path]:
    """``viz_<pipeline>.png`` per pipeline (``width`` x ``height``), and
    ``viz_<pipeline>__<experiment>.png`` per experiment of ``focus`` ({pipeline: [names]}):
    the nodes tagged with its name, expanded, datasets shown, top to bottom (1600 x 1000)."""
    api = site / "api" / "pipelines"
    missing = [p for p in pipelines if not (api / p).is_file()]
    if missing:
        raise SystemExit(f"not in {site}: {', '.join(missing)} (run `kedro viz build`)")
    shots = []  # (file, target, settings, size)
    for name in pipelines:
        query = {"pid": name, "expandAllPipelines": "false"}
        shots.append(
            (
                f"viz_{name}.png",
                "/?" + urlencode(query),
                viz_settings(datasets, horizontal, theme),
                (width, height),
            )
        )
        known = modular_pipelines(site, name)
        for exp in (focus or {}).get(name, []):
            if exp not in known:
                raise SystemExit(f"{exp} is not a modular pipeline of {name}")
            shots.append(
                (
                    f"viz_{name}__{exp}.png",
                    "/?" + urlencode({**query, "expandAllPipelines": "true", "tags": exp}),
                    viz_settings(True, False, theme, sidebar=False),
                    (1600, 1000),
                )
            )
    browser = find_browser()
    out.mkdir(parents=True, exist_ok=True)
    server = serve(site)
    port = server.server_address[1]
    paths = []
    try:
        for file, target, settings, (w, h) in shots:
            path = out / file
            path.unlink(missing_ok=True)
            capture(setup_url(port, settings, target), path, w, h, browser, budget_ms)
            if not graph_drawn(path):
                print(f"warning: {path}: the flowchart looks empty", file=sys.stderr)
            paths.append(path)
    finally:
        server.shutdown()
    return paths


def main(argv: list[str] | None = None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipeline", action="append", help="a registered pipeline (repeatable)")
    parser.add_argument(
        "--focus",
        action="append",
        metavar="EXPERIMENT",
        help="also this experiment alone, expanded (repeatable; default: the first of each "
        "pipeline; 'none' for none)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "data/08_reporting/screenshots")
    parser.add_argument("--site", type=Path, default=ROOT / "build", help="kedro viz build's site")
    parser.add_argument("--no-build", action="store_true", help="reuse --site as it is")
    parser.add_argument("--width", type=int, default=1600)
    parser.add_argument("--height", type=int, default=2400)
    parser.add_argument("--datasets", action="store_true", help="overviews show datasets too")
    parser.add_argument(
        "--vertical", action="store_true", help="top to bottom (kedro-viz's default)"
    )
    parser.add_argument("--theme", choices=("light", "dark"), default="light")
    parser.add_argument("--budget-ms", type=int, default=20000, help="virtual time per page")
    args = parser.parse_args(argv)
    site = args.site if args.no_build else build_site()
    pipelines = args.pipeline or list(PIPELINES)
    focus: dict[str, list[str]] = {}
    for name in pipelines:
        known = modular_pipelines(site, name)
        if args.focus is None:
            wanted = known[:1]
        else:
            wanted = [e for e in args.focus if e in known]
        focus[name] = wanted
    unknown = set(args.focus or []) - {"none"} - {e for v in focus.values() for e in v}
    if unknown:
        raise SystemExit(f"not a modular pipeline of {', '.join(pipelines)}: {sorted(unknown)}")
    paths = screenshot(
        pipelines,
        args.out,
        site,
        args.width,
        args.height,
        focus=focus,
        datasets=args.datasets,
        horizontal=not args.vertical,
        theme=args.theme,
        budget_ms=args.budget_ms,
    )
    for path in paths:
        print(path)
    return paths


if __name__ == "__main__":
    main()
