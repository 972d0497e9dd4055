"""Kedro's ``OmegaConfigLoader`` with its resolved parameters, catalog and globals kept on disk.

Every Kedro session, every Dagster code load (the UI, each reload, each run worker) and the
pipeline registry read the project's configuration: OmegaConf parses, merges and resolves some
2,000 parameter nodes, about a second per read on 2 cores. The result depends only on what
``fingerprint`` covers, so it is kept in ``<project>/.cache/config/`` under that fingerprint
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
strings, numbers, booleans, None), is read as Kedro reads it. A cache that cannot be written
(a read-only project) costs the time it would have saved, nothing else. The files are written
atomically; ``MAX_ENTRIES`` per key are kept, the oldest removed first.
"""

from __future__ import annotations

import contextlib
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

    def fingerprint(self, key: str) -> str | None:
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
        if key not in CACHED or key in self.data:  # explicitly set values bypass any reading
            return super().__getitem__(key)
        fingerprint = self.fingerprint(key)
        if fingerprint is None:
            return super().__getitem__(key)
        path = self._cache_folder() / f"{key}-{fingerprint}.marshal"
        try:
            return marshal.loads(path.read_bytes())
        except OSError:  # not cached yet, or no cache folder can exist here
            pass
        except (EOFError, ValueError, TypeError):  # unreadable: replaced below
            LOGGER.debug("config cache %s unreadable; reading the configuration", path)
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
            key = path.name.split("-", 1)[0]
            entries = sorted(
                path.parent.glob(f"{key}-*.marshal"), key=lambda p: p.stat().st_mtime_ns
            )
            for old in entries[:-MAX_ENTRIES]:
                old.unlink(missing_ok=True)
        except OSError as err:  # a read-only project: no cache, the value is still right
            LOGGER.debug("config cache not written (%s): %s", path, err)
            with contextlib.suppress(OSError):
                partial.unlink(missing_ok=True)
