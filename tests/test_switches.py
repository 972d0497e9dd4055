"""The environment switches of the Dagster side: one reading for all of them."""

from __future__ import annotations

import pytest

from cxr_augment.orchestration import code_server
from cxr_augment.switches import switched_on


@pytest.mark.parametrize("value", ["off", "OFF", " Off ", "0", "false", "False", "no", "NO\n"])
def test_a_switch_reads_off_in_any_case_and_spacing(monkeypatch, value):
    monkeypatch.setenv("CXR_TEST_SWITCH", value)
    assert switched_on("CXR_TEST_SWITCH") is False


@pytest.mark.parametrize("value", ["on", "1", "true", "yes", "", "offline"])
def test_anything_else_or_unset_leaves_it_on(monkeypatch, value):
    monkeypatch.setenv("CXR_TEST_SWITCH", value)
    assert switched_on("CXR_TEST_SWITCH") is True
    monkeypatch.delenv("CXR_TEST_SWITCH")
    assert switched_on("CXR_TEST_SWITCH") is True


def test_the_code_servers_switches_read_it(monkeypatch):
    # " Off " was read as on before the switches shared one reading (no strip)
    monkeypatch.setenv("CXR_WARM_RELOAD", " Off ")
    monkeypatch.setenv("CXR_SNAPSHOT_CACHE", "no")
    assert not code_server.warm_reload_enabled()
    assert not code_server.snapshot_cache_enabled()
    monkeypatch.setenv("CXR_WARM_RELOAD", "on")
    assert code_server.warm_reload_enabled()
