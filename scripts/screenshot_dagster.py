"""Screenshots of the Dagster UI: the asset graph of a few groups and the asset catalog.

    .venv/bin/python scripts/screenshot_dagster.py [--out FOLDER]

Starts what `make dagster` starts (`python -m cxr_augment.orchestration.dev`: the project's code
server and `dagster dev` over it) on 127.0.0.1 (a free port, the instance of deploy/dagster.yaml
in a temporary DAGSTER_HOME), waits for the code location, and saves PNGs in
data/08_reporting/screenshots/dagster_<view>.png with headless chromium.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from screenshot_viz import capture, find_browser  # noqa: E402

VIEWS = {
    "assets": "/assets",
    # every group, collapsed: the project at a glance
    "lineage": "/asset-groups",
    # (a group page of demo_data or preprocessing is a column of link nodes: every one of the
    # study's experiments reads their truth, manifest and tensor store)
    # one experiment: its metrics' upstream lineage (augmented set, model, predictions)
    "experiment_graph": "/assets/local/ptx_aug_rotation_balanced/metrics"
    "?view=lineage&lineageScope=upstream&lineageDepth=4",
    # the report: its description, and every table and figure it shows (upstream)
    "report": "/assets/local/report/html",
    "jobs": "/jobs",
    # the code location, served by the project's code server (orchestration/code_server.py)
    "locations": "/locations",
}


def main(out: Path = ROOT / "data" / "08_reporting" / "screenshots") -> list[Path]:
    from bench_dagster import _port  # noqa: F401  (bench/ on the path below)
    from dagster_graphql import DagsterGraphQLClient

    out.mkdir(parents=True, exist_ok=True)
    browser = find_browser()
    port = _port()
    shots = []
    with tempfile.TemporaryDirectory() as home:
        shutil.copy(ROOT / "deploy" / "dagster.yaml", Path(home) / "dagster.yaml")
        env = {**os.environ, "DAGSTER_HOME": home, "KEDRO_DISABLE_TELEMETRY": "true"}
        proc = subprocess.Popen(
            [sys.executable, "-m", "cxr_augment.orchestration.dev",
             "-m", "cxr_augment.definitions", "-h", "127.0.0.1", "-p", str(port)],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        try:
            client = DagsterGraphQLClient("127.0.0.1", port_number=port, timeout=120)
            deadline = time.monotonic() + 300
            while True:
                try:
                    data = client._execute(
                        "{ workspaceOrError { ... on Workspace { locationEntries { loadStatus "
                        "} } } }"
                    )
                    if data["workspaceOrError"]["locationEntries"][0]["loadStatus"] == "LOADED":
                        break
                except Exception:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("the UI did not load the code location")
                time.sleep(1)
            for name, path in VIEWS.items():
                shot = out / f"dagster_{name}.png"
                capture(f"http://127.0.0.1:{port}{path}", shot, 1600, 1000, browser, 20000)
                shots.append(shot)
                print(shot)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=60)
    return shots


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=ROOT / "data" / "08_reporting" / "screenshots",
        help="the folder the PNGs go to (dagster_<view>.png)",
    )  # fmt: skip
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "bench"))
    main(args.out)
