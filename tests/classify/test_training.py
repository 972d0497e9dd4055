"""Training: learning, masked targets, and resume after a kill to the same weights (CPU)."""

import os

import numpy as np
import pytest
import torch

from cxr_augment.classify.models import ModelConfig, build_model
from cxr_augment.classify.training import CheckpointStore, TrainConfig, predict, train
from cxr_augment.preprocess.tensor_store import StoreWrite, TensorStore, torch_dataset, write_store


def make_store(folder, n=96, seed=0):
    """Images whose label is a bright square in the top-left quadrant."""
    rng = np.random.default_rng(seed)
    y = (np.arange(n) % 3 == 0).astype(float)
    images = rng.integers(0, 80, (n, 32, 24)).astype(np.uint8)
    images[y == 1, 4:12, 4:10] += 120
    keys = [f"img/{i:03d}.png" for i in range(n)]
    write_store(folder, StoreWrite(keys, lambda i: images[i], (32, 24), "t"))
    return TensorStore(folder), keys, y


CONFIG = dict(epochs=4, batch_size=16, lr=3e-3, patience=10, seed=5, progress=False)


def _run(store, keys, y, checkpoints=None, stop=None, **changes):
    torch.manual_seed(5)
    model = build_model(ModelConfig("tiny_densenet", drop_rate=0.1))
    cfg = TrainConfig(**{**CONFIG, **changes})
    tr = torch_dataset(store, keys[:64], y[:64])
    va = torch_dataset(store, keys[64:], y[64:])
    return train(
        model,
        tr,
        va,
        y[64:],
        cfg,
        checkpoints=checkpoints,
        stop_after_epoch=stop,
        train_targets=y[:64],
    )


def test_training_learns_a_visible_signal(tmp_path):
    store, keys, y = make_store(tmp_path / "s")
    result = _run(store, keys, y)
    assert result.best_val_auc > 0.9
    assert list(result.history.columns) == ["epoch", "train_loss", "val_auc", "best"]
    assert result.history["train_loss"].iloc[-1] < result.history["train_loss"].iloc[0]


def test_same_seed_same_weights(tmp_path):
    store, keys, y = make_store(tmp_path / "s")
    a, b = _run(store, keys, y, epochs=2), _run(store, keys, y, epochs=2)
    for k in a.state_dict:
        torch.testing.assert_close(a.state_dict[k], b.state_dict[k], rtol=0, atol=0)


def test_masked_targets_and_weighted_loss_train(tmp_path):
    store, keys, y = make_store(tmp_path / "s")
    y_masked = y.copy()
    y_masked[::5] = np.nan
    res = _run(store, keys, y_masked, loss="weighted_bce", epochs=2)
    assert res.meta["pos_weight"] == pytest.approx(
        np.sum(y_masked[:64] == 0) / np.sum(y_masked[:64] == 1)
    )
    assert np.isfinite(res.history["train_loss"]).all()


def test_resume_in_process_equals_uninterrupted(tmp_path):
    store, keys, y = make_store(tmp_path / "s")
    full = _run(store, keys, y)
    ckpt = CheckpointStore(tmp_path / "ck")
    _run(store, keys, y, checkpoints=ckpt, stop=1)  # "killed" after epoch 2 of 4
    resumed = _run(store, keys, y, checkpoints=ckpt)
    assert resumed.resumed_from == 1
    assert resumed.history["val_auc"].tolist() == full.history["val_auc"].tolist()
    for k in full.state_dict:
        torch.testing.assert_close(resumed.state_dict[k], full.state_dict[k], rtol=0, atol=0)


