"""Nodes of ``classification``: one experiment's training and evaluation, and group reports."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from cxr_augment.classify import bootstrap, metrics, stats
from cxr_augment.classify.checkpoints import CheckpointStore  # torch-free
from cxr_augment.classify.choice import choose_rules, closeness_required, rule_applies, setting
from cxr_augment.preprocess.labels import parse_policy
from cxr_augment.preprocess.tensor_store import TensorStore
from cxr_augment.report import plots
from cxr_augment.report.study_report import counts_as_int

log = logging.getLogger(__name__)
EVAL_SPLITS = ("validation", "test", "internal_test")
TRUTH_SPLIT = "internal_test_truth"
SPLIT_NOTES = {
    "validation": " (also chose each seed's epoch and threshold: optimistic)",
    "test": " (the official test set: held out from every choice)",
    "internal_test": " (20 % of train.csv's patients, labels under FillNM(0) + U-Ones: held out "
    "from every choice)",
    TRUTH_SPLIT: " (the internal test set against the demo's truth instead of its report labels)",
}


def _experiments():
    """The experiment runner, imported when a node first needs it: loading the pipelines
    (every ``kedro run``, Dagster's translation) then does not import torch."""
    from cxr_augment.classify import experiments

    return experiments


def experiment_spec(defaults: dict, overrides: dict, name: str) -> dict:
    """The experiment's settings: ``study.defaults`` merged with its entry."""
    return _experiments().experiment_spec(defaults, overrides, name)


def select_images(manifest: pd.DataFrame, spec: dict) -> pd.DataFrame:
    """The experiment's images (its view), targets under its label policy and the truth."""
    return _experiments().experiment_manifest(manifest, spec)


def with_seed(spec: dict, seed: int) -> dict:
    """The experiment's settings for one of its repeats: ``train.seed`` set to ``seed``."""
    return {**spec, "train": {**spec["train"], "seed": int(seed)}}


def train_classifier(
    images: pd.DataFrame,
    store: TensorStore,
    checkpoints: CheckpointStore,
    spec: dict,
    mask_params: dict,
    seed: int,
) -> tuple[dict, pd.DataFrame]:
    """Train one repeat (``seed``), resuming from its checkpoints; the best epoch's weights."""
    return _experiments().fit(images, store, with_seed(spec, seed), mask_params, checkpoints)


def choose_methods(spec: dict, baseline: pd.DataFrame, *candidates: pd.DataFrame) -> dict:
    """The traditional methods a combined experiment uses, chosen on validation only.

    Rule (``augmentation.methods: {candidates, baseline, metric}``): a method joins when its
    single-method experiment's seed-mean validation ``metric`` (default ROC AUC) is above the
    baseline's; when none is, the best single method joins alone. The test sets are never read.

    Returns:
        ``methods`` (in the candidates' order), and per candidate its validation value.
    """
    rule = spec["augmentation"]["methods"]
    metric = rule.get("metric", "roc_auc")
    names = list(rule["candidates"])

    def value(table: pd.DataFrame) -> float:
        row = table[(table["split"] == "validation") & (table["metric"] == metric)]
        return float(row["value"].iloc[0])

    base = value(baseline)
    scores = {m: value(t) for m, t in zip(names, candidates, strict=True)}
    chosen = [m for m in names if scores[m] > base] or [max(names, key=lambda m: scores[m])]
    return {
        "experiment": spec["name"],
        "rule": f"validation {metric} above the baseline {rule['baseline']} (else the best one)",
        "baseline": {rule["baseline"]: base},
        "candidates": {m: {"experiment": rule["candidates"][m], metric: scores[m]} for m in names},
        "methods": chosen,
    }


def choose_augmentation(spec: dict, *option_results) -> dict:
    """Augmentation settings (a source, a strategy, a sampler, an edit strength), chosen on
    validation only.

    Rule (``augmentation.choose: {metric, options: {label: {experiment, set}}}``, or a list of
    such rules applied in order): the option whose experiment has the best seed-mean
    validation ``metric`` (default ROC AUC; ties: the first listed) gives its ``set`` (e.g.
    ``{source: ddim}``, ``{strategy: misclassified}`` or ``{sampler: {steps: 10}}``).
    ``require: {parent_nearest_share: x}`` limits a rule to the options whose copies keep
    their parent (``copies_closeness``: at least the share ``x`` of them have their parent
    nearest); when none does, every option stays in and the decision says so.
    ``when: {setting: value}`` applies a rule only where the settings so far (the
    experiment's own, then the earlier rules' choices) have those values: a DDIM edit
    strength is chosen only when the source chosen before it is DDIM; a rule that does not
    apply is recorded with its options' results and chooses nothing.
    ``option_results`` are the options' metrics tables, rule after rule, then the
    ``copies_closeness`` of the options of each rule with a requirement. The test sets are
    never read.

    Returns:
        One rule: its options' results, the label ``chosen`` and its ``set``. Several: the
        labels joined (``traditional``, ``ddim + s025``), the settings of all of them as
        ``set``, and each rule's record under ``decisions``.
    """
    rules = choose_rules(spec["augmentation"]["choose"])
    own = {k: v for k, v in spec["augmentation"].items() if k != "choose"}
    n_metrics = sum(len(rule["options"]) for rule in rules)
    tables = list(option_results[:n_metrics])
    closeness = list(option_results[n_metrics:])
    decisions, merged = [], {}
    for rule in rules:
        metric = rule.get("metric", "roc_auc")
        labels = list(rule["options"])
        scores = {}
        for label in labels:
            table = tables.pop(0)
            row = table[(table["split"] == "validation") & (table["metric"] == metric)]
            scores[label] = float(row["value"].iloc[0])
        options = {
            k: {"experiment": rule["options"][k]["experiment"], metric: scores[k]} for k in labels
        }
        words = f"best validation {metric} among the options' experiments"
        eligible = labels
        need = closeness_required(rule)
        if need is not None:
            for label in labels:
                near = closeness.pop(0) or {}
                options[label]["parent_nearest_share"] = near.get("parent_nearest_share")
            eligible = [k for k in labels
                        if (options[k]["parent_nearest_share"] or 0.0) >= need]  # fmt: skip
            words += (f" whose copies have their parent nearest for at least {need:g} of them"
                      + ("" if eligible else " (none has: every option stays in)"))  # fmt: skip
            eligible = eligible or labels
        if not rule_applies(rule, settings := {**own, **merged}):
            when = ", ".join(f"{k} is {v}" for k, v in rule["when"].items())
            here = ", ".join(str(setting(settings, k)) for k in rule["when"])
            words += f"; applies only when {when} (here {here}): nothing chosen"
            decisions.append({"rule": words, "options": options, "chosen": None, "set": {}})
            continue
        best = max(eligible, key=lambda k: scores[k])  # max keeps the first of equal values
        chosen_set = dict(rule["options"][best].get("set") or {})
        merged.update(chosen_set)
        decisions.append({"rule": words, "options": options, "chosen": best, "set": chosen_set})
    if tables or closeness:
        raise ValueError(
            f"choose_augmentation: {len(tables)} metrics tables and {len(closeness)} closeness "
            "summaries left over"
        )
    if len(decisions) == 1:
        return {"experiment": spec["name"], **decisions[0]}
    return {
        "experiment": spec["name"],
        "chosen": " + ".join(d["chosen"] for d in decisions if d["chosen"] is not None),
        "set": merged,
        "decisions": decisions,
    }


def with_methods(spec: dict, chosen: dict | None) -> dict:
    """The experiment's settings with a choice made on validation applied: the methods of
    ``choose_methods`` or the settings of ``choose_augmentation``."""
    if chosen is None:
        return spec
    aug = {k: v for k, v in spec["augmentation"].items() if k != "choose"}
    if "methods" in chosen:
        aug["methods"] = list(chosen["methods"])
    if "set" in chosen:
        aug.update(chosen["set"])
    return {**spec, "augmentation": aug}


def augmented_set(
    images: pd.DataFrame,
    store: TensorStore,
    spec: dict,
    chosen: dict | None = None,
    misclassified: pd.DataFrame | None = None,
    **generators,
):
    """The experiment's synthetic training images (thesis 4.4-4.6): its strategy's selection
    (drawn from the training labels, or the misclassified strategy's), made by its source:
    the traditional transforms, or a diffusion generator (``model__<generator>`` and
    ``memorisation__<generator>`` among ``generators``, with the generation settings it is
    sampled with as ``generation__<setting>`` (``generation__generators__ddim``: one
    generator's entry), each its own parameter input, so a change to another generator or to
    the generation's tables and figures leaves the set up to date).

    Returns:
        The lazy store of generated images, their manifest (source, method or sampler, what
        was drawn, parent), the selection (which training images, how many copies) and the
        counts of thesis Tables 4 / 5.
    """
    from cxr_augment.pipelines.generation.nodes import nested

    generation = nested({k: v for k, v in generators.items() if k.startswith("generation__")})
    generation = generation.get("generation", {})
    spec = with_methods(spec, chosen)
    a = spec["augmentation"]
    source = a.get("source", "transforms")
    if source == "transforms":
        return _experiments().augmentation_plan(images, store, spec, misclassified)
    return _experiments().generation_plan(
        images,
        store,
        spec,
        generators[f"model__{source}"],
        generation,
        generators[f"memorisation__{source}"],
        misclassified,
    )


def train_classifier_augmented(
    images: pd.DataFrame,
    store: TensorStore,
    checkpoints: CheckpointStore,
    spec: dict,
    mask_params: dict,
    augmented_manifest: pd.DataFrame,
    augmented_store: TensorStore,
    selection: pd.DataFrame,
    chosen: dict | None = None,
    *twin_runs,
    seed: int,
    twins: dict[str, str] | None = None,
) -> tuple[dict, pd.DataFrame]:
    """Train one repeat on the real training images plus the generated ones (the generated
    set is the experiment's, the same for every repeat). ``chosen``: the settings chosen on
    validation, which the set was made with (its strategy says which real images stay).

    ``twins`` maps a choice's label to the option experiment whose settings it is exactly
    (``augmentation_wiring``), and ``twin_runs`` are their model and training history for
    this seed, in the order of their first appearance: when validation chooses one of them,
    its training is this one's (the same bytes on the CPU; on a GPU, the run validation
    chose), not trained again."""
    names = list(dict.fromkeys((twins or {}).values()))
    if len(twin_runs) != 2 * len(names):
        raise ValueError(
            f"train_classifier_augmented: {len(twin_runs)} twin inputs for {len(names)} twins"
        )
    label = (chosen or {}).get("chosen")
    if twins and label in twins:
        i = names.index(twins[label])
        model, history = twin_runs[2 * i], twin_runs[2 * i + 1]
        log.info(
            "%s seed %d: validation chose %s, the settings of %s: its training is taken, "
            "not trained again",
            spec["name"], seed, label, twins[label],
        )  # fmt: skip
        return model, history
    return _experiments().fit(
        images,
        store,
        with_seed(with_methods(spec, chosen), seed),
        mask_params,
        checkpoints,
        augmented=(augmented_manifest, augmented_store, selection),
    )


def augmentation_examples(manifest: pd.DataFrame, store: TensorStore, params: dict):
    """Thesis Figure 22: one training image under every traditional method."""
    import matplotlib.pyplot as plt

    from cxr_augment.augment import sets as augment

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


def copies_closeness(
    store: TensorStore, augmented_manifest: pd.DataFrame, augmented_store: TensorStore, params: dict
) -> dict:
    """How close the misclassified strategy's copies stay to the images they were made from
    (``augment.closeness.copy_closeness`` at ``params["size"]``)."""
    from cxr_augment.augment.closeness import copy_closeness

    return copy_closeness(store, augmented_manifest, augmented_store, int(params["size"]))


def copies_figure(
    store: TensorStore,
    augmented_manifest: pd.DataFrame,
    augmented_store: TensorStore,
    params: dict,
):
    """The misclassified strategy's images as a reader checks them: for the first
    ``parents_per_class`` selected images of each class (in the set's order), the image and
    its first ``copies`` copies below it, each titled with how it was made (the transforms
    applied, or a generator's edit and its strength). A generator's class draws, which have no
    parent, are shown by class instead."""
    import matplotlib.pyplot as plt

    m = augmented_manifest
    per_class, copies = int(params["parents_per_class"]), int(params["copies"])
    grid: list[list[tuple[np.ndarray, str]]] = []  # one list per column
    for cls in sorted(m["target"].dropna().unique(), reverse=True):
        of_class = m[m["target"] == cls]
        name = "positive" if cls == 1 else "negative" if cls == 0 else f"target {cls:g}"
        if "parent_key" not in of_class:  # draws: no parent to show
            picks = of_class.head(per_class * copies)
            for lo in range(0, len(picks), copies):
                grid.append([(augmented_store.get(k), f"{name}, draw")
                             for k in picks["key"].iloc[lo : lo + copies]])  # fmt: skip
            continue
        for parent in of_class["parent_key"].drop_duplicates().head(per_class):
            kids = of_class[of_class["parent_key"] == parent].head(copies)
            line = [(store.get(parent), f"selected {name}")]
            for k in kids.itertuples(index=False):
                if "strength" in kids:
                    how = f"edit, strength {k.strength:g}"
                else:
                    how = str(getattr(k, "applied", "") or "unchanged").replace("+", ", ")
                line.append((augmented_store.get(k.key), f"copy {k.copy + 1}: {how}"))
            grid.append(line)
    # one column per selected image: the image on top, its copies below it
    n_rows, cols = max((len(line) for line in grid), default=1), max(len(grid), 1)
    fig, axes = plt.subplots(n_rows, cols, figsize=(1.7 * cols, 2.2 * n_rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for c, line in enumerate(grid):
        for r, (img, title) in enumerate(line):
            axes[r, c].imshow(img, cmap="gray", vmin=0, vmax=255)
            axes[r, c].set_title(title, fontsize=6)
    if not grid:
        axes[0, 0].text(0.5, 0.5, "no augmented images", ha="center", va="center")
    fig.suptitle("The misclassified strategy: selected images and their copies", fontsize=8)
    fig.tight_layout()
    return fig


def predict_images(
    images: pd.DataFrame,
    store: TensorStore,
    state_dict: dict,
    spec: dict,
    mask_params: dict,
    seed: int,
) -> pd.DataFrame:
    """P(positive) for the validation, test and internal-test images, by one repeat."""
    out = _experiments().predictions(images, store, state_dict, with_seed(spec, seed), mask_params)
    return out.assign(seed=int(seed))


def combine_predictions(spec: dict, truth: pd.DataFrame | None, *per_seed) -> pd.DataFrame:
    """Every repeat's predictions in one table (column ``seed``), with ``y_truth``: the demo's
    truth for the experiment's observation (NaN for a real download, which has none)."""
    out = pd.concat(per_seed, ignore_index=True)
    out["y_truth"] = np.nan
    if truth is not None and len(truth):
        t = truth[truth["observation"] == spec["observation"]].set_index("Path")["truth"]
        out["y_truth"] = out["key"].map(t).astype(float)
    return out


def split_rows(predictions: pd.DataFrame, split: str) -> pd.DataFrame:
    """The predictions read on ``split``; ``internal_test_truth`` is the internal test set
    scored against the demo's truth instead of the report labels."""
    if split == TRUTH_SPLIT:
        part = predictions[predictions["split"] == "internal_test"]
        part = part.assign(y_true=part["y_truth"])
    else:
        part = predictions[predictions["split"] == split]
    return part[~part["y_true"].isna()]


def evaluation(
    predictions: pd.DataFrame, split: str, keys: pd.Index | None = None
) -> bootstrap.Evaluation:
    """One experiment on one split as a ``bootstrap.Evaluation``: scores per seed (images in
    key order, restricted to ``keys`` when given), each seed's threshold chosen on validation
    (maximum F1), and the validation scores for thresholds chosen per resample."""
    part = split_rows(predictions, split)
    val = split_rows(predictions, "validation")
    wide = part.pivot_table(index="key", columns="seed", values="prob").sort_index()
    vwide = val.pivot_table(index="key", columns="seed", values="prob").sort_index()
    first = part.drop_duplicates("key").set_index("key").loc[wide.index]
    vfirst = val.drop_duplicates("key").set_index("key").loc[vwide.index]
    if keys is not None:
        wide, first = wide.loc[keys], first.loc[keys]
    seeds = list(wide.columns)
    vy = vfirst["y_true"].to_numpy(int)
    thresholds = [metrics.choose_threshold(vy, vwide[s].to_numpy()) for s in seeds]
    return bootstrap.Evaluation(
        y=first["y_true"].to_numpy(int),
        probs=wide[seeds].to_numpy().T,
        patients=first["patient_id"].to_numpy(),
        thresholds=np.asarray(thresholds),
        val_y=vy,
        val_probs=vwide[seeds].to_numpy().T,
        val_patients=vfirst["patient_id"].to_numpy(),
    )


def evaluation_splits(predictions: pd.DataFrame) -> list[str]:
    splits = [s for s in EVAL_SPLITS if (predictions["split"] == s).any()]
    if "internal_test" in splits and predictions["y_truth"].notna().any():
        splits.append(TRUTH_SPLIT)
    return splits


def evaluate(predictions: pd.DataFrame, spec: dict) -> pd.DataFrame:
    """Every metric on each evaluation split: the mean over the experiment's seeds, its 95 %
    patient-bootstrap CI (of the seed mean), and the 95 % t-interval across seeds.

    Each seed's threshold is chosen on the validation split (maximum F1) and applied unchanged
    to the others; ``evaluate.threshold: resampled`` re-chooses it inside every resample.
    """
    ev = spec["evaluate"]
    rows = []
    for split in evaluation_splits(predictions):
        e = evaluation(predictions, split)
        table = bootstrap.metric_cis(
            e, int(ev["bootstrap"]), int(ev["seed"]), ev.get("threshold", "fixed")
        )
        per_seed = [
            bootstrap.point(bootstrap.Evaluation(e.y, e.probs[[s]], e.patients, e.thresholds[[s]]))
            for s in range(len(e.thresholds))
        ]
        spread = [
            bootstrap.seed_interval([m[k] for m in per_seed], bounds=(-1 if k == "kappa" else 0, 1))
            for k in table["metric"]
        ]
        rows.append(
            table.assign(
                seed_ci_low=[s[1] for s in spread],
                seed_ci_high=[s[2] for s in spread],
                seed_sd=[
                    np.std([m[k] for m in per_seed], ddof=1) if len(per_seed) > 1 else np.nan
                    for k in table["metric"]
                ],  # fmt: skip
                split=split,
                images=len(e.y),
                patients=len(np.unique(e.patients)),
                positives=int(e.y.sum()),
                seeds=len(e.thresholds),
                seed_list=",".join(str(int(s)) for s in sorted(predictions["seed"].unique())),
                threshold=float(np.mean(e.thresholds)),
                seed_thresholds=",".join(
                    f"{int(s)}:{float(th)!r}"
                    for s, th in zip(
                        sorted(predictions["seed"].unique()), e.thresholds, strict=True
                    )
                ),
                threshold_rule=f"max F1 on validation ({ev.get('threshold', 'fixed')})",
            )
        )
    out = pd.concat(rows, ignore_index=True)
    return out.assign(
        experiment=spec["name"],
        observation=spec["observation"],
        policy=parse_policy(spec["policy"]).name,
    )


def _ci(lo: float, hi: float) -> str:
    return "" if np.isnan(lo) else f"[{lo:.3f}, {hi:.3f}]"


def _compare(a_pred, b_pred, split: str, compare: dict) -> dict:
    """Patient-aware paired tests of experiment A against reference B on the images both were
    read on: clustered DeLong, cluster-adjusted McNemar, patient bootstrap of differences."""
    ka = split_rows(a_pred, split)["key"].unique()
    kb = split_rows(b_pred, split)["key"].unique()
    keys = pd.Index(np.intersect1d(ka, kb))
    a = evaluation(a_pred, split, keys)
    b = evaluation(b_pred, split, keys)
    dl = stats.delong(a.y, a.probs, b.probs, a.patients, compare.get("delong_reference", "t"))
    dec_a = (a.probs >= a.thresholds[:, None]).astype(int)
    dec_b = (b.probs >= b.thresholds[:, None]).astype(int)
    mc = stats.mcnemar_clustered(a.y, dec_a, dec_b, a.patients)
    diff = bootstrap.paired_difference(
        a, b, tuple(compare["metrics"]), int(compare["bootstrap"]), int(compare["seed"]),
        compare.get("threshold", "fixed"),
    ).set_index("metric")  # fmt: skip
    out = {
        "paired_images": len(keys),
        "paired_patients": len(np.unique(a.patients)),
        "delong_z": dl["z"],
        "delong_df": dl["df"],
        "delong_p": dl["p_value"],
        "mcnemar_stat": mc["statistic"],
        "mcnemar_p": mc["p_value"],
        "test_notes": "; ".join(n for n in (dl["note"], mc["note"]) if n),
        "paired_resamples": int(compare["bootstrap"]),
        "paired_resamples_used": int(diff["resamples_used"].min()),
    }
    for m, r in diff.iterrows():
        out[f"diff_{m}"] = r["difference"]
        out[f"diff_{m}_ci"] = _ci(r["ci_low"], r["ci_high"])
        out[f"diff_{m}_p"] = r["p_value"]
    return out


P_COLUMNS = ("delong_p", "mcnemar_p")
_DELONG_REFERENCE = {
    "t": "read against a t distribution with Satterthwaite's degrees of freedom",
    "normal": "read against the normal distribution",
}


def group_report(
    group: dict, compare: dict, *tables_and_predictions
) -> tuple[pd.DataFrame, str, object]:
    """A thesis-style comparison table for a group of experiments, and their ROC curves.

    Args:
        group: ``title``, ``splits`` (where the table is read; ``split`` for one),
            ``reference`` (the experiment each is compared with, per observation),
            ``experiments`` (in order), optional ``note``; or instead of ``reference``,
            ``comparisons``: [experiment, reference] pairs, each a row of its own
            (``row: comparison``) and the table's test family.
        compare: the paired tests' settings: ``bootstrap`` resamples, ``seed``, ``metrics``
            whose differences are bootstrapped, ``threshold`` (fixed or resampled).
        tables_and_predictions: each experiment's metrics table, then its predictions.

    Returns:
        The table (one row per split and experiment: seed-mean metrics with patient-bootstrap
        CIs and across-seed intervals; against the reference, on the images both were read
        on: clustered DeLong, cluster-adjusted McNemar and patient-bootstrap differences, each
        p-value raw and Holm-adjusted within the table's family: its comparisons on one split,
        per test), its Markdown, and the ROC figure of the first split.
    """
    names = group["experiments"]
    n = len(names)
    tables, preds = tables_and_predictions[:n], tables_and_predictions[n:]
    splits = list(group.get("splits") or [group["split"]])
    by_name = {name: (t, p) for name, t, p in zip(names, tables, preds, strict=True)}
    refs = group.get("reference", {})
    pairs = [tuple(p) for p in group.get("comparisons") or []]
    unknown = sorted({n for p in pairs for n in p} - set(names))
    if unknown or any(len(p) != 2 for p in pairs):
        raise ValueError(
            f"group {group['title']!r}: comparisons must be [experiment, reference] pairs of its "
            f"experiments (unknown: {unknown})"
        )
    rows, curves = [], {}
    for split in splits:
        for name in names:
            table, pred = by_name[name]
            t = table[table["split"] == split].set_index("metric")
            if t.empty:
                continue
            row = {
                "split": split,
                "experiment": name,
                "observation": table["observation"].iloc[0],
                "images": int(t["images"].iloc[0]),
                "patients": int(t["patients"].iloc[0]),
                "positives": int(t["positives"].iloc[0]),
                "seeds": int(t["seeds"].iloc[0]),
                "resamples": int(t["resamples"].iloc[0]),
                "resamples_used": int(t["resamples_used"].min()),
                # where accuracy, F1 and kappa were read (the seeds' thresholds, averaged)
                "threshold": float(t["threshold"].iloc[0]) if "threshold" in t else np.nan,
            }
            for m in metrics.METRICS:
                row[m] = float(t.loc[m, "value"])
                row[f"{m}_ci"] = _ci(t.loc[m, "ci_low"], t.loc[m, "ci_high"])
                row[f"{m}_seed_ci"] = _ci(t.loc[m, "seed_ci_low"], t.loc[m, "seed_ci_high"])
            ref = None if pairs else refs.get(row["observation"])
            row["row"] = "experiment"
            if ref and ref != name and ref in by_name:
                row["reference"] = ref
                row.update(_compare(pred, by_name[ref][1], split, compare))
            else:
                row["reference"] = ""
            rows.append(row)
            if split == splits[0]:
                p = split_rows(pred, split)
                mean = p.groupby("key").agg(y=("y_true", "first"), prob=("prob", "mean"))
                curves[name] = (mean["y"].to_numpy(int), mean["prob"].to_numpy())
        for a, b in pairs:  # the group's own comparisons (experiment A against B)
            if split not in set(by_name[a][0]["split"]) or split not in set(by_name[b][0]["split"]):
                continue
            rows.append(
                {"split": split, "experiment": a, "reference": b, "row": "comparison"}
                | _compare(by_name[a][1], by_name[b][1], split, compare)
            )
    table = pd.DataFrame(rows)
    p_cols = [c for c in table.columns if c in P_COLUMNS or (c.startswith("diff_") and
              c.endswith("_p"))]  # fmt: skip
    for c in p_cols:
        table[f"{c}_holm"] = np.nan
        for _, idx in table.groupby("split").groups.items():
            table.loc[idx, f"{c}_holm"] = stats.holm(table.loc[idx, c].to_numpy(float))
    first = table[(table["split"] == splits[0]) & (table["row"] == "experiment")]
    fig = plots.roc_figure(
        curves,
        f"{group['title']} ({splits[0]}): ROC of each experiment's seed-mean scores",
        seed_auc=dict(zip(first["experiment"], first["roc_auc"], strict=True)),
    )
    return table, group_markdown(group, compare, table, splits), fig


def _pfmt(p: float, holm: float) -> str:
    if np.isnan(p):
        return "n/a"
    return f"{p:.3g} ({holm:.3g})"


def _tests_columns(part: pd.DataFrame) -> pd.DataFrame:
    """The paired tests of ``part``'s rows as display columns (raw p, Holm in brackets)."""
    show = pd.DataFrame(index=part.index)
    if "delong_p" not in part:
        return show
    show["DeLong p (Holm)"] = [
        _pfmt(p, h) for p, h in zip(part["delong_p"], part["delong_p_holm"], strict=True)
    ]
    show["McNemar p (Holm)"] = [
        _pfmt(p, h) for p, h in zip(part["mcnemar_p"], part["mcnemar_p_holm"], strict=True)
    ]
    for m, label in (("roc_auc", "ΔAUC"), ("f1", "ΔF1"), ("kappa", "Δκ")):
        if f"diff_{m}_p" in part:
            show[f"{label} [CI] p (Holm)"] = [
                "n/a" if np.isnan(p) else f"{d:+.3f} {ci} {_pfmt(p, h)}"
                for d, ci, p, h in zip(
                    part[f"diff_{m}"],
                    part[f"diff_{m}_ci"],
                    part[f"diff_{m}_p"],
                    part[f"diff_{m}_p_holm"],
                    strict=True,
                )  # fmt: skip
            ]
    return show


def group_markdown(group: dict, compare: dict, table: pd.DataFrame, splits: list[str]) -> str:
    seeds = sorted(int(s) for s in table["seeds"].dropna().unique()) if len(table) else []
    md = [
        f"# {group['title']}\n\n",
        f"Splits: {', '.join(f'**{s}**' for s in splits)}. Seeds per experiment: "
        f"{', '.join(str(s) for s in seeds)}"
        + (" (one seed: no across-seed interval)" if seeds == [1] else "")
        + ". Each value is the mean over the seeds, with its 95 % CI from "
        f"{int(table['resamples'].max()) if len(table) else 0} patient-bootstrap resamples of "
        "the seed mean (resamples without a positive or a negative are dropped for every "
        "metric; `used` counts the rest). Each experiment is compared with its reference on "
        "the images both were read on: DeLong's test clustered by patient (Obuchowski 1997) "
        f"on the seed-mean AUC ({_DELONG_REFERENCE[compare.get('delong_reference', 't')]}), "
        "McNemar's test adjusted for clustering (Durkalski et al. 2003) "
        "on the seed-averaged decisions, and a patient bootstrap of the seed-mean F1 "
        f"difference ({int(compare['bootstrap'])} resamples). p-values are raw (Holm-adjusted "
        "within the table's comparisons on that split, per test).\n\n",
    ]
    if group.get("note"):
        md.append(f"{group['note'].strip()}\n\n")
    for split in splits:
        part = table[table["split"] == split]
        if part.empty:
            continue
        md.append(f"## {split}{SPLIT_NOTES.get(split, '')}\n\n")
        exp_rows = part[part["row"] == "experiment"]
        pair_rows = part[part["row"] == "comparison"]
        cols = ["experiment", "images", "patients", "positives", "seeds", "accuracy", "f1",
                "f1_ci", "roc_auc", "roc_auc_ci", "roc_auc_seed_ci", "kappa", "kappa_ci",
                "resamples_used"]  # fmt: skip
        show = counts_as_int(exp_rows[cols])
        if pair_rows.empty:
            show = pd.concat([show, _tests_columns(exp_rows)], axis=1)
        md.append(show.to_markdown(index=False, floatfmt=".4f") + "\n\n")
        if not pair_rows.empty:
            md.append(f"Comparisons on {split} (experiment against reference):\n\n")
            show = pd.concat([counts_as_int(pair_rows[["experiment", "reference", "paired_images",
                                                     "paired_patients"]]),
                              _tests_columns(pair_rows)], axis=1)  # fmt: skip
            md.append(show.to_markdown(index=False, floatfmt=".4f") + "\n\n")
    return "".join(md)


def group_report_with_truth(
    group: dict, compare: dict, agreement: pd.DataFrame, *tables_and_predictions
) -> tuple[pd.DataFrame, str, object]:
    """``group_report`` plus, per experiment, how well its label policy's training targets
    agree with the demo's truth (empty columns for a real download)."""
    table, md, fig = group_report(group, compare, *tables_and_predictions)
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
    rows = table[table["row"] == "experiment"] if "row" in table else table
    show = rows[
        [
            "split",
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


def misclassified_selection(
    images: pd.DataFrame,
    store: TensorStore,
    state_dict: dict,
    spec: dict,
    mask_params: dict,
    metrics_table: pd.DataFrame,
    params: dict,
) -> tuple[pd.DataFrame, object, pd.DataFrame, dict]:
    """Thesis Figure 20 and the misclassified strategy's selection (thesis 4.5).

    The baseline's penultimate features of the training images (all of them, or up to
    ``pool_per_class`` of each class) are projected on their first two principal components.
    The decision boundary in that plane is drawn as ``boundary`` says:

    - ``logistic`` (default): the line that best separates the model's own decisions there
      (a logistic regression of its 0/1 decisions on the two coordinates);
    - ``projection``: the head's hyperplane w . f + b = logit(threshold) restricted to the plane.

    The decisions are the model's at the threshold its first seed chose on validation (the
    model is that seed's). Misclassified images closer to the line than the mean distance are
    selected and copied until the set is almost balanced (``strategies.misclassified_selection``).
    The figure shows ``per_class`` random images of each class (the thesis: 1,000), the
    selected ones among them ringed.

    Returns the points (key, PCA coordinates, label, decision, signed distance, selected), the
    figure, the selection (key, target, copies) and a summary of the counts.
    """
    from cxr_augment.augment import strategies

    rng = np.random.default_rng(int(params["seed"]))
    train = images[(images["split"] == "train") & ~images["target"].isna()]
    train = train[train["target"].isin([0, 1])]
    cap = params.get("pool_per_class")
    picks = []
    for cls in (0, 1):
        part = train[train["target"] == cls]
        order = rng.permutation(len(part))
        picks.append(part.iloc[np.sort(order[: int(cap)]) if cap else np.arange(len(part))])
    rows = pd.concat(picks, ignore_index=True)
    feats, w, b = _experiments().features(rows, store, state_dict, spec, mask_params)
    # the threshold the first seed (whose model this is) chose on validation
    first = str(metrics_table["seed_thresholds"].iloc[0]).split(",")[0]
    t = float(np.clip(float(first.split(":")[1]), 1e-6, 1 - 1e-6))
    b = b - float(np.log(t / (1 - t)))  # the boundary where P(positive) = threshold
    z, w2, b2, distance = plots.pca_boundary(feats, w, b)
    pred = (feats @ w + b >= 0).astype(int)
    how = params.get("boundary", "logistic")
    if how == "logistic":
        w2, b2, distance = plots.logistic_line(z, pred, int(params["seed"]))
    elif how != "projection":
        raise ValueError(f"study.pca.boundary must be logistic or projection, got {how!r}")
    y = rows["target"].to_numpy(int)
    points = rows[["key", "patient_id"]].assign(
        pc1=z[:, 0], pc2=z[:, 1], target=y, pred=pred, distance=distance
    )
    selection, summary = strategies.misclassified_selection(points, params.get("misclassified", {}))
    points["selected"] = points["key"].isin(selection["key"])
    summary = {"experiment": spec["name"], "boundary": how, **summary}
    shown = []
    for cls in (0, 1):
        idx = np.flatnonzero(y == cls)
        shown.append(np.sort(rng.permutation(idx)[: int(params["per_class"])]))
    s = np.concatenate(shown)
    title = f"{spec['name']}: penultimate features, PCA ({how} boundary)"
    if len(s) < len(y):  # a sample of each class: the legend counts the selected shown
        title += f"; {len(s):,} of the {len(y):,} {'pooled ' if cap else ''}training images shown"
    fig = plots.pca_figure(
        z[s], y[s], pred[s], w2, b2, title,
        selected=points["selected"].to_numpy()[s],
        selected_total=int(points["selected"].sum()),
    )  # fmt: skip
    return points, fig, selection, summary
