"""``IncrementalRunner``: a Kedro runner that skips the nodes whose outputs are up to date.

``make run`` uses it (``kedro run --runner cxr_augment.orchestration.runner.IncrementalRunner``),
so a second run with nothing changed only checks. A node is up to date when

- each of its persisted outputs exists, and
- its **fingerprint** equals the one recorded when it last succeeded. The fingerprint hashes the
  node's version (the project code its function can run, its bound arguments and parameter
  values: ``versions.py``) with the fingerprints of its inputs: an input another
  node makes carries that node's fingerprint; a source (a file or folder no node makes) its
  bytes (a file of up to 512 MiB) or its files' sizes and modification times (a larger file, a
  folder), and the code of its dataset class where that is the project's;
  and the code of its outputs' dataset classes where they are the project's.

An input made by a node outside the pipeline being run (``kedro run --pipelines
classification`` after ``make study``) carries its maker's fingerprint, as in a run of the
whole project, when the maker's record says it is up to date (``made_outside``), so a node's
fingerprint does not depend on which pipeline runs it.

A node whose outputs live only in memory runs when a node that reads them runs. A node runs
again when anything upstream of it changed, so a changed parameter reruns exactly the nodes
that read it and everything downstream, with one exception: a node whose turn comes and
whose inputs are byte for byte those it last ran on (``content_key``: its version, its
persisted inputs' ``path_fingerprint``, its in-memory inputs' values or makers' keys;
recorded in ``<records>.inputs.json`` with its outputs' ``outputs_key``, which must be as it
left them)
is not run, so a maker that reran and wrote the same bytes stops there. Both runner loops
make their tasks through ``kedro.runner.runner.Task``, which points at ``_Task`` during a
run: it asks the runner when it is made, in the main process.

The records are ``data/.incremental/nodes.json``
(``--runner-params state=...`` to move them), written after each node that succeeds (once its
outputs are saved), so an interrupted run resumes where it stopped. Beside them,
``nodes.times.jsonl`` logs each run's start and end, each node's seconds and the time the run
was stopped (``time_summary`` sums them, for a study run in pieces: ``run_log.py``,
``python scripts/run_times.py``).

``ParallelIncrementalRunner`` does the same on Kedro's ``ParallelRunner``: the nodes to run go to
worker processes, one torch thread each, and the main process writes the records; the two
runners share them, so either can resume what the other began. Of the nodes ready to run, a
free worker gets the one with the longest expected path to the end (``schedule.py``). Records
written under the module-level code versions (``versions.py``, ``legacy``), or before a source
file counted by its bytes, are carried over to the current ones where they still match
(``carry_over``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kedro.io import MemoryDataset
from kedro.pipeline import Pipeline
from kedro.runner import ParallelRunner, SequentialRunner
from kedro.runner.task import Task

from cxr_augment.orchestration import schedule
from cxr_augment.orchestration.run_log import PauseWatch, log_event, stamp, times_path
from cxr_augment.orchestration.versions import (
    PACKAGE,
    dataset_path,
    is_parameter,
    node_version,
    object_code,
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


@contextlib.contextmanager
def _exclusive(state: Path) -> Iterator[None]:
    """One run at a time on one set of records: each run rewrites the whole file, so two at
    once (``make study`` beside ``make run``) would each drop the other's records. A lock on
    ``<records>.lock`` (released by the system if the process dies); a second run is an error
    naming the file and the process that holds it."""
    import fcntl

    state.parent.mkdir(parents=True, exist_ok=True)
    lock = state.with_name(state.name + ".lock")
    with open(lock, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise RuntimeError(
                f"another incremental run is using the records {state} (held by {holder}, lock "
                f"{lock}). Wait for it to finish, or give this run its own records with "
                "--runner-params state=<file>"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}")
        f.flush()
        try:
            yield
        finally:
            f.seek(0)
            f.truncate()
            fcntl.flock(f, fcntl.LOCK_UN)


def _dataset(catalog, name: str):
    try:
        return catalog.get(name, fallback_to_runtime_pattern=True)
    except TypeError:
        return catalog.get(name)


def fingerprints(
    pipeline: Pipeline,
    catalog,
    legacy: bool = False,
    made: dict[str, str] | None = None,
    content: bool = True,
) -> dict[str, str]:
    """Every node's fingerprint, in topological order (see the module docstring); ``legacy``:
    under the module-level code versions (``versions.py``). ``made``: datasets that nodes
    outside ``pipeline`` make and have made as their code now says, each with its maker's
    fingerprint (``made_outside``); such an input carries that fingerprint, as it does when its
    maker is in the pipeline, rather than its file's. ``content=False``: a source file counts
    by its size and modification time, as records written before it counted by its bytes."""
    produced: dict[str, str] = dict(made or {})  # dataset -> fingerprint of its maker
    result: dict[str, str] = {}
    for node in pipeline.nodes:  # topologically sorted
        params = {n: catalog.load(n) for n in node.inputs if is_parameter(n)}
        parts = [node_version(node, params, legacy)]
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
            parts.append(f"{name}@{path_fingerprint(path, content) if path else 'unknown'}")
            if type(dataset).__module__.split(".")[0] == PACKAGE:  # how a source is read
                parts.append(f"{name}:{object_code(type(dataset), legacy)[:16]}")
        for name in node.outputs:  # how it is written: a project dataset class's code
            kind = type(_dataset(catalog, name))
            if kind.__module__.split(".")[0] == PACKAGE:
                parts.append(f"{name}:{object_code(kind, legacy)[:16]}")
        fp = hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]
        result[node.name] = fp
        for out in node.outputs:
            produced[out] = fp
    return result


def _project_nodes() -> list:
    """Every node of the project's pipelines (none outside a Kedro project). Each pipeline
    folder's ``create_pipeline``, as ``find_pipelines`` finds them: Kedro's own registry holds
    only the pipelines a run asked for."""
    import importlib
    import pkgutil

    try:
        from kedro.framework.project import PACKAGE_NAME

        if not PACKAGE_NAME:
            return []
        package = importlib.import_module(f"{PACKAGE_NAME}.pipelines")
        found: dict = {}
        for info in pkgutil.iter_modules(package.__path__):
            create = getattr(importlib.import_module(f"{package.__name__}.{info.name}"),
                             "create_pipeline", None)  # fmt: skip
            for node in create().nodes if create is not None else ():
                found.setdefault(node.name, node)
        return list(found.values())
    except Exception as err:  # no project configured (a bare runner, as in a test)
        log.debug("no project pipelines: %s", err)
        return []


def made_outside(
    pipeline: Pipeline,
    catalog,
    recorded: dict[str, str],
    project_nodes: list | None = None,
    content: bool = True,
) -> dict[str, str]:
    """The inputs of ``pipeline`` that nodes outside it make and are up to date for: each
    with its maker's fingerprint, computed with everything upstream of it as in a run of the
    whole project (``project_nodes``: every pipeline's nodes, ``_project_nodes``).

    So a node's fingerprint does not depend on which pipeline runs it: after ``make study``,
    ``kedro run --pipelines classification`` finds the same fingerprints and skips what the
    study did. A maker whose record differs from its fingerprint (its code changed, or it
    never ran) is left out, and its output counts by its file as before: a node that reads it
    runs again once the maker has."""
    nodes = project_nodes if project_nodes is not None else _project_nodes()
    inside = {n.name for n in pipeline.nodes}
    makers = {o: n for n in nodes if n.name not in inside for o in n.outputs}
    wanted = {makers[i].name for i in pipeline.inputs() if i in makers}
    if not wanted:
        return {}
    try:  # the makers and everything upstream of them, as the whole project runs them
        upstream = Pipeline(nodes).to_nodes(*wanted)
    except Exception as err:  # pipelines that cannot be joined (two makers of a dataset)
        log.info("Incremental run: inputs made outside the pipeline count by their files (%s)", err)
        return {}
    fps = fingerprints(upstream, catalog, content=content)
    return {
        i: fps[makers[i].name]
        for i in pipeline.inputs()
        if i in makers and recorded.get(makers[i].name) == fps[makers[i].name]
    }


def carry_over(pipeline: Pipeline, catalog, current: dict[str, str], recorded: dict[str, str]):
    """The records written under an earlier scheme that still match carried over to the
    current fingerprint: those of source files counted by size and modification time (before
    a file counted by its bytes), and those of the module-level code versions (``legacy``,
    with sources by size and time, as they were then). Each earlier scheme sees every change
    the current one sees, so such a node is up to date."""
    stale = [n for n, fp in current.items() if recorded.get(n) not in (None, fp)]
    if not stale:
        return recorded
    carried: dict[str, str] = {}
    for legacy, what in ((False, "of source files by size and time"),
                         (True, "of the module-level code versions")):  # fmt: skip
        left = [n for n in stale if n not in carried]
        if not left:
            break
        made = made_outside(pipeline, catalog, recorded, content=False) if not legacy else None
        earlier = fingerprints(pipeline, catalog, legacy=legacy, made=made, content=False)
        found = {n: current[n] for n in left if recorded[n] == earlier[n]}
        if found:
            log.info(
                "Incremental run: %d records %s carried over (unchanged since)", len(found), what
            )
        carried.update(found)
    return {**recorded, **carried}


def carry_from(
    recorded: dict[str, str], earlier: dict[str, str], current: dict[str, str]
) -> tuple[dict[str, str], list[str]]:
    """The records, with each one made under an earlier code (``earlier``: every node's
    fingerprint under that code, on the same data and pipeline) moved to its fingerprint under
    the current code; and the names of the nodes moved. Only a record equal to the earlier
    fingerprint and not to the current one moves: a record of any other code, or of other
    inputs, stays as it is. For when the change between the two codes cannot change these
    nodes' results (a message, a comment the code versions still see), which the person who
    carries them over decides (``scripts/carry_records.py``)."""
    moved = sorted(
        n for n, fp in recorded.items()
        if n in earlier and n in current and fp == earlier[n] and fp != current[n]
    )  # fmt: skip
    return {**recorded, **{n: current[n] for n in moved}}, moved


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


def content_path(state: Path) -> Path:
    """The records of each node's inputs by their bytes, beside ``state``."""
    return state.with_name(state.stem + ".inputs.json")


def value_digest(value: Any) -> str | None:
    """A digest of an in-memory value that its bytes decide: a dict, list or scalar (as
    canonical JSON), a pandas table or series (its values, index, columns and dtypes), a NumPy
    array; None for anything else (a model, a store handle), which is then known by its maker.
    """
    import numpy as np
    import pandas as pd

    digest = hashlib.sha256()
    try:
        if isinstance(value, pd.DataFrame | pd.Series):
            frame = value if isinstance(value, pd.DataFrame) else value.to_frame()
            head = [type(value).__name__, list(frame.columns), frame.dtypes.astype(str).tolist()]
            digest.update(b"pandas|" + json.dumps(head, default=repr).encode())
            digest.update(pd.util.hash_pandas_object(frame, index=True).to_numpy().tobytes())
        elif isinstance(value, np.ndarray):
            if value.dtype == object:
                return None
            digest.update(f"numpy|{value.dtype.str}|{value.shape}|".encode())
            digest.update(np.ascontiguousarray(value).tobytes())
        elif value is None or isinstance(value, dict | list | tuple | str | int | float | bool):
            digest.update(b"json|")
            digest.update(json.dumps(value, sort_keys=True, separators=(",", ":")).encode())
        else:
            return None
    except TypeError:  # not data: a dict holding a model, a column of unhashable cells
        return None  # (the caller then knows the value by its maker, as documented above)
    return digest.hexdigest()[:16]


def _memory_value(dataset) -> Any:
    """What an in-memory dataset holds, without the copy its ``load`` may make (the shared
    dataset of a parallel run: loaded); ``_EMPTY`` when nothing was saved."""
    shared = getattr(dataset, "shared_memory_dataset", None)
    if shared is not None:
        return shared.load() if shared.exists() else _EMPTY
    return getattr(dataset, "_data", _EMPTY)


_EMPTY = object()


def content_key(node, catalog, made: dict[str, str], by_value: bool = True) -> str | None:
    """What a node's outputs depend on, by its inputs' **bytes** rather than their makers:
    its version (code, bound arguments, parameter values), each persisted input's
    ``path_fingerprint`` (a file's bytes), each in-memory input's value (``value_digest``:
    an experiment's settings, its table of images) or, for a value that has none, its maker's
    key (``made``, as the run computed it), and the code of its inputs' and outputs' project
    dataset classes. None when it cannot be known (an in-memory input whose value is not there
    and whose maker's key is not known, an input with no path). ``by_value=False``: every
    in-memory input by its maker's key (the records made before values were read)."""
    params = {n: catalog.load(n) for n in node.inputs if is_parameter(n)}
    parts = [node_version(node, params)]
    for name in node.inputs:
        if is_parameter(name):
            continue
        dataset = _dataset(catalog, name)
        if getattr(dataset, "is_state", False):
            continue
        if isinstance(dataset, MemoryDataset):
            value = _memory_value(dataset) if by_value else _EMPTY
            digest = value_digest(value) if value is not _EMPTY else None
            if digest is not None:
                parts.append(f"{name}={digest}")
            elif name in made:
                parts.append(f"{name}<{made[name]}")
            else:
                return None
            continue
        path = dataset_path(dataset)
        found = path_fingerprint(path) if path else None
        if found is None:
            return None
        parts.append(f"{name}#{found}")
        if type(dataset).__module__.split(".")[0] == PACKAGE:
            parts.append(f"{name}:{object_code(type(dataset))[:16]}")
    for name in node.outputs:
        kind = type(_dataset(catalog, name))
        if kind.__module__.split(".")[0] == PACKAGE:
            parts.append(f"{name}:{object_code(kind)[:16]}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def outputs_key(node, catalog) -> str | None:
    """The bytes of a node's outputs as it left them (each one's ``path_fingerprint``); None
    when one is missing, in memory or has no path."""
    parts = []
    for name in node.outputs:
        dataset = _dataset(catalog, name)
        if isinstance(dataset, MemoryDataset):
            return None
        path = dataset_path(dataset)
        found = path_fingerprint(path) if path else None
        if found is None:
            return None
        parts.append(f"{name}#{found}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


_DECIDE = None  # the running incremental runner's decision, while its run goes on


class _Task(Task):
    """Kedro's ``Task``, made when a node's turn comes (its inputs are then written): the
    incremental runner decides there whether the node's inputs are, byte for byte, the ones it
    last ran on (``cut``), in which case the task does nothing. Both runner loops make their
    tasks through ``kedro.runner.runner.Task``, which ``_tasks`` points here during a run."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.cut = bool(_DECIDE is not None and _DECIDE(self.node))

    def execute(self):
        return self.node if self.cut else super().execute()


@contextlib.contextmanager
def _tasks(decide) -> Iterator[None]:
    import kedro.runner.runner as kedro_runner

    global _DECIDE
    if kedro_runner.Task is not Task:  # Kedro changed how its loops make tasks
        log.warning("Incremental run: Kedro's runner makes its tasks otherwise; no node is "
                    "skipped by its inputs' bytes")  # fmt: skip
        yield
        return
    kedro_runner.Task, _DECIDE = _Task, decide
    try:
        yield
    finally:
        kedro_runner.Task, _DECIDE = Task, None


class _Incremental:
    """What ``IncrementalRunner`` and ``ParallelIncrementalRunner`` share: the nodes to run, and
    each node's record, written by the main process once the node's outputs are saved (a
    worker of the ``ParallelRunner`` cannot write them: Kedro runs its hooks in the worker)."""

    def __init__(self, *args, state: str | os.PathLike = DEFAULT_STATE, **kwargs):
        super().__init__(*args, **kwargs)
        self._state = Path(state)
        self._times = times_path(self._state)  # the run log: each run's and node's time
        self._run_key = ""
        self._current: dict[str, str] = {}
        self._records: dict[str, str] = {}
        self._seconds: dict[str, float] = {}
        # node -> the keys of its inputs and outputs when it last ran
        self._contents: dict[str, dict] = {}
        self._keys: dict[str, str | None] = {}  # node -> its inputs' key in this run
        self._cut: set[str] = set()
        self._catalog = None
        self._made_by: dict[str, str] = {}  # in this run: dataset -> the node that makes it

    def run(self, pipeline: Pipeline, catalog, hook_manager=None, run_id=None, **kwargs: Any):
        with _exclusive(self._state):  # the records are read and written by one run at a time
            return self._run_incremental(pipeline, catalog, hook_manager, run_id, **kwargs)

    def _run_incremental(self, pipeline, catalog, hook_manager, run_id, **kwargs):
        read = _read(self._state)
        current = fingerprints(pipeline, catalog, made=made_outside(pipeline, catalog, read))
        recorded = carry_over(pipeline, catalog, current, read)
        if recorded != read:
            _write(self._state, recorded)
        todo = nodes_to_run(pipeline, catalog, current, recorded)
        skipped = len(pipeline.nodes) - len(todo)
        self._logger.info(
            "Incremental run: %d of %d nodes up to date and skipped, %d to run (records: %s)",
            skipped,
            len(pipeline.nodes),
            len(todo),
            self._state,
        )
        self._current, self._records, self._seconds = current, recorded, {}
        # without records (deleted: every node reruns) the inputs' records go too
        contents = _read(content_path(self._state)) if read else {}
        self._contents, self._keys, self._cut = contents, {}, set()
        self._catalog = catalog
        self._made_by = {o: n.name for n in todo for o in n.outputs}
        self._record_inputs_of_up_to_date(pipeline, catalog, {n.name for n in todo})
        start = time.perf_counter()
        self._run_key = uuid.uuid4().hex[:12]
        if todo:
            log_event(
                self._times,
                {"event": "start", "run": self._run_key, "at": stamp(),
                 "runner": type(self).__name__, "workers": getattr(self, "_max_workers", 1),
                 "env": os.environ.get("KEDRO_ENV", "local"), "to_run": len(todo),
                 "nodes": len(pipeline.nodes)},
            )  # fmt: skip
        try:
            if not todo:
                return {}
            with _tasks(self._unchanged), PauseWatch(self._times, self._run_key):
                return super().run(
                    pipeline.filter(node_names=[n.name for n in todo]),
                    catalog,
                    hook_manager,
                    run_id,
                    **kwargs,
                )
        finally:
            wall = time.perf_counter() - start
            if todo:
                log_event(
                    self._times,
                    {"event": "end", "run": self._run_key, "at": stamp(), "wall_s": wall,
                     "ran": len(self._seconds)},
                )  # fmt: skip
            if self._cut:
                self._logger.info(
                    "Incremental run: %d nodes found their inputs byte for byte as when they "
                    "last ran, and were not run",
                    len(self._cut),
                )
            if self._seconds:
                self._logger.info(
                    "Incremental run: %s; %.0f s from start to end", self.summary(), wall
                )

    def _record_inputs_of_up_to_date(self, pipeline, catalog, todo: set[str]) -> None:
        """Each up-to-date node without a record of its inputs' and outputs' bytes gets one,
        as it would have had when it last ran: its inputs are what their makers last wrote.
        Once for records made before the runner kept them; then nothing is left to do here."""
        if all(isinstance(self._contents.get(n.name), dict) or n.name in todo
               for n in pipeline.nodes):  # fmt: skip
            return
        made_by = {o: n.name for n in pipeline.nodes for o in n.outputs}
        keys: dict[str, str] = {}
        added = False
        for node in pipeline.nodes:  # topologically sorted
            found = self._contents.get(node.name)
            if node.name in todo or self._records.get(node.name) != self._current[node.name]:
                # a node to run whose in-memory output an up-to-date node reads runs only
                # because it is needed (its fingerprint did not move, or the reader's would
                # have): its key when it last ran is the one that reader read
                if isinstance(found, dict) and found.get("inputs"):
                    keys[node.name] = found["inputs"]
                continue
            key = found.get("inputs") if isinstance(found, dict) else None
            if key is None:
                made = {o: keys[m] for o, m in made_by.items() if m in keys}
                key = content_key(node, catalog, made)
                if key is not None:
                    outputs = outputs_key(node, catalog)
                    self._contents[node.name] = {"inputs": key, "outputs": outputs}
                    added = True
            if key is not None:
                keys[node.name] = key
        if added:
            _write(content_path(self._state), self._contents)

    def _unchanged(self, node) -> bool:
        """Whether ``node``, whose turn has come (what it reads is written), finds its inputs
        byte for byte as when it last ran (``content_key``) and its outputs as it left them
        (``outputs_key``): then it is up to date although a node before it ran (and wrote
        the same bytes), and it is not run. A node with an output in memory always runs (its
        readers need it); so does one whose outputs were written since by something else."""
        if node.name not in self._current:
            return False
        made = {o: key for o, m in self._made_by.items() if (key := self._keys.get(m)) is not None}
        key = content_key(node, self._catalog, made)
        self._keys[node.name] = key
        found = self._contents.get(node.name)
        if key is None or not isinstance(found, dict):
            return False
        if found.get("inputs") != key and found.get("inputs") != content_key(
            node, self._catalog, made, by_value=False
        ):  # a record by the in-memory inputs' makers (made before values were read) counts
            return False
        outputs = outputs_key(node, self._catalog)
        if outputs is None or found.get("outputs") != outputs:
            return False
        self._cut.add(node.name)
        return True

    def _release_datasets(self, node, catalog, load_counts, pipeline) -> None:
        # the runner calls this in the main process once a node has succeeded and its
        # outputs are saved, in every runner's loop
        super()._release_datasets(node, catalog, load_counts, pipeline)
        if node.name in self._cut:  # its inputs' bytes unchanged: up to date, not run
            log.info("%s: its inputs are as when it last ran; not run", node.name)
            key, found = self._keys.get(node.name), self._contents.get(node.name)
            if key is not None and isinstance(found, dict) and found.get("inputs") != key:
                # a record by its in-memory inputs' makers, matched: from now on by their
                # values, so that a maker whose code changes and makes the same value
                # leaves it up to date (by makers, it would have run)
                self._contents[node.name] = {**found, "inputs": key}
                _write(content_path(self._state), self._contents)
            self._node_seconds(node)  # the sequential clock moves on
            if node.name in self._current:
                self._records[node.name] = self._current[node.name]
                _write(self._state, self._records)
            return
        key = self._keys.get(node.name)
        if key is not None:  # what it ran on, and what it wrote
            self._contents[node.name] = {"inputs": key, "outputs": outputs_key(node, catalog)}
            _write(content_path(self._state), self._contents)
        seconds = self._node_seconds(node)
        self._seconds[node.name] = seconds
        log.info("%s took %.1f s", node.name, seconds)
        log_event(
            self._times,
            {"event": "node", "run": self._run_key, "at": stamp(), "node": node.name,
             "seconds": seconds},
        )  # fmt: skip
        if node.name in self._current:
            self._records[node.name] = self._current[node.name]
            _write(self._state, self._records)

    def _node_seconds(self, node) -> float:
        raise NotImplementedError

    def summary(self, top: int = 8) -> str:
        """The slowest nodes of the run and the total, one line."""
        slow = sorted(self._seconds.items(), key=lambda kv: -kv[1])[:top]
        parts = ", ".join(f"{name} {sec:.0f} s" for name, sec in slow)
        total = sum(self._seconds.values())
        return f"{len(self._seconds)} nodes in {total:.0f} s; slowest: {parts}"


class IncrementalRunner(_Incremental, SequentialRunner):
    """A ``SequentialRunner`` that runs only the nodes that are not up to date."""

    def __init__(self, is_async: bool = False, state: str | os.PathLike = DEFAULT_STATE):
        super().__init__(is_async=is_async, state=state)
        self._last = time.perf_counter()

    def _run(self, *args, **kwargs):
        self._last = time.perf_counter()
        return super()._run(*args, **kwargs)

    def _node_seconds(self, node) -> float:
        # one node after the other: a node's time (loading, running, saving) is the time
        # since the previous one finished
        now = time.perf_counter()
        seconds, self._last = now - self._last, now
        return seconds


class _Timed:
    """A ``ParallelRunner`` task that notes its own time (in the worker, into a shared dict)."""

    def __init__(self, task, seconds) -> None:
        self.task, self.seconds = task, seconds

    def __call__(self):
        start = time.perf_counter()
        node = self.task()
        self.seconds[node.name] = time.perf_counter() - start
        return node


class ParallelIncrementalRunner(_Incremental, ParallelRunner):
    """Kedro's ``ParallelRunner`` (one process per node, ``max_workers`` at a time, torch at
    one thread in each: ``threads.py``) that runs only the nodes that are not up to date.

    ``kedro run --runner cxr_augment.orchestration.runner.ParallelIncrementalRunner``; the
    same records as ``IncrementalRunner``, so the two can take turns. A node's time is its
    worker's, from loading its inputs to saving its outputs. Of the ready nodes, a free worker
    gets the one with the longest expected path to the end (``schedule.PriorityDispatch``;
    ``dispatch.started`` lists them in the order started).
    """

    def __init__(
        self,
        max_workers: int | None = None,
        is_async: bool = False,
        state: str | os.PathLike = DEFAULT_STATE,
    ):
        super().__init__(max_workers=max_workers, is_async=is_async, state=state)
        self._task_seconds = self._manager.dict()
        self._ranks: dict[str, float] = {}
        self._waits = contextlib.ExitStack()
        self.dispatch: schedule.PriorityDispatch | None = None

    def _run(self, pipeline, catalog, hook_manager=None, run_id=None):
        # the order of starting: the longest expected path to the end first (schedule.py)
        deps = {n.name: [p.name for p in ps] for n, ps in pipeline.node_dependencies.items()}
        seconds = schedule.expected_seconds(deps, self._times)
        self._ranks = schedule.ranks(deps, seconds)
        if deps:
            work, longest = sum(seconds.values()), max(self._ranks.values())
            workers = max(int(self._max_workers or 1), 1)
            log.info(
                "Parallel run: %d nodes, started longest path to the end first; expected from "
                "the run log: %.0f s of work, the longest path %.0f s, so at least %.1f h on %d "
                "workers",
                len(deps),
                work,
                longest,
                max(work / workers, longest) / 3600,
                workers,
            )
        self._waits = contextlib.ExitStack()
        with self._waits:
            return super()._run(pipeline, catalog, hook_manager, run_id)

    def _get_executor(self, max_workers: int):
        # ParallelRunner's own pool, each task submitted to it timing itself, started by rank
        pool = super()._get_executor(max_workers)
        submit, shutdown, seconds = pool.submit, pool.shutdown, self._task_seconds
        dispatch = schedule.PriorityDispatch(submit, max_workers)
        if not self._waits.enter_context(schedule.kedro_wait(dispatch)):
            log.warning("Parallel run: Kedro's loop waits otherwise (or another parallel run "
                        "in this process holds it); nodes start as submitted")  # fmt: skip
            dispatch = schedule.PriorityDispatch(submit, max_workers, eager=True)
        self.dispatch = dispatch

        def submit_timed(fn, /, *args, **kw):
            if getattr(fn, "cut", False):  # nothing to do: no worker needed
                from concurrent.futures import Future

                done = Future()
                done.set_result(fn.node)
                return done
            rank = self._ranks.get(fn.node.name, 0.0)
            return dispatch.submit_ranked(rank, _Timed(fn, seconds), *args, **kw)

        def shutdown_after_dispatch(*args, **kw):
            dispatch.close()
            return shutdown(*args, **kw)

        pool.submit, pool.shutdown = submit_timed, shutdown_after_dispatch
        return pool

    def _node_seconds(self, node) -> float:
        return float(self._task_seconds.get(node.name, float("nan")))
