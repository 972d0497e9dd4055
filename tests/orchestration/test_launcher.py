"""The warm run launcher's standby worker: it loads a code location, is current only while the
code is unchanged, executes nothing on end of input, and its launcher loads from config."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from cxr_augment.orchestration import launcher as launcher_module
from cxr_augment.orchestration.launcher import (
    WarmInstance,
    WarmRunLauncher,
    _Standby,
    code_fingerprint,
)

TINY_DEFS = """
import dagster as dg


@dg.asset
def one():
    return 1


defs = dg.Definitions(assets=[one])
"""


def test_the_fingerprint_follows_edits_additions_and_removals_not_caches(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.py").write_text("x = 1\n")
    first = code_fingerprint([tmp_path])
    assert code_fingerprint([tmp_path]) == first

    (tmp_path / "pkg" / "__pycache__").mkdir()
    (tmp_path / "pkg" / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"\0" * 10)
    (tmp_path / "pkg" / "b.pyc").write_bytes(b"\0")
    assert code_fingerprint([tmp_path]) == first  # byte code is not code

    (tmp_path / "pkg" / "a.py").write_text("x = 22\n")
    edited = code_fingerprint([tmp_path])
    assert edited != first
    (tmp_path / "pkg" / "c.py").write_text("")
    added = code_fingerprint([tmp_path])
    assert added != edited
    (tmp_path / "pkg" / "c.py").unlink()
    assert code_fingerprint([tmp_path]) == edited
    # a folder that does not exist counts as such (created later: the fingerprint changes)
    missing = code_fingerprint([tmp_path / "conf"])
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "p.yml").write_text("a: 1\n")
    assert code_fingerprint([tmp_path / "conf"]) != missing


def _origin(tmp_path: Path):
    from dagster._core.code_pointer import ModuleCodePointer
    from dagster._core.origin import RepositoryPythonOrigin

    (tmp_path / "tiny_location.py").write_text(TINY_DEFS)
    pointer = ModuleCodePointer("tiny_location", "defs", str(tmp_path))
    return RepositoryPythonOrigin(executable_path=sys.executable, code_pointer=pointer)


def test_a_standby_loads_the_location_and_stays_current_until_its_code_changes(tmp_path):
    origin = _origin(tmp_path)
    standby = _Standby(origin, ("key",), [tmp_path])
    try:
        assert standby.current()
        # end of input without a run (its launcher's process ended): it loads, then exits
        # successfully, having executed nothing
        standby.process.stdin.close()
        assert standby.process.wait(timeout=120) == 0
        assert not standby.current()
    finally:
        standby.discard()

    again = _Standby(origin, ("key",), [tmp_path])
    try:
        assert again.current()
        # the code it loaded changes: it is no longer current (the launcher discards it)
        (tmp_path / "tiny_location.py").write_text(TINY_DEFS + "\n# edited\n")
        os.utime(tmp_path / "tiny_location.py", ns=(time.time_ns() + 10**9,) * 2)
        assert not again.current()
    finally:
        again.discard()
    assert again.process.returncode is not None


def test_a_standby_that_cannot_load_exits_with_an_error(tmp_path):
    from dagster._core.code_pointer import ModuleCodePointer
    from dagster._core.origin import RepositoryPythonOrigin

    pointer = ModuleCodePointer("no_such_location_module", "defs", str(tmp_path))
    origin = RepositoryPythonOrigin(executable_path=sys.executable, code_pointer=pointer)
    standby = _Standby(origin, ("key",), [tmp_path])
    assert standby.process.wait(timeout=120) != 0
    assert not standby.current()  # never handed a run


def test_the_instance_of_make_dagster_uses_the_warm_launcher(tmp_path, monkeypatch):
    import shutil

    from dagster import DagsterInstance

    from tests.conftest import PROJECT

    shutil.copy(PROJECT / "deploy" / "dagster.yaml", tmp_path / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    with DagsterInstance.get() as instance:
        assert isinstance(instance, WarmInstance)
        launcher = instance.run_launcher
        assert isinstance(launcher, WarmRunLauncher)
        assert not launcher._standby  # outside a webserver nothing loads until a launch
        # the webserver's first standby: the configured module, here, with this Python
        primed = []
        monkeypatch.setattr(launcher, "_prime", primed.append)
        instance._standby_at_start(wait_s=0)
        (origin,) = primed
        assert origin.executable_path == sys.executable
        assert origin.code_pointer.module == "cxr_augment.definitions"
        assert origin.code_pointer.fn_name == "defs"
        assert origin.code_pointer.working_directory == os.getcwd()
        launcher.dispose()


def test_only_a_webserver_process_starts_a_standby_when_its_instance_is_made(monkeypatch):
    from cxr_augment.orchestration import launcher as module

    for argv0, expected in [
        ("/venv/lib/python3.11/site-packages/dagster_webserver/__main__.py", True),  # dagster dev
        ("/venv/bin/dagster-webserver", True),
        ("/venv/bin/dagster", False),  # dagster dev itself, the CLI
        ("/venv/lib/python3.11/site-packages/dagster/_daemon/__main__.py", False),
        ("", False),
    ]:
        monkeypatch.setattr(module.sys, "argv", [argv0])
        assert module._webserver_process() is expected, argv0


def test_without_a_configured_module_the_latest_runs_code_location_is_primed(monkeypatch):
    class Origin:
        def __init__(self, repository_origin):
            self.repository_origin = repository_origin

    class Run:
        def __init__(self, origin):
            self.job_code_origin = origin

    class Instance:
        def __init__(self, runs):
            self.runs = runs

        def get_runs(self, limit):
            return self.runs[:limit]

    launcher = WarmRunLauncher()
    primed = []
    launcher._prime = primed.append
    monkeypatch.setattr(WarmRunLauncher, "_instance", Instance([]), raising=False)
    assert launcher.start_origin() is None and not launcher.prime_at_start() and not primed
    runs = [Run(None), Run(Origin("latest")), Run(Origin("older"))]
    monkeypatch.setattr(WarmRunLauncher, "_instance", Instance(runs), raising=False)
    assert launcher.prime_at_start() and primed == ["latest"]


def test_a_failed_start_standby_leaves_the_first_run_to_the_default_way(tmp_path, monkeypatch):
    import logging
    import shutil

    from dagster import DagsterInstance

    from tests.conftest import PROJECT

    shutil.copy(PROJECT / "deploy" / "dagster.yaml", tmp_path / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    with DagsterInstance.get() as instance:
        launcher = instance.run_launcher

        def fail(origin):
            raise OSError("no such interpreter")

        monkeypatch.setattr(launcher, "_prime", fail)
        records = []
        handler = logging.Handler()
        handler.emit = records.append
        logging.getLogger("dagster").addHandler(handler)
        try:
            instance._standby_at_start(wait_s=0)  # no exception reaches the webserver
        finally:
            logging.getLogger("dagster").removeHandler(handler)
        assert any("OSError: no such interpreter" in r.getMessage() for r in records)
        launcher.dispose()


class _FakeClock:
    """The launcher's ``time.monotonic`` and ``time.sleep``: a sleep advances the clock at once
    (and may run ``on_sleep[n]`` at the n-th), so waits are checked by count, not by time."""

    def __init__(self, monkeypatch, on_sleep: dict | None = None) -> None:
        self.now, self.sleeps, self.on_sleep = 0.0, 0, on_sleep or {}
        monkeypatch.setattr(launcher_module.time, "monotonic", lambda: self.now)
        monkeypatch.setattr(launcher_module.time, "sleep", self.sleep)

    def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        self.now += seconds
        if self.sleeps in self.on_sleep:
            self.on_sleep[self.sleeps]()


@pytest.mark.parametrize("status", ["STARTED", "SUCCESS"])
def test_the_next_standby_starts_once_the_launched_run_started(tmp_path, status, monkeypatch):
    from dagster._core.storage.dagster_run import DagsterRunStatus

    primed = []

    class Run:
        def __init__(self, s):
            self.status = s

    statuses = iter(
        [DagsterRunStatus.STARTING, DagsterRunStatus.STARTING, DagsterRunStatus[status]]
    )

    class Instance:
        def get_run_by_id(self, run_id):
            return Run(next(statuses))

    launcher = WarmRunLauncher()
    monkeypatch.setattr(WarmRunLauncher, "_instance", Instance(), raising=False)
    monkeypatch.setattr(launcher, "_prime", lambda origin: primed.append(origin))
    clock = _FakeClock(monkeypatch)
    launcher._prime_after_start("run", "origin")
    assert primed == ["origin"]
    assert next(statuses, None) is None  # polled until the run left STARTING, not beyond
    assert clock.sleeps == 2


def test_termination_signals_only_a_standby_process(tmp_path):
    import psutil

    from cxr_augment.orchestration.launcher import _is_standby

    standby = _Standby(_origin(tmp_path), ("key",), [tmp_path])
    try:
        # between its fork and its exec the child still shows this process's command line:
        # wait for the exec (on a loaded machine it can take a moment), not for the load
        mine = psutil.Process().cmdline()
        for _ in range(600):
            if psutil.Process(standby.process.pid).cmdline() != mine:
                break
            time.sleep(0.05)
        assert _is_standby(standby.process.pid)
        assert not _is_standby(os.getpid())  # a reused process number is left alone
    finally:
        standby.discard()
    assert not _is_standby(standby.process.pid)


def test_the_first_standby_waits_for_the_webserver_to_listen(monkeypatch):
    import socket

    from cxr_augment.orchestration.launcher import _wait_for_webserver, _webserver_address

    assert _webserver_address(["x"]) == ("127.0.0.1", 3000)
    assert _webserver_address(["x", "-h", "0.0.0.0", "-p", "8080"]) == ("127.0.0.1", 8080)
    assert _webserver_address(["x", "--host=::1", "--port=9"]) == ("::1", 9)
    # another program's -p (pytest -p no:cacheprovider) is not a port
    with pytest.raises(ValueError, match="'no:cacheprovider'"):
        _webserver_address(["pytest", "-p", "no:cacheprovider"])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    clock = _FakeClock(monkeypatch)
    why = _wait_for_webserver("127.0.0.1", port, 1.0)  # nothing listens: it says so
    assert clock.now >= 1.0 and clock.sleeps == round(1.0 / launcher_module.POLL_S)
    assert why is not None and f"127.0.0.1:{port} did not listen within 1 s" in why
    assert "ConnectionRefusedError" in why
    # an address that cannot be reached: it stops at once and says why
    clock = _FakeClock(monkeypatch)
    why = _wait_for_webserver("no-such-host.invalid", port, 30)
    assert why is not None and "cannot be reached" in why and clock.sleeps == 0

    server = socket.socket()
    server.bind(("127.0.0.1", port))
    # it starts listening during the second wait between tries
    clock = _FakeClock(monkeypatch, on_sleep={2: lambda: server.listen(1)})
    try:
        assert _wait_for_webserver("127.0.0.1", port, 30) is None  # listens: ready
        assert clock.sleeps == 2
    finally:
        server.close()
