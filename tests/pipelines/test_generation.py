"""The generation pipeline at tiny size through Kedro, and a study experiment that draws its
synthetic images from a generator."""

from __future__ import annotations

import copy

import pandas as pd
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from cxr_augment.classify.models import ModelConfig, build_model
from cxr_augment.datasets import (
    CheckpointFolderDataset,
    DiffusionModelDataset,
    TensorStoreDataset,
)
from cxr_augment.pipelines.generation.pipeline import _with_features, build
from tests.pipelines.test_classification import DEFAULTS, synthetic


class Kept(MemoryDataset):
    """A memory dataset the runner does not release, so the test can read it afterwards."""

    def _release(self) -> None:
        pass


TINY_PRESET = {
    "sample_size": 16,
    "layers_per_block": 1,
    "block_out_channels": [16, 32],
    "down_block_types": ["DownBlock2D", "AttnDownBlock2D"],
    "up_block_types": ["AttnUpBlock2D", "UpBlock2D"],
    "norm_num_groups": 8,
    "attention_head_dim": 8,
}


def tiny_generation(parameters: dict) -> dict:
    """The project's generation parameters with tiny models, sets and metrics."""
    g = copy.deepcopy(parameters["generation"])
    g["device"] = "cpu"
    g["schedule"].update(num_train_timesteps=100, beta_end=0.2)
    g["presets"] = {"tiny": TINY_PRESET}
    for m in g["models"].values():
        m["preset"] = "tiny"
    g["train"].update(max_steps=3, batch_size=8, progress=False, checkpoint_every=2)
    g["sampling"]["batch_size"] = 8
    g["generators"]["ddpm"]["n_per_class"] = 3
    g["generators"]["ddim"]["sampler"]["steps"] = 4
    g["generators"]["ddim_rgb"]["sampler"]["steps"] = 4
    g["generators"]["cfg_dpmpp"]["sampler"]["steps"] = 3
    g["traditional"]["methods"] = ["rotation", "flipping"]
    g["metrics"].update(
        n_per_class=6,
        max_reference=20,
        feature_experiment="feat",
        bootstrap=10,
        kid={"subsets": 5, "subset_size": 6},
        prdc_k=2,
    )
    g["metrics"]["memorisation"].update(max_share=1.0, pairs_shown=3)
    g["figure"]["per_class"] = 2
    g["sweep"].update(
        schedulers=["ddim", "dpmsolver++"], steps=[2, 3], guidance=[1.0, 2.0], n_per_class=3
    )
    return g


def _params(name: str, value) -> dict:
    """A parameter and every nested one, as Kedro's catalog holds them (``params:a.b.c``)."""
    out = {name: MemoryDataset(value)}
    if isinstance(value, dict):
        for k, v in value.items():
            out |= _params(f"{name}.{k}", v)
    return out


@pytest.fixture(scope="module")
def run(tmp_path_factory, parameters):
    tmp = tmp_path_factory.mktemp("gen")
    manifest, store = synthetic(tmp)
    gen = tiny_generation(parameters)
    defaults = copy.deepcopy(DEFAULTS)
    study = {"defaults": defaults, "experiments": {"feat": {}}}
    feature = build_model(ModelConfig("tiny_densenet", outputs=1)).state_dict()
    data = {
        "manifest": MemoryDataset(manifest),
        "tensor_store": MemoryDataset(store, copy_mode="assign"),
        "params:generation": MemoryDataset(gen),
        **_params("params:generation", gen),
        "params:study.defaults": MemoryDataset(study["defaults"]),
        "params:study.experiments.feat": MemoryDataset(study["experiments"]["feat"]),
        "feat.seed1.model": MemoryDataset(feature),
    }
    for m in gen["models"]:
        data[f"generation.{m}.model"] = DiffusionModelDataset(path=str(tmp / "models" / m))
        data[f"generation.{m}.checkpoints"] = CheckpointFolderDataset(path=str(tmp / "ck" / m))
    for g in ["traditional", *gen["generators"]]:
        data[f"generation.{g}.samples"] = TensorStoreDataset(path=str(tmp / "samples" / g))
    pipe = _with_features(build(gen), gen, "feat.seed1.model")
    for name in pipe.datasets():
        data.setdefault(name, Kept(copy_mode="assign"))
    catalog = DataCatalog(data)
    SequentialRunner().run(pipe, catalog)
    return catalog, gen, store, manifest, tmp


