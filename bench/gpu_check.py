"""Correctness of the CUDA path: the same weights and inputs on the GPU (as the pipeline runs
them: bf16 autocast, channels_last) and on the CPU in fp32, compared; and a classifier trained
for an epoch on the GPU. The speed is bench_generation.py --gpu and bench_training.py.

    python bench/gpu_check.py [--device cuda] [--quick] [--out bench/results/gpu_check.json]

On a machine without CUDA, ``--device cpu`` runs every check with the CPU against itself (the
code paths, not the numbers: what the test suite does). Each check has a stated tolerance; the
run exits 1 if one fails, after writing all of them.

- ``sampling``: the ``small`` preset (and, unless ``--quick``, the thesis UNet at 256 x 256 with
  2 images): the UNet's noise prediction as the sampler makes it, fp32 and bf16 (the
  pipeline's default) on the device against CPU fp32, and (read, not judged) the difference
  of whole DDIM trajectories from the same initial noise;
- ``diffusion_step``: one training step's loss and gradient (``generation.training._loss``,
  the same noise and timesteps from the CPU generator), bf16 on the device against CPU fp32,
  with the thesis's settings and the laptop's;
- ``classifier``: DenseNet-121's penultimate features at 389 x 320
  (``classify.training.predict``: bf16, channels_last) against CPU fp32;
- ``classifier_train``: ``classify.training.train`` for one epoch on the device (bf16): a
  finite loss and validation AUC, and weights that moved.

The results file is written after each check, so a run stopped at its time limit keeps the
checks it finished.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))  # _common

# what a check accepts, device against CPU fp32, as relative errors |a - b| / |b|: of the UNet's
# noise prediction, of a training loss and its gradient, of the classifier's penultimate
# features. On this project's CPU, bf16 against fp32 gave 1.2 %, 0.03 %, 0.8-1.8 % and 0.5 %
TOLERANCE = {
    "eps_fp32": 0.01,  # TF32 off for it (the CPU's fp32 against CUDA's true fp32)
    "eps_bf16": 0.05,
    "loss_rel_bf16": 0.01,
    "grad_rel_bf16": 0.10,
    "features_rel_bf16": 0.05,
}


def _unet(name: str):
    from _common import unet_preset  # same folder

    from cxr_augment.generation.models import build_unet

    torch.manual_seed(0)
    return build_unet(unet_preset(name), "grey")


@contextmanager
def no_tf32(active: bool = True):
    """CUDA's fp32 convolutions and matrix products in full fp32 (PyTorch lets cuDNN use TF32,
    10 bits of mantissa, by default): an fp32 comparison then checks the code path alone."""
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    if active:
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


def check_sampling(device: torch.device, preset: str, n: int, steps: int) -> dict:
    """The UNet's noise prediction as the sampler makes it (``sampling._net``, ``_predict``:
    channels_last, bf16 autocast) against CPU fp32 at three timesteps: the relative error
    |eps - eps_ref| / |eps_ref|. And, to be read rather than judged, the whole DDIM trajectory's
    mean absolute difference in grey levels: with random weights the trajectory is chaotic, so a
    rounding difference grows to tens of grey levels (bf16 on this CPU against fp32: 35)."""
    from cxr_augment.generation.models import DiffusionModel, ScheduleConfig
    from cxr_augment.generation.sampling import SamplerConfig, _net, _predict, sample_batch

    unet = _unet(preset)
    model = DiffusionModel({"1": unet}, ScheduleConfig(), "per_class", "grey")

    def cfg(dev: str, bf16: bool) -> SamplerConfig:
        return SamplerConfig(
            "ddim", steps, batch_size=n, device=dev, bf16=bf16, bf16_cpu=bf16, memo_bytes=0
        )

    s = unet.config.sample_size
    x = torch.randn(n, 1, s, s, generator=torch.Generator().manual_seed(0))

    def eps(dev: str, bf16: bool, t: int) -> torch.Tensor:
        net, _, label, null, device_ = _net(model, 1, cfg(dev, bf16))
        xin = x.to(device_)
        if device_.type == "cuda":
            xin = xin.contiguous(memory_format=torch.channels_last)
        tt = torch.full((n,), t, dtype=torch.long, device=device_)
        with torch.no_grad(), torch.autocast(device_.type, torch.bfloat16, enabled=bf16):
            return _predict(net, xin, tt, label, 1.0, null).float().cpu()

    out = {"preset": preset, "images": n, "steps": steps}
    refs = {t: eps("cpu", False, t) for t in (999, 500, 50)}
    for label, bf16 in (("fp32", False), ("bf16", True)):
        with no_tf32(not bf16):
            worst = max(
                float((eps(device.type, bf16, t) - ref).norm() / ref.norm())
                for t, ref in refs.items()
            )
        out[f"eps_relative_error_{label}"] = worst
        out[f"ok_{label}"] = bool(worst <= TOLERANCE[f"eps_{label}"])
    ref = sample_batch(model, 1, n, cfg("cpu", False), seed=0).astype(np.float64)
    for label, bf16 in (("fp32", False), ("bf16", True)):
        got = sample_batch(model, 1, n, cfg(device.type, bf16), seed=0).astype(np.float64)
        out[f"trajectory_mean_abs_diff_{label}"] = float(np.abs(got - ref).mean())
    out["ok"] = out["ok_fp32"] and out["ok_bf16"]
    return out


def check_diffusion_step(device: torch.device) -> dict:
    """One training step's loss and gradient (``generation.training._loss``, noise and
    timesteps from the CPU generator, backward through the UNet) on the device (bf16
    autocast, channels_last) against CPU fp32, with the thesis's settings (``conf/gpu``:
    epsilon, no weighting) and the laptop's (``conf/base``: v-prediction, min-SNR 5)."""
    from cxr_augment.generation.models import ScheduleConfig
    from cxr_augment.generation.training import DiffusionTrainConfig, _loss

    x = torch.rand(8, 1, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    out: dict = {}
    for name, prediction, snr_gamma in (("thesis", "epsilon", None),
                                        ("laptop", "v_prediction", 5.0)):  # fmt: skip
        schedule = ScheduleConfig(prediction_type=prediction)

        def step(dev: torch.device, bf16: bool, schedule=schedule, snr_gamma=snr_gamma):
            unet = _unet("small").to(dev)
            if dev.type == "cuda":
                unet = unet.to(memory_format=torch.channels_last)
            cfg = DiffusionTrainConfig(batch_size=8, device=dev.type, progress=False,
                                       bf16=bf16, bf16_cpu=bf16, snr_gamma=snr_gamma)  # fmt: skip
            g = torch.Generator().manual_seed(2)
            loss = _loss(unet, schedule, schedule.scheduler(), x, None, g, cfg, dev)
            loss.backward()
            grad = torch.cat([p.grad.float().flatten().cpu() for p in unet.parameters()])
            return float(loss.detach()), grad

        ref_loss, ref_grad = step(torch.device("cpu"), False)
        loss, grad = step(device, True)
        loss_rel = abs(loss - ref_loss) / abs(ref_loss)
        grad_rel = float((grad - ref_grad).norm() / ref_grad.norm())
        ok = bool(np.isfinite(loss) and loss_rel <= TOLERANCE["loss_rel_bf16"]
                  and grad_rel <= TOLERANCE["grad_rel_bf16"])  # fmt: skip
        out[name] = {"loss_cpu_fp32": ref_loss, "loss_device_bf16": loss,
                     "loss_relative_error": loss_rel, "grad_relative_error": grad_rel, "ok": ok}  # fmt: skip
    out["ok"] = all(v["ok"] for v in out.values())
    return out


def _images(n: int, h: int, w: int, seed: int) -> list:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, h, w, generator=g)
    y = (torch.arange(n) % 3 == 0).float()
    # a learnable signal: positives brighter in the middle
    x[y == 1, :, h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] += 0.5
    return [(x[i], y[i : i + 1]) for i in range(n)]


