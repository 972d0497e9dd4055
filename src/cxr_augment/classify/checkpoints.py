"""Checkpoint stores: a training's per-epoch state on disk, written atomically, resumed safely.

Importing this module does not import torch (the pipelines name ``CheckpointStore`` in their
nodes' signatures, and Kedro and Dagster read those signatures at every code load); torch is
imported by the functions that save, load or compare tensors.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from cxr_augment.datasets.atomic import disk_full, fsync_folder

if TYPE_CHECKING:
    import torch
    from torch import nn

# the training's logger: its warnings (a checkpoint skipped on resume) read as the training's
log = logging.getLogger("cxr_augment.classify.training")


class CheckpointError(RuntimeError):
    """A checkpoint store holds checkpoints, none of which can be resumed."""


def describe_error(exc: BaseException, limit: int = 200) -> str:
    """``Type: the first sentence`` of an error (torch's are paragraphs; for a refused
    ``weights_only`` load, the unpickler's own reason rather than the advice around it)."""
    text = str(exc).strip()
    found = re.search(r"WeightsUnpickler error:\s*([^\n]+)", text)
    line = found.group(1) if found else (text.splitlines() or [""])[0]
    line = re.split(r"(?<=[^.])\. ", line, maxsplit=1)[0].rstrip(".")
    line = f"{type(exc).__name__}: {line}" if line else type(exc).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."


def require_keys(state: dict, keys) -> None:
    """Raise ``ValueError`` naming the keys a checkpoint lacks."""
    missing = [k for k in keys if k not in state]
    if missing:
        raise ValueError(
            f"not a checkpoint of this training: missing {', '.join(map(repr, missing))} "
            f"(it has {', '.join(map(repr, list(state)[:8]))})"
        )


def check_weights(module: nn.Module, weights, what: str) -> None:
    """Raise ``ValueError`` unless ``weights`` is a state dict that fits ``module`` (the same
    keys, tensors of the same shapes): checked before loading, so nothing is half-loaded."""
    if not isinstance(weights, dict):
        raise ValueError(f"{what}: not a state dict ({type(weights).__name__})")
    expected = module.state_dict()
    missing = sorted(expected.keys() - weights.keys())
    unexpected = sorted(weights.keys() - expected.keys())
    if missing or unexpected:
        raise ValueError(
            f"{what} does not fit the model: missing {missing[:3]}"
            f"{' ...' if len(missing) > 3 else ''}, unexpected {unexpected[:3]}"
            f"{' ...' if len(unexpected) > 3 else ''}"
        )
    import torch

    for k, v in expected.items():
        w = weights[k]
        if not isinstance(w, torch.Tensor) or w.shape != v.shape:
            got = tuple(w.shape) if isinstance(w, torch.Tensor) else type(w).__name__
            raise ValueError(f"{what}: {k} is {got}, the model's is {tuple(v.shape)}")


def check_optimizer(optimizer: torch.optim.Optimizer, state) -> None:
    """Raise ``ValueError`` unless ``state`` is an optimiser state dict for these parameters
    (torch checks the groups but not the shapes of the moments, which fail at the next step;
    for element-wise optimisers such as Adam, whose moments have their parameter's shape)."""
    if not isinstance(state, dict) or "param_groups" not in state or "state" not in state:
        raise ValueError("the optimiser state is not an optimiser state dict")
    groups = state["param_groups"]
    if len(groups) != len(optimizer.param_groups) or any(
        len(a["params"]) != len(b["params"])
        for a, b in zip(groups, optimizer.param_groups, strict=True)
    ):
        raise ValueError("the optimiser state is for other parameters")
    import torch

    params = [p for g in optimizer.param_groups for p in g["params"]]
    ids = [i for g in groups for i in g["params"]]
    shape = {i: p.shape for i, p in zip(ids, params, strict=True)}
    for i, moments in state["state"].items():
        if i not in shape:
            raise ValueError(f"the optimiser state names a parameter {i!r} it has no group for")
        for name, t in moments.items():
            if isinstance(t, torch.Tensor) and t.ndim > 0 and t.shape != shape[i]:
                raise ValueError(
                    f"the optimiser's {name} of parameter {i} is {tuple(t.shape)}, "
                    f"the parameter {tuple(shape[i])}"
                )


class CheckpointStore:
    """A folder of checkpoints (per epoch, or per ``stem`` unit such as a training step),
    written atomically and resumed from the newest one that can be.

    - A save writes ``.<name>.partial-<id>.pt`` beside the target, flushes it to the disk
      and renames it over ``<stem>_<n>.pt``; only then are checkpoints beyond the newest
      ``keep`` deleted. A kill at any point leaves the previous checkpoints whole (a partial
      file left by a kill is removed when the store is next resumed); a full disk raises an
      ``OSError`` that names the checkpoint and says so, the previous one intact.
    - ``resume`` reads the newest checkpoint; one that is unreadable (truncated, random
      bytes), lacks what the training needs or does not fit its model is skipped with a
      logged warning naming it, and the one before is resumed (``keep`` >= 2). When none can
      be, ``CheckpointError`` names each file and why, and says what to delete.
    """

    def __init__(
        self, folder: str | Path, keep: int = 2, stem: str = "epoch", digits: int = 4
    ) -> None:
        self.folder = Path(folder)
        self.keep = keep
        self.stem = stem
        self.digits = digits  # zero-padded, so that names sort in order

    def _path(self, epoch: int) -> Path:
        return self.folder / f"{self.stem}_{epoch:0{self.digits}d}.pt"

    def files(self) -> list[Path]:
        """The checkpoints, oldest first."""
        return sorted(self.folder.glob(f"{self.stem}_*.pt")) if self.folder.exists() else []

    def partial_files(self) -> list[Path]:
        """Temporary files of saves that did not finish (``.tmp-*``: earlier versions)."""
        if not self.folder.exists():
            return []
        return sorted(
            [*self.folder.glob(f".{self.stem}_*.partial-*.pt"), *self.folder.glob(".tmp-*.pt")]
        )

    def _write(self, tmp: Path, state: dict) -> None:
        # through a Python file: a failed write raises OSError (with its errno), where torch
        # writing to a path only says "file write failed"
        import torch

        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())  # a full disk may only be reported now (delayed allocation)

    def _prune(self) -> None:
        for old in self.files()[: -self.keep]:
            old.unlink()

    def save(self, epoch: int, state: dict) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        final = self._path(epoch)
        tmp = final.with_name(f".{final.stem}.partial-{uuid.uuid4().hex[:8]}{final.suffix}")
        try:
            self._write(tmp, state)
            os.replace(tmp, final)
        except BaseException as exc:
            tmp.unlink(missing_ok=True)
            if isinstance(exc, Exception) and disk_full(exc):
                previous = [p for p in self.files() if p != final]
                kept = (
                    f"the previous checkpoint, {previous[-1]}, is intact. Free some space on "
                    f"the disk of {self.folder} and run again: training resumes from it"
                    if previous
                    else f"no earlier checkpoint exists. Free some space on the disk of "
                    f"{self.folder} and run again"
                )
                raise OSError(
                    errno.ENOSPC,
                    f"the disk is full: checkpoint {final} could not be written (no space "
                    f"left on the device; the partial file was removed); {kept}",
                ) from exc
            raise
        fsync_folder(self.folder)  # the rename itself survives a power cut
        self._prune()
        return final

    def resume(self, check: Callable[[dict], None] | None = None) -> tuple[Path, dict] | None:
        """The newest checkpoint that loads and passes ``check`` (which raises on one that
        cannot be resumed), with its path; None when the store is empty.

        A bad newest checkpoint is skipped with a warning naming it (it is overwritten when
        training reaches it again); ``CheckpointError`` when no checkpoint can be resumed.
        """
        # a save cut short by a kill leaves its temporary file: one writer per folder, so any
        # temporary file found when a run starts is such a leftover
        for tmp in self.partial_files():
            tmp.unlink(missing_ok=True)
        import torch

        files = self.files()
        bad: list[tuple[Path, str]] = []
        for path in reversed(files):
            try:
                # weights_only=True: checkpoints hold tensors and plain containers only
                state = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as exc:
                reason = (
                    f"unreadable: truncated, corrupted or not a torch file ({describe_error(exc)})"
                )
                bad.append((path, reason))
                continue
            try:
                if not isinstance(state, dict):
                    raise ValueError(f"not a checkpoint: a {type(state).__name__}, not a dict")
                if check is not None:
                    check(state)
            except Exception as exc:
                reason = str(exc) if isinstance(exc, ValueError) else describe_error(exc)
                bad.append((path, reason))
                continue
            for p, reason in bad:
                log.warning(
                    "checkpoint %s cannot be resumed: %s. Resuming from the previous "
                    "checkpoint, %s, instead (the bad file is overwritten when training "
                    "reaches it again; delete it to silence this warning)",
                    p,
                    reason,
                    path,
                )
            return path, state
        if not bad:
            return None
        if len(bad) == 1:
            ((p, reason),) = bad
            raise CheckpointError(
                f"checkpoint {p} cannot be resumed: {reason}. No earlier checkpoint is left "
                f"in {self.folder}: delete {p} to start this training afresh"
            )
        listed = "; ".join(f"{p}: {reason}" for p, reason in bad)
        raise CheckpointError(
            f"no checkpoint in {self.folder} can be resumed ({listed}). Delete them (or the "
            "folder) to start this training afresh"
        )

    def latest(self, check: Callable[[dict], None] | None = None) -> dict | None:
        """The state of ``resume`` without its path."""
        found = self.resume(check)
        return None if found is None else found[1]

    def clear(self) -> None:
        for f in self.files():
            f.unlink()
