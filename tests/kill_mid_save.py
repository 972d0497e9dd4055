"""A training process killed (SIGKILL) halfway through writing a given checkpoint, on any
machine's speed: the child's ``CheckpointStore._write`` writes part of that checkpoint's partial
file and halts there, and the parent kills it once the file is there. Watching for a finished
checkpoint and then killing races a fast training past its last save."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

_HALT = """
import time
from cxr_augment.classify.checkpoints import CheckpointStore
_write = CheckpointStore._write
def _halt(self, tmp, state):
    if tmp.name.startswith(".{name}."):
        with open(tmp, "wb") as f:
            f.write(b"half a checkpoint")
        time.sleep(120)
    _write(self, tmp, state)
CheckpointStore._write = _halt
"""


def kill_mid_save(child: str, folder: Path, checkpoint: str, timeout_s: float = 120) -> None:
    """Run ``child`` (Python source) in a process that halts while writing ``checkpoint``
    (its stem, e.g. ``epoch_0002``) into ``folder``, and kill it there."""
    script = _HALT.format(name=checkpoint) + textwrap.dedent(child)
    proc = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.monotonic() + timeout_s
    try:
        while not list(Path(folder).glob(f".{checkpoint}.partial-*")):
            assert proc.poll() is None, f"the training ended before its halt in {checkpoint}"
            assert time.monotonic() < deadline, f"no partial file of {checkpoint} came"
            time.sleep(0.02)
    finally:
        proc.kill()  # SIGKILL: no chance to clean up
        proc.wait()
