"""Stable Diffusion prompts, captions, generation and LoRA on a tiny random pipeline.

The pipeline is built from configs (the shapes of diffusers' own tests), with a character-level
CLIP tokenizer written here, saved to a temporary folder and loaded back through
``load_pipeline`` (``local_files_only``): nothing is downloaded.
"""

from __future__ import annotations

import json
import string

import numpy as np
import pandas as pd
import pytest
import torch

from cxr_augment.generation import stable_diffusion as sd
from cxr_augment.preprocess.chexpert import OBSERVATIONS

SIZE = 32  # generation and training resolution of the tiny model


def _write_tokenizer_files(folder) -> None:
    """A byte-level BPE vocabulary of single characters (with and without "</w>"), no merges."""
    vocab = {"<|startoftext|>": 0, "!": 1, "<|endoftext|>": 2}
    for char in sorted(set(string.ascii_lowercase + string.digits + string.punctuation)):
        for token in (char, char + "</w>"):
            vocab.setdefault(token, len(vocab))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")


@pytest.fixture(scope="module")
def base_model(tmp_path_factory):
    """The folder of a tiny randomly initialised Stable Diffusion pipeline."""
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    root = tmp_path_factory.mktemp("sd")
    _write_tokenizer_files(root / "tokenizer_src")
    tokenizer = CLIPTokenizer.from_pretrained(
        str(root / "tokenizer_src"), local_files_only=True, model_max_length=77
    )
    with torch.random.fork_rng():
        torch.manual_seed(0)
        unet = UNet2DConditionModel(
            block_out_channels=(4, 8),
            layers_per_block=1,
            sample_size=SIZE,
            in_channels=4,
            out_channels=4,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=8,
            norm_num_groups=2,
        )
        vae = AutoencoderKL(
            block_out_channels=[4, 8],
            in_channels=3,
            out_channels=3,
            down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
            up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
            latent_channels=4,
            norm_num_groups=2,
        )
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                bos_token_id=0,
                eos_token_id=2,
                hidden_size=8,
                intermediate_size=16,
                layer_norm_eps=1e-05,
                num_attention_heads=2,
                num_hidden_layers=2,
                pad_token_id=1,
                vocab_size=1000,
            )
        )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    pipe = StableDiffusionPipeline(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    folder = root / "base"
    pipe.save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def pipe(base_model):
    return sd.load_pipeline(base_model)


SETTINGS = sd.LoraSettings(
    batch_size=2,
    max_steps=6,
    warmup_fraction=0.34,  # 2 warm-up steps of 6
    resolution=SIZE,
    unet_lr=1e-2,
    text_encoder_lr=1e-2,
    seed=3,
    progress=False,
)


def _training_data() -> tuple[np.ndarray, list[str]]:
    images = np.random.default_rng(0).integers(0, 256, (4, 40, 36), dtype=np.uint8)
    texts = [sd.PROMPTS[1], sd.PROMPTS[0], sd.PROMPTS[1], sd.PROMPTS[0]]
    return images, texts


def _base_weights(pipe) -> dict[str, torch.Tensor]:
    """Every non-adapter weight, by its name without peft's "base_layer"."""
    return {
        f"{part}.{name.replace('.base_layer', '')}": p.detach().clone()
        for part in ("unet", "vae", "text_encoder")
        for name, p in getattr(pipe, part).named_parameters()
        if ".lora_" not in name
    }


@pytest.fixture(scope="module")
def trained(base_model):
    """A fresh pipeline, its base weights before training, and what train_lora returned."""
    pipe = sd.load_pipeline(base_model)
    before = _base_weights(pipe)
    images, texts = _training_data()
    state, history = sd.train_lora(pipe, images, texts, SETTINGS)
    return pipe, before, state, history


# --- prompts and captions ---------------------------------------------------------------------


def test_prompts():
    assert sd.PROMPTS == {
        1: "Chest X-ray images of people with Pneumothorax",
        0: "Chest X-ray images of healthy people",
    }
    assert sd.class_prompt("Pleural Effusion", True) == (
        "Chest X-ray images of people with Pleural Effusion"
    )
    assert sd.class_prompt("Cardiomegaly", False) == "Chest X-ray images of healthy people"
    with pytest.raises(ValueError, match="Support Devices"):
        sd.class_prompt("Support Devices", True)


def test_captions():
    nan = float("nan")
    frame = pd.DataFrame(
        [
            {"Pneumothorax": 1.0, "Pleural Effusion": 1.0, "No Finding": nan, "Edema": -1.0},
            {"Pneumothorax": 0.0, "Pleural Effusion": nan, "No Finding": 1.0, "Edema": nan},
            {"Pneumothorax": 1.0, "Pleural Effusion": 0.0, "No Finding": nan, "Edema": 0.0},
            {"Pneumothorax": nan, "Pleural Effusion": -1.0, "No Finding": nan, "Edema": 1.0},
        ]
    ).assign(**{"Support Devices": [1.0, 1.0, nan, 0.0], "Path": ["a", "b", "c", "d"]})
    observations = ["No Finding", "Edema", "Pneumothorax", "Pleural Effusion", "Support Devices"]
    assert sd.captions(frame, observations) == [
        "Chest X-ray images of people with Pneumothorax, Pleural Effusion",  # CheXpert order
        "Chest X-ray images of healthy people",  # No Finding / Support Devices never named
        sd.PROMPTS[1],  # one finding: exactly the generation prompt
        "Chest X-ray images of people with Edema",
    ]
    # only the listed columns count
    assert sd.captions(frame, ["Edema"])[0] == "Chest X-ray images of healthy people"
    assert sd.caption({o: 1.0 for o in OBSERVATIONS}).count(",") == 11  # 12 pathologies
    with pytest.raises(ValueError, match="Pneumothorx"):
        sd.captions(frame, ["Pneumothorx"])
    with pytest.raises(KeyError, match="Fracture"):
        sd.captions(frame, ["Fracture"])


# --- the base model ---------------------------------------------------------------------------


def test_base_model_status_skips_without_a_path():
    for value in (None, "", "  "):
        usable, message = sd.base_model_status(value)
        assert not usable
        assert message.startswith("skipped: no Stable Diffusion base model")
        assert "generation.stable_diffusion.base_model" in message


def test_base_model_status_rejects_a_wrong_folder(tmp_path):
    (tmp_path / "model_index.json").write_text("{}")
    (tmp_path / "unet").mkdir()
    with pytest.raises(ValueError) as error:
        sd.base_model_status(tmp_path)
    text = str(error.value)
    assert str(tmp_path) in text
    for entry in ("unet/config.json", "vae/config.json", "tokenizer/", "scheduler"):
        assert entry in text
    assert "model_index.json" not in text.split("missing")[1]


def test_base_model_status_rejects_a_missing_path(tmp_path):
    with pytest.raises(ValueError, match="does not exist") as error:
        sd.base_model_status(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(error.value)
    with pytest.raises(ValueError, match="does not exist"):
        sd.load_pipeline(tmp_path / "nowhere")


def test_base_model_status_accepts_a_diffusers_folder(base_model):
    usable, message = sd.base_model_status(str(base_model))
    assert usable and str(base_model) in message


def test_settings_defaults_and_validation():
    s = sd.LoraSettings(unet_target_modules=["to_q", "to_v"])
    assert (s.rank, s.alpha, s.batch_size, s.epochs, s.resolution) == (8, 1.0, 16, 20, 256)
    assert (s.lr, s.text_encoder_lr, s.unet_lr) == (1e-4, 5e-5, 1e-3)
    assert s.unet_target_modules == ("to_q", "to_v")
    assert s.total_steps(33) == 20 * 3
    assert sd.LoraSettings(max_steps=7).total_steps(33) == 7
    assert sd.LoraSettings(warmup_fraction=0.1).warmup_steps(160) == 20
    for bad, match in (
        ({"mixed_precision": "fp8"}, r"mixed_precision must be one of .*, got 'fp8'"),
        ({"resolution": 30}, "resolution must be a positive multiple of 8, got 30"),
        ({"lr_scheduler": "step"}, r"lr_scheduler must be one of .*, got 'step'"),
        ({"rank": 0}, "rank, batch_size and epochs must be >= 1"),
        ({"unet_lr": 0.0}, "alpha and the learning rates must be > 0"),
        ({"warmup_fraction": 1.0}, r"warmup_fraction must be in \[0, 1\), got 1.0"),
        ({"optimizer": "SGD"}, "only the AdamW optimizer is supported, got 'SGD'"),
        ({"max_steps": 0}, "max_steps must be >= 1 or None, got 0"),
        ({"unet_target_modules": []}, "the LoRA target module lists must not be empty"),
    ):
        with pytest.raises(ValueError, match=match):
            sd.LoraSettings(**bad)


# --- generation -------------------------------------------------------------------------------


def test_generate_is_grey_sized_and_seeded(pipe):
    kwargs = {"steps": 2, "size": SIZE, "batch_size": 2}
    a = sd.generate(pipe, sd.PROMPTS[1], n=3, seed=5, out_shape=(24, 20), **kwargs)
    assert a.dtype == np.uint8 and a.shape == (3, 24, 20)
    assert a.std() > 0
    b = sd.generate(pipe, sd.PROMPTS[1], n=3, seed=5, out_shape=(24, 20), **kwargs)
    assert a.tobytes() == b.tobytes()
    c = sd.generate(pipe, sd.PROMPTS[1], n=3, seed=6, out_shape=(24, 20), **kwargs)
    assert not np.array_equal(a, c)
    # batch b's latents depend on (seed, b) only: a shorter request is a prefix
    d = sd.generate(pipe, sd.PROMPTS[1], n=2, seed=5, out_shape=(24, 20), **kwargs)
    assert np.array_equal(a[:2], d)
    full = sd.generate(pipe, sd.PROMPTS[0], n=1, seed=5, **kwargs)
    assert full.shape == (1, SIZE, SIZE)
    assert sd.generate(pipe, sd.PROMPTS[0], n=0, seed=5, **kwargs).shape == (0, SIZE, SIZE)


def test_to_grey_is_bt601_luma():
    rgb = np.array([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 1.0, 1.0]]])
    assert sd.to_grey(rgb).tolist() == [[76, 150, 29, 255]]


