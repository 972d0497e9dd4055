"""The study's structure (experiments, groups), read from the project configuration.

The pipeline registry needs the experiment names before a Kedro context exists, so they are
read here from ``conf/base`` and ``conf/local`` (and the environment named by ``KEDRO_ENV``);
their settings still reach the nodes as parameters.
"""

from __future__ import annotations

import copy
import os
from functools import lru_cache
from pathlib import Path


def merge(base: dict, over: dict) -> dict:
    """Deep merge of parameter mappings (``over`` wins): how an experiment's entry goes over
    the study's defaults (``experiment_spec``, and the pipelines' wiring alike)."""
    out = copy.deepcopy(base)
    for k, v in (over or {}).items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _project_root() -> Path:
    from kedro.utils import find_kedro_project

    found = find_kedro_project(Path.cwd())
    return found if found is not None else Path(__file__).resolve().parents[2]


@lru_cache(maxsize=4)
def _load(conf: str, env: str) -> dict:
    from cxr_augment.settings import CONFIG_LOADER_ARGS, CONFIG_LOADER_CLASS

    loader = CONFIG_LOADER_CLASS(
        conf,
        base_env="base",
        default_run_env=env,
        custom_resolvers=CONFIG_LOADER_ARGS["custom_resolvers"],
        config_patterns=CONFIG_LOADER_ARGS["config_patterns"],
        merge_strategy=CONFIG_LOADER_ARGS["merge_strategy"],
    )
    return dict(loader["parameters"])


def study_config() -> dict:
    conf = str(_project_root() / "conf")
    env = os.environ.get("KEDRO_ENV", "local")
    study = _load(conf, env)["study"]
    for group, spec in study["groups"].items():
        missing = [n for n in spec["experiments"] if n not in study["experiments"]]
        if missing:
            raise ValueError(f"study.groups.{group}: unknown experiments {missing}")
    return study


def generation_config() -> dict:
    """The ``generation`` block (models, generators, tables), read as ``study_config``."""
    conf = str(_project_root() / "conf")
    env = os.environ.get("KEDRO_ENV", "local")
    gen = _load(conf, env)["generation"]
    for name, spec in gen["generators"].items():
        if "model" in spec and spec["model"] not in gen["models"]:
            raise ValueError(f"generation.generators.{name}: unknown model {spec['model']!r}")
    return gen


def repeats(name: str) -> list[int]:
    """The seeds experiment ``name`` is trained with (``repeats``; default ``[train.seed]``)."""
    study = study_config()
    exp = study["experiments"][name] or {}
    seeds = exp.get("repeats", study["defaults"].get("repeats"))
    if seeds is None:
        seeds = [exp.get("train", {}).get("seed", study["defaults"]["train"]["seed"])]
    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"study.experiments.{name}: repeats must be distinct seeds, got {seeds}")
    return seeds


def model_dataset(name: str) -> str:
    """The catalog name of experiment ``name``'s model of its first seed (the one a figure or
    a feature extractor uses)."""
    return f"{name}.seed{repeats(name)[0]}.model"


def reporting_config() -> dict:
    """The ``reporting`` block (the report's sections and items), read as ``study_config``."""
    conf = str(_project_root() / "conf")
    env = os.environ.get("KEDRO_ENV", "local")
    return _load(conf, env)["reporting"]
