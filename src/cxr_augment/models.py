"""The classifiers of the thesis (3.3, 4.2), one-channel, with optional local weights.

- ``densenet121``: torchvision's DenseNet-121.
- ``densenet161``: the thesis's settings: growth rate 32, 64 initial features, bn_size 4,
  drop rate 0.2, blocks (6, 12, 36, 24) (section 4.2; torchvision's DenseNet-161 uses 48/96).
- ``inception_resnet_v2``: timm's Inception-ResNet-v2, drop rate 0.2 (lr 0.01, batch 4 in the
  thesis: see ``parameters_study.yml``).
- ``chexnet``: DenseNet-121 with a sigmoid head (Rajpurkar et al., 2017); 1 or 14 outputs.
- ``tiny_densenet``: a small DenseNet for tests and smoke runs.

Pretrained weights are never downloaded: ``pretrained_path`` names a local ``state_dict`` file
(loaded with ``weights_only=True``); the three-channel first convolution is summed into one
channel. A missing file is an error that says which file to put where.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torchvision.models import DenseNet

MODELS = ("densenet121", "densenet161", "inception_resnet_v2", "chexnet", "tiny_densenet")
WEIGHT_HINTS = {
    "densenet121": "torchvision's ImageNet DenseNet-121 state_dict (densenet121-a639ec97.pth)",
    "densenet161": "a DenseNet state_dict with growth 32 / 64 initial features",
    "inception_resnet_v2": "timm's inception_resnet_v2 state_dict (e.g. from a local hub cache)",
    "chexnet": "a CheXNet (DenseNet-121, 14 outputs) state_dict",
    "tiny_densenet": "a tiny_densenet state_dict",
}


@dataclass(frozen=True)
class ModelConfig:
    name: str = "densenet121"
    outputs: int = 1  # 1: binary logit; 3: U-MultiClass (0, 1, u); 14: CheXNet-style
    drop_rate: float = 0.0
    pretrained_path: str | None = None

    def __post_init__(self) -> None:
        if self.name not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, got {self.name!r}")
        if self.outputs < 1:
            raise ValueError(f"outputs must be >= 1, got {self.outputs}")


def _densenet(growth, blocks, init, bn_size, drop, outputs) -> DenseNet:
    return DenseNet(
        growth_rate=growth,
        block_config=blocks,
        num_init_features=init,
        bn_size=bn_size,
        drop_rate=drop,
        num_classes=outputs,
    )


def _one_channel_densenet(model: DenseNet) -> DenseNet:
    conv = model.features.conv0
    model.features.conv0 = nn.Conv2d(
        1, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, bias=False
    )
    return model


def build_model(config: ModelConfig) -> nn.Module:
    """A freshly initialised (or locally pretrained) one-channel classifier."""
    if config.name == "densenet121" or config.name == "chexnet":
        model = _one_channel_densenet(
            _densenet(32, (6, 12, 24, 16), 64, 4, config.drop_rate, config.outputs)
        )
    elif config.name == "densenet161":
        # thesis 4.2: growth_rate 32, num_init_features 64, bn_size 4, drop 0.2, (6, 12, 36, 24)
        model = _one_channel_densenet(
            _densenet(32, (6, 12, 36, 24), 64, 4, config.drop_rate or 0.2, config.outputs)
        )
    elif config.name == "tiny_densenet":
        model = _one_channel_densenet(_densenet(8, (2, 2), 16, 2, config.drop_rate, config.outputs))
    else:
        import timm

        model = timm.create_model(
            "inception_resnet_v2",
            pretrained=False,
            in_chans=1,
            num_classes=config.outputs,
            drop_rate=config.drop_rate or 0.2,
        )
    if config.pretrained_path:
        load_pretrained(model, config)
    return model


def load_pretrained(model: nn.Module, config: ModelConfig) -> None:
    """Copy matching tensors from a local state_dict; adapt RGB first convs; skip heads."""
    path = Path(config.pretrained_path)
    if not path.is_file():
        raise FileNotFoundError(
            f"pretrained weights for {config.name} not found at {path}: put "
            f"{WEIGHT_HINTS[config.name]} there, or set pretrained_path: null to train from scratch"
        )
    # weights_only=True: a checkpoint from elsewhere must not run code when loaded
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    own = model.state_dict()
    renamed = {}
    for key, value in state.items():
        k = key.removeprefix("module.").replace("densenet121.", "")
        # torchvision's old DenseNet keys: "norm.1" -> "norm1"
        for a, b in (
            (".norm.1", ".norm1"),
            (".relu.1", ".relu1"),
            (".conv.1", ".conv1"),
            (".norm.2", ".norm2"),
            (".relu.2", ".relu2"),
            (".conv.2", ".conv2"),
        ):
            k = k.replace(a, b)
        renamed[k] = value
    loaded = 0
    for key, value in renamed.items():
        if key not in own:
            continue
        target = own[key]
        if value.shape == target.shape:
            own[key] = value
            loaded += 1
        elif value.ndim == 4 and value.shape[1] == 3 and target.shape[1] == 1:
            own[key] = value.sum(dim=1, keepdim=True)  # RGB filters -> one grey channel
            loaded += 1
    if loaded == 0:
        raise ValueError(f"{path}: no tensor matches a {config.name}; is it the right file?")
    model.load_state_dict(own)


def feature_extractor(model: nn.Module):
    """A function: images -> penultimate-layer features (N, D), for PCA and strategies."""
    if isinstance(model, DenseNet):

        def features(x: torch.Tensor) -> torch.Tensor:
            f = torch.relu(model.features(x))
            return torch.flatten(nn.functional.adaptive_avg_pool2d(f, 1), 1)

        return features
    return lambda x: model.forward_head(model.forward_features(x), pre_logits=True)


def head(model: nn.Module) -> nn.Linear:
    """The final linear layer (its weights give the decision boundary in feature space)."""
    if isinstance(model, DenseNet):
        return model.classifier
    return model.get_classifier()
