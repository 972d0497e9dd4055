"""``dagster dev`` whose daemon starts once the code is loaded: what ``make dagster`` runs
beside the warm code server (``dev.py``).

    python -m cxr_augment.orchestration.dagster_dev READY_FILE [--after-port PORT] [dagster dev options]

``dagster dev`` starts the webserver and the daemon at once. On 2 cores the daemon's start
(its imports, the instance, its own load of the workspace) competes with the code server's
first load and the webserver's start, which are what the UI waits for; the daemon is needed
only for schedules, sensors and queued runs. So its process first waits for ``READY_FILE``
(``wait_then_exec.py``): the code server writes it once the loaded code's repository snapshot
is built, which is what the UI fetches first, or 15 s after its first load (at most
``DAEMON_WAIT_S`` here). The process then becomes the daemon ``dagster dev`` asked for, with
the same arguments, pid and shutdown pipe. Everything else is ``dagster dev`` as it is.

``--after-port PORT``: this process imports Dagster's command line first, then waits until
the code server listens on 127.0.0.1:PORT (at most ``LISTEN_WAIT_S``) before ``dagster dev``
starts the webserver, which reads the workspace at once. ``dev.py`` starts it beside the
code server, so that the imports and the code server's start overlap.
"""

from __future__ import annotations

import sys
from pathlib import Path

DAEMON_WAIT_S = 300
LISTEN_WAIT_S = 300
WAITER = Path(__file__).with_name("wait_then_exec.py")


def is_daemon(parts: list[str]) -> bool:
    return list(parts[1:3]) == ["-m", "dagster._daemon"]


def deferred(parts: list[str], ready: str, timeout: float = DAEMON_WAIT_S) -> list[str]:
    """The daemon's command, behind the waiter; any other command as it is."""
    if not is_daemon(parts):
        return list(parts)
    return [sys.executable, "-I", str(WAITER), ready, str(timeout), "--", *parts]


def wait_for_port(port: int, timeout: float = LISTEN_WAIT_S) -> None:
    """Until something listens on 127.0.0.1:``port``; ``SystemExit`` naming it after
    ``timeout`` seconds."""
    import socket
    import time

    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"the code server did not listen on 127.0.0.1:{port} within {timeout:.0f} "
                    "s: the webserver was not started"
                ) from None
            time.sleep(0.05)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        raise SystemExit(__doc__.split("\n\n")[1].strip())
    ready, rest = argv[0], argv[1:]
    port = None
    if rest[:1] == ["--after-port"]:
        if len(rest) < 2 or not rest[1].isdigit():
            raise SystemExit("--after-port needs a port number")
        port, rest = int(rest[1]), rest[2:]
    import dagster._cli.dev as dev_cli
    from dagster._cli import main as dagster_main

    if port is not None:  # the imports above overlapped the code server's start
        wait_for_port(port)

    launch = dev_cli.open_ipc_subprocess

    def open_deferred(parts, **kwargs):
        return launch(deferred(list(parts), ready), **kwargs)

    dev_cli.open_ipc_subprocess = open_deferred
    sys.argv = ["dagster", "dev", *rest]
    dagster_main()


if __name__ == "__main__":
    main()