def test_every_model_and_generator_is_made(run):
    catalog, gen, store, _, tmp = run
    for m in gen["models"]:
        model = catalog.load(f"generation.{m}.model")
        assert model.conditioning == gen["models"][m]["conditioning"]
        assert list((tmp / "ck" / m).rglob("step_*.pt"))  # checkpoints were written
        hist = catalog.load(f"generation.{m}.history")
        assert (hist.groupby("part")["step"].max() == 2).all()  # max_steps 3
    for g, spec in gen["generators"].items():
        m = catalog.load(f"generation.{g}.samples_manifest")
        if "model" not in spec:
            assert len(m) == 0  # Stable Diffusion: no base model configured
            status = catalog.load(f"generation.{g}.status")
            assert status["status"] == "skipped"
            assert "generation.stable_diffusion.base_model" in status["reason"]
            continue
        s = catalog.load(f"generation.{g}.samples")
        n = spec.get("n_per_class") or gen["metrics"]["n_per_class"]
        assert len(s) == 2 * n and s.shape == store.shape
        assert sorted(m["target"].value_counts().to_dict().items()) == [(0.0, n), (1.0, n)]
        assert m["checkpoint_hash"].str.len().eq(16).all()
        want_steps = spec["sampler"]["steps"] or gen["schedule"]["num_train_timesteps"]
        assert set(m["steps"]) == {want_steps}


def test_metrics_carry_their_n_and_extractor(run):
    catalog, gen, store, *_ = run
    t = catalog.load("generation.ddim.metrics").set_index("class")
    assert list(t.index) == ["0", "1", "all"]
    assert t.loc["all", "n_gen"] == 12 and t.loc["all", "image_size"] == "40x32"
    assert "feat" in t.loc["all", "domain_extractor"]
    assert (
        t.loc["all", "domain_fd"] >= 0
        and t.loc["all", "domain_fd_ci_low"] <= t.loc["all", "domain_fd_ci_high"]
    )
    assert 0 <= t.loc["all", "ssim_mean"] <= 1 and t.loc["all", "psnr_mean"] > 0
    assert t.loc["all", "status"].startswith("FID/IS skipped")  # no Inception weights here
    reason = catalog.load("generation.reference")["inception_skipped"]
    assert "pt_inception-2015-12-05-6726825d.pth" in reason
    assert "generation.metrics.inception_weights" in reason
    mem = catalog.load("generation.ddim.memorisation_summary")
    assert mem["n_gen"] == 12 and mem["status"] == "ok" and 0 <= mem["share"] <= 1
    per_image = catalog.load("generation.ddim.memorisation")
    assert len(per_image) == 12 and per_image["nearest_key"].str.startswith("CheXpert").all()


def test_tables_figures_and_sweep(run):
    catalog, gen, *_ = run
    t13 = catalog.load("generation.report.table13.table")
    assert list(t13["generator"]) == ["ddim", "ddim_rgb"]
    md = catalog.load("generation.report.table14.markdown")
    assert "Table 14" in md and "0.5914 ± 0.08" in md  # the thesis's DDIM beside ours
    assert "SD + LoRA" in md and "skipped" in md
    assert "pt_inception-2015-12-05-6726825d.pth" in md
    import matplotlib.figure

    assert isinstance(catalog.load("generation.report.figure23"), matplotlib.figure.Figure)
    sweep = catalog.load("generation.report.sweep.table")
    assert len(sweep) == 2 * 2 * 2 and sweep["domain_fd"].ge(0).all()


