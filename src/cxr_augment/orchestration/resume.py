"""Materialise, on Dagster, what is missing or unsynced, until nothing is: a study resumes.

A Dagster run that was killed (the machine went away, the process was stopped) leaves the
assets it materialised recorded in the instance and the rest missing; Dagster does not go on by
itself. In the UI, "Materialize unsynced" over the asset graph does one step of that. This
module does it from the command line, for every job or the ones named, and goes on until every
asset is up to date:

    DAGSTER_HOME=$PWD/.dagster_home KEDRO_ENV=study \\
        .venv/bin/python -m cxr_augment.orchestration.resume [--dry-run] [JOB ...]

Each pass

- asks Dagster for each materialisable asset's status (``CachingStaleStatusResolver``, as the
  UI and ``RunRequest(stale_assets_only=True)`` do): *missing*, *stale* (its code version, or
  an upstream asset's data version, changed since it was materialised) or fresh;
- takes the missing and stale ones, and the assets that must be materialised with them (the
  other outputs of the same Kedro node). What lies downstream waits for the next pass, where
  Dagster says whether it is stale: an asset's data version is its bytes (``io_managers``),
  so an asset made again with the same bytes leaves its readers up to date and they are not
  run. ``--downstream`` adds everything downstream to the same pass instead (fewer passes,
  every reader run);
- runs, for each job in turn, the selected assets of that job whose selected upstream assets
  are in the same job (the rest wait for a later pass: ``generation`` reads a
  ``classification`` model, ``augmentation`` assets of both). An asset in no named job runs
  in Dagster's implicit asset job, as the UI runs it.

Each run is a normal Dagster run on the job's own executor (``dagster.yml``), recorded in the
instance and tagged ``cxr_augment/resume``. A failed run stops the loop with its job and id.
"""

from __future__ import annotations

import argparse
import graphlib
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

IMPLICIT_JOB = "__ASSET_JOB"
TAG = "cxr_augment/resume"
PID_TAG = "cxr_augment/resume_pid"  # the process that runs it (runs execute in this process)
PAUSES = "resume.pauses.jsonl"  # in the instance's folder: the time this process was stopped


def statuses(instance, asset_graph) -> dict:
    """Every materialisable asset's ``StaleStatus`` in the instance, as the UI computes it."""
    from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView, TemporalContext
    from dagster._core.definitions.data_version import CachingStaleStatusResolver
    from dagster._time import get_current_datetime

    view = AssetGraphView(
        temporal_context=TemporalContext(effective_dt=get_current_datetime(), last_event_id=None),
        instance=instance,
        asset_graph=asset_graph,
    )
    resolver = CachingStaleStatusResolver(instance, asset_graph, view)
    return {key: resolver.get_status(key) for key in asset_graph.materializable_asset_keys}


def _job_keys(defs, jobs: Iterable[str]) -> dict[str, set]:
    return {name: set(defs.resolve_job_def(name).asset_layer.selected_asset_keys) for name in jobs}


def named_jobs(defs) -> list[str]:
    """The definitions' jobs in their order, without Dagster's implicit asset job."""
    return [j.name for j in defs.resolve_all_job_defs() if not j.name.startswith("__")]


