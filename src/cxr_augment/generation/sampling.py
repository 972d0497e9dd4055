"""Sampling a trained model: DDPM, DDIM and DPM-Solver++ over diffusers' schedulers.

Usage::

    images = sample_class(model, cls=1, n=64, sampler=SamplerConfig("ddim", steps=50), seed=3)

diffusers' ``DDPMPipeline`` / ``DDIMPipeline`` take no class labels, so the loop is ours:

    x_T ~ N(0, I) * init_noise_sigma
    for t in scheduler.timesteps:                       # T, 50 or 20 steps
        eps = guided(unet, x_t, t, class, w)            # classifier-free guidance
        x_{t-1} = scheduler.step(eps, t, x_t).prev_sample

- ``ddpm``: ancestral sampling over all T steps (Ho et al. 2020, Algorithm 2);
- ``ddim``: ``steps`` of the DDIM update with stochasticity ``eta`` (Song et al. 2021, eq. 12);
- ``dpmsolver++``: DPM-Solver++ (Lu et al. 2022), 2nd order multistep, ~20 steps.

Classifier-free guidance (Ho & Salimans 2022, eq. 6 written with w as the scale on the
conditional direction): eps~ = eps(x, null) + w (eps(x, c) - eps(x, null)); w = 1 is the
conditional model, w = 0 the unconditional one. Both predictions come from one forward pass
over the doubled batch.

Batches run under ``inference_mode``; bf16 autocast and channels_last on CUDA (bf16 on CPU as
an option), ``torch.compile`` as an option. On a CPU the UNet evaluates each batch
``cpu_chunk`` images at a time (32: the small preset's activations then stay in the cache,
1.2x over a whole batch of 128 in float32 on 2 cores, ``bench/bench_generation.py``); the noise
and the scheduler's steps are the whole batch's. Batch b of class c starts from noise seeded by
(seed, c, b): same seed, same bytes on CPU (for one batch size and chunk).

``edit_batch`` is image-conditioned generation (SDEdit, Meng et al. 2022): a real image is
noised part of the way to T and denoised from there with its class, so the new image
starts from its parent and the model redraws it, the more the larger the strength (the
misclassified strategy's images from a generator: ``sets.edited_set``; how much of the
parent a copy keeps: ``augment.closeness``).

Two sets drawn from one model with one sampler and seed share their batches: the study's
unbalanced and balanced sets of one generator are the same images up to their counts (the
misclassified strategy's are edits, with noise of their own). ``sample_batch_memo`` keeps the batches a process has sampled (the earliest first, up
to ``SamplerConfig.memo_bytes``) and hands a later set the ones it asks for again, instead of
sampling them a second time; the bytes are the ones ``sample_batch`` returns.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from tqdm.auto import tqdm

from cxr_augment.classify.training import resolve_device
from cxr_augment.generation.models import DiffusionModel, ScheduleConfig, null_class

SAMPLERS = ("ddpm", "ddim", "dpmsolver++")


@dataclass(frozen=True)
class SamplerConfig:
    scheduler: str = "ddim"
    steps: int | None = 50  # None: all T (the only choice for ddpm)
    eta: float = 0.0  # DDIM's stochasticity (0: deterministic DDIM; 1: DDPM-like)
    guidance: float = 1.0  # classifier-free guidance weight w (class-conditional models)
    batch_size: int = 64
    bf16: bool = True  # CUDA
    bf16_cpu: bool | str = False  # auto | true | false (cxr_augment/cpu.py)
    channels_last: bool = True  # CUDA
    compile: bool = False  # CUDA
    cpu_chunk: int | None = 32  # on a CPU the UNet evaluates a batch this many images at a time
    device: str = "auto"
    progress: bool = False
    memo_bytes: int = 256 * 2**20  # sampled batches a process keeps for reuse (0: none)

    def __post_init__(self) -> None:
        if self.scheduler not in SAMPLERS:
            raise ValueError(f"scheduler must be one of {SAMPLERS}, got {self.scheduler!r}")
        if self.scheduler == "ddpm" and self.steps not in (None, 0):
            raise ValueError("ddpm samples all T steps: leave steps empty")
        if self.scheduler != "ddpm" and not self.steps:
            raise ValueError(f"{self.scheduler} needs steps")

    def describe(self) -> dict:
        return {
            "scheduler": self.scheduler,
            "steps": self.steps,
            "eta": self.eta,
            "guidance": self.guidance,
        }


def make_scheduler(sampler: SamplerConfig, schedule: ScheduleConfig):
    """The diffusers scheduler of ``sampler`` over the model's noise schedule, timesteps set."""
    from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

    common = {
        "num_train_timesteps": schedule.num_train_timesteps,
        "beta_start": schedule.beta_start,
        "beta_end": schedule.beta_end,
        "beta_schedule": schedule.beta_schedule,
        "prediction_type": schedule.prediction_type,
    }
    if sampler.scheduler == "ddpm":
        s = DDPMScheduler(**common, clip_sample=True)
        s.set_timesteps(schedule.num_train_timesteps)
    elif sampler.scheduler == "ddim":
        s = DDIMScheduler(**common, clip_sample=True, set_alpha_to_one=True)
        s.set_timesteps(int(sampler.steps))
    else:
        s = DPMSolverMultistepScheduler(
            **common, algorithm_type="dpmsolver++", solver_order=2, lower_order_final=True
        )
        s.set_timesteps(int(sampler.steps))
    return s


