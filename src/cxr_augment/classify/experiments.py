"""One classification experiment: its data, its training, its predictions.

An experiment is an entry of ``parameters_study.yml`` merged over the study's defaults:
an observation, a label policy, a view, a mask, a model, training settings. Nothing here knows
Kedro; the classification nodes call these functions.
"""

from __future__ import annotations

from dataclasses import asdict, fields

import numpy as np
import pandas as pd
import torch

from cxr_augment.classify.choice import next_variants, rule_applies, setting
from cxr_augment.classify.models import ModelConfig, build_model, feature_extractor
from cxr_augment.classify.training import CheckpointStore, TrainConfig, predict, train
from cxr_augment.preprocess import chexpert as cx
from cxr_augment.preprocess import imaging, labels
from cxr_augment.preprocess.tensor_store import CombinedStore, TensorStore, torch_dataset
from cxr_augment.study import merge

EVAL_SPLITS = ("validation", "test", "internal_test")
SPEC_KEYS = {
    "observation",
    "policy",
    "view",
    "mask",
    "model",
    "train",
    "evaluate",
    "augmentation",
    "repeats",
}


def experiment_spec(defaults: dict, overrides: dict, name: str) -> dict:
    """The experiment's full settings, validated early with messages that name it."""
    spec = merge(defaults, overrides)
    unknown = set(spec) - SPEC_KEYS
    if unknown:
        raise ValueError(f"experiment {name}: unknown settings {sorted(unknown)}")
    if spec["observation"] not in cx.OBSERVATIONS:
        raise ValueError(f"experiment {name}: unknown observation {spec['observation']!r}")
    if spec["view"] not in ("frontal", "lateral", "combined"):
        raise ValueError(f"experiment {name}: view must be frontal, lateral or combined")
    if spec["mask"] not in imaging.MASKS:
        raise ValueError(f"experiment {name}: mask must be one of {imaging.MASKS}")
    policy = labels.parse_policy(spec["policy"])
    if policy.uncertain == "multiclass" and spec["train"].get("loss") != "multiclass":
        raise ValueError(f"experiment {name}: U-MultiClass needs train.loss: multiclass")
    if spec["model"].get("name") == "chexnet" and "outputs" not in (overrides or {}).get(
        "model", {}
    ):
        # CheXNet is its 14-output head: the defaults' `outputs` (binary models') is not its own
        spec["model"]["outputs"] = None
    try:
        model = ModelConfig(**spec["model"])
    except (TypeError, ValueError) as err:
        raise ValueError(f"experiment {name}: model: {err}") from err
    spec["model"] = asdict(model)  # resolved: outputs and drop_rate as the model is built
    if spec["train"].get("loss") == "multiclass" and model.outputs != 3:
        raise ValueError(f"experiment {name}: train.loss multiclass needs model.outputs: 3")
    if (
        model.outputs == len(cx.OBSERVATIONS)
        and policy.uncertain == "self_trained"
        and policy.not_mentioned == "ignore"
    ):
        # the relabelled entries are the masked ones: only uncertain labels may be masked
        raise ValueError(
            f"experiment {name}: U-SelfTrained with a {model.outputs}-output model needs "
            "not-mentioned labels filled (nm0 or nm1), not NM-Ignore"
        )
    TrainConfig(**spec["train"])
    aug = spec.get("augmentation")
    if aug:
        choose = aug.get("choose")
        rules = (list(choose) if isinstance(choose, list) else [choose]) if choose else []
        variants = {"": {k: v for k, v in aug.items() if k != "choose"}}
        for rule in rules:
            options = (rule or {}).get("options") or {}
            if not options or any(not (o or {}).get("experiment") for o in options.values()):
                raise ValueError(
                    f"experiment {name}: augmentation.choose needs `options` (label: "
                    "{experiment: whose validation result decides, set: {settings it implies}})"
                )
            when = (rule or {}).get("when")
            if when is not None and (
                not isinstance(when, dict) or not when
                or not all(isinstance(k, str) for k in when)
            ):  # fmt: skip
                raise ValueError(
                    f"experiment {name}: augmentation.choose's when takes the settings the "
                    f"rule applies under ({{source: ddim}}); got {when!r}"
                )
            if when is not None and not any(rule_applies(rule, v) for v in variants.values()):
                raise ValueError(
                    f"experiment {name}: augmentation.choose's when {when!r} holds for none "
                    "of the settings the experiment and the rules before it can give: "
                    + "; ".join(sorted({repr({k: setting(v, k) for k in when})
                                        for v in variants.values()}))
                )  # fmt: skip
            require = (rule or {}).get("require") or {}
            share = require.get("parent_nearest_share")
            if set(require) - {"parent_nearest_share"} or (
                share is not None
                and (isinstance(share, bool) or not isinstance(share, int | float)
                     or not 0.0 <= share <= 1.0)
            ):  # fmt: skip
                raise ValueError(
                    f"experiment {name}: augmentation.choose's require takes "
                    f"parent_nearest_share, a share in [0, 1]; got {require!r}"
                )
            try:
                variants = next_variants(variants, rule)
            except ValueError as err:
                raise ValueError(f"experiment {name}: {err}") from None
        for label, variant in variants.items():
            _check_augmentation(f"{name} (option {label})" if label else name, variant, label)
        if spec["model"].get("outputs", 1) != 1 or policy.uncertain in (
            "multiclass",
            "self_trained",
        ):
            raise ValueError(f"experiment {name}: augmentation needs a binary target and model")
    spec["name"] = name
    return spec


