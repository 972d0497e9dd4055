"""Versions of nodes and fingerprints of datasets: what "up to date" means, for Kedro and Dagster.

A node's **version** hashes what decides its outputs besides its inputs: its code (its
function and the project code that function can run: ``function_code``, ``code_deps.py``),
the arguments bound to the function (an experiment's name, a generator's), its input and output
names, and the values of its parameter inputs. Dagster uses it as the asset's code version:
change a parameter, or a function a node runs (``classify/training.py``'s ``train``), and
exactly the nodes that read or run it, and what lies downstream of them, show as unsynced. The
incremental runner (``runner.py``) uses it with the fingerprints of the node's inputs, and the
code of its output datasets' classes.

The code is read from the source (``ast``), not by importing: a module imported by a name built
at run time (``importlib.import_module(name)``) is not seen, nor is code outside the project
package (a library upgrade); after such a change, rerun in full (plain ``kedro run --pipeline
...``).

``legacy=True`` gives the versions of the earlier, module-level scheme (``code_hash``: the
node's module and every project module it imports): the incremental runner carries a record
written under it over to the current scheme when that version still matches the code.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import inspect
import json
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from cxr_augment.orchestration import code_deps


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=repr, separators=(",", ":"))


PACKAGE = "cxr_augment"
_PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # src/cxr_augment


_module_file = code_deps.module_file


@functools.cache
def _project_imports(name: str, package: str, root: Path) -> tuple[str, ...]:
    """The modules of ``package`` that module ``name``'s source imports, anywhere in it."""
    path = _module_file(name, package, root)
    if path is None:
        return ()
    tree = ast.parse(path.read_bytes(), filename=str(path))
    here = name if path.name == "__init__.py" else name.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = code_deps.absolute_import(node, here)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)  # a submodule?
    found = set()
    for imported in names:
        while imported and _module_file(imported, package, root) is None:
            imported = imported.rpartition(".")[0]  # the attribute of a module: the module
        if imported:
            found.add(imported)
    found.discard(name)
    return tuple(sorted(found))


@functools.cache
def code_hash(module_name: str, package: str = PACKAGE, root: Path = _PACKAGE_ROOT) -> str:
    """A hash of the module's source and of every module of ``package`` it imports, directly
    or through others (a module outside the package: its own source only)."""
    seen: set[str] = set()
    todo = [module_name]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(_project_imports(name, package, root))
    digest = hashlib.sha256()
    for name in sorted(seen):
        path = _module_file(name, package, root)
        digest.update(f"{name}\0".encode())
        digest.update(path.read_bytes() if path is not None else _source(name).encode())
    return digest.hexdigest()


@functools.cache
def function_code(
    module_name: str, qualname: str, package: str = PACKAGE, root: Path = _PACKAGE_ROOT
) -> str:
    """A hash of a function's (or class's) code and of the project code it can run: its
    top-level definition in ``module_name`` followed through ``code_deps.closure``. Code outside
    the project: its module's source (``code_hash``)."""
    if _module_file(module_name, package, root) is None:
        return code_hash(module_name, package, root)
    top = qualname.split(".")[0]
    return code_deps.code_version(module_name, None if top == "<lambda>" else top, package, root)


def object_code(obj: Any, legacy: bool = False) -> str:
    """The code of a function or class (``function_code``; ``legacy``: its module's)."""
    module = getattr(obj, "__module__", "") or ""
    if legacy:
        return code_hash(module)
    return function_code(module, getattr(obj, "__qualname__", "") or "<lambda>")


def clear_caches() -> None:
    """Forget what was read of the source (after an edit, in one process)."""
    _project_imports.cache_clear()
    code_hash.cache_clear()
    function_code.cache_clear()
    code_deps.clear_caches()


def _source(module_name: str) -> str:
    """A module's source; its name where it has none to read (a compiled or built-in module,
    or one not imported): such code is versioned by name only, as the module doc says of
    code outside the project."""
    module = sys.modules.get(module_name)
    try:
        return inspect.getsource(module) if module is not None else module_name
    except (OSError, TypeError):
        return module_name


