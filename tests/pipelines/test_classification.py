"""Two tiny experiments and their group report through Kedro."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner
from kedro_datasets.pandas import CSVDataset, ParquetDataset
from kedro_datasets.text import TextDataset

from cxr_augment.classify import metrics
from cxr_augment.classify.metrics import METRICS
from cxr_augment.datasets import CheckpointFolderDataset, TorchStateDictDataset
from cxr_augment.pipelines.classification.pipeline import build
from cxr_augment.preprocess.chexpert import OBSERVATIONS
from cxr_augment.preprocess.tensor_store import StoreWrite, TensorStore, write_store

DEFAULTS = {
    "observation": "Pneumothorax",
    "policy": "nm0_uones",
    "view": "combined",
    "mask": "none",
    "model": {"name": "tiny_densenet", "outputs": 1, "drop_rate": 0.0, "pretrained_path": None},
    "train": {
        "epochs": 2,
        "batch_size": 16,
        "lr": 0.003,
        "loss": "bce",
        "patience": 3,
        "seed": 1,
        "device": "cpu",
        "num_workers": 0,
        "progress": False,
    },
    "evaluate": {"bootstrap": 200, "seed": 2},
}
COMPARE = {"bootstrap": 200, "seed": 3, "metrics": ["accuracy", "f1", "roc_auc", "kappa"]}


def synthetic(tmp_path, n=240):
    """A manifest and store: positives carry a bright square; labels have NM / uncertain."""
    rng = np.random.default_rng(0)
    truth = (rng.random(n) < 0.3).astype(int)
    images = rng.integers(0, 90, (n, 40, 32)).astype(np.uint8)
    images[truth == 1, 5:15, 5:12] += 70  # learnable, not perfectly separable
    keys = [f"CheXpert-v1.0-small/train/patient{i:05d}/study1/view1_frontal.jpg" for i in range(n)]
    write_store(tmp_path / "store", StoreWrite(keys, lambda i: images[i], (40, 32), "syn"))
    split = np.array(["train"] * 150 + ["internal_test"] * 30 + ["validation"] * 30 + ["test"] * 30)
    raw = truth.astype(float)
    noisy = rng.random(n)
    raw[(split == "train") & (noisy < 0.1)] = -1.0
    raw[(split == "train") & (noisy > 0.85) & (truth == 0)] = np.nan
    manifest = pd.DataFrame(
        {
            "key": keys,
            "patient_id": np.arange(n) // 2,
            "split": split,
            "view": np.where(np.arange(n) % 4 == 3, "lateral", "frontal"),
            "store_row": np.arange(n),
            "Pneumothorax": raw,
            "Pleural Effusion": truth.astype(float),
        }
    )
    for obs in OBSERVATIONS:
        if obs not in manifest:
            manifest[obs] = np.nan
    return manifest, TensorStore(tmp_path / "store")


def truth_table(manifest: pd.DataFrame) -> pd.DataFrame:
    """The synthetic images' truth as the demo's ``truth.parquet`` holds it."""
    truth = (manifest["Pleural Effusion"] == 1).astype(int)  # the bright square
    return pd.DataFrame({"Path": manifest.key, "observation": "Pneumothorax", "truth": truth})


def experiment_datasets(tmp, name: str, seeds=(1,)) -> dict:
    data = {
        f"{name}.predictions": ParquetDataset(filepath=str(tmp / name / "pred.parquet")),
        f"{name}.metrics": CSVDataset(filepath=str(tmp / name / "metrics.csv")),
    }
    for s in seeds:
        data[f"{name}.seed{s}.model"] = TorchStateDictDataset(
            filepath=str(tmp / name / f"seed{s}" / "model.pt")
        )
        data[f"{name}.seed{s}.checkpoints"] = CheckpointFolderDataset(
            path=str(tmp / name / f"seed{s}" / "ck")
        )
    return data


def augmented_catalog(tmp_path, name: str, over: dict, manifest, store, **extra) -> DataCatalog:
    """The catalog of one augmented experiment ``name`` (one epoch) over the synthetic data."""
    from cxr_augment.datasets import TensorStoreDataset

    return DataCatalog(
        {
            "manifest": MemoryDataset(manifest),
            "tensor_store": MemoryDataset(store, copy_mode="assign"),
            "params:study.defaults": MemoryDataset(
                {**DEFAULTS, "train": {**DEFAULTS["train"], "epochs": 1}}
            ),
            "params:preprocessing.masks": MemoryDataset({}),
            f"params:study.experiments.{name}": MemoryDataset(over),
            "chexpert_truth": MemoryDataset(None),
            **experiment_datasets(tmp_path, name),
            f"{name}.augmented_store": TensorStoreDataset(path=str(tmp_path / f"{name}_store")),
            f"{name}.augmented_manifest": ParquetDataset(
                filepath=str(tmp_path / f"{name}.parquet")
            ),
            f"{name}.augmentation_counts": CSVDataset(filepath=str(tmp_path / "counts.csv")),
            f"{name}.seed1.training_history": CSVDataset(filepath=str(tmp_path / "hist.csv")),
            **{k: MemoryDataset(v) for k, v in extra.items()},
        }
    )


SEEDS = {"a": (1, 2)}  # experiment a trains two repeats


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cls")
    manifest, store = synthetic(tmp)
    experiments = {
        "a": {},
        "b": {"policy": "nm0_uzeros"},
        "c": {
            "policy": "nm0_umulticlass",
            "model": {"outputs": 3},
            "train": {"loss": "multiclass"},
        },
    }
    groups = {
        "g": {
            "title": "Tiny table",
            "splits": ["validation", "test", "internal_test_truth"],
            "reference": {"Pneumothorax": "a"},
            "experiments": ["a", "b", "c"],
        },
        "p": {  # the thesis's three comparisons, as Table 15 makes them
            "title": "Pairs",
            "splits": ["test", "validation"],
            "experiments": ["a", "b", "c"],
            "comparisons": [["b", "a"], ["c", "a"], ["c", "b"]],
        },
        "t": {
            "title": "With truth",
            "split": "validation",
            "truth_agreement": True,
            "experiments": ["a", "b"],
        },
    }
    agreement = pd.DataFrame(
        {
            "observation": ["Pneumothorax", "Pneumothorax"],
            "policy": ["FillNM(0) U-Ones", "FillNM(0) U-Zeros"],
            "accuracy": [0.9, 0.8],
            "implied_positive_rate": [0.31, 0.25],
            "true_positive_rate": [0.3, 0.3],
        }
    )
    data = {
        "policy_truth_agreement": MemoryDataset(agreement),
        "params:study.groups.t": MemoryDataset(groups["t"]),
        "manifest": MemoryDataset(manifest),
        "tensor_store": MemoryDataset(store, copy_mode="assign"),
        "chexpert_truth": MemoryDataset(truth_table(manifest)),
        "params:study.defaults": MemoryDataset(DEFAULTS),
        "params:study.compare": MemoryDataset(COMPARE),
        "params:preprocessing.masks": MemoryDataset({}),
        "params:study.groups.g": MemoryDataset(groups["g"]),
    }
    for name, over in experiments.items():
        data[f"params:study.experiments.{name}"] = MemoryDataset(over)
        data.update(experiment_datasets(tmp, name, SEEDS.get(name, (1,))))
    data["report.g.table"] = CSVDataset(filepath=str(tmp / "g.csv"))
    data["report.p.table"] = CSVDataset(filepath=str(tmp / "p.csv"))
    data["report.g.markdown"] = TextDataset(filepath=str(tmp / "g.md"))
    data["report.t.table"] = CSVDataset(filepath=str(tmp / "t.csv"))
    data["params:study.groups.p"] = MemoryDataset(groups["p"])
    catalog = DataCatalog(data)
    pipe = build(list(experiments), groups, pca_reference=None, seeds=SEEDS)
    SequentialRunner().run(pipe, catalog)
    return catalog, tmp


def test_each_experiment_writes_a_model_per_seed_predictions_and_metrics(run):
    catalog, tmp = run
    for name in "abc":
        seeds = SEEDS.get(name, (1,))
        for s in seeds:
            assert (tmp / name / f"seed{s}" / "model.pt").exists()
            assert list((tmp / name / f"seed{s}" / "ck").rglob("epoch_*.pt"))
        pred = catalog.load(f"{name}.predictions")
        assert set(pred.split) == {"validation", "test", "internal_test"}
        assert sorted(pred.seed.unique()) == list(seeds)
        assert pred.groupby("seed").size().nunique() == 1  # every seed scores every image
        assert pred.prob.between(0, 1).all()
        m = catalog.load(f"{name}.metrics")
        assert set(m.metric) == set(METRICS)
        assert set(m.split) == {"validation", "test", "internal_test", "internal_test_truth"}
        assert (m.seeds == len(seeds)).all() and (m.resamples == 200).all()
        assert (m.resamples_used <= m.resamples).all() and (m.resamples_used > 150).all()
        ok = m.ci_low.notna()
        assert (m.ci_low[ok] <= m.value[ok] + 1e-12).all()
        assert (m.value[ok] <= m.ci_high[ok] + 1e-12).all()


def test_seed_mean_and_thresholds_come_from_validation(run):
    """Each seed's threshold is the maximum-F1 threshold of its validation scores (computed
    here independently), not of the test scores; the value is the mean of the seeds' values."""
    catalog, _ = run
    pred = catalog.load("a.predictions")
    m = catalog.load("a.metrics")
    recorded = dict(
        (int(s), float(t)) for s, t in (x.split(":") for x in m.seed_thresholds.iloc[0].split(","))
    )
    per_seed_f1 = []
    for s in (1, 2):
        val = pred[(pred.seed == s) & (pred.split == "validation")]
        test = pred[(pred.seed == s) & (pred.split == "test")]
        on_val = metrics.choose_threshold(val.y_true.to_numpy(int), val.prob.to_numpy())
        on_test = metrics.choose_threshold(test.y_true.to_numpy(int), test.prob.to_numpy())
        assert on_val != on_test  # the data tell the two rules apart
        assert recorded[s] == pytest.approx(on_val)
        per_seed_f1.append(
            metrics.point_metrics(test.y_true.to_numpy(int), test.prob.to_numpy(), on_val)["f1"]
        )
    f1 = m[(m.split == "test") & (m.metric == "f1")]
    assert f1.value.iloc[0] == pytest.approx(np.mean(per_seed_f1))
    assert f1.seed_ci_low.iloc[0] <= f1.value.iloc[0] <= f1.seed_ci_high.iloc[0]