def _check_augmentation(name: str, aug: dict, option: str = "") -> None:
    """An augmentation entry's source, methods, strategy and edit strength, with messages that
    name it. A generator's setting that a chained choice (``option``) brings to the transforms
    is left to be ignored; one given to the transforms outright is an error."""
    from cxr_augment.augment import strategies, transforms

    source = aug.get("source", "transforms")
    if source == "transforms":
        methods = aug.get("methods")
        if isinstance(methods, dict):  # chosen on validation (``choose_methods``)
            rule, methods = methods, list(methods.get("candidates") or {})
            if not methods or not rule.get("baseline"):
                raise ValueError(
                    f"experiment {name}: augmentation.methods chosen on validation needs "
                    "`candidates` (method: its single-method experiment) and `baseline`"
                )
        unknown = [m for m in methods or [] if m not in transforms.METHODS]
        if unknown or not methods:
            raise ValueError(f"experiment {name}: unknown augmentation methods {unknown}")
    elif aug.get("methods"):
        raise ValueError(
            f"experiment {name}: augmentation from generator {source!r} takes no methods"
        )
    for key in ("strength", "images"):
        if key in aug and source == "transforms" and not option:
            raise ValueError(
                f"experiment {name}: augmentation.{key} is a generator's setting; the "
                "transforms take none"
            )
    strength = aug.get("strength")
    if strength is not None and (
        isinstance(strength, bool)
        or not isinstance(strength, int | float)
        or not 0.0 <= strength <= 1.0
    ):
        raise ValueError(
            f"experiment {name}: augmentation.strength must be a number in [0, 1] (the share "
            f"of the sampler's steps an edit runs), got {strength!r}"
        )
    if "strategy" not in aug:
        raise ValueError(f"experiment {name}: augmentation needs a strategy")
    try:
        strategies.settings(aug["strategy"])
    except (ValueError, KeyError) as err:
        raise ValueError(f"experiment {name}: {err}") from err


def train_config(spec: dict, **changes) -> TrainConfig:
    allowed = {f.name for f in fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in {**spec["train"], **changes}.items() if k in allowed})


def _targets(manifest: pd.DataFrame, spec: dict) -> np.ndarray:
    """Training targets: the observation's raw labels under the policy, or for a 14-output
    model (CheXNet) all 14 observations' under the same policy, as CheXNet and the CheXpert
    baseline train (Rajpurkar et al., 2017; Irvin et al., 2019). A label the policy leaves
    empty (U-Ignore, NM-Ignore, U-SelfTrained's first stage) is NaN: that element, not the
    image, drops out of the loss."""
    policy = labels.parse_policy(spec["policy"])
    if spec["model"].get("outputs", 1) == len(cx.OBSERVATIONS):
        return np.stack([labels.impute(manifest[o], policy) for o in cx.OBSERVATIONS], axis=1)
    return labels.impute(manifest[spec["observation"]], policy)


