"""A Dagster run launcher whose next run worker has loaded the code before the run is launched.

Dagster's ``DefaultRunLauncher`` asks the code server to start each run in a new process, which
imports the project and translates it again (several seconds for this project) before the run
starts. ``WarmRunLauncher`` keeps one *standby* worker per code location: a process that has
already imported the location's module and built its definitions (``standby.py``) and waits
for a run. A launch hands the run to the standby (it executes it exactly as ``dagster api
execute_run`` does, in its own process, events to the instance) and starts the next standby.

A standby is used only when it is still current:

- it loaded the same code pointer (module or file, attribute, working directory) with the
  same Python as the run's origin;
- no file under the code's package folder or the project's ``conf/`` changed since it loaded
  (name, size and modification time of each; ``code_fingerprint``): after an edit, the run
  goes the default way and a new standby loads the new code;
- it is alive and waiting.

Otherwise the run is launched as ``DefaultRunLauncher`` does, so a launch never waits for a
standby. The next standby starts once a launched run has started (so its loading does not
delay that start), and loads at a lower CPU priority (``nice``, in its loading thread only) so
that it does not slow the code server, the UI or the running run.

The first run of a webserver: Dagster creates the launcher at the first launch, so with
Dagster's own instance that run would start the default way. ``WarmInstance`` (the
``instance_class`` of deploy/dagster.yaml) creates it in the webserver's process when the
webserver starts, and the launcher primes a standby for the code location named by its
``standby_at_start`` setting (a module and attribute, loaded in the webserver's working
directory with its Python: what ``dagster dev -m cxr_augment.definitions`` serves), or else for
the code location of the instance's latest run. It starts once the webserver listens on its
port (which it opens after the code server has loaded the code), so that the code server's own
load, which the UI waits for, goes first; or after ``START_WAIT_S``, with a warning.

Termination sends the standby's process SIGTERM (Dagster turns it into the run's
cancellation, as for ``dagster api execute_run``). A standby ends when its launcher's process
ends (its stdin closes).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dagster._core.instance import DagsterInstance
from dagster._core.launcher import DefaultRunLauncher, LaunchRunContext
from dagster._core.storage.dagster_run import DagsterRun
from dagster._serdes import ConfigurableClassData
from dagster_shared.serdes import serialize_value

STANDBY_TAG = "cxr_augment/standby_pid"
NICE = 10
START_WAIT_S = 120  # the next standby starts once the run started, or after this
POLL_S = 0.5  # how often the webserver's first standby checks whether the webserver listens
log = logging.getLogger("dagster")


def _pointer_key(pointer) -> tuple:
    return (
        type(pointer).__name__,
        getattr(pointer, "module", None) or getattr(pointer, "python_file", None),
        getattr(pointer, "fn_name", None) or getattr(pointer, "attribute", None),
        getattr(pointer, "working_directory", None),
    )


def _watched(pointer) -> list[Path]:
    """The folders whose files make the code: the module's top-level package (or the file's
    folder) and the project's ``conf/``."""
    import importlib.util

    folders: list[Path] = []
    workdir = Path(getattr(pointer, "working_directory", None) or os.getcwd())
    module = getattr(pointer, "module", None)
    if module:
        spec = importlib.util.find_spec(module.split(".")[0])  # None: the standby fails too
        if spec is not None and spec.submodule_search_locations:
            folders += [Path(p) for p in spec.submodule_search_locations]
        elif spec is not None and spec.origin:
            folders.append(Path(spec.origin).parent)
    python_file = getattr(pointer, "python_file", None)
    if python_file:
        folders.append((workdir / python_file).parent)
    folders.append(workdir / "conf")
    return folders


def code_fingerprint(folders: list[Path]) -> tuple:
    """Name, size and modification time of every file under ``folders`` (caches excluded)."""
    entries = []
    for folder in folders:
        if not folder.is_dir():
            entries.append((str(folder), None))
            continue
        for root, dirs, files in os.walk(folder):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__" and not d.startswith("."))
            for name in sorted(files):
                if name.endswith((".pyc", ".pyo")):
                    continue
                path = os.path.join(root, name)
                try:
                    st = os.stat(path)
                except FileNotFoundError:
                    continue
                entries.append((path, st.st_size, st.st_mtime_ns))
    return tuple(entries)


def _is_standby(pid: int) -> bool:
    """Whether process ``pid`` is a standby worker (not another process given its number)."""
    import psutil  # accelerate's dependency

    try:
        return "cxr_augment.orchestration.standby" in psutil.Process(pid).cmdline()
    except psutil.Error:
        return False


