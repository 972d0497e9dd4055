"""Resuming on Dagster: what is missing or unsynced is materialised, pass after pass, across jobs
that read each other's assets, and nothing else."""

from __future__ import annotations

import importlib.util
import sys

import pytest

# two jobs that read each other's assets (as the study's augmentation and classification do):
# first: a -> b; second: (c, d) from b, one node with two outputs; first: e from c;
# f in no job (the implicit asset job runs it), from e
DEFS = """
import dagster as dg
from cxr_augment.orchestration.io_managers import ValueFilesystemIOManager


def called(name):  # in a file: a run may reload this module
    with open("{log}", "a") as f:
        f.write(name + "\\n")

@dg.asset(code_version="{va}")
def a():
    called("a")
    return 1

@dg.asset(code_version="1")
def b(a):
    called("b")
    return a + 1

@dg.multi_asset(
    outs={{"c": dg.AssetOut(code_version="1"), "d": dg.AssetOut(code_version="1")}},
    ins={{"b": dg.AssetIn("b")}},
)
def cd(b):
    called("cd")
    return b + 1, b + 2

@dg.asset(code_version="1")
def e(c):
    called("e")
    {fail}
    return c + 1

@dg.asset(code_version="1")
def f(e):
    called("f")
    return e + 1

defs = dg.Definitions(
    assets=[a, b, cd, e, f],
    jobs=[
        dg.define_asset_job("first", selection=["a", "b", "e"]),
        dg.define_asset_job("second", selection=["c", "d"]),
    ],
    resources={{"io_manager": {io}(base_dir="{store}")}},
    executor=dg.in_process_executor,
)
"""


# a resume from nothing: first (a, b), second (c, d), first (e), then f in the implicit asset job
EVERY_PASS = [("first", 2), ("second", 2), ("first", 1), ("__ASSET_JOB", 1)]


def _load(tmp_path, name: str, va: str = "1", fail: str = "", io="dg.FilesystemIOManager"):
    from dagster._core.definitions.reconstruct import ReconstructableRepository

    path = tmp_path / f"{name}.py"
    store, log = tmp_path / "store", tmp_path / "calls"
    path.write_text(DEFS.format(va=va, fail=fail, store=store, log=log, io=io))
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # the in-process executor reconstructs the job from here
    spec.loader.exec_module(module)
    repo = ReconstructableRepository.for_file(str(path), "defs", str(tmp_path))
    return module, repo


def _calls(tmp_path) -> list[str]:
    log = tmp_path / "calls"
    return log.read_text().split() if log.exists() else []


def _keys(keys) -> list[str]:
    return [k.to_user_string() for k in keys]


@pytest.fixture
def instance():
    import dagster as dg

    with dg.instance_for_test() as inst:
        yield inst


def test_a_plan_runs_each_job_only_on_what_its_upstream_allows(tmp_path, instance):
    from cxr_augment.orchestration.resume import IMPLICIT_JOB, plan, statuses

    module, _ = _load(tmp_path, "defs_plan")
    defs = module.defs
    work = plan(defs, statuses(instance, defs.resolve_asset_graph()))
    # c, d wait on b (another job); e on c; f on e
    assert {j: _keys(k) for j, k in work.items()} == {"first": ["a", "b"]}
    # limited to one job: only its assets count, and those of other jobs are not waited on
    assert {
        j: _keys(k)
        for j, k in plan(defs, statuses(instance, defs.resolve_asset_graph()), ["second"]).items()
    } == {"second": ["c", "d"]}
    assert IMPLICIT_JOB == "__ASSET_JOB"


def test_resume_goes_on_across_jobs_until_everything_is_fresh(tmp_path, instance):
    from dagster._core.definitions.data_version import StaleStatus

    from cxr_augment.orchestration.resume import resume, statuses

    module, repo = _load(tmp_path, "defs_all")
    said: list[str] = []
    runs = resume(module.defs, repo, instance, say=said.append)
    assert [(j, n) for j, n, _ in runs] == EVERY_PASS
    assert _calls(tmp_path) == ["a", "b", "cd", "e", "f"]
    status = statuses(instance, module.defs.resolve_asset_graph())
    assert set(status.values()) == {StaleStatus.FRESH}
    assert said[-1] == "resume: every asset is up to date (4 runs)"
    for _, _, run_id in runs:
        assert instance.get_run_by_id(run_id).tags["cxr_augment/resume"] == "1"
    # a second resume runs nothing
    assert resume(module.defs, repo, instance, say=said.append) == []
    assert _calls(tmp_path) == ["a", "b", "cd", "e", "f"]


