"""The run log's pauses (``run_log.PauseWatch``): time a run's process was stopped is logged, and
``time_summary`` gives it beside the wall time."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

from cxr_augment.orchestration.run_log import PauseWatch, log_event, time_summary


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_late_tick_is_a_pause_and_the_summary_takes_it_off_the_wall_time(tmp_path):
    log = tmp_path / "nodes.times.jsonl"
    log_event(log, {"event": "start", "run": "r", "at": "2026-01-01T10:00:00+00:00"})
    clock = _Clock()
    watch = PauseWatch(log, "r", clock=clock)
    clock.now += PauseWatch.TICK_S  # on time
    assert watch.tick() == 0.0
    clock.now += PauseWatch.TICK_S + 4.0  # late, but under MIN_PAUSE_S: CPU starvation
    assert watch.tick() == 0.0
    clock.now += PauseWatch.TICK_S + 600.0  # stopped for ten minutes
    assert watch.tick() == 600.0
    clock.now += PauseWatch.TICK_S + 30.0
    assert watch.tick() == 30.0
    assert watch.paused_s == 630.0
    log_event(
        log, {"event": "end", "run": "r", "at": "2026-01-01T10:20:00+00:00", "wall_s": 1200.0}
    )
    events = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e["event"] for e in events] == ["start", "pause", "pause", "end"]
    s = time_summary(log)
    assert s["runs"][0]["paused_s"] == 630.0 and s["runs"][0]["wall_s"] == 1200.0
    assert s["paused_s"] == 630.0 and s["wall_s"] == 1200.0


_CHILD = """
import sys, time
from cxr_augment.orchestration.run_log import PauseWatch
PauseWatch.MIN_PAUSE_S = 1.0
with PauseWatch(sys.argv[1], "r") as watch:
    print("watching", flush=True)
    time.sleep(float(sys.argv[2]))
print(watch.paused_s, flush=True)
"""


def test_a_process_stopped_by_sigstop_logs_the_time_it_was_stopped(tmp_path):
    log = tmp_path / "nodes.times.jsonl"
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(log), "1.5"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout.readline().strip() == "watching"
        child.send_signal(signal.SIGSTOP)
        time.sleep(2.0)
        child.send_signal(signal.SIGCONT)
        out, _ = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 0
    pauses = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e["event"] for e in pauses] == ["pause"]
    # the known answer: stopped for 2 s, so a tick late by at least that, less the tick it
    # would have slept anyway (how much later depends on the machine: not asserted)
    assert pauses[0]["seconds"] >= 2.0 - PauseWatch.TICK_S
    assert float(out.strip()) == pauses[0]["seconds"]  # what it logged is what it counted
