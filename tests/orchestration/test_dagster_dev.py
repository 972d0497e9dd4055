"""``make dagster``'s daemon starts once the code is loaded (orchestration/dagster_dev.py and
wait_then_exec.py): the waiter becomes the command only when the ready file exists, gives up
on ``dagster dev``'s shutdown message, and starts anyway after its timeout; end to end, the
daemon's process waits while a slow module loads and is the daemon, same pid, after."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from cxr_augment.orchestration import dagster_dev, dev

WAITER = [sys.executable, "-I", str(dagster_dev.WAITER)]


def _marker_command(out: Path) -> list[str]:
    return [sys.executable, "-c", f"open({str(out)!r}, 'w').write('ran')"]


def test_the_waiter_becomes_the_command_once_the_file_exists(tmp_path):
    ready, out = tmp_path / "ready", tmp_path / "out"
    proc = subprocess.Popen([*WAITER, str(ready), "60", "--", *_marker_command(out)])
    time.sleep(0.5)
    assert proc.poll() is None and not out.exists()  # waiting
    ready.touch()
    assert proc.wait(timeout=30) == 0
    assert out.read_text() == "ran"


def test_the_waiter_starts_the_command_after_its_timeout(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run([*WAITER, str(tmp_path / "never"), "0.3", "--", *_marker_command(out)],
                          timeout=30)  # fmt: skip
    assert proc.returncode == 0 and out.read_text() == "ran"


def test_the_waiter_gives_up_on_the_shutdown_message(tmp_path):
    """``dagster dev`` stopping before the code loaded: the daemon never starts."""
    out = tmp_path / "out"
    r, w = os.pipe()
    command = [*_marker_command(out), "--shutdown-pipe", str(r)]
    proc = subprocess.Popen([*WAITER, str(tmp_path / "never"), "60", "--", *command],
                            pass_fds=[r], stderr=subprocess.PIPE, text=True)  # fmt: skip
    os.close(r)
    time.sleep(0.3)
    assert proc.poll() is None
    os.write(w, b"dagster_ipc_shutdown\n")
    os.close(w)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "daemon was not started" in err
    assert not out.exists()


def _catches_sigint(pid: int) -> bool:
    """Whether ``pid`` has a handler of its own for SIGINT (``SigCgt`` in /proc)."""
    import signal

    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signal.SIGINT - 1) & 1)
    return False


def test_the_waiter_interrupted_says_so_and_ends_as_ctrl_c_does(tmp_path):
    import signal

    out = tmp_path / "out"
    # as from a terminal, whatever this test's own process inherited: a background job of a
    # non-interactive shell ignores SIGINT, and a process started so would never see Ctrl-C
    proc = subprocess.Popen([*WAITER, str(tmp_path / "never"), "60", "--", *_marker_command(out)],
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    deadline = time.monotonic() + 30
    while not _catches_sigint(proc.pid) and time.monotonic() < deadline:  # Python has started
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and "interrupted before the code loaded" in err
    assert not out.exists()


def test_the_waiter_refuses_a_malformed_call():
    proc = subprocess.run([*WAITER, "ready"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "READY_FILE" in proc.stderr


def test_only_the_daemon_is_deferred():
    daemon = [sys.executable, "-m", "dagster._daemon", "run", "--shutdown-pipe", "7"]
    webserver = [sys.executable, "-m", "dagster_webserver", "--port", "3000"]
    assert dagster_dev.deferred(webserver, "/r") == webserver
    wrapped = dagster_dev.deferred(daemon, "/r", timeout=5)
    assert wrapped[:3] == WAITER and wrapped[3:6] == ["/r", "5", "--"] and wrapped[6:] == daemon


SLOW_MODULE = """import time
import dagster as dg
time.sleep({sleep})

@dg.asset
def one():
    return 1

