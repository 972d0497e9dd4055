"""Training a diffusion UNet the diffusers way, from the tensor store.

Usage::

    data = ImageSet(store, rows, size=32, channels="grey")
    unet, history = train_unet(build_unet(cfg), data, labels, schedule, DiffusionTrainConfig())

- DDPM objective (Ho et al. 2020, Algorithm 1): x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps,
  the UNet predicts eps (the thesis) or v = sqrt(abar_t) eps - sqrt(1 - abar_t) x_0
  (``prediction_type: v_prediction``, Salimans & Ho 2022); min-SNR loss weighting as an option
  (Hang et al. 2023: w_t = min(SNR_t, gamma) / SNR_t for eps, / (SNR_t + 1) for v).
- Class-conditional models drop the label to the null class with probability ``p_uncond``
  (classifier-free guidance, Ho & Salimans 2022).
- AdamW, warm-up then cosine (or constant) learning rate, gradient accumulation, gradient
  clipping at 1, EMA weights (diffusers' ``EMAModel`` with its warm-up); the EMA weights are
  the result.
- bf16 autocast on CUDA, and on CPU where it has bf16 instructions (``bf16_cpu: auto``); channels_last
  and ``torch.compile`` on CUDA as options.
- Reproducible and resumable: the images, noise, timesteps and label drops of micro-batch g
  come from generators seeded by (seed, g), and a checkpoint (weights, EMA, optimiser, learning
  rate schedule, history) is written atomically every ``checkpoint_every`` steps, so a run
  killed midway (``kill -9`` at any point, the checkpoint write included) resumes to the same
  weights as an uninterrupted one on CPU (``scripts/kill_resume.py`` checks it). A full disk
  or a bad checkpoint is handled as ``classify.training.CheckpointStore`` says: a clear error,
  or the previous checkpoint resumed with a warning naming the bad one.
- Several GPUs: under ``accelerate launch --multi_gpu`` (or torchrun) each process trains on
  its own micro-batches (micro-batch g * world + rank of the same stream) and DistributedDataParallel
  averages the gradients; process 0 writes the checkpoints.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass

import cv2
import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from cxr_augment.classify.training import (
    CheckpointError,
    CheckpointStore,
    check_optimizer,
    check_weights,
    describe_error,
    require_keys,
    resolve_device,
)
from cxr_augment.generation.models import CHANNELS, ScheduleConfig, null_class


@dataclass(frozen=True)
class DiffusionTrainConfig:
    epochs: float = 1.0
    max_steps: int | None = None  # optimiser steps; caps the epochs when set
    batch_size: int = 16  # thesis 4.6 (DDIM: batch 16)
    grad_accumulation: int = 1
    lr: float = 1e-4  # thesis 4.6
    lr_schedule: str = "cosine"  # cosine | constant (both after a linear warm-up)
    lr_warmup_steps: int = 0
    weight_decay: float = 0.0
    ema_decay: float = 0.9999
    ema_power: float = 0.75  # EMA warm-up: decay_t = 1 - (1 + t)^-power, capped at ema_decay
    snr_gamma: float | None = None  # min-SNR weighting (5 in Hang et al.); None: plain MSE
    p_uncond: float = 0.1  # class-conditional models: P(label -> null class)
    bf16: bool = True  # autocast on CUDA
    bf16_cpu: bool | str = "auto"  # autocast on CPU: where it has bf16 instructions (cpu.py)
    channels_last: bool = True  # CUDA only
    compile: bool = False  # torch.compile, CUDA only
    checkpoint_every: int = 100
    seed: int = 0
    device: str = "auto"
    num_workers: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.grad_accumulation < 1:
            raise ValueError("batch_size and grad_accumulation must be >= 1")
        if self.lr_schedule not in ("cosine", "constant"):
            raise ValueError(f"lr_schedule must be cosine or constant, got {self.lr_schedule!r}")
        if not 0.0 <= self.p_uncond < 1.0:
            raise ValueError(f"p_uncond must be in [0, 1), got {self.p_uncond}")

    def total_steps(self, n_images: int, world: int = 1) -> int:
        per_step = self.batch_size * self.grad_accumulation * world
        steps = max(1, math.ceil(self.epochs * n_images / per_step))
        return min(steps, self.max_steps) if self.max_steps else steps

    def fingerprint(self, extra: dict) -> str:
        skip = ("progress", "num_workers", "checkpoint_every")
        payload = {k: v for k, v in asdict(self).items() if k not in skip}
        payload.update(extra)
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


# --- the data path ----------------------------------------------------------------------------


def to_model_size(image: np.ndarray, size: int) -> np.ndarray:
    """A uint8 (H, W) image to (size, size): area averaging when shrinking, bilinear when
    enlarging (the aspect ratio is not kept: the store's images are all of one shape)."""
    h, w = image.shape
    if (h, w) == (size, size):
        return image
    shrink = h > size or w > size
    interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interp)