def _unwrap(func: Callable) -> tuple[Callable, tuple, dict]:
    args: tuple = ()
    keywords: dict = {}
    while isinstance(func, functools.partial):
        args = func.args + args
        keywords = {**func.keywords, **keywords}
        func = func.func
    return func, args, keywords


def is_parameter(name: str) -> bool:
    return name.startswith("params:") or name == "parameters"


def node_version(node, parameters: Mapping[str, Any], legacy: bool = False) -> str:
    """The node's version (16 hex digits). ``parameters`` maps each of its parameter inputs
    (``params:...``) to its value; ``legacy``: the module-level scheme's."""
    func, args, keywords = _unwrap(node.func)
    parts = {
        "function": f"{getattr(func, '__module__', '')}.{getattr(func, '__qualname__', repr(func))}",
        "module" if legacy else "code": object_code(func, legacy),
        "bound": [_canonical(args), _canonical(keywords)],
        "inputs": list(node.inputs),
        "outputs": list(node.outputs),
        "parameters": {n: _canonical(parameters[n]) for n in node.inputs if is_parameter(n)},
    }
    return hashlib.sha256(_canonical(parts).encode()).hexdigest()[:16]


#: a source file up to this size is known by its bytes; a larger one by its size and time
CONTENT_LIMIT = 512 * 2**20
_DIGESTS: dict[tuple, str] = {}  # (path, size, mtime, inode) -> digest, for this process


def _file_digest(path: Path, st: os.stat_result) -> str:
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino)
    found = _DIGESTS.get(key)
    if found is None:
        with open(path, "rb") as f:
            found = hashlib.file_digest(f, "sha256").hexdigest()
        _DIGESTS[key] = found
    return found


def path_fingerprint(path: str | os.PathLike, content: bool = True) -> str | None:
    """A source's identity (``None`` when the path does not exist). A file of at most
    ``CONTENT_LIMIT`` bytes is known by its bytes, so that a file written again with the same
    bytes (a package reinstalled with its data files, a CSV copied back) leaves its readers up
    to date; a larger file, and each file under a folder, by size and modification time, as
    ``make`` tells a source changed. ``content=False``: size and time for a file too (the
    records written before files were known by their bytes)."""
    root = Path(path)
    if not root.exists():
        return None
    if content and root.is_file():
        st = root.stat()
        if st.st_size <= CONTENT_LIMIT:
            return "b" + _file_digest(root, st)[:15]
    digest = hashlib.sha256()
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    for f in files:
        st = f.stat()
        digest.update(f"{f.relative_to(root.parent)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


#: a saved dataset up to this many bytes gets its content's digest as its Dagster data version
DATA_VERSION_LIMIT = 4 * 2**30


def content_digest(path: str | os.PathLike, limit: int = DATA_VERSION_LIMIT) -> str | None:
    """The digest of what a dataset wrote, by its bytes only: a file's, or a folder's files'
    (each one's path under the folder and bytes). None when the path does not exist or holds
    more than ``limit`` bytes (then its bytes are not read)."""
    root = Path(path)
    if not root.exists():
        return None
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    stats = [f.stat() for f in files]
    if sum(st.st_size for st in stats) > limit:
        return None
    digest = hashlib.sha256(b"file|" if root.is_file() else b"folder|")
    for f, st in zip(files, stats, strict=True):
        name = "" if f == root else f.relative_to(root).as_posix()
        digest.update(f"{name}|{st.st_size}|{_file_digest(f, st)}\n".encode())
    return digest.hexdigest()[:16]


def dataset_path(dataset) -> str | None:
    """The file or folder a Kedro dataset reads (``filepath`` or ``path`` of its description)."""
    return _path_in(dataset._describe())


def _path_in(described: dict) -> str | None:
    for key in ("filepath", "path"):
        if described.get(key):
            return str(described[key])
    for value in described.values():  # a wrapper (read-only, optional) describes its dataset
        if isinstance(value, dict) and (found := _path_in(value)):
            return found
    return None
