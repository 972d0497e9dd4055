"""The project code a function's result can depend on, read from the source (``ast``).

A node's code version (``versions.py``) hashes the code its function can run: the function,
and every project function, class and module-level value its source names, followed through
imports and re-exports to where each is defined, and on through their sources in turn. A
module's statements that run at import (a call, an ``if`` or ``try`` block) count for every
name of that module used. So an edit to the report's HTML leaves a classifier's training
alone, while an edit to ``classify/training.py``'s ``train`` reruns what trains.

What is hashed is each definition's syntax tree without its docstrings (``ast.dump``): a
comment, a docstring or reformatting changes no version.

Followed conservatively, so that a dependency is not missed:

- ``module.name`` is ``name`` of that module; a module used other than through an attribute
  (``getattr(module, x)``, passed as an argument) counts whole;
- a method called on something the source cannot name (a parameter, a local, ``self``:
  ``store.get(...)``) counts every project class that defines a method of that name;
- a class counts whole, with its bases; a name bound more than once, every binding;
- a name the source binds in a way this does not follow counts its whole module, and so does
  code that reads its module's namespace (``globals()``, ``vars()``, ``eval``);
- ``importlib.import_module("a.b")`` with a constant name counts that module whole;
- the orchestration's own classes (runners, launchers) are no node's: not matched by method.

Not seen (as before, at module granularity): code outside the project (a library upgrade),
and a module imported by a name built at run time (``importlib.import_module(name)``).
"""

from __future__ import annotations

import ast
import atexit
import builtins
import functools
import hashlib
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)
_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
_IMPORTS = (ast.Import, ast.ImportFrom)
_ASSIGNS = (ast.Assign, ast.AnnAssign, ast.AugAssign)
CALL = "<call>"  # a chain read from a call's result: [CALL, function, attr...]
EXTERNAL = ("external", "")
WHOLE = "<whole module>"  # a chain that reaches any name of its module
MODULE = "<module>"  # [MODULE, name]: a module imported by a constant name at run time
_NAMESPACE_CALLS = frozenset(
    {"globals", "vars", "locals", "eval", "exec"}
)  # a name imported from outside the project: not versioned


@dataclass
class _Module:
    name: str
    package_path: str  # the package relative imports start from
    bindings: dict[str, list[ast.stmt]] = field(default_factory=dict)
    run_at_import: list[ast.stmt] = field(default_factory=list)
    star: list[ast.ImportFrom] = field(default_factory=list)
    memo: dict = field(default_factory=dict)  # per statement: its local imports, accessor


def module_file(name: str, package: str, root: Path) -> Path | None:
    """The source file of module ``name`` of ``package`` (rooted at ``root``), or None."""
    parts = name.split(".")
    if parts[0] != package:
        return None
    base = root.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _bound_names(stmt: ast.stmt) -> set[str]:
    """Names a top-level statement binds: a definition its name; a compound statement the names
    bound anywhere inside it, except inside its definitions' bodies."""
    if isinstance(stmt, _DEFS):
        return {stmt.name}
    out: set[str] = set()
    todo: list[ast.AST] = [stmt]
    while todo:
        node = todo.pop()
        if isinstance(node, _DEFS):
            out.add(node.name)
            continue
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store | ast.Del):
            out.add(node.id)
        elif isinstance(node, _IMPORTS):
            for alias in node.names:
                if alias.name != "*":
                    out.add(alias.asname or alias.name.split(".")[0])
        todo.extend(ast.iter_child_nodes(node))
    return out


@functools.cache
def _source(name: str, package: str, root: Path) -> tuple[Path, bytes] | None:
    """Module ``name``'s file and its bytes, read once per process (None: no such module), so
    that what is parsed, whether a module exists, and the digest kept with a version
    (``_DiskCache.digest``) all come from the same read."""
    path = module_file(name, package, root)
    if path is None:
        return None
    try:
        return path, path.read_bytes()
    except OSError as err:
        raise RuntimeError(
            f"code versions: cannot read {path} ({err}), a project module found a moment "
            "before; a source file moved or was removed while versions were computed. Run again "
            "once the files have settled."
        ) from err