def test_the_truth_split_scores_the_internal_test_against_the_truth(run):
    catalog, _ = run
    pred = catalog.load("b.predictions")
    m = catalog.load("b.metrics").set_index(["split", "metric"])
    internal = pred[pred.split == "internal_test"]
    expected = metrics.roc_auc(internal.y_truth.to_numpy(), internal.prob.to_numpy())
    assert m.loc[("internal_test_truth", "roc_auc"), "value"] == pytest.approx(expected)


def test_the_signal_is_learned(run):
    catalog, _ = run
    m = catalog.load("a.metrics")
    auc = m[(m.split == "test") & (m.metric == "roc_auc")].value.iloc[0]
    assert auc > 0.8


def test_group_table_compares_against_the_reference_with_clustered_holm_tests(run):
    catalog, tmp = run
    table = catalog.load("report.g.table")
    assert table.split.tolist() == ["validation"] * 3 + ["test"] * 3 + ["internal_test_truth"] * 3
    assert table.experiment.tolist() == ["a", "b", "c"] * 3
    for _, part in table.groupby("split"):
        ref = part.set_index("experiment")
        assert np.isnan(ref.loc["a", "mcnemar_p"])
        for e in ("b", "c"):
            for col in ("mcnemar_p", "delong_p", "diff_f1_p", "diff_roc_auc_p"):
                p, holm = ref.loc[e, col], ref.loc[e, f"{col}_holm"]
                if np.isnan(p):  # undefined (no discordant patient, zero variance): says why
                    assert np.isnan(holm) and col[:7] in ("mcnemar", "delong_")
                    assert len(str(ref.loc[e, "test_notes"])) > 10
                else:
                    assert 0 <= p <= holm <= 1
            assert ref.loc[e, "paired_images"] == 30
            assert ref.loc[e, "paired_patients"] == 15
        # Holm over the family of two: the smaller p doubled, the larger at least it
        ps = ref.loc[["b", "c"], "diff_f1_p"].to_numpy()
        assert ref.loc[["b", "c"], "diff_f1_p_holm"].min() == pytest.approx(min(1, 2 * ps.min()))
    md = catalog.load("report.g.markdown")
    assert md.startswith("# Tiny table") and "| a " in md and "Holm" in md
    assert "## internal_test_truth" in md
    assert (tmp / "g.md").exists()


