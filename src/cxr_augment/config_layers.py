"""Environments that stand on others: ``conf/<env>/layers.yml``.

Kedro merges one run environment over ``conf/base``. An environment whose folder holds a
``layers.yml``,

    layers: [gpu, chexpert]

is read as base, then each named environment in turn, then the folder's own files, each merged
over the one before by the key's merge strategy (``settings.CONFIG_LOADER_ARGS``), as Kedro
merges an environment over the base. ``conf/chexpert_gpu`` is one: a real download on one GPU,
``conf/gpu``'s generator at the thesis's size with ``conf/chexpert``'s paths and classifier
settings over it, so neither is copied.

``LayeredConfigLoader`` is the project's loader (``settings.CONFIG_LOADER_CLASS``): the cached
loader of ``config_loader.py``, whose fingerprint then covers every layer's folder, reading
through the layers; ``CXR_CONFIG_CACHE=off`` reads them too. Its cache entries are kept under a
folder named by this module's and ``config_loader.py``'s code, so a change to how the
configuration is read is never answered from an entry the old code wrote.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import yaml
from kedro.config import MissingConfigException, OmegaConfigLoader

from cxr_augment.config_loader import CachedConfigLoader

LAYERS_FILE = "layers.yml"  # in an environment's folder: the environments it stands on


def environment_layers(conf: Path, env: str | None, base_env: str = "base") -> list[str]:
    """The environments ``env`` stands on, in merge order (``conf/<env>/layers.yml``; none
    without one). Each must be another folder of ``conf``, not the base, without layers of its
    own: anything else is an error naming the file and the rule."""
    if not env or env == base_env:
        return []
    path = Path(conf) / env / LAYERS_FILE
    if not path.is_file():
        return []
    try:
        spec = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML ({err})") from err
    layers = spec.get("layers") if isinstance(spec, dict) else None
    if not isinstance(layers, list) or not all(isinstance(e, str) for e in layers):
        raise ValueError(f"{path}: expected `layers: [<environment>, ...]`, got {spec!r}")
    for name in layers:
        if name in (base_env, env) or layers.count(name) > 1:
            raise ValueError(f"{path}: layer {name!r} is the base, this environment or named twice")
        if not (Path(conf) / name).is_dir():
            raise ValueError(f"{path}: layer {name!r} is not a folder of {conf}")
        if (Path(conf) / name / LAYERS_FILE).exists():
            raise ValueError(
                f"{path}: layer {name!r} has layers of its own ({Path(conf) / name / LAYERS_FILE}); "
                "name them here instead"
            )
    return layers


class _ReadThroughLayers(OmegaConfigLoader):
    """Kedro's reading of a key, merged over the run environment's layers."""

    def _layer_names(self) -> list[str]:
        if getattr(self, "_protocol", "file") != "file":
            return []
        return environment_layers(
            Path(self.conf_source), self.env or self.default_run_env, self.base_env
        )

    def __getitem__(self, key: str) -> dict[str, Any]:
        layers = self._layer_names() if key in self.config_patterns and key not in self.data else []
        if not layers:
            return super().__getitem__(key)
        # OmegaConf's resolvers are the process's: the last loader made owns ``globals``
        self._register_globals_resolver()
        self._register_runtime_params_resolver()
        patterns = [*self.config_patterns[key]]
        envs = [self.base_env, *layers, self.env or self.default_run_env]
        processed: set[Path] = set()
        merged: dict[str, Any] | None = None
        for env in envs:
            path = self._get_conf_env_path(env)
            if key == "globals":  # as Kedro's loader: no runtime parameters in globals
                from omegaconf import OmegaConf

                OmegaConf.clear_resolver("runtime_params")
            value = self.load_and_merge_dir_config(
                path, patterns, key, processed, read_environment_variables=key == "credentials"
            )
            merged = value if merged is None else self._merge_configs(merged, value, key, path)
        if not processed and key != "globals":
            raise MissingConfigException(
                f"No files of YAML or JSON format found for {key!r} in the environments {envs} "
                f"matching the glob pattern(s): {patterns}"
            )
        return merged or {}


def _code() -> str:
    from cxr_augment import config_loader

    digest = hashlib.sha256()
    for module in (__file__, config_loader.__file__):
        digest.update(Path(module).read_bytes())
    return digest.hexdigest()[:12]


class LayeredConfigLoader(CachedConfigLoader, _ReadThroughLayers):
    """The cached loader (``config_loader.py``) reading through ``layers.yml`` (module doc)."""

    def _folders(self) -> list[Path] | None:
        folders = super()._folders()
        if folders is None:
            return None
        root = Path(self.conf_source)
        layers = [root / name for name in self._layer_names()]
        return [folders[0], *layers, *folders[1:]]

    def _cache_folder(self) -> Path:
        return super()._cache_folder() / f"reader-{_code()}"
