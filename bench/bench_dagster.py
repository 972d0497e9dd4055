"""Benchmark: how quickly Dagster answers, for the project's code location and for the baseline
(kedro-dagster's unaided translation, bench/dagster_baseline_definitions.py), one after the other
in one script.

    python bench/bench_dagster.py [--skip-baseline]

For each: the lines a code load prints (``dagster definitions validate``) and its time; the time
from starting the UI to its first GraphQL answer with the code location loaded (ours: ``make
dagster``'s command, ``python -m cxr_augment.orchestration.dev``, i.e. ``dagster dev`` over the
warm code server, first with no snapshot files (a first start, or after an edit), then with the
ones that start kept (every later start of the same code); the baseline: ``dagster dev -m``); a code-location reload through GraphQL
(ours: once the code server has prepared the next server, as it does within seconds of a
load); the time from launching a run of the `demo_data` job to the run having started (its
worker process up, the code loaded, the first step begun), for the first run after the reload
and for the next one (launched ``SETTLE_S`` after the first ended), under the instance of
deploy/dagster.yaml for ours (``WarmInstance`` and ``WarmRunLauncher``: the first run starts in
the worker that loaded the code when the webserver started, the next one in a worker that
loaded it while the first ran) and Dagster's default instance of ``dagster dev`` (queued runs,
polled by the daemon) for the baseline; the resident memory of all the processes then. For ours
also a reload 0, 3 and 10 s after an edit (a comment appended to ``report/html.py``, restored
at the end; each pause three times, in turn, and their median): at once the reload loads the code as Dagster's does; later it takes (or waits for)
the server the code server began to prepare when it saw the edit. Servers after the first fork
from the code server's preloaded process (``zygote.py``); ``without_preloaded_process`` is the
same serving run again with ``CXR_CODE_ZYGOTE=off`` (each server a new process). Prints and
saves bench/results/dagster.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
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


def _env(home: Path, **extra: str) -> dict:
    return {
        **os.environ,
        **extra,
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


RELOAD_QUERY = (
    "{ workspaceOrError { ... on Workspace { locationEntries { loadStatus "
    "locationOrLoadError { __typename ... on RepositoryLocation { repositories { "
    "jobs { name } } } } } } } }"
)
# the edit: a comment appended to a source file (its digest changes, no code version does),
# restored at the end
EDITED = ROOT / "src" / "cxr_augment" / "report" / "html.py"
AFTER_EDIT_S = (0.0, 3.0, 10.0)  # seconds between an edit and the reload
AFTER_EDIT_REPEATS = 3  # each pause this many times (in turn); the median is reported


def _reload(client, name: str, job: str) -> float:
    """Seconds from asking for a reload to the location being loaded again, with its jobs."""
    t = time.perf_counter()
    client.reload_repository_location(name)
    while True:
        entry = client._execute(RELOAD_QUERY)["workspaceOrError"]["locationEntries"][0]
        loc = entry["locationOrLoadError"] or {}
        jobs = {j["name"] for r in loc.get("repositories", []) for j in r["jobs"]}
        if entry["loadStatus"] == "LOADED" and job in jobs:
            return round(time.perf_counter() - t, 1)
        if time.perf_counter() - t > 900:
            raise RuntimeError(f"reload did not finish: {entry}")
        time.sleep(0.1)


def _wait_for_line(path: Path, text: str, count: int, timeout: float = 300) -> None:
    """Until ``text`` appears ``count`` times in the log ``path``."""
    deadline = time.monotonic() + timeout
    while path.read_text(errors="replace").count(text) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{text!r} did not appear {count} time(s) in {path}")
        time.sleep(0.2)


def _memory_mib(pid: int) -> float:
    """Resident memory of a process and all its descendants."""
    import psutil

    root = psutil.Process(pid)
    total = 0
    for p in [root, *root.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return round(total / 2**20)


SNAPSHOTS = ROOT / ".cache" / "dagster"  # ours: the code server's snapshot files


def _wait_for_ui(client, proc: subprocess.Popen, t0: float) -> float:
    """Seconds from ``t0`` to the webserver's first answer with its code location loaded."""
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
                return round(time.perf_counter() - t0, 1)
        except RuntimeError:
            raise
        except Exception:
            pass
        if proc.poll() is not None or time.perf_counter() - t0 > 900:
            raise RuntimeError("webserver did not answer")
        time.sleep(0.1)


def _gone(pid: int, timeout: float = 120) -> None:
    """Until every process of the session ``pid`` has ended (the next start must not share
    the CPU with the last one's shutdown)."""
    import psutil

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not [p for p in psutil.process_iter() if _session(p) == pid]:
            return
        time.sleep(0.2)


def _session(p) -> int | None:
    try:
        return os.getsid(p.pid)
    except OSError:
        return None


