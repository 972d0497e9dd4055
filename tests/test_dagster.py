"""Dagster: the Kedro project translates, and the demo_data assets materialise in-process."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

PROJECT = Path(__file__).resolve().parents[1]

TINY = {
    "demo_data": {
        "sizes": {"train_images": 10, "valid_images": 3, "test_images": 3},
        "atlas": {
            "yaws_deg": [0.0],
            "finding_bank": {
                "pneumothorax": {"sides": ["right", "left"], "kinds": ["apical"], "sizes": [0.3]},
                "pleural_effusion": {
                    "sides": ["right", "left"],
                    "levels": [0.3],
                    "meniscus_mm": [35.0],
                },
                "cardiomegaly": {"factors": [1.3]},
                "lung_opacity": {
                    "lobes": ["lung_lower_lobe_left"],
                    "coverages": [0.5],
                    "strength": 0.45,
                },
                "consolidation": {
                    "lobes": ["lung_upper_lobe_right"],
                    "coverages": [0.6],
                    "strength": 0.9,
                },
            },
        },
    }
}


@pytest.fixture(scope="module")
def tiny_project(tmp_path_factory):
    """A copy of the project's configuration with tiny sizes in conf/local."""
    root = tmp_path_factory.mktemp("project")
    shutil.copy(PROJECT / "pyproject.toml", root / "pyproject.toml")
    shutil.copytree(PROJECT / "conf", root / "conf", ignore=shutil.ignore_patterns("local"))
    (root / "src").mkdir()  # the package itself is installed
    (root / "conf" / "local").mkdir()
    (root / "conf" / "local" / "parameters_tiny.yml").write_text(yaml.safe_dump(TINY))
    return root


@pytest.fixture(scope="module")
def tiny_location(tiny_project):
    """The tiny project translated as definitions.py translates it (kedro-dagster's unaided
    translation takes over a minute), from the project's folder."""
    from cxr_augment.orchestration.translate import translate

    (tiny_project / ".dagster").mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tiny_project)
        mp.setenv("DAGSTER_HOME", str(tiny_project / ".dagster"))
        yield translate("local", project_path=tiny_project)


def test_every_demo_dataset_is_an_asset_and_materialises(tiny_project, tiny_location, monkeypatch):
    import dagster as dg

    from cxr_augment.checks import asset_checks

    monkeypatch.chdir(tiny_project)
    monkeypatch.setenv("DAGSTER_HOME", str(tiny_project / ".dagster"))
    location = tiny_location
    names = {key.path[-1] for a in location.named_assets.values() for key in _keys(a)}
    expected = {
        "demo_ct",
        "demo_ct_labels",
        "demo_ct_structures",
        "demo_projection_atlas",
        "demo_render_plan",
        "chexpert_train_csv",
        "chexpert_valid_csv",
        "chexpert_groundtruth_csv",
        "chexpert_truth",
        "chexpert_images",
        "demo_label_distribution",
        "demo_contact_sheet",
    }
    expected |= {
        "manifest",
        "tensor_store",
        "split_table",
        "quarantine",
        "preprocessing_report",
        "label_distribution_table",
        "policy_truth_agreement",
        "mask_figure",
    }
    assert expected <= names
    assert {"demo_data", "preprocessing"} <= set(location.named_jobs)
    # the memorisation checks sit on the generators' summaries as kedro-dagster names them
    paths = {tuple(key.path) for a in location.named_assets.values() for key in _keys(a)}
    for check in asset_checks("local"):
        for key in check.check_keys:
            assert tuple(key.asset_key.path) in paths, key
    # the demo data and its preprocessing (the classification experiments take minutes each)
    from cxr_augment.pipelines import demo_data, preprocessing

    wanted = set()
    for pipe in (demo_data.create_pipeline(), preprocessing.create_pipeline()):
        wanted |= {d.replace(".", "__").replace(":", "__") for d in pipe.datasets()}
    selected = [
        a for a in location.named_assets.values() if any(k.path[-1] in wanted for k in _keys(a))
    ]
    result = dg.materialize(
        [*selected, *asset_checks("local")],
        resources={**location.named_resources, "io_manager": dg.FilesystemIOManager()},
    )
    assert result.success
    data = tiny_project / "data" / "01_raw" / "chexpert_demo"
    assert len(list(data.rglob("*.jpg"))) == 16
    assert (data / "CheXpert-v1.0-small" / "train.csv").exists()
    assert (tiny_project / "data" / "08_reporting" / "demo_data" / "contact_sheet.png").exists()
    assert (tiny_project / "data" / "05_model_input" / "tensor_store" / "meta.json").exists()
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {
        "no_patient_in_two_splits": True,
        "no_image_unreported": True,
        "label_distribution_kept": True,
    }
    # the reporting job, as the UI launches it: the report reads what was made (the demo's
    # label distribution, its quarantine) and says "not run" for the rest
    from cxr_augment.orchestration.translate import definitions

    defs = definitions(location, asset_checks("local"), dg.in_process_executor)
    with dg.instance_for_test() as instance:
        report = defs.resolve_job_def("reporting").execute_in_process(instance=instance)
    assert report.success
    assert [e.asset_key.path for e in report.get_asset_materialization_events()] == [
        ["local", "report", "html"]
    ]
    page = (tiny_project / "data" / "08_reporting" / "report.html").read_text()
    assert '<table id="table1" class="data" data-asset="demo_label_distribution">' in page
    assert 'data-asset="label_distribution_table"' in page
    assert '<div class="item not-run" id="table8">' in page
    assert 'id="table1"' not in page.split('<div class="item not-run"', 1)[1]


