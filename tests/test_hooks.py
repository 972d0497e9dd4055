"""The run hook freezes the start-up objects for the run and thaws them after."""

from __future__ import annotations

import gc

from cxr_augment.hooks import RunHooks
from cxr_augment.settings import HOOKS


def test_objects_alive_at_start_are_frozen_for_the_run_only():
    gc.unfreeze()
    hooks = RunHooks()
    hooks.before_pipeline_run()
    try:
        assert gc.get_freeze_count() > 1000  # modules, classes, configuration...
    finally:
        hooks.after_pipeline_run()
    assert gc.get_freeze_count() == 0


def test_a_failed_run_thaws_too():
    hooks = RunHooks()
    hooks.before_pipeline_run()
    hooks.on_pipeline_error()
    assert gc.get_freeze_count() == 0


def test_the_project_registers_the_hook():
    assert any(isinstance(h, RunHooks) for h in HOOKS)


def test_loading_every_pipeline_and_dataset_does_not_import_torch():
    """Every `kedro run` and Dagster's translation load all pipelines: torch (~0.6 GB, seconds
    to import) must wait for the first node that trains or predicts."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    code = (
        "import sys\n"
        "from kedro.framework.startup import bootstrap_project\n"
        f"bootstrap_project({str(root)!r})\n"
        "import cxr_augment.datasets\n"
        "from cxr_augment.pipeline_registry import register_pipelines\n"
        "assert len(register_pipelines()['classification'].nodes) > 50\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=root,
        env={**os.environ, "KEDRO_DISABLE_TELEMETRY": "true"},
    )
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_the_run_environment_reaches_the_studys_structure(monkeypatch):
    """`kedro run --env study` builds the pipelines with the study profile's seeds."""
    from types import SimpleNamespace

    from cxr_augment import study

    monkeypatch.delenv("KEDRO_ENV", raising=False)
    assert study.repeats("ptx_densenet121") == [1]
    RunHooks().after_context_created(SimpleNamespace(env="study"))
    import os

    assert os.environ["KEDRO_ENV"] == "study"
    assert study.repeats("ptx_densenet121") == [1, 2, 3]
    monkeypatch.setenv("KEDRO_ENV", "chexpert")  # an explicit KEDRO_ENV is not overridden
    RunHooks().after_context_created(SimpleNamespace(env="study"))
    assert os.environ["KEDRO_ENV"] == "chexpert"


# --- a finished training's checkpoints are deleted once its outputs are saved ---------------


def _train(checkpoints, fail: bool = False):
    """A stand-in training node: two epochs of checkpoints in a stage folder, as the
    classifier writes them, then its outputs (or an error before them)."""
    import torch

    from cxr_augment.classify.checkpoints import CheckpointStore

    stage = CheckpointStore(checkpoints.folder / "stage0", checkpoints.keep)
    for epoch in range(3):
        stage.save(epoch, {"w": torch.full((4,), float(epoch))})
    if fail:
        raise RuntimeError("killed after epoch 2")
    return {"w": torch.ones(4)}, [0.5, 0.7, 0.6]


def _run(tmp_path, *, delete=True, fail=False, model_dataset=None, history_dataset=None):
    from kedro.framework.hooks.manager import _create_hook_manager
    from kedro.io import DataCatalog, MemoryDataset
    from kedro.pipeline import node, pipeline
    from kedro.runner import SequentialRunner

    from cxr_augment.datasets import CheckpointFolderDataset
    from cxr_augment.hooks import CheckpointHooks

    folder = tmp_path / "exp" / "seed1" / "checkpoints"
    catalog = DataCatalog(
        {
            "exp.seed1.checkpoints": CheckpointFolderDataset(
                path=str(folder), metadata={"delete_when_trained": delete, "description": "x"}
            ),
            "exp.seed1.model": model_dataset or MemoryDataset(),
            "exp.seed1.history": history_dataset or MemoryDataset(),
        }
    )
    pipe = pipeline(
        [
            node(
                lambda ck: _train(ck, fail),
                "exp.seed1.checkpoints",
                ["exp.seed1.model", "exp.seed1.history"],
                name="exp.train_classifier_seed1",
            )
        ]
    )
    manager = _create_hook_manager()
    manager.register(CheckpointHooks())
    SequentialRunner().run(pipe, catalog, manager)
    return folder, catalog


