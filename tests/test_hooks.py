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
