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
                "pleural_effusion": {"sides": ["right", "left"], "levels": [0.3], "meniscus_mm": [35.0]},
                "cardiomegaly": {"factors": [1.3]},
                "lung_opacity": {"lobes": ["lung_lower_lobe_left"], "coverages": [0.5], "strength": 0.45},
                "consolidation": {"lobes": ["lung_upper_lobe_right"], "coverages": [0.6], "strength": 0.9},
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


def test_every_demo_dataset_is_an_asset_and_materialises(tiny_project, monkeypatch):
    import dagster as dg
    from kedro_dagster import KedroProjectTranslator

    monkeypatch.chdir(tiny_project)
    monkeypatch.setenv("DAGSTER_HOME", str(tiny_project / ".dagster"))
    (tiny_project / ".dagster").mkdir()
    location = KedroProjectTranslator(env="local", project_path=tiny_project).to_dagster()
    names = {key.path[-1] for a in location.named_assets.values() for key in _keys(a)}
    expected = {
        "demo_ct", "demo_ct_labels", "demo_ct_structures", "demo_projection_atlas",
        "demo_render_plan", "demo_train_csv", "demo_valid_csv", "demo_groundtruth_csv",
        "demo_truth", "demo_images", "demo_label_distribution", "demo_contact_sheet",
    }
    assert expected <= names
    assert "demo_data" in location.named_jobs
    defs = dg.Definitions(
        assets=list(location.named_assets.values()),
        resources={**location.named_resources, "io_manager": dg.fs_io_manager},
    )
    result = dg.materialize(
        list(location.named_assets.values()),
        resources={**location.named_resources, "io_manager": dg.fs_io_manager},
    )
    assert result.success
    assert defs is not None
    data = tiny_project / "data" / "01_raw" / "chexpert_demo"
    assert len(list(data.rglob("*.jpg"))) == 16
    assert (data / "CheXpert-v1.0-small" / "train.csv").exists()
    assert (tiny_project / "data" / "08_reporting" / "demo_data" / "contact_sheet.png").exists()


def _keys(asset):
    import dagster as dg

    if isinstance(asset, dg.AssetsDefinition):
        return list(asset.keys)
    return [asset.key]
