"""Wiring of ``classification``: a namespaced pipeline per experiment of the study, and a
report per group of experiments (a thesis table or figure).

The experiments and groups are read from ``parameters_study.yml`` (the ``study`` block), so
adding an experiment there adds only its own nodes and assets.
"""

from __future__ import annotations

from functools import lru_cache, partial, update_wrapper

from kedro.pipeline import Node, Pipeline

from cxr_augment.pipelines.classification import nodes
from cxr_augment.study import repeats, study_config


def _named(func, **kwargs):
    return update_wrapper(partial(func, **kwargs), func)


def experiment_pipeline(
    name: str,
    augmented: bool = False,
    generator: tuple[str, str] | None = None,
    seeds: tuple[int, ...] = (1,),
    rule: dict | None = None,
) -> Pipeline:
    """One experiment: settings, images, (augmentation,) training, predictions, metrics.

    Everything is namespaced by the experiment's name. ``generator`` is (generator, model)
    for an experiment whose synthetic images come from a diffusion generator; ``seeds`` are
    its repeats (one model each); ``rule`` is its ``augmentation.methods`` when the methods
    are chosen on validation (candidates and baseline experiments).
    """
    masks = "params:preprocessing.masks"
    outside = {"manifest", "tensor_store", "chexpert_truth"}
    if generator is not None:
        gen, model = generator
        make = Node(
            nodes.generate_images,
            [
                "images",
                "tensor_store",
                "spec",
                f"generation.{model}.model",
                "params:generation",
                f"generation.{gen}.memorisation_summary",
            ],
            [
                "augmented_store",
                "augmented_manifest",
                "augmentation_selection",
                "augmentation_counts",
            ],
            name="generate_images",
        )
        outside |= {f"generation.{model}.model", f"generation.{gen}.memorisation_summary"}
    elif rule is not None:  # the methods are chosen on validation results
        refs = [rule["baseline"], *rule["candidates"].values()]
        choose = Node(
            nodes.choose_methods,
            ["spec", *[f"{r}.metrics" for r in refs]],
            "chosen_methods",
            name="choose_methods",
        )
        outside |= {f"{r}.metrics" for r in refs}
        make = Node(
            nodes.augment_images,
            ["images", "tensor_store", "spec", "chosen_methods"],
            [
                "augmented_store",
                "augmented_manifest",
                "augmentation_selection",
                "augmentation_counts",
            ],
            name="augment_images",
        )
    else:
        make = Node(
            nodes.augment_images,
            ["images", "tensor_store", "spec"],
            [
                "augmented_store",
                "augmented_manifest",
                "augmentation_selection",
                "augmentation_counts",
            ],
            name="augment_images",
        )
    per_seed = []
    for s in seeds:
        if augmented:
            fit = Node(
                _named(nodes.train_classifier_augmented, seed=s),
                [
                    "images",
                    "tensor_store",
                    f"seed{s}.checkpoints",
                    "spec",
                    masks,
                    "augmented_manifest",
                    "augmented_store",
                    "augmentation_selection",
                ],
                [f"seed{s}.model", f"seed{s}.training_history"],
                name=f"train_classifier_seed{s}",
            )
        else:
            fit = Node(
                _named(nodes.train_classifier, seed=s),
                ["images", "tensor_store", f"seed{s}.checkpoints", "spec", masks],
                [f"seed{s}.model", f"seed{s}.training_history"],
                name=f"train_classifier_seed{s}",
            )
        per_seed += [
            fit,
            Node(
                _named(nodes.predict_images, seed=s),
                ["images", "tensor_store", f"seed{s}.model", "spec", masks],
                f"seed{s}.predictions",
                name=f"predict_images_seed{s}",
            ),
        ]
    template = Pipeline(
        [
            Node(
                _named(nodes.experiment_spec, name=name),
                ["params:study.defaults", "params:experiment"],
                "spec",
                name="experiment_spec",
            ),
            Node(nodes.select_images, ["manifest", "spec"], "images", name="select_images"),
            *([choose] if augmented and rule is not None else []),
            *([make] if augmented else []),
            *per_seed,
            Node(
                nodes.combine_predictions,
                ["spec", "chexpert_truth", *[f"seed{s}.predictions" for s in seeds]],
                "predictions",
                name="combine_predictions",
            ),
            Node(nodes.evaluate, ["predictions", "spec"], "metrics", name="evaluate"),
        ]
    )
    return Pipeline(
        template,
        namespace=name,
        inputs=outside,
        parameters={
            "params:study.defaults": "params:study.defaults",
            "params:experiment": f"params:study.experiments.{name}",
            masks: masks,
            **({"params:generation": "params:generation"} if generator else {}),
        },
        tags=["augmentation" if augmented else "classification", name],
    )


def group_pipeline(group: str, spec: dict) -> Pipeline:
    """The report of a group: its table (CSV, Markdown) and ROC curves; a group with
    ``truth_agreement: true`` also lists how its label policies agree with the demo's truth."""
    names = spec["experiments"]
    inputs = [*[f"{n}.metrics" for n in names], *[f"{n}.predictions" for n in names]]
    if spec.get("truth_agreement"):
        func, inputs = nodes.group_report_with_truth, ["policy_truth_agreement", *inputs]
    else:
        func = nodes.group_report
    return Pipeline(
        [
            Node(
                func,
                [f"params:study.groups.{group}", "params:study.compare", *inputs],
                [f"report.{group}.table", f"report.{group}.markdown", f"report.{group}.roc"],
                name=f"report_{group}",
            )
        ],
        tags=["classification", "report"],
    )


