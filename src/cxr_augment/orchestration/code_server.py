"""A Dagster code server whose reload takes a server that has already loaded the current code.

Dagster's code server (``dagster code-server start``, what ``dagster dev`` runs) answers the UI's
"Reload" by starting a new ``dagster api grpc`` process and waiting for it to import the project
and translate it (about 6 s of CPU for this project, 10-15 s on 2 busy cores), then the UI
fetches the new snapshot. ``WarmProxyApiServicer`` is that code server (Dagster's
``DagsterProxyApiServicer``) with one *prepared* server beside the active one:

- a prepared server is a ``dagster api grpc`` process started exactly as Dagster starts it
  (the same command, origin and settings), kept alive by our heartbeats, with the
  ``code_fingerprint`` (name, size and modification time of every file under the code's
  package and ``conf/``, as ``launcher.py``) of the files as they were when it started;
- a watcher compares the files every ``POLL_S``: after an edit (once the files have stayed
  unchanged for one poll) it replaces the prepared server by one that loads the edited code;
  with no edit, it prepares one ``IDLE_PREPARE_S`` after the active server loaded (so the
  first load, which the UI waits for, has the CPU to itself);
- a reload takes the prepared server when its fingerprint equals the files' fingerprint at the
  moment of the reload (waiting for it to finish loading if needed) and shuts the old one down,
  as Dagster's reload does. Otherwise (no prepared server, the files changed since it started,
  or it failed to start) the reload is Dagster's own: a new process, loaded then.

The server listens as soon as it starts and answers once the first load has finished
(``defer_first_load``), so the webserver can start beside that load instead of after it. While
that first load goes on, a server started for code it has seen before answers the UI from the
last session (``SnapshotCache``: the repository list, the repository and job snapshots that
server gave, kept on disk under a key of the files, the Python environment and the settings)
under a provisional server id; once loaded, its own id replaces that one and the webserver
fetches everything again (Dagster reloads a location whose server id changed), so what the UI
shows is the loaded code's within seconds even if something outside the key differs. Runs
wait for the load. ``CXR_SNAPSHOT_CACHE=off`` turns it off.

So a reload always serves the code as the files are at that moment; it is fast once the
prepared server has loaded the edit (about 10 s after the save on 2 cores), and waits for the
rest of that load when it comes sooner. The cost: one more loaded process while the UI is open, and a
load in the background after each edit. ``CXR_WARM_RELOAD=off`` makes every reload Dagster's.

Every server after the first starts from a *preloaded* process (``zygote.py``), started once
the first load has ended: it has imported the libraries the code location imports (not the
project's own code), and forks each new ``dagster api grpc`` from that state, so a load after
an edit skips about 2.5 s of imports (on 2 cores). Until it is ready, or if it fails, servers
start as Dagster starts them. ``CXR_CODE_ZYGOTE=off`` turns it off.

``--ready-file PATH`` creates PATH once the loaded code's repository snapshot has been served
(or ``READY_GRACE_S`` after the first load): ``make dagster`` starts Dagster's daemon then
(``dagster_dev.py``), so that it does not compete with the load the UI waits for. The server
logs when its first load ended and when it served that snapshot, in seconds since its start.
SIGTERM stops it and the servers it started, also when it was started in a script's
background.

``python -m cxr_augment.orchestration.code_server -m cxr_augment.definitions --port N`` serves
it; ``python -m cxr_augment.orchestration.dev`` (``make dagster``) starts it and ``dagster dev``
over a workspace that points at it.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from dagster._core.remote_representation.grpc_server_registry import ServerRegistryEntry
from dagster._grpc.client import DEFAULT_REPOSITORY_GRPC_TIMEOUT, client_heartbeat_thread
from dagster._grpc.proxy_server import DagsterProxyApiServicer
from dagster._grpc.server import GrpcServerProcess
from dagster._time import get_current_timestamp
from dagster._utils.error import serializable_error_info_from_exc_info

from cxr_augment.orchestration.dev import stop_on_interrupt_and_term
from cxr_augment.orchestration.launcher import _watched, code_fingerprint
from cxr_augment.orchestration.zygote import Forked, Zygote, route
from cxr_augment.switches import switched_on

POLL_S = 0.5  # how often the watcher compares the files
IDLE_PREPARE_S = 15.0  # with no edit, a prepared server starts this long after a load
SAVE_AFTER_S = 2.0  # the snapshots are written this long after the last one asked
log = logging.getLogger("cxr_augment.code_server")


def warm_reload_enabled() -> bool:
    return switched_on("CXR_WARM_RELOAD")


def snapshot_cache_enabled() -> bool:
    return switched_on("CXR_SNAPSHOT_CACHE")


def zygote_enabled() -> bool:
    """On Linux (a fork without exec is not safe on macOS, and the lower priority of its
    preload is Linux's), unless ``CXR_CODE_ZYGOTE=off``."""
    return switched_on("CXR_CODE_ZYGOTE") and sys.platform.startswith("linux")


_FORKED: dict[str, Forked] = {}  # socket -> a server forked by the zygote (``route``)


SNAPSHOT_QUERIES = (
    "ListRepositories",
    "GetCurrentImage",
    "ExternalRepository",
    "StreamingExternalRepository",
    "ExternalJob",
)
REPOSITORY_SNAPSHOTS = ("ExternalRepository", "StreamingExternalRepository")
READY_GRACE_S = 15.0  # the ready file at the latest this long after the first load
_REPLY_TYPES = {  # the protobuf type of each query's reply (a stream: of each of its events)
    "ListRepositories": "ListRepositoriesReply",
    "GetCurrentImage": "GetCurrentImageReply",
    "ExternalRepository": "ExternalRepositoryReply",
    "StreamingExternalRepository": "StreamingExternalRepositoryEvent",
    "ExternalJob": "ExternalJobReply",
}
KEPT_SNAPSHOTS = 4  # snapshot files kept per code location, the newest
ZYGOTE_READY_WAIT_S = 300.0  # a preloaded process not ready by then is reported


class _Entry:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.value = None
        self.error: BaseException | None = None


class _Replies:
    """The replies of ``SNAPSHOT_QUERIES`` per server: a snapshot depends only on the code the
    server loaded, so it is computed once and handed to every asker (the webserver and the
    daemon ask for the same ones), and asked of a prepared server before it is swapped in."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[tuple, _Entry] = {}
        self._asked: dict[tuple, Any] = {}  # (query, request bytes) -> request, latest last

    def get(self, client, query: str, request, compute):
        asked = (query, request.SerializeToString(deterministic=True))
        key = (client, *asked)
        with self._lock:
            self._asked.pop(asked, None)
            self._asked[asked] = request
            entry = self._entries.get(key)
            owner = entry is None
            if owner:
                entry = self._entries[key] = _Entry()
        if owner:
            try:
                entry.value = compute()
            except BaseException as err:  # not kept: the next asker tries again
                entry.error = err
                with self._lock:
                    self._entries.pop(key, None)
            finally:
                entry.done.set()
        entry.done.wait()
        if entry.error is not None:
            raise entry.error
        return entry.value

    def asked(self) -> list[tuple[str, Any]]:
        with self._lock:
            return [(query, request) for (query, _), request in self._asked.items()]

    def retain(self, clients: set) -> None:
        with self._lock:
            for key in [k for k in self._entries if k[0] not in clients]:
                del self._entries[key]

    def of(self, client) -> list[tuple[str, Any, Any]]:
        """(query, request, reply) of every reply ``client``'s server gave."""
        with self._lock:
            return [
                (k[1], self._asked[k[1:]], e.value)
                for k, e in self._entries.items()
                if k[0] is client and e.done.is_set() and e.error is None and k[1:] in self._asked
            ]

    def held(self, client) -> int:
        with self._lock:
            return sum(1 for k, e in self._entries.items() if k[0] is client and e.done.is_set())


def _asker(client, query: str, request):
    return lambda: _ask(client, query, request)


def _ask(client, query: str, request):
    if query.startswith("Streaming"):
        return list(client._get_streaming_response(query, request, DEFAULT_REPOSITORY_GRPC_TIMEOUT))
    return client._get_response(query, request, DEFAULT_REPOSITORY_GRPC_TIMEOUT)


_ORIGIN_FIELDS = ("serialized_repository_python_origin", "serialized_repository_origin")


def request_key(request) -> bytes:
    """A request as the snapshot files know it: the repository origins it names cut to the
    repository's name (they name the code server's port, another one each session)."""
    from dagster._core.remote_origin import RemoteRepositoryOrigin
    from dagster_shared.serdes import deserialize_value

    copy = type(request)()
    copy.CopyFrom(request)
    for field in _ORIGIN_FIELDS:
        if field in type(request).DESCRIPTOR.fields_by_name and getattr(copy, field):
            origin = deserialize_value(getattr(copy, field), RemoteRepositoryOrigin)
            setattr(copy, field, origin.repository_name)
    return copy.SerializeToString(deterministic=True)


class SnapshotCache:
    """The snapshots a code server gave for one state of the code, on disk, so that the next
    code server started for the same code answers the UI with them while it loads.

    ``<project>/.cache/dagster/<location>-<key>.marshal``; the key hashes the code's
    ``code_fingerprint`` (every file of the package and ``conf/``: name, size, modification
    time), the Python executable and the modification time of its ``site-packages`` (an
    install changes it), the code pointer, and the ``KEDRO_*``, ``CXR_*`` and ``DAGSTER_*``
    environment variables other than ``DAGSTER_HOME``. Only the replies of a server that
    loaded without an error are kept; ``KEPT_SNAPSHOTS`` files per location, the newest. A file
    that cannot be read is reported (a warning naming it) and written again.
    """

    def __init__(self, folder: Path, location: str, origin) -> None:
        self.folder, self.location, self.origin = folder, location, origin

    def key(self, fingerprint: tuple) -> str:
        import hashlib
        import sysconfig

        site = Path(sysconfig.get_paths()["purelib"])
        env = sorted(
            (k, v)
            for k, v in os.environ.items()
            if k.startswith(("KEDRO_", "CXR_", "DAGSTER_")) and k != "DAGSTER_HOME"
        )
        parts = (
            fingerprint,
            sys.executable,
            site.stat().st_mtime_ns if site.exists() else None,
            self.origin.module_name,
            self.origin.python_file,
            self.origin.attribute,
            self.origin.working_directory,
            self.location,
            env,
        )
        return hashlib.sha256(repr(parts).encode()).hexdigest()[:32]

    def path(self, key: str) -> Path:
        safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in self.location)
        return self.folder / f"{safe}-{key}.marshal"

    def read(self, key: str) -> dict[tuple[str, bytes], Any]:
        """The replies kept for ``key``, rebuilt as the server's messages; {} if none."""
        import marshal

        from dagster._grpc.__generated__ import dagster_api_pb2
        from google.protobuf.message import DecodeError

        path = self.path(key)
        if not path.exists():
            log.info(
                "no snapshot files for this code in %s (a first start, or the code changed): "
                "the UI waits for the load", self.folder,
            )  # fmt: skip
            return {}
        try:
            data = marshal.loads(path.read_bytes())
            replies = {}
            for query, request, reply in data["replies"]:
                kind = getattr(dagster_api_pb2, _REPLY_TYPES[query])
                if isinstance(reply, list):
                    replies[(query, request)] = [kind.FromString(b) for b in reply]
                else:
                    replies[(query, request)] = kind.FromString(reply)
            if data["key"] != key:
                log.warning(
                    "the snapshot file %s holds another key (%s); starting without it, and it "
                    "is written again once the code has loaded", path, data["key"],
                )  # fmt: skip
                return {}
            return replies
        except OSError as err:  # a folder that cannot be read: say where, and the way out
            raise OSError(
                f"the code server's snapshot file {path} cannot be read ({err}); make it "
                "readable, or set CXR_SNAPSHOT_CACHE=off to start without snapshot files"
            ) from err
        except (ValueError, EOFError, TypeError, KeyError, DecodeError) as err:
            # a torn or foreign file: nothing is answered early, and the next save replaces it
            log.warning(
                "the snapshot file %s cannot be decoded (%s: %s); starting without it, and it "
                "is written again once the code has loaded",
                path, type(err).__name__, err,
            )  # fmt: skip
            return {}

    def write(self, key: str, replies: list[tuple[str, Any, Any]]) -> None:
        """Keep (query, request, reply) triples under ``key``, atomically."""
        import marshal
        import tempfile

        kept = [
            (
                query,
                request_key(request),
                [m.SerializeToString() for m in reply]
                if isinstance(reply, list)
                else reply.SerializeToString(),
            )
            for query, request, reply in replies
        ]
        self.folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".tmp-", suffix=".marshal")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(marshal.dumps({"key": key, "replies": kept}))
            os.replace(tmp, self.path(key))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        older = sorted(
            self.folder.glob(self.path("*").name), key=lambda p: p.stat().st_mtime, reverse=True
        )
        for stale in older[KEPT_SNAPSHOTS:]:
            stale.unlink(missing_ok=True)


