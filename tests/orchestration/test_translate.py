"""The Dagster code location: quiet, described, grouped, versioned; jobs are asset jobs."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cxr_augment.orchestration.translate import experiment_group
from tests.test_dagster import PROJECT


def _project(root: Path, local: dict | None = None) -> Path:
    shutil.copy(PROJECT / "pyproject.toml", root / "pyproject.toml")
    shutil.copytree(PROJECT / "conf", root / "conf", ignore=shutil.ignore_patterns("local"))
    (root / "src").mkdir()
    (root / "conf" / "local").mkdir()
    if local:
        (root / "conf" / "local" / "parameters_change.yml").write_text(yaml.safe_dump(local))
    return root


def _assets(root: Path, monkeypatch) -> dict:
    """asset key -> (description, group, code version) of the project at ``root``."""
    import dagster as dg

    from cxr_augment.orchestration.translate import translate

    monkeypatch.chdir(root)
    # what the translation imports by name (kedro-dagster: each executor's library)
    imported: list[str] = []
    import_module = importlib.import_module
    monkeypatch.setattr(
        importlib,
        "import_module",
        lambda name, *a: imported.append(name) or import_module(name, *a),
    )
    # as definitions.py translates: step processes preload the definitions module
    location = translate("local", project_path=root, preload="cxr_augment.definitions")
    monkeypatch.setattr(importlib, "import_module", import_module)
    location.imported_by_name = imported
    out = {}
    for asset in location.named_assets.values():
        specs = [asset] if isinstance(asset, dg.AssetSpec) else asset.specs
        for spec in specs:
            out[spec.key.to_user_string()] = (spec.description, spec.group_name, spec.code_version)
    return out, location


@pytest.fixture(scope="module")
def translated(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    try:
        yield _assets(_project(tmp_path_factory.mktemp("p")), mp)
    finally:
        mp.undo()


def test_every_asset_is_described_grouped_and_versioned(translated):
    assets, _ = translated
    assert len(assets) > 500
    generic = ("Node outputs as a single value", "Kedro node ")
    undescribed = [k for k, (d, _, _) in assets.items() if not d or d.startswith(generic)]
    assert undescribed == []
    # the thesis's tables and figures say which they are
    assert "Table 15" in assets["local/report/table15/table"][0]
    # an experiment's assets (its checkpoint folder too) share its short hierarchical group
    assert assets["local/ptx_aug_rotation_balanced/seed1/checkpoints"][1] == (
        "augmentation/ptx_aug/rotation_balanced"
    )
    assert assets["local/ptx_aug_rotation_balanced/metrics"][1] == (
        "augmentation/ptx_aug/rotation_balanced"
    )
    assert assets["local/pe_densenet121/metrics"][1] == "classification/pe/densenet121"
    assert not [k for k, (_, g, _) in assets.items() if g and "headline" in g]
    # the headline table (its own job) sits with the classification tables; the report is
    # the reporting pipeline's
    assert assets["local/report/headline/table"][1] == "classification"
    assert assets["local/report/html"][1] == "reporting"
    assert "Tables 1, 2, 4-15" in assets["local/report/html"][0]
    longest = max(len(seg) for _, g, _ in assets.values() for seg in (g or "").split("/"))
    assert longest <= 25  # "inception_resnet_v2_tuned"
    # every asset a node makes has a code version
    made = [k for k, (_, _, v) in assets.items() if v is None]
    sources = ("demo_ct", "chexpert", "reporting/provenance")  # what no node makes
    assert all(k.endswith("checkpoints") or any(s in k for s in sources) for k in made), made


def test_the_translation_leaves_kedro_and_kedro_dagster_as_they_were(translated):
    """The memoised lookups live only for one translation: afterwards Kedro's pattern matching
    and kedro-dagster's helpers are the libraries' own again."""
    import parse
    from kedro.io import catalog_config_resolver
    from kedro_dagster import catalog, nodes, utils

    assert catalog_config_resolver.parse is parse.parse
    assert catalog.is_nothing_asset_name is utils.is_nothing_asset_name
    assert nodes.is_nothing_asset_name is utils.is_nothing_asset_name
    assert catalog.format_node_name is utils.format_node_name
    assert nodes._get_node_group_name is utils._get_node_group_name
    assert nodes.get_asset_key_from_dataset_name is utils.get_asset_key_from_dataset_name
    assert "_get_in_asset_params" not in vars(nodes.NodeTranslator) or (
        nodes.NodeTranslator._get_in_asset_params.__module__ == "kedro_dagster.nodes"
    )
    assert not hasattr(catalog, "sum")


def test_the_memoised_group_of_a_node_is_kedro_dagsters(translated):
    """Within a translation a node's group comes from one scan of the pipelines; it is the
    group kedro-dagster's own scan gives, for every node of every pipeline."""
    from kedro.framework.project import pipelines
    from kedro_dagster import nodes, utils

    from cxr_augment.orchestration.translate import _memoised

    every = {n.name: n for pipe in pipelines.values() for n in pipe.nodes}
    expected = {name: utils._get_node_group_name(n) for name, n in every.items()}
    with _memoised():
        assert nodes._get_node_group_name is not utils._get_node_group_name
        got = {name: nodes._get_node_group_name(n) for name, n in every.items()}
    assert got == expected
    # both kinds: a pipeline's name, and a namespace's for a namespaced node
    assert len(every) > 400 and {"demo_data", "preprocessing"} <= set(expected.values())
    assert expected["ptx_densenet121.evaluate"] not in pipelines