def experiment_manifest(manifest: pd.DataFrame, spec: dict) -> pd.DataFrame:
    """The experiment's images: its view, all splits, its training target and 0/1 truth.

    ``y_true`` is the evaluation label: the radiologists' 0/1 on validation and test; on the
    internal test set (from train.csv) the thesis's FillNM(0) + U-Ones reading of the report
    labels, the same for every experiment so that their comparisons stay paired.
    """
    m = manifest if spec["view"] == "combined" else manifest[manifest["view"] == spec["view"]]
    m = m.reset_index(drop=True)
    targets = _targets(m, spec)
    obs = spec["observation"]
    out = m[["key", "patient_id", "split", "view", "store_row"]].copy()
    out["label"] = m[obs].to_numpy()
    report_reading = labels.impute(m[obs], labels.LabelPolicy("ones", 0))
    official = out["split"].isin(["validation", "test"]).to_numpy()
    out["y_true"] = np.where(official, m[obs].to_numpy(), report_reading)
    if targets.ndim == 1:
        out["target"] = targets
    else:
        for j, o in enumerate(cx.OBSERVATIONS):
            out[f"target_{j:02d}_{o}"] = targets[:, j]
    return out


def target_matrix(exp: pd.DataFrame) -> np.ndarray:
    cols = [c for c in exp.columns if c.startswith("target_")]
    return exp[cols].to_numpy(dtype=float) if cols else exp["target"].to_numpy(dtype=float)


def image_transform(spec: dict, shape: tuple[int, int], mask_params: dict):
    """The experiment's mask as a transform on uint8 images (None for no mask)."""
    if spec["mask"] == "none":
        return None
    hide = imaging.mask_region(spec["mask"], shape[0], shape[1], mask_params)
    return lambda image: imaging.apply_mask(image, hide)


def _model(spec: dict) -> torch.nn.Module:
    torch.manual_seed(int(spec["train"]["seed"]))  # the initial weights come from the seed
    return build_model(ModelConfig(**spec["model"]))


def observation_column(spec: dict) -> int:
    """The head's output for the experiment's observation (its index in ``OBSERVATIONS`` for
    a 14-output model; 0 otherwise): early stopping watches it, predictions read it."""
    if spec["model"].get("outputs", 1) == len(cx.OBSERVATIONS):
        return cx.OBSERVATIONS.index(spec["observation"])
    return 0


def _selection(train_rows: pd.DataFrame, a: dict, selection: pd.DataFrame | None) -> pd.DataFrame:
    """The strategy's selection: drawn from the training labels, or given (misclassified)."""
    from cxr_augment.augment import strategies

    if not strategies.settings(a["strategy"]).get("external"):
        return strategies.select(train_rows, a["strategy"], int(a["seed"]))
    if selection is None:
        raise ValueError(
            f"the {a['strategy']!r} strategy needs its selection (misclassified_selection)"
        )
    unknown = ~selection["key"].isin(train_rows["key"])
    if unknown.any():
        raise ValueError(
            f"misclassified_selection: {int(unknown.sum())} images are not training images of "
            f"this experiment (first: {selection['key'][unknown].iloc[0]}); it was made for "
            "another view or label policy"
        )
    return selection


def augmentation_plan(
    exp: pd.DataFrame, store: TensorStore, spec: dict, selection: pd.DataFrame | None = None
):
    """The experiment's augmented set: (store job, generated rows, selection, Table 4/5 counts)."""
    from cxr_augment.augment import sets as augment
    from cxr_augment.augment import strategies

    a = spec["augmentation"]
    train_rows = exp[(exp["split"] == "train") & ~exp["target"].isna()]
    selection = _selection(train_rows, a, selection)
    rows = augment.plan(
        train_rows,
        selection,
        list(a["methods"]),
        a.get("settings", {}),
        int(a["seed"]),
        store.shape,
        prefix=f"augmented/{spec['name']}",
    )
    counts = strategies.counts_table(train_rows, selection, a["strategy"])
    job = augment.job(rows, store, list(a["methods"]), a.get("settings", {}))
    return job, rows, selection, counts.assign(experiment=spec["name"])


def generator_images(a: dict) -> str:
    """How a generator makes an experiment's images: ``augmentation.images`` (``edit`` or
    ``draw``), by default ``edit`` for a strategy whose selection is given (misclassified:
    particular images chosen for augmentation) and ``draw`` for one drawn from the labels."""
    from cxr_augment.augment import strategies

    default = "edit" if strategies.settings(a["strategy"]).get("external") else "draw"
    mode = a.get("images", default)
    if mode not in ("edit", "draw"):
        raise ValueError(f"augmentation.images must be 'edit' or 'draw', got {mode!r}")
    return mode


