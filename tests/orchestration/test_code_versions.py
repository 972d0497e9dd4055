"""Function-level code versions (``code_deps.py``): an edit reruns exactly the nodes whose code
can run what was edited; records of the module-level scheme carry over while they still hold."""

from __future__ import annotations

import os
import textwrap

import pytest

from cxr_augment.orchestration import code_deps, versions

FILES = {
    "__init__.py": "",
    "sub/__init__.py": "from .util import helper  # re-exported\n",
    "sub/util.py": """
        import numpy as np

        LIMIT = 3


        def helper(x):
            return np.clip(x, 0, LIMIT)


        def unused(x):
            return x
        """,
    "other.py": """
        CONSTANT = 1
        print("imported")  # runs at import
        """,
    "store.py": """
        class Base:
            def scale(self):
                return 2


        class Store(Base):
            def fetch(self):
                return self.scale() * 10


        class Unrelated:
            def elsewhere(self):
                return 0
        """,
    "registry.py": """
        class A:
            def run(self, x):
                return x + 1


        class B:
            def run(self, x):
                return x - 1


        REGISTRY = {"a": A}


        def deco(f):
            return f
        """,
    "domain.py": """
        def heavy(x):
            return x * 2


        def report(x):
            return str(x)
        """,
    "nodes.py": '''
        """Nodes."""
        from . import other
        from .registry import REGISTRY, deco
        from .sub import helper, util
        from .sub.util import LIMIT as BOUND


        def _domain():
            from pkg import domain

            return domain


        def uses_helper(x):
            """Its docstring."""
            return helper(x) + other.CONSTANT  # a comment


        def uses_util_attribute(x, cap=BOUND):
            return util.helper(x) + cap


        def uses_a_method(store):
            return store.fetch()


        def uses_the_registry(name, x):
            return REGISTRY[name]().run(x)


        @deco
        def decorated(x):
            return x


        def uses_the_accessor(x):
            return _domain().heavy(x)


        def uses_a_module_whole(name):
            return getattr(util, name)


        def lazy_import(x):
            from pkg.sub.util import unused

            return unused(x)


        def alone(x):
            return x
        ''',
}


@pytest.fixture
def pkg(tmp_path, monkeypatch):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "tmp"))  # the disk cache's folder
    (tmp_path / "tmp").mkdir()
    root = tmp_path / "pkg"
    for name, text in FILES.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
    return root


NODE_FUNCTIONS = sorted(
    line.split("(")[0].removeprefix("def ")
    for line in textwrap.dedent(FILES["nodes.py"]).splitlines()
    if line.startswith("def ")
)


def _versions(root) -> dict[str, str]:
    code_deps.clear_caches()
    return {f: code_deps.code_version("pkg.nodes", f, "pkg", root) for f in NODE_FUNCTIONS}


def _edit(root, name: str, old: str, new: str) -> None:
    path = root / name
    text = path.read_text()
    assert old in text, (name, old)
    path.write_text(text.replace(old, new))


# (file, old, new) -> the node functions whose versions must change; all others must not
EDITS = [
    (
        ("sub/util.py", "LIMIT = 3", "LIMIT = 4"),
        {"uses_helper", "uses_util_attribute", "uses_a_module_whole"},
    ),
    (("sub/util.py", "return x\n", "return -x\n"), {"uses_a_module_whole", "lazy_import"}),
    (
        ("sub/util.py", "np.clip", "np.minimum"),
        {"uses_helper", "uses_util_attribute", "uses_a_module_whole"},
    ),
    (("other.py", "CONSTANT = 1", "CONSTANT = 2"), {"uses_helper"}),
    (("other.py", '"imported"', '"loaded"'), {"uses_helper"}),  # import-time statement
    (("store.py", "return 2", "return 3"), {"uses_a_method"}),  # a base class's method
    (("store.py", "return 0", "return 1"), set()),  # a class no node can reach
    (("registry.py", "return x + 1", "return x + 2"), {"uses_the_registry"}),
    (("registry.py", "return f\n", "return f  # same\n"), set()),  # a comment only
    (("registry.py", "def deco(f):\n", "def deco(f):\n    f.tag = 1\n"), {"decorated"}),
    (("domain.py", "x * 2", "x * 3"), {"uses_the_accessor"}),
    (("domain.py", "str(x)", "repr(x)"), set()),  # the same module, a function not used
    (("nodes.py", "def alone(x):\n    return x", "def alone(x):\n    return x + 0"), {"alone"}),
    (("nodes.py", '"""Its docstring."""', '"""Another docstring."""'), set()),
    (("nodes.py", "# a comment", "# another comment"), set()),
]


