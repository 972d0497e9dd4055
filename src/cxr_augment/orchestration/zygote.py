"""A process that has imported the code location's libraries and forks Dagster's code servers
from them: how a reload after an edit skips the imports (``code_server.py``).

    python .../orchestration/zygote.py REQUEST_FD REPLY_FD MODULE

A ``dagster api grpc`` process spends about half of its load importing libraries (Dagster,
Kedro, pandas, matplotlib, ...) that an edit of the project does not change. This process
imports them once: it forks a probe that imports ``MODULE`` (the code location) and lists
the modules that import brought in, then imports every one of them that is not the project's
(the package of ``MODULE``), so the project's own code is never held here. It then forks one
child per request. A child is a fresh ``python -m dagster ARGS`` in all but the imports it
starts with: the requested working directory and environment, default signal handling,
standard input from ``/dev/null``, the project imported anew from its files.

The protocol is one JSON object per line on two pipes (file descriptors passed by the parent,
so that standard output and error stay the terminal's, as a server's do):

- ``{"fork": [args], "cwd": str, "env": {...}}`` -> ``{"pid": int}``
- ``{"poll": pid}`` -> ``{"exit": int or null}`` (the exit status of a child that has ended,
  as ``subprocess`` gives it: negative for a signal; null while it runs)

It runs by path, so that the project's package itself is not imported here either. The end
of the request pipe (the parent ended) ends this process; its children stay until
their own heartbeats stop, as Dagster's do. Linux and macOS only (``os.fork``).
"""

from __future__ import annotations

import sys

if __name__ == "__main__" and sys.path and sys.path[0] == __file__.rpartition("/")[0]:
    sys.path.pop(0)  # run by path: its folder's modules must not shadow anything in a child

import importlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402

NICE = 10  # the probe's and the preload's priority: they run beside a UI in use
SERVER_MODULES = ("dagster._cli", "dagster._grpc.server")  # what `dagster api grpc` runs
_exits: dict[int, int] = {}  # pid -> status, of the children that have ended


def _status(code: int) -> int:
    """``os.waitpid``'s status as ``subprocess`` reports it."""
    return -os.WTERMSIG(code) if os.WIFSIGNALED(code) else os.WEXITSTATUS(code)


def _reap(*_args) -> None:
    while True:
        try:
            pid, code = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _exits[pid] = _status(code)


