"""Kedro project settings."""

from __future__ import annotations

import importlib.util
import os
import warnings
from pathlib import Path

from cxr_augment.config_layers import LayeredConfigLoader
from cxr_augment.hooks import CheckpointHooks, RunHooks


def package_data(package: str, relative: str) -> str:
    """Path of a data file shipped inside an installed package (``${package_data:...}``).

    When the package is absent the path names it, so the dataset's "not found" error says
    what to install instead of failing every command at configuration time.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return f"<package {package} is not installed>/{relative}"
    return str(Path(next(iter(spec.submodule_search_locations))) / relative)


def env_var(name: str, default: str = "") -> str:
    """``${env_var:NAME,default}``: a machine-specific path from the environment."""
    return os.environ.get(name, default)


# Dataset names are dotted on purpose: "<experiment>.seed1.model" and "generation.ddim.model"
# become Dagster asset key paths and kedro-viz's modular pipelines, and an experiment reads a
# generator's model across namespaces by design. Kedro recommends against a dotted name that
# does not start with its node's namespace; the recommendation does not apply here.
warnings.filterwarnings(
    "ignore", message=r"One or more dataset names contain '\.'", category=UserWarning
)

# Kedro's config loader calls OmegaConf's deprecated resolver API once per resolver, per load
warnings.filterwarnings("ignore", message=r"register_new_resolver\(\) is deprecated")

# OmegaConfigLoader, its resolved parameters, catalog and globals kept in .cache/config/; an
# environment with a layers.yml merged over the environments it names (config_layers.py)
CONFIG_LOADER_CLASS = LayeredConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    "custom_resolvers": {"package_data": package_data, "env_var": env_var},
    # an environment (local, chexpert) overrides single parameters, not whole blocks
    "merge_strategy": {"parameters": "soft", "globals": "soft", "dagster": "soft"},
    "config_patterns": {
        "parameters": ["parameters*", "parameters*/**", "**/parameters*"],
        "globals": ["globals*", "globals*/**"],
    },
}

# RunHooks: gc.freeze() of the start-up objects for the run; CheckpointHooks: a finished
# training's resume checkpoints deleted once its outputs are saved
HOOKS = (RunHooks(), CheckpointHooks())