def test_the_report_is_an_asset_downstream_of_what_it_shows(tiny_location):
    """report.html's inputs are the assets it shows (read through the lenient
    ``reporting.in.X`` IO managers), not a source asset per input; its job makes it alone."""
    import dagster as dg

    from cxr_augment.orchestration.translate import definitions
    from cxr_augment.report.study_report import assets
    from cxr_augment.study import reporting_config

    location = tiny_location
    key = dg.AssetKey(["local", "report", "html"])
    (report,) = [a for a in location.named_assets.values() if key in _keys(a)]
    every = {k for a in location.named_assets.values() for k in _keys(a)}
    assert not [k for k in every if k.path[1:3] == ["reporting", "in"]]
    shown = {dg.AssetKey(["local", *name.split(".")]) for name in assets(reporting_config())}
    provenance = dg.AssetKey(["local", "reporting", "provenance"])
    assert report.asset_deps[key] == shown | {provenance}
    # each shown asset is made by a node of the project: the lineage reaches it
    made = {
        k
        for a in location.named_assets.values()
        if isinstance(a, dg.AssetsDefinition)
        for k in a.keys
    }
    assert shown <= made
    assert dg.AssetKey(["local", "report", "table15", "table"]) in shown
    # each is loaded by its reporting.in.X IO manager, bound to the report's asset
    managers = {
        name: report.node_def.input_def_named(name).input_manager_key
        for name in report.node_def.input_dict
        if name != "config"
    }
    assert managers["reporting__in__manifest"] == "local__reporting__in__manifest_io_manager"
    defs = definitions(location, [], dg.in_process_executor)
    job = defs.resolve_job_def("reporting")
    assert set(job.asset_layer.selected_asset_keys) == {key}
    bound = defs.resolve_assets_def(key).resource_defs
    assert {m for m in managers.values() if m} <= set(bound)


def test_an_op_selection_of_a_job_keeps_its_blocking_checks(tiny_location):
    """A run that selects ops (``dagster job execute -o``) still gives an op that reads an
    asset with a blocking check the asset's value after the check (``op_subsets.py``), where
    Dagster alone would make the input a fan-in of the check's output and the asset's."""
    import dagster as dg
    from dagster._core.definitions.dependency import BlockingAssetChecksDependencyDefinition

    from cxr_augment.checks import asset_checks
    from cxr_augment.orchestration.translate import definitions

    def blocked(graph) -> dict:
        return {
            (inv if isinstance(inv, str) else inv.alias or inv.name, name): dep
            for inv, deps in graph.dependencies.items()
            for name, dep in deps.items()
            if isinstance(dep, BlockingAssetChecksDependencyDefinition)
        }

    defs = definitions(tiny_location, asset_checks("local"), dg.in_process_executor)
    job = defs.resolve_job_def("preprocessing")
    inputs = {k: d for k, d in blocked(job.graph).items() if d.other_dependency is not None}
    assert inputs  # the manifest's, the split table's, the preprocessing report's readers
    for op, name in sorted(inputs)[:3]:
        subset = job.get_subset(op_selection=[f"*{op}"])
        kept = blocked(subset.graph)
        assert kept[(op, name)].other_dependency == inputs[(op, name)].other_dependency


def test_no_node_is_named_like_a_dataset():
    """kedro-dagster names a node's op after the node and an asset after its dataset: a node
    named like a dataset that another pipeline reads makes the two collide, and the whole
    translation fails (its producer goes missing)."""
    from kedro.pipeline import Pipeline

    from cxr_augment.pipeline_registry import register_pipelines

    every = sum(register_pipelines().values(), start=Pipeline([]))
    clashes = sorted(n.name for n in every.nodes if n.name in every.datasets())
    assert clashes == []


def test_split_check_fails_when_a_patient_is_in_two_splits():
    import pandas as pd

    from cxr_augment.checks import split_leak_result

    ok = pd.DataFrame({"patient_id": [1, 2, 3], "split": ["train", "train", "internal_test"]})
    assert split_leak_result(ok).passed
    leak = pd.DataFrame({"patient_id": [1, 1, 2], "split": ["train", "internal_test", "train"]})
    result = split_leak_result(leak)
    assert not result.passed
    assert result.metadata["leaking_patients"].value == 1


def _keys(asset):
    import dagster as dg

    if isinstance(asset, dg.AssetsDefinition):
        return list(asset.keys)
    return [asset.key]


def test_a_memorised_generated_set_blocks_what_follows():
    """The memorisation check is blocking: a failing generated set stops its downstream
    assets; a passing one lets them run."""
    import dagster as dg

    from cxr_augment.checks import _memorisation_check

    def run(share: float):
        key = dg.AssetKey(["local", "generation", "ddim", "memorisation_summary"])

        @dg.asset(key=key)
        def summary():
            return {
                "status": "ok",
                "share": share,
                "max_share": 0.05,
                "share_pixel": share,
                "share_feature": 0.0,
                "n_gen": 10,
                "n_train": 20,
                "percentile": 1.0,
            }

        @dg.asset(key=dg.AssetKey(["local", "experiment"]), deps=[summary])
        def experiment():
            return 1

        result = dg.materialize(
            [summary, experiment, _memorisation_check("local", "ddim")], raise_on_error=False
        )
        done = {e.asset_key.path[-1] for e in result.get_asset_materialization_events()}
        checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
        return done, checks

    done, checks = run(0.2)
    assert checks == {"ddim_not_memorised": False} and "experiment" not in done
    done, checks = run(0.01)
    assert checks == {"ddim_not_memorised": True} and "experiment" in done