def check_classifier(device: torch.device, n: int = 8) -> dict:
    """DenseNet-121 at 389 x 320 through ``classify.training.predict`` (bf16, channels_last on
    CUDA): its penultimate features (``models.feature_extractor``), whose relative error says
    more than the probabilities of a random network (all near 0.47), and P(positive)."""
    from cxr_augment.classify.models import ModelConfig, build_model, feature_extractor
    from cxr_augment.classify.training import TrainConfig, predict

    torch.manual_seed(0)
    model = build_model(ModelConfig("densenet121"))
    data = [x for x, _ in _images(n, 389, 320, 3)]

    def run(dev: str, bf16: bool):
        cfg = TrainConfig(device=dev, batch_size=n, progress=False, bf16=bf16, bf16_cpu=bf16)
        feats = predict(model, data, cfg, features=feature_extractor(model))
        return torch.from_numpy(feats), predict(model, data, cfg)

    ref_feats, ref_prob = run("cpu", False)
    feats, prob = run(device.type, True)
    rel = float((feats - ref_feats).norm() / ref_feats.norm())
    return {"features_relative_error": rel,
            "max_abs_diff_prob": float(np.abs(prob - ref_prob).max()),
            "ok": bool(rel <= TOLERANCE["features_rel_bf16"])}  # fmt: skip


