"""The warm code server (orchestration/code_server.py) over a tiny Dagster module: a reload takes
the prepared server, serves the code as the files are at the moment of the reload (an edit
saved just before included), recovers from a broken edit, and asks each snapshot of a server
once; and the pieces of ``make dagster`` (orchestration/dev.py)."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from cxr_augment.orchestration import code_server as cs
from cxr_augment.orchestration import dev
from cxr_augment.orchestration.zygote import route

TIMEOUT_S = 120


def _module(assets: list[str], broken: bool = False) -> str:
    lines = ["import dagster as dg", ""]
    for name in assets:
        lines += ["@dg.asset", f"def {name}():", "    return 1", ""]
    if broken:
        lines.append("raise RuntimeError('a broken edit')")
    lines.append(f"defs = dg.Definitions(assets=[{', '.join(assets)}])")
    return "\n".join(lines) + "\n"


def _write(path: Path, text: str) -> None:
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text)
    while path.stat().st_mtime_ns == before:  # a coarse clock: the edit must show in mtime
        time.sleep(0.01)
        path.write_text(text)


def _snapshots(asked: list[str]) -> int:
    """How many repository snapshots the inner servers were asked for."""
    return sum(query.endswith("ExternalRepository") for query in asked)


class _Served:
    """A ``WarmProxyApiServicer`` for ``tinydefs`` in ``root`` behind a gRPC server."""

    def __init__(
        self,
        root: Path,
        warm: bool = True,
        snapshots: bool = False,
        ready: Path | None = None,
        zygote: bool = False,
    ) -> None:
        from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
        from dagster._core.utils import FuturesAwareThreadPoolExecutor
        from dagster._grpc.server import DagsterGrpcServer

        self.termination = threading.Event()
        origin = LoadableTargetOrigin(
            executable_path=sys.executable, module_name="tinydefs", working_directory=str(root)
        )
        self.servicer = cs.WarmProxyApiServicer(
            watched=[root],
            warm=warm,
            defer_first_load=snapshots,
            snapshots=cs.SnapshotCache(root / ".cache", "tiny", origin) if snapshots else None,
            ready_file=ready,
            zygote=zygote,
            loadable_target_origin=origin,
            fixed_server_id=None,
            container_image=None,
            container_context=None,
            inject_env_vars_from_instance=False,
            location_name="tiny",
            log_level="warning",
            startup_timeout=TIMEOUT_S,
            instance_ref=None,
            server_termination_event=self.termination,
            logger=logging.getLogger("test_code_server"),
            server_heartbeat=False,
            server_heartbeat_timeout=30,
            heartbeat_ttl=60,
            defs_state_info=None,
        )
        self.port = dev.free_port()
        self.server = DagsterGrpcServer(
            server_termination_event=self.termination,
            dagster_api_servicer=self.servicer,
            port=self.port,
            socket=None,
            host="127.0.0.1",
            threadpool_executor=FuturesAwareThreadPoolExecutor(max_workers=None),
            logger=logging.getLogger("test_code_server"),
        )
        self.thread = threading.Thread(target=self.server.serve, daemon=True)
        self.thread.start()

    def assets(self) -> set[str]:
        """The asset keys the location serves, as the webserver reads them."""
        from dagster._core.instance import DagsterInstance
        from dagster._core.remote_origin import GrpcServerCodeLocationOrigin
        from dagster._core.remote_representation.code_location import GrpcServerCodeLocation

        origin = GrpcServerCodeLocationOrigin(host="127.0.0.1", port=self.port, location_name="t")
        with DagsterInstance.ephemeral() as instance:
            location = GrpcServerCodeLocation(origin, instance=instance)
            try:
                return {
                    node.asset_key.to_user_string()
                    for repo in location.get_repositories().values()
                    for node in repo.get_asset_node_snaps()
                }
            finally:
                location.cleanup()

    def reload(self) -> None:
        from dagster._grpc.client import DagsterGrpcClient

        DagsterGrpcClient(port=self.port, host="127.0.0.1").reload_code(timeout=TIMEOUT_S)

    def wait_prepared(self, fingerprint: tuple | None = None) -> None:
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            prepared = self.servicer._prepared
            if prepared is not None and prepared.ready.is_set():
                if fingerprint is None or prepared.fingerprint == fingerprint:
                    return
            time.sleep(0.05)
        pytest.fail(f"no prepared server within {TIMEOUT_S} s")

    def close(self) -> None:
        self.termination.set()
        self.thread.join(timeout=30)
        self.servicer.cleanup()


class _Polls:
    """The watcher's settled polls (its ``_maybe_prepare`` calls), counted per servicer once
    each has returned: a negative check waits for polls instead of sleeping."""

    def __init__(self, monkeypatch) -> None:
        self.calls: list[tuple[object, tuple]] = []
        self._lock = threading.Lock()
        original = cs.WarmProxyApiServicer._maybe_prepare

        def counted(servicer, now):
            try:
                return original(servicer, now)
            finally:
                with self._lock:
                    self.calls.append((servicer, now))

        monkeypatch.setattr(cs.WarmProxyApiServicer, "_maybe_prepare", counted)

    def count(self, servicer, fingerprint: tuple | None = None) -> int:
        with self._lock:
            return sum(
                s is servicer and (fingerprint is None or now == fingerprint)
                for s, now in self.calls
            )

    def wait(self, servicer, polls: int, fingerprint: tuple) -> None:
        """Until the watcher has polled ``polls`` more times with the files at ``fingerprint``."""
        target = self.count(servicer, fingerprint) + polls
        deadline = time.monotonic() + TIMEOUT_S
        while self.count(servicer, fingerprint) < target:
            if time.monotonic() > deadline:
                pytest.fail(f"the watcher did not poll {polls} times within {TIMEOUT_S} s")
            time.sleep(0.01)


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    monkeypatch.setattr(cs, "POLL_S", 0.05)
    monkeypatch.setattr(cs, "IDLE_PREPARE_S", 0.0)
    _write(tmp_path / "tinydefs.py", _module(["one"]))
    return tmp_path


def test_a_reload_takes_the_prepared_server_and_serves_every_edit(tiny, monkeypatch):
    asked: list[str] = []
    ask = cs._ask
    monkeypatch.setattr(cs, "_ask", lambda c, q, r: asked.append(q) or ask(c, q, r))
    served = _Served(tiny)
    try:
        assert served.assets() == {"one"}
        assert _snapshots(asked) == 1
        served.assets()  # a second asker (the daemon) is answered from the first reply
        assert _snapshots(asked) == 1

        # no edit: a prepared server that has already answered the snapshot the UI asked for
        served.wait_prepared()
        first = served.servicer._client
        assert _snapshots(asked) == 2  # asked of the prepared one
        served.reload()
        assert served.servicer.reloads == ["prepared"]
        assert served.servicer._client is not first
        assert served.assets() == {"one"}
        assert _snapshots(asked) == 2  # nothing asked after the swap

        # an edit: the prepared server is replaced by one that loads the edited file
        _write(tiny / "tinydefs.py", _module(["one", "two"]))
        served.wait_prepared(cs.code_fingerprint([tiny]))
        served.reload()
        assert served.servicer.reloads == ["prepared", "prepared"]
        assert served.assets() == {"one", "two"}

        # an edit and at once a reload, before the watcher has seen it: the edit is served
        _write(tiny / "tinydefs.py", _module(["one", "two", "three"]))
        served.reload()
        assert served.assets() == {"one", "two", "three"}

        # a broken edit is a load error of the location, and the fix recovers it
        _write(tiny / "tinydefs.py", _module(["one"], broken=True))
        served.reload()
        with pytest.raises(Exception, match="a broken edit"):
            served.assets()
        _write(tiny / "tinydefs.py", _module(["four"]))
        served.reload()
        assert served.assets() == {"four"}
    finally:
        served.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the preloaded process forks")
def test_with_the_preloaded_process_servers_fork_from_it_and_serve_each_edit(tiny, monkeypatch):
    """After the first load, a process that has imported the location's libraries starts; the
    servers after it (a prepared one, a reload's own) are its children and serve the edits."""
    import dagster._grpc.server as grpc_server

    from cxr_augment.orchestration.zygote import Forked

    forked: dict = {}
    warned: list[str] = []
    monkeypatch.setattr(cs, "_FORKED", forked)
    monkeypatch.setattr(cs, "IDLE_PREPARE_S", 3600.0)  # no prepared server before the edit
    served = _Served(tiny, zygote=True)
    monkeypatch.setattr(
        grpc_server, "open_ipc_subprocess",
        route(grpc_server.open_ipc_subprocess, lambda: served.servicer.zygote, forked,
              warned.append),
    )  # fmt: skip
    try:
        assert served.assets() == {"one"}
        zygote = served.servicer.zygote
        assert zygote is not None and zygote.ready.wait(TIMEOUT_S), zygote and zygote.failed
        first = served.servicer._client
        assert not forked  # the first load started as Dagster starts it

        _write(tiny / "tinydefs.py", _module(["one", "two"]))  # prepared for the edit
        served.wait_prepared(cs.code_fingerprint([tiny]))
        assert isinstance(served.servicer._prepared.process.server_process, Forked)
        served.reload()
        assert served.servicer.reloads == ["prepared"] and served.servicer._client is not first
        assert served.assets() == {"one", "two"}

        _write(tiny / "tinydefs.py", _module(["three"]))  # and at once a reload: its own load
        served.reload()
        assert served.assets() == {"three"}
        assert len(forked) >= 2 and not warned
        assert all(child.poll() is None for child in list(forked.values())[-1:])
    finally:
        served.close()
    assert zygote.process.returncode == 0  # cleanup ended it


def test_an_edit_reloaded_at_once_is_loaded_once(tiny, monkeypatch):
    """The watcher prepares no server for the files a reload is loading (two loads of the same
    code at once would halve the speed of each on 2 cores)."""
    monkeypatch.setattr(cs, "IDLE_PREPARE_S", 3600.0)  # only edits prepare servers here
    prepared: list[tuple] = []

    class Counted(cs._Prepared):
        def __init__(self, servicer, fingerprint):
            prepared.append(fingerprint)
            super().__init__(servicer, fingerprint)

    monkeypatch.setattr(cs, "_Prepared", Counted)
    polls = _Polls(monkeypatch)
    served = _Served(tiny)
    try:
        assert served.assets() == {"one"}
        _write(tiny / "tinydefs.py", _module(["one", "two"]))
        served.reload()
        edited = cs.code_fingerprint([tiny])
        polls.wait(served.servicer, 2, edited)  # the watcher has seen the edit settle, twice
        loads = prepared.count(edited) + served.servicer.reloads.count("loaded")
        assert loads == 1, (prepared.count(edited), served.servicer.reloads)
        assert served.assets() == {"one", "two"}
    finally:
        served.close()


def _watchers() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == "code-watch"}