def _experiment_data(run, name: str, exp: dict, gen: dict) -> dict:
    """The datasets of augmented experiment ``name`` sampling the run's grey DDIM model."""
    from cxr_augment.datasets import TorchStateDictDataset

    catalog, _, store, manifest, tmp = run
    return {
        "manifest": MemoryDataset(manifest),
        "tensor_store": MemoryDataset(store, copy_mode="assign"),
        **_params("params:generation", gen),
        "params:study.defaults": MemoryDataset(DEFAULTS),
        f"params:study.experiments.{name}": MemoryDataset(exp),
        "params:preprocessing.masks": MemoryDataset({}),
        "generation.grey.model": DiffusionModelDataset(path=str(tmp / "models" / "grey")),
        "generation.ddim.memorisation_summary": MemoryDataset(
            catalog.load("generation.ddim.memorisation_summary")
        ),
        f"{name}.augmented_store": TensorStoreDataset(path=str(tmp / f"{name}_store")),
        f"{name}.seed1.checkpoints": CheckpointFolderDataset(path=str(tmp / f"{name}_ck")),
        f"{name}.seed1.model": TorchStateDictDataset(filepath=str(tmp / f"{name}.pt")),
        "chexpert_truth": MemoryDataset(None),
    }


def test_an_experiment_draws_its_synthetic_images_from_a_generator(run):
    from cxr_augment.augment import strategies
    from cxr_augment.pipelines.classification.pipeline import experiment_pipeline

    catalog, gen, store, manifest, tmp = run
    exp = {"augmentation": {"source": "ddim", "strategy": "balanced", "seed": 3}}
    data = _experiment_data(run, "d", exp, gen)
    pipe = experiment_pipeline("d", {"generators": {"ddim": "grey"}})
    for name in pipe.datasets():
        data.setdefault(name, Kept(copy_mode="assign"))
    c = DataCatalog(data)
    SequentialRunner().run(pipe, c)
    rows = c.load("d.augmented_manifest")
    selection = c.load("d.augmentation_selection")
    want = selection.groupby("target")["copies"].sum()
    assert rows.groupby("target").size().to_dict() == want.to_dict()
    assert set(rows["generator"]) == {"ddim"} and set(rows["origin"]) == {"diffusion"}
    assert len(c.load("d.augmented_store")) == len(rows)
    counts = c.load("d.augmentation_counts")
    assert counts["generated_images"].sum() == len(rows)
    assert strategies.settings("balanced")["real"] == "selected"
    assert c.load("d.predictions")["prob"].between(0, 1).all()
    # a generator that failed its memorisation check is refused
    c.save(
        "generation.ddim.memorisation_summary",
        {"status": "ok", "passed": False, "share": 0.4, "percentile": 1.0, "max_share": 0.05},
    )
    with pytest.raises(Exception, match="memorisation check"):
        SequentialRunner().run(pipe, c)