def test_a_group_with_its_own_comparisons_tests_each_pair_with_holm_over_them(run):
    catalog, _ = run
    table = catalog.load("report.p.table")
    exp = table[table["row"] == "experiment"]
    pairs = table[table["row"] == "comparison"]
    assert exp.experiment.tolist() == ["a", "b", "c"] * 2 and exp["delong_p"].isna().all()
    assert list(zip(pairs.split, pairs.experiment, pairs.reference, strict=True)) == [
        (s, a, b) for s in ("test", "validation") for a, b in (("b", "a"), ("c", "a"), ("c", "b"))
    ]
    g = catalog.load("report.g.table").set_index(["split", "experiment"])
    for _, r in pairs.iterrows():
        assert r.paired_images == 30
        if r.reference == "a":  # the same test as the reference-style table's
            assert r.delong_p == pytest.approx(g.loc[(r.split, r.experiment), "delong_p"])
    from cxr_augment.classify.stats import holm

    for _, part in pairs.groupby("split"):  # the family: the three comparisons of the split
        np.testing.assert_allclose(
            part["diff_f1_p_holm"], holm(part["diff_f1_p"].to_numpy(float)), rtol=1e-12
        )
    md = catalog.load("report.p.markdown")
    assert "Comparisons on test" in md and "| c " in md


