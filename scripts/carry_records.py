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


def fingerprints_at(project: Path, env: str, pipelines: str, src: Path) -> dict[str, str]:
    """Every node's fingerprint with ``src`` as the package's source, run in ``project``."""
    out = subprocess.run(
        [sys.executable, "-c", FINGERPRINTS, env, pipelines],
        cwd=project, capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": str(src), "KEDRO_DISABLE_TELEMETRY": "true",
             **({"KEDRO_ENV": env} if env else {})},
    )  # fmt: skip
    found = [line for line in out.stdout.splitlines() if line.startswith("FINGERPRINTS ")]
    if out.returncode != 0 or not found:
        tail = "\n".join((out.stderr or out.stdout).strip().splitlines()[-15:])
        raise SystemExit(f"fingerprints in {project} failed:\n{tail}")
    return json.loads(found[-1].removeprefix("FINGERPRINTS "))


def earlier_fingerprints(rev: str, env: str, pipelines: str) -> dict[str, str]:
    """The fingerprints under ``rev``'s code: a detached worktree of it whose ``data/`` (and
    ``conf/local``) are this project's, removed afterwards."""
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
        return fingerprints_at(tree, env, pipelines, tree / "src")
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
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT / "src"))
    from cxr_augment.orchestration.runner import _exclusive, _read, _write, carry_from

    state = args.state if args.state.is_absolute() else ROOT / args.state
    with _exclusive(state):  # no run may write the records meanwhile
        earlier = earlier_fingerprints(args.rev, args.env, args.pipelines)
        current = fingerprints_at(ROOT, args.env, args.pipelines, ROOT / "src")
        before = _read(state)
        records, moved = carry_from(before, earlier, current)
        changed = subprocess.run(
            ["git", "diff", "--stat", args.rev, "--", "src", "conf"],
            cwd=ROOT, capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
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


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
