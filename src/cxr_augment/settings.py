"""Kedro project settings."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from kedro.config import OmegaConfigLoader


def package_data(package: str, relative: str) -> str:
    """Path of a data file shipped inside an installed package (``${package_data:...}``).

    When the package is absent the path names it, so the dataset's "not found" error says
    what to install instead of failing every command at configuration time.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return f"<package {package} is not installed>/{relative}"
    return str(Path(next(iter(spec.submodule_search_locations))) / relative)


CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    "custom_resolvers": {"package_data": package_data},
    "config_patterns": {
        "parameters": ["parameters*", "parameters*/**", "**/parameters*"],
        "globals": ["globals*", "globals*/**"],
    },
}
