"""A standby run worker (``launcher.WarmRunLauncher``): load the code location, then wait.

    python -m cxr_augment.orchestration.standby <serialised repository origin> [nice]

It imports the code location and builds its definitions (what a run worker spends its first
seconds on) in a thread whose CPU priority is lowered by ``nice`` (on Linux, where a thread has
its own priority, so the loading yields to the code server, the UI and a running run), then reads one line from stdin: the
serialised ``ExecuteRunArgs`` of the run to execute. It executes it as ``dagster api
execute_run`` does (the run's events go to the instance) and exits. End of input before a run
(its launcher's process ended, or the standby was discarded) exits at once.
"""

from __future__ import annotations

import os
import sys
import threading


def main(argv: list[str]) -> int:
    nice = int(argv[1]) if len(argv) > 1 else 0
    failed: list[BaseException] = []

    def load() -> None:
        try:
            # Linux gives each thread its own priority: this one imports Dagster (about 1 s of
            # CPU) and loads the code at a lower priority, the run (main thread) keeps the
            # default. Elsewhere the priority is the process's, so it is left alone rather
            # than slowing the run too.
            if nice > 0 and sys.platform.startswith("linux"):
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
            from dagster._core.origin import RepositoryPythonOrigin
            from dagster._utils.hosted_user_process import recon_repository_from_origin
            from dagster_shared.serdes import deserialize_value

            origin = deserialize_value(argv[0], RepositoryPythonOrigin)
            workdir = getattr(origin.code_pointer, "working_directory", None)
            if workdir and workdir not in sys.path:  # as the code server loads it
                sys.path.insert(0, workdir)
            recon_repository_from_origin(origin).get_definition()
        except BaseException as err:  # reported below, in the main thread
            failed.append(err)

    loader = threading.Thread(target=load, name="standby-load")
    loader.start()
    loader.join()
    if failed:
        raise failed[0]

    line = sys.stdin.readline()
    if not line.strip():
        return 0
    from dagster._cli.api import _execute_run_command_body
    from dagster._cli.utils import get_instance_for_cli
    from dagster._grpc.types import ExecuteRunArgs
    from dagster._utils.interrupts import capture_interrupts
    from dagster_shared.serdes import deserialize_value

    args = deserialize_value(line.strip(), ExecuteRunArgs)
    with capture_interrupts(), get_instance_for_cli(instance_ref=args.instance_ref) as instance:
        return _execute_run_command_body(
            args.run_id, instance, lambda event: None, set_exit_code_on_failure=False
        )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
