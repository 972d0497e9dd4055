"""Diffusion models of the study (thesis 4.6): a diffusers ``UNet2DModel`` on grey radiographs.

Usage::

    config = UNetConfig(**params["generation"]["presets"]["small"])
    unet = build_unet(config, channels="grey", num_classes=None)        # one model per class
    unet = build_unet(config, channels="grey", num_classes=2)           # class-conditional (CFG)

Two ways to condition on the class:

- ``per_class`` (the thesis's way): one unconditional model per class, trained on that
  class's images only;
- ``class_conditional``: one model whose timestep embedding gets a class embedding
  (``num_class_embeds = classes + 1``); the last index is the *null* class that classifier-free
  guidance trains with probability ``p_uncond`` and samples against (Ho & Salimans 2022).

Grey end to end: one channel in and out. ``channels: rgb`` replicates grey to three channels
(thesis Table 13); its samples are turned back to grey by the channel mean.

A ``DiffusionModel`` bundles the UNet(s) of one trained model with its noise schedule; the
catalog saves each UNet with its scheduler as a diffusers ``DDPMPipeline`` folder, so an
unconditional model opens in plain diffusers too.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field

import torch
from diffusers import DDPMScheduler, UNet2DModel

CHANNELS = {"grey": 1, "rgb": 3}
CONDITIONING = ("per_class", "class_conditional")


@dataclass(frozen=True)
class UNetConfig:
    """The UNet's architecture: a preset of ``parameters_generation.yml``.

    The ``thesis`` preset is 4.6's: ``layers_per_block=2``, ``block_out_channels=(128, 128,
    256, 256, 512, 512)``, attention at the 5th down and the 2nd up block, 256 x 256.
    """

    sample_size: int = 32
    layers_per_block: int = 1
    block_out_channels: tuple[int, ...] = (32, 64, 128)
    down_block_types: tuple[str, ...] = ("DownBlock2D", "DownBlock2D", "AttnDownBlock2D")
    up_block_types: tuple[str, ...] = ("AttnUpBlock2D", "UpBlock2D", "UpBlock2D")
    norm_num_groups: int = 32
    attention_head_dim: int | None = 8
    dropout: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "block_out_channels", tuple(self.block_out_channels))
        object.__setattr__(self, "down_block_types", tuple(self.down_block_types))
        object.__setattr__(self, "up_block_types", tuple(self.up_block_types))
        n = len(self.block_out_channels)
        if len(self.down_block_types) != n or len(self.up_block_types) != n:
            raise ValueError(
                f"UNet: {n} block widths but {len(self.down_block_types)} down and "
                f"{len(self.up_block_types)} up block types"
            )
        if self.sample_size % 2 ** (n - 1):
            raise ValueError(
                f"UNet: sample_size {self.sample_size} must be divisible by 2^{n - 1} ({n} levels)"
            )
        if any(c % self.norm_num_groups for c in self.block_out_channels):
            raise ValueError(
                f"UNet: every block width {self.block_out_channels} must be a multiple of "
                f"norm_num_groups={self.norm_num_groups}"
            )


@dataclass(frozen=True)
class ScheduleConfig:
    """The forward process (thesis 4.6: linear betas 1e-4..0.02, T = 1,000; best 4,000)."""

    num_train_timesteps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02
    beta_schedule: str = "linear"
    prediction_type: str = "epsilon"  # epsilon (thesis) | v_prediction

    def __post_init__(self) -> None:
        if self.terminal_signal() > 0.1:
            raise ValueError(
                f"noise schedule: {self.num_train_timesteps} steps of betas "
                f"{self.beta_start}..{self.beta_end} leave sqrt(abar_T) = "
                f"{self.terminal_signal():.2f} of the image at t = T, but sampling starts from "
                "pure noise: raise num_train_timesteps or beta_end"
            )
        if self.prediction_type not in ("epsilon", "v_prediction"):
            raise ValueError(
                f"prediction_type must be epsilon or v_prediction, got {self.prediction_type!r}"
            )

    def terminal_signal(self) -> float:
        """sqrt(abar_T): how much of x_0 is left at t = T (sampling starts from pure noise, so
        this must be ~0; linear 1e-4..0.02 with T = 50 leaves 0.78)."""
        abar = self.scheduler().alphas_cumprod[-1]
        return float(abar.sqrt())

    def scheduler(self) -> DDPMScheduler:
        """The training scheduler (adds noise; also the DDPM sampler)."""
        return DDPMScheduler(
            num_train_timesteps=self.num_train_timesteps,
            beta_start=self.beta_start,
            beta_end=self.beta_end,
            beta_schedule=self.beta_schedule,
            prediction_type=self.prediction_type,
            clip_sample=True,
        )


def build_unet(config: UNetConfig, channels: str = "grey", num_classes: int | None = None):
    """A fresh ``UNet2DModel`` (weights from the global torch seed: seed it first).

    Args:
        config: the architecture.
        channels: ``grey`` (1 channel) or ``rgb`` (grey replicated to 3).
        num_classes: ``None`` for an unconditional model; else a class embedding of
            ``num_classes + 1`` entries, the last being the null class of classifier-free
            guidance.
    """
    if channels not in CHANNELS:
        raise ValueError(f"channels must be one of {sorted(CHANNELS)}, got {channels!r}")
    c = CHANNELS[channels]
    return UNet2DModel(
        sample_size=config.sample_size,
        in_channels=c,
        out_channels=c,
        layers_per_block=config.layers_per_block,
        block_out_channels=config.block_out_channels,
        down_block_types=config.down_block_types,
        up_block_types=config.up_block_types,
        norm_num_groups=config.norm_num_groups,
        attention_head_dim=config.attention_head_dim,
        dropout=config.dropout,
        num_class_embeds=None if num_classes is None else num_classes + 1,
    )


def null_class(unet) -> int:
    """The null-class index of a class-conditional UNet (its last class embedding)."""
    n = unet.config.num_class_embeds
    if n is None:
        raise ValueError("an unconditional UNet has no null class")
    return int(n) - 1


@dataclass
class DiffusionModel:
    """One trained generator: its UNet(s), its noise schedule, and how it was made.

    ``unets`` maps a class name (``"0"``, ``"1"``) to its unconditional UNet for ``per_class``,
    or ``"all"`` to the class-conditional UNet.
    """

    unets: dict[str, UNet2DModel]
    schedule: ScheduleConfig
    conditioning: str
    channels: str
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.conditioning not in CONDITIONING:
            raise ValueError(f"conditioning must be one of {CONDITIONING}")
        if self.conditioning == "class_conditional" and set(self.unets) != {"all"}:
            raise ValueError("a class-conditional model has one UNet, named 'all'")

    def unet_for(self, cls: int) -> tuple[UNet2DModel, int | None]:
        """The UNet that samples class ``cls`` and the class label to give it (None: none)."""
        if self.conditioning == "class_conditional":
            return self.unets["all"], int(cls)
        if str(cls) not in self.unets:
            raise KeyError(f"no model for class {cls}: this model has {sorted(self.unets)}")
        return self.unets[str(cls)], None

    @property
    def sample_size(self) -> int:
        return int(next(iter(self.unets.values())).config.sample_size)

    def checkpoint_hash(self) -> str:
        """sha256 (16 hex) over every UNet's tensors, in name order: names a generated image's
        source in its manifest row."""
        h = hashlib.sha256()
        for name in sorted(self.unets):
            h.update(name.encode())
            h.update(state_dict_hash(self.unets[name].state_dict()).encode())
        return h.hexdigest()[:16]

    def describe(self) -> dict:
        return {
            "conditioning": self.conditioning,
            "channels": self.channels,
            "schedule": asdict(self.schedule),
            "unets": sorted(self.unets),
            **self.info,
        }


def state_dict_hash(state: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for k in sorted(state):
        t = state[k].detach().cpu().contiguous()
        h.update(k.encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()
