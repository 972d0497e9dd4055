"""pytorch-fid's FID InceptionV3, built offline from a local weights file.

Usage::

    model = build_fid_inception(params["generation"]["metrics"]["inception_weights"])
    pool, logits = inception_features(model, images_uint8, batch_size=50, device="cuda")
    # pool: (N, 2048) features for FID/KID/PRDC; logits: (N, 1008) for the Inception Score

The network is pytorch-fid's ``fid_inception_v3`` (torchvision's InceptionV3 with 1008 classes
and the TF-FID Mixed_5b-7c blocks) minus its download: the weights
``pt_inception-2015-12-05-6726825d.pth`` are read from a local path and nothing is ever
fetched; a missing file raises :class:`MissingWeights` so a pipeline can skip FID/IS with a
clear message. Grey images enter as stated in ``INPUT_RULE`` (pytorch-fid's own input path).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from pytorch_fid.inception import FIDInceptionA, FIDInceptionC, FIDInceptionE_1, FIDInceptionE_2
from torch import nn

WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
INCEPTION_SIZE = 299
INPUT_RULE = (
    "uint8 grey / 255, replicated to 3 channels, bilinear resize to 299x299 "
    "(align_corners=False), scaled to [-1, 1] (2x - 1); pytorch-fid FID InceptionV3 "
    f"({WEIGHTS_FILE}): 2048-d pool3 features, 1008 fc logits"
)

# torchvision Inception3 layers in forward order, up to the global average pool
_TRUNK = (
    "Conv2d_1a_3x3",
    "Conv2d_2a_3x3",
    "Conv2d_2b_3x3",
    "maxpool1",
    "Conv2d_3b_1x1",
    "Conv2d_4a_3x3",
    "maxpool2",
    "Mixed_5b",
    "Mixed_5c",
    "Mixed_5d",
    "Mixed_6a",
    "Mixed_6b",
    "Mixed_6c",
    "Mixed_6d",
    "Mixed_6e",
    "Mixed_7a",
    "Mixed_7b",
    "Mixed_7c",
    "avgpool",
)


def default_weights_path() -> Path:
    """Where torch keeps hub checkpoints: ``$TORCH_HOME/hub/checkpoints/`` + the file name."""
    return Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_FILE


class MissingWeights(FileNotFoundError):
    """The FID Inception weights file is not at the configured path."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        super().__init__(
            f"FID/IS need pytorch-fid's Inception weights: put {WEIGHTS_FILE} at {self.path} "
            f"(parameter generation.metrics.inception_weights) or at {default_weights_path()} "
            "($TORCH_HOME/hub/checkpoints/); skipped"
        )


def _variance_preserving_init(net: nn.Module, generator: torch.Generator) -> None:
    """Random weights whose activations neither vanish nor explode through the ~95 layers.

    torch's default init shrinks the pool features to ~1e-8 (the same for every image), which
    would make a random-network test blind; He et al. 2015 (fan_in, ReLU gain) keeps them O(0.1).
    """
    for module in net.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu", generator=generator)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=module.in_features**-0.5, generator=generator)


def build_fid_inception(weights_path: str | Path | None, seed: int = 0) -> nn.Module:
    """pytorch-fid's ``fid_inception_v3()`` architecture with weights from a local file.

    Args:
        weights_path: Path of ``pt_inception-2015-12-05-6726825d.pth``; ``None`` gives a random
            He-normal initialisation (tests only; seeded, the global torch RNG is untouched).
        seed: Seed of the random initialisation (``weights_path=None`` only).

    Returns:
        The network in eval mode, on CPU, without gradients.

    Raises:
        MissingWeights: ``weights_path`` is given but no such file exists.
    """
    if weights_path is not None and not Path(weights_path).is_file():
        raise MissingWeights(weights_path)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        # as pytorch_fid.inception.fid_inception_v3 (init_weights=False: torch's default init)
        net = torchvision.models.inception_v3(
            weights=None, num_classes=1008, aux_logits=False, init_weights=False
        )
        net.Mixed_5b = FIDInceptionA(192, pool_features=32)
        net.Mixed_5c = FIDInceptionA(256, pool_features=64)
        net.Mixed_5d = FIDInceptionA(288, pool_features=64)
        net.Mixed_6b = FIDInceptionC(768, channels_7x7=128)
        net.Mixed_6c = FIDInceptionC(768, channels_7x7=160)
        net.Mixed_6d = FIDInceptionC(768, channels_7x7=160)
        net.Mixed_6e = FIDInceptionC(768, channels_7x7=192)
        net.Mixed_7b = FIDInceptionE_1(1280)
        net.Mixed_7c = FIDInceptionE_2(2048)
    if weights_path is None:
        _variance_preserving_init(net, torch.Generator().manual_seed(seed))
    else:
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
        net.load_state_dict(state)  # strict: a wrong file fails loudly
    net.eval()
    net.requires_grad_(False)
    return net


def _prepare(batch: np.ndarray, device: str | torch.device) -> torch.Tensor:
    """INPUT_RULE: uint8 (B, H, W) -> float (B, 3, 299, 299) in [-1, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(batch)).to(device=device, dtype=torch.float32)
    x = (x / 255.0)[:, None].expand(-1, 3, -1, -1)  # ToTensor scale, grey -> RGB
    # pytorch-fid InceptionV3.forward: resize_input, then normalize_input
    x = F.interpolate(
        x, size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bilinear", align_corners=False
    )
    return 2.0 * x - 1.0


def inception_features(
    model: nn.Module,
    images_uint8: np.ndarray,
    batch_size: int = 50,
    device: str | torch.device = "cpu",
    bf16: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Pool3 features and class logits of grey images (input rule: ``INPUT_RULE``).

    Args:
        model: A network from :func:`build_fid_inception` (moved to ``device`` here).
        images_uint8: ``(N, H, W)`` uint8 grey images.
        batch_size: Images per forward pass.
        device: Torch device.
        bf16: Run under bfloat16 autocast (faster on GPU; features differ slightly from fp32).

    Returns:
        ``(N, 2048)`` pool features and ``(N, 1008)`` fc logits, both float64.
    """
    images = np.asarray(images_uint8)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(f"need (N, H, W) uint8 images, got {images.dtype} {images.shape}")
    model = model.to(device).eval()
    device_type = torch.device(device).type
    pools, logits = [], []
    with (
        torch.inference_mode(),
        torch.autocast(device_type=device_type, dtype=torch.bfloat16, enabled=bf16),
    ):
        for start in range(0, len(images), batch_size):
            x = _prepare(images[start : start + batch_size], device)
            for name in _TRUNK:
                x = getattr(model, name)(x)
            pool = torch.flatten(x, 1)
            pools.append(pool.double().cpu().numpy())
            logits.append(model.fc(pool).double().cpu().numpy())  # dropout: identity in eval
    if not pools:
        return np.zeros((0, 2048)), np.zeros((0, 1008))
    return np.concatenate(pools), np.concatenate(logits)
