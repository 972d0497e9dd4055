"""Wait for a file, then become a command: how ``make dagster`` starts the daemon once the code
is loaded (``dagster_dev.py``).

    python wait_then_exec.py READY_FILE TIMEOUT_S -- COMMAND...

Run by path and standard library only, so that it costs nothing while the code server loads:
it polls for ``READY_FILE`` (written by the code server once its first load has ended, with
or without an error) and then replaces itself with ``COMMAND`` (``os.execv``: the same
process, so the pid, the file descriptors ``dagster dev`` passed and its signals carry over).
It starts the command anyway after ``TIMEOUT_S`` seconds. It exits without starting it when
``dagster dev`` asks its daemon to shut down first (a message or the end of the shutdown pipe
named by ``--shutdown-pipe`` in the command) or on Ctrl-C, saying so on stderr.
"""

from __future__ import annotations

import os
import select
import sys
import time

POLL_S = 0.1


def shutdown_fd(command: list[str]) -> int | None:
    """The read end of ``dagster dev``'s shutdown pipe, from ``--shutdown-pipe N``."""
    for flag, value in zip(command, command[1:], strict=False):
        if flag == "--shutdown-pipe":
            return int(value)
    return None


def wait(ready: str, timeout: float, pipe: int | None) -> bool:
    """True once ``ready`` exists or ``timeout`` has passed; False on a shutdown request."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(ready) and time.monotonic() < deadline:
        if pipe is None:
            time.sleep(POLL_S)
        elif select.select([pipe], [], [], POLL_S)[0]:
            return False  # dagster dev is shutting down (its message, or the pipe closed)
    return True


def main(argv: list[str]) -> int:
    if len(argv) < 4 or argv[2] != "--":
        print(__doc__.split("\n\n")[1].strip(), file=sys.stderr)
        return 2
    ready, timeout, command = argv[0], float(argv[1]), argv[3:]
    try:
        if not wait(ready, timeout, shutdown_fd(command)):
            print("wait_then_exec: dagster dev is shutting down before the code loaded; the "
                  "daemon was not started", file=sys.stderr)  # fmt: skip
            return 0  # asked to stop: a clean end
    except KeyboardInterrupt:
        print("wait_then_exec: interrupted before the code loaded; the daemon was not started",
              file=sys.stderr)  # fmt: skip
        return 130  # as a shell reports Ctrl-C
    os.execv(command[0], command)
    return 1  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
