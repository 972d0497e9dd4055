"""The incremental runner: skips what is up to date, reruns exactly what changed."""

from __future__ import annotations

import json

import pytest
from kedro.framework.hooks.manager import _create_hook_manager
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Node, Pipeline
from kedro_datasets.json import JSONDataset

from cxr_augment.datasets import ProcessMemoryDataset
from cxr_augment.orchestration.runner import (
    IncrementalRunner,
    ParallelIncrementalRunner,
    carry_from,
    fingerprints,
)

CALLS: list[str] = []


def double(x, p):
    CALLS.append("double")
    return {"v": x["v"] * p["factor"]}


def plus_one(y):
    CALLS.append("plus_one")
    return {"v": y["v"] + 1}


def in_memory(z):
    CALLS.append("in_memory")
    return z["v"]


def final(m):
    CALLS.append("final")
    return {"v": m * 10}


def _source(tmp_path) -> JSONDataset:
    """The pipelines' source file, written once (a test rewrites it to change it)."""
    src = JSONDataset(filepath=str(tmp_path / "src.json"))
    if not (tmp_path / "src.json").exists():
        src.save({"v": 3})
    return src


def _setup(tmp_path, factor=2, memory=MemoryDataset, note=None):
    src = _source(tmp_path)
    catalog = DataCatalog(
        datasets={
            "src": src,
            "mid": JSONDataset(filepath=str(tmp_path / "mid.json")),
            "out": JSONDataset(filepath=str(tmp_path / "out.json")),
            "mem": memory(),
            "end": JSONDataset(filepath=str(tmp_path / "end.json")),
            # ``note``: a parameter value that changes the node's version, not its output
            "params:p": MemoryDataset({"factor": factor, **({"note": note} if note else {})}),
        },
    )
    pipe = Pipeline(
        [
            Node(double, ["src", "params:p"], "mid", name="double"),
            Node(plus_one, "mid", "out", name="plus_one"),
            Node(in_memory, "out", "mem", name="in_memory"),
            Node(final, "mem", "end", name="final"),
        ]
    )
    return pipe, catalog


def _run(tmp_path, **kw):  # the sequential incremental runner
    pipe, catalog = _setup(tmp_path, **kw)
    CALLS.clear()
    IncrementalRunner(state=tmp_path / "state.json").run(pipe, catalog, _create_hook_manager())
    return list(CALLS)


def test_second_run_skips_everything_and_a_change_reruns_exactly_what_follows(tmp_path):
    assert _run(tmp_path) == ["double", "plus_one", "in_memory", "final"]
    assert json.loads((tmp_path / "end.json").read_text()) == {"v": 70}
    assert _run(tmp_path) == []
    # a parameter: the node that reads it and everything downstream
    assert _run(tmp_path, factor=3) == ["double", "plus_one", "in_memory", "final"]
    assert json.loads((tmp_path / "end.json").read_text()) == {"v": 100}
    assert _run(tmp_path, factor=3) == []
    # a missing output: its node, and what follows only through its fingerprint (unchanged)
    (tmp_path / "out.json").unlink()
    assert _run(tmp_path, factor=3) == ["plus_one"]
    # an in-memory output is made again when a reader must run
    (tmp_path / "end.json").unlink()
    assert _run(tmp_path, factor=3) == ["in_memory", "final"]


