"""CheXNet: a 14-output multi-label DenseNet-121 trained on all CheXpert observations, early
stopping and predictions at the experiment's observation, U-SelfTrained per observation."""

import numpy as np
import pandas as pd
import pytest
import torch

from cxr_augment.classify import experiments as ex
from cxr_augment.classify.metrics import roc_auc
from cxr_augment.classify.models import ModelConfig, build_model
from cxr_augment.classify.training import TrainConfig, predict
from cxr_augment.preprocess.chexpert import OBSERVATIONS
from cxr_augment.preprocess.tensor_store import StoreWrite, TensorStore, torch_dataset, write_store

PTX, PE = OBSERVATIONS.index("Pneumothorax"), OBSERVATIONS.index("Pleural Effusion")
DEFAULTS = {
    "observation": "Pneumothorax",
    "policy": "nm0_uones",
    "view": "combined",
    "mask": "none",
    "model": {"name": "densenet121", "outputs": 1, "drop_rate": 0.0, "pretrained_path": None},
    "train": {
        "epochs": 3,
        "batch_size": 16,
        "lr": 0.003,
        "loss": "bce",
        "patience": 3,
        "seed": 1,
        "device": "cpu",
        "num_workers": 0,
        "progress": False,
    },
    "evaluate": {"bootstrap": 10, "seed": 2},
}


def tiny_14(**changes) -> dict:
    """The defaults with a 14-output tiny DenseNet (CheXNet's head on a network tests can run)."""
    return ex.merge(
        {**DEFAULTS, "model": {**DEFAULTS["model"], "name": "tiny_densenet", "outputs": 14}},
        changes,
    )


def synthetic(tmp_path, n=160, seed=0):
    """Pneumothorax is a visible bright square; "No Finding" is its opposite; the other
    observations are noise with uncertain (-1) and not-mentioned (NaN) labels."""
    rng = np.random.default_rng(seed)
    truth = (np.arange(n) % 3 == 0).astype(float)
    images = rng.integers(0, 80, (n, 32, 24)).astype(np.uint8)
    images[truth == 1, 4:12, 4:10] += 120
    keys = [f"CheXpert-v1.0-small/train/patient{i:05d}/study1/view1_frontal.jpg" for i in range(n)]
    write_store(tmp_path / "store", StoreWrite(keys, lambda i: images[i], (32, 24), "syn"))
    split = np.array(["train"] * 96 + ["validation"] * 32 + ["test"] * 32)
    manifest = pd.DataFrame(
        {
            "key": keys,
            "patient_id": np.arange(n),
            "split": split,
            "view": "frontal",
            "store_row": np.arange(n),
        }
    )
    for obs in OBSERVATIONS:
        manifest[obs] = rng.choice([1.0, 0.0, -1.0, np.nan], n, p=[0.2, 0.4, 0.1, 0.3])
    ptx = truth.copy()
    ptx[(split == "train") & (rng.random(n) < 0.15)] = -1.0  # some uncertain training labels
    manifest["Pneumothorax"] = ptx
    manifest["No Finding"] = 1.0 - truth
    return manifest, TensorStore(tmp_path / "store"), truth


def test_chexnet_is_the_14_output_densenet121():
    config = ModelConfig("chexnet")
    assert config.outputs == 14 and config.drop_rate == 0.0
    model = build_model(config)
    assert model.features.conv0.in_channels == 1 and len(model.features.denseblock3) == 24
    assert model.classifier.weight.shape == (14, 1024)
    with pytest.raises(ValueError, match="chexnet has 14 outputs"):
        ModelConfig("chexnet", outputs=1)


def test_the_study_chexnet_entries_are_14_output_models(parameters):
    study = parameters["study"]
    for name, column in (("ptx_chexnet", PTX), ("pe_chexnet", PE)):
        spec = ex.experiment_spec(study["defaults"], study["experiments"][name], name)
        assert spec["model"]["outputs"] == 14
        assert ex.observation_column(spec) == column
    base = ex.experiment_spec(study["defaults"], study["experiments"]["pe_densenet121"], "b")
    assert base["model"]["outputs"] == 1 and ex.observation_column(base) == 0


