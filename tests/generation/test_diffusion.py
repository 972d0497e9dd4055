"""Diffusion models, training and sampling at tiny size on CPU."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from cxr_augment.classify.training import CheckpointStore
from cxr_augment.generation.models import (
    DiffusionModel,
    ScheduleConfig,
    UNetConfig,
    build_unet,
    null_class,
)
from cxr_augment.generation.sampling import (
    SamplerConfig,
    _predict,
    guided,
    sample_batch,
    sample_class,
)
from cxr_augment.generation.sets import generated_set
from cxr_augment.generation.training import DiffusionTrainConfig, ImageSet, train_unet
from cxr_augment.preprocess.tensor_store import TensorStore, write_store

TINY = UNetConfig(
    sample_size=16,
    layers_per_block=1,
    block_out_channels=(16, 32),
    down_block_types=("DownBlock2D", "AttnDownBlock2D"),
    up_block_types=("AttnUpBlock2D", "UpBlock2D"),
    norm_num_groups=8,
)
SCHEDULE = ScheduleConfig(num_train_timesteps=200, beta_end=0.1)  # reaches noise in 200
TRAIN = dict(batch_size=8, lr=2e-3, progress=False, checkpoint_every=3, seed=4, device="cpu")


class ArrayStore:
    """The part of a tensor store ``ImageSet`` reads: rows by index."""

    def __init__(self, images: np.ndarray) -> None:
        self.images = images

    def __getitem__(self, i: int) -> np.ndarray:
        return self.images[i]


def two_class_images(n: int = 48, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Class 1 is bright on the left half, class 0 on the right; 20 x 18, noisy."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    x = rng.integers(20, 60, (n, 20, 18)).astype(np.uint8)
    x[y == 1, :, :9] += 150
    x[y == 0, :, 9:] += 150
    return x, y


def tiny_model(conditional: bool, channels: str = "grey", seed: int = 0) -> DiffusionModel:
    torch.manual_seed(seed)
    if conditional:
        return DiffusionModel(
            {"all": build_unet(TINY, channels, 2)}, SCHEDULE, "class_conditional", channels
        )
    unets = {}
    for c in ("0", "1"):
        unets[c] = build_unet(TINY, channels)
    return DiffusionModel(unets, SCHEDULE, "per_class", channels)


def test_thesis_preset_is_the_thesis_unet(parameters):
    preset = parameters["generation"]["presets"]["thesis"]
    unet = build_unet(UNetConfig(**preset), "grey")
    c = unet.config
    assert (c.in_channels, c.out_channels, c.sample_size) == (1, 1, 256)
    assert tuple(c.block_out_channels) == (128, 128, 256, 256, 512, 512)
    assert c.layers_per_block == 2
    assert c.down_block_types[4] == "AttnDownBlock2D" and c.up_block_types[1] == "AttnUpBlock2D"
    assert sum(1 for t in c.down_block_types if t.startswith("Attn")) == 1
    # 113.7 M parameters, as diffusers' UNet2DModel with these settings (anchors.md)
    assert sum(p.numel() for p in unet.parameters()) / 1e6 == pytest.approx(113.7, abs=0.1)
    s = parameters["generation"]["schedule"]
    assert (s["beta_start"], s["beta_end"], s["num_train_timesteps"]) == (1e-4, 0.02, 1000)


def test_config_errors_name_the_problem():
    with pytest.raises(ValueError, match="divisible"):
        UNetConfig(
            sample_size=18,
            block_out_channels=(16, 32, 64),
            down_block_types=("DownBlock2D",) * 3,
            up_block_types=("UpBlock2D",) * 3,
            norm_num_groups=8,
        )
    with pytest.raises(ValueError, match="pure noise"):
        ScheduleConfig(num_train_timesteps=50)
    with pytest.raises(ValueError, match="prediction_type"):
        ScheduleConfig(prediction_type="x0")
    with pytest.raises(ValueError, match="all T"):
        SamplerConfig("ddpm", steps=10)


def test_grey_and_rgb_data_paths():
    x, _ = two_class_images(6)
    grey = ImageSet(ArrayStore(x), np.arange(6), 16, "grey")
    rgb = ImageSet(ArrayStore(x), np.arange(6), 16, "rgb")
    g, r = grey[0], rgb[0]
    assert g.shape == (1, 16, 16) and r.shape == (3, 16, 16)
    assert torch.equal(r[0], g[0]) and torch.equal(r[2], g[0])
    assert -1.0 <= float(g.min()) and float(g.max()) <= 1.0
    # the resize is area averaging of the stored image (cv2), to the model's square size
    import cv2

    ref = cv2.resize(x[0], (16, 16), interpolation=cv2.INTER_AREA).astype(np.float32) / 127.5 - 1
    np.testing.assert_allclose(g[0].numpy(), ref, atol=1e-6)


@pytest.mark.parametrize("prediction_type,snr_gamma", [("epsilon", None), ("v_prediction", 5.0)])
def test_loss_falls(prediction_type, snr_gamma):
    x, y = two_class_images(64)
    data = ImageSet(ArrayStore(x), np.arange(64), 16)
    torch.manual_seed(0)
    schedule = ScheduleConfig(prediction_type=prediction_type)
    cfg = DiffusionTrainConfig(**{**TRAIN, "epochs": 10, "lr": 3e-3}, snr_gamma=snr_gamma)
    _, history = train_unet(build_unet(TINY, "grey", 2), data, y, schedule, cfg)
    assert len(history) == cfg.total_steps(64) == 80
    first, last = history["loss"].head(10).mean(), history["loss"].tail(10).mean()
    assert last < 0.7 * first, (first, last)


def test_read_only_labels_train_without_a_warning():
    """The catalog may hand the labels as a read-only array: training copies them (a shared
    read-only buffer makes torch warn, once per process, of undefined behaviour)."""
    import warnings

    x, y = two_class_images(16)
    y = np.asarray(y, dtype=np.int64)
    y.setflags(write=False)
    data = ImageSet(ArrayStore(x), np.arange(16), 16)
    cfg = DiffusionTrainConfig(**{**TRAIN, "epochs": 1})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, history = train_unet(build_unet(TINY, "grey", 2), data, y, ScheduleConfig(), cfg)
    assert len(history) == cfg.total_steps(16)
    assert np.isfinite(history["loss"]).all()


def test_killed_run_resumes_to_the_same_weights(tmp_path):
    x, y = two_class_images(40)
    data = ImageSet(ArrayStore(x), np.arange(40), 16)
    cfg = DiffusionTrainConfig(**{**TRAIN, "epochs": 2, "grad_accumulation": 2, "batch_size": 4})

    def run(ck=None, stop=None):
        torch.manual_seed(4)
        return train_unet(
            build_unet(TINY, "grey", 2), data, y, SCHEDULE, cfg, ck, {"t": 1}, stop_after_step=stop
        )

    full, full_hist = run()
    ck = CheckpointStore(tmp_path / "ck", stem="step", digits=8)
    run(ck, stop=5)  # "killed" after the checkpoint of step 5
    assert sorted(p.name for p in (tmp_path / "ck").glob("step_*.pt"))[-1] == "step_00000005.pt"
    resumed, hist = run(ck)
    for (k, a), b in zip(full.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    assert hist["loss"].tolist() == full_hist["loss"].tolist()
    # no partial checkpoint left behind
    assert not [p.name for p in (tmp_path / "ck").iterdir() if p.name.startswith(".")]
    # a finished run is reused as it is (e.g. one trained by several processes)
    again, hist2 = run(ck)
    assert all(
        torch.equal(a, b)
        for a, b in zip(again.state_dict().values(), full.state_dict().values(), strict=True)
    )
    assert hist2["loss"].tolist() == full_hist["loss"].tolist()


def test_guidance_limits_are_the_conditional_and_unconditional_predictions():
    model = tiny_model(True)
    unet = model.unets["all"].eval()
    x = torch.randn(3, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([10, 20, 30])
    with torch.no_grad():
        cond = unet(x, t, class_labels=torch.ones(3, dtype=torch.long)).sample
        uncond = unet(x, t, class_labels=torch.full((3,), null_class(unet))).sample
        at1 = _predict(unet, x, t, 1, 1.0, null_class(unet))
        at0 = _predict(unet, x, t, 1, 0.0, null_class(unet))
        at3 = _predict(unet, x, t, 1, 3.0, null_class(unet))
    torch.testing.assert_close(at1, cond)
    torch.testing.assert_close(at0, uncond, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(at3, uncond + 3 * (cond - uncond), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(guided(cond, uncond, 1.0), cond)


@pytest.mark.parametrize(
    "sampler,calls",
    [
        (SamplerConfig("ddpm", None, batch_size=4), 200),
        (SamplerConfig("ddim", 7, eta=0.0, batch_size=4), 7),
        (SamplerConfig("ddim", 5, eta=1.0, batch_size=4), 5),
        (SamplerConfig("dpmsolver++", 6, batch_size=4, guidance=2.0), 6),
    ],
)
def test_each_sampler_takes_the_steps_asked_and_is_reproducible(sampler, calls):
    model = tiny_model(sampler.guidance != 1.0)
    unet = model.unet_for(1)[0]
    seen = []
    hook = unet.register_forward_hook(lambda m, i, o: seen.append(i[0].shape[0]))
    a = sample_class(model, 1, 4, sampler, seed=3)
    hook.remove()
    assert len(seen) == calls  # one forward per step (CFG: one over the doubled batch)
    assert seen[0] == (8 if sampler.guidance != 1.0 else 4)
    b = sample_class(model, 1, 4, sampler, seed=3)
    c = sample_class(model, 1, 4, sampler, seed=4)
    assert a.dtype == np.uint8 and a.shape == (4, 16, 16)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_a_trained_model_samples_its_classes():
    """Conditional samples follow their class: class 1 bright left, class 0 bright right
    (v-prediction with min-SNR weights learns this in 120 steps: margins of 150-189 grey levels
    against the 120 asked)."""
    rng = np.random.default_rng(0)
    y = np.arange(64) % 2
    x = rng.integers(0, 30, (64, 16, 16)).astype(np.uint8)
    x[y == 1, :, :8] += 200
    x[y == 0, :, 8:] += 200
    data = ImageSet(ArrayStore(x), np.arange(64), 16)
    torch.manual_seed(0)
    schedule = ScheduleConfig(prediction_type="v_prediction")
    cfg = DiffusionTrainConfig(
        **{**TRAIN, "epochs": 30, "lr": 3e-3, "batch_size": 16},
        ema_decay=0.95,
        snr_gamma=5.0,
        p_uncond=0.2,
    )
    unet, _ = train_unet(build_unet(TINY, "grey", 2), data, y, schedule, cfg)
    model = DiffusionModel({"all": unet}, schedule, "class_conditional", "grey")
    for scheduler, w in (("ddim", 1.0), ("dpmsolver++", 1.0), ("dpmsolver++", 2.0)):
        s = SamplerConfig(scheduler, 25, guidance=w, batch_size=16)
        for cls, sign in ((1, 1), (0, -1)):
            imgs = sample_class(model, cls, 16, s, seed=1).astype(float)
            left, right = imgs[:, :, :8].mean(), imgs[:, :, 8:].mean()
            assert sign * (left - right) > 120, (scheduler, w, cls, left, right)


def test_generated_set_streams_into_a_store_at_the_classifier_size(tmp_path):
    model = tiny_model(False, "rgb")
    sampler = SamplerConfig("ddim", 3, batch_size=4)
    job, manifest = generated_set(model, {0: 3, 1: 6}, sampler, 7, (20, 18), "gen/x", "ddim", "rgb")
    write_store(tmp_path / "s", job)
    store = TensorStore(tmp_path / "s")
    assert len(store) == 9 and store.shape == (20, 18)
    assert manifest["target"].tolist() == [0.0] * 3 + [1.0] * 6
    assert set(manifest["scheduler"]) == {"ddim"} and set(manifest["steps"]) == {3}
    assert manifest["checkpoint_hash"].nunique() == 1
    assert len(manifest["checkpoint_hash"].iloc[0]) == 16
    # the images are the sampler's, resized: batch 1 of class 1 holds images 4 and 5
    direct = sample_class(model, 1, 6, sampler, seed=7)
    import cv2

    want = cv2.resize(direct[5], (18, 20), interpolation=cv2.INTER_LINEAR)
    assert np.array_equal(store.get("gen/x/class1/0000005"), want)
    # the same inputs give the same fingerprint (a rerun reuses the store)
    job2, _ = generated_set(model, {0: 3, 1: 6}, sampler, 7, (20, 18), "gen/x", "ddim", "rgb")
    assert job2.fingerprint == job.fingerprint


def test_sets_of_one_generator_share_their_sampled_batches(tmp_path, monkeypatch):
    """A second set of the same model, sampler and seed (another strategy's) reuses the
    batches the first one sampled, with the bytes a fresh sampling gives; another seed, a
    partial batch of another size, changed weights or a zero budget sample anew."""
    from cxr_augment.generation import sampling

    monkeypatch.setattr(sampling, "MEMO", sampling.BatchMemo())
    model = tiny_model(False)
    unet = model.unet_for(1)[0]
    forwards = []
    hook = unet.register_forward_hook(lambda m, i, o: forwards.append(i[0].shape[0]))
    sampler = SamplerConfig("ddim", 3, batch_size=4)

    def make(counts, seed, prefix, s=sampler):
        job, _ = generated_set(model, counts, s, seed, (16, 16), prefix, "ddim")
        write_store(tmp_path / prefix, job)
        store = TensorStore(tmp_path / prefix)
        return np.stack([store.get(f"{prefix}/class1/{j:07d}") for j in range(counts[1])])

    first = make({1: 10}, 7, "a")  # batches of 4, 4 and 2
    assert len(forwards) == 3 * 3 and sampling.MEMO.hits == 0
    forwards.clear()
    second = make({1: 9}, 7, "b")  # batches 0 and 1 again; the last batch now holds 1
    assert len(forwards) == 3 and forwards[0] == 1 and sampling.MEMO.hits == 2
    assert np.array_equal(second[:8], first[:8])
    # the reused bytes are the ones sampling without the memo gives
    fresh = sample_class(model, 1, 10, replace(sampler, memo_bytes=0), seed=7)
    assert np.array_equal(first, fresh)
    forwards.clear()
    make({1: 4}, 8, "c")  # another seed
    assert len(forwards) == 3
    forwards.clear()
    make({1: 4}, 7, "d", replace(sampler, memo_bytes=0))  # no memo: sampled again
    assert len(forwards) == 3
    with torch.no_grad():  # new weights: a new checkpoint hash
        next(unet.parameters()).add_(0.01)
    forwards.clear()
    make({1: 4}, 7, "e")
    hook.remove()
    assert len(forwards) == 3
    # a budget below one batch keeps nothing
    memo = sampling.BatchMemo()
    memo.get(("k",), 10, lambda: np.zeros(11, np.uint8))
    assert len(memo) == 0 and memo.nbytes == 0


def test_model_folder_round_trip_opens_in_plain_diffusers(tmp_path):
    from diffusers import DDPMPipeline

    from cxr_augment.datasets import DiffusionModelDataset

    model = tiny_model(False)
    ds = DiffusionModelDataset(path=str(tmp_path / "m"))
    ds.save(model)
    back = ds.load()
    assert back.checkpoint_hash() == model.checkpoint_hash()
    assert back.conditioning == "per_class" and back.schedule == SCHEDULE
    pipe = DDPMPipeline.from_pretrained(str(tmp_path / "m" / "1"), local_files_only=True)
    assert pipe.scheduler.config.num_train_timesteps == 200
    assert not list(tmp_path.glob(".m.*"))  # no staging folder left


@pytest.mark.parametrize("guidance", [1.0, 2.0])
def test_cpu_chunks_evaluate_the_batch_in_parts_and_give_the_whole_batchs_images(guidance):
    """``cpu_chunk``: the UNet sees the batch in parts (CFG: each part doubled); the noise and
    the steps are the whole batch's, so the images are the whole-batch images up to float
    rounding (at most one grey level), and differ with the seed."""
    model = tiny_model(guidance != 1.0)
    unet = model.unet_for(1)[0]
    whole = SamplerConfig("ddim", 4, batch_size=10, guidance=guidance, cpu_chunk=None)
    parts = replace(whole, cpu_chunk=4)
    seen = []
    hook = unet.register_forward_hook(lambda m, i, o: seen.append(i[0].shape[0]))
    a = sample_batch(model, 1, 10, whole, seed=3)
    per_step_whole = list(seen)
    seen.clear()
    b = sample_batch(model, 1, 10, parts, seed=3)
    hook.remove()
    k = 2 if guidance != 1.0 else 1
    assert per_step_whole == [10 * k] * 4
    assert seen == [4 * k, 4 * k, 2 * k] * 4  # 10 images in parts of 4, each step
    assert a.shape == b.shape == (10, 16, 16)
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    assert np.array_equal(b, sample_batch(model, 1, 10, parts, seed=3))  # reproducible
    assert not np.array_equal(b, sample_batch(model, 1, 10, parts, seed=4))
