"""Benchmark: the whole preprocessing against the raw decode floor, and its memory.

    python bench/bench_preprocessing.py [--sizes 2500 50000] [--workers 2]

For each size, a demo dataset of that many images is rendered once into bench/.cache/
(reused by later runs). Then, in this process:

- the floor: a decode-only loop (read the file, ``cv2.imdecode``) over the same files, one core;
- the pipeline: ``preprocessing`` run with Kedro's SequentialRunner, with the project's
  start-of-run hook (gc.freeze of the start-up objects) as ``kedro run`` has it (validation, label
  policies, patient split, strict decode + resize into the tensor store with ``--workers``
  processes, manifest), wall time and CPU time (this process and its workers);
- the memory: one more pipeline run, untimed, with the summed PSS of the process tree sampled
  every 50 ms (from /proc/<pid>/smaps_rollup).

Two ratios to the floor: images/s per available core (wall clock / workers: the serial
validation and bookkeeping count against it), and images per CPU-second actually used. The
target: >= 90 % of the floor per core used, and peak memory flat in the dataset size and
<= 2 GiB. This machine is shared, so each figure is the best of two interleaved runs.
Prints and saves bench/results/preprocessing.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

import pandas as pd

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "bench" / ".cache"
TEXT = {"dtype": str, "keep_default_na": False}


def render_demo(total: int, catalog, params) -> Path:
    """A demo dataset of ``total`` images in bench/.cache (rendered once)."""
    from cxr_augment.datasets import ImageFolderDataset
    from cxr_augment.pipelines.demo_data import nodes
    from cxr_augment.render import export

    folder = CACHE / f"demo_{total}"
    if (folder / "done.json").exists():
        return folder
    p = params["demo_data"]
    valid, test = min(200, total // 12), min(300, total // 8)
    sizes = {"train_images": total - valid - test, "valid_images": valid, "test_images": test}
    atlas = nodes.build_projection_atlas(
        catalog.load("demo_ct"),
        catalog.load("demo_ct_labels"),
        catalog.load("demo_ct_structures"),
        p["atlas"],
    )
    plan = nodes.plan_demo_cohort(atlas, {**p, "sizes": sizes})
    ImageFolderDataset(path=str(folder), save_args={"workers": 2}).save(
        nodes.render_demo_images(plan, atlas, p["image"])
    )
    export.chexpert_csv(plan, "train").to_csv(folder / "CheXpert-v1.0-small/train.csv", index=False)
    export.chexpert_csv(plan, "valid").to_csv(folder / "CheXpert-v1.0-small/valid.csv", index=False)
    export.groundtruth_csv(plan).to_csv(folder / "groundtruth.csv", index=False)
    (folder / "done.json").write_text(json.dumps({"images": len(plan)}))
    return folder


def decode_floor(folder: Path, keys: list[str]) -> float:
    """Images/s of read + plain decode, one process."""
    from cxr_augment.preprocess.imaging import decode_floor as decode

    t0 = time.perf_counter()
    for key in keys:
        decode((folder / key).read_bytes())
    return len(keys) / (time.perf_counter() - t0)


def _cpu_s() -> float:
    """CPU seconds used so far by this process and its finished children."""
    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def run_preprocessing(
    folder: Path, out: Path, params: dict, workers: int
) -> tuple[float, float, int]:
    from kedro.io import DataCatalog, MemoryDataset
    from kedro.runner import SequentialRunner
    from kedro_datasets.pandas import CSVDataset

    from cxr_augment.datasets import ImageFolderDataset, TensorStoreDataset
    from cxr_augment.pipelines.preprocessing import create_pipeline

    pp = params["preprocessing"]
    catalog = DataCatalog(
        {
            "chexpert_train_csv": CSVDataset(
                filepath=str(folder / "CheXpert-v1.0-small/train.csv"), load_args=TEXT
            ),
            "chexpert_valid_csv": CSVDataset(
                filepath=str(folder / "CheXpert-v1.0-small/valid.csv"), load_args=TEXT
            ),
            "chexpert_groundtruth_csv": CSVDataset(
                filepath=str(folder / "groundtruth.csv"), load_args=TEXT
            ),
            "chexpert_images": ImageFolderDataset(path=str(folder)),
            "chexpert_truth": MemoryDataset(None),
            "params:preprocessing": MemoryDataset(pp),
            "params:preprocessing.labels": MemoryDataset(pp["labels"]),
            "params:preprocessing.split": MemoryDataset(pp["split"]),
            "params:preprocessing.images": MemoryDataset(pp["images"]),
            "params:preprocessing.masks": MemoryDataset(pp["masks"]),
            "tensor_store": TensorStoreDataset(
                path=str(out / "store"), save_args={"workers": workers}
            ),
        }
    )
    import gc

    from cxr_augment.hooks import freeze_startup_objects

    t0, c0 = time.perf_counter(), _cpu_s()
    freeze_startup_objects()  # what the project's before_pipeline_run hook does in `kedro run`
    try:
        SequentialRunner().run(create_pipeline(), catalog)
    finally:
        gc.unfreeze()
    elapsed, cpu = time.perf_counter() - t0, _cpu_s() - c0
    return elapsed, cpu, len(catalog.load("tensor_store"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[2500, 50000])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument(
        "--size",
        type=int,
        nargs=2,
        default=None,
        metavar=("H", "W"),
        help="store image size (default: the parameters'; the thesis used 389 320)",
    )
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "preprocessing.json"))
    args = ap.parse_args()

    from bench_demo_render import PeakMemory, load_project  # same folder

    catalog, params = load_project()
    if args.size:
        params["preprocessing"]["images"]["size"] = list(args.size)
    results = {
        "workers": args.workers,
        "store_size_hw": params["preprocessing"]["images"]["size"],
        "cpus": os.cpu_count(),
        "runs": [],
    }
    for total in args.sizes:
        folder = render_demo(total, catalog, params)
        keys = pd.concat(
            [
                pd.read_csv(folder / "CheXpert-v1.0-small/train.csv", usecols=["Path"]),
                pd.read_csv(folder / "CheXpert-v1.0-small/valid.csv", usecols=["Path"]),
            ]
        )["Path"].tolist()
        decode_floor(folder, keys[: min(500, len(keys))])  # warm the page cache for both
        # this machine is shared: best of two for the floor and for the pipeline, interleaved
        floors, times, cpus = [], [], []
        for _ in range(2):
            floors.append(decode_floor(folder, keys))
            with tempfile.TemporaryDirectory() as tmp:
                elapsed, cpu, stored = run_preprocessing(folder, Path(tmp), params, args.workers)
            times.append(elapsed)
            cpus.append(cpu)
        # memory in a run of its own: the sampler's reads would slow the timed runs
        with tempfile.TemporaryDirectory() as tmp, PeakMemory() as mem:
            run_preprocessing(folder, Path(tmp), params, args.workers)
        peak = mem.peak
        floor, elapsed, cpu = max(floors), min(times), min(cpus)
        per_core = stored / elapsed / args.workers
        run = {
            "images": stored,
            "decode_floor_images_per_s_one_core": round(floor, 1),
            "pipeline_s": round(elapsed, 2),
            "pipeline_images_per_s": round(stored / elapsed, 1),
            "pipeline_images_per_s_per_core": round(per_core, 1),
            "ratio_to_floor_per_core": round(per_core / floor, 3),
            "pipeline_cpu_s": round(cpu, 2),
            "pipeline_images_per_cpu_s": round(stored / cpu, 1),
            "ratio_to_floor_per_cpu_s": round(stored / cpu / floor, 3),
            "peak_pss_gib": round(peak / 2**30, 3),
            "all_floor_runs": [round(f, 1) for f in floors],
            "all_pipeline_s": [round(t, 2) for t in times],
        }
        results["runs"].append(run)
        print(json.dumps(run), flush=True)
    results["targets"] = {"ratio_to_floor_per_core": ">= 0.9", "peak_pss_gib": "<= 2, flat"}
    from _common import save_results  # same folder

    save_results(results, args.out)


if __name__ == "__main__":
    main()