# --- LoRA -------------------------------------------------------------------------------------


def test_train_lora_moves_only_the_adapter(trained):
    pipe, before, state, _ = trained
    assert state and all(t.device.type == "cpu" for t in state.values())
    assert all(k.startswith(("unet.", "text_encoder.")) for k in state)
    for prefix in ("unet.", "text_encoder."):
        a = [v for k, v in state.items() if k.startswith(prefix) and ".lora_A." in k]
        b = [v for k, v in state.items() if k.startswith(prefix) and ".lora_B." in k]
        assert a and len(a) == len(b)
        assert all(t.shape[0] == SETTINGS.rank for t in a)
        assert all(t.abs().sum() > 0 for t in b), f"{prefix} lora_B still zero"
    after = _base_weights(pipe)
    assert after.keys() == before.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not any(p.requires_grad for p in pipe.unet.parameters())


def test_train_lora_history_shows_warmup_and_cosine(trained):
    history = trained[3]
    assert list(history.columns) == ["step", "epoch", "loss", "lr", "text_encoder_lr"]
    assert history["step"].tolist() == list(range(6))
    assert history["epoch"].tolist() == [0, 0, 1, 1, 2, 2]
    assert np.isfinite(history["loss"]).all() and (history["loss"] > 0).all()
    lr = history["lr"].to_numpy()
    assert lr[0] == 0.0 and lr[1] == pytest.approx(SETTINGS.unet_lr / 2)  # linear warm-up
    assert lr[2] == pytest.approx(SETTINGS.unet_lr)  # peak, then cosine decay
    assert (np.diff(lr[2:]) < 0).all()
    assert history["text_encoder_lr"].to_numpy() == pytest.approx(lr)


