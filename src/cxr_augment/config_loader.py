"""Kedro's ``OmegaConfigLoader`` with its resolved parameters, catalog and globals kept on disk.

Every Kedro session, every Dagster code load (the UI, each reload, each run worker) and the
pipeline registry read the project's configuration: OmegaConf parses, merges and resolves some
2,000 parameter nodes, about a second per read on 2 cores. The result depends only on what
``config_fingerprint`` covers, so it is kept in ``<project>/.cache/config/`` under that fingerprint
and read back in milliseconds when nothing it covers changed:

- the name, relative path and bytes of every file under the base and the run environment's
  folders (any edit, addition or removal changes it);
- the key, the environments, the runtime parameters (``--params``), the merge strategy and the
  key's patterns;
- the values of the environment variables the files name (``${env_var:NAME,...}``,
  ``${oc.env:NAME}``), and where each package named by ``${package_data:PACKAGE,...}`` is
  installed;
- the custom resolvers' code, and the Python, Kedro and OmegaConf versions.

Credentials are never written: only ``CACHED`` keys are kept. A configuration that is not a
local folder, or a value the cache cannot represent exactly (``marshal``: dicts, lists,
strings, numbers, booleans, None), is read as Kedro reads it. The files are written
atomically; ``MAX_ENTRIES`` per key are kept, the oldest removed first. A corrupted entry is
reported (a warning naming it) and written again. A cache folder that cannot be read or
written (a read-only project) is an error naming it; ``CXR_CONFIG_CACHE=off`` in the
environment reads the configuration as Kedro does, without the cache.

The method is ``config_fingerprint``, not ``fingerprint``: the code versions
(``orchestration/code_deps.py``) tie a call of ``x.fingerprint(...)`` on an object they cannot
name to every project class defining that method, and the training code makes such calls; under
the shorter name, every node's version followed this module's.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import logging
import marshal
import os
import re
import sys
import uuid
from pathlib import Path
from typing import Any

from kedro.config import OmegaConfigLoader

LOGGER = logging.getLogger(__name__)

CACHED = ("parameters", "catalog", "globals")
MAX_ENTRIES = 16
_ENV_VAR = re.compile(r"\$\{\s*(?:env_var|oc\.env)\s*:\s*([A-Za-z_][A-Za-z0-9_]*)")
_PACKAGE = re.compile(r"\$\{\s*package_data\s*:\s*([A-Za-z_][A-Za-z0-9_.]*)")
_CONFIG_SUFFIXES = (".yml", ".yaml", ".json")


def _versions() -> str:
    import kedro
    import omegaconf

    return f"{sys.version}|{kedro.__version__}|{omegaconf.__version__}"


class CachedConfigLoader(OmegaConfigLoader):
    """``OmegaConfigLoader`` that keeps ``CACHED`` keys' resolved values on disk (module doc)."""

    def _folders(self) -> list[Path] | None:
        if getattr(self, "_protocol", "file") != "file":
            return None
        root = Path(self.conf_source)
        if not root.is_dir():
            return None
        envs = [self.base_env, self.env or self.default_run_env]
        return [root / e for e in dict.fromkeys(e for e in envs if e)]

    def config_fingerprint(self, key: str) -> str | None:
        """The hash of everything ``self[key]`` depends on (module doc); None when the
        configuration is not a local folder."""
        folders = self._folders()
        if folders is None:
            return None
        digest = hashlib.sha256()
        text = []
        for folder in folders:
            files = sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []
            digest.update(f"folder {folder.name} {len(files)}\n".encode())
            for path in files:
                data = path.read_bytes()
                digest.update(f"file {path.relative_to(folder)} {len(data)}\n".encode())
                digest.update(data)
                if path.suffix in _CONFIG_SUFFIXES:
                    text.append(data.decode("utf-8", errors="replace"))
        joined = "\n".join(text)
        for name in sorted(set(_ENV_VAR.findall(joined))):
            digest.update(f"env {name}={os.environ.get(name)!r}\n".encode())
        for name in sorted(set(_PACKAGE.findall(joined))):
            try:
                spec = importlib.util.find_spec(name.split(".")[0])
            except (ImportError, ValueError):
                spec = None
            where = list(spec.submodule_search_locations or []) if spec else None
            digest.update(f"package {name}={where!r}\n".encode())
        resolvers = getattr(self, "_custom_resolvers", None) or {}
        for name, func in sorted(resolvers.items()):
            try:
                source = inspect.getsource(func)
            except (OSError, TypeError):
                source = repr(func)
            digest.update(f"resolver {name}\n{source}\n".encode())
        merge = (getattr(self, "merge_strategy", None) or {}).get(key)
        patterns = self.config_patterns.get(key)
        runtime = repr(sorted((self.runtime_params or {}).items(), key=lambda kv: str(kv[0])))
        digest.update(
            f"key {key}|{self.base_env}|{self.env}|{self.default_run_env}|{merge}|{patterns}|"
            f"{runtime}|{_versions()}".encode()
        )
        return digest.hexdigest()[:32]

    def _cache_folder(self) -> Path:
        return Path(self.conf_source).resolve().parent / ".cache" / "config"

    def __getitem__(self, key: str) -> dict[str, Any]:
        off = os.environ.get("CXR_CONFIG_CACHE", "").lower() == "off"
        if off or key not in CACHED or key in self.data:  # explicitly set values: no reading
            return super().__getitem__(key)
        fingerprint = self.config_fingerprint(key)
        if fingerprint is None:
            return super().__getitem__(key)
        path = self._cache_folder() / f"{key}-{fingerprint}.marshal"
        try:
            data = path.read_bytes()
        except FileNotFoundError:  # not cached yet
            data = None
        except OSError as err:
            raise OSError(
                f"the configuration cache {path} cannot be read ({err}): fix or remove "
                f"{self._cache_folder()}, or set CXR_CONFIG_CACHE=off to read without it"
            ) from err
        if data is not None:
            try:
                return marshal.loads(data)
            except (EOFError, ValueError, TypeError) as err:
                LOGGER.warning(
                    "configuration cache %s is corrupted (%s); writing it again", path, err
                )
        value = super().__getitem__(key)
        try:
            data = marshal.dumps(value)
        except ValueError:  # a type marshal cannot hold: not cached
            return value
        if marshal.loads(data) != value:
            return value
        self._store(path, data)
        return value

    def _store(self, path: Path, data: bytes) -> None:
        partial = path.with_name(f".{path.name}.partial-{uuid.uuid4().hex[:8]}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            partial.write_bytes(data)
            os.replace(partial, path)
        except OSError as err:
            if partial.exists():
                partial.unlink()
            raise OSError(
                f"the configuration cache {path} cannot be written ({err}): make "
                f"{path.parent} writable, or set CXR_CONFIG_CACHE=off to read without it"
            ) from err
        key = path.name.split("-", 1)[0]
        entries = sorted(path.parent.glob(f"{key}-*.marshal"), key=lambda p: p.stat().st_mtime_ns)
        for old in entries[:-MAX_ENTRIES]:
            old.unlink(missing_ok=True)
