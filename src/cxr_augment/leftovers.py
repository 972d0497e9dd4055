"""Temporary files and folders that say who writes them, and the removal of those a killed
process left.

A save that writes beside its target and renames into place (``datasets/atomic.py``, the
tensor stores, the diffusion models, the image folders, the model state dicts) cannot clean up
when its process is killed (SIGKILL, the machine going away): its partial file or staging
folder stays. Their names say which machine and process wrote them,
``.<base>.<kind>-<machine>p<pid>-<random><suffix>``, so the next save of the same target can
remove the ones whose process has ended, and only those: a save still going on (in this
process, in another live one, or on another machine sharing the folder) is left alone.
Standard library only: the datasets and the stores import it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import socket
import uuid
from pathlib import Path

log = logging.getLogger(__name__)

#: this machine, in the names of temporary files (a folder may be shared between machines)
_HOST = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]
_OWNED = re.compile(r"\.(?P<kind>[a-z]+)-(?P<host>[0-9a-f]{8})p(?P<pid>[0-9]+)-[0-9a-f]{8}")


def owned_name(base: str, kind: str, suffix: str = "") -> str:
    """A hidden temporary name beside ``base`` that says who writes it:
    ``.<base>.<kind>-<machine>p<pid>-<random><suffix>`` (``remove_leftovers`` reads it)."""
    return f".{base}.{kind}-{_HOST}p{os.getpid()}-{uuid.uuid4().hex[:8]}{suffix}"


def _writer_ended(host: str, pid: int) -> bool:
    """Whether the process that named a temporary file has ended: only a process of this
    machine can be known to have (another machine's is left alone), and not this one."""
    if host != _HOST or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def remove_leftovers(
    folder: str | os.PathLike, base: str, kinds: tuple[str, ...], suffix: str = ""
) -> list[Path]:
    """Remove what saves of ``base`` in ``folder`` left behind when their process was killed
    (a partial file, a staging folder, the previous version moved aside): the entries named
    by ``owned_name(base, kind, suffix)`` for a ``kind`` in ``kinds`` whose writer has ended.
    A save still going on, in this process, another live one or on another machine, is left
    alone. Returns the paths removed."""
    folder = Path(folder)
    if not folder.is_dir():  # a first save into a folder not made yet: nothing was left there
        return []
    head, removed = f".{base}", []
    for name in os.listdir(folder):
        if not name.startswith(head) or (suffix and not name.endswith(suffix)):
            continue
        m = _OWNED.fullmatch(name[len(head) : len(name) - len(suffix)])
        if m is None or m["kind"] not in kinds or not _writer_ended(m["host"], int(m["pid"])):
            continue
        path = folder / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    if removed:
        log.info("removed %d leftover(s) of killed saves of %s: %s", len(removed),
                 folder / base, ", ".join(p.name for p in removed))  # fmt: skip
    return removed