def generation_plan(
    exp: pd.DataFrame,
    store: TensorStore,
    spec: dict,
    model,
    generation: dict,
    memorisation: dict,
    selection: pd.DataFrame | None = None,
):
    """The experiment's synthetic set from a diffusion generator (``augmentation.source``),
    thesis 4.5 with a generator in place of the transforms, in one of two ways
    (``generator_images``):

    - ``draw``: the strategy's selection says how many images of each class (the sum of its
      copies), and the generator draws them from noise (the unbalanced and balanced
      strategies: the thesis's generated sets);
    - ``edit``: each selected image gets its copies as image-conditioned edits of itself
      (SDEdit: ``generation.sets.edited_set``, at ``augmentation.strength`` or
      ``generation.edit.strength``), the misclassified strategy's default: the images it
      selected are the ones augmented, as with the transforms.

    A generator whose memorisation check failed (share of generated images closer to a
    training image than the real-to-real percentile above ``max_share``) is refused.
    """
    from cxr_augment.augment import strategies
    from cxr_augment.generation.sets import edited_set, generated_set
    from cxr_augment.pipelines.generation.nodes import sampler_config

    a = spec["augmentation"]
    source = a["source"]
    if memorisation.get("status") == "ok" and not memorisation.get("passed", False):
        raise ValueError(
            f"experiment {spec['name']}: generator {source!r} failed its memorisation check "
            f"({memorisation['share']:.1%} of its images are closer to a training image than "
            f"the real-to-real nearest-neighbour percentile {memorisation['percentile']:g}; limit "
            f"{memorisation['max_share']:.1%}): its images are not used"
        )
    made_for = (model.info.get("observation"), model.info.get("policy"))
    if made_for != (spec["observation"], spec["policy"]):
        raise ValueError(
            f"experiment {spec['name']}: generator {source!r} was trained for "
            f"{made_for[0]} under {made_for[1]}, the experiment is {spec['observation']} under "
            f"{spec['policy']}: its classes would mean something else"
        )
    train_rows = exp[(exp["split"] == "train") & ~exp["target"].isna()]
    selection = _selection(train_rows, a, selection)
    sampler = sampler_config(generation, source, **a.get("sampler", {}))
    model_name = generation["generators"][source]["model"]
    if generator_images(a) == "edit":  # each selected image, redrawn in part (SDEdit)
        strength = float(a.get("strength", generation.get("edit", {}).get("strength", 0.5)))
        job, rows = edited_set(
            model,
            selection,
            train_rows,
            store,
            sampler,
            strength,
            int(a["seed"]),
            prefix=f"generated/{spec['name']}",
            name=source,
            model_name=model_name,
        )
    else:  # as many new draws of each class as the selection's copies add up to
        per_class = selection.groupby("target")["copies"].sum()
        counts = {int(c): int(per_class.get(c, 0)) for c in (0, 1)}
        job, rows = generated_set(
            model,
            counts,
            sampler,
            int(a["seed"]),
            store.shape,
            prefix=f"generated/{spec['name']}",
            name=source,
            model_name=model_name,
        )
    table = strategies.counts_table(train_rows, selection, a["strategy"])
    return job, rows, selection, table.assign(experiment=spec["name"], source=source)


def _training_rows(exp: pd.DataFrame, spec: dict, augmented) -> tuple[pd.DataFrame, np.ndarray]:
    """The real training rows (all, or the strategy's selection) plus the generated ones."""
    train_rows = exp[exp["split"] == "train"]
    if augmented is None:
        return train_rows, target_matrix(train_rows)
    from cxr_augment.augment import strategies

    aug_rows, selection = augmented[0], augmented[2]
    if strategies.settings(spec["augmentation"]["strategy"])["real"] == "selected":
        train_rows = train_rows[train_rows["key"].isin(selection["key"])]
    rows = pd.concat(
        [train_rows[["key", "target"]], aug_rows[["key", "target"]]], ignore_index=True
    )
    return rows, rows["target"].to_numpy(float)