def test_a_node_whose_inputs_are_byte_for_byte_as_before_is_not_run(tmp_path, caplog):
    """A node reruns and writes the bytes it wrote before: the nodes after it find their
    inputs as when they last ran and are not run (their records move on). A node with an
    output in memory still runs, since its readers need that output."""
    import logging

    assert _run(tmp_path) == ["double", "plus_one", "in_memory", "final"]
    with caplog.at_level(logging.INFO):
        assert _run(tmp_path, note="same output") == ["double", "in_memory"]
    assert any("2 nodes found their inputs byte for byte" in r.getMessage()
               for r in caplog.records)  # fmt: skip
    assert json.loads((tmp_path / "end.json").read_text()) == {"v": 70}
    assert _run(tmp_path, note="same output") == []  # the records moved on
    # an output written since by something else: its node runs although its inputs did not
    # change (and writes what it wrote before: what follows is not run)
    JSONDataset(filepath=str(tmp_path / "out.json")).save({"v": -1})
    assert _run(tmp_path, note="other") == ["double", "plus_one", "in_memory"]
    assert json.loads((tmp_path / "end.json").read_text()) == {"v": 70}
    # other bytes: everything after runs
    assert _run(tmp_path, factor=3, note="same output") == [
        "double", "plus_one", "in_memory", "final"
    ]  # fmt: skip
    assert json.loads((tmp_path / "end.json").read_text()) == {"v": 100}
    # an output gone: its node runs although its inputs are unchanged
    _run(tmp_path, factor=3)
    (tmp_path / "out.json").unlink()
    assert _run(tmp_path, factor=3, note="again") == ["double", "plus_one", "in_memory"]
    # records made before the runner kept the inputs' records: the next run makes them for
    # the nodes it finds up to date, and from then on a maker's rerun is cut short
    assert _run(tmp_path, factor=3) == ["double", "in_memory"]
    (tmp_path / "state.inputs.json").unlink()
    assert _run(tmp_path, factor=3) == []
    made = json.loads((tmp_path / "state.inputs.json").read_text())
    assert set(made) == {"double", "plus_one", "in_memory", "final"}
    assert _run(tmp_path, factor=3, note="x") == ["double", "in_memory"]


def test_a_changed_source_reruns_its_readers(tmp_path):
    _run(tmp_path)
    JSONDataset(filepath=str(tmp_path / "src.json")).save({"v": 5})
    assert _run(tmp_path) == ["double", "plus_one", "in_memory", "final"]
    assert json.loads((tmp_path / "end.json").read_text()) == {"v": 110}


def _rewrite_same_bytes(path, seconds_later=100):
    """The file written again with the bytes it had: a new modification time (and inode)."""
    import os

    data = path.read_bytes()
    st = path.stat()
    path.unlink()
    path.write_bytes(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + seconds_later * 10**9))


def test_a_source_file_written_again_with_the_same_bytes_leaves_its_readers_up_to_date(
    tmp_path,
):
    # a package reinstalled with its data files (the demo's CT) reran the whole default run
    _run(tmp_path)
    _rewrite_same_bytes(tmp_path / "src.json")
    assert _run(tmp_path) == []
    JSONDataset(filepath=str(tmp_path / "src.json")).save({"v": 4})  # other bytes
    assert _run(tmp_path) == ["double", "plus_one", "in_memory", "final"]


def test_a_source_file_above_the_limit_counts_by_size_and_time(tmp_path, monkeypatch):
    from cxr_augment.orchestration import versions

    monkeypatch.setattr(versions, "CONTENT_LIMIT", 0)
    _run(tmp_path)
    _rewrite_same_bytes(tmp_path / "src.json")
    # every file reads as new; ``final`` reads only an in-memory value, the same one: cut
    assert _run(tmp_path) == ["double", "plus_one", "in_memory"]


def test_records_of_sources_by_size_and_time_carry_over_where_they_still_match(tmp_path):
    _run(tmp_path)
    state = tmp_path / "state.json"
    by_time = fingerprints(*_setup(tmp_path), content=False)
    by_bytes = fingerprints(*_setup(tmp_path))
    assert json.loads(state.read_text()) == by_bytes and by_time["double"] != by_bytes["double"]
    # records as they were written before a file counted by its bytes: up to date, moved on
    state.write_text(json.dumps(by_time))
    assert _run(tmp_path) == []
    assert json.loads(state.read_text()) == by_bytes
    # an earlier record whose file has changed since is not carried
    state.write_text(json.dumps(by_time))
    JSONDataset(filepath=str(tmp_path / "src.json")).save({"v": 4})
    assert _run(tmp_path) == ["double", "plus_one", "in_memory", "final"]


def test_an_interrupted_run_resumes_after_the_last_node_that_succeeded(tmp_path):
    pipe, catalog = _setup(tmp_path)

    def boom(y):
        raise RuntimeError("interrupted")

    broken = Pipeline([n if n.name != "plus_one" else Node(boom, "mid", "out", name="plus_one")
                       for n in pipe.nodes])  # fmt: skip
    with pytest.raises(RuntimeError, match="interrupted"):
        IncrementalRunner(state=tmp_path / "state.json").run(
            broken, catalog, _create_hook_manager()
        )
    assert set(json.loads((tmp_path / "state.json").read_text())) == {"double"}
    assert _run(tmp_path) == ["plus_one", "in_memory", "final"]


