"""One IO manager class for every Kedro dataset of the translated project."""

from __future__ import annotations

import dagster as dg
from dagster._core.storage.fs_io_manager import PickledObjectFilesystemIOManager
from kedro_dagster.utils import format_dataset_name

ASSET_OP_SUFFIX = "_asset"  # kedro-dagster's name of a node's multi-asset op: <node>_asset


def data_version(dataset, obj) -> str | None:
    """A saved dataset's content, as a Dagster data version: the digest of the file or folder
    it wrote (``versions.content_digest``), or of an in-memory value (``runner.value_digest``);
    None where neither can be read."""
    from kedro.io import MemoryDataset

    from cxr_augment.orchestration.versions import content_digest, dataset_path

    if isinstance(dataset, MemoryDataset):
        return _value_version(obj)
    where = dataset_path(dataset)
    if where is None or "://" in where:  # no file of its own, or one elsewhere: not read
        return None
    found = content_digest(where)
    return f"c{found}" if found else None


def set_data_version(context, version: str | None) -> None:
    """The asset's data version is what was saved, by its bytes (``data_version``), so that an
    asset materialised again with the same bytes (its code or a parameter it reads changed, its
    output did not) leaves what reads it up to date in Dagster. Without one (a file too large
    to read, an opaque value) Dagster's own version stands: its code version and its inputs'
    versions, hashed."""
    if version is None or not getattr(context, "has_asset_key", False):
        return
    context.step_context.set_data_version(context.asset_key, dg.DataVersion(version))


class _PickledByValue(PickledObjectFilesystemIOManager):
    def handle_output(self, context, obj) -> None:
        super().handle_output(context, obj)
        if not getattr(context, "has_asset_partitions", False):
            set_data_version(context, _value_version(obj))


class ValueFilesystemIOManager(dg.FilesystemIOManager):
    """Dagster's filesystem IO manager (each value pickled under the instance's storage, where
    it was before), for the in-memory datasets (an experiment's settings and image table),
    with the value's digest as the asset's data version (``runner.value_digest``)."""

    def create_io_manager(self, context) -> PickledObjectFilesystemIOManager:
        base_dir = self.base_dir or context.instance.storage_directory()
        return _PickledByValue(base_dir=base_dir)


def _value_version(obj) -> str | None:
    """An in-memory value's data version: ``v`` and its digest (None: not data)."""
    from cxr_augment.orchestration.runner import value_digest

    found = value_digest(obj)
    return f"v{found}" if found else None


class DatasetIOManager(dg.IOManager):
    """Reads and writes one Kedro dataset, with Kedro's dataset hooks around each load and save
    of a node's op (kedro-dagster's per-dataset IO manager, as one class).

    kedro-dagster builds two pydantic classes per dataset (about 3 ms each, 2 s per code load
    here) and, for each, a map of every node: here the class exists once, the node map once per
    translation, and each dataset gets an instance (keys, hooks, partitions, saving and the
    materialisation metadata as before). Its run config is empty, as the catalog holds the
    dataset's settings.
    """

    def __init__(self, dataset, dataset_name: str, named_nodes: dict, hook_manager) -> None:
        self.dataset = dataset
        self.dataset_name = dataset_name
        self.asset_name = format_dataset_name(dataset_name)  # as kedro-dagster's tags name it
        self.named_nodes = named_nodes
        self.hook_manager = hook_manager

    def _node(self, context):
        """The Kedro node whose op this is: a job's op is named as the node, an asset's op
        (kedro-dagster's multi-asset) with ``_asset`` after it; None for any other op (an
        asset check). kedro-dagster looks up the bare name only, so its dataset hooks never
        ran for an asset's op: a Dagster materialisation kept every training's checkpoints."""
        name = context.op_def.name
        node = self.named_nodes.get(name)
        if node is None and name.endswith(ASSET_OP_SUFFIX):
            node = self.named_nodes.get(name[: -len(ASSET_OP_SUFFIX)])
        return node

    def _partition(self, context, tag: str) -> str | None:
        if tag in context.op_def.tags:  # fanned-out ops carry theirs in a tag
            name, _, key = context.op_def.tags[tag].partition("|")
            return key if name == self.asset_name else None
        if getattr(context, "has_asset_partitions", False):
            return context.asset_partition_key
        if getattr(context, "has_partition_key", False):
            return context.partition_key
        return None

    def handle_output(self, context, obj) -> None:
        from kedro_dagster import catalog as kd_catalog

        node = self._node(context)
        hooks = self.hook_manager.hook
        if node is not None:
            hooks.before_dataset_saved(dataset_name=self.dataset_name, data=obj, node=node)
        partition = self._partition(context, "downstream_partition_key")
        if partition is not None and isinstance(obj, dict) and set(obj) != {partition}:
            raise ValueError(
                f"Expected data for downstream partition to be a dict with key '{partition}' "
                f"but got: {obj}"
            )
        self.dataset.save(obj)
        try:  # the saved data is what matters: metadata never fails a materialisation
            metadata = kd_catalog._get_dataset_preview_metadata(self.dataset)
        except Exception as err:
            context.log.warning(f"No metadata for `{self.dataset_name}`: {err}")
            metadata = None
        if metadata and hasattr(context, "add_output_metadata"):
            context.add_output_metadata(metadata)
        if partition is None:  # a partition's version would need the partition's bytes
            self._set_data_version(context, obj)
        if node is not None:
            hooks.after_dataset_saved(dataset_name=self.dataset_name, data=obj, node=node)

    def _set_data_version(self, context, obj) -> None:
        set_data_version(context, data_version(self.dataset, obj))

    def load_input(self, context):
        node = self._node(context)
        hooks = self.hook_manager.hook
        if node is not None:
            hooks.before_dataset_loaded(dataset_name=self.dataset_name, node=node)
        data = self.dataset.load()
        partition = self._partition(context, "upstream_partition_key")
        if partition is not None and isinstance(data, dict):
            data = {partition: data.get(partition)}
        if node is not None:
            hooks.after_dataset_loaded(dataset_name=self.dataset_name, data=data, node=node)
        return data