class _Standby:
    """One waiting worker: its process, what it loaded, and the code fingerprint then."""

    def __init__(self, repository_origin, key: tuple, folders: list[Path]) -> None:
        self.key = key
        self.folders = folders
        self.fingerprint = code_fingerprint(folders)
        pointer = repository_origin.code_pointer
        cwd = getattr(pointer, "working_directory", None) or None
        self.process = subprocess.Popen(
            [
                repository_origin.executable_path or sys.executable,
                "-m",
                "cxr_augment.orchestration.standby",
                serialize_value(repository_origin),
                str(NICE),
            ],
            stdin=subprocess.PIPE,
            cwd=cwd,
            text=True,
        )

    def current(self) -> bool:
        return self.process.poll() is None and code_fingerprint(self.folders) == self.fingerprint

    def hand_over(self, payload: str) -> str | None:
        """Send the run; None when sent, else why not (the standby ended meanwhile)."""
        try:
            self.process.stdin.write(payload + "\n")
            self.process.stdin.flush()
            self.process.stdin.close()
        except OSError as err:  # BrokenPipeError: it exited since ``current``
            return f"{type(err).__name__}: {err}"
        return None

    def discard(self) -> None:
        """End a standby that was not handed a run (it has nothing to lose)."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        if self.process.stdin is not None and not self.process.stdin.closed:
            self.process.stdin.close()


class WarmRunLauncher(DefaultRunLauncher):
    """``DefaultRunLauncher`` with a standby worker per code location (module doc)."""

    def __init__(
        self,
        inst_data: ConfigurableClassData | None = None,
        standby_at_start: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(inst_data=inst_data)
        self._lock = threading.Lock()
        self._standby: dict[tuple, _Standby] = {}
        self._workers: dict[str, subprocess.Popen] = {}
        self._at_start = dict(standby_at_start) if standby_at_start else None

    @classmethod
    def config_type(cls):
        from dagster import Field, Shape, StringSource

        return {
            "standby_at_start": Field(
                Shape(
                    {
                        "module": Field(StringSource),
                        "attribute": Field(StringSource, is_required=False, default_value="defs"),
                    }
                ),
                is_required=False,
                description="The code location a webserver's first standby loads: a module "
                "and its Definitions attribute, in the webserver's working directory.",
            )
        }

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData, config_value: Mapping[str, Any]
    ) -> WarmRunLauncher:
        return cls(inst_data=inst_data, standby_at_start=config_value.get("standby_at_start"))

    def start_origin(self):
        """The repository origin of the webserver's first standby (module doc), or None."""
        from dagster._core.code_pointer import ModuleCodePointer
        from dagster._core.origin import RepositoryPythonOrigin

        if self._at_start:
            pointer = ModuleCodePointer(
                self._at_start["module"], self._at_start.get("attribute", "defs"), os.getcwd()
            )
            return RepositoryPythonOrigin(executable_path=sys.executable, code_pointer=pointer)
        for run in self._instance.get_runs(limit=20):
            if run.job_code_origin is not None:
                return run.job_code_origin.repository_origin
        return None

    def prime_at_start(self) -> bool:
        """Start a standby for ``start_origin``; whether there was one to start."""
        origin = self.start_origin()
        if origin is None:
            return False
        self._prime(origin)
        return True

    # ------------------------------------------------------------------ standbys

    def _prime(self, repository_origin) -> None:
        pointer = repository_origin.code_pointer
        key = (repository_origin.executable_path, *_pointer_key(pointer))
        with self._lock:
            old = self._standby.get(key)
            if old is not None and old.current():
                return
            if old is not None:
                old.discard()
            self._standby[key] = _Standby(repository_origin, key, _watched(pointer))

    def _take(self, repository_origin) -> _Standby | None:
        key = (repository_origin.executable_path, *_pointer_key(repository_origin.code_pointer))
        with self._lock:
            standby = self._standby.pop(key, None)
        if standby is None:
            return None
        if not standby.current():
            standby.discard()
            return None
        return standby

    # ------------------------------------------------------------------ launcher

    def launch_run(self, context: LaunchRunContext) -> None:
        from dagster._grpc.types import ExecuteRunArgs

        run = context.dagster_run
        origin = run.job_code_origin
        standby = self._take(origin.repository_origin) if origin is not None else None
        if standby is not None:
            args = ExecuteRunArgs(
                job_origin=origin, run_id=run.run_id, instance_ref=self._instance.get_ref()
            )
            failure = standby.hand_over(serialize_value(args))
            if failure is None:
                self._instance.add_run_tags(run.run_id, {STANDBY_TAG: str(standby.process.pid)})
                self._workers[run.run_id] = standby.process
                self._run_ids.add(run.run_id)
            else:
                self._instance.report_engine_event(
                    f"The standby run worker (pid {standby.process.pid}) could not take the "
                    f"run ({failure}); launching it the default way.",
                    run,
                    cls=self.__class__,
                )
                standby.discard()
                standby = None
        if standby is None:
            super().launch_run(context)
        if origin is not None:  # the next standby, once this run has started
            threading.Thread(
                target=self._prime_after_start,
                args=(run.run_id, origin.repository_origin),
                daemon=True,
                name="standby-prime",
            ).start()

    def _prime_after_start(self, run_id: str, repository_origin) -> None:
        from dagster._core.storage.dagster_run import DagsterRunStatus

        waiting = (DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING)
        deadline = time.monotonic() + START_WAIT_S
        while time.monotonic() < deadline:
            run = self._instance.get_run_by_id(run_id)
            if run is None or run.status not in waiting:
                break
            time.sleep(0.2)
        self._prime(repository_origin)

    def terminate(self, run_id: str) -> bool:
        process = self._workers.get(run_id)
        if process is None:
            run = self._instance.get_run_by_id(run_id) if self.has_instance else None
            pid = (run.tags or {}).get(STANDBY_TAG) if run is not None else None
            if pid is None:
                return super().terminate(run_id)
            return self._signal(run, int(pid))
        run = self._instance.get_run_by_id(run_id)
        if run is None or run.is_finished or process.poll() is not None:
            return False
        return self._signal(run, process.pid)

    def _signal(self, run: DagsterRun, pid: int) -> bool:
        if run.is_finished or not _is_standby(pid):
            return False
        self._instance.report_run_canceling(run)
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return False
        return True

    def dispose(self) -> None:
        with self._lock:
            for standby in self._standby.values():
                standby.discard()
            self._standby.clear()
        super().dispose()