def test_fingerprints_follow_code_and_parameters(tmp_path):
    pipe, catalog = _setup(tmp_path)
    a = fingerprints(pipe, catalog)
    pipe3, catalog3 = _setup(tmp_path, factor=3)
    b = fingerprints(pipe3, catalog3)
    assert a["double"] != b["double"] and a["final"] != b["final"]
    assert fingerprints(pipe, catalog) == a  # stable
    assert len(set(a.values())) == 4


def test_records_of_an_earlier_code_carry_over_only_where_they_match_it(tmp_path):
    _run(tmp_path)  # records under the "earlier" fingerprints (factor 2)
    earlier = fingerprints(*_setup(tmp_path))
    current = fingerprints(*_setup(tmp_path, factor=3))  # every node's fingerprint moves
    state = tmp_path / "state.json"
    recorded = json.loads(state.read_text())
    other = {**recorded, "final": "0123456789abcdef"}  # a record of some other code
    records, moved = carry_from(other, earlier, current)
    assert moved == ["double", "in_memory", "plus_one"]
    assert all(records[n] == current[n] for n in moved)
    assert records["final"] == "0123456789abcdef"  # neither earlier nor current: stays
    assert carry_from(records, earlier, current)[1] == []  # already current: nothing moves
    # carried over, the run under the new fingerprints takes up only the node whose record
    # matched neither code (and the in-memory node it reads, which runs); that node's inputs
    # and code are, byte for byte, those it last ran with, so it is not run itself
    state.write_text(json.dumps(records))
    assert _run(tmp_path, factor=3) == ["in_memory"]
    (tmp_path / "state.inputs.json").unlink()  # no record of its inputs: it runs
    state.write_text(json.dumps(records))
    assert _run(tmp_path, factor=3) == ["in_memory", "final"]


def test_a_part_of_the_project_finds_the_fingerprints_the_whole_project_recorded(
    tmp_path, monkeypatch
):
    from cxr_augment.orchestration import runner as runner_module

    def part(factor=2):  # every node but the first, as `kedro run --pipelines <part>` runs
        pipe, catalog = _setup(tmp_path, factor=factor)
        monkeypatch.setattr(
            runner_module, "_project_nodes", lambda: list(pipe.nodes), raising=False
        )
        return Pipeline([n for n in pipe.nodes if n.name != "double"]), catalog

    def run(pipe, catalog):
        CALLS.clear()
        IncrementalRunner(state=tmp_path / "state.json").run(pipe, catalog, _create_hook_manager())
        return list(CALLS)

    assert _run(tmp_path) == ["double", "plus_one", "in_memory", "final"]
    # the part reads `mid` as its maker made it, up to date: the same fingerprints, no rerun
    assert run(*part()) == []
    # the maker's parameter changed and it has not run again: its output counts by its file
    # (as it did before), so the part takes up what reads it; their inputs are the bytes they
    # last ran on, so only the node with an output in memory runs ...
    assert run(*part(factor=3)) == ["in_memory"]
    # ... and once the maker has run, what read its old output runs again
    assert _run(tmp_path, factor=3) == ["double", "plus_one", "in_memory", "final"]
    assert json.loads((tmp_path / "end.json").read_text()) == {"v": (3 * 3 + 1) * 10}


def test_the_project_nodes_are_every_pipelines_also_when_a_run_asked_for_one():
    from kedro.framework.project import configure_project, pipelines

    from cxr_augment.orchestration import runner as runner_module

    configure_project("cxr_augment")
    pipelines.set_requested(["preprocessing"])  # as `kedro run --pipelines preprocessing` does
    try:
        assert set(pipelines) == {"preprocessing"}  # Kedro's registry: what the run asked for
        names = {n.name for n in runner_module._project_nodes()}
        # the makers of what other pipelines read, and what reads it
        assert {"build_tensor_store", "generation.train_grey"} <= names
        assert "ptx_densenet121.train_classifier_seed1" in names
    finally:
        pipelines.set_requested(None)


def test_unreadable_records_are_an_error_saying_what_to_do(tmp_path):
    _run(tmp_path)
    (tmp_path / "state.json").write_text("{not json")
    with pytest.raises(RuntimeError, match=r"state\.json cannot be read .*Delete the file"):
        _run(tmp_path)


def _summary_names(summary: str) -> list[str]:
    """The node names of a summary line, in its order."""
    return [part.rsplit(" ", 2)[0] for part in summary.split("slowest: ", 1)[1].split(", ")]