@functools.cache
def _parse(name: str, package: str, root: Path) -> _Module | None:
    found = _source(name, package, root)
    if found is None:
        return None
    path, source = found
    tree = _strip_docstrings(ast.parse(source, filename=str(path)))
    here = name if path.name == "__init__.py" else name.rpartition(".")[0]
    mod = _Module(name, here)
    for stmt in tree.body:
        if isinstance(stmt, ast.ImportFrom) and any(a.name == "*" for a in stmt.names):
            mod.star.append(stmt)
            continue
        for bound in _bound_names(stmt):
            mod.bindings.setdefault(bound, []).append(stmt)
        if not isinstance(stmt, _DEFS + _IMPORTS + _ASSIGNS):
            mod.run_at_import.append(stmt)  # a call, an if / try / with block: runs at import
    return mod


def _is_docstring(stmt: ast.stmt) -> bool:
    return (
        isinstance(stmt, ast.Expr)
        and isinstance(stmt.value, ast.Constant)
        and isinstance(stmt.value.value, str)
    )


_BODIES = ("body", "orelse", "finalbody", "handlers", "cases")


def _strip_docstrings(node: ast.AST) -> ast.AST:
    """Drop the docstrings of a module and of every definition in it, in place (statement
    lists only: a docstring is never inside an expression)."""
    todo = [node]
    while todo:
        cur = todo.pop()
        body = getattr(cur, "body", None)
        if isinstance(cur, _DEFS + (ast.Module,)) and body and _is_docstring(body[0]):
            cur.body = body[1:] or ([] if isinstance(cur, ast.Module) else [ast.Pass()])
        for field_name in _BODIES:
            for child in getattr(cur, field_name, None) or ():
                if isinstance(child, ast.stmt | ast.excepthandler | ast.match_case):
                    todo.append(child)
    return node


def _text(stmt: ast.stmt) -> str:
    """A statement's syntax tree (docstrings stripped at parsing): no comments, no layout."""
    return ast.dump(stmt)


def absolute_import(stmt: ast.ImportFrom, package_path: str) -> str:
    """The module a ``from ... import`` reads, made absolute from the importing module's
    package (``package_path``)."""
    base = stmt.module or ""
    if stmt.level:  # relative: from its package, level - 1 packages up
        parts = package_path.split(".")
        up = parts[: len(parts) - (stmt.level - 1)]
        base = ".".join(up + ([base] if base else []))
    return base


@dataclass(frozen=True)
class _Unit:
    """One thing hashed: ``name`` of ``module`` (its binding statements), or the whole module
    (``name`` None)."""

    module: str
    name: str | None


class _Recording(threading.local):
    """Per thread, the sets that record the project modules read (``_edges``, ``_memo``)."""

    def __init__(self) -> None:
        self.stack: list[set[str]] = []


_CONSULTED = _Recording()


def _consult(names: Iterable[str]) -> None:
    for seen in _CONSULTED.stack:
        seen.update(names)


class _Resolver:
    def __init__(self, package: str, root: Path) -> None:
        self.package, self.root = package, root

    def module(self, name: str) -> _Module | None:
        if name.split(".")[0] != self.package:
            return None
        _consult((name,))
        return _parse(name, self.package, self.root)

    def is_module(self, name: str) -> bool:
        _consult((name,))
        return _source(name, self.package, self.root) is not None

    # what a name of a module refers to: units, a module, or nothing of the project
    def lookup(self, mod: _Module, name: str, seen: frozenset = frozenset()) -> list:
        key = (mod.name, name)
        if key in seen:
            return []
        seen = seen | {key}
        stmts = mod.bindings.get(name)
        if not stmts:
            found: list = []
            for star in mod.star:  # from x import *
                target = self.module(absolute_import(star, mod.package_path))
                if target is not None:
                    found += self.lookup(target, name, seen)
            return found
        out: list = []
        for stmt in stmts:
            if isinstance(stmt, _IMPORTS):
                out += self._imported(stmt, mod, name, seen)
            else:
                out.append(_Unit(mod.name, name))
        return out

    def _imported(self, stmt, mod: _Module, name: str, seen: frozenset) -> list:
        for alias in stmt.names:
            if isinstance(stmt, ast.Import):
                if alias.asname == name:
                    return [self._as_module(alias.name)]
                if alias.asname is None and alias.name.split(".")[0] == name:
                    return [self._as_module(name)]
            elif (alias.asname or alias.name) == name:
                base = absolute_import(stmt, mod.package_path)
                if self.is_module(f"{base}.{alias.name}"):
                    return [("module", f"{base}.{alias.name}")]
                target = self.module(base)
                if target is None:
                    return [EXTERNAL]
                # a name its module binds in a way not followed: that whole module
                return self.lookup(target, alias.name, seen) or [("module", base)]
        return []

    def _as_module(self, name: str):
        return ("module", name) if self.is_module(name) else EXTERNAL

    def chain(self, mod: _Module, chain: list[str], local: dict[str, list]) -> tuple[list, bool]:
        """The units a reference ``a.b.c`` reaches; and whether its root is unknown (a
        parameter, a local, a builtin)."""
        targets = local.get(chain[0]) or self.lookup(mod, chain[0])
        if not targets:
            return [], not hasattr(builtins, chain[0])
        out: list = []
        for target in targets:
            if target == EXTERNAL:
                continue
            rest = chain[1:]
            while isinstance(target, tuple) and rest:  # a module: follow the attribute
                sub = f"{target[1]}.{rest[0]}"
                if self.is_module(sub):
                    target = ("module", sub)
                else:
                    found = self.lookup(self.module(target[1]), rest[0])
                    if not found:  # not bound there as the source reads: the whole module
                        break
                    out += [f for f in found if not isinstance(f, tuple)]
                    modules = [f for f in found if isinstance(f, tuple) and f != EXTERNAL]
                    if not modules:
                        target = None
                        break
                    target = modules[0]
                rest = rest[1:]
            if isinstance(target, tuple):
                out.append(_Unit(target[1], None))
            elif target is not None:
                out.append(target)
        return out, False


