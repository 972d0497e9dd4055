"""The production environment's executors (Celery, Kubernetes) are valid kedro-dagster
configuration, are created (dagster-celery and dagster-k8s: the ``production`` extra, which
``make`` installs), and the code location loads and validates under ``KEDRO_ENV=production``
with each job on the executor ``conf/production/dagster.yml`` names."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]


def _production_extra_installed() -> None:
    import importlib.util

    missing = [m for m in ("dagster_celery", "dagster_k8s") if importlib.util.find_spec(m) is None]
    assert not missing, (
        f"{', '.join(missing)} not installed: the production extra, "
        "`pip install -c requirements.lock -e '.[dev,production]'` (what `make test` installs)"
    )


def _config(env: str, monkeypatch):
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project
    from kedro_dagster.config.models import get_dagster_config

    # the project's hook exports the session's environment to KEDRO_ENV: keep it to this test
    monkeypatch.setenv("KEDRO_ENV", env)
    bootstrap_project(PROJECT)
    with KedroSession.create(project_path=PROJECT, env=env) as session:
        return get_dagster_config(session.load_context())


def test_production_jobs_name_spanning_executors(monkeypatch):
    config = _config("production", monkeypatch)
    executors = config.executors
    assert {"celery", "kubernetes", "sequential", "multiprocess"} <= set(executors)
    jobs = config.jobs
    assert jobs["classification"].executor == "celery"
    assert jobs["augmentation"].executor == "kubernetes"
    assert all(job.executor in executors for job in jobs.values())
    # the base environment keeps every job local
    assert {j.executor for j in _config("local", monkeypatch).jobs.values()} == {"sequential"}


def test_the_study_runs_every_job_on_the_multiprocess_executor(monkeypatch):
    study, local = _config("study", monkeypatch), _config("local", monkeypatch)
    # the same jobs over the same pipelines as the base's, each on two step processes
    assert set(study.jobs) == set(local.jobs)
    for name, job in study.jobs.items():
        assert job.pipeline == local.jobs[name].pipeline
        assert job.executor == "multiprocess"
    assert study.executors["multiprocess"] == local.executors["multiprocess"]


def test_production_executors_are_created(monkeypatch):
    _production_extra_installed()
    from kedro_dagster.dagster import ExecutorCreator

    executors = ExecutorCreator(
        dagster_config=_config("production", monkeypatch)
    ).create_executors()
    assert executors["celery"].name == "celery"
    assert executors["kubernetes"].name == "k8s"


_VALIDATE = """
import dagster as dg
from cxr_augment.definitions import defs
dg.Definitions.validate_loadable(defs)
for name in ("classification", "augmentation", "generation"):
    print("JOB", name, defs.resolve_job_def(name).executor_def.name)
"""


def test_production_definitions_validate_with_spanning_executors():
    # what `KEDRO_ENV=production dagster definitions validate -m cxr_augment.definitions`
    # checks, and which executor each job got (a fresh process: the location reads KEDRO_ENV
    # at import)
    _production_extra_installed()
    env = {**os.environ, "KEDRO_ENV": "production", "KEDRO_DISABLE_TELEMETRY": "true"}
    out = subprocess.run(
        [sys.executable, "-c", _VALIDATE], cwd=PROJECT, env=env, capture_output=True,
        text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    jobs = dict(line.split()[1:] for line in out.stdout.splitlines() if line.startswith("JOB "))
    assert jobs == {"classification": "celery", "augmentation": "k8s", "generation": "k8s"}