def _assert_timed(runner, caplog, ran: set[str]) -> None:
    """Each node that ran has one time, logged as recorded; the summary lists them slowest
    first and ends with the wall time."""
    took = {r.args[0]: r.args[1] for r in caplog.records if "took" in str(r.msg)}
    assert set(took) == set(runner._seconds) == ran
    assert took == runner._seconds
    (summary,) = [r.getMessage() for r in caplog.records if "slowest" in r.getMessage()]
    assert f"{len(ran)} nodes in" in summary and "from start to end" in summary
    order = sorted(runner._seconds, key=lambda n: -runner._seconds[n])
    assert _summary_names(runner.summary()) == order


class _FakeClock:
    """``time.perf_counter`` for the runner: it moves only when a node says it worked."""

    def __init__(self) -> None:
        self.now = 100.0

    def perf_counter(self) -> float:
        return self.now


def _clocked_setup(tmp_path, clock: _FakeClock, work: dict[str, float]):
    """The test pipeline and catalog, each node advancing the clock by its ``work`` seconds."""
    pipe, catalog = _setup(tmp_path)

    def timed(node):
        def run(*args):
            clock.now += work[node.name]
            return node.func(*args)

        (output,) = node.outputs
        return Node(run, node.inputs, output, name=node.name)

    return Pipeline([timed(n) for n in pipe.nodes]), catalog


def test_each_node_that_ran_is_timed_and_the_run_ends_with_the_slowest(
    tmp_path, caplog, monkeypatch
):
    import logging

    from cxr_augment.orchestration import runner as runner_module

    clock = _FakeClock()
    monkeypatch.setattr(runner_module, "time", clock)
    work = {"double": 3.0, "plus_one": 1.0, "in_memory": 4.0, "final": 2.0}
    pipe, catalog = _clocked_setup(tmp_path, clock, work)
    runner = IncrementalRunner(state=tmp_path / "state.json")
    with caplog.at_level(logging.INFO):
        runner.run(pipe, catalog, _create_hook_manager())
    assert runner._seconds == work  # a node's time: the clock's move since the one before
    _assert_timed(runner, caplog, set(work))
    assert _summary_names(runner.summary()) == ["in_memory", "double", "final", "plus_one"]
    (summary,) = [r.getMessage() for r in caplog.records if "slowest" in r.getMessage()]
    assert "4 nodes in 10 s" in summary and "10 s from start to end" in summary
    caplog.clear()
    runner = IncrementalRunner(state=tmp_path / "state.json")
    with caplog.at_level(logging.INFO):  # nothing ran: no timing, no summary
        runner.run(pipe, catalog, _create_hook_manager())
    assert runner._seconds == {}
    assert not [r for r in caplog.records if "took" in str(r.msg) or "slowest" in r.getMessage()]


def test_a_parallel_task_notes_its_own_time(monkeypatch):
    from cxr_augment.orchestration import runner as runner_module

    clock = _FakeClock()
    monkeypatch.setattr(runner_module, "time", clock)
    node = Node(plus_one, "mid", "out", name="plus_one")

    def task():
        clock.now += 2.5
        return node

    seconds: dict[str, float] = {}
    assert runner_module._Timed(task, seconds)() is node
    assert seconds == {"plus_one": 2.5}


def _parallel_run(tmp_path, factor=2, note=None):
    from kedro.io import SharedMemoryDataCatalog

    pipe, catalog = _setup(tmp_path, factor=factor, memory=ProcessMemoryDataset, note=note)
    shared = SharedMemoryDataCatalog(datasets={n: catalog.get(n) for n in catalog.keys()})
    runner = ParallelIncrementalRunner(max_workers=2, state=tmp_path / "state.json")
    runner.run(pipe, shared, _create_hook_manager())
    return runner