def pca_pipeline(reference: str, seed: int = 1) -> Pipeline:
    """Thesis Figure 20 from the reference experiment's model of its first seed."""
    masks = "params:preprocessing.masks"
    return Pipeline(
        [
            Node(
                nodes.feature_pca,
                [
                    f"{reference}.images",
                    "tensor_store",
                    f"{reference}.seed{seed}.model",
                    f"{reference}.spec",
                    masks,
                    f"{reference}.metrics",
                    "params:study.pca",
                ],
                ["report.pca.points", "report.pca.figure"],
                name="feature_pca",
            )
        ],
        tags=["classification", "report"],
    )


def generator_of(name: str) -> tuple[str, str] | None:
    """(generator, model) when experiment ``name`` draws its synthetic images from a diffusion
    generator (``augmentation.source``), else None."""
    study = study_config()
    aug = {
        **study["defaults"].get("augmentation", {}),
        **(study["experiments"][name].get("augmentation") or {}),
    }
    source = aug.get("source", "transforms")
    if source == "transforms":
        return None
    from cxr_augment.study import generation_config

    gens = generation_config()["generators"]
    if source not in gens or "model" not in gens[source]:
        raise ValueError(
            f"study.experiments.{name}: augmentation.source {source!r} is not a diffusion "
            f"generator of generation.generators ({sorted(g for g in gens if 'model' in gens[g])})"
        )
    return source, gens[source]["model"]


def method_rules(names: list[str]) -> dict[str, dict]:
    """The experiments whose traditional methods are chosen on validation, with their rule."""
    study = study_config()
    out = {}
    for n in names:
        methods = ((study["experiments"][n] or {}).get("augmentation") or {}).get("methods")
        if isinstance(methods, dict):
            out[n] = methods
    return out


def is_augmented(study: dict, name: str) -> bool:
    return bool(
        study["experiments"][name].get("augmentation") or study["defaults"].get("augmentation")
    )


def build(
    experiments: list[str],
    groups: dict[str, dict],
    pca_reference: str | None,
    augmented: set[str] = frozenset(),
    figure22: bool = False,
    generators: dict[str, tuple[str, str]] | None = None,
    seeds: dict[str, list[int]] | None = None,
    rules: dict[str, dict] | None = None,
) -> Pipeline:
    """The experiments' pipelines, their group reports, Figure 20 and Figure 22.

    ``generators`` maps an experiment to its (generator, model) when a diffusion generator
    makes its synthetic images; ``seeds`` an experiment to its training seeds (default one,
    seed 1).
    """
    generators = generators or {}
    seeds = seeds or {}
    rules = rules or {}
    parts = [
        experiment_pipeline(
            name,
            name in augmented,
            generators.get(name),
            tuple(seeds.get(name, (1,))),
            rules.get(name),
        )
        for name in experiments
    ]
    parts += [group_pipeline(group, spec) for group, spec in groups.items()]
    if pca_reference:
        parts.append(pca_pipeline(pca_reference, seeds.get(pca_reference, (1,))[0]))
    if figure22:
        parts.append(figure22_pipeline())
    return Pipeline(parts)


def figure22_pipeline() -> Pipeline:
    return Pipeline(
        [
            Node(
                nodes.augmentation_examples,
                ["manifest", "tensor_store", "params:augmentation"],
                "report.augmentation_examples",
                name="augmentation_examples",
            )
        ],
        tags=["augmentation", "report"],
    )  # one construction: adding pipelines one by one is quadratic


@lru_cache(maxsize=8)
def _cached(key: str) -> Pipeline:
    # find_pipelines() is called again and again (kedro-dagster: once per node); the study's
    # structure does not change within a process, so its pipelines are built once
    study = study_config()
    aug = {n for n in study["experiments"] if is_augmented(study, n)}
    if key in ("classification", "augmentation"):
        wanted = aug if key == "augmentation" else set(study["experiments"]) - aug
        names = [n for n in study["experiments"] if n in wanted]
        groups = {
            g: spec
            for g, spec in study["groups"].items()
            if g != "headline" and bool(aug & set(spec["experiments"])) == (key == "augmentation")
        }
        pca = study["pca"]["experiment"] if key == "classification" else None
        return _study_build(names, groups, pca, aug, figure22=key == "augmentation")
    head = study["headline"]
    groups = {g: study["groups"][g] for g in head["groups"]}
    names = list(
        dict.fromkeys(
            [*head["experiments"], *[n for g in groups.values() for n in g["experiments"]]]
        )
    )
    pca = study["pca"]["experiment"] if study["pca"]["experiment"] in names else None
    return _study_build(names, groups, pca, aug, figure22=bool(aug & set(names)))


def _study_build(names, groups, pca, aug, figure22: bool) -> Pipeline:
    """``build`` with each experiment's generator, seeds and method rule from the study."""
    return build(
        names,
        groups,
        pca,
        aug,
        figure22=figure22,
        generators={n: g for n in names if (g := generator_of(n)) is not None},
        seeds={n: repeats(n) for n in names},
        rules=method_rules(names),
    )


def create_pipeline(**kwargs) -> Pipeline:
    """Every experiment of the study without augmentation, and its groups."""
    return _cached("classification")


def create_augmentation_pipeline() -> Pipeline:
    """Every augmentation experiment of the study, its groups and Figure 22."""
    return _cached("augmentation")


def create_headline_pipeline() -> Pipeline:
    """The laptop-sized subset the default pipeline runs (``study.headline``)."""
    return _cached("headline")
