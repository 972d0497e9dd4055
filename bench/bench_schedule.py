"""Benchmark: the order in which a parallel run starts its nodes, on a pipeline's real graph.

    python bench/bench_schedule.py [--env study] [--pipelines demo_data,preprocessing,...]
        [--run-log data/.incremental/nodes.times.jsonl] [--workers 2] [--orders 200]

Replays the run on its graph with each node's expected seconds (``schedule.expected_seconds``:
its last time in the run log, else its kind's median, else one second) and ``--workers``
workers, in two orders, in the same process:

- **Kedro's** (the baseline): each time a node finishes, the nodes that became ready are handed
  to the pool in the order of a Python set (a string hash, random per process: ``--orders``
  seeded shuffles stand for it), and the pool starts them first in, first out;
- **ours** (``ParallelIncrementalRunner``): a free worker takes the ready node with the
  longest expected path to the end (``schedule.ranks``).

Reports each order's makespan (the baseline's mean, best and worst over its orders), the
lower bound (the longer of the total work over the workers and the longest path), and the
ratios. The replay counts no start-up or loading time and assumes each node takes its
expected seconds; the run log's real times are what a run measures. Saves
bench/results/schedule.json.
"""

from __future__ import annotations

import argparse
import heapq
import os
import random
import statistics
import sys
from pathlib import Path

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from _common import save_results  # noqa: E402  (same folder)

from cxr_augment.orchestration import run_log, schedule  # noqa: E402


def replay(deps: dict, seconds: dict, workers: int, pick) -> float:
    """The makespan of list scheduling: ``pick(ready_batch, queue)`` adds the nodes that just
    became ready to the queue; ``queue.pop()``-like ``take(queue)`` gives the next to start."""
    readers: dict[str, list[str]] = {n: [] for n in deps}
    for n, parents in deps.items():
        for p in parents:
            readers[p].append(n)
    missing = {n: len(parents) for n, parents in deps.items()}
    add, take = pick
    queue: list = []
    add([n for n, k in missing.items() if k == 0], queue)
    running: list[tuple[float, str]] = []  # (end time, node)
    now, free = 0.0, workers
    done = 0
    while done < len(deps):
        while free and queue:
            node = take(queue)
            heapq.heappush(running, (now + seconds[node], node))
            free -= 1
        now, node = heapq.heappop(running)
        finished = [node]
        while running and running[0][0] == now:  # several at once: one batch, as Kedro's wait
            finished.append(heapq.heappop(running)[1])
        ready = []
        for node in finished:
            free += 1
            done += 1
            for r in readers[node]:
                missing[r] -= 1
                if missing[r] == 0:
                    ready.append(r)
        add(ready, queue)
    return now


def fifo(seed: int):
    rng = random.Random(seed)

    def add(batch, queue):
        batch = sorted(batch)
        rng.shuffle(batch)  # a set's order
        queue.extend(batch)

    def take(queue):
        return queue.pop(0)

    return add, take


def by_rank(rank: dict):
    order = iter(range(10**9))

    def add(batch, queue):
        for n in sorted(batch):
            heapq.heappush(queue, (-rank[n], next(order), n))

    def take(queue):
        return heapq.heappop(queue)[2]

    return add, take


def graph(env: str, pipelines: str) -> dict[str, list[str]]:
    os.environ["KEDRO_ENV"] = env
    from kedro.framework.startup import bootstrap_project

    bootstrap_project(ROOT)
    from kedro.pipeline import Pipeline

    from cxr_augment.pipeline_registry import register_pipelines

    registered = register_pipelines()
    pipe = sum((registered[p] for p in pipelines.split(",")), start=Pipeline([]))
    return {n.name: [p.name for p in ps] for n, ps in pipe.node_dependencies.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--env", default="study")
    ap.add_argument(
        "--pipelines", default="demo_data,preprocessing,generation,classification,augmentation"
    )
    ap.add_argument("--run-log", default=str(ROOT / "data/.incremental/nodes.times.jsonl"))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--orders", type=int, default=200)
    ap.add_argument("--out", default=str(ROOT / "bench/results/schedule.json"))
    args = ap.parse_args()

    deps = graph(args.env, args.pipelines)
    log = Path(args.run_log)
    seconds = schedule.expected_seconds(deps, log if log.exists() else None)
    rank = schedule.ranks(deps, seconds)
    logged_times = run_log.node_seconds(log)
    logged = sum(1 for n in deps if n in logged_times)
    baseline = [replay(deps, seconds, args.workers, fifo(s)) for s in range(args.orders)]
    ours = replay(deps, seconds, args.workers, by_rank(rank))
    work = sum(seconds.values())
    bound = max(work / args.workers, max(rank.values()))
    results = {
        "env": args.env,
        "pipelines": args.pipelines,
        "run_log": str(log),
        "nodes": len(deps),
        "nodes_with_a_logged_time": logged,
        "workers": args.workers,
        "work_s": round(work, 1),
        "longest_path_s": round(max(rank.values()), 1),
        "lower_bound_s": round(bound, 1),
        "kedro_order_s": {
            "orders": args.orders,
            "mean": round(statistics.mean(baseline), 1),
            "best": round(min(baseline), 1),
            "worst": round(max(baseline), 1),
        },
        "longest_path_first_s": round(ours, 1),
        "ratio_mean_to_ours": round(statistics.mean(baseline) / ours, 3),
        "ratio_worst_to_ours": round(max(baseline) / ours, 3),
        "ours_over_lower_bound": round(ours / bound, 3),
    }
    for k, v in results.items():
        print(f"{k:28s} {v}")
    save_results(results, args.out)


if __name__ == "__main__":
    main()
