"""Benchmark: how quickly Dagster answers, for the project's code location and for the baseline
(kedro-dagster's unaided translation, bench/dagster_baseline_definitions.py), one after the other
in one script.

    python bench/bench_dagster.py [--skip-baseline]

For each: the lines a code load prints (``dagster definitions validate``) and its time; the time
from starting the webserver to its first GraphQL answer (what ``make dagster`` users wait for);
a code-location reload through GraphQL; the time from launching a run of the `demo_data` job to
the run having started (its worker process up, the code loaded, the first step begun), for the
first run after the reload and for the next one (launched ``SETTLE_S`` after the first ended),
under the instance of deploy/dagster.yaml for ours (``WarmInstance`` and ``WarmRunLauncher``:
the first run starts in the worker that loaded the code when the webserver started, the next
one in a worker that loaded it while the first ran) and Dagster's
default instance of ``dagster dev`` (queued runs, polled by the daemon) for the baseline. Prints and saves bench/results/dagster.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETTLE_S = 20  # seconds between the first run's end and the next launch
BIN = Path(sys.executable).parent


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(home: Path) -> dict:
    return {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "KEDRO_DISABLE_TELEMETRY": "true",
        "DAGSTER_DISABLE_TELEMETRY": "true",
        "PYTHONPATH": str(ROOT / "bench"),
    }


def validate(module: str, home: Path) -> dict:
    t = time.perf_counter()
    out = subprocess.run(
        [str(BIN / "dagster"), "definitions", "validate", "-m", module],
        cwd=ROOT, env=_env(home), capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    return {
        "seconds": round(time.perf_counter() - t, 1),
        "lines": len((out.stdout + out.stderr).splitlines()),
        "ok": out.returncode == 0,
    }


def serve(module: str, home: Path, dev: bool, job: str) -> dict:
    from dagster_graphql import DagsterGraphQLClient

    port = _port()
    cmd = [str(BIN / ("dagster" if dev else "dagster-webserver"))]
    cmd += ["dev"] if dev else []
    cmd += ["-m", module, "-h", "127.0.0.1", "-p", str(port)]
    log = open(home / "server.log", "w")  # noqa: SIM115
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(home), stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)  # fmt: skip
    client = DagsterGraphQLClient("127.0.0.1", port_number=port, timeout=600)
    result: dict = {}
    try:
        while True:
            try:
                data = client._execute(
                    "{ workspaceOrError { ... on Workspace { locationEntries { "
                    "locationOrLoadError { __typename } } } } }"
                )
                entries = data["workspaceOrError"]["locationEntries"]
                if entries and entries[0]["locationOrLoadError"]:
                    if entries[0]["locationOrLoadError"]["__typename"] != "RepositoryLocation":
                        raise RuntimeError(f"code location failed: {entries}")
                    break
            except RuntimeError:
                raise
            except Exception:
                pass
            if proc.poll() is not None or time.perf_counter() - t0 > 900:
                raise RuntimeError("webserver did not answer")
            time.sleep(0.25)
        result["ui_ready_s"] = round(time.perf_counter() - t0, 1)
        name = client._execute(
            "{ workspaceOrError { ... on Workspace { locationEntries { name } } } }"
        )["workspaceOrError"]["locationEntries"][0]["name"]
        t = time.perf_counter()
        client.reload_repository_location(name)
        while True:  # reloaded: the location is loaded again and has its jobs
            data = client._execute(
                "{ workspaceOrError { ... on Workspace { locationEntries { loadStatus "
                "locationOrLoadError { __typename ... on RepositoryLocation { repositories { "
                "jobs { name } } } } } } } }"
            )
            entry = data["workspaceOrError"]["locationEntries"][0]
            loc = entry["locationOrLoadError"] or {}
            jobs = {j["name"] for r in loc.get("repositories", []) for j in r["jobs"]}
            if entry["loadStatus"] == "LOADED" and job in jobs:
                break
            if time.perf_counter() - t > 900:
                raise RuntimeError(f"reload did not finish: {entry}")
            time.sleep(0.25)
        result["reload_s"] = round(time.perf_counter() - t, 1)
        result["run_started_s"] = _launch(client, job)
        # a later launch, once the first run has ended and the machine is quiet again (with the
        # warm launcher, its next run worker has loaded by then)
        time.sleep(SETTLE_S)
        result["next_run_started_s"] = _launch(client, job)
    finally:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
        log.close()
    return result


def _launch(client, job: str) -> float:
    """Seconds from launching a run of ``job`` to the run having started; the run is then
    terminated and awaited."""
    t = time.perf_counter()
    run_id = client.submit_job_execution(job)
    while client.get_run_status(run_id).value in ("QUEUED", "NOT_STARTED", "STARTING"):
        if time.perf_counter() - t > 600:
            raise RuntimeError("run did not start")
        time.sleep(0.1)
    started = round(time.perf_counter() - t, 1)
    client.terminate_run(run_id)
    t = time.perf_counter()
    while client.get_run_status(run_id).value not in ("CANCELED", "SUCCESS", "FAILURE"):
        if time.perf_counter() - t > 120:
            raise RuntimeError(f"run {run_id} did not end after termination")
        time.sleep(0.2)
    return started


def measure(module: str, instance: Path | None, dev: bool, job: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        if instance is not None:
            shutil.copy(instance, home / "dagster.yaml")
        else:
            (home / "dagster.yaml").write_text("")
        return {"validate": validate(module, home), **serve(module, home, dev, job)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip-baseline", action="store_true")
    args = ap.parse_args()
    out = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "ours": measure(
            "cxr_augment.definitions", ROOT / "deploy" / "dagster.yaml", dev=True, job="demo_data"
        ),
    }
    print(json.dumps(out, indent=2), flush=True)
    if not args.skip_baseline:
        # kedro-dagster names its op jobs <env>__<job>
        out["baseline"] = measure(
            "dagster_baseline_definitions", None, dev=True, job="local__demo_data"
        )
        out["speedup"] = {
            k: round(out["baseline"][k] / out["ours"][k], 1)
            for k in ("ui_ready_s", "reload_s", "run_started_s", "next_run_started_s")
            if out["ours"].get(k)
        }
        out["speedup"]["validate"] = round(
            out["baseline"]["validate"]["seconds"] / out["ours"]["validate"]["seconds"], 1
        )
    print(json.dumps(out, indent=2))
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    (ROOT / "bench" / "results" / "dagster.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
