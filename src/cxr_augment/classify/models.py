"""The classifiers of the thesis (3.3, 4.2), one-channel, with optional local weights.

- ``densenet121``: torchvision's DenseNet-121.
- ``densenet161``: the thesis's settings: growth rate 32, 64 initial features, bn_size 4,
  drop rate 0.2, blocks (6, 12, 36, 24) (section 4.2; torchvision's DenseNet-161 uses 48/96).
- ``densenet161_torchvision``: torchvision's DenseNet-161 (growth 48, 96 initial features),
  the architecture its ImageNet weights fit; drop rate 0.2 as in the thesis.
- ``inception_resnet_v2``: timm's Inception-ResNet-v2, drop rate 0.2 (lr 0.01, batch 4 in the
  thesis: see ``parameters_study.yml``).
- ``chexnet``: CheXNet (Rajpurkar et al., 2017): DenseNet-121 with a 14-output multi-label
  sigmoid head, one output per CheXpert observation (``chexpert.OBSERVATIONS``' order).
- ``tiny_densenet``: a small DenseNet for tests and smoke runs.

``drop_rate: null`` means the thesis's drop rate for the model (``DROP_RATES``); ``0`` means
no dropout. ``outputs: null`` means the model's own head: 14 for ``chexnet``, else 1.

Pretrained weights are never downloaded: ``pretrained_path`` names a local ``state_dict`` file
(``torch.load(..., weights_only=True)``, or ``.safetensors``). Loading follows three rules:

1. Every tensor of the model's body must be in the file with the model's shape, except the
   first convolution, whose three-channel (RGB) filters are summed into one grey channel;
   anything else missing or of another shape is an error naming the file.
2. The classifier head is loaded only if the file's head has the model's shape (a CheXNet
   state_dict into ``chexnet``); otherwise (ImageNet's 1000 classes, or a 14-output head into a
   binary model) it is dropped and the model keeps its freshly initialised head.
3. Key names are those of torchvision and timm; older spellings are read too: torchvision's
   DenseNet downloads (``denselayer1.norm.1`` for ``norm1``), DataParallel's ``module.``,
   CheXNet re-implementations' ``densenet121.`` and ``classifier.0.``, and the ``last_linear``
   head of the ``pretrainedmodels`` Inception-ResNet-v2.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torchvision.models import DenseNet

from cxr_augment.preprocess.chexpert import OBSERVATIONS

MODELS = (
    "densenet121",
    "densenet161",
    "densenet161_torchvision",
    "inception_resnet_v2",
    "chexnet",
    "tiny_densenet",
)
CHEXNET_OUTPUTS = len(OBSERVATIONS)  # 14
# thesis 4.2: drop rate 0.2 for DenseNet-161 and Inception-ResNet-v2; DenseNet-121 and CheXNet
# (Rajpurkar et al., 2017) train without dropout
DROP_RATES = {"densenet161": 0.2, "densenet161_torchvision": 0.2, "inception_resnet_v2": 0.2}
WEIGHT_HINTS = {
    "densenet121": "torchvision's ImageNet DenseNet-121 state_dict (densenet121-a639ec97.pth) "
    "or a CheXNet state_dict",
    "densenet161": "a state_dict of the thesis's DenseNet-161 (growth 32, 64 initial features); "
    "torchvision's ImageNet densenet161-8d451a50.pth (growth 48, 96 initial features) fits "
    "model name densenet161_torchvision instead",
    "densenet161_torchvision": "torchvision's ImageNet DenseNet-161 state_dict "
    "(densenet161-8d451a50.pth)",
    "inception_resnet_v2": "timm's ImageNet inception_resnet_v2 state_dict (the "
    "model.safetensors of timm/inception_resnet_v2.tf_in1k from a local hub cache, or a "
    "torch.save(model.state_dict()) of it)",
    "chexnet": "a CheXNet (DenseNet-121, 14 outputs) state_dict, or torchvision's ImageNet "
    "DenseNet-121 (densenet121-a639ec97.pth)",
    "tiny_densenet": "a tiny_densenet state_dict",
}


@dataclass(frozen=True)
class ModelConfig:
    name: str = "densenet121"
    outputs: int | None = None  # 1: binary logit; 3: U-MultiClass (0, 1, u); 14: CheXNet
    drop_rate: float | None = None  # None: the thesis's rate for the model (DROP_RATES)
    pretrained_path: str | None = None

    def __post_init__(self) -> None:
        if self.name not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, got {self.name!r}")
        own = CHEXNET_OUTPUTS if self.name == "chexnet" else 1
        object.__setattr__(self, "outputs", own if self.outputs is None else int(self.outputs))
        if self.drop_rate is None:
            object.__setattr__(self, "drop_rate", DROP_RATES.get(self.name, 0.0))
        if self.outputs < 1:
            raise ValueError(f"outputs must be >= 1, got {self.outputs}")
        if self.name == "chexnet" and self.outputs != CHEXNET_OUTPUTS:
            raise ValueError(
                f"chexnet has {CHEXNET_OUTPUTS} outputs (one per CheXpert observation), got "
                f"outputs: {self.outputs}; a binary DenseNet-121 is model name densenet121"
            )
        if not 0.0 <= self.drop_rate < 1.0:
            raise ValueError(f"drop_rate must be in [0, 1), got {self.drop_rate}")


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
    drop, outputs = config.drop_rate, config.outputs
    if config.name == "densenet121" or config.name == "chexnet":
        model = _one_channel_densenet(_densenet(32, (6, 12, 24, 16), 64, 4, drop, outputs))
    elif config.name == "densenet161":
        # thesis 4.2: growth_rate 32, num_init_features 64, bn_size 4, (6, 12, 36, 24)
        model = _one_channel_densenet(_densenet(32, (6, 12, 36, 24), 64, 4, drop, outputs))
    elif config.name == "densenet161_torchvision":
        model = _one_channel_densenet(_densenet(48, (6, 12, 36, 24), 96, 4, drop, outputs))
    elif config.name == "tiny_densenet":
        model = _one_channel_densenet(_densenet(8, (2, 2), 16, 2, drop, outputs))
    else:
        import timm

        model = timm.create_model(
            "inception_resnet_v2",
            pretrained=False,
            in_chans=1,
            num_classes=outputs,
            drop_rate=drop,
        )
    if config.pretrained_path:
        load_pretrained(model, config)
    return model


# torchvision's DenseNet downloads: "denselayer1.norm.1.weight" is today's "denselayer1.norm1.weight"
_OLD_DENSENET_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    # weights_only=True: a checkpoint from elsewhere must not run code when loaded
    state = torch.load(path, map_location="cpu", weights_only=True)
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state_dict (a mapping of tensors), got {type(state)}")
    return state


def _canonical_key(key: str) -> str:
    k = key.removeprefix("module.").replace("densenet121.", "")
    k = k.replace("classifier.0.", "classifier.")  # CheXNet: Sequential(Linear, Sigmoid)
    k = k.replace("last_linear.", "classif.")  # pretrainedmodels' Inception-ResNet-v2
    match = _OLD_DENSENET_KEY.match(k)
    return match.group(1) + match.group(2) if match else k


def _head_name(model: nn.Module) -> str:
    lin = head(model)
    return next(name for name, module in model.named_modules() if module is lin)


def load_pretrained(model: nn.Module, config: ModelConfig) -> dict:
    """Load a local state_dict into ``model`` by the module's rules; returns what was loaded.

    Returns:
        ``{"tensors": n, "head": "loaded" | "new"}``: the tensors copied, and whether the head
        came from the file or stays freshly initialised.
    """
    path = Path(config.pretrained_path)
    if not path.is_file():
        raise FileNotFoundError(
            f"pretrained weights for {config.name} not found at {path}: put "
            f"{WEIGHT_HINTS[config.name]} there, or set pretrained_path: null to train from scratch"
        )
    state = {_canonical_key(k): v for k, v in _read_state(path).items()}
    own = model.state_dict()
    head_name = _head_name(model)
    head_keys = [k for k in own if k.startswith(head_name + ".")]
    new, missing, mismatched = {}, [], []
    for key, target in own.items():
        value = state.get(key)
        if key in head_keys:
            continue
        if key.endswith("num_batches_tracked"):
            if value is not None:  # absent from files older than PyTorch 0.4.1
                new[key] = value
        elif value is None:
            missing.append(key)
        elif value.shape == target.shape:
            new[key] = value.to(target.dtype)
        elif (
            value.ndim == 4
            and value.shape[1] == 3
            and target.shape[1] == 1
            and value.shape[0] == target.shape[0]
            and value.shape[2:] == target.shape[2:]
        ):
            new[key] = value.sum(dim=1, keepdim=True).to(target.dtype)  # RGB -> one grey channel
        else:
            mismatched.append(f"{key} {tuple(value.shape)} (model: {tuple(target.shape)})")
    if missing or mismatched:
        raise ValueError(
            f"{path} does not fit model {config.name}: {len(missing)} tensors missing "
            f"{missing[:3]}, {len(mismatched)} of another shape {mismatched[:3]}; put "
            f"{WEIGHT_HINTS[config.name]} there"
        )
    head_fits = all(k in state and state[k].shape == own[k].shape for k in head_keys)
    if head_fits:
        new.update({k: state[k].to(own[k].dtype) for k in head_keys})
    model.load_state_dict({**own, **new})
    return {"tensors": len(new), "head": "loaded" if head_fits else "new"}


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