defs = dg.Definitions(assets=[one])
"""


def _daemon_processes(session: int) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            cmd = " ".join(p.info["cmdline"] or [])
            if os.getsid(p.pid) == session and (
                "dagster._daemon" in cmd or "wait_then_exec" in cmd
            ):
                found.append(p)
        except (OSError, psutil.Error):
            continue
    return found


@pytest.mark.slow
def test_make_dagster_starts_the_daemon_once_the_code_is_loaded(tmp_path):
    from dagster_graphql import DagsterGraphQLClient

    (tmp_path / "slowdefs.py").write_text(SLOW_MODULE.format(sleep=8))
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(Path(__file__).parents[2] / "deploy" / "dagster.yaml", home / "dagster.yaml")
    env = {**os.environ, "DAGSTER_HOME": str(home), "CXR_SNAPSHOT_CACHE": "off",
           "DAGSTER_DISABLE_TELEMETRY": "true", "PYTHONPATH": str(tmp_path)}  # fmt: skip
    port = dev.free_port()
    log = open(tmp_path / "dev.log", "w")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(
        [sys.executable, "-m", "cxr_augment.orchestration.dev", "-m", "slowdefs",
         "-h", "127.0.0.1", "-p", str(port)],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        # while the module loads (8 s): the daemon's process is the waiter
        deadline = time.monotonic() + 60
        waiting = []
        while not waiting and time.monotonic() < deadline:
            waiting = _daemon_processes(proc.pid)
            time.sleep(0.1)
        assert len(waiting) == 1, (tmp_path / "dev.log").read_text()
        assert "wait_then_exec" in " ".join(waiting[0].cmdline())
        # the UI gets the loaded location; the same process is then the daemon
        client = DagsterGraphQLClient("127.0.0.1", port_number=port, timeout=60)
        deadline = time.monotonic() + 120
        daemon = ""
        while time.monotonic() < deadline:
            try:
                data = client._execute(
                    "{ workspaceOrError { ... on Workspace { locationEntries { "
                    "locationOrLoadError { __typename } } } } }"
                )
                entry = data["workspaceOrError"]["locationEntries"][0]["locationOrLoadError"]
                if entry and entry["__typename"] == "RepositoryLocation":
                    daemon = " ".join(psutil.Process(waiting[0].pid).cmdline())
                    if "dagster._daemon" in daemon and "wait_then_exec" not in daemon:
                        break
            except Exception:
                pass
            time.sleep(0.2)
        assert "dagster._daemon run" in daemon, (tmp_path / "dev.log").read_text()
        # and it works: the UI reports the scheduler daemon healthy (its heartbeats)
        healthy, deadline = False, time.monotonic() + 120
        while not healthy and time.monotonic() < deadline:
            statuses = client._execute(
                "{ instance { daemonHealth { allDaemonStatuses { daemonType healthy } } } }"
            )["instance"]["daemonHealth"]["allDaemonStatuses"]
            healthy = any(d["daemonType"] == "SCHEDULER" and d["healthy"] for d in statuses)
            time.sleep(1)
        assert healthy, statuses
    finally:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
        log.close()


def test_the_webserver_waits_for_the_code_server_to_listen():
    """``dev.py`` starts ``dagster dev`` beside the code server: its webserver must not read
    the workspace before the port listens (a refused ``grpc_server`` is a load error)."""
    import socket
    import threading

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        started = time.monotonic()
        threading.Timer(0.6, s.listen).start()  # the code server listens a moment later
        dagster_dev.wait_for_port(port, timeout=30)
        assert time.monotonic() - started >= 0.5
    with socket.socket() as s:  # bound, never listening: a clear error after the timeout
        s.bind(("127.0.0.1", 0))
        with pytest.raises(SystemExit, match=r"did not listen on 127.0.0.1:\d+ within 0 s"):
            dagster_dev.wait_for_port(s.getsockname()[1], timeout=0.3)
    with pytest.raises(SystemExit, match="--after-port needs a port number"):
        dagster_dev.main(["ready", "--after-port", "-w"])
