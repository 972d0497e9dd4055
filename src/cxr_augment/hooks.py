"""Kedro hooks of the project."""

from __future__ import annotations

import gc
import logging
import os
from pathlib import Path
from typing import Any

from kedro.framework.hooks import hook_impl

from cxr_augment.orchestration.threads import limit_threads

log = logging.getLogger(__name__)


def freeze_startup_objects() -> None:
    """Move every object alive now (modules, configuration, the catalog) to the collector's
    permanent generation.

    They live for the whole run, yet each full collection would rescan them all (torch,
    pandas, dagster... a few million objects), and a forked worker that collects would touch
    their pages and copy them. Frozen, collections scan only what the nodes create. (No
    collection first: it would cost a full scan, the very thing this saves; the few garbage
    cycles alive at start-up are kept until the run ends.)
    """
    gc.freeze()


class RunHooks:
    @hook_impl
    def after_context_created(self, context) -> None:
        # the study's structure (experiments, seeds) is read before a context exists, from the
        # environment named by KEDRO_ENV: `kedro run --env study` names it for them too
        if context.env and not os.environ.get("KEDRO_ENV"):
            os.environ["KEDRO_ENV"] = context.env

    @hook_impl
    def before_pipeline_run(self) -> None:
        freeze_startup_objects()

    @hook_impl
    def before_node_run(self) -> None:
        # a ParallelRunner worker: one torch thread (orchestration/threads.py)
        limit_threads()

    @hook_impl
    def after_pipeline_run(self) -> None:
        gc.unfreeze()

    @hook_impl
    def on_pipeline_error(self) -> None:
        gc.unfreeze()


def delete_checkpoints(store: Any) -> int:
    """Delete the checkpoint files of ``store`` (a ``CheckpointStore``) and of the stores in
    its subfolders (a training's stages), then the folders left empty; the number of files.

    Only the store's own checkpoints go (``<stem>_<n>.pt``): anything else in the folder
    stays (a partial file of a save under way, a linked folder), and so does the folder that
    holds it.
    """
    from cxr_augment.classify.checkpoints import CheckpointStore

    root = Path(store.folder)
    if not root.is_dir() or root.is_symlink():
        return 0
    subfolders = sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink())
    deleted = 0
    for folder in [*subfolders, root]:  # subfolders first, so that an emptied root goes too
        sub = CheckpointStore(folder, keep=store.keep, stem=store.stem, digits=store.digits)
        for f in sub.files():
            f.unlink(missing_ok=True)
            deleted += 1
        if not any(folder.iterdir()):  # a folder that holds anything else stays
            folder.rmdir()  # an error here reaches the hook, which warns with the folder
    return deleted


class CheckpointHooks:
    """Deletes a training's checkpoints once every output of its node is saved.

    A checkpoint folder whose catalog entry says ``metadata: {delete_when_trained: true}``
    (a ``CheckpointFolderDataset``) is watched from ``after_node_run`` of the node that reads
    it (Kedro's runners) or from the load of that input (``after_dataset_loaded``: Dagster's
    asset ops run no node hooks, its IO managers the dataset hooks); when the last of that
    node's outputs has been saved (``after_dataset_saved``, in Kedro's runners and in
    Dagster's IO managers alike), the store's checkpoint files are deleted. They exist so that an interrupted training resumes; a finished one has its model,
    and a classifier's two epoch checkpoints (weights, optimiser state, history) are about
    eight times the size of its model: kept, 116 of the demo study's 201 trainings held 38 GB
    of them. A node that fails, or whose outputs are not all saved (a Dagster subset), keeps
    them: an interrupted training still resumes.
    """

    def __init__(self) -> None:
        self._pending: dict[str, tuple[set[str], list[Any]]] = {}
        self._catalog = None

    @staticmethod
    def _watched(catalog, name: str) -> bool:
        from cxr_augment.datasets import CheckpointFolderDataset
        from cxr_augment.orchestration.runner import _dataset

        if name.startswith("params:") or name == "parameters":
            return False
        dataset = _dataset(catalog, name)
        return isinstance(dataset, CheckpointFolderDataset) and (
            (getattr(dataset, "metadata", None) or {}).get("delete_when_trained") is True
        )

    @hook_impl
    def after_catalog_created(self, catalog) -> None:
        self._catalog = catalog

    @hook_impl
    def after_dataset_loaded(self, dataset_name: str, data: Any, node) -> None:
        # Dagster's asset ops run no node hooks (kedro-dagster calls the node's function
        # alone): the store is noted when its input is loaded, through the IO manager
        if node is None or self._catalog is None or not node.outputs:
            return
        if not self._watched(self._catalog, dataset_name):
            return
        unsaved, stores = self._pending.setdefault(node.name, (set(node.outputs), []))
        if all(s is not data for s in stores):
            stores.append(data)

    @hook_impl
    def after_node_run(self, node, catalog, inputs: dict[str, Any]) -> None:
        stores = [inputs[n] for n in node.inputs if n in inputs and self._watched(catalog, n)]
        if stores and node.outputs:
            self._pending[node.name] = (set(node.outputs), stores)

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, node) -> None:
        pending = self._pending.get(node.name) if node is not None else None
        if pending is None:
            return
        unsaved, stores = pending
        unsaved.discard(dataset_name)
        if unsaved:
            return
        del self._pending[node.name]
        for store in stores:
            try:
                n = delete_checkpoints(store)
            except OSError as err:  # the outputs are saved: the run goes on, the files stay
                log.warning(
                    "%s: its outputs are saved, but its checkpoints in %s could not all be "
                    "deleted (%s); delete them by hand",
                    node.name,
                    store.folder,
                    err,
                )
                continue
            if n:
                log.info(
                    "%s: its outputs are saved, so its %d checkpoint file(s) in %s were "
                    "deleted (the catalog's delete_when_trained keeps them when false)",
                    node.name,
                    n,
                    store.folder,
                )

    @hook_impl
    def on_node_error(self, node) -> None:
        # a node that fails never reaches after_node_run; this drops an entry left by an
        # earlier success of the same node whose outputs were not all saved
        self._pending.pop(node.name, None)