def test_experiment_spec_rules_for_a_14_output_model():
    with pytest.raises(ValueError, match="experiment x: model: chexnet has 14 outputs"):
        ex.experiment_spec(DEFAULTS, {"model": {"name": "chexnet", "outputs": 1}}, "x")
    with pytest.raises(ValueError, match="NM-Ignore"):
        ex.experiment_spec(tiny_14(), {"policy": "nmignore_uself_trained"}, "x")
    with pytest.raises(ValueError, match="model.outputs: 3"):
        ex.experiment_spec(
            tiny_14(), {"policy": "nm0_umulticlass", "train": {"loss": "multiclass"}}, "x"
        )


def test_targets_cover_all_14_observations_under_the_policy():
    raw = pd.DataFrame({o: [1.0, 0.0, -1.0, np.nan] for o in OBSERVATIONS})
    raw["Pneumothorax"] = [np.nan, -1.0, 1.0, 0.0]
    expected = {
        "nm0_uones": ([1, 0, 1, 0], [0, 1, 1, 0]),
        "nm0_uignore": ([1, 0, np.nan, 0], [0, np.nan, 1, 0]),
        "nmignore_uzeros": ([1, 0, 0, np.nan], [np.nan, 0, 1, 0]),
        "nm0_uself_trained": ([1, 0, np.nan, 0], [0, np.nan, 1, 0]),
    }
    for policy, (other, ptx) in expected.items():
        t = ex._targets(raw, tiny_14(policy=policy))
        assert t.shape == (4, 14)
        np.testing.assert_array_equal(t[:, 0], other)  # NaN stays NaN (masked), not 0
        np.testing.assert_array_equal(t[:, PTX], ptx)


def test_self_trained_relabels_each_uncertain_label_with_its_own_output(tmp_path):
    manifest, store, _ = synthetic(tmp_path)
    spec = ex.experiment_spec(tiny_14(), {"policy": "nm0_uself_trained"}, "st")
    rows = ex.experiment_manifest(manifest, spec)
    rows = rows[rows["split"] == "train"]
    y = ex.target_matrix(rows)
    masked = np.isnan(y)
    assert masked.any() and not masked.all(axis=1).any()
    torch.manual_seed(0)
    model = build_model(ModelConfig("tiny_densenet", outputs=14))
    config = TrainConfig(batch_size=16, device="cpu", progress=False)
    out = ex._self_trained_targets(model, store, rows, y, config, None)
    prob = predict(model, torch_dataset(store, rows["key"], None), config, column=None)
    assert out.shape == y.shape and not np.isnan(out).any()
    np.testing.assert_allclose(out[masked], prob[masked], rtol=1e-6)  # each its own output
    np.testing.assert_array_equal(out[~masked], y[~masked])  # the labels it had are kept
    assert np.isnan(y).sum() == masked.sum()  # the input is not changed in place


def test_a_14_output_model_watches_and_reads_out_the_experiments_observation(tmp_path):
    manifest, store, truth = synthetic(tmp_path)
    spec = ex.experiment_spec(tiny_14(), {"policy": "nm0_uself_trained"}, "ptx14")
    exp = ex.experiment_manifest(manifest, spec)
    state, history = ex.fit(exp, store, spec, {}, checkpoints=None)
    assert sorted(history["stage"].unique()) == [0, 1]  # U-SelfTrained: two stages
    # the validation AUC watched is Pneumothorax's (column 0, "No Finding", is its opposite)
    assert history.groupby("stage")["val_auc"].max().min() > 0.9
    pred = ex.predictions(exp, store, state, spec, {})
    test = pred[pred["split"] == "test"]
    assert roc_auc(test["y_true"], test["prob"]) > 0.9
    model = build_model(ModelConfig(**spec["model"]))
    model.load_state_dict(state)
    rows = exp[exp["split"] == "test"]
    every = predict(model, torch_dataset(store, rows["key"], None), ex.train_config(spec), None)
    np.testing.assert_allclose(test["prob"].to_numpy(), every[:, PTX], rtol=1e-6)
    assert roc_auc(truth[rows.index], every[:, 0]) < 0.1  # "No Finding" learned its opposite
