"""Generated image sets: ``n`` images per class from a trained model, streamed into a tensor
store at the classifier's size, with a manifest row naming each image's source.

Usage::

    job, manifest = generated_set(model, {0: 500, 1: 2000}, sampler, seed=11,
                                  out_shape=store.shape, prefix="generated/ptx_ddim", name="ddim")
    write_store(folder, job)          # or: the catalog's TensorStoreDataset saves ``job``

Images are sampled a batch at a time when the store writer first asks for one of them, so
memory stays at one batch whatever the set's size (the thesis's unbalanced strategy asks for
~200k images). Image j of class c belongs to batch j // batch_size of that class, whose noise
is seeded by (seed, c, batch): the bytes depend on the seed and the batch size only, so sets
of one model, sampler and seed share their batches, and a batch sampled for one set in this
process is reused for the next (``sampling.sample_batch_memo``).
"""

from __future__ import annotations

import hashlib
import json

import cv2
import numpy as np
import pandas as pd

from cxr_augment.generation.models import DiffusionModel
from cxr_augment.generation.sampling import SamplerConfig, sample_batch_memo
from cxr_augment.preprocess.tensor_store import StoreWrite


def to_store_shape(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A generated (s, s) image to the classifier's (H, W): bilinear when enlarging, area
    averaging when shrinking (the inverse of the training data path's resize)."""
    h, w = shape
    if image.shape == (h, w):
        return image
    shrink = image.shape[0] > h or image.shape[1] > w
    interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    return cv2.resize(image, (w, h), interpolation=interp)


def _made_with(model, d: dict, seed: int, chash: str, name: str, model_name: str) -> dict:
    """The manifest columns that say how a generated image was made (``d``: the sampler's
    ``describe()``)."""
    return {
        "generator": name,
        "model": model_name,
        "scheduler": d["scheduler"],
        "steps": d["steps"] if d["steps"] else model.schedule.num_train_timesteps,
        "eta": d["eta"],
        "guidance": d["guidance"] if model.conditioning == "class_conditional" else np.nan,
        "seed": int(seed),
        "checkpoint_hash": chash,
        "model_size": model.sample_size,
        "channels": model.channels,
        "origin": "diffusion",
        "split": "train",
    }


class _BatchedProducer:
    """``produce(i)`` for the store writer: samples image i's batch on first use (one batch
    cached: the writer asks for images in order)."""

    def __init__(
        self, model, plan: pd.DataFrame, sampler: SamplerConfig, seed: int, shape, chash: str
    ):
        self.model, self.sampler, self.seed, self.shape = model, sampler, seed, shape
        self.chash = chash
        self.cls = plan["target"].to_numpy(int)
        self.batch = plan["batch"].to_numpy(int)
        self.slot = plan["slot"].to_numpy(int)
        self.sizes = plan.groupby(["target", "batch"]).size().to_dict()
        self._key, self._images = None, None

    def __call__(self, i: int) -> np.ndarray:
        key = (int(self.cls[i]), int(self.batch[i]))
        if key != self._key:
            n = int(self.sizes[key])
            self._images = sample_batch_memo(
                self.model, key[0], n, self.sampler, self.seed, key[1], self.chash
            )
            self._key = key
        return to_store_shape(self._images[int(self.slot[i])], self.shape)


def generated_set(
    model: DiffusionModel,
    counts: dict[int, int],
    sampler: SamplerConfig,
    seed: int,
    out_shape: tuple[int, int],
    prefix: str,
    name: str,
    model_name: str = "",
) -> tuple[StoreWrite, pd.DataFrame]:
    """The lazy store write of ``counts[c]`` images of each class c, and their manifest.

    Args:
        model: the trained generator.
        counts: images per class (0: negative, 1: positive).
        sampler: scheduler, steps, eta, guidance, batch size.
        seed: the sampling seed.
        out_shape: the classifier's image size (the tensor store's).
        prefix: key prefix (unique per experiment or evaluation set).
        name: the generator's name (``ddim``, ``cfg_dpmpp``...), for the manifest.
        model_name: the trained model's name in the catalog.

    Returns:
        The ``StoreWrite`` and one manifest row per image: key, target, generator, model,
        scheduler, steps, eta, guidance, seed, batch, slot, checkpoint_hash, size.
    """
    b = int(sampler.batch_size)
    chash = model.checkpoint_hash()
    rows = []
    for cls in sorted(counts):
        for j in range(int(counts[cls])):
            rows.append(
                {
                    "key": f"{prefix}/class{cls}/{j:07d}",
                    "target": float(cls),
                    "batch": j // b,
                    "slot": j % b,
                }
            )
    plan = pd.DataFrame(rows, columns=["key", "target", "batch", "slot"])
    d = sampler.describe()
    manifest = plan.assign(**_made_with(model, d, seed, chash, name, model_name), patient_id=None)
    h = hashlib.sha256()
    h.update(json.dumps([chash, d, b, int(seed), list(out_shape), prefix], default=str).encode())
    h.update(pd.util.hash_pandas_object(plan, index=False).values.tobytes())
    produce = _BatchedProducer(model, plan, sampler, int(seed), tuple(out_shape), chash)
    job = StoreWrite(plan["key"].tolist(), produce, tuple(out_shape), h.hexdigest(), max_workers=1)
    return job, manifest


class _EditProducer:
    """``produce(i)`` for the store writer: edits image i's batch of parents on first use."""

    def __init__(self, model, plan: pd.DataFrame, store, sampler, strength, seed, shape):
        from cxr_augment.generation.training import to_model_size

        self.model, self.sampler, self.strength, self.seed = model, sampler, strength, seed
        self.store, self.shape, self.resize = store, shape, to_model_size
        self.cls = plan["target"].to_numpy(int)
        self.batch = plan["batch"].to_numpy(int)
        self.slot = plan["slot"].to_numpy(int)
        self.parents = {
            (int(c), int(b)): g["parent_key"].tolist()
            for (c, b), g in plan.groupby(["target", "batch"])
        }
        self._key, self._images = None, None

    def __call__(self, i: int) -> np.ndarray:
        from cxr_augment.generation.sampling import edit_batch

        key = (int(self.cls[i]), int(self.batch[i]))
        if key != self._key:
            s = self.model.sample_size
            parents = np.stack([self.resize(self.store.get(k), s) for k in self.parents[key]])
            self._images = edit_batch(
                self.model, parents, key[0], self.sampler, self.strength, self.seed, key[1]
            )
            self._key = key
        return to_store_shape(self._images[int(self.slot[i])], self.shape)


def edited_set(
    model: DiffusionModel,
    selection: pd.DataFrame,
    train: pd.DataFrame,
    store,
    sampler: SamplerConfig,
    strength: float,
    seed: int,
    prefix: str,
    name: str,
    model_name: str = "",
) -> tuple[StoreWrite, pd.DataFrame]:
    """The lazy store write of ``copies`` image-conditioned edits of each selected training
    image (``sampling.edit_batch``: SDEdit with the parent's class), and their manifest: the
    thesis's "augment the selected images" with a generator in place of the transforms.

    Args:
        model: the trained generator.
        selection: ``key``, ``target``, ``copies`` of the images to edit.
        train: the training rows (``key``, ``patient_id``, ``view``): each edit is its
            parent's patient's and view's.
        store: the real images (the parents, read by key), at the classifier's size.
        sampler, strength, seed: how each edit is made (its noise is seeded by (seed, class,
            batch)).
        prefix, name, model_name: key prefix, the generator's and its model's name.

    Returns:
        The ``StoreWrite`` and one manifest row per image: key, parent_key, copy, target,
        batch, slot, generator, model, scheduler, steps, eta, guidance, strength, seed,
        checkpoint_hash, patient_id, view.
    """
    b = int(sampler.batch_size)
    chash = model.checkpoint_hash()
    sel = selection[selection["copies"] > 0]
    parents = sel.loc[sel.index.repeat(sel["copies"])].reset_index(drop=True)
    parents["copy"] = parents.groupby("key").cumcount()
    parents = parents.sort_values("target", kind="stable").reset_index(drop=True)
    j = parents.groupby("target").cumcount().to_numpy()
    plan = pd.DataFrame(
        {
            "key": [
                f"{prefix}/{k}#{c}" for k, c in zip(parents["key"], parents["copy"], strict=True)
            ],
            "parent_key": parents["key"].to_numpy(),
            "copy": parents["copy"].to_numpy(int),
            "target": parents["target"].to_numpy(float),
            "batch": j // b,
            "slot": j % b,
        }
    )
    missing = ~plan["parent_key"].isin(train["key"])
    if missing.any():
        raise ValueError(
            f"edited_set: {int(missing.sum())} selected images are not training rows "
            f"(first: {plan['parent_key'][missing].iloc[0]})"
        )
    d = sampler.describe()
    info = train.drop_duplicates("key").set_index("key")[["patient_id", "view"]]
    manifest = plan.join(info, on="parent_key").assign(
        **_made_with(model, d, seed, chash, name, model_name), strength=float(strength)
    )
    shape = tuple(store.shape)
    h = hashlib.sha256()
    h.update(json.dumps([chash, d, b, float(strength), int(seed), list(shape), prefix,
                         store.fingerprint], default=str).encode())  # fmt: skip
    h.update(pd.util.hash_pandas_object(plan, index=False).values.tobytes())
    produce = _EditProducer(model, plan, store, sampler, float(strength), int(seed), shape)
    job = StoreWrite(plan["key"].tolist(), produce, shape, h.hexdigest(), max_workers=1)
    return job, manifest