def test_without_warm_reload_every_reload_loads(tiny, monkeypatch):
    # a watcher would prepare a server at its first poll here (IDLE_PREPARE_S 0): without one,
    # none starts. Thread.start returns once the thread is listed, so the servicer's
    # constructor would have listed its watcher by the time it returns: no sleep can miss it
    polls = _Polls(monkeypatch)
    before = _watchers()
    served = _Served(tiny, warm=False)
    try:
        assert not _watchers() - before
        assert served.assets() == {"one"}
        assert served.servicer.prepared_state() == "none"
        _write(tiny / "tinydefs.py", _module(["one", "two"]))
        served.reload()
        assert served.servicer.reloads == ["loaded"]
        assert served.assets() == {"one", "two"}
        assert polls.count(served.servicer) == 0 and served.servicer.prepared_state() == "none"
    finally:
        served.close()


def test_a_server_discarded_while_it_loads_is_ended_at_once(tiny, monkeypatch):
    monkeypatch.setattr(cs, "IDLE_PREPARE_S", 3600.0)
    served = _Served(tiny)
    try:
        served.assets()
        prepared = cs._Prepared(served.servicer, cs.code_fingerprint([tiny]))
        deadline = time.monotonic() + TIMEOUT_S
        while prepared._socket is None and time.monotonic() < deadline:
            time.sleep(0.01)
        prepared.discard()  # before its server has loaded the code
        assert prepared.ready.wait(TIMEOUT_S)
        assert prepared.error is not None and not prepared.usable()
        import psutil

        assert not [c for c in psutil.Process().children() if prepared._socket in c.cmdline()]
    finally:
        served.close()


