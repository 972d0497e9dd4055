"""Which ready node a parallel run starts next: the one with the longest expected path to the
pipeline's end (critical-path list scheduling).

Kedro's ``ParallelRunner`` hands every node whose inputs are ready to its process pool at once,
in the order of a set, and the pool starts them first in, first out. A long chain (the
diffusion model's training, its generated sets, the classifiers on them, the choices made on
their validation results, the classifiers those choices train) can then wait behind a hundred
independent trainings, and run at the end with one worker idle; a 15-minute training drawn
last keeps the other worker idle as long. ``PriorityDispatch`` keeps the ready nodes itself and
gives a free worker the one whose **rank** is highest: its expected seconds plus the largest
rank among the nodes that read its outputs (``ranks``), so the work that the most work waits
on starts first.

A node's expected seconds come from the run log (``run_log.py``): what it took when it last ran,
else the median of its kind (``ptx_x.train_classifier_seed2``'s kind is ``train_classifier``),
else one second. Without a run log every node weighs one second and the rank is the length of
the longest chain of nodes after it. Only the order of starting changes: the nodes, their
results and the records are those of the plain runner.

Standard library only.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import statistics
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent import futures
from concurrent.futures import Future
from concurrent.futures import wait as futures_wait
from pathlib import Path

from cxr_augment.orchestration.run_log import _kind, node_seconds

DEFAULT_SECONDS = 1.0


def expected_seconds(names: Iterable[str], run_log: Path | None) -> dict[str, float]:
    """Each node's expected seconds: its last time in ``run_log``, else its kind's median
    there, else ``DEFAULT_SECONDS``. An unreadable log or line counts as none."""
    last = node_seconds(run_log)
    by_kind: dict[str, list[float]] = {}
    for name, seconds in last.items():
        if seconds == seconds:  # not NaN
            by_kind.setdefault(_kind(name), []).append(seconds)
    medians = {kind: statistics.median(values) for kind, values in by_kind.items()}
    out = {}
    for name in names:
        seconds = last.get(name)
        if seconds is None or seconds != seconds:
            seconds = medians.get(_kind(name), DEFAULT_SECONDS)
        out[name] = max(float(seconds), 0.0)
    return out


def ranks(dependencies: Mapping[str, Iterable[str]], seconds: Mapping[str, float]) -> dict:
    """Each node's rank: its expected seconds plus the largest rank of the nodes that depend
    on it (``dependencies``: node -> the nodes it reads from)."""
    readers: dict[str, list[str]] = {name: [] for name in dependencies}
    for name, parents in dependencies.items():
        for parent in parents:
            readers.setdefault(parent, []).append(name)
    waiting = {name: len(children) for name, children in readers.items()}
    # from the ends backwards: a node's rank once every reader's is known
    todo = [name for name, n in waiting.items() if n == 0]
    rank: dict[str, float] = {}
    while todo:
        name = todo.pop()
        best = max((rank[c] for c in readers.get(name, [])), default=0.0)
        rank[name] = seconds.get(name, DEFAULT_SECONDS) + best
        for parent in dependencies.get(name, ()):
            waiting[parent] -= 1
            if waiting[parent] == 0:
                todo.append(parent)
    if len(rank) != len(waiting):
        raise ValueError("the nodes' dependencies have a cycle")
    return rank


class PriorityDispatch:
    """Keeps submitted tasks and, at each ``start_ready``, starts the highest-ranked ones while
    fewer than ``workers`` run, through ``submit`` (a pool's own). ``submit_ranked`` returns a
    future that ends as the task's does.

    The parallel runner calls ``start_ready`` just before it waits for a task to finish, once it
    has handed over every node that became ready (``kedro_wait``), so the choice is among all
    of them, in the main process; a finished task frees its worker before its future ends.
    With ``eager`` (a Kedro whose loop cannot be hooked), every task goes to the pool as it is
    submitted, in the order submitted, as without this class."""

    def __init__(self, submit: Callable[..., Future], workers: int, eager: bool = False) -> None:
        self._submit, self._workers, self._eager = submit, max(int(workers), 1), eager
        self._pending: list = []
        self._order = itertools.count()
        self._running = 0
        self._closed = False
        self._lock = threading.Lock()
        self.started: list = []  # (rank, task) in the order started: for the log and tests

    def submit_ranked(self, rank: float, fn, /, *args, **kwargs) -> Future:
        if self._eager:
            with self._lock:
                self.started.append((rank, fn))
            return self._submit(fn, *args, **kwargs)
        outer: Future = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the dispatch is closed: no new tasks")
            heapq.heappush(self._pending, (-rank, next(self._order), fn, args, kwargs, outer))
        return outer

    def start_ready(self) -> None:
        while True:
            with self._lock:
                if self._closed or not self._pending or self._running >= self._workers:
                    return
                neg_rank, _, fn, args, kwargs, outer = heapq.heappop(self._pending)
                self._running += 1
                self.started.append((-neg_rank, fn))
            try:
                inner = self._submit(fn, *args, **kwargs)
            except Exception as err:  # the pool refused it (shut down, broken)
                self._free()
                outer.set_exception(err)
                continue
            except BaseException as err:  # Ctrl-C while it spawned a worker: stop here
                self._free()
                outer.set_exception(err)
                raise
            inner.add_done_callback(lambda done, outer=outer: self._copy(done, outer))

    def _free(self) -> None:
        with self._lock:
            self._running -= 1

    def _copy(self, inner: Future, outer: Future) -> None:
        self._free()  # first: the runner, woken by ``outer``, may start the next at once
        if inner.cancelled():
            outer.set_exception(RuntimeError("cancelled in the pool"))
        elif inner.exception() is not None:
            outer.set_exception(inner.exception())
        else:
            outer.set_result(inner.result())

    def close(self) -> None:
        """No more tasks; those not started fail with the reason."""
        with self._lock:
            self._closed = True
            pending, self._pending = self._pending, []
        for *_, outer in pending:
            outer.set_exception(RuntimeError("not started: the run ended before its turn"))


@contextlib.contextmanager
def kedro_wait(dispatch: PriorityDispatch) -> Iterator[bool]:
    """While it lasts, Kedro's runner loop starts ``dispatch``'s best tasks each time it is
    about to wait for one to finish (its module's ``wait``). Yields whether it could: a Kedro
    whose loop waits otherwise yields False (then dispatch eagerly)."""
    import kedro.runner.runner as kedro_runner

    original = getattr(kedro_runner, "wait", None)
    if original is not futures_wait:
        yield False
        return

    def wait_after_starting(fs, timeout=None, return_when=futures.ALL_COMPLETED):
        dispatch.start_ready()
        return original(fs, timeout=timeout, return_when=return_when)

    kedro_runner.wait = wait_after_starting
    try:
        yield True
    finally:
        kedro_runner.wait = original
