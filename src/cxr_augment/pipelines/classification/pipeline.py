"""Wiring of ``classification``: a namespaced pipeline per experiment of the study, and a
report per group of experiments (a thesis table or figure).

The experiments and groups are read from ``parameters_study.yml`` (the ``study`` block), so
adding an experiment there adds only its own nodes and assets.
"""

from __future__ import annotations

from functools import lru_cache

from kedro.pipeline import Node, Pipeline

from cxr_augment.classify.choice import choose_rules, closeness_required
from cxr_augment.classify.choice import variants as choice_variants
from cxr_augment.pipelines.classification import nodes
from cxr_augment.pipelines.named import named
from cxr_augment.study import merge, repeats, study_config

SETTING = "generation__"  # nodes.augmented_set's keyword arguments of generation settings
COPIES_FIGURE = "params:augmentation.copies_figure"  # the misclassified strategy's figure
CLOSENESS = "params:augmentation.closeness"  # its copies against the images they were made from


def _generation_settings(generators) -> dict[str, str]:
    """What an augmented set sampled from ``generators`` reads of the ``generation`` settings
    (``classify.experiments.generation_plan``): the sampling defaults, the device, the edits'
    defaults (``edit``: the misclassified strategy's image-conditioned images) and those
    generators' entries."""
    from cxr_augment.pipelines.generation.pipeline import settings
    from cxr_augment.study import generation_config

    keys = ("device", "sampling", "edit", *(f"generators.{g}" for g in generators))
    return settings(generation_config(), keys)


