"""Training and inference for the classifiers, from the tensor store.

- Adam, early stopping on the validation AUC (the best epoch's weights are kept).
- Losses: ``bce``; ``weighted_bce`` (positives weighted by negatives / positives, per output
  of a multi-label head); masked targets (NaN: U-Ignore, U-SelfTrained's first stage, an
  observation without a label) drop out of either element by element; ``multiclass``
  (U-MultiClass: cross-entropy over 0 / 1 / u).
- A multi-label head (CheXNet's 14 outputs) trains on all its outputs; early stopping watches
  one of them, ``column`` (the experiment's observation).
- Reproducible and resumable: each epoch's data order and dropout come from seeds derived from
  (seed, epoch), and a checkpoint (weights, optimiser, early-stopping state) is written
  atomically after every epoch, so a run killed midway (``kill -9`` at any point, the
  checkpoint write included) and resumed ends with the same weights as an uninterrupted one
  (on CPU, where the kernels are deterministic; ``scripts/kill_resume.py`` checks it).
- Faults: a full disk during a checkpoint write raises an ``OSError`` naming the checkpoint,
  the previous one intact; an unreadable or foreign newest checkpoint is skipped with a
  warning for the one before it, and ``CheckpointError`` names the files when none can be
  resumed (see ``CheckpointStore``).
- On a GPU: bf16 autocast, channels_last, larger batches, loader workers with pinned memory.
- On a CPU: bf16 autocast where it has bf16 instructions (``bf16_cpu: auto``); channels_last
  where it trains in float32 (``channels_last_cpu: auto``: DenseNet-121 at the demo's 97 x 80,
  batch 32, 1.2x faster per step on a 2-core EPYC without AVX-512, ``bench/bench_training.py``;
  unmeasured with bf16 autocast, so left off there).

``CheckpointStore`` is the folder the catalog hands to the training node.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, RandomSampler, SequentialSampler
from tqdm.auto import tqdm

from cxr_augment.classify.metrics import roc_auc

LOSSES = ("bce", "weighted_bce", "multiclass")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 3
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.0
    loss: str = "bce"
    patience: int = 3  # epochs without a better validation AUC before stopping
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    num_workers: int = 0  # loader processes (0: in the training process)
    bf16: bool = True  # autocast on CUDA
    bf16_cpu: bool | str = False  # autocast on CPU: auto | true | false (cxr_augment/cpu.py)
    channels_last: bool = True  # on CUDA
    channels_last_cpu: bool | str = "auto"  # on CPU: auto (if float32) | true | false
    progress: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.channels_last_cpu, bool) and str(self.channels_last_cpu) != "auto":
            raise ValueError(
                f"channels_last_cpu must be auto, true or false, got {self.channels_last_cpu!r}"
            )
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be >= 1")

    def fingerprint(self, extra: dict | None = None) -> str:
        payload = {k: v for k, v in asdict(self).items() if k not in ("progress", "num_workers")}
        payload.update(extra or {})
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device: cuda was asked for, but no CUDA device is available")
    return torch.device(name)


from cxr_augment.classify.checkpoints import (  # noqa: E402  (re-exported)
    CheckpointError,
    CheckpointStore,
    check_optimizer,
    check_weights,
    describe_error,
    require_keys,
)

# what a classifier checkpoint holds
_CHECKPOINT_KEYS = (
    "fingerprint",
    "epoch",
    "model",
    "optimizer",
    "history",
    "best_auc",
    "best_epoch",
    "bad_epochs",
    "best_model",
)


@dataclass
class TrainResult:
    state_dict: dict
    history: pd.DataFrame
    best_epoch: int
    best_val_auc: float
    resumed_from: int | None = None
    meta: dict = field(default_factory=dict)


def _loss_fn(config: TrainConfig, pos_weight: float | None) -> Callable:
    if config.loss == "multiclass":
        ce = nn.CrossEntropyLoss(reduction="none")

        def multiclass(logits, y):
            keep = ~torch.isnan(y)
            if not keep.any():
                return logits.sum() * 0.0
            return ce(logits[keep], y[keep].long()).mean()

        return multiclass
    # a scalar, or one weight per output (broadcast over the batch)
    pw = None if pos_weight is None else torch.tensor(pos_weight, dtype=torch.float32)

    def bce(logits, y):
        y = y.reshape(logits.shape) if y.ndim == logits.ndim else y.unsqueeze(1).expand_as(logits)
        keep = ~torch.isnan(y)
        if not keep.any():
            return logits.sum() * 0.0
        # per element, then the mean over the labelled elements only
        per = nn.functional.binary_cross_entropy_with_logits(
            logits,
            torch.where(keep, y, torch.zeros_like(y)),
            pos_weight=None if pw is None else pw.to(logits.device),
            reduction="none",
        )
        return per[keep].mean()

    return bce


def positive_probability(logits: torch.Tensor, loss: str, column: int | None = 0) -> torch.Tensor:
    """P(positive) from the head's output: of output ``column``, or (N, C) for every output
    of a multi-label head when ``column`` is None.

    U-MultiClass follows Irvin et al. (2019): a softmax over the negative and positive logits
    only, the uncertain class left out.
    """
    if loss == "multiclass":
        if column is None:
            raise ValueError("U-MultiClass has one probability per image: give a column")
        return torch.softmax(logits[:, :2].float(), dim=1)[:, 1]
    if column is None:
        return torch.sigmoid(logits.float())
    return torch.sigmoid(logits[:, column].float())


def _loader(dataset, config: TrainConfig, device: torch.device, epoch: int | None) -> DataLoader:
    if epoch is None:
        sampler = SequentialSampler(dataset)
    else:
        g = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
        sampler = RandomSampler(dataset, generator=g)
    workers = config.num_workers
    return DataLoader(
        dataset,
        batch_size=config.batch_size,
        sampler=sampler,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
        prefetch_factor=4 if workers > 0 else None,
        # a last batch of one image breaks batch normalisation in training: drop only that
        drop_last=epoch is not None and len(dataset) % config.batch_size == 1,
    )


def _autocast(device: torch.device, config: TrainConfig):
    from cxr_augment.cpu import use_bf16_cpu

    enabled = config.bf16 if device.type == "cuda" else use_bf16_cpu(config.bf16_cpu)
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)


def use_channels_last(device: torch.device, config: TrainConfig) -> bool:
    """Whether the model and its inputs go channels_last on ``device``: ``channels_last`` on
    CUDA; ``channels_last_cpu`` on a CPU, where ``auto`` means when it trains in float32."""
    from cxr_augment.cpu import use_bf16_cpu

    if device.type == "cuda":
        return bool(config.channels_last)
    if device.type != "cpu":
        return False
    if isinstance(config.channels_last_cpu, bool):
        return config.channels_last_cpu
    return not use_bf16_cpu(config.bf16_cpu)


@torch.no_grad()
def predict(
    model: nn.Module,
    dataset,
    config: TrainConfig,
    column: int | None = 0,
    features: Callable | None = None,
) -> np.ndarray:
    """P(positive) for every item of ``dataset`` at output ``column`` ((N, C) for all outputs
    when None), or the features if a function is given."""
    device = resolve_device(config.device)
    model = model.to(device).eval()
    channels_last = use_channels_last(device, config)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    out = []
    for batch in _loader(dataset, config, device, epoch=None):
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        x = x.to(device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with _autocast(device, config):
            y = (
                features(x)
                if features is not None
                else positive_probability(model(x), config.loss, column)
            )
        out.append(y.float().cpu())
    return torch.cat(out).numpy() if out else np.zeros((0,))


def train(
    model: nn.Module,
    train_set,
    val_set,
    val_targets: np.ndarray,
    config: TrainConfig,
    checkpoints: CheckpointStore | None = None,
    fingerprint_extra: dict | None = None,
    stop_after_epoch: int | None = None,
    train_targets: np.ndarray | None = None,
    column: int = 0,
) -> TrainResult:
    """Train with early stopping on the validation AUC; resume from ``checkpoints``.

    Args:
        model: the freshly built model (its initial weights must come from ``config.seed``).
        train_set: items (image tensor, target) with NaN targets masked out of the loss.
        val_set: validation items; ``val_targets`` their 0/1 truth for the AUC.
        checkpoints: where each epoch's state goes; a matching checkpoint is resumed.
        fingerprint_extra: what else identifies the run (data, model), for resuming safely.
        stop_after_epoch: stop (as if killed) after this epoch's checkpoint; for tests.
        train_targets: the training targets, for ``weighted_bce``'s positive weight (one per
            column of a (N, C) target matrix).
        column: the output whose validation AUC is watched (a multi-label head's output for
            the experiment's observation; 0 for a binary or U-MultiClass head).
    """
    device = resolve_device(config.device)
    deterministic = device.type == "cpu"
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    try:
        pos_weight = None
        if config.loss == "weighted_bce":
            if train_targets is None:
                raise ValueError("weighted_bce needs the training targets for its positive weight")
            t = np.asarray(train_targets, dtype=float)
            neg, pos = (t == 0).sum(axis=0), np.maximum((t == 1).sum(axis=0), 1)
            pos_weight = float(neg / pos) if t.ndim == 1 else (neg / pos).astype(float).tolist()
        return _train(
            model,
            train_set,
            val_set,
            val_targets,
            config,
            checkpoints,
            fingerprint_extra,
            stop_after_epoch,
            device,
            pos_weight,
            column,
        )
    finally:
        torch.use_deterministic_algorithms(previous)


def _train(
    model,
    train_set,
    val_set,
    val_targets,
    config,
    checkpoints,
    fingerprint_extra,
    stop_after_epoch,
    device,
    pos_weight,
    column,
) -> TrainResult:
    # the watched output is part of the run (column 0 adds nothing: earlier runs' fingerprints)
    fp = config.fingerprint({**(fingerprint_extra or {}), **({"column": column} if column else {})})
    loss_fn = _loss_fn(config, pos_weight)
    model = model.to(device)
    channels_last = use_channels_last(device, config)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    start, history, best_auc, best_epoch, bad, best_state, resumed = (
        0,
        [],
        -math.inf,
        -1,
        0,
        None,
        None,
    )

    def check(state: dict) -> None:  # before anything is loaded: nothing is half-loaded
        require_keys(state, ("fingerprint",))
        if state["fingerprint"] != fp:
            return  # a different run's checkpoint (cleared below)
        require_keys(state, _CHECKPOINT_KEYS)
        check_weights(model, state["model"], "the model weights")
        if state["best_model"] is not None:
            check_weights(model, state["best_model"], "the best epoch's weights")
        check_optimizer(optimizer, state["optimizer"])

    found = checkpoints.resume(check) if checkpoints is not None else None
    if found is not None and found[1]["fingerprint"] == fp:
        path, state = found
        try:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            start, history = int(state["epoch"]) + 1, list(state["history"])
            best_auc, best_epoch = state["best_auc"], state["best_epoch"]
            bad, best_state = state["bad_epochs"], state["best_model"]
        except Exception as exc:
            raise CheckpointError(
                f"checkpoint {path} cannot be resumed: {describe_error(exc)}. Delete it to "
                "resume from the checkpoint before it (or to start afresh if it is the only one)"
            ) from exc
        resumed = state["epoch"]
    elif found is not None:
        checkpoints.clear()  # a different run's checkpoints: start afresh
    for epoch in range(start, config.epochs):
        if bad >= config.patience:
            break
        torch.manual_seed(config.seed * 100_003 + epoch)  # dropout and any random layer
        model.train()
        total, n = 0.0, 0
        loader = _loader(train_set, config, device, epoch)
        bar = tqdm(
            loader,
            desc=f"epoch {epoch + 1}/{config.epochs}",
            disable=not config.progress,
            leave=False,
        )
        for x, y in bar:
            x = x.to(device, non_blocking=True)
            y = y.to(device, non_blocking=True)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with _autocast(device, config):
                logits = model(x)
            loss = loss_fn(logits.float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(x)
            n += len(x)
            bar.set_postfix(loss=f"{total / max(n, 1):.4f}")
        prob = predict(model, val_set, config, column)
        auc = roc_auc(val_targets, prob)
        improved = auc > best_auc
        if improved:
            best_auc, best_epoch, bad = auc, epoch, 0
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        else:
            bad += 1
        history.append(
            {"epoch": epoch, "train_loss": total / max(n, 1), "val_auc": auc, "best": improved}
        )
        if checkpoints is not None:
            checkpoints.save(
                epoch,
                {
                    "fingerprint": fp,
                    "epoch": epoch,
                    "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                    "optimizer": optimizer.state_dict(),
                    "history": history,
                    "best_auc": best_auc,
                    "best_epoch": best_epoch,
                    "bad_epochs": bad,
                    "best_model": best_state,
                },
            )
        if stop_after_epoch is not None and epoch >= stop_after_epoch:
            break
    if best_state is None:
        best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return TrainResult(
        best_state,
        pd.DataFrame(history),
        best_epoch,
        float(best_auc),
        resumed,
        {"device": str(device), "pos_weight": pos_weight},
    )
