"""The incremental runners' run log, ``<records>.times.jsonl`` beside the records: a line when a
run starts (runner, workers, environment, nodes to run), one per node that succeeded (its
seconds) and one when the run ends (its wall time). Appended by the run that holds the
records' lock, so one writer at a time. ``time_summary`` sums it, so a study run in pieces,
stopped and resumed, still has a measured time (``scripts/run_times.py``).

Standard library only: reading the log needs neither Kedro nor the project.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path


def times_path(state: Path) -> Path:
    """The run log beside the records: ``nodes.json`` -> ``nodes.times.jsonl``."""
    return state.with_name(f"{state.stem}.times.jsonl")


def stamp() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def log_event(path: Path, event: dict) -> None:
    """Append one line to the run log (one writer: the run that holds the records' lock)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps(event, sort_keys=True) + "\n")


def _kind(node_name: str) -> str:
    """A node's kind across experiments and seeds: ``ptx_x.train_classifier_seed2`` ->
    ``train_classifier``."""
    name = node_name.rsplit(".", 1)[-1]
    head, _, tail = name.rpartition("_seed")
    return head if head and tail.isdigit() else name


def time_summary(path: Path) -> dict:
    """What the run log says: each run's start, end and wall time (a run that was killed ends
    at its last node), and the nodes' seconds by kind, summed over every run.

    A run's wall time includes any time its processes were stopped (``kill -STOP``)."""
    runs: dict[str, dict] = {}
    kinds: dict[str, dict] = {}
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        e = json.loads(line)
        run = runs.setdefault(e["run"], {"run": e["run"], "nodes_run": 0})
        at = datetime.fromisoformat(e["at"])
        if e["event"] == "start":
            run.update(start=at, runner=e.get("runner"), workers=e.get("workers"),
                       env=e.get("env"), to_run=e.get("to_run"))  # fmt: skip
        elif e["event"] == "node":
            run["nodes_run"] += 1
            run["last"] = at
            k = kinds.setdefault(_kind(e["node"]), {"nodes": 0, "seconds": 0.0})
            k["nodes"] += 1
            k["seconds"] += float(e["seconds"])
        elif e["event"] == "end":
            run["end"], run["wall"] = at, float(e["wall_s"])
    out = []
    for run in runs.values():
        start, end, last = run.pop("start", None), run.pop("end", None), run.pop("last", None)
        wall = run.pop("wall", None)
        run["ended"] = end is not None  # False: killed (or still going); it ends at its last node
        if wall is None:
            wall = (last - start).total_seconds() if start and last else 0.0
        run["wall_s"] = wall
        run["start"] = start.isoformat() if start else None
        out.append(run)
    return {
        "runs": out,
        "wall_s": sum(r["wall_s"] for r in out),
        "node_seconds": sum(k["seconds"] for k in kinds.values()),
        "kinds": dict(sorted(kinds.items(), key=lambda kv: -kv[1]["seconds"])),
    }
