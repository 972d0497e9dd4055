"""An augmented training set: which images, which transforms, what was drawn.

``plan`` turns a selection (key, target, copies) into one manifest row per generated image,
with the parameters of its transforms drawn up front from a per-image seed (so a generated
image depends only on the study seed and its index, never on scheduling); ``job`` is the lazy
``StoreWrite`` that renders them into a tensor store.

With several methods (a ``Compose``), the row records the coins too: ``applied`` names the
methods that fired for this image (``+``-joined, in order), and ``params`` holds
``{method: {"applied": bool, ...}}`` with the drawn parameters of those that fired. A single
method always applies. Mixup, when listed, is applied to every image after the others.
"""

from __future__ import annotations

import hashlib
import json
from functools import partial

import numpy as np
import pandas as pd

from cxr_augment.augment import transforms as tf
from cxr_augment.preprocess.tensor_store import StoreWrite, TensorStore

_CACHE: dict = {}


def _item_seed(seed: int, i: int) -> int:
    return int(np.random.SeedSequence([seed, i]).generate_state(1, dtype=np.uint64)[0] >> 1)


def plan(
    train: pd.DataFrame,
    selection: pd.DataFrame,
    methods: list[str],
    settings: dict,
    seed: int,
    shape: tuple[int, int],
    prefix: str,
) -> pd.DataFrame:
    """One row per generated image: key, parent, copy, method, the methods applied, their
    parameters, seed, target.

    Args:
        train: the training rows (key, patient_id, view, target) mixup partners come from.
        selection: key, target, copies (from ``strategies.select`` or elsewhere).
        methods: transform names, applied in order (one name: that method alone, always;
            several: each with the composition's probability, ``settings["compose"]``).
        settings: per-method keyword arguments, and ``compose`` (``p``, ``at_least_one``).
        seed: the augmentation seed.
        prefix: key prefix of the generated images (unique per experiment).
    """
    base = train.set_index("key")
    parents = selection.loc[selection.index.repeat(selection["copies"])].reset_index(drop=True)
    parents["copy"] = parents.groupby("key").cumcount()
    use_mixup = "mixup" in methods
    chain = [m for m in methods if m != "mixup"]
    transform = tf.build(chain, settings) if chain else None
    dummy = np.zeros(shape, np.uint8)
    rows = []
    partner_rng = np.random.default_rng(seed)
    for i, r in enumerate(parents.itertuples(index=False)):
        s = _item_seed(seed, i)
        params: dict = {}
        target = float(r.target)
        applied: list[str] = []
        if transform is not None:
            transform.set_random_state(s)
            params = transform.randomize(dummy)
            if isinstance(transform, tf.Compose):
                applied = [name for name, p in params.items() if p["applied"]]
            else:
                params, applied = {transform.name: params}, [transform.name]
        if use_mixup:
            mix = tf.Mixup(**settings.get("mixup", {})).set_random_state(s + 1)
            lam = mix.randomize(dummy)["lambda"]
            partner = train["key"].iloc[int(partner_rng.integers(len(train)))]
            params["mixup"] = {"lambda": lam, "partner": partner}
            target = lam * target + (1 - lam) * float(base.loc[partner, "target"])
            applied.append("mixup")
        rows.append(
            {
                "key": f"{prefix}/{r.key}#{r.copy}",
                "parent_key": r.key,
                "copy": int(r.copy),
                "method": "+".join(methods),
                "applied": "+".join(applied),
                "params": json.dumps(params, sort_keys=True),
                "item_seed": s,
                "target": target,
            }
        )
    out = pd.DataFrame(
        rows,
        columns=[
            "key",
            "parent_key",
            "copy",
            "method",
            "applied",
            "params",
            "item_seed",
            "target",
        ],
    )
    info = base[["patient_id", "view"]]
    out = out.join(info, on="parent_key")
    return out.assign(split="train", origin="augmentation", source="train")


def _produce(store: TensorStore, keys_parent, params_json, methods, settings, i: int) -> np.ndarray:
    """Render generated image ``i`` from its parent and its drawn parameters."""
    cache_key = (tuple(methods), json.dumps(settings, sort_keys=True))
    chain = [m for m in methods if m != "mixup"]
    if cache_key not in _CACHE:
        _CACHE[cache_key] = tf.build(chain, settings) if chain else None
    transform = _CACHE[cache_key]
    params = json.loads(params_json[i])
    image = store.get(keys_parent[i])
    if transform is not None:
        p = params if isinstance(transform, tf.Compose) else params[transform.name]
        image = transform.apply(image, p)
    if "mixup" in params:
        partner = store.get(params["mixup"]["partner"])
        image, _ = tf.mixup(image, partner, 0.0, 0.0, params["mixup"]["lambda"])
    return image


def job(aug: pd.DataFrame, store: TensorStore, methods: list[str], settings: dict) -> StoreWrite:
    """The lazy store write of the planned images (rendered when the catalog saves it)."""
    h = hashlib.sha256()
    h.update(store.fingerprint.encode())
    h.update(json.dumps([methods, settings], sort_keys=True).encode())
    h.update(pd.util.hash_pandas_object(aug[["key", "params"]], index=False).values.tobytes())
    produce = partial(
        _produce, store, aug["parent_key"].tolist(), aug["params"].tolist(), list(methods), settings
    )
    return StoreWrite(aug["key"].tolist(), produce, store.shape, h.hexdigest())


def figure_examples(image: np.ndarray, methods: list[str], settings: dict, seed: int) -> dict:
    """One image under each method (thesis Figure 22): name -> (image, params)."""
    out = {"original": (image, {})}
    for i, m in enumerate(methods):
        out[m] = tf.build(m, settings, seed=seed + i)(image)
    return out