def test_train_lora_is_reproducible(base_model, trained):
    images, texts = _training_data()
    again, history = sd.train_lora(sd.load_pipeline(base_model), images, texts, SETTINGS)
    state = trained[2]
    assert again.keys() == state.keys()
    assert all(torch.equal(again[k], state[k]) for k in state)
    assert history["loss"].tolist() == trained[3]["loss"].tolist()


def test_save_load_round_trip(trained, tmp_path):
    state = trained[2]
    path = tmp_path / "models" / "lora.safetensors"
    sd.save_lora(state, path, SETTINGS)
    assert [p.name for p in path.parent.iterdir()] == ["lora.safetensors"]  # no temp file left
    loaded = sd.load_lora(path)
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[k], state[k]) for k in state)
    assert sd.load_lora_settings(path) == SETTINGS
    sd.save_lora(state, tmp_path / "bare.safetensors")
    assert sd.load_lora_settings(tmp_path / "bare.safetensors") is None


def test_apply_lora_reproduces_the_trained_pipeline(base_model, trained, tmp_path):
    trained_pipe, _, state, _ = trained
    kwargs = {"n": 2, "seed": 1, "steps": 2, "size": SIZE, "batch_size": 2}
    fresh = sd.load_pipeline(base_model)
    without = sd.generate(fresh, sd.PROMPTS[1], **kwargs)
    path = tmp_path / "lora.safetensors"
    sd.save_lora(state, path, SETTINGS)
    with_lora = sd.apply_lora(fresh, sd.load_lora(path), sd.load_lora_settings(path))
    assert with_lora is fresh
    applied = sd.generate(with_lora, sd.PROMPTS[1], **kwargs)
    assert not np.array_equal(applied, without)
    assert np.array_equal(applied, sd.generate(trained_pipe, sd.PROMPTS[1], **kwargs))


def test_apply_lora_rejects_mismatched_settings(base_model, trained):
    state = trained[2]
    with pytest.raises(ValueError, match="rank"):
        sd.apply_lora(sd.load_pipeline(base_model), state, sd.LoraSettings(rank=4))
    with pytest.raises(ValueError, match="train_text_encoder"):
        sd.apply_lora(
            sd.load_pipeline(base_model), state, sd.LoraSettings(train_text_encoder=False)
        )
    with pytest.raises(ValueError, match="prefix"):
        sd.apply_lora(
            sd.load_pipeline(base_model), {"x.lora_A.weight": torch.zeros(8, 8)}, SETTINGS
        )