def _loaded_without_error(replies: list[tuple[str, Any, Any]]) -> bool:
    from dagster._core.remote_representation.external_data import RepositoryErrorSnap
    from dagster._grpc.types import ListRepositoriesResponse
    from dagster_shared.serdes import deserialize_value

    listed = False
    for query, _, reply in replies:
        if query == "ListRepositories":
            value = deserialize_value(reply.serialized_list_repositories_response_or_error)
            if not isinstance(value, ListRepositoriesResponse):
                return False
            listed = True
        elif query == "ExternalRepository":
            value = deserialize_value(reply.serialized_external_repository_data)
            if isinstance(value, RepositoryErrorSnap):
                return False
        elif query == "ExternalJob" and reply.serialized_error:
            return False
    return listed


class _ServerProcess(GrpcServerProcess):
    """``GrpcServerProcess`` whose socket path is known while it starts, so that a server
    discarded during its load can be ended at once (``_Prepared.discard``)."""

    def __init__(self, on_socket, **kwargs) -> None:
        self._on_socket = on_socket
        super().__init__(**kwargs)

    def start_server_process(self):
        if self.socket is None and self.port is None:
            from dagster._utils import safe_tempfile_path_unmanaged

            self.socket = safe_tempfile_path_unmanaged()
        self._on_socket(self.socket)
        return super().start_server_process()