def test_a_server_discarded_before_its_process_starts_is_ended_once_it_does(tiny, monkeypatch):
    """The socket is chosen, then the process starts: a discard between the two finds no
    process to end, and ends it as soon as it has started (once a race under load)."""
    monkeypatch.setattr(cs, "IDLE_PREPARE_S", 3600.0)
    served = _Served(tiny)
    try:
        served.assets()
        gate, real = threading.Event(), cs.GrpcServerProcess.start_server_process

        def held(self):  # the socket is known; the process starts once the test says so
            gate.wait(TIMEOUT_S)
            return real(self)

        monkeypatch.setattr(cs.GrpcServerProcess, "start_server_process", held)
        prepared = cs._Prepared(served.servicer, cs.code_fingerprint([tiny]))
        deadline = time.monotonic() + TIMEOUT_S
        while prepared._socket is None and time.monotonic() < deadline:
            time.sleep(0.01)
        prepared.discard()  # no process yet
        gate.set()
        assert prepared.ready.wait(TIMEOUT_S)
        assert prepared.error is not None and not prepared.usable()
        import psutil

        assert not [c for c in psutil.Process().children() if prepared._socket in c.cmdline()]
    finally:
        served.close()


def test_cleanup_ends_the_prepared_server(tiny):
    served = _Served(tiny)
    served.assets()
    served.wait_prepared()
    process = served.servicer._prepared.process.server_process
    served.close()
    process.wait(timeout=30)
    assert process.poll() is not None