def test_the_misclassified_strategy_edits_its_selected_images_with_a_generator(run):
    """With a generator as its source, the misclassified strategy's images are the selected
    images' copies, each an image-conditioned edit of its parent (``generation.edit``)."""
    from cxr_augment.pipelines.classification.pipeline import experiment_pipeline

    catalog, gen, store, manifest, tmp = run
    train = manifest[(manifest["split"] == "train") & (manifest["view"] == "frontal")]
    train = train[train["Pneumothorax"].isin([0.0, 1.0])]
    pos = train[train["Pneumothorax"] == 1.0]["key"].head(2).tolist()
    neg = train[train["Pneumothorax"] == 0.0]["key"].head(1).tolist()
    selection = pd.DataFrame({"key": pos + neg, "target": [1.0, 1.0, 0.0], "copies": [3, 2, 1]})
    exp = {"augmentation": {"source": "ddim", "strategy": "misclassified", "seed": 3}}
    data = _experiment_data(run, "m", exp, {**gen, "edit": {"strength": 0.6}})
    data["misclassified_selection"] = MemoryDataset(selection)
    data["params:augmentation.copies_figure"] = MemoryDataset({"parents_per_class": 2, "copies": 2})
    data["params:augmentation.closeness"] = MemoryDataset({"size": 8})
    pipe = experiment_pipeline("m", {"generators": {"ddim": "grey"}, "misclassified": True})
    assert "params:generation.edit" in pipe.inputs()
    for name in pipe.datasets():
        data.setdefault(name, Kept(copy_mode="assign"))
    c = DataCatalog(data)
    SequentialRunner().run(pipe, c)
    rows = c.load("m.augmented_manifest")
    assert rows.groupby("parent_key").size().to_dict() == {pos[0]: 3, pos[1]: 2, neg[0]: 1}
    assert set(rows["strength"]) == {0.6} and set(rows["generator"]) == {"ddim"}
    want = manifest.set_index("key").loc[rows["parent_key"], "patient_id"].to_numpy()
    assert (rows["patient_id"].to_numpy() == want).all()
    assert len(c.load("m.augmented_store")) == 6
    titles = [ax.get_title() for ax in c.load("m.copies_figure").axes if ax.get_title()]
    assert titles.count("copy 1: edit, strength 0.6") == 3  # two positives, one negative
    assert titles.count("copy 2: edit, strength 0.6") == 2 and len(titles) == 3 + 5
    closeness = c.load("m.copies_closeness")
    assert closeness["how"] == "edit, strength 0.6" and closeness["copies"] == 6
    assert 0 < closeness["rms_to_parent"]["mean"] < 255
    assert c.load("m.predictions")["prob"].between(0, 1).all()


