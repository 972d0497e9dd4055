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
configuration is read is never answered from an entry the old code wrote; other code's
entries untouched for a week are removed (``sweep_other_readers``).
"""

from __future__ import annotations

import hashlib
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from kedro.config import MissingConfigException, OmegaConfigLoader

from cxr_augment.config_loader import CachedConfigLoader

LAYERS_FILE = "layers.yml"  # in an environment's folder: the environments it stands on


def environment_layers(conf: Path, env: str | None, base_env: str = "base") -> list[str]:
    """The environments ``env`` stands on, in merge order (``conf/<env>/layers.yml``; none
    without one), for a configuration folder ``conf``: ``parse_layers`` on the local disk."""
    if not env or env == base_env:
        return []
    path = Path(conf) / env / LAYERS_FILE
    if not path.is_file():
        return []
    return parse_layers(
        path.read_text(),
        str(path),
        env,
        base_env,
        is_env=lambda name: (Path(conf) / name).is_dir(),
        layers_file=lambda name: (
            str(Path(conf) / name / LAYERS_FILE)
            if (Path(conf) / name / LAYERS_FILE).exists()
            else None
        ),
        where=str(conf),
    )


def parse_layers(
    text: str,
    path: str,
    env: str,
    base_env: str,
    is_env: Callable[[str], bool],
    layers_file: Callable[[str], str | None],
    where: str,
) -> list[str]:
    """The layers ``layers.yml`` at ``path`` names. Each must be another environment
    (``is_env``), not the base, without layers of its own (``layers_file``): anything else is
    an error naming the file and the rule."""
    try:
        spec = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML ({err})") from err
    layers = spec.get("layers") if isinstance(spec, dict) else None
    if not isinstance(layers, list) or not all(isinstance(e, str) for e in layers):
        raise ValueError(f"{path}: expected `layers: [<environment>, ...]`, got {spec!r}")
    for name in layers:
        if name in (base_env, env) or layers.count(name) > 1:
            raise ValueError(f"{path}: layer {name!r} is the base, this environment or named twice")
        if not is_env(name):
            raise ValueError(f"{path}: layer {name!r} is not a folder of {where}")
        own = layers_file(name)
        if own is not None:
            raise ValueError(
                f"{path}: layer {name!r} has layers of its own ({own}); name them here instead"
            )
    return layers


class _ReadThroughLayers(OmegaConfigLoader):
    """Kedro's reading of a key, merged over the run environment's layers."""

    def _layer_names(self) -> list[str]:
        run_env = self.env or self.default_run_env
        if getattr(self, "_protocol", "file") == "file":
            return environment_layers(Path(self.conf_source), run_env, self.base_env)
        if not run_env or run_env == self.base_env:  # a packaged or remote configuration
            return []
        path = f"{self._get_conf_env_path(run_env)}/{LAYERS_FILE}"
        if not self._fs.isfile(path):
            return []
        with self._fs.open(path) as f:
            text = f.read().decode("utf-8")

        def layers_file(name: str) -> str | None:
            own = f"{self._get_conf_env_path(name)}/{LAYERS_FILE}"
            return own if self._fs.isfile(own) else None

        return parse_layers(
            text,
            f"{self.conf_source}: {run_env}/{LAYERS_FILE}",
            run_env,
            self.base_env,
            is_env=lambda name: self._fs.isdir(self._get_conf_env_path(name)),
            layers_file=layers_file,
            where=str(self.conf_source),
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


def _code_hash() -> str:
    from cxr_augment import config_loader

    digest = hashlib.sha256()
    for module in (__file__, config_loader.__file__):
        digest.update(Path(module).read_bytes())
    return digest.hexdigest()[:12]


# the reading code's hash, as this process imported it: a long-lived process that runs older
# code keeps writing under the older code's folder
_CODE = _code_hash()


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
        parent = super()._cache_folder()
        own = parent / f"reader-{_CODE}"
        if parent not in _SWEPT:
            _SWEPT.add(parent)
            sweep_other_readers(parent, own)
        return own


_SWEPT: set[Path] = set()  # the cache folders swept by this process
UNUSED_S = 7 * 24 * 3600  # another reading code's entries untouched this long are removed


def sweep_other_readers(parent: Path, own: Path, now: float | None = None) -> list[Path]:
    """Remove what other reading code cached in ``parent`` (its ``reader-*`` folders, and the
    entries written before them) that nothing has written for ``UNUSED_S``: a process still
    running older code, which writes only when the configuration changes, keeps its folder
    (and makes it again if it was removed). Returns what was removed; unreadable entries are
    left alone."""
    now = time.time() if now is None else now
    removed = []
    try:
        entries = list(parent.iterdir())
    except OSError:
        return removed
    for entry in entries:
        if entry == own or not (entry.name.startswith("reader-") or entry.suffix == ".marshal"):
            continue
        try:
            files = [entry, *entry.iterdir()] if entry.is_dir() else [entry]
            newest = max(f.stat().st_mtime for f in files)
            if now - newest < UNUSED_S:
                continue
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        except OSError:
            continue
        removed.append(entry)
    return removed