def test_a_killed_training_process_resumes_to_the_same_weights(tmp_path):
    store, keys, y = make_store(tmp_path / "s")
    full = _run(store, keys, y, epochs=5)
    ckpt_dir = tmp_path / "ck"
    child = f"""
        import sys, numpy as np
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from test_training import _run, make_store
        from cxr_augment.preprocess.tensor_store import TensorStore
        store = TensorStore({str(tmp_path / "s")!r})
        y = (np.arange(96) % 3 == 0).astype(float)
        keys = [f"img/{{i:03d}}.png" for i in range(96)]
        _run(store, keys, y, checkpoints=CheckpointStore({str(ckpt_dir)!r}), epochs=5)
    """
    # imported here: the children import this module by its own name, without tests/
    from tests.kill_mid_save import kill_mid_save

    kill_mid_save(child, ckpt_dir, "epoch_0002")
    done = sorted(p.name for p in ckpt_dir.glob("epoch_*.pt"))
    assert done and done[-1] == "epoch_0001.pt", done
    assert len(list(ckpt_dir.glob(".epoch_0002.partial-*"))) == 1  # the save cut short
    resumed = _run(store, keys, y, checkpoints=CheckpointStore(ckpt_dir), epochs=5)
    # a save cut short by the kill leaves nothing (its partial file is removed on resume)
    assert not [p.name for p in ckpt_dir.iterdir() if p.name.startswith(".")]
    assert resumed.resumed_from is not None and resumed.resumed_from < 4
    for k in full.state_dict:
        torch.testing.assert_close(resumed.state_dict[k], full.state_dict[k], rtol=0, atol=0)


def test_checkpoints_of_another_run_are_not_resumed(tmp_path):
    store, keys, y = make_store(tmp_path / "s")
    ckpt = CheckpointStore(tmp_path / "ck")
    _run(store, keys, y, checkpoints=ckpt, stop=1)
    other = _run(store, keys, y, checkpoints=ckpt, lr=1e-3, epochs=2)
    assert other.resumed_from is None


def test_predict_returns_one_probability_per_image(tmp_path):
    store, keys, y = make_store(tmp_path / "s")
    res = _run(store, keys, y, epochs=2)
    model = build_model(ModelConfig("tiny_densenet", drop_rate=0.1))
    model.load_state_dict(res.state_dict)
    dataset = torch_dataset(store, keys, None)
    # float32 on the CPU (bf16_cpu false, the default; no CUDA autocast): the reference is
    # the model's own output, in eval mode (dropout 0.1 and batch norm would differ in train)
    config = TrainConfig(**{**CONFIG, "device": "cpu", "bf16_cpu": False})
    p = predict(model, dataset, config)
    assert p.shape == (96,) and p.dtype == np.float32 and ((p >= 0) & (p <= 1)).all()
    model.train()  # predict must put it in eval mode itself
    x = torch.stack([dataset[i] for i in range(len(dataset))])
    assert x.shape == (96, 1, 32, 24)
    model.eval()
    with torch.no_grad():
        expected = torch.sigmoid(model(x)[:, 0]).numpy()
    np.testing.assert_allclose(p, expected, rtol=1e-5, atol=1e-7)
    assert np.ptp(p) > 0  # one probability per image, not one constant


# --- multi-label heads (CheXNet): per-element masks, per-output weights, the watched output


def test_a_masked_element_drops_out_of_the_loss_not_its_image():
    from cxr_augment.classify.training import _loss_fn

    logits = torch.tensor([[2.0, -1.0, 0.5], [0.3, 1.5, -2.0]], requires_grad=True)
    y = torch.tensor([[1.0, float("nan"), 0.0], [0.0, 1.0, float("nan")]])
    loss = _loss_fn(TrainConfig(), None)(logits, y)
    keep = ~torch.isnan(y)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits[keep], y[keep])
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert (logits.grad[~keep] == 0).all() and (logits.grad[keep] != 0).all()