def test_the_parallel_runner_runs_in_workers_records_in_the_main_process_and_shares_records(
    tmp_path, caplog
):
    import logging

    with caplog.at_level(logging.INFO):
        runner = _parallel_run(tmp_path)
    assert json.loads((tmp_path / "end.json").read_text()) == {"v": 70}
    state = json.loads((tmp_path / "state.json").read_text())
    assert set(state) == {"double", "plus_one", "in_memory", "final"}
    pipe, catalog = _setup(tmp_path, memory=ProcessMemoryDataset)
    assert state == fingerprints(pipe, catalog)
    # each node's time was noted by its worker (the shared dict has every node: none missing),
    # logged as recorded, the summary slowest first
    assert set(runner._task_seconds.keys()) == set(state)
    _assert_timed(runner, caplog, set(state))
    # the sequential runner takes the records over: nothing to do
    assert _run(tmp_path, memory=ProcessMemoryDataset) == []
    # a parameter changes: the parallel runner reruns exactly what follows (records rewritten)
    _parallel_run(tmp_path, factor=3)
    assert json.loads((tmp_path / "end.json").read_text()) == {"v": 100}
    assert _run(tmp_path, factor=3, memory=ProcessMemoryDataset) == []
    # nothing changed: the parallel runner skips everything (no worker started)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        runner = _parallel_run(tmp_path, factor=3)
    assert runner._seconds == {}
    assert any("4 of 4 nodes up to date" in r.getMessage() for r in caplog.records)
    # its maker reran with the same bytes: a reader with its inputs unchanged is not sent
    # to a worker (the one with an output in memory is, and what reads only it is not)
    runner = _parallel_run(tmp_path, factor=3, note="same output")
    assert set(runner._seconds) == {"double", "in_memory"}
    assert runner._cut == {"plus_one", "final"}
    assert json.loads((tmp_path / "end.json").read_text()) == {"v": 100}


def _package(root):
    pkg = root / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "nodes.py").write_text(
        "def node(x):\n    from pkg.sub.domain import f  # lazily, inside the function\n"
        "    return f(x)\n"
    )
    (pkg / "sub" / "domain.py").write_text(
        "from . import util\nfrom ..other import CONSTANT\n\n\ndef f(x):\n"
        "    return util.g(x) + CONSTANT\n"
    )
    (pkg / "sub" / "util.py").write_text("import numpy as np\n\n\ndef g(x):\n    return x\n")
    (pkg / "other.py").write_text("CONSTANT = 1\n")
    (pkg / "unrelated.py").write_text("X = 1\n")
    return pkg


def test_a_nodes_code_is_its_module_and_the_project_modules_it_imports(tmp_path):
    from cxr_augment.orchestration import versions

    pkg = _package(tmp_path)

    def version():
        versions._project_imports.cache_clear()
        versions.code_hash.cache_clear()
        return versions.code_hash("pkg.nodes", "pkg", pkg)

    assert versions._project_imports("pkg.sub.domain", "pkg", pkg) == (
        "pkg.other",
        "pkg.sub",
        "pkg.sub.util",
    )
    first = version()
    assert version() == first  # stable
    (pkg / "unrelated.py").write_text("X = 2\n")  # not imported: the same
    assert version() == first
    for edited, text in [
        ("sub/util.py", "def g(x):\n    return 2 * x\n"),  # two imports away, relative
        ("other.py", "CONSTANT = 2\n"),  # relative, two levels up
        ("sub/domain.py", "def f(x):\n    return x\n"),  # imported inside a function
    ]:
        before = version()
        (pkg / edited).write_text(text)
        assert version() != before, edited
    # the project's own node modules reach their domain modules
    project = versions._project_imports(
        "cxr_augment.pipelines.classification.nodes", versions.PACKAGE, versions._PACKAGE_ROOT
    )
    assert "cxr_augment.classify.experiments" in project


def test_an_edited_domain_module_or_output_dataset_class_reruns_the_nodes_that_use_it(
    tmp_path, monkeypatch
):
    from cxr_augment.orchestration import runner

    pipe, catalog = _setup(tmp_path)
    base = fingerprints(pipe, catalog)
    # a domain module that the nodes' module imports changes: every node of that module
    monkeypatch.setattr(
        runner, "node_version", lambda node, params, legacy=False: "v2-" + node.name
    )
    changed = fingerprints(pipe, catalog)
    assert all(changed[n] != base[n] for n in base)
    monkeypatch.undo()
    # the class that writes an output is the project's: its code is part of the fingerprint
    from cxr_augment.datasets.atomic import JSONDataset as ProjectJSON

    catalog["mid"] = ProjectJSON(filepath=str(tmp_path / "mid.json"))
    with_class = fingerprints(pipe, catalog)
    assert with_class["double"] != base["double"]
    # that class's code changes (the nodes' own code does not): its writer and what follows
    monkeypatch.setattr(runner, "object_code", lambda kind, legacy=False: "edited" * 4)
    edited = fingerprints(pipe, catalog)
    assert edited["double"] != with_class["double"] and edited["final"] != with_class["final"]
    # only the project's classes carry their code: with Kedro's JSONDataset back as the
    # writer of "mid", the same edit moves no fingerprint
    catalog["mid"] = JSONDataset(filepath=str(tmp_path / "mid.json"))
    assert fingerprints(pipe, catalog) == base


