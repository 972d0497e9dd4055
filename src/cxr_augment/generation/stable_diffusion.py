"""Stable Diffusion for chest X-rays: prompt-only generation and LoRA fine-tuning (thesis 4.6).

Usage::

    ok, message = base_model_status(base)  # (False, "skipped: ...") when base is unset
    pipe = load_pipeline(base, device="cuda")
    # Stable Model 1: the pretrained model, prompted
    fake = generate(pipe, PROMPTS[1], n=100, seed=0, out_shape=(256, 256))
    # Stable Model 2: the same model with a LoRA adapter fitted to labelled training images
    settings = LoraSettings()
    lora, history = train_lora(pipe, images, captions(frame, list(OBSERVATIONS)), settings)
    save_lora(lora, "data/06_models/lora.safetensors", settings)
    pipe2 = apply_lora(load_pipeline(base), load_lora("data/06_models/lora.safetensors"), settings)

Rules:

- Prompts: ``"Chest X-ray images of people with <Observation>"`` for the positive class and
  ``"Chest X-ray images of healthy people"`` for the negative one, with the observation spelt as
  CheXpert spells it (thesis 4.6 for Pneumothorax: :data:`PROMPTS`).
- LoRA captions: the CheXpert pathologies whose label is exactly 1.0 (positive), in CheXpert
  column order, joined by ", ": ``"Chest X-ray images of people with Pleural Effusion,
  Pneumothorax"``; no positive pathology gives ``"Chest X-ray images of healthy people"``.
  "No Finding" and "Support Devices" (``chexpert.PATHOLOGIES`` leaves both out) are never named;
  uncertain (-1), negative (0) and not mentioned (NaN) count as not positive. The thesis's
  example caption ends with a full stop; it is left out so that a caption naming one finding is
  exactly the generation prompt of that class.
- Grey: Stable Diffusion returns RGB; an image is turned to grey with ITU-R BT.601 luma
  (0.299 R + 0.587 G + 0.114 B, as ``cv2.COLOR_RGB2GRAY`` and PIL's ``"L"``), rounded to uint8,
  then resized with ``cv2.INTER_AREA`` when an output shape is asked for. For training a grey
  image is repeated over the three channels.
- Randomness: generation batch b draws its latents from a CPU ``torch.Generator`` seeded by
  (seed, b), so (for one batch_size) the first k images of a request do not depend on n, and
  the same seed gives the same bytes on one machine. LoRA training draws the image order, the
  VAE posterior samples, the noise, the timesteps and the LoRA A matrices from one CPU
  generator seeded by ``settings.seed``.
- LoRA fine-tuning follows diffusers' ``train_text_to_image_lora.py`` (and, for the text
  encoder, ``train_dreambooth_lora.py``): frozen base weights, peft LoRA on the attention
  projections, DDPM noise schedule of the pipeline's scheduler config, epsilon (or v) MSE,
  AdamW with one learning rate for the UNet's adapter and one for the text encoder's, linear
  warm-up then cosine decay, gradient clipping. Mixed precision: fp16 autocast with a gradient
  scaler on CUDA; on CPU "fp16" runs in fp32 and "bf16" autocasts to bfloat16.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from cxr_augment.classify.training import resolve_device
from cxr_augment.preprocess.chexpert import OBSERVATIONS, PATHOLOGIES, POSITIVE

HEALTHY_PROMPT = "Chest X-ray images of healthy people"
_FINDING_PROMPT = "Chest X-ray images of people with {}"

ADAPTER = "default"  # peft adapter name (diffusers' and peft's default)
UNET_PREFIX, TEXT_ENCODER_PREFIX = "unet.", "text_encoder."
UNET_TARGETS = ("to_k", "to_q", "to_v", "to_out.0")  # diffusers' train_text_to_image_lora.py
TEXT_ENCODER_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj")  # train_dreambooth_lora.py

# A diffusers Stable Diffusion folder: what must be there.
BASE_MODEL_ENTRIES = (
    "model_index.json",
    "unet/config.json",
    "vae/config.json",
    "text_encoder/config.json",
    "tokenizer/",
    "scheduler/scheduler_config.json",
)
SKIP_MESSAGE = (
    "skipped: no Stable Diffusion base model; set parameter "
    "generation.stable_diffusion.base_model to a local diffusers folder with model_index.json, "
    "unet/, vae/, text_encoder/, tokenizer/, scheduler/"
)

LUMA_BT601 = np.array([0.299, 0.587, 0.114], dtype=np.float32)
_SCHEDULES = (
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "constant",
    "constant_with_warmup",
)
_MIXED_PRECISION = ("no", "fp16", "bf16")
_SETTINGS_METADATA_KEY = "lora_settings"


# --- prompts and captions ------------------------------------------------------------------------


def class_prompt(observation: str, positive: bool) -> str:
    """The generation prompt of one class of a binary observation (thesis 4.6).

    Args:
        observation: a CheXpert observation name, spelt as CheXpert spells it.
        positive: the class: True for images with the finding, False for healthy ones.

    Returns:
        ``"Chest X-ray images of people with <observation>"`` or
        ``"Chest X-ray images of healthy people"``.

    Raises:
        ValueError: for a name that is not a CheXpert pathology.
    """
    if observation not in PATHOLOGIES:
        raise ValueError(
            f"observation must be a CheXpert pathology {PATHOLOGIES}, got {observation!r}"
        )
    return _FINDING_PROMPT.format(observation) if positive else HEALTHY_PROMPT


PROMPTS: dict[int, str] = {
    1: class_prompt("Pneumothorax", True),
    0: class_prompt("Pneumothorax", False),
}


def caption(labels: Mapping[str, float]) -> str:
    """The LoRA training caption of one image from its labels (rule in the module docstring).

    Args:
        labels: observation name -> report-labeler value (1, 0, -1 or NaN). Keys that are not
            CheXpert pathologies (``"No Finding"``, ``"Support Devices"``, metadata) are ignored.

    Returns:
        ``"Chest X-ray images of people with A, B"`` for the positive pathologies A, B (CheXpert
        order), or ``"Chest X-ray images of healthy people"`` when none is positive.
    """
    positive = [o for o in PATHOLOGIES if o in labels and _is_positive(labels[o])]
    return _FINDING_PROMPT.format(", ".join(positive)) if positive else HEALTHY_PROMPT


def captions(frame: pd.DataFrame, observations: list[str]) -> list[str]:
    """One caption per row of a label frame, from the given observation columns only.

    Args:
        frame: one row per image with the observation columns (CheXpert names).
        observations: the columns to caption from; "No Finding" and "Support Devices" may be
            among them but are never named.

    Returns:
        The captions, in row order.

    Raises:
        ValueError: for an observation that is not a CheXpert name.
        KeyError: for an observation that is not a column of ``frame``.
    """
    unknown = [o for o in observations if o not in OBSERVATIONS]
    if unknown:
        raise ValueError(
            f"not CheXpert observations: {unknown}; expected names from {OBSERVATIONS}"
        )
    missing = [o for o in observations if o not in frame.columns]
    if missing:
        raise KeyError(f"label frame lacks the observation columns {missing}")
    rows = frame[list(observations)].to_dict(orient="records")
    return [caption(row) for row in rows]


def _is_positive(value: object) -> bool:
    return value is not None and not pd.isna(value) and float(value) == POSITIVE


# --- settings ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoraSettings:
    """LoRA fine-tuning of Stable Diffusion (thesis 4.6 "Stable Model 2" defaults).

    ``lr`` is the optimiser's default learning rate; the UNet's adapter trains at ``unet_lr``
    and the text encoder's at ``text_encoder_lr``. ``max_steps`` caps the optimiser steps that
    ``epochs`` give (None: all epochs). ``mixed_precision`` "fp16" applies on CUDA only (fp32 on
    CPU); "bf16" autocasts on either device; "no" trains in the pipeline's dtype.
    """

    rank: int = 8
    alpha: float = 1.0
    batch_size: int = 16
    epochs: int = 20
    lr: float = 1e-4
    text_encoder_lr: float = 5e-5
    unet_lr: float = 1e-3
    lr_scheduler: str = "cosine"
    warmup_fraction: float = 0.1
    optimizer: str = "AdamW"
    weight_decay: float = 1e-2  # AdamW's (and diffusers' scripts') default
    max_grad_norm: float = 1.0  # diffusers' scripts' default
    resolution: int = 256
    mixed_precision: str = "fp16"
    seed: int = 0
    train_text_encoder: bool = True
    unet_target_modules: tuple[str, ...] = field(default=UNET_TARGETS)
    text_encoder_target_modules: tuple[str, ...] = field(default=TEXT_ENCODER_TARGETS)
    max_steps: int | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        # Kedro parameters arrive as lists: keep the dataclass hashable and immutable.
        object.__setattr__(self, "unet_target_modules", tuple(self.unet_target_modules))
        object.__setattr__(
            self, "text_encoder_target_modules", tuple(self.text_encoder_target_modules)
        )
        if self.rank < 1 or self.batch_size < 1 or self.epochs < 1:
            raise ValueError("rank, batch_size and epochs must be >= 1")
        if self.alpha <= 0 or min(self.lr, self.unet_lr, self.text_encoder_lr) <= 0:
            raise ValueError("alpha and the learning rates must be > 0")
        if self.lr_scheduler not in _SCHEDULES:
            raise ValueError(f"lr_scheduler must be one of {_SCHEDULES}, got {self.lr_scheduler!r}")
        if not 0.0 <= self.warmup_fraction < 1.0:
            raise ValueError(f"warmup_fraction must be in [0, 1), got {self.warmup_fraction}")
        if self.optimizer != "AdamW":
            raise ValueError(f"only the AdamW optimizer is supported, got {self.optimizer!r}")
        if self.mixed_precision not in _MIXED_PRECISION:
            raise ValueError(
                f"mixed_precision must be one of {_MIXED_PRECISION}, got {self.mixed_precision!r}"
            )
        if self.resolution < 8 or self.resolution % 8:
            raise ValueError(f"resolution must be a positive multiple of 8, got {self.resolution}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1 or None, got {self.max_steps}")
        if not self.unet_target_modules or not self.text_encoder_target_modules:
            raise ValueError("the LoRA target module lists must not be empty")

    def total_steps(self, n_images: int) -> int:
        """Optimiser steps for ``n_images`` (the last batch of an epoch may be smaller)."""
        steps = self.epochs * math.ceil(n_images / self.batch_size)
        return min(steps, self.max_steps) if self.max_steps is not None else steps

    def warmup_steps(self, n_images: int) -> int:
        """Linear warm-up steps: ``warmup_fraction`` of the total, rounded."""
        return round(self.warmup_fraction * self.total_steps(n_images))


# --- the base model ---------------------------------------------------------------------------


def base_model_status(path: str | os.PathLike | None) -> tuple[bool, str]:
    """Whether a local diffusers Stable Diffusion folder is usable.

    An absent setting is a skip; a setting that points at the wrong place is an error.

    Args:
        path: the folder (``generation.stable_diffusion.base_model``), or None / "".

    Returns:
        ``(True, "Stable Diffusion base model at <path>")`` for a complete folder, or
        ``(False, "skipped: ...")`` when no path is set.

    Raises:
        ValueError: the path does not exist, is not a folder, or lacks some of
            :data:`BASE_MODEL_ENTRIES` (all missing entries are named).
    """
    if path is None or str(path).strip() == "":
        return False, SKIP_MESSAGE
    folder = Path(path).expanduser()
    if not folder.exists():
        raise ValueError(
            f"Stable Diffusion base model folder {str(folder)!r} does not exist "
            "(parameter generation.stable_diffusion.base_model)"
        )
    if not folder.is_dir():
        raise ValueError(f"Stable Diffusion base model {str(folder)!r} is not a folder")
    missing = [entry for entry in BASE_MODEL_ENTRIES if not _present(folder / entry, entry)]
    if missing:
        raise ValueError(
            f"{str(folder)!r} is not a diffusers Stable Diffusion folder: missing {missing}"
        )
    return True, f"Stable Diffusion base model at {folder}"


def _present(path: Path, entry: str) -> bool:
    return path.is_dir() if entry.endswith("/") else path.is_file()


def load_pipeline(
    path: str | os.PathLike,
    device: str = "cpu",
    dtype: torch.dtype | None = None,
    progress: bool = False,
):
    """A ``StableDiffusionPipeline`` from a local folder, without the safety checker.

    Args:
        path: a folder that :func:`base_model_status` accepts; nothing is downloaded.
        device: "cpu", "cuda", "cuda:1" or "auto".
        dtype: weight dtype; None: float16 on CUDA, float32 elsewhere.
        progress: show the denoising progress bar when generating.

    Returns:
        The pipeline on ``device``.

    Raises:
        ValueError: no path is set, or the folder is not a Stable Diffusion folder.
    """
    from diffusers import StableDiffusionPipeline

    usable, message = base_model_status(path)
    if not usable:
        raise ValueError(message)
    dev = resolve_device(device)
    if dtype is None:
        dtype = torch.float16 if dev.type == "cuda" else torch.float32
    pipe = StableDiffusionPipeline.from_pretrained(
        str(Path(path).expanduser()),
        local_files_only=True,
        safety_checker=None,
        requires_safety_checker=False,
        dtype=dtype,  # diffusers 0.42 deprecates torch_dtype
    )
    pipe.set_progress_bar_config(disable=not progress)
    return pipe.to(dev)


# --- generation -------------------------------------------------------------------------------


def batch_seed(seed: int, batch: int) -> int:
    """The generator seed of batch ``batch`` of a request seeded by ``seed`` (63 bits)."""
    state = np.random.SeedSequence([int(seed), int(batch)]).generate_state(1, dtype=np.uint64)
    return int(state[0] >> 1)


def to_grey(rgb: np.ndarray) -> np.ndarray:
    """Float RGB in [0, 1], shape (..., 3), to uint8 grey by ITU-R BT.601 luma."""
    luma = rgb.astype(np.float32, copy=False) @ LUMA_BT601
    return np.clip(np.rint(luma * 255.0), 0, 255).astype(np.uint8)


def generate(
    pipe,
    prompt: str,
    n: int,
    seed: int,
    steps: int = 50,
    guidance: float = 7.5,
    size: int = 256,
    batch_size: int = 8,
    out_shape: tuple[int, int] | None = None,
) -> np.ndarray:
    """``n`` grey images for one prompt.

    Args:
        pipe: a Stable Diffusion pipeline (with or without a LoRA adapter).
        prompt: the text prompt (:data:`PROMPTS`, :func:`class_prompt`).
        n: how many images.
        seed: batch b's latents come from a CPU generator seeded by ``batch_seed(seed, b)``.
        steps: denoising steps of the pipeline's scheduler.
        guidance: classifier-free guidance scale (<= 1: no guidance).
        size: the side the model generates at (a multiple of 8).
        batch_size: images per pipeline call.
        out_shape: (H, W) to resize to (area averaging when shrinking, bilinear when
            enlarging); None keeps (size, size).

    Returns:
        uint8 array (n, H, W).
    """
    if n < 0 or batch_size < 1 or steps < 1:
        raise ValueError(
            f"need n >= 0, batch_size >= 1, steps >= 1; got {n}, {batch_size}, {steps}"
        )
    height, width = out_shape if out_shape is not None else (size, size)
    out = np.empty((n, height, width), dtype=np.uint8)
    for b, start in enumerate(range(0, n, batch_size)):
        count = min(batch_size, n - start)
        generator = torch.Generator("cpu").manual_seed(batch_seed(seed, b))
        with torch.inference_mode():
            result = pipe(
                [prompt] * count,
                num_inference_steps=steps,
                guidance_scale=guidance,
                height=size,
                width=size,
                generator=generator,
                output_type="np",
            )
        grey = to_grey(np.asarray(result.images))
        for i, image in enumerate(grey):
            if image.shape != (height, width):
                # area averaging when shrinking, bilinear when enlarging (as the generated sets)
                shrink = image.shape[0] > height or image.shape[1] > width
                interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
                image = cv2.resize(image, (width, height), interpolation=interp)
            out[start + i] = image
    return out


# --- LoRA -------------------------------------------------------------------------------------


def _peft_config(settings: LoraSettings, targets: Iterable[str]):
    from peft import LoraConfig

    return LoraConfig(
        r=settings.rank,
        lora_alpha=settings.alpha,
        init_lora_weights="gaussian",
        target_modules=list(targets),
    )


def _add_adapters(pipe, settings: LoraSettings, text_encoder: bool) -> None:
    """LoRA adapters on the UNet (diffusers' ``add_adapter``) and optionally the text encoder.

    transformers 5.24's ``PreTrainedModel.add_adapter`` demands peft >= 0.22, so the text
    encoder's adapter is injected with peft directly (what ``add_adapter`` does underneath).
    """
    from peft import inject_adapter_in_model

    pipe.unet.add_adapter(_peft_config(settings, settings.unet_target_modules), ADAPTER)
    if text_encoder:
        config = _peft_config(settings, settings.text_encoder_target_modules)
        inject_adapter_in_model(config, pipe.text_encoder, adapter_name=ADAPTER)


def _lora_parameters(model: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
    return [(name, p) for name, p in model.named_parameters() if ".lora_" in name]


def _init_lora(model: torch.nn.Module, rank: int, generator: torch.Generator) -> None:
    """peft's "gaussian" init (A ~ N(0, 1/r^2), B = 0), redrawn from ``generator``."""
    with torch.no_grad():
        for name, p in _lora_parameters(model):
            if ".lora_A." in name:
                p.copy_(torch.randn(p.shape, generator=generator) / rank)
            else:
                p.zero_()


def lora_state_dict(pipe, text_encoder: bool = True) -> dict[str, torch.Tensor]:
    """The adapter tensors of a pipeline, keys prefixed "unet." / "text_encoder.", on CPU."""
    from peft.utils import get_peft_model_state_dict

    parts = [(UNET_PREFIX, pipe.unet)]
    if text_encoder:
        parts.append((TEXT_ENCODER_PREFIX, pipe.text_encoder))
    return {
        prefix + key: value.detach().to("cpu").contiguous().clone()
        for prefix, model in parts
        for key, value in get_peft_model_state_dict(model, adapter_name=ADAPTER).items()
    }


def _pixels(images: np.ndarray, resolution: int) -> np.ndarray:
    """uint8 (N, H, W) to (N, res, res): area averaging when shrinking, bilinear otherwise."""
    out = np.empty((len(images), resolution, resolution), dtype=np.uint8)
    for i, image in enumerate(images):
        if image.shape == (resolution, resolution):
            out[i] = image
            continue
        shrink = image.shape[0] > resolution or image.shape[1] > resolution
        interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
        out[i] = cv2.resize(image, (resolution, resolution), interpolation=interp)
    return out


def _autocast(settings: LoraSettings, device: torch.device):
    if settings.mixed_precision == "fp16" and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16), True
    if settings.mixed_precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16), False
    return contextlib.nullcontext(), False