def test_the_edit_strength_chosen_on_validation_is_the_one_the_edits_use(run):
    """``augmentation.choose`` over edit strengths: the option whose experiment has the better
    validation AUC (the test AUCs say the opposite) sets the strength the edits are made at."""
    from cxr_augment.pipelines.classification.pipeline import experiment_pipeline

    catalog, gen, store, manifest, tmp = run
    train = manifest[(manifest["split"] == "train") & (manifest["view"] == "frontal")]
    train = train[train["Pneumothorax"].isin([0.0, 1.0])]
    pos = train[train["Pneumothorax"] == 1.0]["key"].head(1).tolist()
    selection = pd.DataFrame({"key": pos, "target": [1.0], "copies": [2]})
    options = {
        "s02": {"experiment": "e02", "set": {"strength": 0.2}},
        "s08": {"experiment": "e08", "set": {"strength": 0.8}},
    }
    aug = {
        "source": "ddim",
        "strategy": "misclassified",
        "seed": 3,
        "choose": [{"options": options}],
    }
    data = _experiment_data(run, "m", {"augmentation": aug}, {**gen, "edit": {"strength": 0.5}})
    data["misclassified_selection"] = MemoryDataset(selection)
    data["params:augmentation.copies_figure"] = MemoryDataset({"parents_per_class": 1, "copies": 1})
    data["params:augmentation.closeness"] = MemoryDataset({"size": 8})

    def metrics(val: float, test: float) -> pd.DataFrame:
        return pd.DataFrame(
            {"split": ["validation", "test"], "metric": ["roc_auc"] * 2, "value": [val, test]}
        )

    data["e02.metrics"] = MemoryDataset(metrics(0.61, 0.90))
    data["e08.metrics"] = MemoryDataset(metrics(0.66, 0.50))
    wiring = {"generators": {"ddim": "grey"}, "misclassified": True, "choose": ["e02", "e08"]}

    def run(reads: set[str]) -> DataCatalog:
        pipe = experiment_pipeline("m", wiring)
        assert reads <= pipe.inputs()
        for name in pipe.datasets():
            data.setdefault(name, Kept(copy_mode="assign"))
        c = DataCatalog(data)
        SequentialRunner().run(pipe, c)
        return c

    c = run({"e02.metrics", "e08.metrics"})
    chosen = c.load("m.chosen_augmentation")
    assert chosen["chosen"] == "s08" and chosen["set"] == {"strength": 0.8}
    assert chosen["options"]["s02"]["roc_auc"] == 0.61
    rows = c.load("m.augmented_manifest")
    assert set(rows["strength"]) == {0.8} and len(rows) == 2
    # required to keep the parent: 0.8's copies do not (their closeness), so 0.2 is chosen
    aug["choose"] = [{"options": options, "require": {"parent_nearest_share": 0.5}}]
    data["params:study.experiments.m"] = MemoryDataset({"augmentation": aug})
    data["e02.copies_closeness"] = MemoryDataset({"parent_nearest_share": 0.9})
    data["e08.copies_closeness"] = MemoryDataset({"parent_nearest_share": 0.1})
    wiring["choose_closeness"] = ["e02", "e08"]
    c = run({"e02.copies_closeness", "e08.copies_closeness"})
    chosen = c.load("m.chosen_augmentation")
    assert chosen["chosen"] == "s02" and chosen["options"]["s08"]["parent_nearest_share"] == 0.1
    assert "parent nearest for at least 0.5" in chosen["rule"]
    assert set(c.load("m.augmented_manifest")["strength"]) == {0.2}
    # a choice whose settings are an option experiment's exactly (its twin) takes that
    # experiment's training: here e02's model (m's own, one weight moved to tell them apart)
    # and history come back as m's, and nothing trains
    import torch

    from cxr_augment.pipelines.classification import nodes as cn

    theirs = {k: v.clone() for k, v in c.load("m.seed1.model").items()}
    key = next(k for k, v in theirs.items() if v.is_floating_point())
    theirs[key] += 1.0
    history = c.load("m.seed1.training_history").assign(loss=0.123)
    data["e02.seed1.model"] = MemoryDataset(theirs, copy_mode="assign")
    data["e02.seed1.training_history"] = MemoryDataset(history)
    data.pop("m.seed1.model"), data.pop("m.seed1.training_history")
    wiring["twins"] = {"s02": "e02"}
    fit = cn._experiments().fit
    cn._experiments().fit = lambda *a, **k: pytest.fail("trained although its twin's was taken")
    try:
        c = run({"e02.seed1.model", "e02.seed1.training_history"})
    finally:
        cn._experiments().fit = fit
    assert torch.equal(c.load("m.seed1.model")[key], theirs[key])
    assert (c.load("m.seed1.training_history")["loss"] == 0.123).all()
    assert len(c.load("m.seed1.predictions")) > 0  # predicted with the twin's weights


def test_a_required_closeness_limits_the_options_and_says_when_none_meets_it():
    from cxr_augment.pipelines.classification.nodes import choose_augmentation

    def metrics(val: float) -> pd.DataFrame:
        return pd.DataFrame({"split": ["validation"], "metric": ["roc_auc"], "value": [val]})

    options = {k: {"experiment": k, "set": {"strength": s}}
               for k, s in (("a", 0.25), ("b", 0.5), ("c", 0.75))}  # fmt: skip
    rule = {"options": options, "require": {"parent_nearest_share": 0.1}}
    spec = {"name": "x", "augmentation": {"choose": [rule]}}
    aucs = [metrics(0.52), metrics(0.50), metrics(0.60)]
    near = [{"parent_nearest_share": v} for v in (0.89, 0.12, 0.02)]
    # a and b keep their parents often enough; b's AUC is lower: a
    assert choose_augmentation(spec, *aucs, *near)["chosen"] == "a"
    rule["require"]["parent_nearest_share"] = 0.95  # none does: every option stays in
    out = choose_augmentation(spec, *aucs, *near)
    assert out["chosen"] == "c" and "none has: every option stays in" in out["rule"]
    with pytest.raises(ValueError, match="left over"):
        choose_augmentation(spec, *aucs, *near, near[0])


