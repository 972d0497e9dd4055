"""The incremental runners' run log, ``<records>.times.jsonl`` beside the records: a line when a
run starts (runner, workers, environment, nodes to run), one per node that succeeded (its
seconds), one per pause (``PauseWatch``: the time the run's process was stopped, ``kill -STOP``
or a suspended terminal) and one when the run ends (its wall time). Appended by the run that
holds the records' lock, so one writer process at a time. ``time_summary`` sums it, so a study
run in pieces, stopped and resumed, still has a measured time, with and without its pauses
(``scripts/run_times.py``).

Standard library only: reading the log needs neither Kedro nor the project.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

_WRITING = threading.Lock()  # the runner's loop and its PauseWatch append to one log


def times_path(state: Path) -> Path:
    """The run log beside the records: ``nodes.json`` -> ``nodes.times.jsonl``."""
    return state.with_name(f"{state.stem}.times.jsonl")


def stamp() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def log_event(path: Path, event: dict) -> None:
    """Append one line to the run log (one writer: the run that holds the records' lock). A
    last line cut short (a run killed while writing it) is ended first, so that it stays a
    line of its own, which ``time_summary`` skips and counts."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with _WRITING, open(path, "a+b") as f:
        end = f.seek(0, 2)
        torn = False
        if end:
            f.seek(end - 1)
            torn = f.read(1) != b"\n"
        f.write((b"\n" if torn else b"") + json.dumps(event, sort_keys=True).encode() + b"\n")


class PauseWatch:
    """A thread that notices the time its process was stopped (``kill -STOP``, a terminal's
    Ctrl-Z), which a wall clock counts as running: it ticks every ``TICK_S`` on the monotonic
    clock, and a tick late by ``MIN_PAUSE_S`` or more is logged as a ``pause`` event of the
    run with the lost seconds. CPU starvation of a low-priority process also delays ticks, but
    by milliseconds, not seconds."""

    TICK_S = 0.5
    MIN_PAUSE_S = 5.0

    def __init__(self, path: Path, run: str, clock: Callable[[], float] = time.monotonic):
        self.path, self.run, self._clock = Path(path), run, clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last = clock()
        self.paused_s = 0.0

    def tick(self) -> float:
        """One tick: the pause since the last (0 when on time), logged when long enough."""
        now = self._clock()
        gap = now - self._last - self.TICK_S
        self._last = now
        if gap < self.MIN_PAUSE_S:
            return 0.0
        self.paused_s += gap
        log_event(self.path, {"event": "pause", "run": self.run, "at": stamp(), "seconds": gap})
        return gap

    def _loop(self) -> None:
        while not self._stop.wait(self.TICK_S):
            self.tick()

    def __enter__(self) -> PauseWatch:
        self._last = self._clock()
        self._thread = threading.Thread(target=self._loop, name="pause-watch", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.tick()  # a pause just before the end


def node_seconds(path: Path | None) -> dict[str, float]:
    """Each node's seconds the last time the run log saw it succeed; ``{}`` for no log or an
    unreadable one. A line that is not an event (one cut short by a kill) is skipped."""
    last: dict[str, float] = {}
    if path is None:
        return last
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return last
    for line in lines:
        try:
            event = json.loads(line)
            if event.get("event") == "node":
                last[event["node"]] = float(event["seconds"])
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
    return last


def _kind(node_name: str) -> str:
    """A node's kind across experiments and seeds: ``ptx_x.train_classifier_seed2`` ->
    ``train_classifier``."""
    name = node_name.rsplit(".", 1)[-1]
    head, _, tail = name.rpartition("_seed")
    return head if head and tail.isdigit() else name


def time_summary(path: Path) -> dict:
    """What the run log says: each run's start, end and wall time (a run that was killed ends
    at its last node), and the nodes' seconds by kind, summed over every run.

    A run's wall time includes any time its processes were stopped (``kill -STOP``); its
    ``paused_s``, and the total's, is that time as its ``PauseWatch`` saw it. A line
    that is not an event (one cut short by a kill) is skipped, its number listed under
    ``unread_lines``; a file none of whose lines is an event is an error naming it."""
    runs: dict[str, dict] = {}
    kinds: dict[str, dict] = {}
    unread: list[int] = []
    first_error = ""
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            e = json.loads(line)
            run_key, at = e["run"], datetime.fromisoformat(e["at"])
            if e["event"] in ("node", "pause"):
                node, seconds = e.get("node"), float(e["seconds"])
            elif e["event"] == "end":
                end_wall = float(e["wall_s"])
        except (ValueError, KeyError, TypeError) as err:
            unread.append(number)
            first_error = first_error or f"line {number}: {type(err).__name__}: {err}"
            continue
        run = runs.setdefault(run_key, {"run": run_key, "nodes_run": 0, "paused_s": 0.0})
        if e["event"] == "start":
            run.update(start=at, runner=e.get("runner"), workers=e.get("workers"),
                       env=e.get("env"), to_run=e.get("to_run"))  # fmt: skip
        elif e["event"] == "pause":
            run["paused_s"] += seconds
        elif e["event"] == "node":
            run["nodes_run"] += 1
            run["last"] = at
            k = kinds.setdefault(_kind(node), {"nodes": 0, "seconds": 0.0})
            k["nodes"] += 1
            k["seconds"] += seconds
        elif e["event"] == "end":
            run["end"], run["wall"] = at, end_wall
    if unread and not runs:
        raise ValueError(
            f"{path}: no line is a run-log event ({first_error}); the run log is the "
            "*.times.jsonl file beside the incremental runner's records"
        )
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
        "paused_s": sum(r["paused_s"] for r in out),
        "node_seconds": sum(k["seconds"] for k in kinds.values()),
        "kinds": dict(sorted(kinds.items(), key=lambda kv: -kv[1]["seconds"])),
        "unread_lines": unread,
    }