def test_a_source_read_by_a_project_dataset_class_follows_that_class_code(tmp_path, monkeypatch):
    from cxr_augment.datasets.atomic import JSONDataset as ProjectJSON
    from cxr_augment.orchestration import runner

    pipe, catalog = _setup(tmp_path)
    catalog["src"] = ProjectJSON(filepath=str(tmp_path / "src.json"))
    before = fingerprints(pipe, catalog)
    monkeypatch.setattr(runner, "object_code", lambda kind, legacy=False: "edited" * 4)
    after = fingerprints(pipe, catalog)
    assert all(after[n] != before[n] for n in before)  # its reader and everything after


def test_a_second_run_on_the_same_records_is_an_error_naming_them_and_their_holder(tmp_path):
    import fcntl
    import os

    lock = tmp_path / "state.json.lock"
    with open(lock, "a+") as held:  # another run holds the records
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.write(f"pid {os.getpid()}")
        held.flush()
        with pytest.raises(RuntimeError, match=r"state\.json \(held by pid \d+.*state=<file>"):
            _run(tmp_path)
        assert not (tmp_path / "mid.json").exists()  # nothing ran
        fcntl.flock(held, fcntl.LOCK_UN)
    assert _run(tmp_path) == ["double", "plus_one", "in_memory", "final"]
    assert lock.read_text() == ""  # released, no holder left named
    # a run that fails releases the records too
    (tmp_path / "state.json").write_text("{not json")
    with pytest.raises(RuntimeError, match="cannot be read"):
        _run(tmp_path)
    (tmp_path / "state.json").unlink()
    assert _run(tmp_path) == ["double", "plus_one", "in_memory", "final"]


def test_the_run_log_gives_each_run_and_node_time_and_sums_runs_in_pieces(tmp_path, monkeypatch):
    """nodes.times.jsonl: a start and an end line per run that ran something, a line per node
    with its seconds; ``time_summary`` sums the runs (a killed one ends at its last node) and
    the nodes by kind, and a run with nothing to do writes nothing."""
    import json

    from cxr_augment.orchestration import runner as runner_module
    from cxr_augment.orchestration.run_log import _kind, time_summary, times_path

    clock = _FakeClock()
    monkeypatch.setattr(runner_module, "time", clock)
    work = {"double": 3.0, "plus_one": 1.0, "in_memory": 4.0, "final": 2.0}
    pipe, catalog = _clocked_setup(tmp_path, clock, work)
    state = tmp_path / "state.json"
    IncrementalRunner(state=state).run(pipe, catalog, _create_hook_manager())
    log = times_path(state)
    assert log == tmp_path / "state.times.jsonl"
    events = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e["event"] for e in events] == ["start", "node", "node", "node", "node", "end"]
    assert {e["node"]: e["seconds"] for e in events if e["event"] == "node"} == work
    assert events[0]["to_run"] == 4 and events[-1]["wall_s"] == 10.0
    assert len({e["run"] for e in events}) == 1
    IncrementalRunner(state=state).run(pipe, catalog, _create_hook_manager())  # nothing to do
    assert log.read_text().count("\n") == 6
    # a run killed after one node: a start and a node line, no end
    with open(log, "a") as f:
        for e in ({"event": "start", "run": "k", "at": "2026-01-01T10:00:00+00:00", "to_run": 3},
                  {"event": "node", "run": "k", "at": "2026-01-01T10:05:00+00:00",
                   "node": "ptx_a.train_classifier_seed2", "seconds": 290.0}):  # fmt: skip
            f.write(json.dumps(e) + "\n")
    s = time_summary(log)
    first, killed = s["runs"]
    assert first["ended"] and first["wall_s"] == 10.0 and first["nodes_run"] == 4
    assert not killed["ended"] and killed["wall_s"] == 300.0 and killed["nodes_run"] == 1
    assert s["wall_s"] == 310.0 and s["node_seconds"] == 300.0
    assert s["kinds"]["train_classifier"] == {"nodes": 1, "seconds": 290.0}
    assert list(s["kinds"])[0] == "train_classifier"  # the most seconds first
    assert _kind("ptx_a.train_classifier_seed12") == "train_classifier"
    assert _kind("pe_x.evaluate") == "evaluate" and _kind("a_seedling") == "a_seedling"
    assert s["unread_lines"] == []