def train_lora(
    pipe,
    images: np.ndarray,
    captions: list[str],
    settings: LoraSettings,
    device: str = "cpu",
) -> tuple[dict[str, torch.Tensor], pd.DataFrame]:
    """Fit LoRA adapters to grey images and their captions (thesis "Stable Model 2").

    The pipeline is changed in place: it is moved to ``device`` and carries the trained adapter
    (name "default") afterwards, in eval mode with no trainable parameters.

    Args:
        pipe: a Stable Diffusion pipeline without adapters.
        images: uint8 (N, H, W) grey images; resized to ``settings.resolution`` (aspect not kept).
        captions: N captions (:func:`captions`); truncated to the text encoder's length.
        settings: the fine-tuning settings.
        device: "cpu", "cuda" or "auto".

    Returns:
        The adapter tensors on CPU (keys "unet...." and, when the text encoder is trained,
        "text_encoder....", peft's key names without the adapter name), and the history: one
        row per optimiser step with step, epoch, loss, lr (the UNet adapter's) and
        text_encoder_lr (NaN when the text encoder is frozen).
    """
    from diffusers import DDPMScheduler
    from diffusers.optimization import get_scheduler

    images = np.asarray(images)
    if images.ndim != 3 or images.dtype != np.uint8 or len(images) == 0:
        raise ValueError(
            f"images must be a non-empty uint8 (N, H, W) array, got {images.dtype} {images.shape}"
        )
    if len(captions) != len(images):
        raise ValueError(f"{len(images)} images but {len(captions)} captions")
    dev = resolve_device(device)
    pipe.to(dev)
    unet, vae, text_encoder, tokenizer = pipe.unet, pipe.vae, pipe.text_encoder, pipe.tokenizer
    for model in (unet, vae, text_encoder):
        model.requires_grad_(False)
    train_te = settings.train_text_encoder
    _add_adapters(pipe, settings, train_te)

    generator = torch.Generator("cpu").manual_seed(settings.seed)
    groups = [{"params": _train_params(unet, settings.rank, generator), "lr": settings.unet_lr}]
    if train_te:
        params = _train_params(text_encoder, settings.rank, generator)
        groups.append({"params": params, "lr": settings.text_encoder_lr})
    trainable = [p for g in groups for p in g["params"]]
    optimizer = torch.optim.AdamW(groups, lr=settings.lr, weight_decay=settings.weight_decay)
    total = settings.total_steps(len(images))
    schedule = get_scheduler(
        settings.lr_scheduler,
        optimizer,
        num_warmup_steps=settings.warmup_steps(len(images)),
        num_training_steps=total,
    )
    noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    prediction = noise_scheduler.config.prediction_type
    if prediction not in ("epsilon", "v_prediction"):
        raise ValueError(f"unsupported prediction_type {prediction!r}")
    max_length = min(tokenizer.model_max_length, text_encoder.config.max_position_embeddings)
    input_ids = tokenizer(
        list(captions),
        max_length=max_length,
        padding="max_length",
        truncation=True,
        return_tensors="pt",
    ).input_ids
    pixels = _pixels(images, settings.resolution)
    autocast, use_scaler = _autocast(settings, dev)
    scaler = torch.amp.GradScaler("cuda") if use_scaler else None

    rows = []
    bar = tqdm(total=total, desc="LoRA fine-tuning", disable=not settings.progress)
    unet.train()
    text_encoder.train(train_te)
    try:
        step, epoch = 0, 0
        while step < total:
            order = torch.randperm(len(images), generator=generator).numpy()
            for start in range(0, len(order), settings.batch_size):
                if step >= total:
                    break
                idx = order[start : start + settings.batch_size]
                loss = _loss(
                    pipe,
                    noise_scheduler,
                    pixels[idx],
                    input_ids[idx],
                    generator,
                    autocast,
                    dev,
                    train_te,
                )
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"LoRA loss is {loss.item()} at step {step}")
                lrs = [g["lr"] for g in optimizer.param_groups]
                if scaler is not None:
                    scaler.scale(loss).backward()
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(trainable, settings.max_grad_norm)
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(trainable, settings.max_grad_norm)
                    optimizer.step()
                schedule.step()
                optimizer.zero_grad(set_to_none=True)
                rows.append(
                    {
                        "step": step,
                        "epoch": epoch,
                        "loss": float(loss.item()),
                        "lr": lrs[0],
                        "text_encoder_lr": lrs[1] if train_te else float("nan"),
                    }
                )
                bar.update(1)
                bar.set_postfix(loss=f"{rows[-1]['loss']:.4f}")
                step += 1
            epoch += 1
    finally:
        bar.close()
        unet.eval()
        text_encoder.eval()
        for model in (unet, text_encoder):
            model.requires_grad_(False)
    return lora_state_dict(pipe, train_te), pd.DataFrame(
        rows, columns=["step", "epoch", "loss", "lr", "text_encoder_lr"]
    )


