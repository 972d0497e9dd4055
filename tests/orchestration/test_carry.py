"""Carrying Dagster's materialisations over to new code versions: what a change made unsynced,
and only that, shows as up to date again, with its data version and downstream untouched."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.definitions.data_version import CODE_VERSION_TAG, DATA_VERSION_TAG

from cxr_augment.orchestration.carry import carry, code_versions, runs_in_progress, to_carry
from cxr_augment.orchestration.resume import statuses

ROOT = Path(__file__).resolve().parents[2]


def _defs(va: str, vb: str, vc: str) -> dg.Definitions:
    @dg.asset(code_version=va)
    def a():
        return 1

    @dg.asset(code_version=vb)
    def b(a):
        return a + 1

    @dg.asset(code_version=vc)
    def c(b):
        return b + 1

    return dg.Definitions(assets=[a, b, c])


def _status(instance, defs) -> dict[str, str]:
    found = statuses(instance, defs.resolve_asset_graph())
    return {key.to_user_string(): status.value for key, status in found.items()}


@pytest.fixture
def instance():
    with dg.DagsterInstance.ephemeral() as inst:
        yield inst


def test_only_what_the_change_made_unsynced_is_carried_and_then_shows_as_up_to_date(instance):
    made = _defs("1", "1", "1")
    assert dg.materialize(made.assets, instance=instance).success
    # c made again under an older code: its record is not of the revision being carried from
    dg.materialize(_defs("1", "1", "0").assets, instance=instance, selection=["c"])
    before = {k: instance.get_latest_materialization_event(dg.AssetKey(k)) for k in "abc"}

    now = _defs("2", "1", "2")  # a's and c's code changed since the revision; b's did not
    earlier, current = code_versions(made), code_versions(now)
    assert (earlier, current) == ({"a": "1", "b": "1", "c": "1"}, {"a": "2", "b": "1", "c": "2"})
    assert _status(instance, now) == {"a": "STALE", "b": "FRESH", "c": "STALE"}

    keys = to_carry(instance, earlier, current)
    assert [k.to_user_string() for k in keys] == ["a"]  # c was recorded under "0", not "1"
    assert to_carry(instance, earlier, current, skip=["x", "[ab]"]) == []
    assert len(instance.get_asset_records()) == 3  # listing writes nothing
    assert instance.get_latest_materialization_event(dg.AssetKey("a")) == before["a"]

    assert carry(instance, keys, earlier, current, "REV") == keys
    assert _status(instance, now) == {"a": "FRESH", "b": "FRESH", "c": "STALE"}
    after = instance.get_latest_materialization_event(dg.AssetKey("a"))
    assert after != before["a"]
    assert len(instance.fetch_materializations(dg.AssetKey("a"), limit=10).records) == 2
    assert after.run_id == ""  # a reported event, not a run that made the data again
    old, new = before["a"].asset_materialization, after.asset_materialization
    assert new.tags[CODE_VERSION_TAG] == "2"
    assert new.tags[DATA_VERSION_TAG] == old.tags[DATA_VERSION_TAG]
    assert "code version 1 (REV)" in new.metadata["carried_from"].value
    # b and c still read a's data version: neither became unsynced by the carry
    for k in "bc":
        assert instance.get_latest_materialization_event(dg.AssetKey(k)) == before[k]
    assert to_carry(instance, earlier, current) == []  # a second carry finds nothing


def test_an_asset_made_again_after_the_listing_is_not_carried(instance):
    made = _defs("1", "1", "1")
    assert dg.materialize(made.assets, instance=instance).success
    now = _defs("2", "1", "1")
    earlier, current = code_versions(made), code_versions(now)
    keys = to_carry(instance, earlier, current)
    assert [k.to_user_string() for k in keys] == ["a"]
    # a run of the new code makes a again between the listing and the carry
    assert dg.materialize(now.assets, instance=instance, selection=["a"]).success
    made_again = instance.get_latest_materialization_event(dg.AssetKey("a"))
    assert carry(instance, keys, earlier, current, "REV") == []
    assert instance.get_latest_materialization_event(dg.AssetKey("a")) == made_again
    assert made_again.asset_materialization.tags[CODE_VERSION_TAG] == "2"


def test_a_never_materialised_asset_is_not_carried(instance):
    assert to_carry(instance, {"a": "1"}, {"a": "2"}) == []


def test_runs_in_progress_are_named(instance):
    assert runs_in_progress(instance) == []
    run = instance.create_run_for_job(
        dg.Definitions(
            jobs=[dg.define_asset_job("j", ["a"])], assets=_defs("1", "1", "1").assets
        ).resolve_job_def("j")
    )
    assert runs_in_progress(instance) == [run.run_id]  # NOT_STARTED counts
    instance.report_run_failed(run)
    assert runs_in_progress(instance) == []


def _uncommitted() -> bool:
    return bool(
        subprocess.run(
            ["git", "status", "--porcelain", "--", "src", "conf"], cwd=ROOT, capture_output=True,
            text=True,
        ).stdout.strip()
    )  # fmt: skip


@pytest.fixture(scope="module")
def script_runs(tmp_path_factory):
    """The script over the project's own definitions, from a folder with the same code and from
    a worktree of the commit checked out (its code, when unedited): both at once, each in its
    own process and instance."""
    runs = {}
    for rev in ("folder", "HEAD"):
        if rev == "HEAD" and _uncommitted():
            continue
        home = tmp_path_factory.mktemp(f"home_{rev}")
        # files, not pipes: a process whose pipe is full would wait for the other's end
        out, err = (open(home / name, "w+") for name in ("stdout", "stderr"))  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "scripts/carry_records.py", str(ROOT) if rev == "folder" else rev,
             "--dagster"],
            cwd=ROOT, stdout=out, stderr=err, text=True,
            env={**os.environ, "DAGSTER_HOME": str(home), "KEDRO_ENV": "local"},
        )  # fmt: skip
        runs[rev] = proc, out, err
    done = {}
    for rev, (proc, out, err) in runs.items():
        try:
            proc.wait(timeout=600)
        finally:
            proc.kill()
        with out, err:
            out.seek(0), err.seek(0)
            done[rev] = (proc.returncode, out.read(), err.read())
    return done


@pytest.mark.parametrize("rev", ["folder", "HEAD"])
def test_the_script_lists_nothing_to_carry_from_the_code_as_it_is(script_runs, rev):
    if rev not in script_runs:
        pytest.skip("src/ or conf/ has uncommitted edits: HEAD is not the code as it is")
    returncode, stdout, stderr = script_runs[rev]
    assert returncode == 0, stderr[-3000:]
    line = next(s for s in stdout.splitlines() if "assets were materialised under" in s)
    n_assets = int(line.split(" of ")[1].split()[0])
    assert line.startswith("0 of ") and n_assets > 50