@pytest.mark.parametrize("edit,changed", EDITS, ids=[f"{e[0]}:{e[1][:12]}" for e, _ in EDITS])
def test_an_edit_changes_exactly_the_versions_of_the_code_that_can_run_it(pkg, edit, changed):
    before = _versions(pkg)
    assert _versions(pkg) == before  # stable
    _edit(pkg, *edit)
    after = _versions(pkg)
    assert {f for f in before if after[f] != before[f]} == changed


def test_a_binding_not_followed_counts_its_whole_module(pkg):
    (pkg / "dyn.py").write_text("globals()['made'] = 1\n\n\ndef g():\n    return 1\n")
    (pkg / "nodes.py").write_text("from .dyn import made\n\n\ndef node():\n    return made\n")
    code_deps.clear_caches()
    first = code_deps.code_version("pkg.nodes", "node", "pkg", pkg)
    _edit(pkg, "dyn.py", "return 1", "return 2")
    code_deps.clear_caches()
    assert code_deps.code_version("pkg.nodes", "node", "pkg", pkg) != first


@pytest.mark.parametrize(
    "body",
    [
        "    return globals()['g']()\n",  # the module's namespace: any of its names
        "    import importlib\n\n    return importlib.import_module('pkg.dyn').g()\n",
    ],
)
def test_a_namespace_read_or_a_module_imported_by_constant_name_counts_whole(pkg, body):
    (pkg / "dyn.py").write_text("def g():\n    return 1\n")
    text = "def g():\n    return 1\n\n\ndef node():\n" + body
    (pkg / "nodes.py").write_text(text)
    code_deps.clear_caches()
    first = code_deps.code_version("pkg.nodes", "node", "pkg", pkg)
    edited = "dyn.py" if "import_module" in body else "nodes.py"
    (pkg / edited).write_text((pkg / edited).read_text().replace("return 1", "return 2", 1))
    code_deps.clear_caches()
    assert code_deps.code_version("pkg.nodes", "node", "pkg", pkg) != first


def test_versions_are_kept_on_disk_for_the_same_sources(pkg, monkeypatch, caplog):
    monkeypatch.setattr(code_deps._DiskCache, "WRITE_EVERY_S", 0.0)  # each version written
    first = _versions(pkg)
    calls = []
    real = code_deps._closure
    monkeypatch.setattr(code_deps, "_closure", lambda *a: calls.append(a[1]) or real(*a))
    assert _versions(pkg) == first and calls == []  # read back, not followed again
    _edit(pkg, "nodes.py", "def alone(x):\n    return x", "def alone(x):\n    return 2 * x")
    second = _versions(pkg)
    assert calls and second["alone"] != first["alone"]  # the sources changed: computed
    # an edit recomputes only the versions whose code reads the edited file
    calls.clear()
    _edit(pkg, "other.py", "CONSTANT = 1", "CONSTANT = 2")
    third = _versions(pkg)
    assert calls == ["uses_helper"]
    assert {f for f in third if third[f] != second[f]} == {"uses_helper"}
    # ... and one that adds a class with a method recomputes the versions that match that
    # method on something unnamed, and those only
    calls.clear()
    (pkg / "late.py").write_text("class Late:\n    def run(self, x):\n        return x\n")
    fourth = _versions(pkg)
    assert calls == ["uses_the_registry"]  # REGISTRY[name]().run(x)
    assert fourth["uses_the_registry"] != third["uses_the_registry"]
    # undone, the earlier versions come back from the disk, not computed again
    calls.clear()
    (pkg / "late.py").unlink()
    _edit(pkg, "other.py", "CONSTANT = 2", "CONSTANT = 1")
    assert _versions(pkg) == second and calls == []
    # a corrupt cache file is skipped, with a warning naming it
    for f in (pkg.parent / "tmp").rglob("*.json"):
        f.write_text("{not json")
    with caplog.at_level("WARNING", logger=code_deps.__name__):
        assert _versions(pkg) == second
    assert "is unreadable" in caplog.text and "code-versions" in caplog.text
    # a write that fails (a full disk) leaves no partial file behind
    folder = pkg.parent / "tmp" / "pkg-code-versions"

    def full(obj, f, **kwargs):
        f.write("{")
        raise OSError(28, "No space left on device")

    for f in folder.glob("*.json"):
        f.unlink()  # computed again, so written again
    with monkeypatch.context() as m:
        m.setattr(code_deps.json, "dump", full)
        assert _versions(pkg) == second
    assert not list(folder.iterdir())
    # the folder keeps the most recent files only (one per state of the rules, code_deps.py)
    monkeypatch.setattr(code_deps._DiskCache, "KEPT", 2)
    for i in range(4):
        (folder / f"older-rules-{i}.json").write_text("{}")
        os.utime(folder / f"older-rules-{i}.json", (1000 + i, 1000 + i))
    _edit(pkg, "nodes.py", "def alone(x):\n", "def alone(x):\n    y = 1\n")
    _versions(pkg)
    assert sorted(p.name for p in folder.glob("*.json"))[-1].startswith("older-rules-3")
    assert len(list(folder.glob("*.json"))) == 2