def experiment_pipeline(
    name: str, wiring: dict | None = None, seeds: tuple[int, ...] = (1,)
) -> Pipeline:
    """One experiment: settings, images, (augmentation,) training, predictions, metrics.

    Everything is namespaced by the experiment's name. ``wiring`` is None for an experiment
    without augmentation, else what its augmented set needs (``augmentation_wiring``):
    ``generators`` ({generator: model} it may sample from), ``rule`` (its methods chosen on
    validation: candidates and baseline experiments), ``choose`` (the experiments whose
    validation results choose its settings), ``misclassified`` (whether it may use the
    misclassified strategy's selection). ``seeds`` are its repeats (one model each).
    """
    masks = "params:preprocessing.masks"
    outside = {"manifest", "tensor_store", "chexpert_truth"}
    augmented = wiring is not None
    steps = []
    if augmented:
        inputs = {"images": "images", "store": "tensor_store", "spec": "spec"}
        choice = None
        if wiring.get("rule"):  # the methods are chosen on validation results
            rule = wiring["rule"]
            choice = (
                nodes.choose_methods,
                "methods",
                [rule["baseline"], *rule["candidates"].values()],
            )
        elif wiring.get("choose"):  # a source, strategy or sampler chosen on validation results
            choice = (nodes.choose_augmentation, "augmentation", list(wiring["choose"]))
        if choice is not None:
            func, what, refs = choice
            metrics = [f"{r}.metrics" for r in refs]
            # a rule that requires the copies to keep their parent reads its options' closeness
            metrics += [f"{r}.copies_closeness" for r in wiring.get("choose_closeness") or []]
            steps.append(Node(func, ["spec", *metrics], f"chosen_{what}", name=f"choose_{what}"))
            outside |= set(metrics)
            inputs["chosen"] = f"chosen_{what}"
        if wiring.get("misclassified"):
            inputs["misclassified"] = "misclassified_selection"
            outside.add("misclassified_selection")
        generators = wiring.get("generators") or {}
        if generators:  # the generation settings a set is sampled with, each its own input
            inputs |= {f"{SETTING}{k}": v for k, v in _generation_settings(generators).items()}
        for gen, model in generators.items():
            inputs[f"model__{gen}"] = f"generation.{model}.model"
            inputs[f"memorisation__{gen}"] = f"generation.{gen}.memorisation_summary"
            outside |= {f"generation.{model}.model", f"generation.{gen}.memorisation_summary"}
        steps.append(
            Node(
                nodes.augmented_set,
                inputs,
                [
                    "augmented_store",
                    "augmented_manifest",
                    "augmentation_selection",
                    "augmentation_counts",
                ],
                # a generator's images are sampled, the transforms' drawn from real images
                name="generate_images"
                if generators and not wiring.get("transforms")
                else "augment_images",
            )
        )
        if wiring.get("misclassified"):  # the selected images beside their copies, and how
            for func, settings, out, step in (  # close the copies stay to them
                (nodes.copies_figure, COPIES_FIGURE, "copies_figure", "plot_copies"),
                (nodes.copies_closeness, CLOSENESS, "copies_closeness", "measure_copies"),
            ):
                sets = ["tensor_store", "augmented_manifest", "augmented_store", settings]
                steps.append(Node(func, sets, out, name=step))
    per_seed = []
    twins = (wiring.get("twins") or {}) if augmented and "chosen" in inputs else {}
    for s in seeds:
        if augmented:
            # a choice whose settings are an option experiment's takes that one's training
            # (its settings are this one's but the augmentation, its seeds too: ``_twins``)
            reads = [f"{o}.seed{s}.{d}" for o in dict.fromkeys(twins.values())
                     for d in ("model", "training_history")]  # fmt: skip
            outside |= set(reads)
            fit = Node(
                named(
                    nodes.train_classifier_augmented, seed=s, **({"twins": twins} if twins else {})
                ),
                [
                    "images",
                    "tensor_store",
                    f"seed{s}.checkpoints",
                    "spec",
                    masks,
                    "augmented_manifest",
                    "augmented_store",
                    "augmentation_selection",
                    *([inputs["chosen"]] if "chosen" in inputs else []),
                    *reads,
                ],
                [f"seed{s}.model", f"seed{s}.training_history"],
                name=f"train_classifier_seed{s}",
            )
        else:
            fit = Node(
                named(nodes.train_classifier, seed=s),
                ["images", "tensor_store", f"seed{s}.checkpoints", "spec", masks],
                [f"seed{s}.model", f"seed{s}.training_history"],
                name=f"train_classifier_seed{s}",
            )
        per_seed += [
            fit,
            Node(
                named(nodes.predict_images, seed=s),
                ["images", "tensor_store", f"seed{s}.model", "spec", masks],
                f"seed{s}.predictions",
                name=f"predict_images_seed{s}",
            ),
        ]
    template = Pipeline(
        [
            Node(
                named(nodes.experiment_spec, name=name),
                ["params:study.defaults", "params:experiment"],
                "spec",
                name="experiment_spec",
            ),
            Node(nodes.select_images, ["manifest", "spec"], "images", name="select_images"),
            *steps,
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
            **(
                {COPIES_FIGURE: COPIES_FIGURE, CLOSENESS: CLOSENESS}
                if augmented and wiring.get("misclassified")
                else {}
            ),
            **(
                {v: v for v in _generation_settings(wiring["generators"]).values()}
                if augmented and wiring.get("generators")
                else {}
            ),
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
    """Thesis Figure 20 and the misclassified strategy's selection, from the reference
    experiment's model of its first seed."""
    masks = "params:preprocessing.masks"
    return Pipeline(
        [
            Node(
                nodes.misclassified_selection,
                [
                    f"{reference}.images",
                    "tensor_store",
                    f"{reference}.seed{seed}.model",
                    f"{reference}.spec",
                    masks,
                    f"{reference}.metrics",
                    "params:study.pca",
                ],
                [
                    "report.pca.points",
                    "report.pca.figure",
                    "misclassified_selection",
                    "report.misclassified_summary",
                ],
                name="select_misclassified",
            )
        ],
        tags=["classification", "report"],
    )


def _generator_model(name: str, source: str) -> str:
    from cxr_augment.study import generation_config

    gens = generation_config()["generators"]
    if source not in gens or "model" not in gens[source]:
        raise ValueError(
            f"study.experiments.{name}: augmentation.source {source!r} is not a diffusion "
            f"generator of generation.generators ({sorted(g for g in gens if 'model' in gens[g])})"
        )
    return gens[source]["model"]


def augmentation_wiring(name: str) -> dict | None:
    """What experiment ``name``'s augmented set needs (None: it has no augmentation): the
    generators it may sample from, its methods' rule, the experiments whose validation
    results choose its settings, whether it may use the misclassified selection."""
    study = study_config()
    aug = merge(  # as experiment_spec merges them, nested settings too
        study["defaults"].get("augmentation") or {},
        study["experiments"][name].get("augmentation") or {},
    )
    if not aug:
        return None
    rules = choose_rules(aug.get("choose") or [])
    try:  # every setting the rules can choose, by label
        by_label = choice_variants(aug, rules)
    except ValueError as err:
        raise ValueError(f"experiment {name}: {err}") from None
    variants = list(by_label.values())
    sources = [v.get("source", "transforms") for v in variants]
    generators = {
        src: _generator_model(name, src) for src in dict.fromkeys(sources) if src != "transforms"
    }
    methods = aug.get("methods")
    closeness = [o["experiment"] for r in rules if closeness_required(r) is not None
                 for o in r["options"].values()]  # fmt: skip
    for other in closeness:  # only a misclassified experiment measures its copies' closeness
        wiring = augmentation_wiring(other) if other in study["experiments"] else None
        if not (wiring and wiring["misclassified"]):
            raise ValueError(
                f"experiment {name}: augmentation.choose requires parent_nearest_share, but "
                f"option experiment {other} makes no copies of selected images (it needs the "
                "misclassified strategy)"
            )
    options = [o["experiment"] for r in rules for o in r["options"].values()]
    return {
        "generators": generators,
        "transforms": "transforms" in sources,
        "rule": methods if isinstance(methods, dict) else None,
        "choose": options or None,
        "choose_closeness": closeness or None,
        "misclassified": any(v.get("strategy") == "misclassified" for v in variants),
        # twins only where choose_augmentation chooses (a methods rule chooses methods)
        "twins": _twins(study, name, by_label, options)
        if rules and not isinstance(methods, dict)
        else None,
    }


def _twins(study: dict, name: str, by_label: dict[str, dict], options: list[str]) -> dict | None:
    """The choices (by label) whose settings are an option experiment's exactly: its
    settings but the augmentation the same (its seeds too), no choice of its own, and its
    augmentation the chosen one (the source's default filled in, ``_settled``). Such a choice trains nothing again: it takes that
    experiment's training (the same bytes on the CPU; on a GPU, the run validation chose)."""
    own = merge(study["defaults"], study["experiments"][name])
    rest = {k: v for k, v in own.items() if k != "augmentation"}
    out = {}
    for other in dict.fromkeys(options):
        if other not in study["experiments"] or other == name:
            continue
        theirs = merge(study["defaults"], study["experiments"][other])
        aug = theirs.get("augmentation") or {}
        if aug.get("choose") or isinstance(aug.get("methods"), dict):
            continue  # its settings are chosen too
        if {k: v for k, v in theirs.items() if k != "augmentation"} != rest:
            continue
        out |= {label: other for label, v in by_label.items() if _settled(v) == _settled(aug)}
    return out or None


def _settled(aug: dict) -> dict:
    """Augmentation settings with the source as read (``choice.setting``): ``source:
    transforms`` written out and left out are one setting."""
    from cxr_augment.classify.choice import setting

    return {**aug, "source": setting(aug, "source")}


def is_augmented(study: dict, name: str) -> bool:
    return bool(
        study["experiments"][name].get("augmentation") or study["defaults"].get("augmentation")
    )


def build(
    experiments: list[str],
    groups: dict[str, dict],
    pca_reference: str | None,
    wirings: dict[str, dict] | None = None,
    figure22: bool = False,
    seeds: dict[str, list[int]] | None = None,
) -> Pipeline:
    """The experiments' pipelines, their group reports, Figure 20 (with the misclassified
    selection) and Figure 22.

    ``wirings`` maps an augmented experiment to what its augmented set needs
    (``augmentation_wiring``); ``seeds`` an experiment to its training seeds (default one,
    seed 1).
    """
    wirings = wirings or {}
    seeds = seeds or {}
    parts = [
        experiment_pipeline(name, wirings.get(name), tuple(seeds.get(name, (1,))))
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
        return _study_build(names, groups, pca, figure22=key == "augmentation")
    head = study["headline"]
    groups = {g: study["groups"][g] for g in head["groups"]}
    names = list(
        dict.fromkeys(
            [*head["experiments"], *[n for g in groups.values() for n in g["experiments"]]]
        )
    )
    pca = study["pca"]["experiment"] if study["pca"]["experiment"] in names else None
    return _study_build(names, groups, pca, figure22=bool(aug & set(names)))


def _study_build(names, groups, pca, figure22: bool) -> Pipeline:
    """``build`` with each experiment's augmentation wiring and seeds from the study."""
    return build(
        names,
        groups,
        pca,
        {n: w for n in names if (w := augmentation_wiring(n)) is not None},
        figure22=figure22,
        seeds={n: repeats(n) for n in names},
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