def test_a_closeness_requirement_needs_misclassified_options_and_a_share(monkeypatch):
    from cxr_augment.classify import experiments as ex
    from cxr_augment.pipelines.classification import pipeline as cp

    for bad in ({"parent_nearest_share": 1.5}, {"parent_nearest_share": "most"}, {"fid": 3}):
        rule = {"options": {"a": {"experiment": "a"}}, "require": bad}
        aug = {"source": "ddim", "strategy": "misclassified", "seed": 1, "choose": [rule]}
        with pytest.raises(ValueError, match="experiment x: augmentation.choose's require"):
            ex.experiment_spec(DEFAULTS, {"augmentation": aug}, "x")
    need = {"parent_nearest_share": 0.5}
    study = {
        "defaults": {},
        "experiments": {
            "x": {"augmentation": {"methods": ["noise"], "strategy": "misclassified", "seed": 1,
                                   "choose": [{"options": {"u": {"experiment": "u"}},
                                               "require": need}]}},
            "u": {"augmentation": {"methods": ["noise"], "strategy": "unbalanced", "seed": 1}},
        },
    }  # fmt: skip
    monkeypatch.setattr(cp, "study_config", lambda: study)
    with pytest.raises(ValueError, match="option experiment u makes no copies"):
        cp.augmentation_wiring("x")
    study["experiments"]["u"]["augmentation"]["strategy"] = "misclassified"
    assert cp.augmentation_wiring("x")["choose_closeness"] == ["u"]


def twins_of(sweep: list[str]) -> dict[str, str]:
    return {f"s{n[len('ptx_edit_s') :]}": n for n in sweep}


def test_the_study_profile_chooses_the_edit_strength_on_validation(monkeypatch):
    """The study profile: Table 15's DDIM misclassified row and the headline's misclassified
    experiment take their edit strength from the edit sweep's validation results; the default
    profile keeps ``generation.edit.strength`` and trains no sweep."""
    from cxr_augment import study
    from cxr_augment.classify import experiments as ex
    from cxr_augment.pipelines.classification import pipeline as cp

    sweep = ["ptx_edit_s025", "ptx_edit_s05", "ptx_edit_s075"]
    for env in ("study", "local"):
        monkeypatch.setenv("KEDRO_ENV", env)
        config = study.study_config()
        for name in sweep:
            spec = ex.experiment_spec(config["defaults"], config["experiments"][name], name)
            assert spec["augmentation"]["source"] == "ddim"
        assert cp.augmentation_wiring("ptx_ddim_misclassified")["choose"] == sweep
        assert cp.augmentation_wiring("ptx_ddim_misclassified")["choose_closeness"] == sweep
        # the strength chosen is a sweep experiment's settings: its training is taken
        twins = cp.augmentation_wiring("ptx_ddim_misclassified")["twins"]
        assert twins == twins_of(sweep)
        assert config["groups"]["edit_sweep"]["splits"] == ["validation"]
        best = cp.augmentation_wiring("ptx_misclassified_best")["choose"]
        head = ["ptx_aug_thesis_unbalanced", "ptx_ddim_unbalanced"]
        assert best == (head + sweep if env == "study" else head)
        closeness = cp.augmentation_wiring("ptx_misclassified_best")["choose_closeness"]
        assert closeness == (sweep if env == "study" else None)
        twins = cp.augmentation_wiring("ptx_misclassified_best")["twins"]  # its sources are
        assert twins == ({f"ddim + {k}": n for k, n in twins_of(sweep).items()}  # unbalanced
                         if env == "study" else None)  # fmt: skip
        assert not set(sweep) & set(config["headline"]["experiments"])
        for name in ("ptx_misclassified_best", "ptx_ddim_misclassified"):  # every option parses
            ex.experiment_spec(config["defaults"], config["experiments"][name], name)