def _end_starting_server(socket_path: str) -> bool:
    """End the child process serving ``socket_path`` (one still loading the code); whether
    there was one (there is none yet between the socket's choice and the process's start)."""
    import psutil

    forked = _FORKED.pop(socket_path, None)
    if forked is not None:  # the zygote's child, not this process's
        forked.kill()
        return True

    found = False
    for child in psutil.Process().children():
        try:
            if socket_path in child.cmdline():
                found = True
                child.kill()
        except psutil.NoSuchProcess:  # it ended between the listing and now: nothing to end
            continue
        except psutil.Error as err:
            log.warning(
                "the discarded code server (pid %d, socket %s) could not be ended (%s: %s); it "
                "loads on and stops once its heartbeats stop",
                child.pid, socket_path, type(err).__name__, err,
            )  # fmt: skip
    return found


class _Prepared:
    """A ``dagster api grpc`` server started in the background for the files of
    ``fingerprint``; ``ready`` is set once it has loaded the code (or failed to start)."""

    def __init__(self, servicer: WarmProxyApiServicer, fingerprint: tuple) -> None:
        self.fingerprint = fingerprint
        self.ready = threading.Event()
        self.process: GrpcServerProcess | None = None
        self.client = None
        self.error = None
        self.heartbeat_stop = threading.Event()
        self.heartbeat_thread: threading.Thread | None = None
        self._discarded = threading.Event()
        self._socket: str | None = None
        self.started = time.monotonic()
        threading.Thread(
            target=self._start, args=(servicer,), daemon=True, name="prepare-code-server"
        ).start()

    def _start(self, servicer: WarmProxyApiServicer) -> None:
        registry = servicer._grpc_server_registry
        try:
            # what GrpcServerRegistry._get_grpc_server_entry starts, with its settings
            self.process = _ServerProcess(
                on_socket=self._starting,
                instance_ref=registry.instance_ref,
                server_command=registry.server_command,
                location_name=servicer._location_name,
                loadable_target_origin=servicer._loadable_target_origin,
                heartbeat=True,
                heartbeat_timeout=registry._heartbeat_ttl,
                startup_timeout=registry._startup_timeout,
                log_level=registry._log_level,
                inject_env_vars_from_instance=registry._inject_env_vars_from_instance,
                container_image=registry._container_image,
                container_context=registry._container_context,
                additional_timeout_msg=registry._additional_timeout_msg,
                defs_state_info=registry._defs_state_info,
            )
            self.client = self.process.create_client()
            self.heartbeat_thread = threading.Thread(
                target=client_heartbeat_thread,
                args=(self.client, self.heartbeat_stop),
                daemon=True,
                name="grpc-client-heartbeat",
            )
            self.heartbeat_thread.start()
            # the snapshots the UI asked of the active server, asked of this one now
            replies = servicer._replies
            for query, request in replies.asked():
                if self._discarded.is_set():
                    break
                replies.get(self.client, query, request, _asker(self.client, query, request))
        except Exception:
            self.error = serializable_error_info_from_exc_info(sys.exc_info())
            if not self._discarded.is_set():  # a discarded one is ended on purpose
                log.warning(
                    "a server for the next reload could not be prepared; the next reload "
                    "loads the code itself. %s",
                    self.error.to_string(),
                )
        finally:
            self.ready.set()
        if self.error is None and not self._discarded.is_set():
            log.info(
                "prepared a server for the next reload (%.1f s)", time.monotonic() - self.started
            )
        if self._discarded.is_set():  # discarded while it was starting
            self._shut_down()

    def _starting(self, socket_path: str) -> None:
        self._socket = socket_path
        if self._discarded.is_set():
            raise RuntimeError("discarded before it started")

    def usable(self) -> bool:
        return (
            self.error is None
            and self.process is not None
            and self.process.server_process.poll() is None
        )

    def discard(self) -> None:
        self._discarded.set()
        if self.ready.is_set():
            self._shut_down()
        elif self._socket is not None:  # still loading code that is no longer wanted
            if not _end_starting_server(self._socket):  # its process is about to start
                threading.Thread(
                    target=self._end_once_started, daemon=True, name="end-discarded-server"
                ).start()

    def _end_once_started(self) -> None:
        while not self.ready.is_set():
            if _end_starting_server(self._socket):
                return
            time.sleep(0.02)

    def _shut_down(self) -> None:
        self.heartbeat_stop.set()
        if self.process is not None:  # Dagster's shutdown skips a server already gone
            self.process.shutdown_server()


