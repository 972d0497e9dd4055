"""Training: learning, masked targets, and resume after a kill to the same weights (CPU)."""

import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from cxr_augment.models import ModelConfig, build_model
from cxr_augment.tensor_store import StoreWrite, TensorStore, torch_dataset, write_store
from cxr_augment.training import CheckpointStore, TrainConfig, predict, train


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
    script = textwrap.dedent(f"""
        import sys, numpy as np
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from test_training import _run, make_store
        from cxr_augment.training import CheckpointStore
        from cxr_augment.tensor_store import TensorStore
        store = TensorStore({str(tmp_path / "s")!r})
        y = (np.arange(96) % 3 == 0).astype(float)
        keys = [f"img/{{i:03d}}.png" for i in range(96)]
        _run(store, keys, y, checkpoints=CheckpointStore({str(ckpt_dir)!r}), epochs=5)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.time() + 120
    while time.time() < deadline and not (ckpt_dir / "epoch_0001.pt").exists():
        time.sleep(0.05)
    proc.kill()  # SIGKILL: no chance to clean up
    proc.wait()
    done = sorted(p.name for p in ckpt_dir.glob("epoch_*.pt"))
    assert done and done[-1] < "epoch_0004.pt", "the run was killed before it finished"
    resumed = _run(store, keys, y, checkpoints=CheckpointStore(ckpt_dir), epochs=5)
    assert not list(ckpt_dir.glob(".tmp-*"))  # a save cut short by the kill leaves nothing
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
    p = predict(model, torch_dataset(store, keys, None), TrainConfig(**CONFIG))
    assert p.shape == (96,) and ((p >= 0) & (p <= 1)).all()