def guided(eps_cond: torch.Tensor, eps_uncond: torch.Tensor, w: float) -> torch.Tensor:
    """Classifier-free guidance: eps(x, null) + w (eps(x, c) - eps(x, null))."""
    return eps_uncond + w * (eps_cond - eps_uncond)


def _predict(unet, x, t, label: int | None, w: float, null: int | None):
    if label is None:
        return unet(x, t).sample
    b = x.shape[0]
    y = torch.full((b,), label, dtype=torch.long, device=x.device)
    if w == 1.0:  # the conditional prediction alone: no second pass needed
        return unet(x, t, class_labels=y).sample
    out = unet(
        torch.cat([x, x]), torch.cat([t, t]), class_labels=torch.cat([y, torch.full_like(y, null)])
    ).sample
    eps_c, eps_u = out[:b], out[b:]
    return guided(eps_c, eps_u, w)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """Model output in [-1, 1], (B, C, s, s), to uint8 grey (B, s, s): the channel mean for an
    RGB model, then (x + 1) / 2 * 255 rounded and clipped."""
    x = x.float().mean(dim=1)
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu().numpy()


EDIT_SALT = 1  # an edit's noise is not a draw's of the same (seed, class, batch)


def batch_seed(seed: int, cls: int, batch: int, salt: int | None = None) -> int:
    entropy = [seed, cls, batch] if salt is None else [seed, cls, batch, salt]
    return int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0] >> 1)


def _net(model: DiffusionModel, cls: int, sampler: SamplerConfig):
    """The UNet for class ``cls`` on the sampler's device (compiled where asked), its class
    label (None: an unconditional model) and the null label for guidance."""
    device = resolve_device(sampler.device)
    unet, label = model.unet_for(cls)
    unet = unet.to(device).eval()
    if device.type == "cuda" and sampler.channels_last:
        unet = unet.to(memory_format=torch.channels_last)
    net = torch.compile(unet) if sampler.compile and device.type == "cuda" else unet
    null = None if label is None else null_class(unet)
    if label is None and sampler.guidance != 1.0:
        raise ValueError("guidance needs a class-conditional model")
    return net, unet, label, null, device


def _denoise(net, x, timesteps, scheduler, label, null, sampler, device, g) -> torch.Tensor:
    """The sampler's loop from ``x`` at ``timesteps[0]`` down to x_0."""
    from cxr_augment.cpu import use_bf16_cpu

    n = x.shape[0]
    if device.type == "cuda" and sampler.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    bf16 = sampler.bf16 if device.type == "cuda" else use_bf16_cpu(sampler.bf16_cpu)
    step_kwargs = {"eta": sampler.eta} if sampler.scheduler == "ddim" else {}
    chunk = n if device.type == "cuda" or not sampler.cpu_chunk else int(sampler.cpu_chunk)
    for t in tqdm(timesteps, disable=not sampler.progress, leave=False, desc="sampling"):
        xin = scheduler.scale_model_input(x, t)
        tt = torch.full((n,), int(t), dtype=torch.long, device=device)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
            if chunk >= n:
                eps = _predict(net, xin, tt, label, sampler.guidance, null)
            else:
                eps = torch.cat(
                    [
                        _predict(
                            net,
                            xin[lo : lo + chunk],
                            tt[lo : lo + chunk],
                            label,
                            sampler.guidance,
                            null,
                        )
                        for lo in range(0, n, chunk)
                    ]
                )
        # x_{t-1} from the scheduler's update (in float32; its noise from our generator)
        x = scheduler.step(eps.float(), t, x, generator=g, **step_kwargs).prev_sample
    return x


@torch.inference_mode()
def sample_batch(
    model: DiffusionModel, cls: int, n: int, sampler: SamplerConfig, seed: int, batch: int = 0
) -> np.ndarray:
    """One batch of ``n`` images of class ``cls`` (uint8, (n, s, s) at the model's size)."""
    net, unet, label, null, device = _net(model, cls, sampler)
    scheduler = make_scheduler(sampler, model.schedule)
    g = torch.Generator().manual_seed(batch_seed(seed, cls, batch))
    c, s = unet.config.in_channels, unet.config.sample_size
    # x_T ~ N(0, I), scaled as the scheduler starts (1 for these three)
    x = (torch.randn((n, c, s, s), generator=g) * scheduler.init_noise_sigma).to(device)
    return to_uint8(_denoise(net, x, scheduler.timesteps, scheduler, label, null, sampler,
                             device, g))  # fmt: skip


