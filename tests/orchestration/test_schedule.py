"""The parallel runner's order of starting (``orchestration/schedule.py``): ranks by the longest
expected path to the end, expected seconds from the run log, the dispatch that starts the best
ready task when a worker is free, and the runner that uses it."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from kedro.framework.hooks.manager import _create_hook_manager
from kedro.io import SharedMemoryDataCatalog
from kedro.pipeline import Node, Pipeline
from kedro_datasets.json import JSONDataset

from cxr_augment.orchestration import schedule
from cxr_augment.orchestration.runner import ParallelIncrementalRunner


def test_ranks_are_the_longest_expected_path_to_the_end():
    # a -> b -> c and a -> d; e alone; f reads c and e
    deps = {"a": [], "b": ["a"], "c": ["b"], "d": ["a"], "e": [], "f": ["c", "e"]}
    seconds = {"a": 10, "b": 20, "c": 30, "d": 100, "e": 1, "f": 5}
    r = schedule.ranks(deps, seconds)
    assert r == {"f": 5, "c": 35, "e": 6, "b": 55, "d": 100, "a": 110}
    # without times, the number of nodes on the longest chain from each
    assert schedule.ranks(deps, {}) == {"a": 4, "b": 3, "c": 2, "d": 1, "e": 2, "f": 1}
    with pytest.raises(ValueError, match="cycle"):
        schedule.ranks({"a": ["b"], "b": ["a"]}, {})


def test_expected_seconds_are_the_last_time_else_the_kind_s_median_else_one(tmp_path):
    log = tmp_path / "nodes.times.jsonl"
    events = [
        {"event": "start", "run": "r"},
        {"event": "node", "node": "x.train_classifier_seed1", "seconds": 100.0},
        {"event": "node", "node": "x.train_classifier_seed1", "seconds": 120.0},  # last counts
        {"event": "node", "node": "y.train_classifier_seed2", "seconds": 200.0},
        {"event": "node", "node": "z.train_classifier_seed1", "seconds": 400.0},
        {"event": "node", "node": "x.evaluate", "seconds": float("nan")},
    ]
    log.write_text("\n".join(json.dumps(e) for e in events) + '\n{"event": "node", "no')
    names = ["x.train_classifier_seed1", "new.train_classifier_seed3", "x.evaluate", "other"]
    got = schedule.expected_seconds(names, log)
    # the kind's median of 120, 200 and 400; a NaN time counts as none; unknown: one second
    assert got == {
        "x.train_classifier_seed1": 120.0,
        "new.train_classifier_seed3": 200.0,
        "x.evaluate": 1.0,
        "other": 1.0,
    }
    assert schedule.expected_seconds(["a"], tmp_path / "missing.jsonl") == {"a": 1.0}
    assert schedule.expected_seconds(["a"], None) == {"a": 1.0}


def test_the_dispatch_starts_the_best_ready_task_when_a_worker_is_free():
    release = threading.Event()
    with ThreadPoolExecutor(max_workers=1) as pool:
        dispatch = schedule.PriorityDispatch(pool.submit, workers=1)
        blocker = dispatch.submit_ranked(0.5, release.wait, 10)
        dispatch.start_ready()  # the only one: it starts although its rank is low
        ranked = {r: dispatch.submit_ranked(r, lambda r=r: r * 10) for r in (1, 5, 3, 4, 2)}
        dispatch.start_ready()  # the worker is busy: nothing more starts
        assert [rank for rank, _ in dispatch.started] == [0.5]
        release.set()
        assert blocker.result(timeout=10) is True
        for _ in range(5):  # as the runner does: start the best, wait for it to finish
            dispatch.start_ready()
            ranked[dispatch.started[-1][0]].result(timeout=10)
        assert [rank for rank, _ in dispatch.started] == [0.5, 5, 4, 3, 2, 1]
        assert {r: f.result() for r, f in ranked.items()} == {1: 10, 5: 50, 3: 30, 4: 40, 2: 20}


def test_a_failure_reaches_its_future_and_close_fails_what_never_started():
    release = threading.Event()

    def fail_when_released():
        release.wait(10)
        return 1 / 0

    with ThreadPoolExecutor(max_workers=1) as pool:
        dispatch = schedule.PriorityDispatch(pool.submit, workers=1)
        failing = dispatch.submit_ranked(2, fail_when_released)
        waiting = dispatch.submit_ranked(1, time.sleep, 0)
        dispatch.start_ready()  # the one worker is busy until released
        dispatch.close()
        with pytest.raises(RuntimeError, match="not started: the run ended before its turn"):
            waiting.result(timeout=10)
        release.set()
        with pytest.raises(ZeroDivisionError):
            failing.result(timeout=10)
        assert [rank for rank, _ in dispatch.started] == [2]
        with pytest.raises(RuntimeError, match="closed"):
            dispatch.submit_ranked(3, time.sleep, 0)


def test_eager_hands_every_task_to_the_pool_as_submitted():
    # a Kedro loop that cannot be hooked: nothing would call start_ready, so nothing may wait
    gate = threading.Event()
    with ThreadPoolExecutor(max_workers=2) as pool:
        eager = schedule.PriorityDispatch(pool.submit, workers=2, eager=True)
        futures = [eager.submit_ranked(r, lambda r=r: gate.wait(10) and r) for r in (1, 3, 2)]
        assert [rank for rank, _ in eager.started] == [1, 3, 2]  # as submitted, none held
        gate.set()
        assert [f.result(timeout=10) for f in futures] == [1, 3, 2]


def test_ctrl_c_while_a_worker_starts_stops_the_dispatch():
    submitted = []

    def submit(fn, *args):
        submitted.append(fn)
        raise KeyboardInterrupt

    dispatch = schedule.PriorityDispatch(submit, workers=2)
    first = dispatch.submit_ranked(2, print)
    dispatch.submit_ranked(1, print)
    with pytest.raises(KeyboardInterrupt):
        dispatch.start_ready()
    assert submitted == [print] and isinstance(first.exception(timeout=1), KeyboardInterrupt)


# --- the runner: a chain a -> b -> c beside three independent nodes ---------------------------


def step(value):
    return {"v": value["v"] + 1}


def alone():
    return {"v": 0}


def _pipeline(tmp_path):
    names = ["a_out", "b_out", "c_out", "x_out", "y_out", "z_out"]
    catalog = SharedMemoryDataCatalog(
        datasets={n: JSONDataset(filepath=str(tmp_path / f"{n}.json")) for n in names}
    )
    pipe = Pipeline(
        [
            Node(alone, None, "a_out", name="a"),
            Node(step, "a_out", "b_out", name="b"),
            Node(step, "b_out", "c_out", name="c"),
            Node(alone, None, "x_out", name="x"),
            Node(alone, None, "y_out", name="y"),
            Node(alone, None, "z_out", name="z"),
        ]
    )
    return pipe, catalog


def _started(tmp_path, times: dict[str, float]) -> list[str]:
    state = tmp_path / "state.json"
    log = tmp_path / "state.times.jsonl"
    log.write_text("".join(
        json.dumps({"event": "node", "node": n, "seconds": s, "run": "r", "at": "2026-01-01"})
        + "\n" for n, s in times.items()
    ))  # fmt: skip
    for path in tmp_path.glob("*_out.json"):
        path.unlink()
    state.unlink(missing_ok=True)
    pipe, catalog = _pipeline(tmp_path)
    runner = ParallelIncrementalRunner(max_workers=2, state=state)
    runner.run(pipe, catalog, _create_hook_manager())
    assert json.loads((tmp_path / "c_out.json").read_text()) == {"v": 2}
    return [task.task.node.name for _, task in runner.dispatch.started]


def test_the_parallel_runner_starts_the_longest_path_first(tmp_path):
    # a, x, y and z are ready together: with the chain's times logged, a starts first
    chain_heavy = {"a": 50, "b": 50, "c": 50, "x": 1, "y": 1, "z": 1}
    started = _started(tmp_path, chain_heavy)
    assert started[0] == "a" and sorted(started) == ["a", "b", "c", "x", "y", "z"]
    # with x logged as the longest, x starts first
    assert _started(tmp_path, {**chain_heavy, "x": 1000})[0] == "x"
    # no log: a node's rank is the length of its chain; a (three) first
    assert _started(tmp_path, {})[0] == "a"
