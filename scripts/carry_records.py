"""Carry the incremental runner's records over from an earlier code to the current one, for a
change that cannot change the results (an error message, a comment the code versions see).

    python scripts/carry_records.py REV [--env study] \\
        [--pipelines demo_data,preprocessing,generation,classification,augmentation] \\
        [--state data/.incremental/nodes.json] [--apply]

The runner reruns a node when its fingerprint changed, and its code versions count
conservatively (README: Code versions): editing a message in a dataset class changes the
version of every classifier training, whose checkpoints are gone once it finished, so each
trains again. A run also records each node under the code it started with, so code committed
while a long run goes on leaves its later records under the old code.

This computes every node's fingerprint under the code of git revision ``REV`` (a temporary
worktree of it, reading this project's ``data/`` and ``conf/local``) and under the code as it
is now, on the same data, for the pipelines the records were made with (``--pipelines``, as
given to ``kedro run``; default ``__default__``) and environment (``--env``). A record equal to
``REV``'s fingerprint and not to the current one is one this change made stale. It prints the
files that differ between ``REV`` and now and those nodes by kind; ``--apply`` writes their
current fingerprints into the records, so the next run takes them as up to date. Whether the
change can alter their results is yours to judge from that list: carry nothing over after a
change that can. Refused while a run holds the records.

``--dagster`` does the same for the Dagster instance in ``DAGSTER_HOME`` (``make dagster``'s:
``$PWD/.dagster_home``): it computes every asset's code version under ``REV`` and now, lists the
assets whose latest materialisation was recorded under ``REV``'s version and would show as
unsynced now, and ``--apply`` reports each again under the current code version
(``cxr_augment/orchestration/carry.py``); ``--skip PATTERN`` (repeatable) leaves out the
assets whose key matches, those whose results the change can alter. There ``REV`` may also be
a folder holding the earlier copy of the project (its ``src/`` and ``conf/``), such as a
worktree a study ran from. Refused while a run of the instance is in progress.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# run under each code, with only what every revision of the project has
FINGERPRINTS = r"""
import json, os, sys
from pathlib import Path
from kedro.framework.project import pipelines
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
bootstrap_project(Path.cwd())
from cxr_augment.orchestration.runner import fingerprints
names = [n for n in sys.argv[2].split(",") if n]
pipeline = sum((pipelines[n] for n in names[1:]), start=pipelines[names[0]])
with KedroSession.create(env=sys.argv[1] or None) as session:
    catalog = session.load_context().catalog
    print("FINGERPRINTS " + json.dumps(fingerprints(pipeline, catalog)))
"""


# orchestration/carry.py's code_versions, inline: an earlier revision may predate that module
CODE_VERSIONS = r"""
import json
from cxr_augment.definitions import defs
graph = defs.resolve_asset_graph()
versions = {k.to_user_string(): graph.get(k).code_version for k in graph.materializable_asset_keys}
print("CODE_VERSIONS " + json.dumps({k: v for k, v in versions.items() if v is not None}))
"""


def _run_in(project: Path, env: str, src: Path, script: str, marker: str, *args: str) -> dict:
    """What ``script`` prints after ``marker``, run in ``project`` with ``src`` as the package's
    source."""
    out = subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=project, capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": str(src), "KEDRO_DISABLE_TELEMETRY": "true",
             **({"KEDRO_ENV": env} if env else {})},
    )  # fmt: skip
    found = [line for line in out.stdout.splitlines() if line.startswith(marker + " ")]
    if out.returncode != 0 or not found:
        tail = "\n".join((out.stderr or out.stdout).strip().splitlines()[-15:])
        raise SystemExit(f"{marker.lower()} in {project} failed:\n{tail}")
    return json.loads(found[-1].removeprefix(marker + " "))


def fingerprints_at(project: Path, env: str, pipelines: str, src: Path) -> dict[str, str]:
    """Every node's fingerprint with ``src`` as the package's source, run in ``project``."""
    return _run_in(project, env, src, FINGERPRINTS, "FINGERPRINTS", env, pipelines)


def code_versions_at(project: Path, env: str, src: Path) -> dict[str, str]:
    """Every Dagster asset's code version with ``src`` as the package's source."""
    return _run_in(project, env, src, CODE_VERSIONS, "CODE_VERSIONS")


def earlier_fingerprints(rev: str, env: str, pipelines: str) -> dict[str, str]:
    """The fingerprints under ``rev``'s code."""
    return at_revision(rev, lambda tree: fingerprints_at(tree, env, pipelines, tree / "src"))


