"""Whether two runs wrote the same outputs: the ``data/`` folders of a Kedro run and a Dagster
run of the same code (or of two machines, two checkouts), file by file.

Each file that both hold is

- *identical*: the same bytes;
- *identical but for inputs' identity*: a JSON file equal to the other once the keys that
  identify the inputs are left out (``INPUT_IDENTITY``: a store's ``fingerprint``, which counts
  its input files' modification times, so two renders of the same images differ there);
- *different*: anything else, with the first differing JSON keys where both are JSON.

Files only one run holds are listed apart (a run still going, a node the other skipped).
Training checkpoints are left out by default: they are a run's resumable state, not its output
(a finished model is ``model.pt`` beside them; a diffusion model's step checkpoints are in
``06_models/generation_checkpoints``, the model in ``06_models/generation``).
``scripts/compare_outputs.py`` prints it.
"""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path
from typing import Any

INPUT_IDENTITY = ("fingerprint", "store_fingerprint")
# a classifier's epoch checkpoints, and a diffusion model's step checkpoints
SKIPPED = ("*/checkpoints/*", "*/generation_checkpoints/*", ".incremental/*", "*.lock")
_CHUNK = 1 << 20


def _files(root: Path, skip: tuple[str, ...]) -> set[str]:
    out = set()
    for p in root.rglob("*"):
        if p.is_file() and not p.is_symlink():
            rel = p.relative_to(root).as_posix()
            if not any(fnmatch.fnmatch(rel, pat) for pat in skip):
                out.add(rel)
    return out


def same_bytes(a: Path, b: Path) -> bool:
    if a.stat().st_size != b.stat().st_size:
        return False
    with a.open("rb") as fa, b.open("rb") as fb:
        while True:
            x, y = fa.read(_CHUNK), fb.read(_CHUNK)
            if x != y:
                return False
            if not x:
                return True


def json_differences(x, y, ignore: tuple[str, ...] = (), at: str = "") -> list[str]:
    """The paths (``a.b[2].c``) at which two JSON values differ, keys in ``ignore`` left out
    at every depth."""
    if isinstance(x, dict) and isinstance(y, dict):
        out = []
        for k in sorted(set(x) | set(y), key=str):
            if k in ignore:
                continue
            where = f"{at}.{k}" if at else str(k)
            if k not in x or k not in y:
                out.append(where)
            else:
                out += json_differences(x[k], y[k], ignore, where)
        return out
    if isinstance(x, list) and isinstance(y, list):
        if len(x) != len(y):
            return [f"{at}[len]"]
        out = []
        for i, (u, v) in enumerate(zip(x, y, strict=True)):
            out += json_differences(u, v, ignore, f"{at}[{i}]")
        return out
    return [] if x == y else [at or "(value)"]


def _read_json(path: Path) -> tuple[Any, str | None]:
    """(value, None), or (None, why) for a file that is not JSON (truncated, say): reported
    as a difference with its reason, never taken as equal."""
    try:
        return json.loads(path.read_text(encoding="utf-8")), None
    except (UnicodeDecodeError, ValueError) as err:
        return None, f"{path.name} is not JSON: {err}"


def compare_outputs(
    a: str | Path,
    b: str | Path,
    skip: tuple[str, ...] = SKIPPED,
    ignore_keys: tuple[str, ...] = INPUT_IDENTITY,
) -> dict:
    """Compare the files under ``a`` and ``b`` (module doc).

    Returns:
        ``identical``, ``identical_but_inputs`` (path -> the ignored keys that differ),
        ``different`` (path -> differing JSON keys, or ``["bytes"]``), ``only_a``, ``only_b``:
        relative paths, sorted.
    """
    a, b = Path(a), Path(b)
    for root in (a, b):
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: not a folder (the data/ folder of a run)")
    fa, fb = _files(a, skip), _files(b, skip)
    out: dict = {
        "identical": [],
        "identical_but_inputs": {},
        "different": {},
        "only_a": sorted(fa - fb),
        "only_b": sorted(fb - fa),
    }
    for rel in sorted(fa & fb):
        pa, pb = a / rel, b / rel
        if same_bytes(pa, pb):
            out["identical"].append(rel)
            continue
        if not rel.endswith(".json"):
            out["different"][rel] = ["bytes"]
            continue
        (ja, ea), (jb, eb) = _read_json(pa), _read_json(pb)
        if ea or eb:
            out["different"][rel] = [f"{side}: {e}" for side, e in (("a", ea), ("b", eb)) if e]
            continue
        rest = json_differences(ja, jb, ignore_keys)
        if rest:
            out["different"][rel] = rest[:5]
        else:
            out["identical_but_inputs"][rel] = [
                k for k in json_differences(ja, jb) if k.rsplit(".", 1)[-1] in ignore_keys
            ]
    return out
