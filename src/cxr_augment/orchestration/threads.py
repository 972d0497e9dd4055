"""One thread per worker process when nodes run in parallel.

On a CPU, two single-thread processes training side by side go faster than one process with
two threads (torch's intra-op threads scale poorly on small images); and two processes with
all the cores' threads each oversubscribe the machine. So a worker process of Kedro's
``ParallelRunner`` or of Dagster's multiprocess executor runs torch with ``CXR_WORKER_THREADS``
threads (default 1); the main process of a sequential run keeps torch's default (all cores).
"""

from __future__ import annotations

import multiprocessing
import os
import sys


def worker_threads() -> int:
    return max(1, int(os.environ.get("CXR_WORKER_THREADS", "1")))


def in_worker() -> bool:
    """A process Kedro's ParallelRunner or Dagster's multiprocess executor started for a node."""
    return multiprocessing.parent_process() is not None or "execute_step" in sys.argv


def limit_threads() -> None:
    """In a worker, cap torch's (and OpenMP's) threads; elsewhere do nothing."""
    if not in_worker():
        return
    n = worker_threads()
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(n))
    if "torch" in sys.modules:
        import torch

        torch.set_num_threads(n)
