"""The patient bootstrap: the vectorised resampler against a loop over resamples.

The baseline is the straightforward implementation: each resample draws patients, gathers
their images and computes every metric with ``metrics.point_metrics`` (scikit-learn's
average precision for PR AUC). Ours computes all resamples of a block from one weight matrix
(``classify/bootstrap.py``). Both run here on the same data, sized like the official test set
(234 images, ~200 patients) and like the internal 20 % split of a download (44,683 images,
~13,000 patients; fewer resamples for the loop, rates compared per resample).

    .venv/bin/python bench/bench_statistics.py     # -> bench/results/statistics.json
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import ROOT, save_results

from cxr_augment.classify import bootstrap, metrics


def loop_bootstrap(y, p, patients, threshold, resamples, seed):
    uniq, inv = np.unique(patients, return_inverse=True)
    groups = [np.flatnonzero(inv == g) for g in range(len(uniq))]
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(resamples):
        idx = np.concatenate([groups[g] for g in rng.integers(0, len(groups), len(groups))])
        if 0 < y[idx].sum() < len(idx):
            out.append(metrics.point_metrics(y[idx], p[idx], threshold))
    return out


def case(n_images: int, n_patients: int, resamples: int, loop_resamples: int) -> dict:
    rng = np.random.default_rng(0)
    patients = np.sort(rng.integers(0, n_patients, n_images))
    y = (rng.random(n_images) < 0.1).astype(int)
    p = np.round(np.clip(0.3 * y + rng.random(n_images) * 0.8, 0, 1), 3)
    ev = bootstrap.Evaluation(y, p[None], patients, [0.5])
    t = time.perf_counter()
    bootstrap.metric_cis(ev, resamples, 1)
    ours = (time.perf_counter() - t) / resamples
    t = time.perf_counter()
    loop_bootstrap(y, p, patients, 0.5, loop_resamples, 1)
    base = (time.perf_counter() - t) / loop_resamples
    return {
        "images": n_images,
        "patients": n_patients,
        "ours_ms_per_resample": 1e3 * ours,
        "loop_ms_per_resample": 1e3 * base,
        "speedup": base / ours,
        "ours_seconds_for_2000": 2000 * ours,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(ROOT / "bench/results/statistics.json"))
    args = ap.parse_args()
    results = {
        "official_test_size": case(234, 200, 2000, 300),
        "internal_test_size": case(44_683, 13_000, 256, 10),
    }
    for k, v in results.items():
        print(k, {a: round(b, 3) if isinstance(b, float) else b for a, b in v.items()})
    save_results(results, args.out)


if __name__ == "__main__":
    main()
