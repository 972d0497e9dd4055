"""Benchmark: classifier training images/s, end to end (tensor store -> loader -> step).

    python bench/bench_training.py [--images 256] [--steps 12] [--model densenet121] [--demo-only]

At the thesis's 389 x 320, in one process:

- ``thesis``: fp32, batch 16, NCHW, the loader in the training process (the thesis's setting,
  and the baseline on a GPU: 249 images/s on an H200 in shared/benchmarks/anchors.md);
- ``tuned``: on CUDA, bf16 autocast + channels_last + batch 128 + fused Adam + loader workers
  with pinned memory (and ``--compile``); on CPU the same code path with the CPU's choices;
- ``compute_only``: the tuned step on a batch already on the device: what the loader must keep
  up with (loader efficiency = tuned / compute_only, target >= 0.9 on a GPU).

And the project's own ``train`` (one epoch, validation included) at the demo's 97 x 80, batch 32,
with its CPU settings (``bf16_cpu: auto``) and ``channels_last_cpu`` off (the baseline) and
``auto`` (ours): ``demo_train``.

The store is built from demo images (bench/.cache) at 389 x 320. Prints and saves
bench/results/training.json (training_gpu.json on a GPU).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
ROOT = Path(__file__).resolve().parents[1]


def build_store(folder: Path, n: int) -> TensorStore:  # noqa: F821
    """A 389 x 320 store from the demo images (rendered by make run, or bench/.cache)."""
    from _common import demo_train_files  # same folder

    from cxr_augment.preprocess import imaging
    from cxr_augment.preprocess.tensor_store import StoreWrite, TensorStore, write_store

    files, keys = demo_train_files(n)

    def produce(i):
        data = files[keys[i]].read_bytes()
        return imaging.resize(imaging.decode_grey(data, at_least=(389, 320)), 389, 320)

    write_store(folder, StoreWrite(keys, produce, (389, 320), "bench"), workers=2)
    return TensorStore(folder)


def measure(model, loader_or_batch, device, steps, bf16, channels_last, fused):
    """Images/s over ``steps`` optimiser steps after two warm-up steps."""
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    kwargs = {"fused": True} if fused and device.type == "cuda" else {}
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, **kwargs)
    loss_fn = torch.nn.BCEWithLogitsLoss()

    def batches():
        if isinstance(loader_or_batch, tuple):
            while True:
                yield loader_or_batch
        while True:
            yield from loader_or_batch

    it = batches()
    n_images, t0 = 0, None
    for step in range(steps + 2):
        if step == 2:
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0, n_images = time.perf_counter(), 0
        x, y = next(it)
        x = x.to(device, non_blocking=True)
        y = y.to(device, non_blocking=True).unsqueeze(1)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(x)
        loss = loss_fn(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        n_images += len(x)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return n_images / (time.perf_counter() - t0)


def demo_train(n: int) -> dict:
    """Images/s of ``classify.training.train`` (one epoch over ``n`` images, then its validation
    pass over n / 4) at the demo's 97 x 80 and batch 32, contiguous against channels_last."""
    from cxr_augment.classify.models import ModelConfig, build_model
    from cxr_augment.classify.training import TrainConfig, train, use_channels_last
    from cxr_augment.cpu import use_bf16_cpu
    from cxr_augment.preprocess.tensor_store import torch_dataset

    out: dict = {"image_hw": [97, 80], "batch": 32, "bf16_cpu": use_bf16_cpu("auto")}
    with tempfile.TemporaryDirectory() as tmp:
        from cxr_augment.preprocess.tensor_store import StoreWrite, TensorStore, write_store

        rng = np.random.default_rng(0)
        images = rng.integers(0, 255, (n + n // 4, 97, 80), dtype=np.uint8)
        keys = [f"k{i}" for i in range(len(images))]
        write_store(Path(tmp) / "s", StoreWrite(keys, lambda i: images[i], (97, 80), "bench"))
        store = TensorStore(Path(tmp) / "s")
        y = (np.arange(len(keys)) % 5 == 0).astype(np.float32)
        tr, va = torch_dataset(store, keys[:n], y[:n]), torch_dataset(store, keys[n:], y[n:])
        for name, setting in (("contiguous", False), ("ours", "auto")):
            cfg = TrainConfig(
                epochs=1,
                batch_size=32,
                seed=1,
                bf16_cpu="auto",
                channels_last_cpu=setting,
                progress=False,
                patience=5,
            )
            torch.manual_seed(0)
            model = build_model(ModelConfig("densenet121"))
            t0 = time.perf_counter()
            train(model, tr, va, y[n:], cfg)
            seconds = time.perf_counter() - t0
            out[name] = {
                "channels_last": use_channels_last(torch.device("cpu"), cfg),
                "seconds": round(seconds, 2),
                "images_per_s": round((n + n // 4) / seconds, 2),
            }
    out["speedup"] = round(out["ours"]["images_per_s"] / out["contiguous"]["images_per_s"], 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--model", default="densenet121")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--out", default=None)
    ap.add_argument(
        "--demo-only",
        action="store_true",
        help="only demo_train (saved as training_demo.json)",
    )
    args = ap.parse_args()
    if args.demo_only:
        from _common import save_results  # same folder

        result = {"torch": torch.__version__, "threads": torch.get_num_threads()}
        result["demo_train"] = demo_train(args.images)
        print(json.dumps(result["demo_train"]))
        save_results(result, Path(args.out or ROOT / "bench" / "results" / "training_demo.json"))
        return

    from cxr_augment.classify.models import ModelConfig, build_model
    from cxr_augment.preprocess.tensor_store import torch_dataset

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    gpu = device.type == "cuda"
    results = {
        "device": torch.cuda.get_device_name() if gpu else platform.processor() or "cpu",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "image_hw": [389, 320],
        "model": args.model,
        "runs": {},
    }
    from _common import save_results  # same folder

    out = Path(
        args.out or ROOT / "bench" / "results" / ("training_gpu.json" if gpu else "training.json")
    )
    # saved after every row too, so that a run cut off by a time limit keeps what it measured
    with tempfile.TemporaryDirectory() as tmp:
        store = build_store(Path(tmp) / "store", args.images)
        keys = store.index["key"].tolist()
        y = (np.arange(len(keys)) % 5 == 0).astype(np.float32)
        dataset = torch_dataset(store, keys, y)

        def loader(batch, workers):
            return torch.utils.data.DataLoader(
                dataset,
                batch_size=batch,
                shuffle=True,
                drop_last=True,
                num_workers=workers,
                pin_memory=gpu,
                persistent_workers=workers > 0,
                prefetch_factor=4 if workers else None,
            )

        settings = {
            "thesis": dict(batch=16, workers=0, bf16=False, channels_last=False, fused=False),
            # on a CPU bf16 and big batches do not pay; channels_last feeds oneDNN directly
            "tuned": dict(
                batch=128 if gpu else 16,
                workers=min(8, os.cpu_count() or 1) if gpu else 0,
                bf16=gpu,
                channels_last=True,
                fused=gpu,
            ),
        }
        steps = args.steps
        for name, s in settings.items():
            torch.manual_seed(0)
            model = build_model(ModelConfig(args.model))
            if args.compile and name == "tuned":
                model = torch.compile(model)
            rate = measure(
                model,
                loader(s["batch"], s["workers"]),
                device,
                steps,
                s["bf16"],
                s["channels_last"],
                s["fused"],
            )
            results["runs"][name] = {**s, "images_per_s": round(rate, 2)}
            print(name, json.dumps(results["runs"][name]), flush=True)
            save_results(results, out)
        s = settings["tuned"]
        x = torch.rand(s["batch"], 1, 389, 320)
        torch.manual_seed(0)
        model = build_model(ModelConfig(args.model))
        if args.compile:
            model = torch.compile(model)
        batch = (x.to(device), torch.from_numpy(y[: s["batch"]]).to(device))
        rate = measure(model, batch, device, steps, s["bf16"], s["channels_last"], s["fused"])
        results["runs"]["compute_only"] = {**s, "images_per_s": round(rate, 2)}
        print("compute_only", json.dumps(results["runs"]["compute_only"]), flush=True)
        save_results(results, out)
        if not gpu:
            results["demo_train"] = demo_train(args.images)
            print("demo_train", json.dumps(results["demo_train"]), flush=True)
            save_results(results, out)
    r = results["runs"]
    results["speedup_tuned_vs_thesis"] = round(
        r["tuned"]["images_per_s"] / r["thesis"]["images_per_s"], 2
    )
    results["loader_efficiency"] = round(
        r["tuned"]["images_per_s"] / r["compute_only"]["images_per_s"], 3
    )
    results["targets"] = {
        "gpu_speedup_tuned_vs_thesis": ">= 4.5",
        "gpu_loader_efficiency": ">= 0.9",
    }
    print(json.dumps({k: results[k] for k in ("speedup_tuned_vs_thesis", "loader_efficiency")}))
    save_results(results, out)


if __name__ == "__main__":
    main()
