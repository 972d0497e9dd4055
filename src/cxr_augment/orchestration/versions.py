"""Versions of nodes and fingerprints of datasets: what "up to date" means, for Kedro and Dagster.

A node's **version** hashes what decides its outputs besides its inputs: the source of the module
that defines its function (the node's own code), the arguments bound to the function (an
experiment's name, a generator's), its input and output names, and the values of its parameter
inputs. Dagster uses it as the asset's code version: change a parameter and exactly the nodes
that read it, and what lies downstream of them, show as unsynced. The incremental runner
(``runner.py``) uses it with the fingerprints of the node's inputs.

The version does not see code the node calls in other modules (a domain function's body): after
changing one, rerun the affected pipeline in full (``kedro run --pipeline ...`` without the
incremental runner) or materialise the assets in Dagster.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=repr, separators=(",", ":"))


@functools.cache
def _module_source_hash(module_name: str) -> str:
    module = sys.modules.get(module_name)
    try:
        source = inspect.getsource(module) if module is not None else module_name
    except (OSError, TypeError):
        source = module_name
    return hashlib.sha256(source.encode()).hexdigest()


def _unwrap(func: Callable) -> tuple[Callable, tuple, dict]:
    args: tuple = ()
    keywords: dict = {}
    while isinstance(func, functools.partial):
        args = func.args + args
        keywords = {**func.keywords, **keywords}
        func = func.func
    return func, args, keywords


def is_parameter(name: str) -> bool:
    return name.startswith("params:") or name == "parameters"


def node_version(node, parameters: Mapping[str, Any]) -> str:
    """The node's version (16 hex digits). ``parameters`` maps each of its parameter inputs
    (``params:...``) to its value."""
    func, args, keywords = _unwrap(node.func)
    parts = {
        "function": f"{getattr(func, '__module__', '')}.{getattr(func, '__qualname__', repr(func))}",
        "module": _module_source_hash(getattr(func, "__module__", "") or ""),
        "bound": [_canonical(args), _canonical(keywords)],
        "inputs": list(node.inputs),
        "outputs": list(node.outputs),
        "parameters": {n: _canonical(parameters[n]) for n in node.inputs if is_parameter(n)},
    }
    return hashlib.sha256(_canonical(parts).encode()).hexdigest()[:16]


def path_fingerprint(path: str | os.PathLike) -> str | None:
    """Size and modification time of a file, or of every file under a folder (``None`` when the
    path does not exist): how ``make`` tells a source changed."""
    root = Path(path)
    if not root.exists():
        return None
    digest = hashlib.sha256()
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    for f in files:
        st = f.stat()
        digest.update(f"{f.relative_to(root.parent)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def dataset_path(dataset) -> str | None:
    """The file or folder a Kedro dataset reads (``filepath`` or ``path`` of its description)."""
    return _path_in(dataset._describe())


def _path_in(described: dict) -> str | None:
    for key in ("filepath", "path"):
        if described.get(key):
            return str(described[key])
    for value in described.values():  # a wrapper (read-only, optional) describes its dataset
        if isinstance(value, dict) and (found := _path_in(value)):
            return found
    return None