def fit(
    exp: pd.DataFrame,
    store: TensorStore,
    spec: dict,
    mask_params: dict,
    checkpoints: CheckpointStore | None,
    augmented: tuple[pd.DataFrame, TensorStore, pd.DataFrame] | None = None,
) -> tuple[dict, pd.DataFrame]:
    """Train the experiment's model (two stages for U-SelfTrained); return weights, history.

    ``augmented`` is (generated rows, their store, the selection) for an augmented experiment.
    """
    config = train_config(spec)
    transform = image_transform(spec, store.shape, mask_params)
    val_rows = exp[exp["split"] == "validation"]
    train_rows, y_train = _training_rows(exp, spec, augmented)
    if augmented is not None:
        store = CombinedStore([store, augmented[1]])
    val_set = torch_dataset(store, val_rows["key"], val_rows["y_true"].to_numpy(float), transform)
    fp = {
        "experiment": spec["name"],
        "model": spec["model"],
        "policy": spec["policy"],
        "view": spec["view"],
        "mask": spec["mask"],
        "store": store.fingerprint,
        "n_train": len(train_rows),
    }
    policy = labels.parse_policy(spec["policy"])
    stages = 2 if policy.uncertain == "self_trained" else 1
    histories = []
    for stage in range(stages):
        train_set = torch_dataset(store, train_rows["key"], y_train, transform)
        result = train(
            _model(spec),
            train_set,
            val_set,
            val_rows["y_true"].to_numpy(float),
            config,
            checkpoints=None
            if checkpoints is None
            else CheckpointStore(checkpoints.folder / f"stage{stage}", checkpoints.keep),
            fingerprint_extra={**fp, "stage": stage, "targets": _hash(y_train)},
            train_targets=y_train,
            column=observation_column(spec),
        )
        histories.append(result.history.assign(stage=stage))
        if stage == 0 and stages == 2:
            # U-SelfTrained: the uncertain labels take the model's probabilities
            model = _model(spec)
            model.load_state_dict(result.state_dict)
            y_train = _self_trained_targets(model, store, train_rows, y_train, config, transform)
    return result.state_dict, pd.concat(histories, ignore_index=True)


def _self_trained_targets(model, store, train_rows, y_train, config, transform) -> np.ndarray:
    """U-SelfTrained's second-stage targets: each uncertain label replaced by the first-stage
    model's probability for that observation.

    Binary head: the images whose label is uncertain. Multi-label head: its first-stage targets
    are NaN exactly where a label is uncertain (not-mentioned is filled, ``experiment_spec``),
    so each such element takes the probability of its own output.
    """
    y_train = y_train.copy()
    if y_train.ndim == 1:
        unc = np.flatnonzero(train_rows["label"].to_numpy() == cx.UNCERTAIN)
        if len(unc):
            ds = torch_dataset(store, train_rows["key"].iloc[unc], None, transform)
            y_train[unc] = predict(model, ds, config, 0)
        return y_train
    masked = np.isnan(y_train)
    rows = np.flatnonzero(masked.any(axis=1))
    if len(rows):
        ds = torch_dataset(store, train_rows["key"].iloc[rows], None, transform)
        prob = predict(model, ds, config, column=None)  # (rows, outputs)
        block = y_train[rows]
        block[masked[rows]] = prob[masked[rows]]
        y_train[rows] = block
    return y_train


def _hash(a: np.ndarray) -> str:
    import hashlib

    return hashlib.sha256(np.nan_to_num(np.asarray(a, float), nan=-9).tobytes()).hexdigest()[:16]


def predictions(
    exp: pd.DataFrame, store: TensorStore, state_dict: dict, spec: dict, mask_params: dict
) -> pd.DataFrame:
    """P(positive) for every validation, test and internal-test image."""
    model = _model(spec)
    model.load_state_dict(state_dict)
    rows = exp[exp["split"].isin(EVAL_SPLITS)].reset_index(drop=True)
    ds = torch_dataset(store, rows["key"], None, image_transform(spec, store.shape, mask_params))
    prob = predict(model, ds, train_config(spec), observation_column(spec))
    return rows[["key", "patient_id", "split", "view", "y_true"]].assign(
        prob=prob, experiment=spec["name"]
    )


def features(
    rows: pd.DataFrame, store: TensorStore, state_dict: dict, spec: dict, mask_params: dict
) -> tuple[np.ndarray, np.ndarray, float]:
    """Penultimate-layer features of ``rows`` and the head's (weights, bias) for one column."""
    model = _model(spec)
    model.load_state_dict(state_dict)
    ds = torch_dataset(store, rows["key"], None, image_transform(spec, store.shape, mask_params))
    feats = predict(model, ds, train_config(spec), features=feature_extractor(model))
    from cxr_augment.classify.models import head

    lin = head(model)
    col = observation_column(spec)
    w = lin.weight.detach().cpu().numpy()[col]
    b = float(lin.bias.detach().cpu().numpy()[col])
    return feats, w, b