def test_a_killed_run_resumes_where_it_stopped(tmp_path, instance):
    import dagster as dg

    from cxr_augment.orchestration.resume import resume

    module, repo = _load(tmp_path, "defs_killed")
    # a run that materialised a, b and c, d, then was killed before e
    dg.materialize(
        [module.a, module.b, module.cd, module.e, module.f],
        selection=["a", "b", "c", "d"],
        instance=instance,
        resources={"io_manager": dg.FilesystemIOManager(base_dir=str(tmp_path / "store"))},
    )
    assert _calls(tmp_path) == ["a", "b", "cd"]
    runs = resume(module.defs, repo, instance, say=lambda _: None)
    assert [(j, n) for j, n, _ in runs] == [("first", 1), ("__ASSET_JOB", 1)]
    assert _calls(tmp_path) == ["a", "b", "cd", "e", "f"]


@pytest.mark.parametrize("downstream", [False, True])
def test_a_code_change_reruns_the_asset_and_what_its_new_version_makes_stale(
    tmp_path, instance, downstream
):
    """Dagster's own data versions (its code version and inputs', hashed): a new code version
    of ``a`` makes everything downstream stale, pass after pass (``downstream``: in the pass
    of ``a``, as far as the jobs allow)."""
    from cxr_augment.orchestration.resume import plan, resume, statuses

    module, repo = _load(tmp_path, f"defs_v1_{downstream}")
    resume(module.defs, repo, instance, say=lambda _: None)
    (tmp_path / "calls").unlink()
    changed, repo2 = _load(tmp_path, f"defs_v2_{downstream}", va="2")
    status = statuses(instance, changed.defs.resolve_asset_graph())
    work = plan(changed.defs, status, downstream=downstream)
    # Dagster itself calls only `a` stale until it is materialised again
    assert {j: _keys(k) for j, k in work.items()} == {"first": ["a", "b"] if downstream else ["a"]}
    runs = resume(changed.defs, repo2, instance, say=lambda _: None, downstream=downstream)
    # without: a, then b (once a's new version has made it stale), then on as from nothing
    passes = EVERY_PASS if downstream else [("first", 1), ("first", 1), *EVERY_PASS[1:]]
    assert [(j, n) for j, n, _ in runs] == passes
    assert _calls(tmp_path) == ["a", "b", "cd", "e", "f"]


def test_an_asset_made_again_with_the_same_bytes_ends_the_resume_there(tmp_path, instance):
    """Data versions by value (the project's IO managers): ``a`` under a new code version
    returns what it returned, and nothing downstream is run."""
    from cxr_augment.orchestration.resume import resume

    io = "ValueFilesystemIOManager"
    module, repo = _load(tmp_path, "defs_value_v1", io=io)
    assert [(j, n) for j, n, _ in resume(module.defs, repo, instance, say=lambda _: None)] == (
        EVERY_PASS
    )
    (tmp_path / "calls").unlink()
    changed, repo2 = _load(tmp_path, "defs_value_v2", va="2", io=io)
    runs = resume(changed.defs, repo2, instance, say=lambda _: None)
    assert [(j, n) for j, n, _ in runs] == [("first", 1)]
    assert _calls(tmp_path) == ["a"]


def test_a_failed_run_stops_the_resume_naming_its_job_and_run(tmp_path, instance):
    from cxr_augment.orchestration.resume import resume

    module, repo = _load(tmp_path, "defs_fail", fail='raise ValueError("broken")')
    with pytest.raises(RuntimeError, match=r"the run \S+ of job first failed"):
        resume(module.defs, repo, instance, say=lambda _: None)
    assert _calls(tmp_path) == ["a", "b", "cd", "e"]  # e failed; f never ran