class ImageSet(torch.utils.data.Dataset):
    """Store rows at the model's size, as tensors in [-1, 1] with the model's channels.

    Small sets (under ``preload_bytes`` at the model's size) are resized once and held in
    memory; larger ones are resized per item (the loader's workers do it in parallel).
    """

    def __init__(self, store, rows, size: int, channels: str = "grey", preload_bytes=1 << 30):
        self.store, self.rows = store, np.asarray(rows, dtype=np.int64)
        self.size, self.c = int(size), CHANNELS[channels]
        self._cache = None
        if len(self.rows) * self.size * self.size <= preload_bytes:
            self._cache = (
                np.stack([self._load(i) for i in range(len(self.rows))])
                if len(self.rows)
                else np.zeros((0, self.size, self.size), np.uint8)
            )

    def _load(self, i: int) -> np.ndarray:
        return to_model_size(self.store[int(self.rows[i])], self.size)

    def __len__(self) -> int:
        return len(self.rows)

    def uint8(self, i: int) -> np.ndarray:
        return self._cache[i] if self._cache is not None else self._load(i)

    def __getitem__(self, i: int) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(self.uint8(i))).float().div_(127.5).sub_(1.0)
        return x.unsqueeze(0).expand(self.c, -1, -1).contiguous()


class _MicroBatches(torch.utils.data.Sampler):
    """Index lists of micro-batches ``start, start + 1, ...``: micro-batch g takes images
    g*B .. (g+1)*B - 1 of an endless stream of per-epoch permutations seeded by (seed, epoch),
    so its content does not depend on where a run was resumed."""

    def __init__(
        self, n: int, batch: int, seed: int, start: int, stop: int, rank: int = 0, world: int = 1
    ) -> None:
        self.n, self.batch, self.seed, self.start, self.stop = n, batch, seed, start, stop
        self.rank, self.world = rank, world  # process r takes micro-batches g * world + r
        self._perms: dict[int, np.ndarray] = {}

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            self._perms = {epoch: np.random.default_rng([self.seed, epoch]).permutation(self.n)}
        return self._perms[epoch]

    def indices(self, g: int) -> list[int]:
        out = []
        for k in range(g * self.batch, (g + 1) * self.batch):
            out.append(int(self._perm(k // self.n)[k % self.n]))
        return out

    def global_index(self, g: int) -> int:
        return g * self.world + self.rank

    def __iter__(self):
        for g in range(self.start, self.stop):
            yield self.indices(self.global_index(g))

    def __len__(self) -> int:
        return self.stop - self.start


# --- training ---------------------------------------------------------------------------------

# what a diffusion checkpoint holds
_CHECKPOINT_KEYS = ("fingerprint", "step", "unet", "optimizer", "lr_scheduler", "ema", "history")


def _check_ema(unet, ema_state) -> None:
    """Raise ``ValueError`` unless ``ema_state`` holds one shadow tensor per UNet parameter,
    of its shape (diffusers' ``EMAModel.load_state_dict`` checks the types only)."""
    shadow = ema_state.get("shadow_params") if isinstance(ema_state, dict) else None
    params = list(unet.parameters())
    if not isinstance(shadow, list) or len(shadow) != len(params):
        raise ValueError("the EMA state does not hold one shadow tensor per UNet parameter")
    for i, (s, p) in enumerate(zip(shadow, params, strict=True)):
        if not isinstance(s, torch.Tensor) or s.shape != p.shape:
            raise ValueError(f"the EMA's shadow tensor {i} does not have its parameter's shape")


def distributed() -> tuple[int, int]:
    """(rank, world size) of a multi-process launch (``accelerate launch --multi_gpu`` or
    torchrun: ``WORLD_SIZE`` > 1), the process group initialised (NCCL on CUDA, else gloo);
    (0, 1) in a plain run."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), dist.get_world_size()


def _autocast(device: torch.device, config: DiffusionTrainConfig):
    from cxr_augment.cpu import use_bf16_cpu

    on = config.bf16 if device.type == "cuda" else use_bf16_cpu(config.bf16_cpu)
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=on)


def _lr_scheduler(optimizer, config: DiffusionTrainConfig, total: int):
    from diffusers.optimization import get_scheduler

    name = "cosine" if config.lr_schedule == "cosine" else "constant_with_warmup"
    return get_scheduler(
        name, optimizer, num_warmup_steps=config.lr_warmup_steps, num_training_steps=total
    )


def _loss(unet, schedule, sched, x0, labels, g: torch.Generator, config, device, null=None):
    """One micro-batch's loss (Ho et al. 2020, Algorithm 1, with the options above)."""
    b = x0.shape[0]
    # 1. noise and timesteps, from the micro-batch's own generator (on CPU: same on any device)
    noise = torch.randn(x0.shape, generator=g).to(device)
    t = torch.randint(0, schedule.num_train_timesteps, (b,), generator=g).to(device)
    x0 = x0.to(device)
    # 2. q(x_t | x_0): x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps
    xt = sched.add_noise(x0, noise, t)
    # 3. classifier-free guidance training: the label becomes the null class w.p. p_uncond
    y = None
    if labels is not None:
        drop = torch.rand(b, generator=g) < config.p_uncond
        y = torch.where(drop, torch.full_like(labels, null), labels).to(device)
    if device.type == "cuda" and config.channels_last:
        xt = xt.contiguous(memory_format=torch.channels_last)
    with _autocast(device, config):
        pred = unet(xt, t, class_labels=y).sample
    # 4. the target: eps, or v = sqrt(abar_t) eps - sqrt(1 - abar_t) x_0
    target = noise if schedule.prediction_type == "epsilon" else sched.get_velocity(x0, noise, t)
    mse = ((pred.float() - target) ** 2).mean(dim=(1, 2, 3))
    if config.snr_gamma is not None:
        # 5. min-SNR-gamma weights (Hang et al. 2023, eq. 7)
        from diffusers.training_utils import compute_snr

        snr = compute_snr(sched, t)
        w = torch.clamp(snr, max=config.snr_gamma)
        w = w / snr if schedule.prediction_type == "epsilon" else w / (snr + 1)
        mse = mse * w
    return mse.mean()


def train_unet(
    unet,
    data: ImageSet,
    labels: np.ndarray | None,
    schedule: ScheduleConfig,
    config: DiffusionTrainConfig,
    checkpoints: CheckpointStore | None = None,
    fingerprint_extra: dict | None = None,
    stop_after_step: int | None = None,
    desc: str = "diffusion",
):
    """Train ``unet`` (freshly built from the seed) on ``data``; return the EMA UNet and the
    history (step, epoch, loss, lr).

    Args:
        labels: class indices aligned with ``data`` for a class-conditional UNet, else None.
        checkpoints: where checkpoints go every ``checkpoint_every`` steps; a matching one is
            resumed (one from a different run is cleared).
        stop_after_step: stop (as if killed) after this step's checkpoint; for tests.
    """
    from diffusers.training_utils import EMAModel

    if len(data) == 0:
        raise ValueError(f"{desc}: no training images")
    conditional = unet.config.num_class_embeds is not None
    if conditional != (labels is not None):
        raise ValueError(f"{desc}: class labels are needed exactly for a class-conditional UNet")
    rank, world = distributed()
    device = resolve_device(config.device)
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    deterministic = device.type == "cpu"
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    try:
        total = config.total_steps(len(data), world)
        # a finished run is reused by any launch; an unfinished one resumes only under the
        # same number of processes (the steps and the micro-batch mapping depend on it)
        fp_any = config.fingerprint(
            {**(fingerprint_extra or {}), "schedule": asdict(schedule), "n": len(data)}
        )
        fp = config.fingerprint({"run": fp_any, "world": world})
        sched = schedule.scheduler()
        unet = unet.to(device)
        if device.type == "cuda" and config.channels_last:
            unet = unet.to(memory_format=torch.channels_last)
        optimizer = torch.optim.AdamW(
            unet.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        lr_sched = _lr_scheduler(optimizer, config, total)
        ema = EMAModel(
            unet.parameters(),
            decay=config.ema_decay,
            use_ema_warmup=True,
            power=config.ema_power,
        )
        start, history = 0, []

        def ours(state: dict) -> bool:
            return state["fingerprint"] == fp or bool(
                state.get("done") and state.get("fingerprint_any") == fp_any
            )

        def check(state: dict) -> None:  # before anything is loaded: nothing is half-loaded
            require_keys(state, ("fingerprint",))
            if not ours(state):
                return  # a different run's checkpoint (cleared below)
            require_keys(state, _CHECKPOINT_KEYS)
            check_weights(unet, state["unet"], "the UNet weights")
            check_optimizer(optimizer, state["optimizer"])
            _check_ema(unet, state["ema"])

        found = checkpoints.resume(check) if checkpoints is not None else None
        if found is not None and ours(found[1]):
            path, state = found
            try:
                unet.load_state_dict(state["unet"])
                optimizer.load_state_dict(state["optimizer"])
                lr_sched.load_state_dict(state["lr_scheduler"])
                ema.load_state_dict(state["ema"])
                ema.to(device)  # checkpoints load on the CPU; the shadow weights go with the model
                start, history = int(state["step"]) + 1, list(state["history"])
            except Exception as exc:
                raise CheckpointError(
                    f"checkpoint {path} cannot be resumed: {describe_error(exc)}. Delete it to "
                    "resume from the checkpoint before it (or to start afresh if it is the "
                    "only one)"
                ) from exc
            if state.get("done"):  # finished (by any launch: 1 process or several): reuse it
                total = start
        elif found is not None:
            checkpoints.clear()
        model = unet
        if world > 1:  # data parallel: each process a micro-batch, gradients averaged
            model = torch.nn.parallel.DistributedDataParallel(
                unet, device_ids=[device.index] if device.type == "cuda" else None
            )
        if config.compile and device.type == "cuda":
            model = torch.compile(model)
        # a copy: the labels may be a read-only view of the catalog's table
        y_all = None if labels is None else torch.tensor(np.asarray(labels), dtype=torch.long)
        null = None if labels is None else null_class(unet)
        sampler = _MicroBatches(
            len(data),
            config.batch_size,
            config.seed,
            start * config.grad_accumulation,
            total * config.grad_accumulation,
            rank,
            world,
        )
        loader = torch.utils.data.DataLoader(
            data,
            batch_sampler=sampler,
            num_workers=config.num_workers,
            pin_memory=device.type == "cuda",
        )
        bar = tqdm(
            total=total,
            initial=start,
            desc=desc,
            disable=not config.progress or rank != 0,
            leave=False,
        )
        unet.train()
        running, g_index = 0.0, start * config.grad_accumulation
        step = start
        for x0 in loader:
            gi = sampler.global_index(g_index)
            g = torch.Generator().manual_seed(config.seed * 1_000_003 + gi)
            torch.manual_seed(config.seed * 1_000_003 + gi)  # dropout, if any
            y = None if y_all is None else y_all[sampler.indices(gi)]
            accumulating = (g_index + 1) % config.grad_accumulation != 0
            # DDP: gradients are averaged across processes on the last micro-batch only
            with model.no_sync() if world > 1 and accumulating else contextlib.nullcontext():
                loss = _loss(model, schedule, sched, x0, y, g, config, device, null)
                (loss / config.grad_accumulation).backward()
            running += float(loss.detach()) / config.grad_accumulation
            g_index += 1
            if accumulating:
                continue
            if world > 1:  # the history holds the mean over processes (the same on each)
                mean = torch.tensor([running], device=device)
                torch.distributed.all_reduce(mean)
                running = float(mean) / world
            torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
            lr = float(lr_sched.get_last_lr()[0])  # the rate this step uses
            optimizer.step()
            lr_sched.step()
            optimizer.zero_grad(set_to_none=True)
            ema.step(unet.parameters())
            history.append(
                {
                    "step": step,
                    "epoch": step
                    * config.batch_size
                    * config.grad_accumulation
                    * world
                    / len(data),
                    "loss": running,
                    "lr": lr,
                }
            )
            bar.update(1)
            bar.set_postfix(loss=f"{running:.4f}")
            running = 0.0
            last = step == total - 1
            due = (step + 1) % config.checkpoint_every == 0 or last
            if checkpoints is not None and due and rank == 0:
                checkpoints.save(
                    step,
                    {
                        "fingerprint": fp,
                        "fingerprint_any": fp_any,
                        "step": step,
                        "unet": {k: v.detach().cpu() for k, v in unet.state_dict().items()},
                        "optimizer": optimizer.state_dict(),
                        "lr_scheduler": lr_sched.state_dict(),
                        "ema": ema.state_dict(),
                        "history": history,
                        "done": last,
                    },
                )
            if world > 1 and due:
                torch.distributed.barrier()  # every process past the checkpoint
            if stop_after_step is not None and step >= stop_after_step:
                break
            step += 1
        bar.close()
        ema.copy_to(unet.parameters())
        unet = unet.to("cpu").to(memory_format=torch.contiguous_format).eval()
        return unet, pd.DataFrame(history, columns=["step", "epoch", "loss", "lr"])
    finally:
        torch.use_deterministic_algorithms(previous)
