"""The run hook freezes the start-up objects for the run and thaws them after."""

from __future__ import annotations

import gc

from cxr_augment.hooks import RunHooks
from cxr_augment.settings import HOOKS


def test_objects_alive_at_start_are_frozen_for_the_run_only():
    gc.unfreeze()
    hooks = RunHooks()
    hooks.before_pipeline_run()
    try:
        assert gc.get_freeze_count() > 1000  # modules, classes, configuration...
    finally:
        hooks.after_pipeline_run()
    assert gc.get_freeze_count() == 0


def test_a_failed_run_thaws_too():
    hooks = RunHooks()
    hooks.before_pipeline_run()
    hooks.on_pipeline_error()
    assert gc.get_freeze_count() == 0


def test_the_project_registers_the_hook():
    assert any(isinstance(h, RunHooks) for h in HOOKS)


def test_loading_every_pipeline_and_dataset_does_not_import_torch():
    """Every `kedro run` and Dagster's translation load all pipelines: torch (~0.6 GB, seconds
    to import) must wait for the first node that trains or predicts."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    code = (
        "import sys\n"
        "from kedro.framework.startup import bootstrap_project\n"
        f"bootstrap_project({str(root)!r})\n"
        "import cxr_augment.datasets\n"
        "from cxr_augment.pipeline_registry import register_pipelines\n"
        "assert len(register_pipelines()['classification'].nodes) > 50\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=root,
        env={**os.environ, "KEDRO_DISABLE_TELEMETRY": "true"},
    )
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_the_run_environment_reaches_the_studys_structure(monkeypatch):
    """`kedro run --env study` builds the pipelines with the study profile's seeds."""
    from types import SimpleNamespace

    from cxr_augment import study

    monkeypatch.delenv("KEDRO_ENV", raising=False)
    assert study.repeats("ptx_densenet121") == [1]
    RunHooks().after_context_created(SimpleNamespace(env="study"))
    import os

    assert os.environ["KEDRO_ENV"] == "study"
    assert study.repeats("ptx_densenet121") == [1, 2, 3]
    monkeypatch.setenv("KEDRO_ENV", "chexpert")  # an explicit KEDRO_ENV is not overridden
    RunHooks().after_context_created(SimpleNamespace(env="study"))
    assert os.environ["KEDRO_ENV"] == "chexpert"
