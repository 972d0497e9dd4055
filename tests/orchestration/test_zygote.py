"""The preloaded process that code servers fork from (orchestration/zygote.py): it imports what
a code location imports except the project's own code, and a child it forks is ``python -m
dagster ARGS`` in the requested directory and environment, with its exit status reported as
``subprocess`` reports it; ``route`` sends Dagster's server starts to it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from cxr_augment.orchestration import zygote as zy

TIMEOUT_S = 120

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the zygote forks")


@pytest.fixture
def location(tmp_path, monkeypatch):
    """A "library" module and a "project" package whose definitions import it."""
    (tmp_path / "zylib.py").write_text("VALUE = 41\n")
    (tmp_path / "zyproj").mkdir()
    (tmp_path / "zyproj" / "__init__.py").write_text("")
    (tmp_path / "zyproj" / "defs.py").write_text(
        "import zylib\nimport dagster as dg\n\n\n@dg.asset\ndef one():\n    return zylib.VALUE\n\n\n"
        "defs = dg.Definitions(assets=[one])\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])
    )
    yield tmp_path
    for name in ("zylib", "zyproj", "zyproj.defs"):
        sys.modules.pop(name, None)


def test_the_probe_lists_the_imports_and_the_preload_leaves_the_project_out(location):
    assert "zylib" not in sys.modules
    names = zy.probe("zyproj.defs")
    assert {"zylib", "zyproj", "zyproj.defs"} <= set(names)
    assert "zyproj" not in sys.modules  # the probe was a forked child: nothing came here
    assert zy.preload(names, "zyproj") >= 1
    assert "zylib" in sys.modules
    assert "zyproj" not in sys.modules and "zyproj.defs" not in sys.modules
    assert zy.preload(["zylib", "no_such_module_anywhere"], "zyproj") == 0  # skipped, no error


def _ready(zygote: zy.Zygote) -> zy.Zygote:
    assert zygote.ready.wait(TIMEOUT_S), zygote.failed
    return zygote


def test_a_child_is_dagsters_command_line_in_the_directory_and_environment_asked(
    location, tmp_path_factory, capfd
):
    """``dagster asset list -f defs_here.py``: the file is found in the child's working
    directory, and names its asset from the child's environment."""
    here = tmp_path_factory.mktemp("here")
    (here / "defs_here.py").write_text(
        "import os\nimport sys\n\n"
        "assert 'zylib' in sys.modules, 'not preloaded'  # the zygote imported it, not the child\n"
        "assert 'zyproj' not in sys.modules, 'the project was preloaded'\n"
        "import dagster as dg\n\n\n"
        "@dg.asset(name=os.environ['ZY_ASSET'])\ndef a():\n    return 1\n\n\n"
        "defs = dg.Definitions(assets=[a])\n"
    )
    zygote = _ready(zy.Zygote("zyproj.defs", str(location)))
    try:
        env = {**os.environ, "ZY_ASSET": "asked_for_by_the_env"}
        child = zygote.fork(["asset", "list", "-f", "defs_here.py"], str(here), env)
        assert child.wait(timeout=TIMEOUT_S) == 0
        assert "asked_for_by_the_env" in capfd.readouterr().out
        assert child.poll() == 0 and child.returncode == 0
        failing = zygote.fork(["asset", "list", "-f", "no_such_file.py"], str(here), env)
        assert failing.wait(timeout=TIMEOUT_S) not in (0, None)  # the CLI's own error status
    finally:
        zygote.close()
    assert zygote.process.returncode == 0  # the end of its request pipe ended it


def test_a_forked_code_server_answers_and_a_kill_is_its_exit_status(location, tmp_path):
    from dagster._core.errors import DagsterUserCodeUnreachableError
    from dagster._grpc.client import DagsterGrpcClient

    zygote = _ready(zy.Zygote("zyproj.defs", str(location)))
    socket = str(tmp_path / "s.sock")
    try:
        child = zygote.fork(
            ["api", "grpc", "--socket", socket, "--heartbeat", "--heartbeat-timeout", "60",
             "-m", "zyproj.defs", "-d", str(location)],
            str(location), dict(os.environ),
        )  # fmt: skip
        client = DagsterGrpcClient(socket=socket, host="localhost")
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            try:
                client.ping("")
                break
            except DagsterUserCodeUnreachableError:
                assert child.poll() is None, "the server ended while starting"
                assert time.monotonic() < deadline, "the server did not answer"
                time.sleep(0.1)
        assert child.poll() is None
        with pytest.raises(subprocess.TimeoutExpired):
            child.wait(timeout=0.2)
        child.kill()
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        zygote.close()


