"""Benchmark: diffusion training, sampling and FID, ours against stock code in one process.

    python bench/bench_generation.py            # CPU: the small preset (what a laptop runs)
    python bench/bench_generation.py --gpu      # CUDA: the thesis UNet at 256 x 256

CPU (2 threads), the ``small`` preset at 32 x 32 on the same weights and data:
- training: a stock diffusers loop (fp32, AdamW, MSE on eps, EMA: ``train_unconditional``'s
  recipe) against ours (``cxr_augment.generation.training``: bf16 autocast on this CPU);
- sampling: stock ``DDIMPipeline`` (fp32) against our loop (bf16 autocast where the CPU has
  bf16 instructions, else fp32), 25 DDIM steps, batch 128: evaluated whole and in chunks of 32
  (``cpu_chunk``, the default).

GPU, the thesis UNet (4.6) at 256 x 256:
- DDIM-50 sampling: stock ``DDIMPipeline`` fp32 batch 16 against ours (bf16 + channels_last,
  batch 64, eager and with ``torch.compile``); targets >= 5x and >= 20 images/s;
- a training step: stock fp32 batch 16 against ours (bf16 + channels_last, compiled or not);
  target >= 2x;
- FID from image files: pytorch-fid's own path (``compute_statistics_of_path``: PIL decode in
  a loader, fp32, batch 50) against ours (cv2 decode in threads, bf16 + channels_last,
  batch 250, our Fréchet distance); target >= 3x. Both networks get the same random weights
  (the speed does not depend on them; the real file cannot be downloaded here);
- peak GPU memory of each.

Prints a table and saves bench/results/generation_cpu.json or generation_gpu.json
(``--out`` elsewhere).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from cxr_augment.generation.models import (  # noqa: E402
    DiffusionModel,
    ScheduleConfig,
    build_unet,
)
from cxr_augment.generation.sampling import SamplerConfig, make_scheduler, sample_batch  # noqa: E402
from cxr_augment.generation.training import DiffusionTrainConfig, _loss  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import unet_preset  # noqa: E402  (same folder)


def cpu_name() -> str:
    for line in (
        Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []
    ):
        if line.lower().startswith("model name"):
            return line.partition(":")[2].strip()
    return platform.processor()


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def peak_reset(device):
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_gib(device) -> float | None:
    return torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None


# --- training ---------------------------------------------------------------------------------


def stock_train(unet, x, steps, warmup, device):
    """diffusers' train_unconditional recipe: fp32, AdamW, MSE on eps, EMA."""
    from diffusers import DDPMScheduler
    from diffusers.training_utils import EMAModel

    unet = unet.to(device).train()
    sched = DDPMScheduler(num_train_timesteps=1000)
    opt = torch.optim.AdamW(unet.parameters(), lr=1e-4)
    ema = EMAModel(unet.parameters(), decay=0.9999, use_ema_warmup=True, power=0.75)
    b = x.shape[0]
    for i in range(warmup + steps):
        if i == warmup:
            sync(device)
            peak_reset(device)
            t0 = time.perf_counter()
        noise = torch.randn_like(x)
        t = torch.randint(0, 1000, (b,), device=device)
        pred = unet(sched.add_noise(x, noise, t), t).sample
        loss = torch.nn.functional.mse_loss(pred, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        ema.step(unet.parameters())
    sync(device)
    return b * steps / (time.perf_counter() - t0), peak_gib(device)


def our_train(unet, x, steps, warmup, device, compile_: bool, channels_last: bool = True):
    """Our training step (``generation.training._loss`` and the loop's update): bf16 autocast,
    channels_last on CUDA, optional torch.compile, EMA."""
    from diffusers.training_utils import EMAModel

    cfg = DiffusionTrainConfig(
        batch_size=x.shape[0],
        device=device.type,
        compile=compile_,
        progress=False,
        channels_last=channels_last,
    )
    schedule = ScheduleConfig(prediction_type="epsilon")
    sched = schedule.scheduler()
    unet = unet.to(device).train()
    if device.type == "cuda" and channels_last:
        unet = unet.to(memory_format=torch.channels_last)
    model = torch.compile(unet) if compile_ else unet
    opt = torch.optim.AdamW(
        unet.parameters(), lr=1e-4, **({"fused": True} if device.type == "cuda" else {})
    )
    ema = EMAModel(
        unet.parameters(),
        decay=0.9999,
        use_ema_warmup=True,
        power=0.75,
        foreach=device.type == "cuda",
    )
    for i in range(warmup + steps):
        if i == warmup:
            sync(device)
            peak_reset(device)
            t0 = time.perf_counter()
        g = torch.Generator().manual_seed(i)
        loss = _loss(model, schedule, sched, x, None, g, cfg, device)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        ema.step(unet.parameters())
    sync(device)
    return x.shape[0] * steps / (time.perf_counter() - t0), peak_gib(device)


# --- sampling ---------------------------------------------------------------------------------


def stock_sample(unet, steps, batch, repeats, device):
    from diffusers import DDIMPipeline

    pipe = DDIMPipeline(
        unet=unet.to(device).eval(),
        scheduler=make_scheduler(SamplerConfig("ddim", steps), ScheduleConfig()),
    )
    pipe.set_progress_bar_config(disable=True)
    g = torch.Generator().manual_seed(0)
    pipe(batch_size=batch, num_inference_steps=steps, generator=g, output_type="np")  # warm-up
    sync(device)
    peak_reset(device)
    t0 = time.perf_counter()
    for _ in range(repeats):
        pipe(batch_size=batch, num_inference_steps=steps, generator=g, output_type="np")
    sync(device)
    return batch * repeats / (time.perf_counter() - t0), peak_gib(device)


def our_sample(
    unet,
    steps,
    batch,
    repeats,
    device,
    compile_: bool,
    channels_last: bool = True,
    cpu_chunk: int | None = 32,
):
    model = DiffusionModel({"1": unet}, ScheduleConfig(), "per_class", "grey")
    cfg = SamplerConfig(
        "ddim",
        steps,
        batch_size=batch,
        compile=compile_,
        bf16_cpu="auto",  # as the pipeline: bf16 where the CPU has bf16 instructions
        device=device.type,
        channels_last=channels_last,
        cpu_chunk=cpu_chunk,
    )
    sample_batch(model, 1, batch, cfg, seed=0)  # warm-up (and compilation)
    sync(device)
    peak_reset(device)
    t0 = time.perf_counter()
    for r in range(repeats):
        sample_batch(model, 1, batch, cfg, seed=0, batch=r)
    sync(device)
    return batch * repeats / (time.perf_counter() - t0), peak_gib(device)


# --- FID from files (GPU) ---------------------------------------------------------------------


def fid_files(n: int, device) -> dict:
    """FID of two folders of PNGs: pytorch-fid's path against ours, same random weights."""
    from concurrent.futures import ThreadPoolExecutor

    import cv2
    import pytorch_fid.inception as pfi
    from pytorch_fid.fid_score import calculate_frechet_distance, compute_statistics_of_path

    from cxr_augment.generation import metrics as gm
    from cxr_augment.generation.inception import build_fid_inception, inception_features

    net = build_fid_inception(None, seed=0)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    pfi.load_state_dict_from_url = lambda *a, **k: state  # no download: the same weights
    theirs = pfi.InceptionV3([3]).to(device).eval()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        folders = [Path(tmp) / "a", Path(tmp) / "b"]
        for k, folder in enumerate(folders):
            folder.mkdir()
            base = rng.integers(0, 255, (8, 389, 320)).astype(np.uint8)
            for i in range(n):
                img = np.clip(
                    base[i % 8].astype(int) + rng.integers(-20, 20, (389, 320)) + k * 5, 0, 255
                ).astype(np.uint8)
                cv2.imwrite(str(folder / f"{i:05d}.png"), img)
        workers = min(8, os.cpu_count() or 1)
        sync(device)
        peak_reset(device)
        t0 = time.perf_counter()
        stats = [
            compute_statistics_of_path(str(f), theirs, 50, 2048, device, workers) for f in folders
        ]
        fid_theirs = calculate_frechet_distance(*stats[0], *stats[1])
        sync(device)
        t_theirs, mem_theirs = time.perf_counter() - t0, peak_gib(device)

        net = net.to(device).to(memory_format=torch.channels_last)
        peak_reset(device)
        t0 = time.perf_counter()
        feats = []
        with ThreadPoolExecutor(workers) as pool:
            for f in folders:
                files = sorted(f.glob("*.png"))
                images = np.stack(
                    list(pool.map(lambda p: cv2.imread(str(p), cv2.IMREAD_GRAYSCALE), files))
                )
                pool_feats, _ = inception_features(net, images, 250, device, bf16=True)
                feats.append(pool_feats)
        fid_ours = gm.frechet_distance(*feats)
        sync(device)
        t_ours, mem_ours = time.perf_counter() - t0, peak_gib(device)
    return {
        "images": 2 * n,
        "pytorch_fid_s": t_theirs,
        "ours_s": t_ours,
        "speedup": t_theirs / t_ours,
        "fid_pytorch_fid": float(fid_theirs),
        "fid_ours_bf16": float(fid_ours),
        "peak_gib_pytorch_fid": mem_theirs,
        "peak_gib_ours": mem_ours,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gpu", action="store_true")
    ap.add_argument("--out", default=None)
    ap.add_argument("--fid-images", type=int, default=2000)
    args = ap.parse_args()
    device = torch.device("cuda" if args.gpu else "cpu")
    if device.type == "cpu":
        torch.set_num_threads(2)
    results: dict = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else cpu_name(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    name, size, steps = ("thesis", 256, 50) if args.gpu else ("small", 32, 25)
    cfg = unet_preset(name)
    results["preset"] = name
    rows = []

    def fresh():
        torch.manual_seed(0)
        return build_unet(cfg, "grey")

    out = Path(args.out or ROOT / f"bench/results/generation_{device.type}.json")
    out.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:  # after every row: a run stopped at a time limit keeps what it measured
        results["rows"] = [{"what": w, "images_per_s": r, "peak_gib": m} for w, r, m in rows]
        out.write_text(json.dumps(results, indent=2) + "\n")

    def row(what: str, measure) -> None:
        """Measure one row; on a GPU a failure (torch.compile without a compiler, memory) is
        recorded beside the others rather than ending the run."""
        try:
            rows.append((what, *measure()))
        except Exception as exc:
            if not args.gpu:
                raise
            results.setdefault("errors", {})[what] = f"{type(exc).__name__}: {exc}"
            print(f"{what}: {results['errors'][what]}", flush=True)
        save()

    # training
    tb = 16
    x = torch.randn(tb, 1, size, size, device=device)
    n_steps, warm = (20, 3) if args.gpu else (12, 2)
    row("train, stock fp32", lambda: stock_train(fresh(), x, n_steps, warm, device))
    row("train, ours", lambda: our_train(fresh(), x, n_steps, warm, device, False))
    if args.gpu:
        row("train, ours NCHW", lambda: our_train(fresh(), x, n_steps, warm, device, False, False))
        row(
            "train, ours NCHW + compile",
            lambda: our_train(fresh(), x, n_steps, 5, device, True, False),
        )
    # sampling
    stock_b, our_b, reps = (16, 64, 2) if args.gpu else (64, 128, 2)
    row(
        f"DDIM-{steps}, stock DDIMPipeline fp32",
        lambda: stock_sample(fresh(), steps, stock_b, reps, device),
    )
    if not args.gpu:  # the whole batch at once, as before cpu_chunk
        row(
            f"DDIM-{steps}, ours, whole batch",
            lambda: our_sample(fresh(), steps, our_b, reps, device, False, cpu_chunk=None),
        )
    row(f"DDIM-{steps}, ours", lambda: our_sample(fresh(), steps, our_b, reps, device, False))
    if args.gpu:
        row(
            f"DDIM-{steps}, ours NCHW",
            lambda: our_sample(fresh(), steps, our_b, reps, device, False, False),
        )
        row(
            f"DDIM-{steps}, ours NCHW + compile",
            lambda: our_sample(fresh(), steps, our_b, 3, device, True, False),
        )
    if args.gpu:  # FID from files now, so that a failure of the ratios below loses nothing
        try:
            results["fid"] = fid_files(args.fid_images, device)
        except Exception as exc:
            results.setdefault("errors", {})["fid"] = f"{type(exc).__name__}: {exc}"
        save()
    by = {w: r for w, r, _ in rows}
    for key, ours, stock in (
        ("train_speedup", "train, ours", "train, stock fp32"),
        ("sample_speedup", f"DDIM-{steps}, ours", f"DDIM-{steps}, stock DDIMPipeline fp32"),
    ):
        mine = [v for k, v in by.items() if k.startswith(ours)]
        results[key] = max(mine) / by[stock] if mine and stock in by else None
    if not args.gpu:
        from cxr_augment.cpu import use_bf16_cpu

        results["bf16_cpu"] = use_bf16_cpu("auto")
        results["cpu_chunk_speedup"] = (
            by[f"DDIM-{steps}, ours"] / by[f"DDIM-{steps}, ours, whole batch"]
        )
    print(json.dumps(results, indent=1))
    print(f"\n{'what':<40} {'images/s':>10} {'peak GiB':>9}")
    for w, r, m in rows:
        print(f"{w:<40} {r:10.2f} {'' if m is None else f'{m:9.2f}'}")
    print(f"training speed-up {results['train_speedup']}, sampling {results['sample_speedup']}")
    if "fid" in results:
        print("FID from files:", json.dumps(results["fid"]))
    save()
    print(f"saved {out}")


if __name__ == "__main__":
    main()