def _references(tree: ast.AST) -> Iterable[list[str]]:
    """Every name a subtree reads, as a chain ``[name, attr, attr...]``; an attribute read
    from a call of a name, ``f().x``, as ``[CALL, f, x]``; and attributes read from something
    else unnamed (``a[0].y``) as ``["", attr]``."""
    inner: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            inner.add(id(node.value))
            if isinstance(node.value, ast.Call) and isinstance(node.value.func, ast.Name):
                inner.add(id(node.value.func))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and id(node) not in inner:
            parts = []
            cur: ast.AST = node
            while isinstance(cur, ast.Attribute):
                parts.append(cur.attr)
                cur = cur.value
            parts.reverse()
            if isinstance(cur, ast.Name):
                yield [cur.id, *parts]
            elif isinstance(cur, ast.Call) and isinstance(cur.func, ast.Name):
                yield [CALL, cur.func.id, *parts]
            else:
                yield ["", *parts]
        elif (
            isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and id(node) not in inner
        ):
            yield [node.id]
        elif isinstance(node, ast.Call):
            func = node.func
            if _getattr_constant(node):
                yield ["", node.args[1].value]
            elif isinstance(func, ast.Name) and func.id in _NAMESPACE_CALLS:
                yield [WHOLE]  # globals()[name], eval: any name of the module
            elif (
                (
                    (isinstance(func, ast.Name) and func.id == "__import__")
                    or (isinstance(func, ast.Attribute) and func.attr == "import_module")
                )
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                yield [MODULE, str(node.args[0].value)]


def _getattr_constant(call: ast.Call) -> bool:
    return (
        isinstance(call.func, ast.Name)
        and call.func.id in ("getattr", "hasattr")
        and len(call.args) >= 2
        and isinstance(call.args[1], ast.Constant)
        and isinstance(call.args[1].value, str)
    )


def _local_imports(stmt: ast.stmt, res: _Resolver, mod: _Module) -> dict[str, list]:
    """Names bound by the imports inside a definition (``from x import y`` in a function)."""
    return _memo(mod, ("imports", id(stmt)), lambda: _find_local_imports(stmt, res, mod))


def _memo(mod: _Module, key: tuple, compute):
    """``compute()`` once per statement of a parsed module; a later call replays the modules
    the first one consulted, so each unit's edges name every module they depend on."""
    if key not in mod.memo:
        seen: set[str] = set()
        _CONSULTED.stack.append(seen)
        try:
            value = compute()
        finally:
            _CONSULTED.stack.pop()
        _consult(seen)
        mod.memo[key] = (value, frozenset(seen))
    value, seen = mod.memo[key]
    _consult(seen)
    return value


def _find_local_imports(stmt: ast.stmt, res: _Resolver, mod: _Module) -> dict[str, list]:
    out: dict[str, list] = {}
    for node in ast.walk(stmt):
        if isinstance(node, _IMPORTS) and node is not stmt:
            for alias in node.names:
                name = alias.asname or alias.name.split(".")[0]
                out.setdefault(name, []).extend(res._imported(node, mod, name, frozenset()))
    return out


def _accessor(stmt: ast.stmt, res: _Resolver, mod: _Module) -> list[str] | None:
    """The modules a function only imports and returns (``def f(): from x import m; return
    m``), or None: a call ``f().name`` reads ``name`` of those modules."""
    return _memo(mod, ("accessor", id(stmt)), lambda: _find_accessor(stmt, res, mod))


def _find_accessor(stmt: ast.stmt, res: _Resolver, mod: _Module) -> list[str] | None:
    if not isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
        return None
    local = _local_imports(stmt, res, mod)
    returned: list[str] = []
    todo: list[ast.AST] = list(stmt.body)
    while todo:
        node = todo.pop()
        if isinstance(node, _DEFS + (ast.Lambda,)):
            continue
        if isinstance(node, ast.Return):
            targets = local.get(node.value.id, []) if isinstance(node.value, ast.Name) else []
            if not targets or not all(isinstance(t, tuple) and t[0] == "module" for t in targets):
                return None
            returned += [t[1] for t in targets]
        todo.extend(ast.iter_child_nodes(node))
    return returned or None


def _module_names(package: str, root: Path) -> list[str]:
    """The module name of every source file of the package, the orchestration's left out (no
    node is handed one of its classes)."""
    out = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).with_suffix("")
        if rel.parts[0] == "orchestration":
            continue
        parts = [package, *rel.parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out.append(".".join(parts))
    return out


def _class_methods(mod: _Module) -> list[list[str]]:
    """``[class, method]`` for every method of every class a module binds at its top level."""
    out = []
    for name, stmts in mod.bindings.items():
        for stmt in stmts:
            if isinstance(stmt, ast.ClassDef):
                for item in stmt.body:
                    if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                        out.append([name, item.name])
    return out


@functools.cache
def _methods(package: str, root: Path) -> dict[str, tuple[_Unit, ...]]:
    """Every method name of the project's classes -> the classes that define it (each module's
    list kept on disk by its source's digest: ``_DiskCache.class_methods``)."""
    out: dict[str, set[_Unit]] = {}
    for module, pairs in _cache(package, root).class_methods().items():
        for cls, method in pairs:
            out.setdefault(method, set()).add(_Unit(module, cls))
    return {k: tuple(sorted(v, key=lambda u: (u.module, u.name or ""))) for k, v in out.items()}


METHOD = "method:"  # a dependency on the classes that define a method name (``_DiskCache``)


@functools.cache
def _edges(unit: _Unit, package: str, root: Path) -> tuple[str, tuple[_Unit, ...], frozenset]:
    """One unit's text, the units its code names, and the project modules (names) whose source
    or existence decided them (what ``_DiskCache`` checks before it reuses a version)."""
    seen: set[str] = set()
    _CONSULTED.stack.append(seen)
    try:
        text, successors = _edges_of(unit, package, root)
    finally:
        _CONSULTED.stack.pop()
    return text, successors, frozenset(seen)


def _edges_of(unit: _Unit, package: str, root: Path) -> tuple[str, tuple[_Unit, ...]]:
    res = _Resolver(package, root)
    mod = res.module(unit.module)
    if mod is None:
        return "", ()
    out: list[_Unit] = []
    if unit.name != "<import>":  # the module's import-time statements
        out.append(_Unit(unit.module, "<import>"))
    if unit.name is None:
        stmts = sorted(
            {id(s): s for v in mod.bindings.values() for s in v}.values(), key=lambda s: s.lineno
        )
        stmts += mod.run_at_import + mod.star
    elif unit.name == "<import>":
        stmts = mod.run_at_import + mod.star
    else:
        stmts = mod.bindings.get(unit.name, [])
        if not stmts:  # bound in a way not followed: the whole module
            out.append(_Unit(unit.module, None))
    methods = _methods(package, root)
    for stmt in stmts:
        if isinstance(stmt, _IMPORTS):
            if unit.name is None:  # a whole module: what it imports is its attributes too
                for bound in _bound_names(stmt):
                    out += [u for u in res.lookup(mod, bound) if isinstance(u, _Unit)]
            continue  # otherwise followed where the imported name is used
        if _accessor(stmt, res, mod) is not None:
            continue  # what it returns is followed where it is called
        local = _local_imports(stmt, res, mod)
        for chain in _references(stmt):
            attrs = chain[1:]
            if chain[0] == WHOLE:
                found, unknown, attrs = [_Unit(unit.module, None)], False, []
            elif chain[0] == MODULE:
                target = res.module(chain[1])
                found = [_Unit(chain[1], None)] if target is not None else []
                unknown, attrs = False, []
            elif chain[0] == CALL:  # f().x: x of the modules f returns, or a method x
                found, unknown = res.chain(mod, chain[1:2], local)
                attrs = chain[2:]
                returned = _returned_modules(res, found)
                if returned:
                    unknown = False
                    for name in returned:
                        more, _ = res.chain(res.module(name), [attrs[0]] if attrs else [], {})
                        found += more if attrs else [_Unit(name, None)]
            elif chain[0]:
                found, unknown = res.chain(mod, chain, local)
                if len(chain) == 1:  # a module accessor used plainly: its modules whole
                    found += [_Unit(m, None) for m in _returned_modules(res, found)]
            else:
                found, unknown = [], True
            if unknown:  # methods of something unnamed: every class that has one
                for attr in attrs:
                    if not (attr.startswith("__") and attr.endswith("__")):
                        _consult((METHOD + attr,))
                        found += methods.get(attr, ())
            out += found
    text = "\n".join(_text(s) for s in stmts)
    return text, tuple(dict.fromkeys(u for u in out if isinstance(u, _Unit)))


def closure(module: str, name: str | None, package: str, root: Path) -> dict[_Unit, str]:
    """Every unit of code that ``name`` of ``module`` (None: the whole module) can run, each
    with its text (see the module docstring)."""
    return _closure(module, name, package, root)[0]


def _closure(
    module: str, name: str | None, package: str, root: Path
) -> tuple[dict[_Unit, str], set[str]]:
    """``closure``, and the project modules its computation read (``_edges``)."""
    todo = [_Unit(module, name)]
    texts: dict[_Unit, str] = {}
    consulted: set[str] = set()
    while todo:
        unit = todo.pop()
        if unit not in texts:
            texts[unit], successors, seen = _edges(unit, package, root)
            consulted |= seen
            todo += successors
    return texts, consulted


def _returned_modules(res: _Resolver, units: list) -> list[str]:
    out: list[str] = []
    for unit in units:
        if isinstance(unit, _Unit) and unit.name:
            mod = res.module(unit.module)
            for stmt in mod.bindings.get(unit.name, []) if mod else []:
                out += _accessor(stmt, res, mod) or []
    return out


def code_version(module: str, name: str | None, package: str, root: Path) -> str:
    """A hash of ``closure(module, name)``: the code of ``name`` and of what it can run.

    Kept on disk with what it was computed from (``_DiskCache``): a process that finds those
    sources as they were reads it back instead of following the code again, so an edit
    recomputes only the versions of the code that reads the edited files."""
    cache = _cache(package, root)
    key = f"{module}:{name}"
    found = cache.get(key)
    if found is None:
        texts, consulted = _closure(module, name, package, root)
        found = cache.put(key, _digest(texts), consulted)
    return found


def _digest(texts: dict[_Unit, str]) -> str:
    digest = hashlib.sha256()
    for unit, text in sorted(texts.items(), key=lambda kv: (kv[0].module, kv[0].name or "")):
        digest.update(f"{unit.module}\0{unit.name}\0{text}\0".encode())
    return digest.hexdigest()


class _DiskCache:
    """Code versions, each with what decided it, in a JSON file of the temporary folder named
    by the digest of this module (the rules):

    - a version is kept with the digest (path and bytes, from the one read of ``_source``) of
      every project module its closure read (``_edges``; "" for a module that has no file)
      and, for each method name it matched on something unnamed, the classes that define it;
      it is read back only while all of them are the same, so an edit of one file recomputes
      only the versions that read that file;
    - each module's class methods (what ``_methods`` matches on) are kept by its source's
      digest, so a process parses only the files that changed;
    - a few versions per key (another checkout, another branch) are kept, the newest first.

    Written whole by rename, merged with what another process wrote meanwhile, at most every
    ``WRITE_EVERY_S`` while versions are being computed and at exit (``flush``); unreadable or
    unwritable, it is only skipped. The folder keeps the ``KEPT`` most recently written files
    (rules)."""

    KEPT = 4
    PER_KEY = 4
    WRITE_EVERY_S = 1.0

    def __init__(self, package: str, root: Path) -> None:
        self.package, self.root = package, root
        rules = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:32]
        self.path = Path(tempfile.gettempdir()) / f"{package}-code-versions" / f"{rules}.json"
        self.versions, self.listings = self._read()
        self._digests: dict[str, str] = {}
        self._added: dict[str, list] = {}  # the versions this process computed, newest first
        self._pending, self._written = False, 0.0

    def _read(self) -> tuple[dict[str, list], dict[str, list]]:
        try:
            data = json.loads(self.path.read_text())
            return dict(data["versions"]), dict(data["methods"])
        except FileNotFoundError:
            return {}, {}  # nothing kept yet under these rules
        except (OSError, ValueError, KeyError, TypeError) as err:
            log.warning(
                "code versions: %s is unreadable (%s); computing them again", self.path, err
            )
            return {}, {}

    def digest(self, dep: str) -> str:
        """A module's source digest ("" when it has no file), or for ``method:<name>`` the
        classes that define that method."""
        if dep not in self._digests:
            if dep.startswith(METHOD):
                units = _methods(self.package, self.root).get(dep[len(METHOD) :], ())
                text = ";".join(f"{u.module}:{u.name}" for u in units)
                self._digests[dep] = hashlib.sha256(text.encode()).hexdigest()[:32]
            else:  # the file the closure was read from (its path: x.py or x/__init__.py)
                found = _source(dep, self.package, self.root)
                self._digests[dep] = ""
                if found is not None:
                    path, source = found
                    where = path.relative_to(self.root).as_posix().encode()
                    self._digests[dep] = hashlib.sha256(where + b"\0" + source).hexdigest()[:32]
        return self._digests[dep]

    def class_methods(self) -> dict[str, list]:
        out, new = {}, False
        for module in _module_names(self.package, self.root):
            key = self.digest(module)
            if not _is_listing(self.listings.get(key)):
                parsed = _parse(module, self.package, self.root)
                self.listings[key], new = (_class_methods(parsed) if parsed else []), True
            out[module] = self.listings[key]
        if new:
            self._write()
        return out

    def get(self, key: str) -> str | None:
        for entry in self.versions.get(key, []):
            try:
                if all(self.digest(dep) == d for dep, d in entry["deps"].items()):
                    return entry["version"]
            except (KeyError, TypeError, AttributeError, ValueError) as err:
                log.warning("code versions: %s holds a malformed entry for %s (%s); computing it "
                            "again", self.path, key, err)  # fmt: skip
                return None
        return None

    def put(self, key: str, version: str, consulted: set[str]) -> str:
        entry = {"version": version, "deps": {d: self.digest(d) for d in sorted(consulted)}}
        self.versions[key] = _newest_first([entry], self.versions.get(key, []), self.PER_KEY)
        self._added[key] = _newest_first([entry], self._added.get(key, []), self.PER_KEY)
        self._pending = True
        if time.monotonic() - self._written >= self.WRITE_EVERY_S:
            self._write()
        return version

    def flush(self) -> None:
        if self._pending:
            self._write()

    def _write(self) -> None:
        self._pending, self._written = False, time.monotonic()
        versions, listings = self._read()  # what another process wrote meanwhile
        for key, entries in self._added.items():  # this process's, before the file's
            versions[key] = _newest_first(entries, versions.get(key, []), self.PER_KEY)
        listings.update(self.listings)
        tmp = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, suffix=".tmp")
            with os.fdopen(fd, "w") as f:
                json.dump({"versions": versions, "methods": listings}, f, separators=(",", ":"))
            os.replace(tmp, self.path)
            tmp = None
            states = sorted(self.path.parent.glob("*.json"), key=_mtime, reverse=True)
            for old in states[self.KEPT :]:
                old.unlink(missing_ok=True)
        except OSError:
            pass  # a cache: the version is computed again next time
        finally:
            if tmp is not None:  # not renamed: no half-written file left behind
                Path(tmp).unlink(missing_ok=True)


def _newest_first(new: list, old: list, n: int) -> list:
    return (new + [e for e in old if e not in new])[:n]


def _is_listing(value) -> bool:
    return isinstance(value, list) and all(
        isinstance(p, list) and len(p) == 2 and all(isinstance(q, str) for q in p) for p in value
    )


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:  # removed by another process meanwhile
        return 0.0


_CACHES: list[_DiskCache] = []


@functools.cache
def _cache(package: str, root: Path) -> _DiskCache:
    _CACHES.append(_DiskCache(package, root))
    return _CACHES[-1]


def _cache_instances() -> list[_DiskCache]:
    out = list(_CACHES)
    _CACHES.clear()
    return out


@atexit.register
def _flush_at_exit() -> None:
    for cache in _CACHES:
        cache.flush()


def clear_caches() -> None:
    for cache in _cache_instances():
        cache.flush()
    _cache.cache_clear()
    _source.cache_clear()
    _parse.cache_clear()
    _methods.cache_clear()
    _edges.cache_clear()