def edit_start(scheduler, strength: float) -> int:
    """Where an edit of ``strength`` enters the sampler's timesteps: the first
    ``len(timesteps) - int(strength * len(timesteps))`` are skipped (diffusers' image-to-image
    rule, ``get_timesteps``). Strength 1 starts from (almost) pure noise, 0 takes no step."""
    if not 0.0 <= float(strength) <= 1.0:
        raise ValueError(f"edit strength must be in [0, 1], got {strength!r}")
    n = len(scheduler.timesteps)
    return n - min(int(float(strength) * n), n)


@torch.inference_mode()
def edit_batch(
    model: DiffusionModel,
    images: np.ndarray,
    cls: int,
    sampler: SamplerConfig,
    strength: float,
    seed: int,
    batch: int = 0,
) -> np.ndarray:
    """Image-conditioned generation (SDEdit, Meng et al. 2022): each of ``images`` (uint8,
    (n, s, s) at the model's size) is noised to the sampler's timestep ``strength`` of the way
    to T (``scheduler.add_noise``: x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps) and denoised
    from there by the sampler with class ``cls``. A new image near its parent: the larger
    ``strength``, the more the model redraws. Noise seeded by (seed, cls, batch, "edit"):
    same seed, same bytes on CPU."""
    images = np.asarray(images)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(
            f"edit_batch takes uint8 images (n, s, s), got {images.dtype} {images.shape}"
        )
    net, unet, label, null, device = _net(model, cls, sampler)
    c, s = unet.config.in_channels, unet.config.sample_size
    if images.shape[1:] != (s, s):
        raise ValueError(f"edit_batch: images are {images.shape[1:]}, the model's size is {(s, s)}")
    scheduler = make_scheduler(sampler, model.schedule)
    start = edit_start(scheduler, strength)
    x0 = torch.from_numpy(images).float().div(127.5).sub(1.0)[:, None].expand(-1, c, -1, -1)
    if start >= len(scheduler.timesteps):  # strength 0: nothing redrawn
        return to_uint8(x0)
    if hasattr(scheduler, "set_begin_index"):  # multistep solvers count their steps from here
        scheduler.set_begin_index(start)
    timesteps = scheduler.timesteps[start:]
    g = torch.Generator().manual_seed(batch_seed(seed, cls, batch, salt=EDIT_SALT))
    noise = torch.randn(x0.shape, generator=g)
    x = scheduler.add_noise(x0.contiguous(), noise, timesteps[:1].repeat(x0.shape[0])).to(device)
    return to_uint8(_denoise(net, x, timesteps, scheduler, label, null, sampler, device, g))


class BatchMemo:
    """Sampled batches kept in one process, keyed by everything that decides their bytes
    (checkpoint hash, class, batch size, sampler, seed, batch index). The earliest batches
    are kept, up to a byte budget, since every set of a generator starts at batch 0; the
    arrays are read-only."""

    def __init__(self) -> None:
        self._batches: dict[tuple, np.ndarray] = {}
        self.nbytes = 0
        self.hits = 0

    def __len__(self) -> int:
        return len(self._batches)

    def get(self, key: tuple, budget: int, make) -> np.ndarray:
        if budget <= 0:  # no memo: neither kept nor reused
            return make()
        out = self._batches.get(key)
        if out is not None:
            self.hits += 1
            return out
        out = make()
        if self.nbytes + out.nbytes <= budget:
            out.setflags(write=False)
            self._batches[key] = out
            self.nbytes += out.nbytes
        return out


MEMO = BatchMemo()


def sample_batch_memo(
    model: DiffusionModel,
    cls: int,
    n: int,
    sampler: SamplerConfig,
    seed: int,
    batch: int = 0,
    checkpoint_hash: str | None = None,
) -> np.ndarray:
    """``sample_batch``, or the same batch sampled before in this process (``MEMO``)."""
    chash = checkpoint_hash or model.checkpoint_hash()
    # the device as resolved: "auto" on a CUDA machine and "cuda" are the same batches
    device = str(resolve_device(sampler.device))
    key = (
        chash,
        int(cls),
        int(n),
        replace(sampler, progress=False, memo_bytes=0, device=device),
        int(seed),
        int(batch),
    )
    return MEMO.get(
        key, sampler.memo_bytes, lambda: sample_batch(model, cls, n, sampler, seed, batch)
    )


def sample_class(
    model: DiffusionModel, cls: int, n: int, sampler: SamplerConfig, seed: int
) -> np.ndarray:
    """``n`` images of class ``cls`` in batches of ``sampler.batch_size``."""
    out = [
        sample_batch(model, cls, min(sampler.batch_size, n - lo), sampler, seed, b)
        for b, lo in enumerate(range(0, n, sampler.batch_size))
    ]
    s = model.sample_size
    return np.concatenate(out) if out else np.zeros((0, s, s), np.uint8)
