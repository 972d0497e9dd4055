"""``IncrementalRunner``: a Kedro runner that skips the nodes whose outputs are up to date.

``make run`` uses it (``kedro run --runner cxr_augment.orchestration.runner.IncrementalRunner``),
so a second run with nothing changed only checks. A node is up to date when

- each of its persisted outputs exists, and
- its **fingerprint** equals the one recorded when it last succeeded. The fingerprint hashes the
  node's version (its code and the project modules that code imports, its bound arguments and
  parameter values: ``versions.py``) with the fingerprints of its inputs: an input another
  node makes carries that node's fingerprint; a source (a file or folder no node makes) its
  size and modification time, and the code of its dataset class where that is the project's;
  and the code of its outputs' dataset classes where they are the project's.

A node whose outputs live only in memory runs when a node that reads them runs. A node runs
again when anything upstream of it changed, so a changed parameter reruns exactly the nodes
that read it and everything downstream. The records are ``data/.incremental/nodes.json``
(``--runner-params state=...`` to move them), written after each node that succeeds, so an
interrupted run resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from kedro.framework.hooks import hook_impl
from kedro.io import MemoryDataset
from kedro.pipeline import Pipeline
from kedro.runner import SequentialRunner

from cxr_augment.orchestration.versions import (
    PACKAGE,
    code_hash,
    dataset_path,
    is_parameter,
    node_version,
    path_fingerprint,
)

log = logging.getLogger(__name__)
DEFAULT_STATE = Path("data") / ".incremental" / "nodes.json"


def _read(path: Path) -> dict[str, str]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}  # no run has recorded anything yet: every node runs
    except (OSError, ValueError) as err:
        raise RuntimeError(
            f"the incremental runner's records {path} cannot be read ({err}). Delete the file "
            "to rerun every node, or run without the incremental runner (plain `kedro run`)"
        ) from err


def _write(path: Path, records: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(records, f, indent=0, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _dataset(catalog, name: str):
    try:
        return catalog.get(name, fallback_to_runtime_pattern=True)
    except TypeError:
        return catalog.get(name)


def fingerprints(pipeline: Pipeline, catalog) -> dict[str, str]:
    """Every node's fingerprint, in topological order (see the module docstring)."""
    produced: dict[str, str] = {}  # dataset -> fingerprint of the node that makes it
    result: dict[str, str] = {}
    for node in pipeline.nodes:  # topologically sorted
        params = {n: catalog.load(n) for n in node.inputs if is_parameter(n)}
        parts = [node_version(node, params)]
        for name in node.inputs:
            if is_parameter(name):
                continue
            if name in produced:
                parts.append(f"{name}<{produced[name]}")
                continue
            dataset = _dataset(catalog, name)
            if getattr(dataset, "is_state", False):
                continue
            path = dataset_path(dataset)
            parts.append(f"{name}@{path_fingerprint(path) if path else 'unknown'}")
            if type(dataset).__module__.split(".")[0] == PACKAGE:  # how a source is read
                parts.append(f"{name}:{code_hash(type(dataset).__module__)[:16]}")
        for name in node.outputs:  # how it is written: a project dataset class's code
            module = type(_dataset(catalog, name)).__module__
            if module.split(".")[0] == PACKAGE:
                parts.append(f"{name}:{code_hash(module)[:16]}")
        fp = hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]
        result[node.name] = fp
        for out in node.outputs:
            produced[out] = fp
    return result


def _persisted(catalog, name: str) -> bool:
    return not isinstance(_dataset(catalog, name), MemoryDataset)


def nodes_to_run(pipeline: Pipeline, catalog, current: dict[str, str], recorded: dict[str, str]):
    """The nodes that are not up to date, and those whose in-memory outputs they need."""
    readers: dict[str, list] = {}
    for node in pipeline.nodes:
        for name in node.inputs:
            readers.setdefault(name, []).append(node)
    run: set = set()
    for node in reversed(pipeline.nodes):
        stale = recorded.get(node.name) != current[node.name] or not node.outputs
        missing = any(_persisted(catalog, o) and not catalog.exists(o) for o in node.outputs)
        needed = any(
            not _persisted(catalog, o) and any(r in run for r in readers.get(o, ()))
            for o in node.outputs
        )
        if stale or missing or needed:
            run.add(node)
    return [n for n in pipeline.nodes if n in run]


class _Recorder:
    """Records each node's fingerprint once it has succeeded, and logs how long it took."""

    def __init__(self, path: Path, records: dict[str, str], current: dict[str, str]):
        self.path, self.records, self.current = path, records, current
        self.started: dict[str, float] = {}
        self.seconds: dict[str, float] = {}

    @hook_impl
    def before_node_run(self, node) -> None:
        self.started[node.name] = time.perf_counter()

    @hook_impl
    def after_node_run(self, node) -> None:
        if node.name in self.started:
            self.seconds[node.name] = time.perf_counter() - self.started.pop(node.name)
            log.info("%s took %.1f s", node.name, self.seconds[node.name])
        if node.name in self.current:
            self.records[node.name] = self.current[node.name]
            _write(self.path, self.records)

    def summary(self, top: int = 8) -> str:
        """The slowest nodes of the run and the total, one line."""
        slow = sorted(self.seconds.items(), key=lambda kv: -kv[1])[:top]
        parts = ", ".join(f"{name} {sec:.0f} s" for name, sec in slow)
        return f"{len(self.seconds)} nodes in {sum(self.seconds.values()):.0f} s; slowest: {parts}"


class IncrementalRunner(SequentialRunner):
    """A ``SequentialRunner`` that runs only the nodes that are not up to date."""

    def __init__(self, is_async: bool = False, state: str | os.PathLike = DEFAULT_STATE):
        super().__init__(is_async=is_async)
        self._state = Path(state)

    def run(self, pipeline: Pipeline, catalog, hook_manager=None, run_id=None, **kwargs: Any):
        current = fingerprints(pipeline, catalog)
        recorded = _read(self._state)
        todo = nodes_to_run(pipeline, catalog, current, recorded)
        skipped = len(pipeline.nodes) - len(todo)
        self._logger.info(
            "Incremental run: %d of %d nodes up to date and skipped, %d to run (records: %s)",
            skipped,
            len(pipeline.nodes),
            len(todo),
            self._state,
        )
        recorder = _Recorder(self._state, recorded, current)
        if hook_manager is not None:
            hook_manager.register(recorder)
        try:
            if not todo:
                return {}
            return super().run(
                pipeline.filter(node_names=[n.name for n in todo]),
                catalog,
                hook_manager,
                run_id,
                **kwargs,
            )
        finally:
            if hook_manager is not None:
                hook_manager.unregister(recorder)
            if recorder.seconds:
                self._logger.info("Incremental run: %s", recorder.summary())