def at_revision(rev: str, compute):
    """``compute(tree)`` in a detached worktree of ``rev`` whose ``data/`` (and ``conf/local``)
    are this project's, removed afterwards."""
    tmp = Path(tempfile.mkdtemp(prefix="carry-records-"))
    tree = tmp / "tree"
    subprocess.run(["git", "worktree", "add", "--detach", "-q", str(tree), rev],
                   cwd=ROOT, check=True)  # fmt: skip
    try:
        for shared in ("data", "conf/local"):
            if (ROOT / shared).exists():
                if (tree / shared).is_dir() and not (tree / shared).is_symlink():
                    shutil.rmtree(tree / shared)  # the revision's own (empty) folder
                (tree / shared).symlink_to(ROOT / shared, target_is_directory=True)
        return compute(tree)
    finally:
        for shared in ("data", "conf/local"):
            if (tree / shared).is_symlink():
                (tree / shared).unlink()  # before the worktree goes: never through the link
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT,
                       check=False)  # fmt: skip
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("rev", help="the git revision whose code made the records")
    ap.add_argument("--env", default=os.environ.get("KEDRO_ENV", ""))
    ap.add_argument("--pipelines", default="__default__")
    ap.add_argument("--state", type=Path, default=Path("data/.incremental/nodes.json"))
    ap.add_argument("--apply", action="store_true", help="write the records (default: list)")
    ap.add_argument(
        "--dagster",
        action="store_true",
        help="carry the materialisations of the Dagster instance in DAGSTER_HOME",
    )
    ap.add_argument("--skip", action="append", default=[], metavar="PATTERN",
                    help="with --dagster: leave out the assets whose key matches (study/report/*)")  # fmt: skip
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT / "src"))
    if args.dagster:
        return carry_dagster(args)
    if Path(args.rev).is_dir():
        ap.error("a folder as REV is for --dagster; the records take a git revision")
    from cxr_augment.orchestration.runner import _exclusive, _read, _write, carry_from

    state = args.state if args.state.is_absolute() else ROOT / args.state
    with _exclusive(state):  # no run may write the records meanwhile
        earlier = earlier_fingerprints(args.rev, args.env, args.pipelines)
        current = fingerprints_at(ROOT, args.env, args.pipelines, ROOT / "src")
        before = _read(state)
        records, moved = carry_from(before, earlier, current)
        changed = _changed(args.rev)
        print(f"code and configuration changed since {args.rev}:\n{changed or '  nothing'}")
        kinds = collections.Counter(n.rsplit(".", 1)[-1] for n in moved)
        print(f"{len(moved)} of {len(before)} records in {state} were made under "
              f"{args.rev}'s code and are stale under the current code:")  # fmt: skip
        for kind, k in kinds.most_common():
            print(f"  {kind:32s} {k:5d}")
        if moved and args.apply:
            _write(state, records)
            print(f"carried over: the next run takes these {len(moved)} nodes as up to date")
        elif moved:
            print("nothing written: --apply carries them over, if the change above cannot "
                  "alter their results")  # fmt: skip
    return 0


def _differing(folder: Path) -> list[str]:
    """The files of ``src/`` and ``conf/`` (its sources and settings) that differ between
    ``folder`` and this project, or are in one of them only."""

    def files(root: Path) -> dict[str, bytes]:
        return {
            str(p.relative_to(root)): p.read_bytes()
            for part in ("src", "conf")
            for p in (root / part).rglob("*")
            if p.suffix in {".py", ".yml", ".yaml", ".json"} and p.is_file()
            and "__pycache__" not in p.parts and ".egg-info" not in str(p)
        }  # fmt: skip

    a, b = files(folder), files(ROOT)
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))


def _changed(rev: str) -> str:
    if Path(rev).is_dir():
        return "".join(f"  {path}\n" for path in _differing(Path(rev)))
    return subprocess.run(
        ["git", "diff", "--stat", rev, "--", "src", "conf"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip


def carry_dagster(args) -> int:
    if not os.environ.get("DAGSTER_HOME"):
        raise SystemExit("set DAGSTER_HOME to the instance (make dagster's: $PWD/.dagster_home)")
    from dagster import DagsterInstance

    from cxr_augment.orchestration.carry import carry, runs_in_progress, to_carry

    if Path(args.rev).is_dir():
        folder = Path(args.rev).resolve()
        earlier = code_versions_at(folder, args.env, folder / "src")
    else:
        earlier = at_revision(args.rev, lambda tree: code_versions_at(tree, args.env, tree / "src"))
    current = code_versions_at(ROOT, args.env, ROOT / "src")
    with DagsterInstance.get() as instance:
        running = runs_in_progress(instance)
        if running:
            raise SystemExit(
                f"{len(running)} run(s) of the instance are in progress ({', '.join(running[:3])}"
                "): carry once they have ended (a run whose process is gone shows as in progress "
                "until `python -m cxr_augment.orchestration.resume` marks it failed)"
            )
        keys = to_carry(instance, earlier, current, args.skip)
        print(
            f"code and configuration changed since {args.rev}:\n{_changed(args.rev) or '  nothing'}"
        )
        print(f"{len(keys)} of {len(current)} assets were materialised under {args.rev}'s code "
              "and show as unsynced under the current code:")  # fmt: skip
        kinds = collections.defaultdict(list)
        for key in keys:
            kinds[key.path[-1].rsplit("__", 1)[-1]].append(key.to_user_string())
        for kind, names in sorted(kinds.items(), key=lambda kv: -len(kv[1])):
            few = f"  ({', '.join(names)})" if len(names) <= 3 else ""
            print(f"  {kind:32s} {len(names):5d}{few}")
        if keys and args.apply:
            done = carry(instance, keys, earlier, current, args.rev)
            print(f"carried over: {len(done)} assets now show as up to date")
            for key in sorted(set(keys) - set(done), key=lambda k: k.to_user_string()):
                print(f"  not carried, made again since the listing: {key.to_user_string()}")
        elif keys:
            print("nothing written: --apply carries them over, if the change above cannot "
                  "alter their results")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