def probe(module: str, also: tuple[str, ...] = SERVER_MODULES) -> list[str]:
    """The modules that importing ``module`` (from the working directory, as Dagster's server
    imports it) and ``also`` brings in, listed by a forked child, so this process imports none
    of them to find out. A module that fails to import lists what it imported until then."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the probe
        try:
            os.close(r)
            os.nice(NICE)
            before = set(sys.modules)
            sys.path.insert(0, os.getcwd())
            for name in (*also, module):
                try:
                    importlib.import_module(name)
                except BaseException:  # noqa: BLE001 - a broken edit: the child reports it
                    break
            with os.fdopen(w, "w") as out:
                json.dump(sorted(set(sys.modules) - before), out)
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r) as reply:
        text = reply.read()
    os.waitpid(pid, 0)
    return json.loads(text) if text else []


def preload(names: list[str], project: str) -> int:
    """Import ``names`` except the project's and ``__main__``; those that fail are skipped
    (a child imports what it needs anyway). The number imported."""
    done = 0
    for name in names:
        top = name.split(".")[0]
        if top in (project, "__main__") or name in sys.modules:
            continue
        try:
            importlib.import_module(name)
            done += 1
        except Exception:  # noqa: BLE001 - a module that cannot be preloaded is imported by the child
            continue
    return done


def _child(args: list[str], cwd: str, env: dict[str, str], fds: tuple[int, int]) -> None:
    """In a forked child: become ``python -m dagster ARGS``."""
    code = 1
    try:
        for fd in fds:
            os.close(fd)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        for sig in (signal.SIGCHLD, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(env)
        sys.path.insert(0, cwd)  # as `python -m` puts the working directory first
        sys.argv = ["dagster", *args]
        from dagster._cli import main

        main()
        code = 0
    except SystemExit as end:
        code = end.code if isinstance(end.code, int) else (0 if end.code is None else 1)
    except BaseException:  # noqa: BLE001 - reported as the process's own error would be
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def serve(requests, replies, fds: tuple[int, int]) -> None:
    for line in requests:
        message = json.loads(line)
        if "fork" in message:
            pid = os.fork()
            if pid == 0:
                _child(message["fork"], message["cwd"], message["env"], fds)
            answer = {"pid": pid}
        elif "poll" in message:
            _reap()
            answer = {"exit": _exits.get(message["poll"])}
        else:
            answer = {"error": f"unknown request {sorted(message)}"}
        replies.write(json.dumps(answer) + "\n")
        replies.flush()


def _preload_below(names: list[str], project: str) -> None:
    """``preload`` in a thread of lower priority (Linux gives each thread its own), so the
    children, forked from the main thread, keep the normal one."""
    import threading

    def run() -> None:
        if sys.platform.startswith("linux"):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICE)
        preload(names, project)

    thread = threading.Thread(target=run, name="preload")
    thread.start()
    thread.join()  # no thread is left when a child is forked


def main(argv: list[str]) -> int:
    request_fd, reply_fd, module = int(argv[0]), int(argv[1]), argv[2]
    try:
        _preload_below(probe(module), module.split(".")[0])
        signal.signal(signal.SIGCHLD, _reap)
        with os.fdopen(request_fd) as requests, os.fdopen(reply_fd, "w") as replies:
            replies.write(json.dumps({"ready": os.getpid()}) + "\n")
            replies.flush()
            serve(requests, replies, (request_fd, reply_fd))
    except (KeyboardInterrupt, BrokenPipeError):  # Ctrl-C in the terminal, or the parent gone
        pass
    return 0


# ---------------------------------------------------------------------------- the client side


class Forked:
    """A child of the zygote, used as Dagster uses the ``subprocess.Popen`` of a server."""

    def __init__(self, zygote: Zygote, pid: int, args: list[str]) -> None:
        self.pid, self.args, self.returncode, self._zygote = pid, args, None, zygote

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self._zygote.exit_status(self.pid)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        import subprocess
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(self.args, timeout)
            time.sleep(0.05)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:  # it ended meanwhile
                pass

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class Zygote:
    """This module's process, started for the code location ``module`` in ``cwd``; ``ready``
    is set once it has imported the libraries (``failed`` says why it never will)."""

    def __init__(self, module: str, cwd: str) -> None:
        import subprocess
        import threading

        self.ready = threading.Event()
        self.failed: str | None = None
        self._lock = threading.Lock()
        request_r, request_w = os.pipe()
        reply_r, reply_w = os.pipe()
        self.process = subprocess.Popen(
            [sys.executable, __file__, str(request_r), str(reply_w), module],
            pass_fds=(request_r, reply_w), cwd=cwd, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        os.close(request_r)
        os.close(reply_w)
        self._requests = os.fdopen(request_w, "w")
        self._replies = os.fdopen(reply_r)
        threading.Thread(target=self._await_ready, daemon=True, name="zygote-ready").start()

    def _await_ready(self) -> None:
        line = self._replies.readline()  # its first line, once it has preloaded
        if line and "ready" in json.loads(line):
            self.ready.set()
        else:
            self.failed = f"it ended with code {self.process.wait()} before it was ready"

    def _ask(self, message: dict) -> dict:
        with self._lock:
            self._requests.write(json.dumps(message) + "\n")
            self._requests.flush()
            line = self._replies.readline()
        if not line:
            raise OSError("the preloaded process has ended")
        return json.loads(line)

    def fork(self, args: list[str], cwd: str, env: dict[str, str]) -> Forked:
        """``python -m dagster ARGS`` in ``cwd`` with ``env``, forked from the preloaded state.
        ``OSError`` if the zygote is not there to ask."""
        if not self.ready.is_set():
            raise OSError("the preloaded process is not ready")
        try:
            pid = self._ask({"fork": args, "cwd": cwd, "env": env})["pid"]
        except (ValueError, KeyError, BrokenPipeError) as err:
            raise OSError(f"the preloaded process did not start it ({err!r})") from err
        return Forked(self, pid, args)

    def exit_status(self, pid: int) -> int | None:
        """The exit status of the child ``pid``, None while it runs. With the zygote gone
        (its children then belong to the system), whether ``pid`` still exists (-1 if not)."""
        try:
            return self._ask({"poll": pid})["exit"]
        except (OSError, ValueError, KeyError):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return -1
            except PermissionError:  # the pid was reused by another user's process
                return -1
            return None

    def close(self) -> None:
        """End it (the end of its request pipe); its children are left to their heartbeats."""
        import subprocess

        try:
            self._requests.close()
        except OSError:  # a broken pipe: it has ended already
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def route(open_process, zygote_of, forked: dict[str, Forked], warn, note=None):
    """``open_process`` (Dagster's ``open_ipc_subprocess``) that starts ``python -m dagster``
    of this interpreter as a fork of ``zygote_of()`` when that is ready, records it under its
    ``--socket`` in ``forked`` and calls ``note(message)``; it calls ``warn(message)`` and
    starts it the usual way when the fork fails."""

    def open_routed(parts, **kwargs):
        parts = list(parts)
        zygote = zygote_of()
        if (
            zygote is not None
            and zygote.ready.is_set()
            and parts[1:3] == ["-m", "dagster"]
            and os.path.realpath(parts[0]) == os.path.realpath(sys.executable)
        ):
            try:
                child = zygote.fork(
                    parts[3:],
                    str(kwargs.get("cwd") or os.getcwd()),
                    dict(kwargs.get("env") or os.environ),
                )
            except OSError as err:
                warn(f"the preloaded process could not start a code server ({err}); it "
                     "starts as a new process")  # fmt: skip
            else:
                for ended in [k for k, c in forked.items() if c.returncode is not None]:
                    del forked[ended]  # known to have ended: no longer to be found by socket
                if "--socket" in parts[:-1]:
                    forked[parts[parts.index("--socket") + 1]] = child
                if note is not None:
                    note(f"a code server forked from the preloaded process (pid {child.pid})")
                return child
        return open_process(parts, **kwargs)

    return open_routed


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