def test_a_zygote_that_died_is_known_as_such_and_signals_nothing(location):
    """Killed: asking it fails, it is no longer ready (no later server is asked of it), a
    child's pid is then only known to exist or not, and no signal is sent by pid."""
    zygote = _ready(zy.Zygote("zyproj.defs", str(location)))
    zygote.process.kill()
    zygote.process.wait()
    assert zygote.exit_status(os.getpid()) is None  # exists
    assert not zygote.ready.is_set() and zygote.failed  # a broken pipe, or its end
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert zygote.exit_status(dead.pid) == -1
    assert zygote.signal(os.getpid(), signal.SIGTERM) is False  # this test is still running
    with pytest.raises(OSError):
        zygote.fork(["--version"], ".", dict(os.environ))
    zygote.close()


def test_a_signal_reaches_only_a_running_child_of_the_zygote(location):
    zygote = _ready(zy.Zygote("zyproj.defs", str(location)))
    try:
        assert zygote.signal(os.getpid(), signal.SIGTERM) is False  # not its child
        child = zygote.fork(["--version"], ".", dict(os.environ))
        assert child.wait(timeout=TIMEOUT_S) == 0
        assert zygote.signal(child.pid, signal.SIGTERM) is False  # ended: its pid is free
        child.kill()  # a no-op, not an error
    finally:
        zygote.close()


class _FakeZygote:
    def __init__(self, fails: bool = False) -> None:
        import threading

        self.ready = threading.Event()
        self.ready.set()
        self.fails = fails
        self.asked: list = []

    def fork(self, args, cwd, env):
        self.asked.append((args, cwd, env))
        if self.fails:
            raise OSError("gone")
        return zy.Forked(self, 4242, args)

    def exit_status(self, pid):
        return None


def test_route_forks_dagsters_server_starts_and_leaves_the_rest():
    opened, warned, noted, forked = [], [], [], {}
    fake = _FakeZygote()

    def open_process(parts, **kwargs):
        opened.append(parts)
        return "popen"

    open_routed = zy.route(open_process, lambda: fake, forked, warned.append, noted.append)
    server = [sys.executable, "-m", "dagster", "api", "grpc", "--socket", "/tmp/s", "-m", "x"]
    assert open_routed(server, cwd="/work", env={}, stdout=None) == "popen"  # other options
    child = open_routed(server, cwd="/work", env={"A": "1"})
    assert isinstance(child, zy.Forked) and child.pid == 4242
    assert fake.asked == [(server[3:], "/work", {"A": "1"})]
    assert forked == {"/tmp/s": child} and len(noted) == 1 and len(opened) == 1
    # another interpreter, or not Dagster: started as before
    assert open_routed(["/other/python", "-m", "dagster", "api", "grpc"]) == "popen"
    assert open_routed([sys.executable, "-m", "other"]) == "popen"
    # no zygote yet, or one that is not ready
    assert zy.route(open_process, lambda: None, forked, warned.append)(server) == "popen"
    fake.ready.clear()
    assert open_routed(server) == "popen"
    assert len(opened) == 5 and not warned


def test_route_falls_back_with_a_warning_when_the_fork_fails():
    opened, warned = [], []
    open_routed = zy.route(
        lambda parts, **kw: opened.append(parts) or "popen", lambda: _FakeZygote(fails=True), {},
        warned.append,
    )  # fmt: skip
    assert open_routed([sys.executable, "-m", "dagster", "api", "grpc"]) == "popen"
    assert len(opened) == 1 and "could not start a code server (gone)" in warned[0]


def test_the_code_server_routes_dagsters_server_starts_to_its_zygote(monkeypatch):
    import dagster._grpc.server as grpc_server

    from cxr_augment.orchestration import code_server as cs

    opened = []
    monkeypatch.setattr(
        grpc_server, "open_ipc_subprocess", lambda parts, **kw: opened.append(parts)
    )

    class _Servicer:
        zygote = _FakeZygote()

    cs.route_server_starts(_Servicer)
    child = grpc_server.open_ipc_subprocess([sys.executable, "-m", "dagster", "api", "grpc"])
    assert isinstance(child, zy.Forked) and not opened
    _Servicer.zygote = None
    grpc_server.open_ipc_subprocess([sys.executable, "-m", "dagster", "api", "grpc"])
    assert len(opened) == 1


def test_a_probe_whose_import_fails_says_so_and_lists_what_came_before(location, capfd):
    (location / "zyproj" / "broken.py").write_text(
        "import zylib\nraise RuntimeError('a broken edit')\n"
    )
    names = zy.probe("zyproj.broken")
    assert "zylib" in names and "zyproj.broken" not in names
    err = capfd.readouterr().err
    assert "importing zyproj.broken failed (RuntimeError: a broken edit)" in err
