"""Wiring of ``generation``: a training pipeline per model, a generated set and its metrics per
generator, Tables 13 and 14, Figure 23, the memorisation figure and the sampler sweep.

Models and generators are read from ``parameters_generation.yml`` (the ``generation`` block),
so adding one there adds only its own nodes and assets.
"""

from __future__ import annotations

from functools import lru_cache

from kedro.pipeline import Node, Pipeline

from cxr_augment.pipelines.generation import nodes
from cxr_augment.pipelines.generation.nodes import SEP
from cxr_augment.pipelines.named import named
from cxr_augment.study import generation_config, model_dataset

P = "params:generation"
# the settings each computing node reads (a dotted key: one entry of a setting); the tables
# and figures read the whole block
TRAIN = (
    "observation",
    "policy",
    "device",
    "preload_bytes",
    "schedule",
    "presets",
    "train",
    "models",
)  # nodes.train_model
ROWS = ("observation", "policy", "split")  # nodes.training_rows
METRICS = ("device", "metrics")  # nodes.reference_set, nodes.evaluate_generator
TRADITIONAL = ("metrics", "traditional")  # nodes.traditional_set
SWEEP = ("device", "sampling", "metrics", "sweep")  # nodes.sampler_sweep


def sampled(generator: str) -> tuple[str, ...]:
    """What a generator's set is sampled with (nodes.sample_set, sampler_config): the sampling
    defaults, the device, the set sizes and seed, and that generator's own entry only."""
    return ("device", "sampling", "metrics", f"generators.{generator}")


def stable(generator: str) -> tuple[str, ...]:
    """nodes.stable_diffusion_set's settings."""
    return ("device", "metrics", "observation", "stable_diffusion", f"generators.{generator}")


def _has(gen: dict, key: str) -> bool:
    """Whether the dotted ``key`` names a setting (or an entry of one) of ``gen``."""
    head, _, rest = key.partition(".")
    return head in gen and (not rest or isinstance(gen[head], dict) and _has(gen[head], rest))


def settings(gen: dict, keys: tuple[str, ...], data: tuple[str, ...] = ()) -> dict:
    """The parameter inputs of a node that takes the ``generation`` settings ``keys`` as
    keyword arguments, each from its own ``params:generation.<key>`` (those ``gen`` has): a
    change elsewhere in the block leaves the node up to date.
    A dotted key (``generators.ddim``) is one entry of a setting, passed as
    ``generators__ddim``; the node rebuilds the block with ``nodes.nested``. ``data``: the
    node's other argument names, which a setting must not take."""
    names = {k: k.replace(".", SEP) for k in keys}
    clash = sorted(k for k, name in names.items() if name in data)
    if clash:
        raise ValueError(f"generation.{clash[0]}: a setting may not be named like an input of "
                         f"the node that reads it ({', '.join(data)})")  # fmt: skip
    return {names[k]: f"{P}.{k}" for k in keys if _has(gen, k)}


# the feature extractor: its weights and its spec, from the study's defaults and its
# experiment's entry (_with_features)
FEATURE = {
    "feature_model": "feature_model",
    "feature_defaults": "params:study.defaults",
    "feature_experiment": "params:feature_experiment",
}


def _model_nodes(name: str, gen: dict) -> list[Node]:
    data = {
        "rows": "generation.training_rows",
        "store": "tensor_store",
        "checkpoints": f"generation.{name}.checkpoints",
    }
    return [
        Node(
            named(nodes.train_model, name=name),
            {**data, **settings(gen, TRAIN, tuple(data))},
            [
                f"generation.{name}.model",
                f"generation.{name}.history",
                f"generation.{name}.loss_curve",
            ],
            name=f"train_{name}",
            namespace="generation",
        )
    ]


def _generator_nodes(name: str, spec: dict, gen: dict) -> list[Node]:
    out = [f"generation.{name}.samples", f"generation.{name}.samples_manifest"]
    if "model" in spec:
        data = {"model": f"generation.{spec['model']}.model", "store": "tensor_store"}
        make = Node(
            named(nodes.sample_set, generator=name),
            {**data, **settings(gen, sampled(name), (*data, "generator"))},
            out,
            name=f"sample_{name}",
            namespace="generation",
        )
        status = None
    elif name == "traditional":
        data = {"rows": "generation.training_rows", "store": "tensor_store"}
        make = Node(
            nodes.traditional_set,
            {**data, **settings(gen, TRADITIONAL, tuple(data))},
            out,
            name="sample_traditional",
            namespace="generation",
        )
        status = None
    else:  # Stable Diffusion
        status = f"generation.{name}.status"
        data = {"rows": "generation.training_rows", "manifest": "manifest", "store": "tensor_store"}
        make = Node(
            named(nodes.stable_diffusion_set, generator=name),
            {**data, **settings(gen, stable(name), (*data, "generator"))},
            [*out, status, f"generation.{name}.lora"],
            name=f"sample_{name}",
            namespace="generation",
        )
    data = {
        "samples": out[0],
        "samples_manifest": out[1],
        "reference": "generation.reference",
        "store": "tensor_store",
        **FEATURE,
        **({"status": status} if status else {}),
    }
    evaluate = Node(
        named(nodes.evaluate_generator, generator=name),
        {**data, **settings(gen, METRICS, (*data, "status", "generator"))},
        [
            f"generation.{name}.metrics",
            f"generation.{name}.memorisation",
            f"generation.{name}.memorisation_summary",
        ],
        name=f"evaluate_{name}",
        namespace="generation",
    )
    return [make, evaluate]