def test_weighted_bce_weights_each_output_by_its_own_ratio(tmp_path):
    from cxr_augment.classify.training import _loss_fn

    store, keys, y = make_store(tmp_path / "s")
    targets = np.stack([y, 1 - y, np.where(np.arange(96) % 4 == 0, np.nan, y)], axis=1)
    torch.manual_seed(5)
    model = build_model(ModelConfig("tiny_densenet", outputs=3))
    res = train(
        model,
        torch_dataset(store, keys[:64], targets[:64]),
        torch_dataset(store, keys[64:], y[64:]),
        y[64:],
        TrainConfig(**{**CONFIG, "epochs": 1, "loss": "weighted_bce"}),
        train_targets=targets[:64],
    )
    t = targets[:64]
    expected = [np.sum(t[:, j] == 0) / np.sum(t[:, j] == 1) for j in range(3)]
    assert res.meta["pos_weight"] == pytest.approx(expected)
    assert expected[0] != pytest.approx(expected[1])
    # each column's positives carry that column's weight
    logits = torch.zeros(2, 3)
    yy = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    loss = _loss_fn(TrainConfig(loss="weighted_bce"), expected)(logits, yy)
    per = np.log(2.0) * np.array(expected + [1.0, 1.0, 1.0])
    assert float(loss) == pytest.approx(per.mean(), rel=1e-5)


def test_early_stopping_watches_the_given_output(tmp_path):
    """Output 0 learns the opposite of the truth, output 1 the truth: watching output 1 must
    see a high validation AUC, and its best weights must be the ones returned."""
    from cxr_augment.classify.metrics import roc_auc

    store, keys, y = make_store(tmp_path / "s")
    targets = np.stack([1 - y, y], axis=1)
    torch.manual_seed(5)
    model = build_model(ModelConfig("tiny_densenet", outputs=2))
    cfg = TrainConfig(**CONFIG)
    val = torch_dataset(store, keys[64:], y[64:])
    res = train(
        model,
        torch_dataset(store, keys[:64], targets[:64]),
        val,
        y[64:],
        cfg,
        train_targets=targets[:64],
        column=1,
    )
    assert res.best_val_auc > 0.9
    best = build_model(ModelConfig("tiny_densenet", outputs=2))
    best.load_state_dict(res.state_dict)
    both = predict(best, val, cfg, column=None)
    assert both.shape == (32, 2)
    assert roc_auc(y[64:], both[:, 1]) == pytest.approx(res.best_val_auc)
    assert roc_auc(y[64:], both[:, 0]) < 0.2  # what watching output 0 would have seen
    np.testing.assert_allclose(predict(best, val, cfg, column=1), both[:, 1], rtol=1e-6)


def test_the_watched_output_is_part_of_the_run_fingerprint(tmp_path):
    store, keys, y = make_store(tmp_path / "s")
    targets = np.stack([y, y], axis=1)
    ckpt = CheckpointStore(tmp_path / "ck")

    def run(column, stop=None):
        torch.manual_seed(5)
        return train(
            build_model(ModelConfig("tiny_densenet", outputs=2)),
            torch_dataset(store, keys[:64], targets[:64]),
            torch_dataset(store, keys[64:], y[64:]),
            y[64:],
            TrainConfig(**{**CONFIG, "epochs": 2}),
            checkpoints=ckpt,
            stop_after_epoch=stop,
            column=column,
        )

    run(1, stop=0)
    assert run(0).resumed_from is None  # another output watched: not the same run
    run(1, stop=0)
    assert run(1).resumed_from == 0


# --- the chexpert environment: the thesis's training settings over conf/base


def test_the_chexpert_environment_sets_the_thesis_training_and_keeps_the_study():
    from pathlib import Path

    from cxr_augment.study import _load

    conf = str(Path(__file__).resolve().parents[2] / "conf")
    base, chexpert = _load(conf, "base")["study"], _load(conf, "chexpert")
    study = chexpert["study"]
    train_defaults = study["defaults"]["train"]
    assert train_defaults["lr"] == 0.001  # thesis 4.2
    assert train_defaults["batch_size"] == 16  # thesis 4.2
    assert train_defaults["epochs"] == 3 and train_defaults["patience"] == 3
    assert chexpert["preprocessing"]["images"]["size"] == [389, 320]  # thesis 4.3
    # a nested overlay: the rest of the study is base's, untouched
    assert study["experiments"] == base["experiments"]
    assert study["groups"] == base["groups"]
    kept = {k: v for k, v in base["defaults"]["train"].items() if k not in ("epochs", "patience")}
    for key in set(kept) - {"lr", "batch_size"}:
        assert train_defaults[key] == kept[key], key
    assert study["defaults"]["model"] == base["defaults"]["model"]
    # the per-model rows of thesis 4.2 stay on top of the new defaults
    inception = study["experiments"]["ptx_inception_resnet_v2"]["train"]
    assert (inception["lr"], inception["batch_size"]) == (0.01, 4)


