"""Benchmark: the same experiments on two engines, one after the other in one script, on the
same data: Dagster's multiprocess executor with Dagster's default start of each step process,
the project's start (a forkserver that has loaded the definitions), and Kedro's
``ParallelRunner`` (the project's ``ParallelIncrementalRunner`` with no records, so every node
runs).

    python bench/bench_executor.py [--experiments ptx_densenet121,pe_densenet121]

A copy of the project's configuration and of its preprocessed data (never the project's own
``data/``) runs the ``classification`` job (``--job``: another pipeline's, such as
``augmentation``, whose experiments train on augmented sets) with the ``multiprocess`` executor of
``conf/base/dagster.yml`` (2 processes), for the listed experiments' nodes only (``dagster job
execute -o``), trainings from scratch, twice: with ``CXR_DAGSTER_FORKSERVER=off`` (each step
process imports the code location and translates the project before its step starts) and with
the project's default (step processes fork from a forkserver that has done it once). For each:
the job's wall time, and how long each step process took to begin its step (Dagster's
``STEP_WORKER_STARTING`` to ``STEP_START`` events: the process start and the code load, or the
wait for a free process), and each node's own time (a Dagster step's ``STEP_START`` to
``STEP_SUCCESS``; a Kedro worker's time from loading the node's inputs to saving its outputs,
from the runner's log), with each training's ratio. Both runs must write the same metrics (one torch thread per
step process either way). With ``--repeats N`` the three take turns N times (a slower spell
of the machine falls on all of them alike) and each figure is the median of the N, with each
run's wall and training times kept beside it. Prints and saves bench/results/executor.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ENV = "bench_executor"
INPUTS = ("01_raw", "02_intermediate", "03_primary", "04_feature", "05_model_input",
          # what an experiment on a generated set reads: the generators and their
          # memorisation summaries (the `augmentation` job's DDIM experiments)
          "06_models/generation", "07_model_output/generation", "08_reporting/generation")  # fmt: skip

sys.path.insert(0, str(Path(__file__).parent))
from _common import save_results  # noqa: E402  (same folder)


def project_copy(root: Path, job: str = "classification") -> Path:
    """The project's pyproject, configuration and preprocessed data in ``root``; the
    ``job`` on the multiprocess executor in Kedro environment ``ENV``."""
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    (root / "src").mkdir()  # Kedro asks for it; the code is the installed package
    shutil.copytree(ROOT / "conf", root / "conf", ignore=shutil.ignore_patterns(".*"))
    dagster = yaml.safe_load((ROOT / "conf" / "base" / "dagster.yml").read_text())
    dagster["jobs"][job]["executor"] = "multiprocess"
    (root / "conf" / ENV).mkdir()
    (root / "conf" / ENV / "dagster.yml").write_text(yaml.safe_dump(dagster, sort_keys=False))
    for folder in INPUTS:
        if (ROOT / "data" / folder).exists():
            shutil.copytree(ROOT / "data" / folder, root / "data" / folder)
    return root


def _digest(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for path in sorted(paths):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def run_job(
    project: Path, experiments: list[str], forkserver: bool, until: str, job: str = "classification"
) -> dict:
    from dagster import DagsterEventType, DagsterInstance

    _fresh(project, experiments)
    home = Path(tempfile.mkdtemp(prefix="dagster_home_"))
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "KEDRO_ENV": ENV,
        "KEDRO_DISABLE_TELEMETRY": "true",
        "DAGSTER_DISABLE_TELEMETRY": "true",
        "CXR_DAGSTER_FORKSERVER": "on" if forkserver else "off",
    }
    selection = ",".join(f"*{exp}__{until}_asset" for exp in experiments)
    cmd = [str(BIN / "dagster"), "job", "execute", "-m", "cxr_augment.definitions",
           "-j", job, "-o", selection]  # fmt: skip
    t = time.perf_counter()
    out = subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - t
    if out.returncode != 0:
        raise RuntimeError(f"dagster job execute failed:\n{(out.stdout + out.stderr)[-4000:]}")
    os.environ["DAGSTER_HOME"] = str(home)
    instance = DagsterInstance.get()
    (run,) = instance.get_runs(limit=1)
    starting: dict[str, float] = {}
    began: dict[str, float] = {}
    node_seconds: dict[str, float] = {}
    worker_start: list[float] = []
    steps = 0
    for entry in instance.all_logs(run.run_id):
        event = entry.dagster_event
        if event is None:
            continue
        if event.event_type == DagsterEventType.STEP_WORKER_STARTING:
            starting[event.step_key] = entry.timestamp
        elif event.event_type == DagsterEventType.STEP_START:
            began[event.step_key] = entry.timestamp
            if event.step_key in starting:
                worker_start.append(entry.timestamp - starting.pop(event.step_key))
        elif event.event_type == DagsterEventType.STEP_SUCCESS:
            steps += 1
            node_seconds[_node_of_step(event.step_key)] = entry.timestamp - began[event.step_key]
    instance.dispose()
    shutil.rmtree(home, ignore_errors=True)
    metrics = _metrics(project, experiments)
    return {
        "status": run.status.value,
        "wall_s": round(wall, 1),
        "steps": steps,
        "step_process_to_step_start_s": {
            "median": round(statistics.median(worker_start), 2),
            "max": round(max(worker_start), 2),
            "sum": round(sum(worker_start), 1),
        },
        "outputs_digest": _digest(metrics),
        "node_seconds": {k: round(v, 1) for k, v in sorted(node_seconds.items())},
    }


def _node_of_step(step_key: str) -> str:
    """The Kedro node of a step: ``ptx_densenet121__train_classifier_seed1_asset`` ->
    ``ptx_densenet121.train_classifier_seed1`` (kedro-dagster's names)."""
    from kedro_dagster.utils import unformat_asset_name

    return unformat_asset_name(step_key.removesuffix("_asset"))


def _fresh(project: Path, experiments: list[str]) -> None:
    """Trainings from scratch: the experiments' models and outputs removed."""
    for exp in experiments:
        for folder in ("06_models", "07_model_output"):
            shutil.rmtree(project / "data" / folder / exp, ignore_errors=True)


def _metrics(project: Path, experiments: list[str]) -> list[Path]:
    return [p for exp in experiments for p in (project / "data" / "07_model_output" / exp).rglob("*") if p.is_file()]  # fmt: skip


def run_kedro(
    project: Path, experiments: list[str], until: str, job: str = "classification"
) -> dict:
    """The same nodes with ``kedro run`` on Kedro's ``ParallelRunner`` (2 processes, one torch
    thread each), with records of its own that start empty, so every node runs."""
    _fresh(project, experiments)
    state = Path(tempfile.mkdtemp(prefix="kedro_state_")) / "nodes.json"
    env = {**os.environ, "KEDRO_ENV": ENV, "KEDRO_DISABLE_TELEMETRY": "true"}
    cmd = [str(BIN / "kedro"), "run", "--env", ENV, "--pipeline", job,
           "--to-nodes", ",".join(f"{exp}.{until}" for exp in experiments),
           "--runner", "cxr_augment.orchestration.runner.ParallelIncrementalRunner",
           "--runner-params", f"max_workers=2,state={state}"]  # fmt: skip
    t = time.perf_counter()
    out = subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - t
    if out.returncode != 0:
        raise RuntimeError(f"kedro run failed:\n{(out.stdout + out.stderr)[-4000:]}")
    records = json.loads(state.read_text())  # the runner's record of each node that succeeded
    done = len(records)
    from cxr_augment.orchestration.run_log import times_path

    node_seconds = {  # each node's time in its worker, loading its inputs to saving its outputs
        e["node"]: round(e["seconds"], 1)
        for e in map(json.loads, times_path(state).read_text().splitlines())
        if e.get("event") == "node"
    }
    shutil.rmtree(state.parent, ignore_errors=True)
    return {
        "status": "SUCCESS",
        "wall_s": round(wall, 1),
        "nodes": done,
        "outputs_digest": _digest(_metrics(project, experiments)),
        "node_seconds": dict(sorted(node_seconds.items())),
    }


def _median_run(runs: list[dict]) -> dict:
    """One engine's runs as one: the first run's record, its wall and node times the medians
    of all runs, each run's wall and training times beside them."""
    if len(runs) == 1:
        return runs[0]
    out = dict(runs[0])
    out["wall_s"] = round(statistics.median(r["wall_s"] for r in runs), 1)
    out["wall_s_each"] = [r["wall_s"] for r in runs]
    nodes = runs[0]["node_seconds"]
    out["node_seconds"] = {
        n: round(statistics.median(r["node_seconds"][n] for r in runs), 1) for n in nodes
    }
    out["training_seconds_each"] = {
        n: [r["node_seconds"][n] for r in runs] for n in nodes if ".train_classifier" in n
    }
    if "step_process_to_step_start_s" in runs[0]:
        out["step_process_to_step_start_s"] = {
            k: round(statistics.median(r["step_process_to_step_start_s"][k] for r in runs), 2)
            for k in runs[0]["step_process_to_step_start_s"]
        }
    out["outputs_digest"] = ",".join(sorted({r["outputs_digest"] for r in runs}))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--experiments", default="ptx_densenet121,pe_densenet121")
    ap.add_argument("--until", default="evaluate", help="the last node of each experiment")
    ap.add_argument("--repeats", type=int, default=1, help="runs of each engine, in turn")
    ap.add_argument("--job", default="classification", help="the job (Kedro pipeline) to run")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "executor.json"))
    args = ap.parse_args()
    experiments = args.experiments.split(",")
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench_executor_") as tmp:
        project = project_copy(Path(tmp), args.job)
        results = {
            "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "job": args.job,
            "executor": "multiprocess, max_concurrent 2",
            "experiments": experiments,
            "until": args.until,
        }
        runs: dict[str, list[dict]] = {}
        for _ in range(args.repeats):
            for name, forkserver in (("dagster_default_start", False), ("forkserver_preloaded", True)):  # fmt: skip
                runs.setdefault(name, []).append(run_job(project, experiments, forkserver, args.until, args.job))  # fmt: skip
                print(name, runs[name][-1], flush=True)
            runs.setdefault("kedro_parallel_runner", []).append(run_kedro(project, experiments, args.until, args.job))  # fmt: skip
            print("kedro_parallel_runner", runs["kedro_parallel_runner"][-1], flush=True)
        results["repeats"] = args.repeats
        results.update({name: _median_run(each) for name, each in runs.items()})
    base, ours = results["dagster_default_start"], results["forkserver_preloaded"]
    results["speedup_wall"] = round(base["wall_s"] / ours["wall_s"], 2)
    kedro = results["kedro_parallel_runner"]
    results["dagster_forkserver_over_kedro_wall"] = round(ours["wall_s"] / kedro["wall_s"], 2)
    results["same_outputs"] = len({r["outputs_digest"] for r in (base, ours, kedro)}) == 1
    # each training's own time, a Dagster step (from the forkserver) against a Kedro worker
    results["training_seconds_dagster_over_kedro"] = {
        node: round(ours["node_seconds"][node] / kedro["node_seconds"][node], 3)
        for node in kedro["node_seconds"]
        if ".train_classifier" in node and node in ours["node_seconds"]
    }
    results["load_average"] = [round(load_before, 1), round(os.getloadavg()[0], 1)]
    save_results(results, Path(args.out))
    print(f"wall {base['wall_s']} s -> {ours['wall_s']} s (x{results['speedup_wall']}); "
          f"Kedro ParallelRunner {kedro['wall_s']} s; "
          f"same outputs: {results['same_outputs']}")  # fmt: skip


if __name__ == "__main__":
    main()