def test_a_truth_group_lists_each_policys_agreement_with_the_truth(run):
    catalog, _ = run
    table = catalog.load("report.t.table").set_index("experiment")
    from cxr_augment.preprocess.labels import parse_policy

    assert table.loc["a", "policy"] == parse_policy("nm0_uones").name
    assert table.loc["b", "policy"] == parse_policy("nm0_uzeros").name
    md = catalog.load("report.t.markdown")
    assert "against the truth" in md
    assert table.loc["a", "label_truth_accuracy"] == 0.9
    assert table.loc["b", "label_positive_rate"] == 0.25
    assert table.loc["b", "true_positive_rate"] == 0.3


def test_an_augmented_experiment_trains_on_real_plus_generated_images(tmp_path):
    manifest, store = synthetic(tmp_path)
    over = {
        "augmentation": {"methods": ["rotation", "flipping"], "strategy": "unbalanced", "seed": 4}
    }
    catalog = augmented_catalog(tmp_path, "aug", over, manifest, store)
    SequentialRunner().run(build(["aug"], {}, None, {"aug": {"transforms": True}}), catalog)
    rows = pd.read_parquet(tmp_path / "aug.parquet")
    train = manifest[(manifest.split == "train")]
    positives = int((train.Pneumothorax.isin([1.0, -1.0])).sum())  # FillNM(0) + U-Ones
    negatives = len(train) - positives
    assert len(rows) == 11 * positives + negatives // 3  # thesis Table 4's arithmetic
    assert set(rows.origin) == {"augmentation"} and rows.parent_key.isin(train.key).all()
    assert rows.params.str.contains('"rotation"').all()
    aug_store = catalog.load("aug.augmented_store")
    assert len(aug_store) == len(rows)
    parent = store.get(rows.parent_key.iloc[0])
    assert not np.array_equal(aug_store.get(rows.key.iloc[0]), parent)
    counts = pd.read_csv(tmp_path / "counts.csv").set_index("class")
    assert counts.loc["Positive", "generated_images"] == 11 * positives