def test_a_line_cut_short_by_a_kill_is_skipped_and_counted_and_a_wrong_file_named(tmp_path):
    """A run killed while appending leaves half a line; the next run's lines start on a line
    of their own, and the summary skips the half line, saying which. A file with no event
    at all (the records, given by mistake) is an error naming it."""
    import json

    from cxr_augment.orchestration.run_log import log_event, time_summary

    log = tmp_path / "nodes.times.jsonl"
    log_event(log, {"event": "start", "run": "a", "at": "2026-01-01T10:00:00+00:00"})
    with open(log, "a") as f:
        f.write('{"event": "node", "run": "a", "at": "2026-01-01T10:0')  # killed mid-line
    log_event(log, {"event": "start", "run": "b", "at": "2026-01-01T11:00:00+00:00"})
    log_event(log, {"event": "node", "run": "b", "at": "2026-01-01T11:02:00+00:00",
                    "node": "x.train_classifier_seed1", "seconds": 100.0})  # fmt: skip
    lines = log.read_text().splitlines()
    assert len(lines) == 4 and json.loads(lines[2])["run"] == "b"
    s = time_summary(log)
    assert s["unread_lines"] == [2]
    assert [r["run"] for r in s["runs"]] == ["a", "b"]
    assert s["runs"][1]["wall_s"] == 120.0 and s["node_seconds"] == 100.0

    records = tmp_path / "nodes.json"
    records.write_text(json.dumps({"x.train_classifier_seed1": "abc"}, indent=0))
    with pytest.raises(ValueError, match=r"nodes\.json: no line is a run-log event.*times\.jsonl"):
        time_summary(records)


def test_if_kedro_makes_its_tasks_otherwise_nothing_is_skipped_by_bytes(
    tmp_path, monkeypatch, caplog
):
    """The runner points ``kedro.runner.runner.Task`` at its own task for a run; where Kedro
    no longer makes its tasks through that name, it says so and runs what it planned."""
    import logging

    import kedro.runner.runner as kedro_runner

    assert _run(tmp_path) == ["double", "plus_one", "in_memory", "final"]

    class Other(kedro_runner.Task):
        pass

    monkeypatch.setattr(kedro_runner, "Task", Other)
    with caplog.at_level(logging.WARNING):
        assert _run(tmp_path, note="x") == ["double", "plus_one", "in_memory", "final"]
    assert any("makes its tasks otherwise" in r.getMessage() for r in caplog.records)
    assert kedro_runner.Task is Other  # left as found


# --- an in-memory input is known by its value ------------------------------------------------


def pick(z, q):
    CALLS.append("pick")
    return {"v": z["v"], "kept": q["kept"]}


def echo(m):
    CALLS.append("echo")
    return dict(m)


def _memory_setup(tmp_path, note="a", kept=1, memory=MemoryDataset, p_note=None):
    """src -> mid (file) -> mem (in memory, its maker reads a parameter) -> end (file);
    ``p_note`` changes ``double``'s version, not what it writes."""
    src = _source(tmp_path)
    catalog = DataCatalog(
        datasets={
            "src": src,
            "mid": JSONDataset(filepath=str(tmp_path / "mid.json")),
            "mem": memory(),
            "end": JSONDataset(filepath=str(tmp_path / "end.json")),
            "params:p": MemoryDataset({"factor": 2, **({"note": p_note} if p_note else {})}),
            "params:q": MemoryDataset({"kept": kept, "note": note}),
        },
    )
    pipe = Pipeline(
        [
            Node(double, ["src", "params:p"], "mid", name="double"),
            Node(pick, ["mid", "params:q"], "mem", name="pick"),
            Node(echo, "mem", "end", name="echo"),
        ]
    )
    return pipe, catalog


def _memory_run(tmp_path, **kw):
    pipe, catalog = _memory_setup(tmp_path, **kw)
    CALLS.clear()
    IncrementalRunner(state=tmp_path / "state.json").run(pipe, catalog, _create_hook_manager())
    return list(CALLS)


