"""``dagster dev`` over the warm code server (``code_server.py``): what ``make dagster`` runs.

    python -m cxr_augment.orchestration.dev [-m cxr_augment.definitions] [-h 127.0.0.1] [-p 3000]

1. starts ``python -m cxr_augment.orchestration.code_server`` for the module on a free local
   port (it answers at once from an earlier start's snapshot files, or else once it has
   loaded the code; the load goes on while ``dagster dev`` starts);
2. writes a workspace (``grpc_server`` at that port, the module's name as the location's name)
   into a temporary folder;
3. runs ``dagster dev -w <workspace> -h HOST -p PORT`` (the webserver and the daemon; the
   daemon starts once the code server has served the loaded code's repository snapshot,
   ``dagster_dev.py``) at once, beside the code server's start, and when that ends, for
   whatever reason, ends the code server too.

The code server must listen before the webserver reads the workspace: a ``grpc_server`` that
refuses the connection is shown as a load error until the next reload. So ``dagster_dev.py``
imports Dagster's command line (about 1 s on 2 cores) while the code server starts (about
1.5 s), then waits until the port listens before it starts the webserver; this process ends
both if the code server ends before it listens.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

STARTUP_TIMEOUT_S = 300
SUPERSEDED = "ignore:Function `dev_command` is superseded"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def stop_on_interrupt_and_term() -> None:
    """Ctrl-C and SIGTERM raise ``KeyboardInterrupt`` (which stops the servers cleanly), also
    when this process was started in the background of a script. There SIGINT arrives ignored,
    and Dagster's ``setup_interrupt_handlers``, which gives SIGTERM SIGINT's handler, would
    make SIGTERM ignored too: such a server outlived its ``kill``. The processes started after
    this get both signals back as defaults."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)


def wait_for_code_server(process: subprocess.Popen, port: int, timeout: float) -> None:
    """Until the server listens on ``port``; an error if its process ends first."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(
                f"the code server ended with code {process.returncode} before it listened "
                "(its log is above)"
            )
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError as err:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the code server did not listen within {timeout:.0f} s"
                ) from err
            time.sleep(0.1)


def workspace(port: int, location: str) -> dict:
    return {
        "load_from": [
            {"grpc_server": {"host": "127.0.0.1", "port": port, "location_name": location}}
        ]
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], add_help=False)
    ap.add_argument("--help", action="help")
    ap.add_argument("-m", "--module-name", default="cxr_augment.definitions")
    ap.add_argument("-h", "--host", default="127.0.0.1")
    ap.add_argument("-p", "--port", default="3000")
    args = ap.parse_args(argv)
    # a SIGTERM ends the webserver, the daemon and the code server as Ctrl-C does
    stop_on_interrupt_and_term()

    grpc_port = free_port()
    with tempfile.TemporaryDirectory(prefix="cxr-dagster-") as tmp:
        # the code server writes it once it has served the loaded code's repository snapshot
        ready = Path(tmp) / "code-loaded"
        code_server = subprocess.Popen(
            [sys.executable, "-m", "cxr_augment.orchestration.code_server",
             "-m", args.module_name, "--port", str(grpc_port), "-d", os.getcwd(),
             "--ready-file", str(ready), "--exit-with-parent"],
        )  # fmt: skip
        dev = None
        try:
            path = Path(tmp) / "workspace.yaml"
            path.write_text(yaml.safe_dump(workspace(grpc_port, args.module_name)))
            # `dagster dev`, its webserver started once the code server listens and its daemon
            # once the code is loaded (dagster_dev.py); it warns that `dg dev` supersedes it
            # (the project has no `dg` project layout): that one warning is left out of the
            # terminal
            dev = subprocess.Popen(
                [sys.executable, "-W", SUPERSEDED, "-m", "cxr_augment.orchestration.dagster_dev",
                 str(ready), "--after-port", str(grpc_port),
                 "-w", str(path), "-h", args.host, "-p", str(args.port)],
            )  # fmt: skip
            wait_for_code_server(code_server, grpc_port, STARTUP_TIMEOUT_S)
            try:
                return dev.wait()
            except KeyboardInterrupt:
                dev.send_signal(signal.SIGINT)
                return dev.wait()
        except BaseException:
            # the code server never listened, or a second interrupt came while `dagster dev`
            # was stopping: it must not outlive this process
            if dev is not None and dev.poll() is None:
                dev.terminate()
                try:
                    dev.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    dev.kill()
                    dev.wait()
            raise
        finally:
            if code_server.poll() is None:
                code_server.send_signal(signal.SIGTERM)
                try:
                    code_server.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    code_server.kill()


if __name__ == "__main__":
    sys.exit(main())