def test_a_file_saved_while_versions_are_computed_leaves_no_stale_version(pkg):
    # a process reads the sources once: what it parses, and the digests it keeps with the
    # versions, come from the same read, even when a file is saved in between
    code_deps.clear_caches()
    code_deps.code_version("pkg.nodes", "alone", "pkg", pkg)  # every module's methods listed
    code_deps.clear_caches()  # a process that finds them listed, so it does not parse them
    code_deps.code_version("pkg.nodes", "uses_a_method", "pkg", pkg)  # digests every module
    _edit(pkg, "sub/util.py", "LIMIT = 3", "LIMIT = 4")  # saved meanwhile
    code_deps.code_version("pkg.nodes", "uses_helper", "pkg", pkg)  # parses sub/util.py
    _edit(pkg, "sub/util.py", "LIMIT = 4", "LIMIT = 3")  # and undone
    for edit in (None, ("LIMIT = 3", "LIMIT = 4")):  # the next process: as first, then edited
        if edit:
            _edit(pkg, "sub/util.py", *edit)
        code_deps.clear_caches()
        for f in NODE_FUNCTIONS:
            fresh = code_deps._digest(code_deps.closure("pkg.nodes", f, "pkg", pkg))
            assert code_deps.code_version("pkg.nodes", f, "pkg", pkg) == fresh, f


def test_a_module_that_cannot_be_read_is_an_error_naming_it(pkg, monkeypatch):
    code_deps.clear_caches()
    found = code_deps.module_file
    gone = pkg / "sub" / "gone.py"  # found, then removed before it was read
    monkeypatch.setattr(
        code_deps,
        "module_file",
        lambda name, *a: gone if name == "pkg.sub.util" else found(name, *a),
    )
    with pytest.raises(RuntimeError, match=r"cannot read .*gone\.py.*Run again"):
        code_deps.code_version("pkg.nodes", "uses_helper", "pkg", pkg)
    code_deps.clear_caches()


def test_a_module_moved_into_a_package_is_another_module(pkg):
    # x.py and x/__init__.py with the same bytes read their relative imports from different
    # packages: the digest kept with a version covers the path too
    mover = "from .util import helper\n\n\ndef moved(x):\n    return helper(x)\n"
    (pkg / "sub" / "mover.py").write_text(mover)
    node = "from .sub.mover import moved\n\n\ndef node(x):\n    return moved(x)\n"
    (pkg / "late_nodes.py").write_text(node)
    code_deps.clear_caches()
    first = code_deps.code_version("pkg.late_nodes", "node", "pkg", pkg)
    (pkg / "sub" / "mover").mkdir()
    (pkg / "sub" / "mover.py").rename(pkg / "sub" / "mover" / "__init__.py")
    (pkg / "sub" / "mover" / "util.py").write_text("def helper(x):\n    return x * 100\n")
    code_deps.clear_caches()
    fresh = code_deps._digest(code_deps.closure("pkg.late_nodes", "node", "pkg", pkg))
    assert fresh != first
    code_deps.clear_caches()
    assert code_deps.code_version("pkg.late_nodes", "node", "pkg", pkg) == fresh