def test_a_reader_of_an_in_memory_value_made_again_the_same_is_not_run(tmp_path):
    """An in-memory dataset (an experiment's settings) is known by its value: its maker reruns
    (a parameter it does not pass on changed, or its code) and makes the same value, and its
    reader is not run; another value, and the reader runs."""
    assert _memory_run(tmp_path) == ["double", "pick", "echo"]
    assert _memory_run(tmp_path) == []
    assert _memory_run(tmp_path, note="b") == ["pick"]  # the same value: echo is cut
    assert json.loads((tmp_path / "end.json").read_text()) == {"v": 6, "kept": 1}
    assert _memory_run(tmp_path, note="b") == []
    assert _memory_run(tmp_path, note="c", kept=2) == ["pick", "echo"]
    assert json.loads((tmp_path / "end.json").read_text()) == {"v": 6, "kept": 2}


def test_a_record_by_the_makers_of_in_memory_inputs_becomes_one_by_their_values(tmp_path):
    """Records made for up-to-date nodes (no values read) know an in-memory input by its
    maker's key. The first run that reads the value and finds the record matching by makers
    rewrites it by the value: a later edit of the maker that makes the same value then
    leaves the reader up to date."""
    assert _memory_run(tmp_path) == ["double", "pick", "echo"]
    (tmp_path / "state.inputs.json").unlink()
    assert _memory_run(tmp_path) == []  # the records remade, echo's by pick's key
    made = json.loads((tmp_path / "state.inputs.json").read_text())["echo"]["inputs"]
    # a change upstream that leaves mid's bytes: pick reruns with its key unchanged, echo
    # matches by its maker and is not run; its record is now by mem's value
    assert _memory_run(tmp_path, p_note="x") == ["double", "pick"]
    by_value = json.loads((tmp_path / "state.inputs.json").read_text())["echo"]["inputs"]
    assert by_value != made
    # pick's own version changes (a parameter it does not pass on), the same value: echo is
    # not run; by its maker's key it would have been
    assert _memory_run(tmp_path, p_note="x", note="b") == ["pick"]
    assert json.loads((tmp_path / "end.json").read_text()) == {"v": 6, "kept": 1}


def test_value_digest_follows_every_part_of_a_value_and_declines_what_it_cannot_read():
    import numpy as np
    import pandas as pd

    from cxr_augment.orchestration.runner import value_digest

    frame = pd.DataFrame({"key": ["a", "b"], "y": [0.0, 1.0]}, index=[3, 4])
    digest = value_digest(frame)
    assert digest == value_digest(frame.copy()) and len(digest) == 16
    changed = [
        frame.assign(y=[0.0, 0.5]),  # a value
        frame.rename(columns={"y": "z"}),  # a column's name
        frame.astype({"y": "float32"}),  # a dtype
        frame.set_axis([3, 5]),  # the index
        frame[["y", "key"]],  # the columns' order
        frame["y"],  # a series of the same values
    ]
    assert len({digest, *map(value_digest, changed)}) == len(changed) + 1
    spec = {"name": "x", "train": {"lr": 0.001, "epochs": 2}}
    assert value_digest(spec) == value_digest({"train": {"epochs": 2, "lr": 0.001}, "name": "x"})
    assert value_digest(spec) != value_digest({**spec, "name": "y"})
    assert value_digest([1, 2]) != value_digest("[1, 2]")
    array = np.arange(6, dtype=np.int32)
    assert value_digest(array) != value_digest(array.reshape(2, 3))
    assert value_digest(array) != value_digest(array.astype(np.int64))
    for opaque in (object(), {"model": object()}, np.array([object()]), {1: {2, 3}}):
        assert value_digest(opaque) is None


def test_the_parallel_runner_reads_an_in_memory_value_in_the_main_process(tmp_path):
    from kedro.io import SharedMemoryDataCatalog

    def parallel(note):
        pipe, catalog = _memory_setup(tmp_path, note=note, memory=ProcessMemoryDataset)
        shared = SharedMemoryDataCatalog(datasets={n: catalog.get(n) for n in catalog.keys()})
        runner = ParallelIncrementalRunner(max_workers=2, state=tmp_path / "state.json")
        runner.run(pipe, shared, _create_hook_manager())
        return runner

    parallel("a")
    runner = parallel("b")  # the shared value is the one made before: its reader is cut
    assert set(runner._seconds) == {"pick"} and runner._cut == {"echo"}
    assert _memory_run(tmp_path, note="b", memory=ProcessMemoryDataset) == []