def _train_params(model, rank: int, generator: torch.Generator) -> list[torch.nn.Parameter]:
    """The adapter parameters of ``model``: re-initialised from ``generator``, fp32, trainable."""
    _init_lora(model, rank, generator)
    params = []
    for _, p in _lora_parameters(model):
        p.data = p.data.float()
        p.requires_grad_(True)
        params.append(p)
    if not params:
        raise ValueError(
            f"no LoRA parameters were added to {type(model).__name__}: check the target modules"
        )
    return params


def _loss(pipe, noise_scheduler, pixels, input_ids, generator, autocast, dev, train_te):
    """The denoising loss of one batch (diffusers' train_text_to_image_lora.py)."""
    unet, vae, text_encoder = pipe.unet, pipe.vae, pipe.text_encoder
    x = torch.from_numpy(pixels).float().div(127.5).sub(1.0)
    x = x.unsqueeze(1).expand(-1, 3, -1, -1).to(dev, vae.dtype)
    with torch.no_grad():
        latents = vae.encode(x).latent_dist.sample(generator=generator)
    latents = latents * vae.config.scaling_factor
    noise = torch.randn(latents.shape, generator=generator).to(dev, latents.dtype)
    timesteps = torch.randint(
        0, noise_scheduler.config.num_train_timesteps, (len(pixels),), generator=generator
    ).to(dev)
    noisy = noise_scheduler.add_noise(latents, noise, timesteps)
    if noise_scheduler.config.prediction_type == "epsilon":
        target = noise
    else:
        target = noise_scheduler.get_velocity(latents, noise, timesteps)
    with autocast:
        with contextlib.nullcontext() if train_te else torch.no_grad():
            hidden = text_encoder(input_ids.to(dev), return_dict=False)[0]
        prediction = unet(noisy, timesteps, hidden, return_dict=False)[0]
    return F.mse_loss(prediction.float(), target.float(), reduction="mean")


