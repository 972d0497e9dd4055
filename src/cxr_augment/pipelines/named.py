"""Node functions with keyword arguments bound, that keep their function's name everywhere."""

from __future__ import annotations

from functools import partial, update_wrapper


class NamedPartial(partial):
    """A ``functools.partial`` that keeps the name ``update_wrapper`` gives it in a worker of
    Kedro's ``ParallelRunner``.

    multiprocessing's pickler rebuilds a ``functools.partial`` from its function and arguments
    only (``multiprocessing.reduction``), dropping its ``__name__``: the worker then logs the
    node as ``<partial>`` and Kedro warns about it for every such node. A subclass is pickled
    the ordinary way, its attributes included. It is still a partial (Kedro's node names and
    the project's code versions read it as one).
    """


def named(func, **kwargs) -> NamedPartial:
    """``func`` with ``kwargs`` bound, named and documented as ``func``."""
    return update_wrapper(NamedPartial(func, **kwargs), func)