def test_versions_computed_together_are_written_at_most_every_so_often_and_at_the_end(
    pkg, monkeypatch
):
    class Clock:  # the module's clock, a quarter of WRITE_EVERY_S on per computed version
        now = 100.0

        def monotonic(self) -> float:
            return self.now

    clock = Clock()
    assert code_deps._DiskCache.WRITE_EVERY_S == 1.0
    monkeypatch.setattr(code_deps, "time", clock)
    events, calls = [], []
    write, closure, put = code_deps._DiskCache._write, code_deps._closure, code_deps._DiskCache.put

    def computing(*args):
        clock.now += 0.25
        return closure(*args)

    monkeypatch.setattr(code_deps, "_closure", computing)
    monkeypatch.setattr(
        code_deps._DiskCache, "_write",
        lambda self: events.append(("write", clock.now)) or write(self),
    )  # fmt: skip
    monkeypatch.setattr(
        code_deps._DiskCache, "put",
        lambda self, *a: events.append(("put", clock.now)) or put(self, *a),
    )  # fmt: skip
    first = _versions(pkg)
    code_deps.clear_caches()  # the end: what is pending is written
    assert len(NODE_FUNCTIONS) == 10
    puts = [("put", 100.0 + 0.25 * i) for i in range(1, 11)]
    # the class listing while the first version is computed (100.25); then a write at the
    # first version 1 s or more after the last write (the 5th at 101.25, the 9th at 102.25);
    # and the 10th, pending, at the end
    assert events == (
        [("write", 100.25)] + puts[:5] + [("write", 101.25)] + puts[5:9]
        + [("write", 102.25)] + puts[9:] + [("write", 102.5)]
    )  # fmt: skip
    assert [e for e, _ in events].count("write") == 4
    monkeypatch.setattr(code_deps, "_closure", lambda *a: calls.append(a) or closure(*a))
    assert _versions(pkg) == first and calls == []  # all of them were written


def test_the_projects_training_does_not_follow_the_report_or_the_sampler():
    code_deps.clear_caches()
    units = code_deps.closure(
        "cxr_augment.pipelines.classification.nodes",
        "train_classifier",
        versions.PACKAGE,
        versions._PACKAGE_ROOT,
    )
    names = {(u.module.removeprefix("cxr_augment."), u.name) for u in units}
    for needed in [
        ("classify.experiments", "fit"),
        ("classify.training", "train"),
        ("classify.training", "_train"),
        ("classify.models", "build_model"),
        ("preprocess.tensor_store", "TensorStore"),
    ]:
        assert needed in names, needed
    modules = {m for m, _ in names}
    assert "report.html" not in modules and "render.ct" not in modules
    assert ("generation.sampling", "sample_batch") not in names
    # the module-level scheme reached both
    legacy = versions._project_imports(
        "cxr_augment.pipelines.classification.nodes", versions.PACKAGE, versions._PACKAGE_ROOT
    )
    assert "cxr_augment.report.study_report" in legacy


def test_node_versions_legacy_and_current_differ_and_are_stable():
    from kedro.pipeline import node

    from cxr_augment.pipelines.classification.nodes import train_classifier

    n = node(train_classifier, ["a", "b", "c", "d", "e", "f"], ["g", "h"], name="t")
    versions.clear_caches()
    current, legacy = versions.node_version(n, {}), versions.node_version(n, {}, legacy=True)
    assert current != legacy
    versions.clear_caches()
    assert versions.node_version(n, {}) == current
    assert versions.node_version(n, {}, legacy=True) == legacy


def test_records_of_the_module_level_scheme_carry_over_while_their_code_holds(
    tmp_path, monkeypatch
):
    import json

    from cxr_augment.orchestration import runner
    from tests.orchestration.test_runner import _run, _setup

    assert _run(tmp_path) == ["double", "plus_one", "in_memory", "final"]
    state = tmp_path / "state.json"
    pipe, catalog = _setup(tmp_path)
    current = runner.fingerprints(pipe, catalog)
    # (written when a source file counted by its size and modification time)
    legacy = runner.fingerprints(pipe, catalog, legacy=True, content=False)
    assert all(current[n] != legacy[n] for n in current)
    # records written by the module-level scheme, the code unchanged since: nothing reruns,
    # and the records are rewritten in the current scheme
    state.write_text(json.dumps(legacy))
    assert _run(tmp_path) == []
    assert json.loads(state.read_text()) == current
    # records of the module-level scheme written before plus_one's code changed: plus_one
    # and what follows rerun
    real = runner.node_version

    def before_the_edit(node, params, legacy=False):
        return real(node, params, legacy) + ("-old" if node.name == "plus_one" else "")

    monkeypatch.setattr(runner, "node_version", before_the_edit)
    recorded_then = runner.fingerprints(pipe, catalog, legacy=True, content=False)
    monkeypatch.undo()
    state.write_text(json.dumps(recorded_then))
    # (no record of the inputs' bytes either, as before the runner kept them: the code
    # change is simulated, so those records would find every input and code unchanged)
    (tmp_path / "state.inputs.json").unlink()
    assert _run(tmp_path) == ["plus_one", "in_memory", "final"]
    assert json.loads(state.read_text()) == current