def test_jobs_are_asset_jobs_that_carry_their_checks(translated):
    import dagster as dg

    from cxr_augment.checks import asset_checks

    _, location = translated
    defs = dg.Definitions(
        assets=list(location.named_assets.values()),
        asset_checks=asset_checks("local"),
        resources={**location.named_resources, "io_manager": dg.FilesystemIOManager()},
        jobs=list(location.named_jobs.values()),
    )
    job = defs.resolve_job_def("preprocessing")
    checks = {k.name for k in job.asset_layer.asset_graph.asset_check_keys}
    assert {"no_patient_in_two_splits", "no_image_unreported", "label_distribution_kept"} <= checks
    keys = {k.path[-1] for k in job.asset_layer.executable_asset_keys}
    assert {"manifest", "split_table", "tensor_store"} <= keys


def test_a_parameter_change_changes_exactly_its_readers_code_versions(
    translated, tmp_path, monkeypatch
):
    before, _ = translated
    changed = _project(tmp_path, {"preprocessing": {"split": {"seed": 12345}}})
    after, _ = _assets(changed, monkeypatch)
    moved = sorted(k for k in before if before[k][2] != after[k][2])
    from kedro.framework.project import pipelines

    readers = {"params:preprocessing", "params:preprocessing.split", "parameters"}
    expected = sorted(
        "local/" + out.replace(".", "/")
        for name, pipe in pipelines.items()
        for node in pipe.nodes
        if readers & set(node.inputs)
        for out in node.outputs
    )
    assert "local/split_table" in moved
    assert moved == sorted(set(expected) & set(before))


def test_experiment_groups_are_short():
    assert experiment_group("augmentation", "ptx_aug_translation_balanced") == (
        "augmentation/ptx_aug/translation_balanced"
    )
    assert experiment_group("augmentation", "ptx_sweep_dpmpp25_w3") == (
        "augmentation/ptx_sweep/dpmpp25_w3"
    )
    assert experiment_group("classification", "ptx_umulticlass") == "classification/ptx/umulticlass"