def check_classifier_train(device: torch.device, n: int = 48, hw: tuple = (128, 104)) -> dict:
    from cxr_augment.classify.models import ModelConfig, build_model
    from cxr_augment.classify.training import TrainConfig, train

    torch.manual_seed(0)
    model = build_model(ModelConfig("densenet121"))
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    train_set, val_set = _images(n, *hw, 4), _images(n // 2, *hw, 5)
    val_targets = np.array([float(y) for _, y in val_set])
    cfg = TrainConfig(epochs=1, batch_size=16, device=device.type, progress=False)
    t0 = time.perf_counter()
    result = train(model, train_set, [x for x, _ in val_set], val_targets, cfg)
    seconds = time.perf_counter() - t0
    history = result.history
    moved = any(
        not torch.equal(before[k], v.cpu())
        for k, v in result.state_dict.items()
        if k in before and v.dtype.is_floating_point
    )
    numbers = history.select_dtypes("number").to_numpy(dtype=float)
    finite = bool(np.isfinite(numbers).all() and np.isfinite(result.best_val_auc))
    return {"epochs": len(history), "best_val_auc": float(result.best_val_auc),
            "seconds": seconds, "weights_moved": moved, "finite": finite,
            "ok": moved and finite and len(history) == 1}  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--quick", action="store_true", help="the small preset only, fewer images")
    ap.add_argument("--out", default=str(ROOT / "bench/results/gpu_check.json"))
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(2)
    results: dict = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else platform.processor(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "tolerance": TOLERANCE,
        "checks": {},
    }
    quick = args.quick
    checks = {
        "sampling_small": lambda: check_sampling(
            device, "small", 4 if quick else 8, 4 if quick else 10
        ),
        "diffusion_step": lambda: check_diffusion_step(device),
        "classifier": lambda: check_classifier(device, 2 if quick else 8),
        "classifier_train": lambda: (
            check_classifier_train(device, 16, (64, 52))
            if quick
            else check_classifier_train(device)
        ),
    }
    if not args.quick:
        checks["sampling_thesis"] = lambda: check_sampling(device, "thesis", 2, 10)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for name, check in checks.items():
        t0 = time.perf_counter()
        try:
            res = check()
        except Exception as exc:  # report it beside the others; the run still fails
            res = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        res["wall_s"] = round(time.perf_counter() - t0, 2)
        results["checks"][name] = res
        results["all_ok"] = all(r["ok"] for r in results["checks"].values())
        results["finished"] = len(results["checks"]) == len(checks)
        out.write_text(json.dumps(results, indent=2) + "\n")
        print(f"{name:<18} {'ok' if res['ok'] else 'FAILED'}  {json.dumps(res)}", flush=True)
    print(f"saved {out}")
    return 0 if results["all_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
