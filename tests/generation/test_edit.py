"""Image-conditioned generation (SDEdit): the misclassified strategy's images from a generator."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from cxr_augment.generation.sampling import (
    SamplerConfig,
    batch_seed,
    edit_batch,
    edit_start,
    make_scheduler,
)
from cxr_augment.generation.sets import edited_set, to_store_shape
from cxr_augment.generation.training import to_model_size
from cxr_augment.preprocess.tensor_store import TensorStore, write_store
from tests.generation.test_diffusion import SCHEDULE, tiny_model


def parents(n: int = 4, seed: int = 0) -> np.ndarray:
    """Smooth 16 x 16 images, each of its own layout (a bright square somewhere)."""
    rng = np.random.default_rng(seed)
    x = np.full((n, 16, 16), 40, np.uint8)
    for i in range(n):
        r, c = rng.integers(0, 9, 2)
        x[i, r : r + 7, c : c + 7] = 220
    return x


@pytest.mark.parametrize(
    "sampler, strength, start",
    [
        (SamplerConfig("ddim", 25), 0.5, 13),  # int(12.5) = 12 steps taken, the last 12
        (SamplerConfig("ddim", 25), 1.0, 0),
        (SamplerConfig("ddim", 25), 0.0, 25),
        (SamplerConfig("dpmsolver++", 10), 0.35, 7),
        (SamplerConfig("ddpm", None), 0.25, 150),  # of T = 200
    ],
)
def test_an_edit_enters_the_schedule_where_diffusers_image_to_image_does(sampler, strength, start):
    """diffusers' img2img ``get_timesteps``: init = min(int(steps * strength), steps),
    t_start = steps - init."""
    scheduler = make_scheduler(sampler, SCHEDULE)
    steps = len(scheduler.timesteps)
    assert edit_start(scheduler, strength) == start
    assert start == steps - min(int(steps * strength), steps)
    with pytest.raises(ValueError, match="strength"):
        edit_start(scheduler, 1.5)


@pytest.mark.parametrize("scheduler, steps", [("ddim", 10), ("dpmsolver++", 10), ("ddpm", None)])
def test_the_first_step_sees_the_parent_noised_by_the_forward_process(scheduler, steps):
    """The UNet's first input is sqrt(abar_t) x0 + sqrt(1 - abar_t) eps at the edit's first
    timestep, eps the edit's seeded noise: computed here from the schedule's betas alone."""
    model = tiny_model(False)
    unet = model.unet_for(1)[0]
    seen = []
    hook = unet.register_forward_hook(lambda m, i, o: seen.append((i[0].clone(), i[1].clone())))
    sampler = SamplerConfig(scheduler, steps, batch_size=4, cpu_chunk=None)
    x = parents(3)
    edit_batch(model, x, 1, sampler, 0.4, seed=5, batch=2)
    hook.remove()
    s = make_scheduler(sampler, SCHEDULE)
    n = len(s.timesteps)
    assert len(seen) == int(0.4 * n)  # one forward per remaining step
    t = int(s.timesteps[n - int(0.4 * n)])
    assert torch.all(seen[0][1] == t)
    betas = torch.linspace(SCHEDULE.beta_start, SCHEDULE.beta_end, SCHEDULE.num_train_timesteps,
                           dtype=torch.float64)  # fmt: skip
    abar = torch.cumprod(1 - betas, 0)[t]
    g = torch.Generator().manual_seed(batch_seed(5, 1, 2, salt=1))
    eps = torch.randn((3, 1, 16, 16), generator=g).double()
    x0 = torch.from_numpy(x).double()[:, None] / 127.5 - 1
    want = abar.sqrt() * x0 + (1 - abar).sqrt() * eps
    assert torch.allclose(seen[0][0].double(), want, atol=1e-5)


def test_a_weak_edit_stays_near_its_parent_and_a_strong_one_does_not():
    model = tiny_model(False)
    x = parents(4)
    sampler = SamplerConfig("ddim", 25, batch_size=4)
    weak = edit_batch(model, x, 1, sampler, 0.04, seed=1).astype(float)  # one step of 25
    strong = edit_batch(model, x, 1, sampler, 1.0, seed=1).astype(float)
    own = np.abs(weak - x).mean(axis=(1, 2))
    other = np.abs(weak - np.roll(x, 1, axis=0)).mean(axis=(1, 2))
    assert (own < 12).all() and (own < other / 3).all(), (own, other)
    assert (np.abs(strong - x).mean(axis=(1, 2)) > 3 * own).all()
    # strength 0 redraws nothing: the parents come back
    assert np.array_equal(edit_batch(model, x, 1, sampler, 0.0, seed=1), x)


def test_edits_are_reproducible_and_each_copy_its_own():
    model = tiny_model(True)
    sampler = SamplerConfig("dpmsolver++", 6, batch_size=4, guidance=2.0)
    x = np.repeat(parents(1), 3, axis=0)  # one parent, three copies in a batch
    a = edit_batch(model, x, 0, sampler, 0.5, seed=3)
    assert a.dtype == np.uint8 and a.shape == (3, 16, 16)
    assert np.array_equal(a, edit_batch(model, x, 0, sampler, 0.5, seed=3))
    assert not np.array_equal(a, edit_batch(model, x, 0, sampler, 0.5, seed=4))
    assert not np.array_equal(a[0], a[1]) and not np.array_equal(a[1], a[2])
    with pytest.raises(ValueError, match="model's size"):
        edit_batch(model, np.zeros((2, 8, 8), np.uint8), 0, sampler, 0.5, seed=3)


def test_edited_set_makes_each_selected_images_copies_from_it(tmp_path):
    """One row per copy, named by parent and copy, of the parent's patient and view; the
    stored image is the parent (from the real store, at the model's size) edited, then brought
    to the classifier's size; batches are per class."""
    rng = np.random.default_rng(0)
    real = rng.integers(0, 255, (6, 20, 18), dtype=np.uint8)
    keys = [f"img{i}" for i in range(6)]
    from cxr_augment.preprocess.tensor_store import StoreWrite

    write_store(tmp_path / "real", StoreWrite(keys, lambda i: real[i], (20, 18), "real"))
    store = TensorStore(tmp_path / "real")
    train = pd.DataFrame(
        {
            "key": keys,
            "patient_id": [f"p{i // 2}" for i in range(6)],
            "view": "frontal",
            "target": [1.0, 0.0, 1.0, 0.0, 0.0, 1.0],
        }  # fmt: skip
    )
    selection = pd.DataFrame(
        {
            "key": ["img0", "img1", "img2", "img4"],
            "target": [1.0, 0.0, 1.0, 0.0],
            "copies": [3, 1, 2, 0],
        }  # fmt: skip
    )
    model = tiny_model(False)
    sampler = SamplerConfig("ddim", 4, batch_size=2)
    job, manifest = edited_set(
        model, selection, train, store, sampler, 0.5, 9, "generated/x", "ddim", "grey"
    )
    write_store(tmp_path / "gen", job)
    out = TensorStore(tmp_path / "gen")
    assert len(out) == 6 and out.shape == (20, 18)
    assert manifest["parent_key"].tolist() == ["img1", "img0", "img0", "img0", "img2", "img2"]
    assert manifest["copy"].tolist() == [0, 0, 1, 2, 0, 1]
    assert manifest["key"].iloc[3] == "generated/x/img0#2"
    assert manifest["patient_id"].tolist() == ["p0", "p0", "p0", "p0", "p1", "p1"]
    assert (manifest["target"] == [0.0, 1.0, 1.0, 1.0, 1.0, 1.0]).all()
    assert manifest["batch"].tolist() == [0, 0, 0, 1, 1, 2]
    assert set(manifest["strength"]) == {0.5} and set(manifest["origin"]) == {"diffusion"}
    # class 1's batch 1 holds img0#2 and img2#0: edit them directly
    batch = np.stack([to_model_size(real[0], 16), to_model_size(real[2], 16)])
    direct = edit_batch(model, batch, 1, sampler, 0.5, 9, 1)
    assert np.array_equal(out.get("generated/x/img2#0"), to_store_shape(direct[1], (20, 18)))
    again, _ = edited_set(
        model, selection, train, store, sampler, 0.5, 9, "generated/x", "ddim", "grey"
    )
    assert again.fingerprint == job.fingerprint
    other, _ = edited_set(
        model, selection, train, store, sampler, 0.6, 9, "generated/x", "ddim", "grey"
    )
    assert other.fingerprint != job.fingerprint
    bad = pd.DataFrame({"key": ["elsewhere"], "target": [1.0], "copies": [1]})
    with pytest.raises(ValueError, match="elsewhere"):
        edited_set(model, bad, train, store, sampler, 0.5, 9, "g", "ddim")


def test_the_misclassified_strategy_edits_by_default_and_draws_when_asked():
    from cxr_augment.classify.experiments import generator_images

    assert generator_images({"strategy": "misclassified"}) == "edit"
    assert generator_images({"strategy": "unbalanced"}) == "draw"
    assert generator_images({"strategy": "misclassified", "images": "draw"}) == "draw"
    assert generator_images({"strategy": "balanced", "images": "edit"}) == "edit"
    with pytest.raises(ValueError, match="augmentation.images"):
        generator_images({"strategy": "balanced", "images": "paint"})
