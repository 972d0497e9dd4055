"""Carry Dagster's materialisations over to new code versions, for a change that cannot alter
the results: the Dagster side of ``scripts/carry_records.py``.

Dagster marks an asset unsynced when its code version (``versions.py``) differs from the one
recorded with its latest materialisation, and the code versions count conservatively: an edited
error message in a dataset class changes the version of every node that can reach it. Without
this, every classifier training of a study would run again after such an edit.

``scripts/carry_records.py REV --dagster`` computes each asset's code version under ``REV``'s
code and under the current code (``code_versions``). An asset whose latest materialisation was
recorded under ``REV``'s version, and whose version differs now, is one the change made
unsynced (``to_carry``). ``--apply`` reports for each a runless materialisation (``carry``) that
repeats the latest one under the current code version: the same data version, input data
versions and metadata, plus a ``carried_from`` entry naming the earlier code version and
revision. The asset then shows as up to date, and what lies downstream of it too, since its data
version did not change. The UI lists the carried event in the asset's history as a reported
materialisation, beside the run that made the data.

Whether the change can alter a result is the user's to judge from what the script lists, and
``--skip PATTERN`` leaves out the assets whose results it can alter; an asset recorded under
any other code version is left as it is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from fnmatch import fnmatchcase as fnmatch


def code_versions(defs) -> dict[str, str]:
    """Each materialisable asset's code version in ``defs``, by the asset key's user string."""
    graph = defs.resolve_asset_graph()
    return {
        key.to_user_string(): graph.get(key).code_version
        for key in graph.materializable_asset_keys
        if graph.get(key).code_version is not None
    }


def runs_in_progress(instance) -> list[str]:
    """Runs the instance holds as not finished (queued, or created and not yet launched, too):
    carrying beside them would race their events."""
    from dagster import DagsterRunStatus, RunsFilter
    from dagster._core.storage.dagster_run import IN_PROGRESS_RUN_STATUSES

    unfinished = [*IN_PROGRESS_RUN_STATUSES, DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED]
    return list(instance.get_run_ids(RunsFilter(statuses=unfinished)))


def _latest(instance, key):
    record = instance.get_latest_materialization_event(key)
    return None if record is None else record.asset_materialization


def to_carry(
    instance, earlier: Mapping[str, str], current: Mapping[str, str], skip: Sequence[str] = ()
) -> list:
    """The asset keys whose latest materialisation was recorded under the ``earlier`` code
    version and whose ``current`` one differs (unpartitioned assets), but for those matching a
    pattern of ``skip`` (``fnmatch`` on the key's user string: ``study/report/*``), whose
    results the change can alter."""
    from dagster import AssetKey
    from dagster._core.definitions.data_version import CODE_VERSION_TAG

    keys = []
    for name, version in sorted(current.items()):
        before = earlier.get(name)
        if before is None or before == version or any(fnmatch(name, p) for p in skip):
            continue
        key = AssetKey.from_user_string(name)
        latest = _latest(instance, key)
        if latest is None or latest.partition is not None:
            continue
        if (latest.tags or {}).get(CODE_VERSION_TAG) == before:
            keys.append(key)
    return keys


def carry(instance, keys, earlier: Mapping[str, str], current: Mapping[str, str], rev: str) -> list:
    """Report, for each of ``keys``, its latest materialisation again under the ``current`` code
    version; the keys reported.

    Each asset's latest materialisation is read again just before its event is written, and an
    asset whose latest one is no longer recorded under the ``earlier`` version (a run started
    after the listing made it again) is left out: its new event, not the listed one, is what
    the asset holds now. (Dagster has no lock to take: a run that writes between that reading
    and the carried event can still be followed by it.)"""
    from dagster import AssetMaterialization, MetadataValue
    from dagster._core.definitions.data_version import CODE_VERSION_TAG

    done = []
    for key in keys:
        name = key.to_user_string()
        latest = _latest(instance, key)
        if latest is None:
            continue
        tags = dict(latest.tags or {})
        before = tags.get(CODE_VERSION_TAG)
        if before is None or before != earlier.get(name):
            continue
        tags[CODE_VERSION_TAG] = current[name]
        note = f"code version {before} ({rev}); its data were not made again"
        instance.report_runless_asset_event(
            AssetMaterialization(
                asset_key=key,
                description=latest.description,
                metadata={**latest.metadata, "carried_from": MetadataValue.text(note)},
                tags=tags,
            )
        )
        done.append(key)
    return done