def _is_channels_last(state: dict) -> bool:
    convs = [v for v in state.values() if v.ndim == 4 and v.shape[2] * v.shape[3] > 1]
    assert convs
    return all(v.is_contiguous(memory_format=torch.channels_last) for v in convs)


def test_channels_last_on_a_cpu_follows_the_setting_and_bf16(monkeypatch):
    from cxr_augment import cpu
    from cxr_augment.classify.training import use_channels_last

    cpu_dev, cuda_dev = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setattr(cpu, "native_bf16", lambda: False)
    assert use_channels_last(cpu_dev, TrainConfig(bf16_cpu="auto")) is True  # float32 here
    assert use_channels_last(cpu_dev, TrainConfig(bf16_cpu=True)) is False  # bf16 autocast
    assert use_channels_last(cpu_dev, TrainConfig(channels_last_cpu=False)) is False
    assert use_channels_last(cpu_dev, TrainConfig(bf16_cpu=True, channels_last_cpu=True)) is True
    monkeypatch.setattr(cpu, "native_bf16", lambda: True)
    assert use_channels_last(cpu_dev, TrainConfig(bf16_cpu="auto")) is False
    assert use_channels_last(cpu_dev, TrainConfig(bf16_cpu=False)) is True
    # CUDA reads its own setting
    assert use_channels_last(cuda_dev, TrainConfig(channels_last=True, channels_last_cpu=False))
    assert not use_channels_last(cuda_dev, TrainConfig(channels_last=False))
    with pytest.raises(ValueError, match="channels_last_cpu must be auto, true or false"):
        TrainConfig(channels_last_cpu="yes")


def test_channels_last_training_is_reproducible_resumable_and_matches_contiguous(tmp_path):
    store, keys, y = make_store(tmp_path / "s")
    on = _run(store, keys, y, epochs=3, channels_last_cpu=True)
    again = _run(store, keys, y, epochs=3, channels_last_cpu=True)
    off = _run(store, keys, y, epochs=3, channels_last_cpu=False)
    assert _is_channels_last(on.state_dict) and not _is_channels_last(off.state_dict)
    for k in on.state_dict:  # same seed, same bytes
        torch.testing.assert_close(on.state_dict[k], again.state_dict[k], rtol=0, atol=0)
    # the memory format changes the kernels' summation order (small drifts), not the training
    np.testing.assert_allclose(on.history["train_loss"], off.history["train_loss"], rtol=0.02)
    ckpt = CheckpointStore(tmp_path / "ck")
    _run(store, keys, y, epochs=3, checkpoints=ckpt, stop=0, channels_last_cpu=True)
    resumed = _run(store, keys, y, epochs=3, checkpoints=ckpt, channels_last_cpu=True)
    assert resumed.resumed_from == 0
    for k in on.state_dict:
        torch.testing.assert_close(resumed.state_dict[k], on.state_dict[k], rtol=0, atol=0)
    # predictions agree across memory formats
    model = build_model(ModelConfig("tiny_densenet", drop_rate=0.1))
    model.load_state_dict(on.state_dict)
    va = torch_dataset(store, keys[64:], y[64:])
    p_on = predict(model, va, TrainConfig(**{**CONFIG, "channels_last_cpu": True}))
    p_off = predict(model, va, TrainConfig(**{**CONFIG, "channels_last_cpu": False}))
    np.testing.assert_allclose(p_on, p_off, atol=1e-5)