def _metrics(auc: float) -> pd.DataFrame:
    return pd.DataFrame(
        {"split": ["validation", "test"], "metric": ["roc_auc"] * 2, "value": [auc, 0.99]}
    )


def test_combined_methods_are_chosen_on_validation_only():
    from cxr_augment.pipelines.classification.nodes import choose_methods

    rule = {
        "baseline": "base",
        "metric": "roc_auc",
        "candidates": {"rotation": "r", "flipping": "f", "noise": "n"},
    }
    spec = {"name": "combo", "augmentation": {"methods": rule}}
    # the test split's 0.99 everywhere must not matter
    chosen = choose_methods(spec, _metrics(0.60), _metrics(0.65), _metrics(0.55), _metrics(0.70))
    assert chosen["methods"] == ["rotation", "noise"]
    assert chosen["baseline"] == {"base": 0.60}
    none_better = choose_methods(
        spec, _metrics(0.80), _metrics(0.65), _metrics(0.75), _metrics(0.70)
    )
    assert none_better["methods"] == ["flipping"]  # the best single method alone


def test_a_source_or_strategy_is_chosen_on_validation_only():
    from cxr_augment.pipelines.classification.nodes import choose_augmentation, with_methods

    options = {
        "traditional": {"experiment": "t", "set": {"source": "transforms", "methods": ["noise"]}},
        "ddim": {"experiment": "d", "set": {"source": "ddim"}},
    }
    spec = {
        "name": "m",
        "augmentation": {"strategy": "misclassified", "seed": 1, "choose": {"options": options}},
    }
    chosen = choose_augmentation(spec, _metrics(0.61), _metrics(0.66))  # test: 0.99 both
    assert chosen["chosen"] == "ddim" and chosen["set"] == {"source": "ddim"}
    assert chosen["options"]["traditional"]["roc_auc"] == 0.61
    applied = with_methods(spec, chosen)["augmentation"]
    assert applied == {"strategy": "misclassified", "seed": 1, "source": "ddim"}
    tie = choose_augmentation(spec, _metrics(0.7), _metrics(0.7))
    assert tie["chosen"] == "traditional"  # ties: the first listed


def test_the_misclassified_strategy_augments_the_selection_it_is_given(tmp_path):
    manifest, store = synthetic(tmp_path)
    train = manifest[manifest.split == "train"]
    selection = pd.DataFrame(
        {"key": train.key.iloc[[0, 3, 5]].tolist(), "target": [1.0, 0.0, 1.0], "copies": [7, 1, 7]}
    )
    over = {"augmentation": {"methods": ["noise"], "strategy": "misclassified", "seed": 4}}
    from cxr_augment.datasets.atomic import MatplotlibDataset

    catalog = augmented_catalog(
        tmp_path, "mis", over, manifest, store, misclassified_selection=selection,
        **{"params:augmentation.copies_figure": {"parents_per_class": 2, "copies": 3},
           "params:augmentation.closeness": {"size": 8}},
    )  # fmt: skip
    catalog["mis.copies_figure"] = MatplotlibDataset(filepath=str(tmp_path / "copies.png"))
    pipe = build(["mis"], {}, None, {"mis": {"transforms": True, "misclassified": True}})
    SequentialRunner().run(pipe, catalog)
    rows = pd.read_parquet(tmp_path / "mis.parquet")
    assert rows.groupby("parent_key").size().to_dict() == dict(
        zip(selection.key, selection.copies, strict=True)
    )
    # the figure: two positives and the one negative, each beside its first three copies
    # (the negative has one), titled with the transform applied
    from PIL import Image

    assert Image.open(tmp_path / "copies.png").size[0] > 500
    from cxr_augment.pipelines.classification.nodes import copies_figure
    from cxr_augment.preprocess.tensor_store import TensorStore

    fig = copies_figure(
        store, rows, TensorStore(tmp_path / "mis_store"), {"parents_per_class": 2, "copies": 3}
    )
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles.count("selected positive") == 2 and titles.count("selected negative") == 1
    assert titles.count("copy 1: noise") == 3 and "copy 3: noise" in titles
    assert len(titles) == 3 + 3 + 3 + 1
    counts = pd.read_csv(tmp_path / "counts.csv").set_index("class")
    assert counts.loc["Positive", "generated_images"] == 14
    assert counts.loc["Negative", "real_images"] == int((train.Pneumothorax.fillna(0) == 0).sum())
    # how close the copies stay: every copy measured, per class
    closeness = catalog.load("mis.copies_closeness")
    assert closeness["status"] == "ok" and closeness["copies"] == 15
    assert closeness["parents"] == 3 and closeness["comparison_size"] == "8 x 8"
    assert closeness["by_class"]["positive"]["copies"] == 14


