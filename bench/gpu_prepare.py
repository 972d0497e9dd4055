"""Prepare the GPU check for a CUDA machine that holds PyTorch but not this project's other
packages, and has no network: wheels of what it lacks, and a few demo images.

    python bench/gpu_prepare.py [--python-version 3.12] [--images 300]

- ``.whl/``: the wheels (pure Python, this environment's versions) of the distributions
  ``bench/gpu_check.sh`` needs that ``bench/gpu_image_packages.txt`` (the machine's own list)
  lacks or holds at a version they do not accept, downloaded with pip for the machine's
  Python (``--unmet``, there, lists what is still unmet);
- ``bench/.cache/demo_gpu``: the first ``--images`` training images of the demo dataset
  (``make run`` renders it), for bench_training.py's tensor store.

Then, on the CUDA machine, from the repository root with both folders beside it:
``bash bench/gpu_check.sh`` (results in ``$OUT`` or ``bench/results``).
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import re
import shutil
import subprocess
import sys
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
WHEELS = ROOT / ".whl"
DEMO = ROOT / "bench/.cache/demo_gpu"
# what the check imports beyond PyTorch's image: the generators and schedulers (diffusers),
# FID, and the catalog datasets (kedro, and nibabel for the CT) that bench_training's store is
# built through
NEEDS = ("diffusers", "kedro", "kedro-datasets", "nibabel", "omegaconf", "pytorch-fid")
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def image_packages(path: Path = ROOT / "bench/gpu_image_packages.txt") -> dict[str, str | None]:
    """The image's distributions: name -> version (None where the list gives none)."""
    out: dict[str, str | None] = {}
    for line in path.read_text().splitlines():
        name, _, version = line.split("#")[0].strip().partition("==")
        if name:
            out[norm(name)] = version or None
    return out


def _environment(python_version: str) -> dict:
    return {"python_version": python_version, "python_full_version": f"{python_version}.0",
            "sys_platform": "linux", "platform_system": "Linux", "os_name": "posix",
            "platform_machine": "x86_64", "implementation_name": "cpython",
            "platform_python_implementation": "CPython", "extra": ""}  # fmt: skip


def needed(
    python_version: str = "3.12", have: dict[str, str | None] | None = None
) -> list[tuple[str, str]]:
    """(distribution, installed version) of ``NEEDS`` and of what they require, recursively,
    for ``python_version`` on Linux, less what the image has: a requirement the image holds
    is taken from it unless its listed version does not meet the requirement."""
    have = image_packages() if have is None else have
    env = _environment(python_version)
    found: dict[str, str] = {}
    todo = [Requirement(n) for n in NEEDS]
    while todo:
        req = todo.pop()
        name = norm(req.name)
        if name in found:
            continue
        if name in have and (have[name] is None or req.specifier.contains(have[name], True)):
            continue
        try:
            found[name] = md.version(name)
        except md.PackageNotFoundError as exc:
            raise SystemExit(f"{name} is not installed here: run `make install` first") from exc
        for text in md.requires(name) or []:
            sub = Requirement(text)
            if sub.marker is None or Marker(str(sub.marker)).evaluate(env):
                todo.append(sub)
    return sorted(found.items())


def unmet() -> list[str]:
    """On the machine itself: every requirement of ``NEEDS``, recursively (markers as this
    Python reads them), that no installed distribution meets."""
    problems, seen = [], set()
    todo = [Requirement(n) for n in NEEDS]
    while todo:
        req = todo.pop()
        if (norm(req.name), str(req.specifier)) in seen:
            continue
        seen.add((norm(req.name), str(req.specifier)))
        try:
            version = md.version(req.name)
        except md.PackageNotFoundError:
            problems.append(f"{req}: not installed")
            continue
        if not req.specifier.contains(version, True):
            problems.append(f"{req}: {version} installed")
        for text in md.requires(req.name) or []:
            sub = Requirement(text)
            if sub.marker is None or sub.marker.evaluate({"extra": ""}):
                todo.append(sub)
    return sorted(problems)


def download(dists: list[tuple[str, str]], python_version: str) -> list[Path]:
    """The wheels of ``dists`` into .whl/ (one version each: stale ones removed)."""
    WHEELS.mkdir(exist_ok=True)
    platforms = [a for p in PLATFORMS for a in ("--platform", p)]
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
           "--python-version", python_version, "--implementation", "cp", *platforms,
           "-d", str(WHEELS), *(f"{n}=={v}" for n, v in dists)]  # fmt: skip
    subprocess.run(cmd, check=True)
    wanted = {(norm(n), v) for n, v in dists}
    kept = []
    for wheel in sorted(WHEELS.glob("*.whl")):
        name, version = wheel.name.split("-")[:2]
        if (norm(name), version) in wanted:
            kept.append(wheel)
        else:
            wheel.unlink()
    missing = wanted - {(norm(w.name.split("-")[0]), w.name.split("-")[1]) for w in kept}
    if missing:
        raise SystemExit(f"pip saved no wheel for {sorted(missing)}")
    return kept


def demo_images(n: int) -> Path:
    """The demo's first ``n`` training images (sorted paths) into bench/.cache/demo_gpu."""
    for source in (ROOT / "data/01_raw/chexpert_demo", ROOT / "bench/.cache/demo_2500"):
        if (source / "CheXpert-v1.0-small/train").exists():
            break
    else:
        raise SystemExit("no demo images: run `make run` first")
    files = sorted((source / "CheXpert-v1.0-small/train").rglob("*.jpg"))[:n]
    if len(files) < n:
        raise SystemExit(f"{source} holds {len(files)} training images, fewer than {n}")
    tmp = DEMO.with_name(DEMO.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    for f in files:
        dest = tmp / f.relative_to(source)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, dest)
    shutil.rmtree(DEMO, ignore_errors=True)
    tmp.rename(DEMO)
    return DEMO


def size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--python-version", default="3.12")
    ap.add_argument("--images", type=int, default=300)
    ap.add_argument(
        "--unmet", action="store_true", help="on the machine: list the check's unmet requirements"
    )
    args = ap.parse_args()
    if args.unmet:
        problems = unmet()
        print("requirements of " + ", ".join(NEEDS) + ": " + ("; ".join(problems) or "all met"))
        return
    dists = needed(args.python_version)
    wheels = download(dists, args.python_version)
    demo = demo_images(args.images)
    total = size(WHEELS) + size(demo)
    print(
        f"{len(wheels)} wheels in {WHEELS.relative_to(ROOT)}: " + ", ".join(w.name for w in wheels)
    )
    print(f"{args.images} demo images in {demo.relative_to(ROOT)}")
    print(f"{total / 2**20:.1f} MiB for the CUDA machine: .whl and bench/.cache/demo_gpu")


if __name__ == "__main__":
    main()