def test_a_finished_training_keeps_its_model_and_loses_its_checkpoints(tmp_path):
    folder = tmp_path / "exp" / "seed1" / "checkpoints"
    (folder / "stage0").mkdir(parents=True)
    notes = folder / "notes.txt"  # not a checkpoint: stays, and so does its folder
    notes.write_text("mine")
    folder, catalog = _run(tmp_path)
    assert catalog.load("exp.seed1.model")["w"].tolist() == [1.0] * 4
    assert catalog.load("exp.seed1.history") == [0.5, 0.7, 0.6]
    assert not (folder / "stage0").exists()
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]
    notes.unlink()
    _run(tmp_path)  # a rerun writes them again and deletes them again, the folder with them
    assert not folder.exists()


def test_checkpoints_are_kept_when_the_catalog_says_so(tmp_path):
    folder, _ = _run(tmp_path, delete=False)
    # CheckpointStore keeps the newest two
    assert sorted(p.name for p in (folder / "stage0").iterdir()) == [
        "epoch_0001.pt",
        "epoch_0002.pt",
    ]


def test_a_failed_training_keeps_its_checkpoints_to_resume_from(tmp_path):
    import pytest

    with pytest.raises(RuntimeError, match="killed after epoch 2"):
        _run(tmp_path, fail=True)
    folder = tmp_path / "exp" / "seed1" / "checkpoints"
    assert len(list((folder / "stage0").glob("epoch_*.pt"))) == 2


def test_checkpoints_stay_until_every_output_is_saved(tmp_path):
    """The model is saved, then the history's save fails (a full disk, say): the training is
    not complete on disk, so its checkpoints stay to resume from."""
    import pytest
    from kedro.io import DatasetError, MemoryDataset

    class FullDisk(MemoryDataset):
        def save(self, data):
            raise OSError(28, "No space left on device")

    model = MemoryDataset()
    # Kedro wraps the dataset's OSError, naming the dataset whose save failed
    with pytest.raises(
        DatasetError, match=r"(?s)exp\.seed1\.history: Failed while saving.*No space left on device"
    ):
        _run(tmp_path, model_dataset=model, history_dataset=FullDisk())
    assert model.load()["w"].tolist() == [1.0] * 4  # the first output was saved
    folder = tmp_path / "exp" / "seed1" / "checkpoints"
    assert len(list((folder / "stage0").glob("epoch_*.pt"))) == 2


def test_a_checkpoint_that_cannot_be_deleted_is_a_warning_not_a_failed_run(
    tmp_path, monkeypatch, caplog
):
    import logging
    from pathlib import Path

    real_unlink = Path.unlink

    def refuse(self, *args, **kwargs):
        if self.name == "epoch_0002.pt":  # the newest: training never prunes it
            raise PermissionError(13, "Permission denied", str(self))
        return real_unlink(self, *args, **kwargs)

    monkeypatch.setattr(Path, "unlink", refuse)
    with caplog.at_level(logging.WARNING, logger="cxr_augment.hooks"):
        _, catalog = _run(tmp_path)
    assert catalog.load("exp.seed1.history") == [0.5, 0.7, 0.6]  # the run went on
    assert "could not all be deleted" in caplog.text and "Permission denied" in caplog.text