def test_several_choices_apply_in_order_each_on_its_own_options():
    from cxr_augment.pipelines.classification.nodes import choose_augmentation, with_methods

    rules = [
        {"options": {"unbalanced": {"experiment": "u", "set": {"strategy": "unbalanced"}},
                     "balanced": {"experiment": "b", "set": {"strategy": "balanced"}}}},
        {"options": {"w1": {"experiment": "s1", "set": {"sampler": {"guidance": 1.0}}},
                     "w4": {"experiment": "s4", "set": {"sampler": {"guidance": 4.0}}}}},
    ]  # fmt: skip
    spec = {"name": "cfg", "augmentation": {"source": "cfg_dpmpp", "seed": 1, "choose": rules}}
    chosen = choose_augmentation(spec, _metrics(0.6), _metrics(0.7), _metrics(0.8), _metrics(0.5))
    assert chosen["chosen"] == "balanced + w1"
    assert chosen["set"] == {"strategy": "balanced", "sampler": {"guidance": 1.0}}
    assert [d["chosen"] for d in chosen["decisions"]] == ["balanced", "w1"]
    aug = with_methods(spec, chosen)["augmentation"]
    assert aug["strategy"] == "balanced" and aug["sampler"] == {"guidance": 1.0}
    with pytest.raises(ValueError, match="left over"):
        choose_augmentation(spec, *[_metrics(0.5)] * 5)