class WarmProxyApiServicer(DagsterProxyApiServicer):
    """``DagsterProxyApiServicer`` whose reload takes a prepared server (module doc)."""

    def __init__(
        self,
        *,
        watched: list[Path] | None = None,
        warm: bool = True,
        defer_first_load: bool = False,
        snapshots: SnapshotCache | None = None,
        ready_file: Path | None = None,
        zygote: bool = False,
        **kwargs,
    ) -> None:
        origin = kwargs["loadable_target_origin"]
        self._zygote_wanted = zygote and origin.module_name is not None
        self.zygote: Zygote | None = None
        self._defer_first_load = defer_first_load
        self._ready_file = ready_file
        self._created_at = time.monotonic()
        self._ready_signalled = threading.Event()
        self._snapshots = snapshots
        self._provisional: dict = {}
        self._provisional_id = f"cxr-provisional-{uuid.uuid4()}"
        self._save_timer: threading.Timer | None = None
        self._first_loaded = threading.Event()
        self._replies = _Replies()
        self._watched = watched if watched is not None else _watched_for(origin)
        self._warm = warm
        self._prepared: _Prepared | None = None
        self._prepared_lock = threading.Lock()
        self._loaded_fingerprint: tuple | None = None
        self._loaded_at = time.monotonic()
        self._loading = False
        self._watch_stop = threading.Event()
        self.reloads: list[str] = []  # "prepared" or "loaded" per reload (tests, logs)
        self._first_load = True
        if snapshots is not None and defer_first_load:
            self._provisional = snapshots.read(snapshots.key(code_fingerprint(self._watched)))
        super().__init__(**kwargs)  # the first load, Dagster's way (_reload_location)
        if self._warm:
            threading.Thread(target=self._watch, daemon=True, name="code-watch").start()

    # ------------------------------------------------------------------ loading

    def _reload_location(self) -> None:
        if self._first_load and self._defer_first_load:
            # the server listens at once and answers once the code is loaded (module doc)
            threading.Thread(target=self._first_load_now, daemon=True, name="first-load").start()
            return
        try:
            self._load()
        finally:
            self._first_load_ended()

    def _first_load_now(self) -> None:
        with self._reload_lock:
            try:
                self._load()
            finally:
                self._first_load_ended()

    def _first_load_ended(self) -> None:
        """Answers wait no more. ``ready_file`` follows once the loaded code's repository
        snapshot has been built (what the UI waits for), or ``READY_GRACE_S`` after the load
        (a load error, or no UI asking): ``dagster_dev`` starts the daemon then."""
        first = not self._first_loaded.is_set()
        self._first_loaded.set()
        if first:
            log.info(f"first load ended ({time.monotonic() - self._created_at:.1f} s after start)")
        if first and self._zygote_wanted:
            self._start_zygote()
        if first and self._ready_file is not None:
            timer = threading.Timer(READY_GRACE_S, self._signal_ready)
            timer.daemon = True
            timer.start()

    def _start_zygote(self) -> None:
        origin = self._loadable_target_origin
        started = time.monotonic()
        try:
            zygote = Zygote(origin.module_name, origin.working_directory or os.getcwd())
        except OSError as err:
            log.warning(f"the preloaded process could not start ({err}); servers start as "
                        "new processes")  # fmt: skip
            return
        self.zygote = zygote

        def report() -> None:
            zygote.ready.wait(ZYGOTE_READY_WAIT_S)
            if zygote.ready.is_set():
                log.info(f"preloaded process ready ({time.monotonic() - started:.1f} s): the "
                         "next servers fork from it")  # fmt: skip
            else:
                why = zygote.failed or "still loading"
                log.warning(f"the preloaded process is not ready ({why}); servers start as "
                            "new processes")  # fmt: skip

        threading.Thread(target=report, daemon=True, name="zygote-report").start()

    def _signal_ready(self) -> None:
        if self._ready_signalled.is_set():
            return
        self._ready_signalled.set()
        if self._ready_file is None:
            return
        try:
            self._ready_file.touch()
        except OSError as err:
            log.warning(f"could not write {self._ready_file} ({err}): the daemon starts "
                        "after its own wait")  # fmt: skip

    def _before_first_load(self, api_name: str, request):
        """While the first load goes on: the last session's reply for the same code (and the
        server's liveness and a provisional id, so the UI takes them), else None (wait)."""
        if self._first_loaded.is_set() or not self._provisional:
            return None
        from dagster._grpc.__generated__ import dagster_api_pb2

        if api_name == "Ping":
            return dagster_api_pb2.PingReply(echo=request.echo)
        if api_name == "GetServerId":
            # the loaded server's id differs: the webserver then fetches everything again
            return dagster_api_pb2.GetServerIdReply(server_id=self._provisional_id)
        return self._provisional.get((api_name, request_key(request)))

    def _kept_reply(self, api_name: str, request):
        """The reply this proxy gives itself, or None for the active server to answer: before
        the first load, the last session's (``_before_first_load``); after it, a snapshot
        query's reply, asked once per server."""
        reply = self._before_first_load(api_name, request)
        if reply is not None:
            return reply
        self._first_loaded.wait()
        client = self._client
        if api_name not in SNAPSHOT_QUERIES or client is None:
            return None
        reply = self._replies.get(client, api_name, request, _asker(client, api_name, request))
        self._save_soon()
        if api_name in REPOSITORY_SNAPSHOTS and not self._ready_signalled.is_set():
            log.info(f"repository snapshot served ({time.monotonic() - self._created_at:.1f} s "
                     "after start)")  # fmt: skip
            self._signal_ready()
        return reply

    def _query(self, api_name: str, request, _context, *args, **kwargs):
        reply = self._kept_reply(api_name, request)
        if reply is not None:
            return reply
        return super()._query(api_name, request, _context, *args, **kwargs)

    def _streaming_query(self, api_name: str, request, _context, *args, **kwargs):
        reply = self._kept_reply(api_name, request)
        if reply is not None:
            return iter(reply)
        return super()._streaming_query(api_name, request, _context, *args, **kwargs)

    def ListRepositories(self, request, context):
        reply = self._before_first_load("ListRepositories", request)
        if reply is not None:
            return reply
        self._first_loaded.wait()  # a load error is known only then
        return super().ListRepositories(request, context)

    def StartRun(self, request, context):
        self._first_loaded.wait()  # a run needs the loaded server
        return super().StartRun(request, context)

    def _save_soon(self) -> None:
        """Write the active server's snapshots a moment after the last one it gave."""
        if self._snapshots is None:
            return
        with self._prepared_lock:
            if self._save_timer is not None:
                self._save_timer.cancel()
            self._save_timer = threading.Timer(SAVE_AFTER_S, self._save)
            self._save_timer.daemon = True
            self._save_timer.start()

    def _save(self) -> None:
        client, fingerprint = self._client, self._loaded_fingerprint
        if client is None or fingerprint is None or self._loading:
            return
        replies = self._replies.of(client)
        if not _loaded_without_error(replies):
            return
        try:
            self._snapshots.write(self._snapshots.key(fingerprint), replies)
        except OSError as err:  # only later starts lose: they load before the UI answers
            log.warning(
                "the snapshots could not be kept in %s (%s); later starts wait for the code to "
                "load (CXR_SNAPSHOT_CACHE=off stops trying)",
                self._snapshots.folder, err,
            )  # fmt: skip

    def _load(self) -> None:
        with self._prepared_lock:  # the watcher prepares nothing while this load goes on
            self._loading = True
            now = code_fingerprint(self._watched)
            prepared, self._prepared = self._prepared, None
        try:
            self._load_files(now, prepared)
        finally:
            with self._prepared_lock:
                self._loading = False

    def _load_files(self, now: tuple, prepared: _Prepared | None) -> None:
        if prepared is not None and prepared.fingerprint == now:
            prepared.ready.wait()
            if prepared.usable():
                self._adopt(prepared)
                self._replies.retain({self._client})
                self._loaded_fingerprint, self._loaded_at = now, time.monotonic()
                self.reloads.append("prepared")
                log.info("reload: took the prepared server")
                return
        if prepared is not None:
            prepared.discard()
        super()._reload_location()
        self._replies.retain({self._client})
        self._loaded_fingerprint, self._loaded_at = now, time.monotonic()
        if not self._first_load:
            self.reloads.append("loaded")
            log.info("reload: loaded the code in a new server (no prepared server was current)")
        self._first_load = False

    def _adopt(self, prepared: _Prepared) -> None:
        """Make ``prepared`` the active server, registered as the registry's own."""
        registry = self._grpc_server_registry
        with registry._lock:
            registry._all_processes.append(prepared.process)
            registry._active_entries[self._origin.get_id()] = ServerRegistryEntry(
                process=prepared.process,
                loadable_target_origin=self._loadable_target_origin,
                creation_timestamp=get_current_timestamp(),
            )
        self._load_error = None
        self._client = prepared.client
        self._client_heartbeat_shutdown_event = prepared.heartbeat_stop
        self._client_heartbeat_thread = prepared.heartbeat_thread

    def _take_prepared(self) -> _Prepared | None:
        with self._prepared_lock:
            prepared, self._prepared = self._prepared, None
        return prepared

    # ------------------------------------------------------------------ watching

    def _watch(self) -> None:
        self._first_loaded.wait()
        last = code_fingerprint(self._watched)
        while not self._watch_stop.wait(POLL_S):
            now = code_fingerprint(self._watched)  # a file removed meanwhile is skipped there
            settled, last = now == last, now
            if settled:
                self._maybe_prepare(now)

    def _maybe_prepare(self, now: tuple) -> None:
        with self._prepared_lock:
            prepared = self._prepared
            if prepared is not None and prepared.fingerprint == now:
                return
            if self._loading:  # a reload is loading the files as they are now
                return
            edited = now != self._loaded_fingerprint
            if not edited and time.monotonic() - self._loaded_at < IDLE_PREPARE_S:
                return
            if prepared is not None:
                prepared.discard()
                self._replies.retain({self._client})
            self._prepared = _Prepared(self, now)

    def prepared_state(self) -> str:
        """ "none", "loading" or "ready" (tests, logs)."""
        prepared = self._prepared
        if prepared is None:
            return "none"
        return "ready" if prepared.ready.is_set() else "loading"

    def cleanup(self) -> None:
        self._watch_stop.set()
        if self._save_timer is not None:
            self._save_timer.cancel()
        prepared = self._take_prepared()
        if prepared is not None:
            prepared.discard()
        super().cleanup()
        if self.zygote is not None:
            self.zygote.close()