# --- the snapshot replies -----------------------------------------------------------------


class _Request:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def SerializeToString(self, deterministic: bool = False) -> bytes:  # noqa: N802 (protobuf's)
        return self.body


def test_replies_are_computed_once_for_concurrent_askers():
    replies, calls, gate = cs._Replies(), [], threading.Event()

    def compute():
        calls.append(1)
        gate.wait(5)
        return "snapshot"

    client = object()
    results: list[str] = []
    threads = [
        threading.Thread(
            target=lambda: results.append(replies.get(client, "Q", _Request(b"r"), compute))
        )
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    time.sleep(0.2)
    gate.set()
    for t in threads:
        t.join(5)
    assert results == ["snapshot"] * 4 and len(calls) == 1
    assert replies.held(client) == 1
    # another request, or another server, is another reply
    assert replies.get(client, "Q", _Request(b"s"), lambda: "other") == "other"
    assert replies.get(object(), "Q", _Request(b"r"), lambda: "new server") == "new server"


def test_a_failed_reply_is_not_kept_and_retain_drops_other_servers():
    replies, client = cs._Replies(), object()

    def fail():
        raise ConnectionError("server gone")

    with pytest.raises(ConnectionError):
        replies.get(client, "Q", _Request(b"r"), fail)
    assert replies.get(client, "Q", _Request(b"r"), lambda: "retried") == "retried"
    other = object()
    replies.get(other, "Q", _Request(b"r"), lambda: "x")
    replies.retain({other})
    assert replies.held(client) == 0 and replies.held(other) == 1
    assert [q for q, _ in replies.asked()] == ["Q"]  # what to ask a prepared server


# --- make dagster's pieces ------------------------------------------------------------------


def test_the_workspace_points_at_the_code_server():
    assert dev.workspace(4266, "cxr_augment.definitions") == {
        "load_from": [
            {
                "grpc_server": {
                    "host": "127.0.0.1",
                    "port": 4266,
                    "location_name": "cxr_augment.definitions",
                }
            }
        ]
    }


def test_a_code_server_that_ends_before_it_listens_is_an_error():
    process = subprocess.Popen([sys.executable, "-c", "import sys; sys.exit(3)"])
    with pytest.raises(RuntimeError, match="ended with code 3"):
        dev.wait_for_code_server(process, dev.free_port(), timeout=30)


def test_waiting_for_a_listening_port_returns():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
        try:
            dev.wait_for_code_server(process, s.getsockname()[1], timeout=10)
        finally:
            process.kill()
            process.wait()


# --- the snapshots of the last session, while the first load goes on -----------------------


def _server_id(port: int) -> str:
    from dagster._grpc.client import DagsterGrpcClient

    return DagsterGrpcClient(port=port, host="127.0.0.1").get_server_id(timeout=TIMEOUT_S)


def test_the_ui_gets_the_last_sessions_snapshots_while_the_code_loads(tiny, monkeypatch):
    cache = tiny / ".cache"
    first = _Served(tiny, snapshots=True)
    try:
        assert first.assets() == {"one"}
        deadline = time.monotonic() + TIMEOUT_S
        while not list(cache.glob("tiny-*.marshal")) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(list(cache.glob("tiny-*.marshal"))) == 1
    finally:
        first.close()

    # the same files: the snapshots are answered before the (held back) first load
    release = threading.Event()
    load = cs.WarmProxyApiServicer._first_load_now
    monkeypatch.setattr(
        cs.WarmProxyApiServicer, "_first_load_now", lambda self: release.wait(60) and load(self)
    )
    second = _Served(tiny, snapshots=True)
    try:
        assert second.assets() == {"one"}
        assert not second.servicer._first_loaded.is_set()
        provisional = _server_id(second.port)
        assert provisional.startswith("cxr-provisional-")
        release.set()
        assert second.servicer._first_loaded.wait(TIMEOUT_S)
        assert _server_id(second.port) != provisional  # the webserver then fetches again
        assert second.assets() == {"one"}
    finally:
        release.set()
        second.close()

    # an edit: nothing is answered before the load, which serves the edit
    _write(tiny / "tinydefs.py", _module(["one", "two"]))
    third = _Served(tiny, snapshots=True)
    try:
        assert third.servicer._provisional == {}
        assert third.assets() == {"one", "two"}
    finally:
        third.close()


def _reply(query: str, **fields):
    from dagster._grpc.__generated__ import dagster_api_pb2

    return getattr(dagster_api_pb2, cs._REPLY_TYPES[query])(**fields)


def test_snapshot_files_round_trip_and_follow_the_code(tmp_path, monkeypatch, caplog):
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

    # the key below is made without KEDRO_ENV: a module fixture's Kedro session elsewhere
    # in the suite may have named one for the process (RunHooks), and the test removes it
    monkeypatch.delenv("KEDRO_ENV", raising=False)
    (tmp_path / "pkg").mkdir()
    code = tmp_path / "pkg" / "code.py"
    _write(code, "x = 1\n")
    origin = LoadableTargetOrigin(module_name="code", working_directory=str(tmp_path))
    cache = cs.SnapshotCache(tmp_path / ".cache", "loc", origin)
    key = cache.key(cs.code_fingerprint([code.parent]))
    from dagster._grpc.__generated__ import dagster_api_pb2

    listed = _reply("ListRepositories", serialized_list_repositories_response_or_error="{}")
    stream = [
        _reply(
            "StreamingExternalRepository",
            sequence_number=i,
            serialized_external_repository_chunk=chunk,
        )
        for i, chunk in enumerate(["ab", "cd"])
    ]
    r1 = dagster_api_pb2.ListRepositoriesRequest()
    r2 = dagster_api_pb2.ExternalJobRequest(job_name="demo_data")
    cache.write(
        key, [("ListRepositories", r1, listed), ("StreamingExternalRepository", r2, stream)]
    )
    assert cache.read(key) == {
        ("ListRepositories", cs.request_key(r1)): listed,
        ("StreamingExternalRepository", cs.request_key(r2)): stream,
    }
    assert not list((tmp_path / ".cache").glob(".tmp-*"))

    # the key follows the files and the environment
    monkeypatch.setenv("KEDRO_ENV", "study")
    assert cache.key(cs.code_fingerprint([code.parent])) != key
    monkeypatch.delenv("KEDRO_ENV")
    assert cache.key(cs.code_fingerprint([code.parent])) == key
    _write(code, "x = 22\n")
    with caplog.at_level(logging.INFO, logger="cxr_augment.code_server"):
        assert cache.read(cache.key(cs.code_fingerprint([code.parent]))) == {}
    assert "no snapshot files for this code" in caplog.text  # said, not silent
    caplog.clear()

    # a file whose content holds another key (renamed, or a hash clash) is reported, not used
    import shutil

    other = cache.key(cs.code_fingerprint([code.parent]))
    shutil.copy(cache.path(key), cache.path(other))
    with caplog.at_level(logging.WARNING, logger="cxr_augment.code_server"):
        assert cache.read(other) == {}
    assert "holds another key" in caplog.text
    cache.path(other).unlink()
    caplog.clear()

    # a torn file is reported and read as nothing
    cache.path(key).write_bytes(b"\x00torn")
    with caplog.at_level(logging.WARNING, logger="cxr_augment.code_server"):
        assert cache.read(key) == {}
    assert str(cache.path(key)) in caplog.text and "cannot be decoded" in caplog.text

    # a file that cannot be read at all (here a folder in its place) is an error naming it
    cache.path(key).unlink()
    cache.path(key).mkdir()
    with pytest.raises(OSError, match=f"{cache.path(key)}.*CXR_SNAPSHOT_CACHE=off"):
        cache.read(key)
    cache.path(key).rmdir()

    # the newest KEPT_SNAPSHOTS files are kept
    for i in range(cs.KEPT_SNAPSHOTS + 2):
        cache.write(f"k{i}", [])
        time.sleep(0.01)
    kept = sorted(p.name for p in (tmp_path / ".cache").glob("loc-*.marshal"))
    assert len(kept) == cs.KEPT_SNAPSHOTS and "loc-k0.marshal" not in kept


def test_only_snapshots_of_a_server_that_loaded_are_kept():
    from dagster._grpc.types import ListRepositoriesResponse
    from dagster._utils.error import SerializableErrorInfo
    from dagster_shared.serdes import serialize_value

    ok = serialize_value(ListRepositoriesResponse(repository_symbols=[]))
    error = serialize_value(SerializableErrorInfo("a broken edit", [], "RuntimeError"))
    for value, kept in ((ok, True), (error, False)):
        reply = _reply("ListRepositories", serialized_list_repositories_response_or_error=value)
        assert cs._loaded_without_error([("ListRepositories", None, reply)]) is kept
    assert cs._loaded_without_error([]) is False


def test_a_request_is_known_by_its_repository_not_the_servers_port():
    from dagster._core.remote_origin import GrpcServerCodeLocationOrigin, RemoteRepositoryOrigin
    from dagster._grpc.__generated__ import dagster_api_pb2
    from dagster_shared.serdes import serialize_value

    def request(port: int, job: str):
        origin = RemoteRepositoryOrigin(
            GrpcServerCodeLocationOrigin(host="127.0.0.1", port=port, location_name="loc"),
            "__repository__",
        )
        return dagster_api_pb2.ExternalJobRequest(
            serialized_repository_origin=serialize_value(origin), job_name=job
        )

    assert cs.request_key(request(4266, "a")) == cs.request_key(request(5000, "a"))
    assert cs.request_key(request(4266, "a")) != cs.request_key(request(4266, "b"))


def test_the_code_server_stops_when_the_process_that_started_it_is_killed(tmp_path):
    """``make dagster`` killed outright (SIGKILL) leaves no code server or server behind."""
    import psutil

    (tmp_path / "tinydefs.py").write_text(_module(["one"]))
    port = dev.free_port()
    starter = subprocess.Popen(
        [sys.executable, "-c",
         "import subprocess, sys, time; subprocess.Popen([sys.executable, '-m', "
         "'cxr_augment.orchestration.code_server', '-m', 'tinydefs', '--port', sys.argv[1], "
         "'-d', sys.argv[2], '--exit-with-parent']); time.sleep(600)",
         str(port), str(tmp_path)],
    )  # fmt: skip
    try:
        dev.wait_for_code_server(starter, port, timeout=TIMEOUT_S)
        from dagster._grpc.client import DagsterGrpcClient

        DagsterGrpcClient(port=port, host="127.0.0.1").ping("")  # loaded
        family = psutil.Process(starter.pid).children(recursive=True)
        assert len(family) >= 2  # the code server and its server
    finally:
        starter.kill()
        starter.wait()
    gone, alive = psutil.wait_procs(family, timeout=90)
    assert not alive, [p.cmdline()[:4] for p in alive]


def test_the_ready_file_follows_the_first_repository_snapshot(tiny, monkeypatch):
    """What ``make dagster``'s daemon waits for: written once the loaded code's repository
    snapshot has been built (the UI's first fetch), not at the load itself; once only."""
    monkeypatch.setattr(cs, "READY_GRACE_S", 60.0)
    ready = tiny / "ready"
    served = _Served(tiny, warm=False, ready=ready)
    try:
        assert served.servicer._first_loaded.wait(TIMEOUT_S)
        time.sleep(0.3)
        assert not ready.exists()  # loaded, but no snapshot asked yet
        assert served.assets() == {"one"}
        assert ready.exists()
        ready.unlink()
        served.assets()
        assert not ready.exists()  # once
    finally:
        served.close()


def test_without_a_snapshot_asked_the_ready_file_follows_the_grace(tiny, monkeypatch):
    """No UI asking (or a load error): the daemon still starts, READY_GRACE_S after the load."""
    monkeypatch.setattr(cs, "READY_GRACE_S", 0.2)
    ready = tiny / "ready"
    _write(tiny / "tinydefs.py", _module(["one"], broken=True))
    served = _Served(tiny, warm=False, ready=ready)
    try:
        assert served.servicer._first_loaded.wait(TIMEOUT_S)
        deadline = time.monotonic() + 30
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.exists()
    finally:
        served.close()


def test_a_code_server_started_in_a_scripts_background_stops_on_sigterm(tmp_path):
    """A script's ``&`` starts it with SIGINT ignored, which Dagster's own handler setup turned
    into an ignored SIGTERM: such a code server (and the server it started) outlived ``kill``."""
    import psutil

    (tmp_path / "tinydefs.py").write_text(_module(["one"]))
    port = dev.free_port()
    script = subprocess.Popen(
        ["bash", "-c", f"{sys.executable} -m cxr_augment.orchestration.code_server -m tinydefs "
         f"--port {port} -d {tmp_path} & echo $! > {tmp_path}/pid; wait"],
    )  # fmt: skip
    try:
        dev.wait_for_code_server(script, port, timeout=TIMEOUT_S)
        from dagster._grpc.client import DagsterGrpcClient

        DagsterGrpcClient(port=port, host="127.0.0.1").ping("")  # loaded
        server = psutil.Process(int((tmp_path / "pid").read_text()))
        family = [server, *server.children(recursive=True)]
        assert len(family) >= 2
        server.terminate()
        gone, alive = psutil.wait_procs(family, timeout=90)
        for p in alive:  # left behind: not into the next test
            p.kill()
        assert not alive, [p.cmdline()[:4] for p in alive]
    finally:
        script.kill()
        script.wait()