def test_a_rule_with_when_chooses_only_under_the_settings_chosen_before_it(monkeypatch):
    """The study's headline misclassified experiment: its source first, then DDIM's edit
    strength only when DDIM is the source; traditional chosen, the strength rule is recorded
    (its options' results) but chooses nothing, so the label and settings carry no strength."""
    from cxr_augment.classify import experiments as ex
    from cxr_augment.classify.choice import rule_applies
    from cxr_augment.pipelines.classification import pipeline as cp
    from cxr_augment.pipelines.classification.nodes import choose_augmentation

    source = {
        "options": {
            "traditional": {"experiment": "t", "set": {"source": "transforms"}},
            "ddim": {"experiment": "d", "set": {"source": "ddim"}},
        }
    }
    strength = {"when": {"source": "ddim"}, "require": {"parent_nearest_share": 0.5},
                "options": {"s1": {"experiment": "e1", "set": {"strength": 0.25}},
                            "s2": {"experiment": "e2", "set": {"strength": 0.5}}}}  # fmt: skip
    spec_aug = {"strategy": "misclassified", "seed": 1, "choose": [source, strength]}
    spec = {"name": "m", "augmentation": dict(spec_aug)}
    near = [{"parent_nearest_share": 0.9}, {"parent_nearest_share": 0.8}]
    out = choose_augmentation(spec, _metrics(0.7), _metrics(0.6), _metrics(0.5), _metrics(0.8),
                              *near)  # fmt: skip
    assert out["chosen"] == "traditional" and out["set"] == {"source": "transforms"}
    assert out["decisions"][1]["chosen"] is None and out["decisions"][1]["set"] == {}
    assert out["decisions"][1]["options"]["s2"]["roc_auc"] == 0.8
    assert "applies only when source is ddim (here transforms)" in out["decisions"][1]["rule"]
    assert "options" not in out and "rule" not in out  # each rule's record once, in decisions
    out = choose_augmentation(spec, _metrics(0.6), _metrics(0.7), _metrics(0.5), _metrics(0.8),
                              *near)  # fmt: skip
    assert out["chosen"] == "ddim + s2" and out["set"] == {"source": "ddim", "strength": 0.5}
    # the experiment's own settings count too: a DDIM experiment's strength rule applies
    spec["augmentation"] = {"source": "ddim", "strategy": "misclassified", "choose": [strength]}
    assert choose_augmentation(spec, _metrics(0.5), _metrics(0.8), *near)["chosen"] == "s2"
    # the options each variant is checked with: the strength joins the DDIM variant only
    assert rule_applies(strength, {"source": "ddim"})
    assert not rule_applies(strength, {}) and rule_applies(source, {})
    # the wiring: the strength options' results are read (recorded), the transforms allowed
    edits = {"source": "ddim", "strategy": "misclassified", "seed": 1}
    with_when = {"defaults": {}, "experiments": {
        "m": {"augmentation": spec_aug},
        # the source rule's option writes source: transforms; t leaves it to its default
        "t": {"augmentation": {"strategy": "misclassified", "seed": 1}},
        "e1": {"augmentation": {**edits, "strength": 0.25}},
        "e2": {"augmentation": {**edits, "strength": 0.5}, "model": {"arch": "densenet161"}},
    }}  # fmt: skip
    monkeypatch.setattr(cp, "study_config", lambda: with_when)
    monkeypatch.setattr(cp, "_generator_model", lambda name, src: f"{src}.model")
    wiring = cp.augmentation_wiring("m")
    assert wiring["choose"] == ["t", "d", "e1", "e2"] and wiring["transforms"]
    assert wiring["choose_closeness"] == ["e1", "e2"] and list(wiring["generators"]) == ["ddim"]
    # twins: a choice whose settings are an option experiment's exactly takes its training;
    # e2 has the strength of s2 but another model, so s2 trains; an omitted source is the
    # transforms, as written out
    assert wiring["twins"] == {"traditional": "t", "ddim + s1": "e1"}
    # the wiring merges the study's defaults as experiment_spec does, nested settings too: a
    # when on the sampler the defaults and the experiment give together applies, and the
    # generator its option brings is wired
    sampler = {"scheduler": "ddim", "steps": 10, "guidance": 3.0}
    nested = {"defaults": {"augmentation": {"sampler": {"scheduler": "ddim", "steps": 10}}},
              "experiments": {"n": {"augmentation": {
                  "source": "cfg_dpmpp", "strategy": "unbalanced", "seed": 1,
                  "sampler": {"guidance": 3.0},
                  "choose": [{"when": {"sampler": sampler},
                              "options": {"a": {"experiment": "x", "set": {"source": "ddim"}}}}],
              }}}}  # fmt: skip
    monkeypatch.setattr(cp, "study_config", lambda: nested)
    assert list(cp.augmentation_wiring("n")["generators"]) == ["ddim"]
    # a label names one setting: two routes to "a + b", or a label that is not a string,
    # are errors naming the experiment (else a twin could take another setting's training)
    clash = {"source": "ddim", "seed": 11, "strategy": "unbalanced", "choose": [
        {"options": {"a": {"experiment": "A", "set": {"strategy": "unbalanced"}},
                     "a + b": {"experiment": "B", "set": {"strategy": "balanced"}}}},
        {"when": {"strategy": "unbalanced"},
         "options": {"b": {"experiment": "E", "set": {"sampler": {"steps": 10}}}}}]}  # fmt: skip
    monkeypatch.setattr(cp, "study_config", lambda: {"defaults": {}, "experiments": {"c": {
        "augmentation": clash}}})  # fmt: skip
    with pytest.raises(ValueError, match="experiment c: .*two choices are labelled 'a \\+ b'"):
        cp.augmentation_wiring("c")
    with pytest.raises(ValueError, match="experiment x: .*two choices are labelled"):
        ex.experiment_spec(DEFAULTS, {"augmentation": clash}, "x")
    numeric = {**clash, "choose": [{"options": {0.25: {"experiment": "A", "set": {}}}}]}
    with pytest.raises(ValueError, match="option label 0.25 is not a string"):
        ex.experiment_spec(DEFAULTS, {"augmentation": numeric}, "x")
    for bad in ("ddim", {}, [["source", "ddim"]]):
        aug = {"methods": ["noise"], "seed": 1, "choose": [{**strength, "when": bad}]}
        with pytest.raises(ValueError, match="augmentation.choose's when takes"):
            ex.experiment_spec(DEFAULTS, {"augmentation": aug}, "x")
    # a when that no setting can meet (a misspelt key or value) is an error, not a rule
    # that silently never applies
    for bad in ({"sorce": "ddim"}, {"source": "DDIM"}):
        aug = {"methods": ["noise"], "strategy": "misclassified", "seed": 1,
               "choose": [source, {**strength, "when": bad}]}  # fmt: skip
        with pytest.raises(ValueError, match="holds for none of the settings"):
            ex.experiment_spec(DEFAULTS, {"augmentation": aug}, "x")