def route_server_starts(servicer: WarmProxyApiServicer) -> None:
    """Dagster's start of a code server in this process forks it from ``servicer``'s
    preloaded process once that is ready (``zygote.route``)."""
    import dagster._grpc.server as grpc_server

    grpc_server.open_ipc_subprocess = route(
        grpc_server.open_ipc_subprocess, lambda: servicer.zygote, _FORKED, log.warning, log.info
    )


def _watched_for(origin) -> list[Path]:
    from dagster._core.code_pointer import FileCodePointer, ModuleCodePointer

    workdir = origin.working_directory or os.getcwd()
    if origin.module_name:
        pointer = ModuleCodePointer(origin.module_name, origin.attribute or "defs", workdir)
    else:
        pointer = FileCodePointer(origin.python_file, origin.attribute or "defs", workdir)
    return _watched(pointer)


def _exit_with_parent(parent: int, termination: threading.Event) -> None:
    """Set ``termination`` once ``parent`` has ended (this process is then another's child),
    so that a ``make dagster`` killed outright leaves no code server behind."""
    while not termination.wait(1.0):
        if os.getppid() != parent:
            log.info("the process that started this code server ended; stopping")
            termination.set()


def main(argv: list[str] | None = None) -> None:
    from dagster._core.instance import DagsterInstance
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
    from dagster._core.utils import FuturesAwareThreadPoolExecutor
    from dagster._grpc.server import DagsterGrpcServer
    from dagster._utils.interrupts import setup_interrupt_handlers

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-m", "--module-name", required=True)
    ap.add_argument("-a", "--attribute", default=None)
    ap.add_argument("-d", "--working-directory", default=os.getcwd())
    ap.add_argument("--location-name", default=None)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--startup-timeout", type=int, default=180)
    ap.add_argument("--heartbeat-ttl", type=int, default=120)
    ap.add_argument("--log-level", default="warning", help="the Dagster servers' log level")
    ap.add_argument(
        "--ready-file",
        type=Path,
        default=None,
        help="a file to create once the loaded code's repository snapshot is built (or "
        "READY_GRACE_S after the first load): dagster_dev starts the daemon then",
    )
    ap.add_argument(
        "--exit-with-parent",
        action="store_true",
        help="stop (and stop the servers it started) when the process that started it ends",
    )
    args = ap.parse_args(argv)
    setup_interrupt_handlers()
    # SIGTERM as KeyboardInterrupt (the servers it started end too), even if started in the
    # background of a script, where Dagster's mapping would leave SIGTERM ignored
    stop_on_interrupt_and_term()
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s - cxr_augment code server - %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)  # a line per reload and per prepared server
    log.propagate = False

    if args.working_directory not in sys.path:  # as Dagster loads the module: the watched files
        sys.path.insert(0, args.working_directory)
    origin = LoadableTargetOrigin(
        executable_path=sys.executable,
        module_name=args.module_name,
        attribute=args.attribute,
        working_directory=args.working_directory,
    )
    # building the instance here, before any server starts, also creates a fresh
    # DAGSTER_HOME's storage once: servers, webserver and daemon creating it at the same moment
    # can stamp its schema version twice ("more than one head present"), which breaks it
    instance_ref = DagsterInstance.get().get_ref() if os.environ.get("DAGSTER_HOME") else None
    termination = threading.Event()
    servicer = WarmProxyApiServicer(
        warm=warm_reload_enabled(),
        defer_first_load=True,
        ready_file=args.ready_file,
        zygote=zygote_enabled(),
        snapshots=SnapshotCache(
            Path(args.working_directory) / ".cache" / "dagster",
            args.location_name or args.module_name,
            origin,
        )
        if snapshot_cache_enabled()
        else None,
        loadable_target_origin=origin,
        fixed_server_id=None,
        container_image=None,
        container_context=None,
        inject_env_vars_from_instance=instance_ref is not None,
        location_name=args.location_name or args.module_name,
        log_level=args.log_level,
        startup_timeout=args.startup_timeout,
        instance_ref=instance_ref,
        server_termination_event=termination,
        logger=log,
        server_heartbeat=False,
        server_heartbeat_timeout=30,
        heartbeat_ttl=args.heartbeat_ttl,
        defs_state_info=None,
    )
    if servicer._zygote_wanted:
        route_server_starts(servicer)
    server = DagsterGrpcServer(
        server_termination_event=termination,
        dagster_api_servicer=servicer,
        port=args.port,
        socket=None,
        host=args.host,
        threadpool_executor=FuturesAwareThreadPoolExecutor(max_workers=None),
        logger=log,
    )
    if args.exit_with_parent:
        threading.Thread(
            target=_exit_with_parent, args=(os.getppid(), termination), daemon=True
        ).start()
    try:
        server.serve()
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (setup_interrupt_handlers): the way to stop
        log.info("interrupted: stopping the code server and the servers it started")
    finally:
        servicer.cleanup()


if __name__ == "__main__":
    main()