def test_an_edit_strength_is_a_number_in_0_1_for_a_generator():
    from cxr_augment.classify import experiments as ex

    ddim = {"source": "ddim", "strategy": "misclassified", "seed": 1}
    for bad in (1.5, -0.1, "half", True):
        with pytest.raises(ValueError, match=r"experiment x: augmentation.strength must be"):
            ex.experiment_spec(DEFAULTS, {"augmentation": {**ddim, "strength": bad}}, "x")
    ex.experiment_spec(DEFAULTS, {"augmentation": {**ddim, "strength": 0}}, "x")
    trad = {"methods": ["noise"], "strategy": "misclassified", "seed": 1}
    with pytest.raises(ValueError, match="augmentation.strength is a generator's setting"):
        ex.experiment_spec(DEFAULTS, {"augmentation": {**trad, "strength": 0.5}}, "x")
    # a chained choice may bring the strength to the transforms' option: it is ignored there
    rules = [
        {"options": {"t": {"experiment": "a", "set": {"source": "transforms", "methods": ["noise"]}},
                     "d": {"experiment": "b", "set": {"source": "ddim"}}}},
        {"options": {"s": {"experiment": "c", "set": {"strength": 0.25}}}},
    ]  # fmt: skip
    aug = {"strategy": "misclassified", "seed": 1, "choose": rules}
    ex.experiment_spec(DEFAULTS, {"augmentation": aug}, "x")


def test_each_node_reads_the_generation_settings_it_uses(parameters):
    """A table's or figure's setting reaches only the tables and figures; a sampler's only its
    generator's set and what is made from it, not a model's training (each setting, or one
    generator's entry, is its own parameter input)."""
    from cxr_augment.pipelines.generation import nodes as gn
    from cxr_augment.pipelines.generation import pipeline as gp

    gen = parameters["generation"]
    assert gp.settings(gen, ("train",)) == {"train": "params:generation.train"}
    assert set(gp.settings(gen, gp.TRAIN)) == set(gp.TRAIN) & set(gen)
    assert gp.settings(gen, ("generators.ddim", "generators.absent", "absent")) == {
        "generators__ddim": "params:generation.generators.ddim"
    }
    with pytest.raises(ValueError, match="generation.store: a setting may not be named like"):
        gp.settings({"store": 1}, ("store",), data=("store",))
    # the node rebuilds the block's shape
    assert gn.nested({"generators__ddim": 1, "metrics": 2}) == {
        "generators": {"ddim": 1},
        "metrics": 2,
    }
    pipe = _with_features(build(gen), gen, "feat.seed1.model")
    p = "params:generation"
    for node in pipe.nodes:
        params = {i for i in node.inputs if i.startswith(p)}
        short = node.name.split(".")[-1]
        if short.startswith("train_"):
            assert params == {f"{p}.{k}" for k in gp.TRAIN}, node.name
        elif short in ("figure23", "memorisation_figure") or short.startswith("report_"):
            assert params <= {p}, node.name  # the block, or nothing
        elif short.startswith(("sample_", "evaluate_")) or short == "reference_set":
            g = short.split("_", 1)[1]
            if short.startswith("evaluate_") or short == "reference_set":
                want = {f"{p}.{k}" for k in gp.METRICS}
            elif g == "traditional":
                want = {f"{p}.{k}" for k in gp.TRADITIONAL}
            else:  # its own generator's entry, no other generator's
                want = {
                    f"{p}.{k}" for k in (gp.stable(g) if g.startswith("sd_") else gp.sampled(g))
                }
            assert params == want, node.name
        elif short == "sampler_sweep":
            assert params == {f"{p}.{k}" for k in gp.SWEEP}, node.name
        else:
            assert not params or params == {f"{p}.{k}" for k in gp.ROWS}, node.name


def test_an_augmented_set_reads_only_its_generators_settings():
    from cxr_augment.pipelines.classification.pipeline import experiment_pipeline

    pipe = experiment_pipeline("d", {"generators": {"ddim": "grey"}})
    (node,) = [n for n in pipe.nodes if n.name.endswith("generate_images")]
    params = {i for i in node.inputs if i.startswith("params:generation")}
    assert params == {
        "params:generation.device",
        "params:generation.sampling",
        "params:generation.edit",  # the misclassified strategy's edits
        "params:generation.generators.ddim",
    }