def plan(
    defs, status: dict, jobs: Sequence[str] | None = None, downstream: bool = False
) -> dict[str, list]:
    """One pass: for each job, the asset keys to materialise in one run of it now.

    ``status`` maps each materialisable key to its ``StaleStatus`` (``statuses``); ``jobs``
    limits the work to those jobs' assets (default: every asset, those in no named job going to
    Dagster's implicit asset job). ``downstream``: also everything downstream of a missing or
    stale asset (which Dagster calls stale only once its upstream is made again). Empty when
    everything is fresh.
    """
    from dagster._core.definitions.data_version import StaleStatus

    graph = defs.resolve_asset_graph()
    all_jobs = named_jobs(defs)
    members = _job_keys(defs, jobs if jobs is not None else all_jobs)
    scope = set().union(*members.values()) if jobs is not None else set(status)
    scope &= set(status)
    if jobs is None:
        named = set().union(*members.values()) if members else set()
        rest = scope - named
        if rest:
            members[IMPLICIT_JOB] = rest

    todo = {k for k in scope if status[k] in (StaleStatus.MISSING, StaleStatus.STALE)}
    frontier = list(todo)
    while frontier:  # what lies downstream, and what must be materialised with it
        key = frontier.pop()
        near = set(graph.get(key).child_keys) if downstream else set()
        near |= {k for k in graph.get_execution_set_asset_and_check_keys(key) if k in status}
        for k in near & scope:
            if k not in todo:
                todo.add(k)
                frontier.append(k)

    job_of = {}
    for name, keys in members.items():  # a key in several jobs goes to the first
        for k in keys:
            job_of.setdefault(k, name)
    # a node's outputs go together: decide per unit (the keys materialised together), in an
    # order where every unit comes after the units it reads
    unit_of = {}
    for key in todo:
        if key not in unit_of:
            unit = frozenset(
                k for k in graph.get_execution_set_asset_and_check_keys(key) if k in todo
            ) | {key}
            for k in unit:
                unit_of[k] = unit
    reads = {
        unit: {unit_of[p] for k in unit for p in graph.get(k).parent_keys if p in todo} - {unit}
        for unit in set(unit_of.values())
    }
    ready: dict[str, set] = {name: set() for name in members}
    blocked: set = set()
    for unit in graphlib.TopologicalSorter(reads).static_order():
        jobs_of_unit = {job_of[k] for k in unit}
        if len(jobs_of_unit) > 1 or any(
            p in blocked or {job_of[k] for k in p} != jobs_of_unit for p in reads[unit]
        ):
            blocked.add(unit)
            continue
        ready[jobs_of_unit.pop()] |= unit
    return {
        name: sorted(keys, key=lambda k: k.to_user_string()) for name, keys in ready.items() if keys
    }


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def mark_orphans(instance, host: str | None = None) -> list[str]:
    """The ids of this module's runs that still say they are running although the process that
    ran them (on this machine) is gone, each now marked failed: a killed resume left them so,
    and the UI would show them running for ever."""
    from dagster import DagsterRunStatus, RunsFilter

    host = host or os.uname().nodename
    running = (DagsterRunStatus.STARTED, DagsterRunStatus.STARTING, DagsterRunStatus.NOT_STARTED)
    orphans = []
    for run in instance.get_runs(RunsFilter(tags={TAG: "1"}, statuses=list(running))):
        pid_tag = run.tags.get(PID_TAG, "")
        at = pid_tag.split("@")
        if len(at) != 2 or at[1] != host or not at[0].isdigit() or _alive(int(at[0])):
            continue
        instance.report_run_failed(run, f"its process ({pid_tag}) ended before the run did")
        orphans.append(run.run_id)
    return orphans


def run_times(instance) -> list[tuple[str, str, float, float]]:
    """This module's runs, oldest first, as (run id, job, start, seconds): a run that was
    killed ends at its last event."""
    from dagster import RunsFilter

    rows = []
    for rec in instance.get_run_records(RunsFilter(tags={TAG: "1"}), ascending=True):
        start, end = rec.start_time, rec.end_time
        if start is None:
            continue
        if end is None:
            last = instance.get_records_for_run(rec.dagster_run.run_id, limit=1, ascending=False)
            end = last.records[0].timestamp if last.records else start
        rows.append((rec.dagster_run.run_id, rec.dagster_run.job_name, start, end - start))
    return rows


def stopped_seconds(pauses: Path, start: float, end: float) -> float:
    """How long this module's process was stopped between ``start`` and ``end`` (epoch
    seconds): the pauses its ``PauseWatch`` logged in ``pauses``, each the ``seconds`` up to its
    ``at``, clipped to the interval. No log: none."""
    import json
    from datetime import datetime

    total = 0.0
    try:
        lines = pauses.read_text().splitlines()
    except OSError:
        return 0.0
    for line in lines:
        try:
            e = json.loads(line)
            if e.get("event") != "pause":
                continue
            until = datetime.fromisoformat(e["at"]).timestamp()
            since = until - float(e["seconds"])
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
        total += max(0.0, min(until, end) - max(since, start))
    return total


def busy_seconds(instance, run_id: str, end: float) -> float:
    """How long at least one step of the run was executing: the union of its steps' intervals
    (a step with no end, in a killed run, ends at ``end``). Unlike the wall time it leaves out
    the run's start and its waits between steps; a process stopped by a signal mid-step still
    counts as executing."""
    spans = sorted(
        (s.start_time, s.end_time if s.end_time is not None else end)
        for s in instance.get_run_step_stats(run_id)
        if s.start_time is not None
    )
    total, cover_start, cover_end = 0.0, None, None
    for a, b in spans:
        if cover_end is None or a > cover_end:
            if cover_end is not None:
                total += cover_end - cover_start
            cover_start, cover_end = a, b
        else:
            cover_end = max(cover_end, b)
    if cover_end is not None:
        total += cover_end - cover_start
    return total