def test_the_dry_run_lists_the_first_pass_and_runs_nothing(tmp_path, instance):
    from cxr_augment.orchestration.resume import resume

    module, repo = _load(tmp_path, "defs_dry")
    said: list[str] = []
    assert resume(module.defs, repo, instance, dry_run=True, say=said.append) == []
    assert _calls(tmp_path) == []
    assert said[0] == "resume: first: 2 assets missing or unsynced"
    assert said[1:3] == ["  first  a", "  first  b"]


def test_a_run_whose_process_is_gone_is_marked_failed(tmp_path, instance):
    import os
    import subprocess

    from dagster import DagsterRunStatus
    from dagster._core.test_utils import create_run_for_test

    from cxr_augment.orchestration.resume import PID_TAG, TAG, mark_orphans

    gone = subprocess.Popen(["true"])
    gone.wait()
    host = os.uname().nodename

    def started(pid_tag: str) -> str:
        tags = {TAG: "1", PID_TAG: pid_tag}
        run = create_run_for_test(instance, status=DagsterRunStatus.STARTED, tags=tags)
        return run.run_id

    dead = started(f"{gone.pid}@{host}")
    alive = started(f"{os.getpid()}@{host}")  # still running, here
    elsewhere = started(f"{gone.pid}@another-host")  # not this machine's to judge
    assert mark_orphans(instance) == [dead]
    assert instance.get_run_by_id(dead).status == DagsterRunStatus.FAILURE
    for run_id in (alive, elsewhere):
        assert instance.get_run_by_id(run_id).status == DagsterRunStatus.STARTED
    assert mark_orphans(instance) == []


def test_run_times_lists_each_resumed_run(tmp_path, instance):
    from cxr_augment.orchestration.resume import busy_seconds, resume, run_times

    module, repo = _load(tmp_path, "defs_times")
    runs = resume(module.defs, repo, instance, say=lambda _: None)
    rows = run_times(instance)
    assert [(r[0], r[1]) for r in rows] == [(run_id, job) for job, _, run_id in runs]
    for run_id, _, start, seconds in rows:
        record = instance.get_run_record_by_id(run_id)
        assert start == record.start_time
        assert seconds == pytest.approx(record.end_time - record.start_time)
        assert seconds > 0
        steps = instance.get_run_step_stats(run_id)
        busy = busy_seconds(instance, run_id, start + seconds)
        assert max(s.end_time - s.start_time for s in steps) <= busy + 1e-6
        assert busy <= min(seconds, sum(s.end_time - s.start_time for s in steps)) + 1e-6


def test_busy_seconds_is_the_union_of_the_step_intervals():
    from types import SimpleNamespace as Step

    from cxr_augment.orchestration.resume import busy_seconds

    class Instance:  # step intervals overlapping, nested, apart, and one with no end (killed)
        def get_run_step_stats(self, run_id):
            return [Step(start_time=a, end_time=b) for a, b in
                    [(10, 20), (15, 30), (16, 17), (40, 45), (50, None), (None, None)]]  # fmt: skip

    assert busy_seconds(Instance(), "r", end=58.0) == 20 + 5 + 8


def test_stopped_seconds_are_the_logged_pauses_within_a_run(tmp_path):
    """``resume --times``: the time resume's process was stopped (its PauseWatch's pauses, each
    the seconds up to its ``at``) counted within each run's interval, clipped to it."""
    import json
    from datetime import UTC, datetime

    from cxr_augment.orchestration.resume import stopped_seconds

    def at(second: float) -> str:
        return datetime.fromtimestamp(second, UTC).isoformat()

    log = tmp_path / "resume.pauses.jsonl"
    events = [
        {"event": "pause", "run": "resume-1", "at": at(1_000_100), "seconds": 50.0},  # 50-100
        {"event": "pause", "run": "resume-1", "at": at(1_000_230), "seconds": 60.0},  # 170-230
        {"event": "start", "run": "x", "at": at(1_000_000)},  # not a pause
    ]
    log.write_text("\n".join(json.dumps(e) for e in events) + '\n{"event": "pau')
    base = 1_000_000
    assert stopped_seconds(log, base, base + 300) == 110.0
    assert stopped_seconds(log, base + 75, base + 200) == 25.0 + 30.0  # clipped at both ends
    assert stopped_seconds(log, base + 100, base + 170) == 0.0  # between the pauses
    assert stopped_seconds(tmp_path / "none.jsonl", base, base + 300) == 0.0
