"""Nodes of ``classification``: one experiment's training and evaluation, and group reports."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from cxr_augment import metrics, plots, stats
from cxr_augment.labels import parse_policy
from cxr_augment.tensor_store import TensorStore

if TYPE_CHECKING:
    from cxr_augment.training import CheckpointStore


def _experiments():
    """The experiment runner, imported when a node first needs it: loading the pipelines
    (every ``kedro run``, Dagster's translation) then does not import torch."""
    from cxr_augment import experiments

    return experiments


def experiment_spec(defaults: dict, overrides: dict, name: str) -> dict:
    """The experiment's settings: ``study.defaults`` merged with its entry."""
    return _experiments().experiment_spec(defaults, overrides, name)


def select_images(manifest: pd.DataFrame, spec: dict) -> pd.DataFrame:
    """The experiment's images (its view), targets under its label policy and the truth."""
    return _experiments().experiment_manifest(manifest, spec)


def train_classifier(
    images: pd.DataFrame,
    store: TensorStore,
    checkpoints: CheckpointStore,
    spec: dict,
    mask_params: dict,
) -> tuple[dict, pd.DataFrame]:
    """Train (resuming from the experiment's checkpoints); the best epoch's weights."""
    return _experiments().fit(images, store, spec, mask_params, checkpoints)


def augment_images(images: pd.DataFrame, store: TensorStore, spec: dict):
    """The experiment's augmentation strategy and methods (thesis 4.4-4.5).

    Returns:
        The lazy store of generated images, their manifest (source, method, parameters drawn,
        parent), the selection (which training images, how many copies) and the counts of
        thesis Tables 4 / 5.
    """
    return _experiments().augmentation_plan(images, store, spec)


def generate_images(
    images: pd.DataFrame,
    store: TensorStore,
    spec: dict,
    model,
    generation: dict,
    memorisation: dict,
):
    """The experiment's strategy with a diffusion generator as the source of its synthetic
    images (thesis 4.5-4.6): as ``augment_images``, the images sampled instead of transformed.
    """
    return _experiments().generation_plan(images, store, spec, model, generation, memorisation)


def train_classifier_augmented(
    images: pd.DataFrame,
    store: TensorStore,
    checkpoints: CheckpointStore,
    spec: dict,
    mask_params: dict,
    augmented_manifest: pd.DataFrame,
    augmented_store: TensorStore,
    selection: pd.DataFrame,
) -> tuple[dict, pd.DataFrame]:
    """Train on the real training images plus the generated ones."""
    return _experiments().fit(
        images,
        store,
        spec,
        mask_params,
        checkpoints,
        augmented=(augmented_manifest, augmented_store, selection),
    )


def augmentation_examples(manifest: pd.DataFrame, store: TensorStore, params: dict):
    """Thesis Figure 22: one training image under every traditional method."""
    import matplotlib.pyplot as plt

    from cxr_augment import augment

    frontal = manifest[(manifest["split"] == "train") & (manifest["view"] == "frontal")]
    image = store[int(frontal["store_row"].iloc[int(params["figure"]["image_index"])])]
    methods = list(params["figure"]["methods"])
    examples = augment.figure_examples(
        image, methods, params.get("settings", {}), int(params["figure"]["seed"])
    )
    cols = 7
    rows = -(-len(examples) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.9 * cols, 2.5 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (name, (img, _)) in zip(axes.ravel(), examples.items(), strict=False):
        ax.imshow(img, cmap="gray", vmin=0, vmax=255)
        ax.set_title(name, fontsize=7)
    fig.suptitle("Traditional augmentation methods (thesis Figure 22)", fontsize=8)
    fig.tight_layout()
    return fig


def predict_images(
    images: pd.DataFrame, store: TensorStore, state_dict: dict, spec: dict, mask_params: dict
) -> pd.DataFrame:
    """P(positive) for the validation, test and internal-test images."""
    return _experiments().predictions(images, store, state_dict, spec, mask_params)


def evaluate(predictions: pd.DataFrame, spec: dict) -> pd.DataFrame:
    """Every metric with its 95 % patient-bootstrap CI, on each evaluation split.

    The threshold is chosen on the validation split (maximum F1) and applied unchanged to
    the others.
    """
    ev = spec["evaluate"]
    val = predictions[predictions["split"] == "validation"]
    threshold = metrics.choose_threshold(val["y_true"].to_numpy(int), val["prob"].to_numpy())
    rows = []
    for split, part in predictions.groupby("split", sort=False):
        part = part[~part["y_true"].isna()]
        table = metrics.bootstrap_ci(
            part["y_true"].to_numpy(int),
            part["prob"].to_numpy(),
            part["patient_id"].to_numpy(),
            threshold,
            int(ev["bootstrap"]),
            int(ev["seed"]),
        )
        rows.append(
            table.assign(
                split=split,
                images=len(part),
                positives=int(part["y_true"].sum()),
                threshold=threshold,
            )
        )
    out = pd.concat(rows, ignore_index=True)
    return out.assign(
        experiment=spec["name"],
        observation=spec["observation"],
        policy=parse_policy(spec["policy"]).name,
    )


def _fmt(row) -> str:
    return f"{row['value']:.4f} [{row['ci_low']:.3f}, {row['ci_high']:.3f}]"


def group_report(group: dict, *tables_and_predictions) -> tuple[pd.DataFrame, str, object]:
    """A thesis-style comparison table for a group of experiments, and their ROC curves.

    Args:
        group: ``title``, ``split`` (where the table is read), ``reference`` (the experiment the
            tests compare against, per observation), ``experiments`` (in order).
        tables_and_predictions: each experiment's metrics table, then its predictions, in
            the group's order.

    Returns:
        The table (one row per experiment: metrics with CIs, McNemar and DeLong p-values
        against the reference on the same images), its Markdown, and the ROC figure.
    """
    names = group["experiments"]
    n = len(names)
    tables, preds = tables_and_predictions[:n], tables_and_predictions[n:]
    split = group["split"]
    by_name = {name: (t, p) for name, t, p in zip(names, tables, preds, strict=True)}
    refs = group.get("reference", {})
    rows, curves = [], {}
    for name in names:
        table, pred = by_name[name]
        t = table[table["split"] == split].set_index("metric")
        obs = table["observation"].iloc[0]
        p = pred[(pred["split"] == split) & ~pred["y_true"].isna()]
        row = {
            "experiment": name,
            "observation": obs,
            "images": int(t["images"].iloc[0]),
            "positives": int(t["positives"].iloc[0]),
        }
        for m in ("accuracy", "f1", "roc_auc", "pr_auc", "kappa", "precision", "recall"):
            row[m] = float(t.loc[m, "value"])
            row[f"{m}_ci"] = f"[{t.loc[m, 'ci_low']:.3f}, {t.loc[m, 'ci_high']:.3f}]"
        ref = refs.get(obs)
        if ref and ref != name and ref in by_name:
            rt, rp = by_name[ref]
            rp = rp[(rp["split"] == split) & ~rp["y_true"].isna()]
            both = p.merge(rp, on="key", suffixes=("", "_ref"))
            thr = float(t["threshold"].iloc[0])
            thr_ref = float(rt["threshold"].iloc[0])
            mc = stats.mcnemar(both["y_true"], both["prob"] >= thr, both["prob_ref"] >= thr_ref)
            dl = stats.delong(both["y_true"], both["prob"], both["prob_ref"])
            row.update(
                {
                    "reference": ref,
                    "paired_images": len(both),
                    "mcnemar_stat": mc["statistic"],
                    "mcnemar_p": mc["p_value"],
                    "delong_z": dl["z"],
                    "delong_p": dl["p_value"],
                }
            )
        else:
            row.update(
                {
                    "reference": "",
                    "paired_images": np.nan,
                    "mcnemar_stat": np.nan,
                    "mcnemar_p": np.nan,
                    "delong_z": np.nan,
                    "delong_p": np.nan,
                }
            )
        rows.append(row)
        curves[name] = (p["y_true"].to_numpy(int), p["prob"].to_numpy())
    table = pd.DataFrame(rows)
    md = [
        f"# {group['title']}\n\nSplit: **{split}**; 95 % CIs by patient bootstrap; "
        "p-values against the reference on the same images (McNemar on the thresholded "
        "decisions, DeLong on the AUCs).\n\n"
    ]
    show = table[
        [
            "experiment",
            "observation",
            "images",
            "positives",
            "accuracy",
            "f1",
            "f1_ci",
            "roc_auc",
            "roc_auc_ci",
            "kappa",
            "mcnemar_p",
            "delong_p",
        ]
    ]
    md.append(show.to_markdown(index=False, floatfmt=".4f") + "\n")
    fig = plots.roc_figure(curves, f"{group['title']} ({split})")
    return table, "".join(md), fig


def group_report_with_truth(
    group: dict, agreement: pd.DataFrame, *tables_and_predictions
) -> tuple[pd.DataFrame, str, object]:
    """``group_report`` plus, per experiment, how well its label policy's training targets
    agree with the demo's truth (empty columns for a real download)."""
    table, md, fig = group_report(group, *tables_and_predictions)
    n = len(group["experiments"])
    policies = {t["experiment"].iloc[0]: t["policy"].iloc[0] for t in tables_and_predictions[:n]}
    table["policy"] = table["experiment"].map(policies)
    cols = {
        "accuracy": "label_truth_accuracy",
        "implied_positive_rate": "label_positive_rate",
        "true_positive_rate": "true_positive_rate",
    }
    if agreement is not None and len(agreement):
        a = agreement.rename(columns=cols)[["observation", "policy", *cols.values()]]
        table = table.merge(a, on=["observation", "policy"], how="left")
    else:
        for c in cols.values():
            table[c] = np.nan
    show = table[
        [
            "experiment",
            "observation",
            "policy",
            "f1",
            "roc_auc",
            "kappa",
            "label_truth_accuracy",
            "label_positive_rate",
            "true_positive_rate",
        ]
    ]
    md += (
        "\n## The training targets against the truth (demo data)\n\n"
        + show.to_markdown(index=False, floatfmt=".4f")
        + "\n"
    )
    return table, md, fig


def feature_pca(
    images: pd.DataFrame,
    store: TensorStore,
    state_dict: dict,
    spec: dict,
    mask_params: dict,
    metrics_table: pd.DataFrame,
    params: dict,
) -> tuple[pd.DataFrame, object]:
    """Thesis Figure 20: training images (up to ``per_class`` of each class) in the plane of the
    two principal components of the penultimate features, with the decision boundary at the
    experiment's threshold (chosen on validation): w . f + b = logit(threshold).

    Returns the points (key, PCA coordinates, label, prediction, signed distance to the
    boundary) and the figure.
    """
    rng = np.random.default_rng(int(params["seed"]))
    train = images[(images["split"] == "train") & ~images["y_true"].isna()]
    picks = []
    for cls in (0, 1):
        part = train[train["y_true"] == cls]
        picks.append(part.iloc[rng.permutation(len(part))[: int(params["per_class"])]])
    rows = pd.concat(picks, ignore_index=True)
    feats, w, b = _experiments().features(rows, store, state_dict, spec, mask_params)
    t = float(np.clip(metrics_table["threshold"].iloc[0], 1e-6, 1 - 1e-6))
    b = b - float(np.log(t / (1 - t)))  # the boundary where P(positive) = threshold
    z, w2, b2, distance = plots.pca_boundary(feats, w, b)
    logit = feats @ w + b
    pred = (logit >= 0).astype(int)
    y = rows["y_true"].to_numpy(int)
    points = rows[["key", "patient_id"]].assign(
        pc1=z[:, 0], pc2=z[:, 1], y_true=y, pred=pred, distance=distance
    )
    fig = plots.pca_figure(z, y, pred, w2, b2, f"{spec['name']}: penultimate features, PCA")
    return points, fig