def apply_lora(pipe, lora_state: Mapping[str, torch.Tensor], settings: LoraSettings):
    """Load adapter tensors (from :func:`train_lora` or :func:`load_lora`) into a pipeline.

    Args:
        pipe: a pipeline without adapters (e.g. fresh from :func:`load_pipeline`).
        lora_state: "unet." keys and, when the text encoder was trained, "text_encoder." keys.
        settings: the settings the adapter was trained with (rank, alpha, target modules).

    Returns:
        ``pipe``, with the adapter active.

    Raises:
        ValueError: unknown key prefixes, no UNet tensors, a text-encoder part that disagrees
            with ``settings.train_text_encoder``, a rank other than ``settings.rank``, or keys
            that do not match the adapter's parameters.
    """
    from peft.utils import set_peft_model_state_dict

    unet_state = _strip(lora_state, UNET_PREFIX)
    te_state = _strip(lora_state, TEXT_ENCODER_PREFIX)
    stray = [k for k in lora_state if not k.startswith((UNET_PREFIX, TEXT_ENCODER_PREFIX))]
    if stray:
        raise ValueError(f"LoRA keys without a 'unet.' or 'text_encoder.' prefix: {stray[:5]}")
    if not unet_state:
        raise ValueError("the LoRA state has no 'unet.' tensors")
    if bool(te_state) != settings.train_text_encoder:
        raise ValueError(
            f"settings.train_text_encoder is {settings.train_text_encoder} but the LoRA state "
            f"{'has' if te_state else 'has no'} 'text_encoder.' tensors"
        )
    ranks = {v.shape[0] for k, v in lora_state.items() if ".lora_A." in k}
    if ranks != {settings.rank}:
        raise ValueError(f"LoRA rank(s) {sorted(ranks)} differ from settings.rank {settings.rank}")
    _add_adapters(pipe, settings, bool(te_state))
    parts = [("unet", pipe.unet, unet_state)]
    if te_state:
        parts.append(("text_encoder", pipe.text_encoder, te_state))
    for name, model, state in parts:
        result = set_peft_model_state_dict(model, state, adapter_name=ADAPTER)
        missing = [k for k in result.missing_keys if ".lora_" in k]
        if result.unexpected_keys or missing:
            raise ValueError(
                f"LoRA state does not fit the {name}: unexpected {result.unexpected_keys[:5]}, "
                f"missing {missing[:5]} (different target modules?)"
            )
        model.requires_grad_(False)
        model.eval()
    return pipe


def _strip(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


# --- files ------------------------------------------------------------------------------------


def save_lora(
    state: Mapping[str, torch.Tensor],
    path: str | os.PathLike,
    settings: LoraSettings | None = None,
) -> None:
    """Write adapter tensors to a safetensors file atomically (temporary file, then rename).

    Args:
        state: the adapter tensors.
        path: the file; its folder is created.
        settings: stored as JSON metadata (read back by :func:`load_lora_settings`) when given.
    """
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    metadata = {"format": "pt"}
    if settings is not None:
        metadata[_SETTINGS_METADATA_KEY] = json.dumps(asdict(settings))
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        save_file(tensors, str(tmp), metadata=metadata)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_lora(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Adapter tensors from a file :func:`save_lora` wrote, on CPU."""
    from safetensors.torch import load_file

    return load_file(str(path), device="cpu")


def load_lora_settings(path: str | os.PathLike) -> LoraSettings | None:
    """The settings :func:`save_lora` stored with the tensors, or None if none were."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        stored = (f.metadata() or {}).get(_SETTINGS_METADATA_KEY)
    return None if stored is None else LoraSettings(**json.loads(stored))
