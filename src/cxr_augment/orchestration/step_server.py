"""Preloaded by the forkserver of a multiprocess executor (``translate.warm_step_processes``):
every step process it forks runs torch with ``CXR_WORKER_THREADS`` threads (default 1), and
finds the libraries its node needs already imported.

A step process that Dagster starts the default way caps its threads when it imports the
definitions (``threads.limit_threads``: its command line says ``execute_step``). A forked one
finds the definitions already imported by the forkserver, a process that is not itself a step
worker; so the forkserver sets the cap in its environment, which its children inherit before
they import torch.

The project's pipelines import their node modules lightly (a code load stays quick), so a node
imports torch, torchvision, diffusers, scikit-learn and the project's own modules when it
first runs: about 3-4 s in every step process, each step being a new process. Imported here
once (``preload``), after the thread cap, they are in every step forked from the forkserver.

A step process also opens the run's Dagster instance. Its SQLite storages (runs, event log,
schedules) each check the database's schema revision against Dagster's migration scripts, and
alembic reads the scripts (about 90 Python files) anew for each check: four times per step.
``warm_storage`` imports the storages' modules here and keeps one alembic script directory per
script location (``_ScriptDirectories``), read once in this process, so a forked step
compares revisions without reading a file. It only reads: upgrading a schema stays
``dagster instance migrate``'s, which does not run in a step process.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys

from cxr_augment.orchestration.threads import worker_threads
from cxr_augment.switches import switched_on

#: the project's packages whose modules hold the nodes' work (not orchestration, which the
#: definitions import, nor the command-line entry points)
NODE_PACKAGES = (
    "augment",
    "classify",
    "datasets",
    "generation",
    "pipelines",
    "preprocess",
    "render",
    "report",
)
#: what node functions import on first use, beyond what the project's modules import
LIBRARIES = (
    "matplotlib.pyplot",
    "safetensors.torch",
    "scipy.stats",
    "sklearn.linear_model",
    "sklearn.metrics",
    "statsmodels.stats.contingency_tables",
    "statsmodels.stats.multitest",
    "timm",
)


def step_modules() -> list[str]:
    """The modules ``preload`` imports: the project's node packages' modules, then
    ``LIBRARIES``."""
    import cxr_augment

    prefix = f"{cxr_augment.__name__}."
    names = [
        m.name
        for m in pkgutil.walk_packages(cxr_augment.__path__, prefix)
        if m.name[len(prefix) :].split(".")[0] in NODE_PACKAGES
    ]
    return [*names, *LIBRARIES]


def preload() -> list[str]:
    """Imports ``step_modules()``; returns those that failed (a step that needs one imports it
    itself and reports its error there). ``CXR_STEP_PRELOAD=off`` imports nothing."""
    if _switched_off():
        return []
    failed = []
    for name in step_modules():
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001  (the step's own import says what is wrong)
            failed.append(name)
    return failed


#: Dagster's SQLite storages that check their schema revision (``get_alembic_config(__file__)``)
ALEMBIC_STORAGES = (
    "dagster._core.storage.runs.sqlite.sqlite_run_storage",
    "dagster._core.storage.event_log.sqlite.sqlite_event_log",
    "dagster._core.storage.schedules.sqlite.sqlite_schedule_storage",
)
#: what a step process imports to open the default instance's storages
STORAGE_MODULES = (
    *ALEMBIC_STORAGES,
    "dagster._core.storage.event_log.sqlite.consolidated_sqlite_event_log",
    "dagster._core.storage.sqlite_storage",
)


class _ScriptDirectories:
    """Stands for alembic's ``ScriptDirectory`` in ``dagster._core.storage.sql`` (whose
    ``check_alembic_revision`` is its only user there): ``from_config`` gives one script
    directory per script location, its revision map read once."""

    _kept: dict[str, object] = {}

    @classmethod
    def from_config(cls, config):
        from alembic.script import ScriptDirectory

        location = config.get_main_option("script_location")
        scripts = cls._kept.get(location)
        if scripts is None:
            scripts = cls._kept[location] = ScriptDirectory.from_config(config)
        return scripts


def warm_storage() -> bool:
    """Imports ``STORAGE_MODULES`` and reads the migration scripts of ``ALEMBIC_STORAGES`` once
    (``_ScriptDirectories``). False, and nothing changed, where Dagster's ``storage.sql`` no
    longer reads them the way this expects."""
    try:
        for name in STORAGE_MODULES:
            importlib.import_module(name)
        sql = importlib.import_module("dagster._core.storage.sql")
    except ImportError:
        return False
    if getattr(getattr(sql, "ScriptDirectory", None), "from_config", None) is None:
        return False
    if not hasattr(sql, "get_alembic_config"):
        return False
    sql.ScriptDirectory = _ScriptDirectories
    for name in ALEMBIC_STORAGES:
        config = sql.get_alembic_config(sys.modules[name].__file__)
        _ScriptDirectories.from_config(config).as_revision_number("head")
    return True


def _forks_its_steps(job, default_executor) -> bool:
    """Whether ``job`` (as declared, before Dagster builds it) runs on a multiprocess
    executor, whose step processes fork from this forkserver."""
    executor = getattr(job, "executor_def", None) or default_executor
    return getattr(executor, "name", None) == "multiprocess"


def resolve_jobs() -> list[str]:
    """Builds the repository, and each job on a multiprocess executor, of every Dagster
    ``Definitions`` that the project's loaded modules hold (the code location's, which the
    forkserver has just imported), so that a forked step finds them built (Dagster builds them
    lazily, in every step process: about 0.6 s on 2 cores). Returns the jobs built."""
    import dagster as dg

    built = []
    prefix = __name__.split(".")[0] + "."
    for name, module in list(sys.modules.items()):
        if not name.startswith(prefix) or module is None:
            continue
        for value in list(vars(module).values()):
            if not isinstance(value, dg.Definitions):
                continue
            repository = value.get_repository_def()
            for job in value.jobs or ():
                if _forks_its_steps(job, value.executor) and job.name in repository.job_names:
                    repository.get_job(job.name)
                    built.append(job.name)
    return built


def _switched_off() -> bool:
    return not switched_on("CXR_STEP_PRELOAD")


for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, str(worker_threads()))
preload()
if not _switched_off():
    warm_storage()
