"""Every shipped environment (``conf/<env>``) wires up and its settings validate, also those
never run on this machine: ``gpu`` (one GPU at the thesis's resolutions), ``chexpert`` (a real
download), ``chexpert_gpu`` (a download on one GPU: ``gpu`` then ``chexpert``, its
``layers.yml``), ``chexpert_size`` and ``production``.

For each: a Kedro session loads; every registered pipeline builds; every free input of each
pipeline is a catalog entry (or a dataset factory's) or a parameter that exists; every
experiment's settings parse (``experiment_spec``, its ``TrainConfig``); every diffusion model's
settings (preset, schedule, training) and every generator's sampler parse. A typo in a file no
CPU run reads fails here, not an hour into a GPU run."""

from __future__ import annotations

import pytest

from tests.conftest import PROJECT

ENVS = sorted(
    p.name for p in (PROJECT / "conf").iterdir() if p.is_dir() and p.name not in ("base",)
)


def _session(env: str, monkeypatch, tmp_path):
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    # the project's hook exports the session's environment to KEDRO_ENV; the pipelines and
    # the study's settings read it
    monkeypatch.setenv("KEDRO_ENV", env)
    monkeypatch.setenv("CHEXPERT_ROOT", str(tmp_path / "CheXpert-v1.0-small"))
    bootstrap_project(PROJECT)
    return KedroSession.create(project_path=PROJECT, env=env)


def _lookup(params: dict, dotted: str):
    value = params
    for key in dotted.split("."):
        value = value[key]
    return value


def test_the_environments_are_the_shipped_ones():
    assert {
        "local",
        "study",
        "gpu",
        "chexpert",
        "chexpert_gpu",
        "chexpert_size",
        "production",
    } <= set(ENVS)


@pytest.mark.parametrize("env", ENVS)
def test_every_pipeline_s_inputs_exist_in_the_environment(env, monkeypatch, tmp_path):
    from cxr_augment import study
    from cxr_augment.pipeline_registry import register_pipelines

    study._load.cache_clear()
    with _session(env, monkeypatch, tmp_path) as session:
        context = session.load_context()
        catalog, params = context.catalog, context.params
        pipelines = register_pipelines()
        assert {
            "preprocessing",
            "generation",
            "classification",
            "augmentation",
            "reporting",
        } <= set(pipelines)
        for name, pipeline in pipelines.items():
            assert pipeline.nodes, f"{env}: pipeline {name} has no nodes"
            unknown = []
            for dataset in sorted(pipeline.inputs()):
                if dataset == "parameters":
                    continue
                if dataset.startswith("params:"):
                    try:
                        _lookup(params, dataset.removeprefix("params:"))
                    except (KeyError, TypeError):
                        unknown.append(dataset)
                elif dataset not in catalog:
                    unknown.append(dataset)
            assert not unknown, f"--env {env}: pipeline {name} reads what is not there: {unknown}"
    study._load.cache_clear()


@pytest.mark.parametrize("env", ENVS)
def test_every_experiment_model_and_sampler_setting_parses(env, monkeypatch, tmp_path):
    from cxr_augment import study
    from cxr_augment.classify import experiments as ex
    from cxr_augment.generation.models import UNetConfig
    from cxr_augment.pipelines.generation import nodes as gen

    study._load.cache_clear()
    with _session(env, monkeypatch, tmp_path) as session:
        params = session.load_context().params
    config = study.study_config()
    assert config == params["study"]
    for name, overrides in config["experiments"].items():
        spec = ex.experiment_spec(config["defaults"], overrides or {}, name)
        train = ex.train_config(spec)
        assert train.epochs >= 1 and train.batch_size >= 1, name

    generation = study.generation_config()
    assert generation == params["generation"]
    for name in generation["models"]:
        _, unet, schedule, train = gen._model_settings(generation, name)
        assert isinstance(unet, UNetConfig)
        assert schedule.num_train_timesteps >= 1 and train.batch_size >= 1
    for name in generation["generators"]:
        sampler = gen.sampler_config(generation, name)
        assert sampler.steps is None or sampler.steps >= 1, name
    if env in ("gpu", "chexpert_gpu"):  # the thesis's resolutions, on CUDA
        assert params["preprocessing"]["images"]["size"] == [389, 320]
        for name in generation["models"]:
            _, unet, _, train = gen._model_settings(generation, name)
            assert unet.sample_size == 256 and train.device == "cuda", name
            # thesis 4.6: T = 4,000, its best, which its DDPM and DDIM were set to
            assert gen._model_settings(generation, name)[2].num_train_timesteps == 4000, name
    study._load.cache_clear()
