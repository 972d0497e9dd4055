"""The production environment's executors (Celery, Kubernetes) are valid kedro-dagster
configuration; creating them needs dagster-celery / dagster-k8s, which the laptop install
does not carry, so that step is checked only where they are installed."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[2]


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


@pytest.mark.skipif(
    importlib.util.find_spec("dagster_celery") is None, reason="dagster-celery not installed"
)
def test_production_executors_are_created(monkeypatch):  # pragma: no cover (dagster-celery)
    from kedro_dagster.dagster import ExecutorCreator

    executors = ExecutorCreator(
        dagster_config=_config("production", monkeypatch)
    ).create_executors()
    assert "celery" in executors