def test_a_code_load_prints_under_100_lines(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(PROJECT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    env = {**os.environ, "DAGSTER_HOME": str(home), "KEDRO_DISABLE_TELEMETRY": "true"}
    dagster = Path(sys.executable).with_name("dagster")
    out = subprocess.run(
        [str(dagster), "definitions", "validate", "-m", "cxr_augment.definitions"],
        cwd=_project(tmp_path),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    lines = (out.stdout + out.stderr).splitlines()
    assert len(lines) < 100, "\n".join(lines)
    assert not [ln for ln in lines if "WARNING" in ln and "SupersessionWarning" not in ln], lines


def test_parameter_config_defaults_to_the_project_value_and_overrides_as_a_whole():
    """A node's parameters are optional config fields without the value written into the
    run-config schema; left out, the node gets the project's value; given, the launch's."""
    import dagster as dg

    from cxr_augment.orchestration.translate import parameters_config

    value = {"split": {"seed": 3, "fractions": [0.7, 0.1, 0.2]}}
    Config = parameters_config({"params:preprocessing": value, "params:seed": 5})

    def probe(config):
        return config.model_dump()

    probe.__annotations__ = {"config": Config}  # not a string: this module defers annotations
    probe = dg.asset(probe)

    field = probe.op.config_schema.config_type.fields["params:preprocessing"]
    assert not field.is_required and field.default_value is None  # the value is not in it
    result = dg.materialize([probe])
    assert result.output_for_node("probe") == {"params:preprocessing": value, "params:seed": 5}
    other = {"split": {"seed": 9}}
    run_config = {"ops": {"probe": {"config": {"params:preprocessing": other}}}}
    result = dg.materialize([probe], run_config=run_config)
    assert result.output_for_node("probe") == {"params:preprocessing": other, "params:seed": 5}


def test_assets_carry_only_their_io_managers(translated):
    """Bound per asset, a job holds the IO managers of its own assets, not every dataset's;
    the default IO manager and kedro-dagster's run resource stay at the top level."""
    import dagster as dg

    from cxr_augment.checks import asset_checks
    from cxr_augment.orchestration.translate import definitions

    _, location = translated
    defs = definitions(location, asset_checks("local"), dg.in_process_executor)
    repo = defs.get_repository_def()
    every = {k for k in location.named_resources if k.endswith("_io_manager")}
    job = repo.get_job("preprocessing")
    held = {k for k in job.resource_defs if k.endswith("_io_manager") and k != "io_manager"}
    assert held and held < every and len(held) < len(every) / 5
    # each asset of the job finds the IO manager of each dataset it writes or reads
    for asset in job.asset_layer.asset_graph.assets_defs:
        assert asset.required_resource_keys <= set(job.resource_defs), asset
    assert {"io_manager", "kedro_run"} <= set(repo.get_top_level_resources())
    # the default IO manager starts in a run without a warning (Dagster's function-style
    # fs_io_manager warns "superseded" in every run's log)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with dg.build_resources({"io_manager": job.resource_defs["io_manager"]}) as res:
            assert isinstance(res.io_manager, dg.UPathIOManager)


def _executor_config(executor) -> dict:
    return executor.config_schema.resolve_config({}).value["config"]


def test_multiprocess_step_processes_fork_from_a_process_that_loaded_the_code(monkeypatch):
    from types import SimpleNamespace

    import dagster as dg
    from kedro_dagster.config.models import (
        InProcessExecutorOptions,
        K8sJobExecutorOptions,
        MultiprocessExecutorOptions,
    )

    from cxr_augment.orchestration import translate as tr

    k8s = object()  # stands for dagster-k8s's executor: it must stay as it is

    def setup():
        config = SimpleNamespace(
            executors={
                "mp": MultiprocessExecutorOptions(max_concurrent=3),
                "seq": InProcessExecutorOptions(),
                # its options subclass the multiprocess executor's
                "k8s": K8sJobExecutorOptions(max_concurrent=4),
            },
            jobs={
                "inline": SimpleNamespace(executor=MultiprocessExecutorOptions(max_concurrent=1)),
                "named": SimpleNamespace(executor="mp"),
            },
        )
        named = {
            "mp": dg.multiprocess_executor.configured({"max_concurrent": 3}),
            "seq": dg.in_process_executor,
            "inline__executor": dg.multiprocess_executor.configured({"max_concurrent": 1}),
            "k8s": k8s,
        }
        return config, named

    config, named = setup()
    seq = named["seq"]
    tr.warm_step_processes(named, config, "pkg.definitions")
    modules = ["dagster", tr.STEP_SERVER, "pkg.definitions", tr.STEP_JOBS]
    preload = {"forkserver": {"preload_modules": modules}}
    for name, concurrent in (("mp", 3), ("inline__executor", 1)):
        resolved = _executor_config(named[name])
        assert named[name].name == "multiprocess"
        assert resolved["start_method"] == preload  # the executor's own settings kept
        assert resolved["max_concurrent"] == concurrent
    assert named["seq"] is seq  # an in-process executor is left alone
    assert named["k8s"] is k8s  # and so is one that spans machines
    monkeypatch.setenv(tr.FORKSERVER_SWITCH, "off")
    config, named = setup()
    before = dict(named)
    tr.warm_step_processes(named, config, "pkg.definitions")
    assert named == before


def test_the_projects_multiprocess_executor_preloads_its_definitions(translated):
    _, location = translated
    executor = location.named_executors["multiprocess"]
    start = _executor_config(executor)["start_method"]
    assert start["forkserver"]["preload_modules"][-2:] == [
        "cxr_augment.definitions",
        "cxr_augment.orchestration.step_jobs",
    ]


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def test_a_step_process_forked_by_the_preloaded_forkserver_runs_torch_with_one_thread():
    import multiprocessing

    from cxr_augment.orchestration import translate as tr

    env = {k: os.environ.pop(k, None) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    try:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload([tr.STEP_SERVER])
        with ctx.Pool(1) as pool:
            assert pool.apply(_torch_threads) == 1
    finally:
        for k, v in env.items():
            if v is not None:
                os.environ[k] = v


def _loaded_before_the_step() -> dict[str, bool]:
    import sys

    names = ("torch", "torchvision", "sklearn.metrics", "cxr_augment.classify.training")
    return {name: name in sys.modules for name in names}


def test_a_forked_step_process_finds_its_nodes_libraries_already_imported():
    """The forkserver imports the nodes' modules and libraries once (``step_server``): a step
    forked from it does not import torch, scikit-learn or the project's training code again."""
    import multiprocessing

    from cxr_augment.orchestration import translate as tr

    env = {k: os.environ.pop(k, None) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    try:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload([tr.STEP_SERVER])
        with ctx.Pool(1) as pool:
            assert pool.apply(_loaded_before_the_step) == dict.fromkeys(
                ("torch", "torchvision", "sklearn.metrics", "cxr_augment.classify.training"), True
            )
    finally:
        for k, v in env.items():
            if v is not None:
                os.environ[k] = v


def test_the_step_modules_are_the_node_packages_and_all_import(monkeypatch):
    import importlib

    from cxr_augment.orchestration import step_server

    names = step_server.step_modules()
    assert {"cxr_augment.classify.training", "cxr_augment.pipelines.classification.nodes"} <= set(
        names
    )
    assert "timm" in names and "sklearn.metrics" in names
    assert not [n for n in names if n.startswith("cxr_augment.orchestration")]
    assert "cxr_augment.__main__" not in names
    assert step_server.preload() == []  # each one imports (a misspelt library would not)
    imported = []
    monkeypatch.setattr(importlib, "import_module", imported.append)
    monkeypatch.setenv("CXR_STEP_PRELOAD", "off")
    assert step_server.preload() == [] and imported == []


def test_a_step_process_opens_the_instance_without_reading_migration_scripts(tmp_path, monkeypatch):
    """Each of a step's SQLite storages checks the schema revision against Dagster's migration
    scripts; after ``warm_storage`` (the forkserver's) the check reads none of them, and gives
    the revisions alembic's own script directory gives."""
    import alembic.util as alembic_util
    import dagster._core.storage.sql as sql
    from alembic.script import ScriptDirectory
    from dagster import DagsterInstance

    from cxr_augment.orchestration import step_server

    monkeypatch.setattr(sql, "ScriptDirectory", ScriptDirectory)  # as Dagster has it; restored
    DagsterInstance.local_temp(str(tmp_path)).dispose()  # the databases, stamped at head
    reads = []
    real = alembic_util.load_python_file
    monkeypatch.setattr(
        alembic_util, "load_python_file", lambda *a, **k: reads.append(a) or real(*a, **k)
    )

    def opened() -> int:
        reads.clear()
        DagsterInstance.local_temp(str(tmp_path)).dispose()
        return len(reads)

    assert opened() > 0  # unwarmed: every check reads the scripts
    config = sql.get_alembic_config(
        step_server.sys.modules[step_server.ALEMBIC_STORAGES[0]].__file__
    )
    head = ScriptDirectory.from_config(config).as_revision_number("head")
    assert step_server.warm_storage()
    assert sql.ScriptDirectory is step_server._ScriptDirectories
    assert opened() == 0
    assert sql.ScriptDirectory.from_config(config).as_revision_number("head") == head


def test_the_forkserver_builds_the_jobs_that_fork_their_steps_once(monkeypatch):
    """``resolve_jobs`` builds the jobs on a multiprocess executor of the Definitions it finds
    in the project's modules; a step then gets the same job without building it again."""
    import sys
    import types

    import dagster as dg

    from cxr_augment.orchestration import step_server

    @dg.asset
    def one():
        return 1

    forked = dg.define_asset_job("forked", executor_def=dg.multiprocess_executor)
    inline = dg.define_asset_job("inline")  # the Definitions' in-process executor
    built = []
    real = type(forked).resolve
    monkeypatch.setattr(
        type(forked), "resolve", lambda self, **k: built.append(self.name) or real(self, **k)
    )
    defs = dg.Definitions(assets=[one], jobs=[forked, inline], executor=dg.in_process_executor)
    module = types.ModuleType("cxr_augment._forkserver_defs")
    module.defs = defs
    monkeypatch.setitem(sys.modules, module.__name__, module)
    assert step_server.resolve_jobs() == ["forked"]
    assert built == ["forked"]
    repository = defs.get_repository_def()
    job = repository.get_job("forked")
    assert built == ["forked"] and job is repository.get_job("forked")  # built once
    assert job.executor_def.name == "multiprocess"
    monkeypatch.delitem(sys.modules, module.__name__)
    assert step_server.resolve_jobs() == []  # only the Definitions of loaded modules


def test_only_the_declared_executors_libraries_are_imported(monkeypatch):
    import importlib
    from types import SimpleNamespace

    from kedro_dagster.config.models import (
        CeleryExecutorOptions,
        K8sJobExecutorOptions,
        MultiprocessExecutorOptions,
    )

    from cxr_augment.orchestration import translate as tr

    imported = []
    real = importlib.import_module

    def tracking(name, *args):
        imported.append(name)
        if name == "dagster_celery":
            raise ImportError(name)  # as when the library is not installed
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", tracking)
    config = SimpleNamespace(
        executors={"mp": MultiprocessExecutorOptions(), "k8s": K8sJobExecutorOptions()},
        jobs={"j": SimpleNamespace(executor=CeleryExecutorOptions(broker="x"))},
    )
    creator = SimpleNamespace(_dagster_config=config, _registered_executors={})
    from kedro_dagster.dagster import ExecutorCreator

    resolved, unavailable = tr.declared_only(ExecutorCreator._resolve_executors)(creator)
    assert set(resolved) == {MultiprocessExecutorOptions, K8sJobExecutorOptions}
    assert resolved[K8sJobExecutorOptions].name == "k8s"
    # the missing library of a declared executor is reported as kedro-dagster reports it
    assert unavailable == {CeleryExecutorOptions: ("celery_executor", "dagster_celery")}
    assert "dagster_docker" not in imported and "dagster_dask" not in imported


def test_the_local_code_location_does_not_import_the_production_executors(translated):
    # dagster-k8s and dagster-celery are installed (the production extra); the local
    # environment's dagster.yml declares neither, so neither is imported
    _, location = translated
    assert "dagster_k8s" not in location.imported_by_name
    assert "dagster_celery" not in location.imported_by_name
    assert "dagster" in location.imported_by_name  # the in-process and multiprocess executors
