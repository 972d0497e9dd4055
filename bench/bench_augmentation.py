"""Benchmark: the thesis's eight augmentations against albumentations, same images, same process.

    pip install -e ".[bench]"          # albumentations (make bench does it)
    python bench/bench_augmentation.py [--images 200] [--repeats 3]

Both libraries run single-threaded (OpenCV at one thread) on the same 389 x 320 uint8 demo
images with the thesis's settings (rotation +-90 nearest fill, a vertical or horizontal flip,
shift up to 0.2 with zero fill, shear 0-15, random crop 256 x 256 resized back, Gaussian or
pepper noise, Gaussian blur 11 x 11 sigma 10, brightness and contrast factors 1-2), each
method alone and all eight in a row; the best of ``--repeats`` timings. Target: at least 1.5
times albumentations' images/s per core. The batched tensor path (``transforms_torch``) is
timed too, on the GPU when there is one. Prints and saves bench/results/augmentation.json.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
ROOT = Path(__file__).resolve().parents[1]

from _common import demo_train_files, save_results  # noqa: E402  (same folder)

from cxr_augment.transforms import THESIS_METHODS as EIGHT  # noqa: E402


def images(n: int) -> list[np.ndarray]:
    from cxr_augment import imaging

    files, keys = demo_train_files(n)
    return [imaging.resize(imaging.decode_grey(files[k].read_bytes()), 389, 320) for k in keys]


def albumentations_pipelines():
    import albumentations as A
    import cv2

    methods = {
        "rotation": A.Rotate(limit=90, border_mode=cv2.BORDER_REPLICATE, p=1.0),
        "flipping": A.OneOf([A.HorizontalFlip(p=1.0), A.VerticalFlip(p=1.0)], p=1.0),
        "translation": A.Affine(
            translate_percent=(-0.2, 0.2), border_mode=cv2.BORDER_CONSTANT, fill=0, p=1.0
        ),
        "shearing": A.Affine(shear=(-15, 15), border_mode=cv2.BORDER_REPLICATE, p=1.0),
        "cropping": A.Compose([A.RandomCrop(256, 256, p=1.0), A.Resize(389, 320, p=1.0)]),
        "noise": A.OneOf(
            [
                A.GaussNoise(std_range=(0.0, np.sqrt(0.5) * 30 / 255), p=1.0),
                A.SaltAndPepper(amount=(0.02, 0.02), salt_vs_pepper=(0.0, 0.0), p=1.0),
            ],
            p=1.0,
        ),
        "blurring": A.GaussianBlur(blur_limit=(11, 11), sigma_limit=(10, 10), p=1.0),
        "colouring": A.RandomBrightnessContrast(
            brightness_limit=(0.0, 1.0), contrast_limit=(0.0, 1.0), p=1.0
        ),
    }
    methods["all eight"] = A.Compose([methods[m] for m in EIGHT])
    return {k: (lambda t: lambda img: t(image=img)["image"])(v) for k, v in methods.items()}


def ours_pipelines(seed: int = 0):
    from cxr_augment import transforms as tf

    out = {}

    def first(t):
        return lambda img: t(img)[0]

    for m in EIGHT:
        out[m] = first(tf.build(m, seed=seed))
    allt = tf.build(list(EIGHT), seed=seed)
    out["all eight"] = lambda img: allt(img)[0]
    return out


def rate(fn, imgs, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for img in imgs:
            fn(img)
        best = min(best, time.perf_counter() - t0)
    return len(imgs) / best


def batched(imgs, repeats: int) -> dict:
    import torch

    from cxr_augment.transforms_torch import BatchAugment

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    x = torch.from_numpy(np.stack(imgs)).unsqueeze(1).to(device).float().div_(255)
    aug = BatchAugment(list(EIGHT))
    g = torch.Generator(device=device).manual_seed(0)
    aug(x[:8], g)  # warm up
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        aug(x, g)
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return {
        "device": str(device),
        "threads": torch.get_num_threads(),
        "images_per_s": round(len(imgs) / best, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "augmentation.json"))
    args = ap.parse_args()

    import cv2

    import cxr_augment  # noqa: F401  (sets OpenCV to one thread)

    cv2.setNumThreads(1)
    imgs = images(args.images)
    alb, ours = albumentations_pipelines(), ours_pipelines()
    results = {
        "images": len(imgs),
        "size_hw": [389, 320],
        "python": platform.python_version(),
        "opencv_threads": cv2.getNumThreads(),
        "per_core_images_per_s": {},
    }
    for name in [*EIGHT, "all eight"]:
        a = rate(alb[name], imgs, args.repeats)
        o = rate(ours[name], imgs, args.repeats)
        results["per_core_images_per_s"][name] = {
            "albumentations": round(a, 1),
            "cxr_augment": round(o, 1),
            "ratio": round(o / a, 2),
        }
        print(
            f"{name:12s} albumentations {a:9.1f}/s   cxr_augment {o:9.1f}/s   x{o / a:.2f}",
            flush=True,
        )
    import torch

    torch.set_num_threads(1)
    results["batched_tensor_path"] = batched(imgs, args.repeats)
    print("batched", results["batched_tensor_path"])
    ratios = [v["ratio"] for v in results["per_core_images_per_s"].values()]
    results["min_ratio"] = min(ratios)
    results["target"] = ">= 1.5 x albumentations per core"
    save_results(results, args.out)


if __name__ == "__main__":
    main()