def resume(
    defs,
    recon_repo,
    instance,
    jobs: Sequence[str] | None = None,
    dry_run: bool = False,
    max_passes: int = 200,
    say: Callable[[str], None] = print,
    downstream: bool = False,
) -> list[tuple[str, int, str]]:
    """Materialise what is missing or unsynced, pass after pass, until nothing is; the runs
    made, as (job, number of assets, run id). Raises ``RuntimeError`` naming the job and run
    when a run fails, and when ``max_passes`` passes leave work undone."""
    from dagster import execute_job

    from cxr_augment.orchestration.run_log import PauseWatch

    runs: list[tuple[str, int, str]] = []
    for run_id in mark_orphans(instance):
        say(f"resume: run {run_id} had lost its process; marked failed")
    graph = defs.resolve_asset_graph()
    # runs execute in this process: a stop of it (kill -STOP, Ctrl-Z) is a stop of the run
    with PauseWatch(Path(instance.root_directory) / PAUSES, f"resume-{os.getpid()}"):
        for _ in range(max_passes):
            work = plan(defs, statuses(instance, graph), jobs, downstream)
            if not work:
                say(f"resume: every asset is up to date ({len(runs)} runs)")
                return runs
            for name, keys in work.items():
                say(f"resume: {name}: {len(keys)} assets missing or unsynced")
            if dry_run:
                for name, keys in work.items():
                    for k in keys:
                        say(f"  {name}  {k.to_user_string()}")
                say("resume: dry run; later passes depend on these and are not listed")
                return runs
            for name, keys in work.items():
                result = execute_job(
                    recon_repo.get_reconstructable_job(name),
                    instance=instance,
                    asset_selection=keys,
                    tags={TAG: "1", PID_TAG: f"{os.getpid()}@{os.uname().nodename}"},
                )
                runs.append((name, len(keys), result.run_id))
                if not result.success:
                    raise RuntimeError(
                        f"resume: the run {result.run_id} of job {name} failed; its events are in the "
                        f"Dagster instance ({instance.root_directory}); fix the cause and run again"
                    )
            # a job's selection reads nothing another job of the pass selected, so each pass's
            # runs are independent; what they made unsynced downstream is the next pass's
        raise RuntimeError(f"resume: work left after {max_passes} passes")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("jobs", nargs="*", help="the jobs whose assets to bring up to date (all)")
    ap.add_argument("--dry-run", action="store_true", help="list the first pass, run nothing")
    ap.add_argument(
        "--downstream",
        action="store_true",
        help="run everything downstream of an unsynced asset in the same pass, also what its "
        "same bytes would leave up to date",
    )
    ap.add_argument(
        "--times", action="store_true", help="list this module's runs and their time, run nothing"
    )
    ap.add_argument("-m", "--module", default="cxr_augment.definitions")
    ap.add_argument("-a", "--attribute", default="defs")
    args = ap.parse_args(argv)
    if not os.environ.get("DAGSTER_HOME"):
        ap.error("set DAGSTER_HOME to the instance to resume (make dagster's: $PWD/.dagster_home)")

    import importlib

    from dagster import DagsterInstance
    from dagster._core.definitions.reconstruct import ReconstructableRepository

    if args.times:
        with DagsterInstance.get() as instance:
            rows = run_times(instance)
            busy = [busy_seconds(instance, r[0], r[2] + r[3]) for r in rows]
            pauses = Path(instance.root_directory) / PAUSES
        stopped = [stopped_seconds(pauses, r[2], r[2] + r[3]) for r in rows]
        print("started (UTC)        wall time   steps busy     stopped  job  run")
        for (run_id, job, start, seconds), b, st in zip(rows, busy, stopped, strict=True):
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(start))
            print(f"{when}  {seconds:9.1f} s  {b:9.1f} s  {st:8.1f} s  {job}  {run_id}")
        total, steps, paused = sum(r[3] for r in rows), sum(busy), sum(stopped)
        print(f"{len(rows)} runs, {total:.0f} s ({total / 3600:.2f} h) of wall time in all; "
              f"a step executing during {steps:.0f} s ({steps / 3600:.2f} h) of it; this "
              f"process stopped during {paused:.0f} s ({paused / 3600:.2f} h): "
              f"{(total - paused) / 3600:.2f} h running")  # fmt: skip
        return 0
    defs = getattr(importlib.import_module(args.module), args.attribute)
    known = named_jobs(defs)
    unknown = [j for j in args.jobs if j not in known]
    if unknown:
        ap.error(f"no job {', '.join(unknown)} in {args.module}; its jobs: {', '.join(known)}")
    repo = ReconstructableRepository.for_module(args.module, args.attribute, os.getcwd())
    with DagsterInstance.get() as instance:
        try:
            resume(defs, repo, instance, args.jobs or None, args.dry_run,
                   downstream=args.downstream)  # fmt: skip
        except RuntimeError as err:
            print(err, file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