def test_a_strategy_chosen_on_validation_is_the_one_its_set_and_training_use(tmp_path):
    manifest, store = synthetic(tmp_path)
    choose = {
        "options": {
            "unbalanced": {"experiment": "u", "set": {"strategy": "unbalanced"}},
            "balanced": {"experiment": "b", "set": {"strategy": "balanced"}},
        }
    }
    over = {"augmentation": {"methods": ["noise"], "seed": 4, "choose": choose}}
    # balanced wins on validation (0.7 against 0.6)
    extra = {"u.metrics": _metrics(0.6), "b.metrics": _metrics(0.7)}
    catalog = augmented_catalog(tmp_path, "ch", over, manifest, store, **extra)
    wiring = {"transforms": True, "choose": ["u", "b"]}
    SequentialRunner().run(build(["ch"], {}, None, {"ch": wiring}), catalog)
    counts = pd.read_csv(tmp_path / "counts.csv").set_index("class")
    positives = int(counts.loc["Positive", "original_images"])
    # the balanced strategy (Table 5): the positives and as many negatives, each x 4
    assert counts.loc["Negative", "real_images"] == positives
    assert counts.loc["Positive", "generated_images"] == 4 * positives
    assert catalog.load("ch.predictions")["prob"].between(0, 1).all()


def test_a_twin_training_is_taken_only_for_its_label_and_its_inputs_must_pair_up(monkeypatch):
    from cxr_augment.pipelines.classification import nodes as cn

    trained = []

    class Runner:
        @staticmethod
        def fit(*args, **kwargs):
            trained.append(1)
            return {"w": "trained"}, pd.DataFrame({"loss": [1.0]})

    monkeypatch.setattr(cn, "_experiments", lambda: Runner)
    spec = {"name": "m", "augmentation": {"source": "ddim", "choose": []}, "train": {}}
    twins = {"s1": "e1", "ddim + s1": "e1", "s2": "e2"}
    runs = ({"w": "e1"}, pd.DataFrame({"loss": [0.1]}), {"w": "e2"}, pd.DataFrame({"loss": [0.2]}))
    fixed = [None, None, None, spec, {}, None, None, None]
    model, history = cn.train_classifier_augmented(
        *fixed, {"chosen": "s2", "set": {}}, *runs, seed=1, twins=twins
    )
    assert model == {"w": "e2"} and history["loss"].tolist() == [0.2] and not trained
    model, _ = cn.train_classifier_augmented(
        *fixed, {"chosen": "ddim + s1", "set": {}}, *runs, seed=1, twins=twins
    )
    assert model == {"w": "e1"} and not trained
    model, _ = cn.train_classifier_augmented(
        *fixed, {"chosen": "s3", "set": {}}, *runs, seed=1, twins=twins
    )
    assert model == {"w": "trained"} and trained == [1]  # no twin: it trains
    with pytest.raises(ValueError, match="3 twin inputs for 2 twins"):
        cn.train_classifier_augmented(*fixed, {"chosen": "s2"}, *runs[:3], seed=1, twins=twins)