def first_start(module: str, home: Path) -> float:
    """Ours, with no snapshot files: seconds to the UI with the location loaded; then until
    the code server has kept its snapshots (what the next start answers with)."""
    from dagster_graphql import DagsterGraphQLClient

    shutil.rmtree(SNAPSHOTS, ignore_errors=True)
    port = _port()
    cmd = [sys.executable, "-m", "cxr_augment.orchestration.dev", "-m", module,
           "-h", "127.0.0.1", "-p", str(port)]  # fmt: skip
    log = open(home / "first.log", "w")  # noqa: SIM115
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(home), stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)  # fmt: skip
    client = DagsterGraphQLClient("127.0.0.1", port_number=port, timeout=600)
    try:
        ready = _wait_for_ui(client, proc, t0)
        deadline = time.monotonic() + 120
        while not list(SNAPSHOTS.glob("*.marshal")) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=60)
        log.close()
        _gone(proc.pid)
    return ready


def serve(module: str, home: Path, ours: bool, job: str, **env: str) -> dict:
    """``make dagster``'s command for ours (orchestration/dev.py: ``dagster dev`` over the warm
    code server), ``dagster dev -m`` for the baseline."""
    from dagster_graphql import DagsterGraphQLClient

    port = _port()
    if ours:
        cmd = [sys.executable, "-m", "cxr_augment.orchestration.dev", "-m", module]
    else:
        cmd = [str(BIN / "dagster"), "dev", "-m", module]
    cmd += ["-h", "127.0.0.1", "-p", str(port)]
    log_path = home / "server.log"
    log = open(log_path, "w")  # noqa: SIM115
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(home, **env), stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    client = DagsterGraphQLClient("127.0.0.1", port_number=port, timeout=600)
    result: dict = {}
    edited, original = EDITED.stat(), EDITED.read_bytes()
    try:
        result["ui_ready_s"] = _wait_for_ui(client, proc, t0)
        name = client._execute(
            "{ workspaceOrError { ... on Workspace { locationEntries { name } } } }"
        )["workspaceOrError"]["locationEntries"][0]["name"]
        if ours:  # the code server has prepared the next server (it says so in its log)
            _wait_for_line(log_path, "prepared a server for the next reload", 1)
        result["reload_s"] = _reload(client, name, job)
        result["run_started_s"] = _launch(client, job)
        # a later launch, once the first run has ended and the machine is quiet again (with the
        # warm launcher, its next run worker has loaded by then)
        time.sleep(SETTLE_S)
        result["next_run_started_s"] = _launch(client, job)
        result["memory_mib"] = _memory_mib(proc.pid)
        if ours:
            # an edit (a comment appended to a source file), then a reload after a pause: at
            # once the code loads in a new server as Dagster's reload does; later the server
            # prepared for the edit is (being) loaded
            after: dict[str, list[float]] = {f"{pause:g} s": [] for pause in AFTER_EDIT_S}
            pauses = AFTER_EDIT_S * AFTER_EDIT_REPEATS
            for i, pause in enumerate(pauses, start=1):
                EDITED.write_bytes(original + f"# an edit ({i})\n".encode())
                time.sleep(pause)
                after[f"{pause:g} s"].append(_reload(client, name, job))
                time.sleep(SETTLE_S)
            result["reload_after_an_edit_s"] = {k: statistics.median(v) for k, v in after.items()}
            result["reload_after_an_edit_each_s"] = after
    finally:
        if EDITED.read_bytes() != original:
            EDITED.write_bytes(original)
        os.utime(EDITED, ns=(edited.st_atime_ns, edited.st_mtime_ns))
        os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
        log.close()
        _gone(proc.pid)
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


def measure(module: str, instance: Path | None, ours: bool, job: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        if instance is not None:
            shutil.copy(instance, home / "dagster.yaml")
        else:
            (home / "dagster.yaml").write_text("")
        out = {"validate": validate(module, home)}
        if ours:
            out["ui_ready_without_snapshots_s"] = first_start(module, home)
        out.update(serve(module, home, ours, job))
        if ours:  # the same, with servers started as new processes instead of forked
            out["without_preloaded_process"] = serve(module, home, ours, job, CXR_CODE_ZYGOTE="off")
        return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip-baseline", action="store_true")
    args = ap.parse_args()
    out = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "ours": measure(
            "cxr_augment.definitions", ROOT / "deploy" / "dagster.yaml", ours=True, job="demo_data"
        ),
    }
    print(json.dumps(out, indent=2), flush=True)
    if not args.skip_baseline:
        # kedro-dagster names its op jobs <env>__<job>
        out["baseline"] = measure(
            "dagster_baseline_definitions", None, ours=False, job="local__demo_data"
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