def _webserver_process() -> bool:
    """Whether this process is a Dagster webserver (``dagster dev`` starts ``python -m
    dagster_webserver``; ``dagster-webserver`` is its script)."""
    argv0 = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path()
    return argv0.name == "dagster-webserver" or argv0.parent.name == "dagster_webserver"


def _webserver_address(argv: list[str]) -> tuple[str, int]:
    """(host, port) of the webserver that ``argv`` starts (dagster-webserver's ``-h/--host``
    and ``-p/--port``, defaults 127.0.0.1 and 3000; a wildcard host is reached on the loopback
    address)."""
    host, port = "127.0.0.1", "3000"
    for i, arg in enumerate(argv[:-1]):
        if arg in ("-h", "--host"):
            host = argv[i + 1]
        elif arg in ("-p", "--port"):
            port = argv[i + 1]
    for arg in argv:
        if arg.startswith("--host="):
            host = arg.split("=", 1)[1]
        elif arg.startswith("--port="):
            port = arg.split("=", 1)[1]
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if not port.isdigit():  # not a webserver's command line (its -p is a number)
        raise ValueError(f"the port {port!r} on the command line is not a number")
    return host, int(port)


def _wait_for_webserver(host: str, port: int, wait_s: float) -> str | None:
    """Wait until this process's webserver listens on (host, port): None once it does, else
    why not. Dagster's webserver opens its port only after the code server has loaded the
    code. A local connection to our own port, nothing is sent: no network is needed."""
    import socket

    deadline = time.monotonic() + wait_s
    refused = "it did not listen"
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=1):
                return None
        except (ConnectionRefusedError, TimeoutError) as err:  # not listening yet
            refused = f"{type(err).__name__}: {err}"
        except OSError as err:  # an address that cannot be reached: no point waiting
            return f"{host}:{port} cannot be reached ({type(err).__name__}: {err})"
        time.sleep(POLL_S)
    return f"{host}:{port} did not listen within {wait_s:.0f} s (last: {refused})"


class WarmInstance(DagsterInstance):
    """Dagster's instance, whose webserver creates its run launcher when it starts, so that a
    ``WarmRunLauncher`` has a standby ready for the webserver's first run (module doc). In
    every other process (the daemon, code servers, run workers, the CLI) it is Dagster's
    instance unchanged."""

    @classmethod
    def config_schema(cls) -> dict:  # no settings of its own
        return {}

    @staticmethod
    def config_defaults(base_dir: str):  # Dagster's own instance's
        from dagster._core.instance.ref import InstanceRef

        return InstanceRef.config_defaults(base_dir)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._launcher_lock = threading.RLock()
        if _webserver_process():
            threading.Thread(
                target=self._standby_at_start, daemon=True, name="standby-at-start"
            ).start()

    @property
    def run_launcher(self):
        with self._launcher_lock:  # one launcher, whichever thread asks first
            return super().run_launcher

    def _standby_at_start(self, wait_s: float = START_WAIT_S) -> None:
        try:
            address = _webserver_address(sys.argv)
        except ValueError as err:
            not_ready = f"its address cannot be read ({err})"
        else:
            not_ready = _wait_for_webserver(*address, wait_s)
        if not_ready is not None:
            log.warning("The webserver did not open its port (%s); starting the standby run "
                        "worker now, beside whatever is still loading.", not_ready)  # fmt: skip
        try:
            launcher = self.run_launcher
            if isinstance(launcher, WarmRunLauncher) and not launcher.prime_at_start():
                log.info("No standby run worker at start: no code location configured or run yet")
        except Exception as err:  # the first run then starts the default way
            log.warning(
                "The standby run worker could not be started when the webserver started (%s: "
                "%s); the first run will load the code itself.",
                type(err).__name__,
                err,
            )
