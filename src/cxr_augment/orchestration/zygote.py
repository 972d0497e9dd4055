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
  as ``subprocess`` gives it: negative for a signal; null while it runs; reported once)
- ``{"signal": pid, "sig": int}`` -> ``{"sent": bool}`` (only to a child that still runs:
  this process reaps its children, so it alone knows that a pid is still its child's)
- a request that fails -> ``{"error": str}``

It runs by path, so that the project's package itself is not imported here either. The end
of the request pipe (the parent ended) ends this process; its children stay until
their own heartbeats stop, as Dagster's do. The code server uses it on Linux only.

A child differs from a new process in what a fork keeps: its ``__main__`` module is this file,
and what a library read from the environment at import time was read in this process (the
code server's environment, as a new server's would be).
"""

from __future__ import annotations

import sys

if __name__ == "__main__" and sys.path:
    import os.path as _p

    if _p.realpath(sys.path[0]) == _p.dirname(_p.realpath(__file__)):
        sys.path.pop(0)  # run by path: its folder's modules must not shadow anything in a child

import importlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402

NICE = 10  # the probe's and the preload's priority: they run beside a UI in use
SERVER_MODULES = ("dagster._cli", "dagster._grpc.server")  # what `dagster api grpc` runs
PROBE_TIMEOUT_S = 300.0  # an import that takes longer is not waited for
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


def probe(
    module: str,
    also: tuple[str, ...] = SERVER_MODULES,
    close: tuple[int, ...] = (),
    timeout: float = PROBE_TIMEOUT_S,
) -> list[str]:
    """The modules that importing ``module`` (from the working directory, as Dagster's server
    imports it) and ``also`` brings in, listed by a forked child, so this process imports none
    of them to find out. A module that fails to import lists what it imported until then; one
    that takes longer than ``timeout`` lists nothing (the probe is killed). ``close``: the
    file descriptors the probe must not hold (this process's pipes)."""
    import select
    import time

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the probe
        try:
            for fd in (r, *close):
                os.close(fd)
            os.nice(NICE)
            before = set(sys.modules)
            sys.path.insert(0, os.getcwd())
            for name in (*also, module):
                try:
                    importlib.import_module(name)
                except BaseException as err:  # noqa: BLE001 - a broken edit: said here
                    print(f"zygote probe: importing {name} failed ({type(err).__name__}: "
                          f"{err}); what it imported until then is preloaded", file=sys.stderr)  # fmt: skip
                    break
            with os.fdopen(w, "w") as out:
                json.dump(sorted(set(sys.modules) - before), out)
        finally:
            os._exit(0)
    os.close(w)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([r], [], [], left)[0]:
            os.kill(pid, signal.SIGKILL)
            os.close(r)
            os.waitpid(pid, 0)
            raise SystemExit(f"zygote: importing {module} took over {timeout:.0f} s; the probe "
                             "was stopped and servers start as new processes")  # fmt: skip
        chunk = os.read(r, 1 << 16)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(r)
    os.waitpid(pid, 0)
    try:
        return json.loads(b"".join(chunks))
    except ValueError as err:
        raise SystemExit(f"zygote: the probe of {module} ended without its list of modules "
                         f"({err}); servers start as new processes") from err  # fmt: skip


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


def _exit(code: int) -> None:
    """End a forked child as the interpreter ends: join its threads, run the ``atexit``
    functions (the project's code-version cache writes its last entries there), flush."""
    import atexit
    import threading

    try:
        shutdown = getattr(threading, "_shutdown", None)
        if shutdown is not None:
            shutdown()
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError) as err:  # reported on the descriptor itself
                os.write(2, f"zygote child: could not flush {stream.name}: {err}\n".encode())
        os._exit(code)


def _child(args: list[str], cwd: str, env: dict[str, str], fds: tuple[int, int]) -> None:
    """In a forked child: become ``python -m dagster ARGS``."""
    code = 1
    try:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
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
        _exit(code)


def _fork(message: dict, fds: tuple[int, int]) -> int:
    sys.stdout.flush()
    sys.stderr.flush()
    # no reaping between the fork and forgetting an earlier child's status under the same pid
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
    try:
        pid = os.fork()
        if pid == 0:
            _child(message["fork"], message["cwd"], message["env"], fds)
        _exits.pop(pid, None)
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
    return pid


def _signal(pid: int, sig: int) -> bool:
    """Send ``sig`` to the child ``pid`` if it still runs (with reaping held off meanwhile, so
    that the pid cannot be freed and reused between the check and the signal)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
    try:
        _reap()
        if pid in _exits:
            return False  # it has ended
        try:
            done, code = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # not a child of this process
            return False
        if done:
            _exits[pid] = _status(code)
            return False
        os.kill(pid, sig)
        return True
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})


def serve(requests, replies, fds: tuple[int, int]) -> None:
    for line in requests:
        message = json.loads(line)
        try:
            if "fork" in message:
                answer = {"pid": _fork(message, fds)}
            elif "poll" in message:
                _reap()
                answer = {"exit": _exits.pop(message["poll"], None)}
            elif "signal" in message:
                answer = {"sent": _signal(message["signal"], message["sig"])}
            else:
                answer = {"error": f"unknown request {sorted(message)}"}
        except OSError as err:  # e.g. a fork refused for want of memory or processes
            answer = {"error": f"{type(err).__name__}: {err}"}
        replies.write(json.dumps(answer) + "\n")
        replies.flush()


def _preload_below(names: list[str], project: str) -> None:
    """``preload`` in a thread of lower priority (Linux gives each thread its own), so the
    children, forked from the main thread, keep the normal one. Then the checks that make
    forking safe: no other thread runs (a library that started one would leave its locks
    held in every child), and nothing of the project was imported on the way (an entry
    point of a library could import it; a child would then serve that old copy): such
    modules are dropped, so that a child imports them from the files."""
    import threading

    def run() -> None:
        if sys.platform.startswith("linux"):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICE)
        preload(names, project)

    thread = threading.Thread(target=run, name="preload", daemon=True)
    thread.start()
    thread.join()
    if threading.active_count() > 1:
        names = sorted(t.name for t in threading.enumerate() if t is not threading.main_thread())
        raise SystemExit(f"zygote: the preload left threads running ({', '.join(names)}); "
                         "forking is not safe, so servers start as new processes")  # fmt: skip
    for name in [m for m in sys.modules if m.split(".")[0] == project]:
        del sys.modules[name]


def main(argv: list[str]) -> int:
    request_fd, reply_fd, module = int(argv[0]), int(argv[1]), argv[2]
    try:
        _preload_below(probe(module, close=(request_fd, reply_fd)), module.split(".")[0])
        signal.signal(signal.SIGCHLD, _reap)
        with os.fdopen(request_fd) as requests, os.fdopen(reply_fd, "w") as replies:
            replies.write(json.dumps({"ready": os.getpid()}) + "\n")
            replies.flush()
            serve(requests, replies, (request_fd, reply_fd))
    except KeyboardInterrupt:  # Ctrl-C in the terminal: the code server stops too
        print("zygote: interrupted; ending", file=sys.stderr)
        return 130
    except BrokenPipeError:
        print("zygote: the code server is gone (its pipe closed); ending", file=sys.stderr)
        return 1
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
        """Through the zygote, which knows whether the pid is still its running child's; with
        the zygote gone, not at all (the pid may be another process's)."""
        if self.poll() is None:
            self._zygote.signal(self.pid, sig)

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
        """One request and its reply; ``OSError`` (and ``ready`` cleared: no later server is
        asked of it) if the zygote cannot be asked or answers an error."""
        try:
            with self._lock:
                self._requests.write(json.dumps(message) + "\n")
                self._requests.flush()
                line = self._replies.readline()
            if not line:
                raise OSError("the preloaded process has ended")
            answer = json.loads(line)
        except (OSError, ValueError) as err:
            self.ready.clear()
            self.failed = self.failed or f"{type(err).__name__}: {err}"
            raise OSError(self.failed) from err
        if "error" in answer:
            raise OSError(f"the preloaded process could not do it: {answer['error']}")
        return answer

    def fork(self, args: list[str], cwd: str, env: dict[str, str]) -> Forked:
        """``python -m dagster ARGS`` in ``cwd`` with ``env``, forked from the preloaded state.
        ``OSError`` if the zygote is not there to ask."""
        if not self.ready.is_set():
            raise OSError(self.failed or "the preloaded process is not ready")
        return Forked(self, self._ask({"fork": args, "cwd": cwd, "env": env})["pid"], args)

    def exit_status(self, pid: int) -> int | None:
        """The exit status of the child ``pid``, None while it runs. With the zygote gone
        (its children then belong to the system), whether ``pid`` still exists (-1 if not)."""
        try:
            return self._ask({"poll": pid})["exit"]
        except OSError:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return -1
            except PermissionError:  # the pid was reused by another user's process
                return -1
            return None

    def signal(self, pid: int, sig: int) -> bool:
        """Whether ``sig`` was sent to the running child ``pid``."""
        try:
            return bool(self._ask({"signal": pid, "sig": int(sig)})["sent"])
        except OSError:
            return False

    def close(self) -> None:
        """End it (the end of its request pipe); its children are left to their heartbeats."""
        import subprocess

        self.ready.clear()
        with self._lock:
            try:
                self._requests.close()
            except OSError as err:  # a broken pipe: it had ended already
                import logging

                logging.getLogger("cxr_augment.code_server").info(
                    "the preloaded process had already ended (%s)", err
                )
        try:  # serving, it ends at the end of its input; while it preloads, it is stopped
            self.process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.process.terminate()
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
            and os.path.abspath(parts[0]) == os.path.abspath(sys.executable)
            and set(kwargs) <= {"cwd", "env"}  # what Dagster passes; anything else: as before
        ):
            env = kwargs.get("env")
            try:
                child = zygote.fork(
                    parts[3:],
                    str(kwargs.get("cwd") or os.getcwd()),
                    dict(os.environ if env is None else env),
                )
            except OSError as err:
                warn(f"the preloaded process could not start a code server ({err}); it "
                     "starts as a new process")  # fmt: skip
            else:
                for ended in [k for k, c in list(forked.items()) if c.returncode is not None]:
                    forked.pop(ended, None)  # ended: no longer to be found by its socket
                if "--socket" in parts[:-1]:
                    forked[parts[parts.index("--socket") + 1]] = child
                if note is not None:
                    note(f"a code server forked from the preloaded process (pid {child.pid})")
                return child
        return open_process(parts, **kwargs)

    return open_routed


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
