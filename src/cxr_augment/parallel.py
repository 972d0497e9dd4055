"""Process pools that share the parent's memory (fork) and always end cleanly."""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable, Iterable


def fork_map(
    func: Callable,
    items: Iterable,
    workers: int,
    chunksize: int = 1,
    initializer: Callable | None = None,
) -> list:
    """``[func(x) for x in items]`` in ``workers`` forked processes, in order.

    Workers inherit the parent's memory (the job to run is set in a module global before the
    call). The pool is closed and joined: ``Pool.__exit__`` terminates instead, which can kill
    a worker while it holds the task queue's lock and leave the join waiting forever; it is
    terminated only when something failed.
    """
    items = list(items)
    if workers <= 1 or len(items) < 2 or "fork" not in mp.get_all_start_methods():
        if initializer is not None:
            initializer()
        return [func(x) for x in items]
    pool = mp.get_context("fork").Pool(workers, initializer=initializer)
    try:
        results = pool.map(func, items, chunksize=chunksize)
        pool.close()
    except BaseException:
        pool.terminate()
        raise
    finally:
        pool.join()
    return results