def test_only_the_stores_own_checkpoints_go_not_a_linked_folder_or_a_save_under_way(tmp_path):
    from cxr_augment.classify.checkpoints import CheckpointStore
    from cxr_augment.hooks import delete_checkpoints

    folder = tmp_path / "ck"
    (folder / "stage0").mkdir(parents=True)
    (folder / "stage0" / "epoch_0001.pt").write_bytes(b"x")
    partial = folder / "stage0" / ".epoch_0002.partial-ab12cd34.pt"
    partial.write_bytes(b"x")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "epoch_0001.pt").write_bytes(b"keep")
    (folder / "linked").symlink_to(elsewhere, target_is_directory=True)
    assert delete_checkpoints(CheckpointStore(folder)) == 1
    assert partial.exists() and (elsewhere / "epoch_0001.pt").read_bytes() == b"keep"
    assert not (folder / "stage0" / "epoch_0001.pt").exists()


def test_the_project_registers_the_checkpoint_hook_and_the_classifier_catalog_uses_it():
    from pathlib import Path

    import yaml

    from cxr_augment.hooks import CheckpointHooks

    assert any(isinstance(h, CheckpointHooks) for h in HOOKS)
    root = Path(__file__).resolve().parents[1]
    catalog = yaml.safe_load((root / "conf/base/catalog_classification.yml").read_text())
    entry = catalog["{experiment}.seed{seed}.checkpoints"]
    assert entry["type"] == "cxr_augment.datasets.CheckpointFolderDataset"
    assert entry["metadata"]["delete_when_trained"] is True


def test_an_emptied_folder_that_cannot_be_removed_is_reported_not_ignored(tmp_path, monkeypatch):
    import pytest

    from cxr_augment.classify.checkpoints import CheckpointStore
    from cxr_augment.hooks import delete_checkpoints

    folder = tmp_path / "ck"
    (folder / "stage0").mkdir(parents=True)
    (folder / "stage0" / "epoch_0001.pt").write_bytes(b"x")

    def refuse(self):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(type(folder), "rmdir", refuse)
    with pytest.raises(PermissionError, match="Permission denied"):
        delete_checkpoints(CheckpointStore(folder))


def test_on_dagster_a_finished_trainings_checkpoints_go_once_its_assets_are_saved(tmp_path):
    """The same through Dagster's path: the asset's op (``<node>_asset``) loads the input
    through its IO manager and runs the node's function with no node hook (kedro-dagster's
    asset), then each output's IO manager saves it with the dataset hooks; the checkpoints go
    after the second save, not after the first."""
    from types import SimpleNamespace

    from kedro.framework.hooks.manager import _create_hook_manager
    from kedro.io import DataCatalog, MemoryDataset
    from kedro.pipeline import node
    from kedro_dagster.utils import format_node_name

    from cxr_augment.datasets import CheckpointFolderDataset
    from cxr_augment.hooks import CheckpointHooks
    from cxr_augment.orchestration.io_managers import DatasetIOManager

    folder = tmp_path / "exp" / "seed1" / "checkpoints"
    ck = CheckpointFolderDataset(path=str(folder), metadata={"delete_when_trained": True})
    outputs = {"exp.seed1.model": MemoryDataset(), "exp.seed1.history": MemoryDataset()}
    catalog = DataCatalog({"exp.seed1.checkpoints": ck, **outputs})
    n = node(_train, "exp.seed1.checkpoints", list(outputs), name="exp.train_classifier_seed1")
    manager = _create_hook_manager()
    manager.register(CheckpointHooks())
    manager.hook.after_catalog_created(catalog=catalog, conf_catalog={}, conf_creds={},
                                       save_version=None, load_versions={})  # fmt: skip
    nodes = {format_node_name(n.name): n}
    op = SimpleNamespace(op_def=SimpleNamespace(name=f"{format_node_name(n.name)}_asset", tags={}))
    # the asset's op: the input through its IO manager, the node's function alone (no hooks)
    store = DatasetIOManager(ck, "exp.seed1.checkpoints", nodes, manager).load_input(op)
    model, history = n.run({"exp.seed1.checkpoints": store}).values()
    saved = list(zip(outputs, (model, history), strict=True))
    for i, (name, data) in enumerate(saved):
        DatasetIOManager(outputs[name], name, nodes, manager).handle_output(op, data)
        assert (folder / "stage0").exists() == (i == 0)  # gone once both are saved
    assert not folder.exists()
