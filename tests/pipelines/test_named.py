"""Bound node functions keep their names in a ParallelRunner worker, and their code versions."""

from __future__ import annotations

import pickle
from functools import partial, update_wrapper
from multiprocessing.reduction import ForkingPickler

from kedro.pipeline import Node

from cxr_augment.orchestration.versions import node_version
from cxr_augment.pipelines.named import NamedPartial, named


def scaled(x, factor):
    """x times factor."""
    return x * factor


def _worker_copy(obj):
    return pickle.loads(ForkingPickler.dumps(obj))  # how ParallelRunner sends a node


def test_a_named_node_function_keeps_its_name_where_a_partial_loses_it():
    plain = Node(update_wrapper(partial(scaled, factor=3), scaled), "x", "y", name="n")
    ours = Node(named(scaled, factor=3), "x", "y", name="n")
    assert not hasattr(_worker_copy(plain).func, "__name__")  # multiprocessing's own reducer
    copy = _worker_copy(ours)
    assert copy.func.__name__ == "scaled" and copy.func.__doc__ == "x times factor."
    assert isinstance(copy.func, NamedPartial) and isinstance(copy.func, partial)
    assert copy.func(2) == 6 and copy.func.keywords == {"factor": 3}
    assert "<partial>" not in str(copy)


def test_the_code_version_is_the_partials():
    plain = Node(update_wrapper(partial(scaled, factor=3), scaled), "x", "y", name="n")
    ours = Node(named(scaled, factor=3), "x", "y", name="n")
    assert node_version(ours, {}) == node_version(plain, {})
    assert node_version(ours, {}) != node_version(
        Node(named(scaled, factor=4), "x", "y", name="n"), {}
    )