def _common(gen: dict) -> list[Node]:
    rows = {"rows": "generation.training_rows", "store": "tensor_store", **FEATURE}
    return [
        Node(
            nodes.training_rows,
            {"manifest": "manifest", **settings(gen, ROWS, ("manifest",))},
            "generation.training_rows",
            name="select_training_rows",
            namespace="generation",
        ),
        Node(
            nodes.reference_set,
            {**rows, **settings(gen, METRICS, tuple(rows))},
            "generation.reference",
            name="reference_set",
            namespace="generation",
        ),
    ]


def _generators(gen: dict) -> dict[str, dict]:
    return {"traditional": {}, **gen["generators"]}


def build(gen: dict, headline: bool = False) -> Pipeline:
    generators = _generators(gen)
    if headline:
        generators = {g: generators[g] for g in gen["headline"]["generators"]}
    models = list(dict.fromkeys(s["model"] for s in generators.values() if "model" in s))
    parts = _common(gen)
    for m in models:
        parts += _model_nodes(m, gen)
    for g, spec in generators.items():
        parts += _generator_nodes(g, spec, gen)
    if not headline:
        for t, table in gen["tables"].items():
            parts.append(
                Node(
                    named(nodes.generation_table, table=table),
                    [f"generation.{g}.metrics" for g in table["generators"]],
                    [f"generation.report.{t}.table", f"generation.report.{t}.markdown"],
                    name=f"report_{t}",
                    namespace="generation",
                )
            )
        shown = gen["figure"]["generators"]
        parts.append(
            Node(
                nodes.figure23,
                [
                    "generation.reference",
                    "tensor_store",
                    P,
                    *[
                        d
                        for g in shown
                        for d in (f"generation.{g}.samples", f"generation.{g}.samples_manifest")
                    ],
                ],
                "generation.report.figure23",
                name="figure23",
                namespace="generation",
            )
        )
        parts.append(
            Node(
                nodes.memorisation_figure,
                [
                    "tensor_store",
                    P,
                    *[
                        d
                        for g in shown
                        for d in (f"generation.{g}.samples", f"generation.{g}.memorisation")
                    ],
                ],
                "generation.report.memorisation_figure",
                name="memorisation_figure",
                namespace="generation",
            )
        )
        sw = gen["sweep"]["model"]
        data = {
            "model": f"generation.{sw}.model",
            "reference": "generation.reference",
            "store": "tensor_store",
            **FEATURE,
        }
        parts.append(
            Node(
                nodes.sampler_sweep,
                {**data, **settings(gen, SWEEP, tuple(data))},
                ["generation.report.sweep.table", "generation.report.sweep.figure"],
                name="sampler_sweep",
                namespace="generation",
            )
        )
    return Pipeline(
        parts,
        # the domain feature extractor is the headline classifier's weights
        inputs={"manifest", "tensor_store"},
        tags=["generation"],
    )


@lru_cache(maxsize=4)
def _cached(headline: bool) -> Pipeline:
    gen = generation_config()
    return _with_features(build(gen, headline), gen)


def _with_features(p: Pipeline, gen: dict, model: str | None = None) -> Pipeline:
    """``feature_model`` is the weights of ``metrics.feature_experiment`` (the classifier of
    its first seed; ``model`` names the dataset directly), ``params:feature_experiment`` its
    entry in the study's parameters."""
    name = gen["metrics"]["feature_experiment"]
    model = model or model_dataset(name)
    if "feature_model" not in p.inputs():
        return p
    return Pipeline(
        p,
        inputs={"feature_model": model},
        parameters={"params:feature_experiment": f"params:study.experiments.{name}"},
    )


def create_pipeline(**kwargs) -> Pipeline:
    """Every model and generator, Tables 13 and 14, Figure 23, memorisation, sweep."""
    return _cached(False)


def create_headline_pipeline() -> Pipeline:
    """What the default pipeline runs: the headline generators, their models and checks."""
    return _cached(True)
