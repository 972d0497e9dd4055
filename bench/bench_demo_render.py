"""Benchmark: rendering the demo dataset (images/s, peak memory), against a naive renderer.

    python bench/bench_demo_render.py [--sizes 2500 20000] [--workers 2] [--naive 8]

For each dataset size it builds the projection atlas once, plans the cohort and writes every
image (render + JPEG + file) through the catalog's ``ImageFolderDataset`` into a temporary
folder, sampling the proportional memory (PSS) of this process and its workers every 20 ms.
Beside it, in the same process, the naive way: project the full CT for every image (one
sum along the ray axis, then the same framing and windowing), timed on a few images.
Prints and saves ``bench/results/demo_render.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")

ROOT = Path(__file__).resolve().parents[1]


class PeakMemory:
    """Peak of the summed PSS of this process and its children, sampled in a thread."""

    def __init__(self, period_s: float = 0.05) -> None:
        self.period_s = period_s
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _pss(p) -> int:
        # smaps_rollup is summed by the kernel: far cheaper than parsing smaps (psutil), which
        # would steal the measured run's CPU and GIL
        try:
            with open(f"/proc/{p.pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        return p.memory_full_info().pss

    def _total(self) -> int:
        me = psutil.Process()
        total = 0
        for p in [me, *me.children(recursive=True)]:
            try:
                total += self._pss(p)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._total())
            time.sleep(self.period_s)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._total())


def load_project():
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    bootstrap_project(ROOT)
    session = KedroSession.create(project_path=ROOT, env="base")
    context = session.load_context()
    return context.catalog, context.params


def naive_render(ct, atlas, plan, n: int, height: int, width: int) -> float:
    """Seconds per image when every image projects the whole CT (no atlas)."""
    import cv2

    from cxr_augment.render.ct import AttenuationConfig, attenuation

    att = AttenuationConfig()
    rows = plan.head(n)
    t0 = time.perf_counter()
    for _, row in rows.iterrows():
        soft, b = attenuation(ct.hu, att)
        axis = 1 if row["view"] == "frontal" else 0
        line = (soft + b).sum(axis=axis, dtype=np.float64).T[::-1]
        line = cv2.resize(line.astype(np.float32), (line.shape[1], atlas.geometry.atlas_rows))
        lo, hi = np.percentile(line, [1, 99])
        img = np.clip((line - lo) / (hi - lo), 0, 1)
        img = cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA)
        cv2.imencode(".jpg", (img * 255).astype(np.uint8))
    return (time.perf_counter() - t0) / max(n, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[2500, 20000],
        help="total images (train + valid + test) per run",
    )
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--naive", type=int, default=8, help="images for the naive baseline")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "demo_render.json"))
    args = ap.parse_args()

    from cxr_augment.datasets import ImageFolderDataset
    from cxr_augment.pipelines.demo_data import nodes

    catalog, params = load_project()
    p = params["demo_data"]
    h, w = p["image"]["height"], p["image"]["width"]
    results = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "processor": platform.processor() or platform.machine(),
        },
        "image_size_hw": [h, w],
        "workers": args.workers,
        "runs": [],
    }
    ct_volume, ct_labels = catalog.load("demo_ct"), catalog.load("demo_ct_labels")
    structures = catalog.load("demo_ct_structures")
    for total in args.sizes:
        # valid and test patients are capped by the release's numbering (200 and 500)
        valid = min(200, max(1, total // 12))
        test = min(300, max(1, total // 8))
        sizes = {"train_images": total - valid - test, "valid_images": valid, "test_images": test}
        with PeakMemory() as mem, tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            atlas = nodes.build_projection_atlas(ct_volume, ct_labels, structures, p["atlas"])
            t_atlas = time.perf_counter() - t0
            t0 = time.perf_counter()
            plan = nodes.plan_demo_cohort(atlas, {**p, "sizes": sizes})
            t_plan = time.perf_counter() - t0
            images = nodes.render_demo_images(plan, atlas, p["image"])
            ds = ImageFolderDataset(path=tmp, save_args={"workers": args.workers})
            t0 = time.perf_counter()
            ds.save(images)
            t_render = time.perf_counter() - t0
            n = len(images)
            assert sum(1 for _ in Path(tmp).rglob("*.jpg")) == n
        run = {
            "images": n,
            "atlas_s": round(t_atlas, 2),
            "plan_s": round(t_plan, 2),
            "render_write_s": round(t_render, 2),
            "images_per_s_render": round(n / t_render, 1),
            "images_per_s_end_to_end": round(n / (t_atlas + t_plan + t_render), 1),
            "peak_pss_gib": round(mem.peak / 2**30, 3),
        }
        results["runs"].append(run)
        print(json.dumps(run))
    # the naive baseline, same process: the full CT projected for every image
    from cxr_augment.render.ct import AttenuationConfig, ChestCT, prepare_ct, structure_table

    ct = prepare_ct(
        ChestCT(
            ct_volume["data"],
            ct_labels["data"].astype(np.uint8),
            ct_volume["spacing"],
            structure_table(structures.to_dict("records")),
        ),
        AttenuationConfig(),
    )
    s_per_img = naive_render(ct, atlas, plan, args.naive, h, w)
    results["naive_full_ct_projection"] = {
        "images": args.naive,
        "s_per_image_one_process": round(s_per_img, 3),
        "images_per_s_one_process": round(1.0 / s_per_img, 2),
        "note": "whole-CT projection per image, no findings, no anatomy variation",
    }
    best = results["runs"][0]["images_per_s_render"]
    results["speedup_render_vs_naive_per_process"] = round(best / args.workers * s_per_img, 1)
    results["targets"] = {"images_per_s": ">= 20", "peak_gib": "<= 3"}
    print(json.dumps(results["naive_full_ct_projection"]))
    from _common import save_results  # same folder

    save_results(results, args.out)


if __name__ == "__main__":
    main()
