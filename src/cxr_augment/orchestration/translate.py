"""The Kedro project as a Dagster code location, through kedro-dagster.

kedro-dagster translates every dataset into an IO manager and every node into an asset. On a
project of this size (about 500 nodes, 700 datasets) three of its choices cost a minute per code
load, and Dagster loads the code for the UI, every reload and every run:

- it repeats work whose result does not change within one translation (it sums the pipelines
  once per dataset and rediscovers them once per node output): memoised here for the duration of
  one translation;
- it mirrors every parameter dictionary, level by level, as nested Dagster config models, a
  schema of tens of thousands of fields: here each parameter input is one optional field
  (overridable at launch, as a whole; left out, the project's value), the value not copied
  into the schema;
- it makes an IO manager per dataset and hands them all to every asset and job: here
  ``definitions`` binds each asset to the IO managers it uses;
- it builds each job as a graph of ops, a second copy of every node beside its asset, whose runs
  are not linked to the assets and skip their checks: here a job is an asset job, selecting the
  assets its pipeline produces, so a job run materialises those assets and evaluates their checks;
- it makes a source asset of every dataset no node writes, so the report's inputs
  (``reporting.in.X``, each a lenient reader of ``X``'s file) were unlinked sources: here the
  report's input is ``X``'s own asset, read through ``reporting.in.X``'s IO manager.

It also logs every parameter name it converts and every in-memory dataset it does not find in the
catalog (some 20,000 lines per load). ``translate`` keeps that per-dataset chatter below WARNING
during the translation; anything else it warns about still shows.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

#: messages kedro-dagster emits for every parameter input (``params:x`` becomes ``params__x``);
#: they describe its own naming, not a problem of the project
_ROUTINE = ("is not valid under Dagster's naming convention",)


class _RoutineFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if any(text in message for text in _ROUTINE) and "`params:" in message:
            return False
        return True


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """kedro-dagster and Kedro's catalog at WARNING, routine naming notices dropped."""
    names = ("kedro_dagster", "kedro.io", "kedro.framework", "kedro.config")
    # a logger's filter sees only records created on it: filter every module logger
    import kedro_dagster.utils  # noqa: F401  (its module logger is the one that warns)

    known = list(logging.root.manager.loggerDict)
    loggers = [logging.getLogger(n) for n in known if n.startswith(names)]
    loggers += [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    routine = _RoutineFilter()
    for lg in loggers:
        lg.setLevel(max(lg.getEffectiveLevel(), logging.WARNING))
        lg.addFilter(routine)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
            lg.removeFilter(routine)


def declared_only(resolve):
    """kedro-dagster's ``ExecutorCreator._resolve_executors`` (``resolve``) over the executor
    types ``dagster.yml`` declares (named or a job's own) only: it imports the library of
    every executor it knows that is installed, used or not."""
    from kedro_dagster import dagster as kd_dagster

    def resolve_declared(self) -> tuple[dict, dict]:
        config = self._dagster_config
        declared = {type(o) for o in (config.executors or {}).values()}
        declared |= {
            type(job.executor)
            for job in (config.jobs or {}).values()
            if job.executor is not None and not isinstance(job.executor, str)
        }
        known = kd_dagster.EXECUTOR_MAP
        kd_dagster.EXECUTOR_MAP = {k: r for k, r in known.items() if r.options in declared}
        try:
            return resolve(self)
        finally:
            kd_dagster.EXECUTOR_MAP = known

    return resolve_declared


@contextlib.contextmanager
def _memoised() -> Iterator[None]:
    """Memoise, for the duration of one translation, what kedro-dagster recomputes."""
    import kedro.framework.project as kedro_project
    from kedro.pipeline import Pipeline
    from kedro_dagster import catalog as kd_catalog
    from kedro_dagster import nodes as kd_nodes
    from kedro_dagster import pipelines as kd_pipelines

    find_pipelines = kedro_project.find_pipelines
    cached_find = functools.lru_cache(maxsize=None)(find_pipelines)

    sums: dict[tuple[int, ...], Pipeline] = {}

    def cached_sum(items, start=0):
        items = list(items)
        if not (isinstance(start, Pipeline) and all(isinstance(p, Pipeline) for p in items)):
            return sum(items, start)
        key = (id(start) if start.nodes else 0, *map(id, items))
        if key not in sums:
            sums[key] = sum(items, start)
        return sums[key]

    translator = kd_nodes.NodeTranslator
    config_of = translator._get_node_parameters_config
    configs: dict[tuple[str, ...], type] = {}

    def flat_config(self, node):
        names = tuple(sorted(i for i in node.inputs if _is_param(i)))
        if names not in configs:
            configs[names] = parameters_config({n: self._catalog.load(n) for n in names})
        return configs[names]

    jobs_of = kd_pipelines.PipelineTranslator.to_dagster
    dataset_config_of = kd_catalog.CatalogTranslator._create_dataset_config
    import dagster as dg

    class DatasetConfig(dg.Config):
        """The IO manager reads and writes through its Kedro dataset; the dataset's own settings
        are in the catalog (and in each materialisation's metadata)."""

    kd_catalog.CatalogTranslator._create_dataset_config = lambda self, dataset: DatasetConfig
    translate_dataset = kd_catalog.CatalogTranslator._translate_dataset
    kd_catalog.CatalogTranslator._translate_dataset = dataset_io_manager

    # kedro-dagster asks, for every input of every node, whether the dataset is a Nothing
    # sentinel: a catalog lookup that tries every dataset pattern for a name the catalog lacks
    # (about 4,000 lookups of 1,000 names); and it formats every node's name once per dataset
    from kedro_dagster import translator as kd_translator
    from kedro_dagster import utils as kd_utils

    modules = (kd_catalog, kd_nodes, kd_pipelines, kd_translator)
    originals = {
        (m, f): getattr(m, f)
        for m in modules
        for f in ("is_nothing_asset_name", "format_node_name")
        if hasattr(m, f)
    }
    nothing: dict[tuple[int, str], bool] = {}

    def cached_nothing(catalog, dataset_name):
        key = (id(catalog), dataset_name)
        if key not in nothing:
            nothing[key] = kd_utils.is_nothing_asset_name(catalog, dataset_name)
        return nothing[key]

    cached_format = functools.lru_cache(maxsize=None)(kd_utils.format_node_name)
    # and, for each output of each node, it looks for the node's first pipeline by scanning
    # every pipeline's nodes (about 380,000 name comparisons per load): one scan per translation
    group_of = kd_nodes._get_node_group_name
    first_pipeline: dict[int, tuple[object, dict[str, str]]] = {}

    def cached_group(node):
        try:
            pipes = kedro_project.find_pipelines()
        except Exception:
            return group_of(node)  # kedro-dagster's warning and "__none__"
        held = first_pipeline.get(id(pipes))
        if held is None or held[0] is not pipes:
            first: dict[str, str] = {}
            for name, pipe in pipes.items():
                if name != "__default__":
                    for n in pipe.nodes:
                        first.setdefault(n.name, name)
            held = first_pipeline[id(pipes)] = (pipes, first)
        if node.name not in held[1]:
            return group_of(node)  # in no pipeline: kedro-dagster's warning and "__none__"
        if "." in node.name:  # namespaced: the namespace's hierarchy, whatever the pipeline
            return kd_utils._normalize_group_name(node.name.split(".")[:-1])
        return held[1][node.name]

    # each such lookup matches the name against every catalog pattern with `parse.parse`,
    # which compiles the pattern anew on every call: compile each pattern once
    import parse as parse_lib
    from kedro.io import catalog_config_resolver as kd_resolver

    parse_original = kd_resolver.parse
    compiled = functools.lru_cache(maxsize=None)(parse_lib.compile)
    kd_resolver.parse = lambda pattern, string: compiled(pattern).parse(string)
    for module, attr in originals:
        setattr(module, attr, cached_nothing if attr == "is_nothing_asset_name" else cached_format)
    # Dagster parses each asset function's docstring twice (input and output descriptions):
    # kedro-dagster's functions share one docstring, parsed once here
    from dagster._core.definitions import inference
    from kedro.io import core as kedro_io_core

    parse_docstring = inference.parse
    inference.parse = functools.lru_cache(maxsize=None)(parse_docstring)
    # Kedro looks up each dataset's class under every prefix (kedro.io., kedro_datasets., ...),
    # about 2,400 lookups, most of them failed imports: each class path looked up once
    load_obj = kedro_io_core._load_obj
    kedro_io_core._load_obj = functools.lru_cache(maxsize=None)(load_obj)

    # kedro-dagster imports the library of every executor it knows that is installed, used or
    # not: dagster-k8s (the production extra) costs about 0.4 s of every load. Only the
    # executors dagster.yml declares are resolved; a missing library still gets its error.
    from kedro_dagster import dagster as kd_dagster

    resolve_executors = kd_dagster.ExecutorCreator._resolve_executors
    kd_dagster.ExecutorCreator._resolve_executors = declared_only(resolve_executors)

    # the report reads each result X through `reporting.in.X`, a lenient copy of X's dataset
    # (None when X is not made): its input is X's own asset, loaded by reporting.in.X's IO
    # manager, so the report is downstream of what it shows, not of a source asset per input
    key_of = kd_nodes.get_asset_key_from_dataset_name
    in_params_of = translator._get_in_asset_params
    kd_nodes.get_asset_key_from_dataset_name = report_input_keys(key_of)
    translator._get_in_asset_params = report_input_managers(in_params_of)

    kedro_project.find_pipelines = cached_find
    kd_nodes._get_node_group_name = cached_group
    kd_catalog.sum = cached_sum
    translator._get_node_parameters_config = flat_config
    kd_pipelines.PipelineTranslator.to_dagster = asset_jobs
    try:
        yield
    finally:
        kd_nodes.get_asset_key_from_dataset_name = key_of
        translator._get_in_asset_params = in_params_of
        kd_dagster.ExecutorCreator._resolve_executors = resolve_executors
        kd_nodes._get_node_group_name = group_of
        _NODE_MAPS.clear()
        inference.parse = parse_docstring
        kedro_io_core._load_obj = load_obj
        kd_resolver.parse = parse_original
        for (module, attr), original in originals.items():
            setattr(module, attr, original)
        kedro_project.find_pipelines = find_pipelines
        del kd_catalog.sum
        translator._get_node_parameters_config = config_of
        kd_pipelines.PipelineTranslator.to_dagster = jobs_of
        kd_catalog.CatalogTranslator._create_dataset_config = dataset_config_of
        kd_catalog.CatalogTranslator._translate_dataset = translate_dataset


def report_input_keys(key_of):
    """kedro-dagster's ``get_asset_key_from_dataset_name`` (``key_of``) with a report input
    ``reporting.in.X`` keyed as ``X``."""
    from cxr_augment.report.study_report import source_of

    def key(dataset_name: str, env: str):
        return key_of(source_of(dataset_name) or dataset_name, env)

    return key


def report_input_managers(in_params_of):
    """kedro-dagster's ``NodeTranslator._get_in_asset_params`` (``in_params_of``) with, for a
    report input ``reporting.in.X``, the IO manager of ``reporting.in.X`` as the input manager
    (kedro-dagster's key for it), so that a missing ``X`` loads as None."""
    from cxr_augment.report.study_report import source_of

    def in_params(self, dataset_name: str, asset_name: str, out_dataset_names) -> dict:
        params = in_params_of(self, dataset_name, asset_name, out_dataset_names)
        if source_of(dataset_name) is not None:
            params["input_manager_key"] = f"{self._env}__{asset_name}_io_manager"
        return params

    return in_params


def drop_report_input_sources(location) -> list[str]:
    """Removes, in place, the source asset kedro-dagster makes for each report input
    ``reporting.in.X`` (keyed as ``X`` by ``report_input_keys``) where a node makes ``X``:
    that node's asset is the input. A report input whose ``X`` no node makes stays, as the
    source asset ``X``. Returns the removed names."""
    import dagster as dg
    from kedro_dagster.utils import format_dataset_name

    from cxr_augment.report.study_report import INPUT_PREFIX

    prefix = format_dataset_name(INPUT_PREFIX)  # reporting__in__
    made = {
        key
        for asset in location.named_assets.values()
        if not isinstance(asset, dg.AssetSpec)
        for key in asset.keys
    }
    dropped = [
        name
        for name, asset in location.named_assets.items()
        if name.startswith(prefix) and isinstance(asset, dg.AssetSpec) and asset.key in made
    ]
    for name in dropped:
        del location.named_assets[name]
    return dropped


_NODE_MAPS: dict[tuple[int, ...], dict] = {}


def dataset_io_manager(self, dataset, dataset_name: str):
    """``CatalogTranslator._translate_dataset`` without a class per dataset (see
    ``io_managers.DatasetIOManager``): (IO manager, partitions definition, partition mappings)."""
    import dagster as dg
    from kedro.pipeline import Pipeline
    from kedro_dagster.datasets.partitioned_dataset import DagsterPartitionedDataset
    from kedro_dagster.utils import format_node_name

    partitions_def = partition_mappings = None
    if isinstance(dataset, DagsterPartitionedDataset):
        partitions_def = dataset._get_partitions_definition()
        partition_mappings = dataset._get_partition_mappings()
    key = tuple(map(id, self._pipelines))
    if key not in _NODE_MAPS:  # one map per translation (cleared after it)
        nodes = sum(self._pipelines, start=Pipeline([])).nodes
        _NODE_MAPS[key] = {format_node_name(n.name): n for n in nodes}
    from cxr_augment.orchestration.io_managers import DatasetIOManager

    manager = DatasetIOManager(dataset, dataset_name, _NODE_MAPS[key], self._hook_manager)
    definition = dg.IOManagerDefinition.hardcoded_io_manager(
        manager, description=f"IO manager for Kedro dataset `{dataset_name}`."
    )
    return definition, partitions_def, partition_mappings


def _is_param(name: str) -> bool:
    return name.startswith("params:") or name == "parameters"


def parameters_config(values: dict[str, Any]) -> type:
    """A Dagster config class with one optional field per parameter input.

    The field is typed ``Any``: Dagster validates nothing inside it (the node does, as in a Kedro
    run). Left out of a launch's run config, the node gets the parameter's value from the
    project's configuration; given (other than null), the value replaces it as a whole. The
    values are not written into the run-config schema as defaults: the study's parameter
    dictionaries, repeated for every node that reads them, made up most of the code
    location's snapshot (megabytes of JSON, serialised and hashed on every load).
    """
    import dagster as dg
    from pydantic import ConfigDict, create_model

    class ParametersConfig(dg.Config):
        model_config = ConfigDict(extra="allow", frozen=False)

        def model_dump(self, *args, **kwargs) -> dict[str, Any]:
            out = super().model_dump(*args, **kwargs)
            for name, value in values.items():
                if out.get(name) is None:
                    out[name] = value
            return out

    fields = {name: (Any, None) for name in values}
    return create_model("ParametersConfig", __base__=ParametersConfig, **fields)


def asset_jobs(self) -> dict:
    """Each job of ``dagster.yml`` as an asset job over the assets its pipeline produces.

    Replaces kedro-dagster's op-graph jobs (``PipelineTranslator.to_dagster``) inside
    ``translate``. The pipeline filters (tags, node names, ...) and the executor reference of
    ``dagster.yml`` keep their meaning.
    """
    import dagster as dg
    from kedro.framework.project import pipelines
    from kedro_dagster.utils import get_asset_key_from_dataset_name, get_filter_params_dict

    if _PRELOAD:
        warm_step_processes(self._named_executors, self._dagster_config, _PRELOAD)
    jobs: dict = {}
    for job_name, job_config in (self._dagster_config.jobs or {}).items():
        options = job_config.pipeline
        if options.pipeline_name not in pipelines:
            raise ValueError(
                f"dagster.yml: job {job_name!r} names pipeline {options.pipeline_name!r}, which "
                f"is not registered (pipelines: {sorted(pipelines)})"
            )
        pipeline = pipelines[options.pipeline_name].filter(
            **get_filter_params_dict(options.model_dump())
        )
        keys = [
            get_asset_key_from_dataset_name(out, self._env)
            for node in pipeline.nodes
            for out in node.outputs
        ]
        executor = job_config.executor
        if executor is not None and not isinstance(executor, str):
            executor = f"{job_name}__executor"
        if executor is not None and executor not in self._named_executors:
            raise ValueError(
                f"dagster.yml: job {job_name!r} names executor {executor!r}; defined executors: "
                f"{sorted(self._named_executors)}"
            )
        jobs[job_name] = dg.define_asset_job(
            job_name,
            selection=dg.AssetSelection.assets(*keys),
            executor_def=self._named_executors[executor] if executor else None,
            description=f"Materialises the assets of the Kedro pipeline "
            f"`{options.pipeline_name}` ({len(pipeline.nodes)} nodes) and evaluates their checks.",
            tags={"kedro_pipeline": options.pipeline_name},
        )
    return jobs


#: the definitions module that the multiprocess executors' step processes preload (set by
#: ``translate`` for the duration of one translation)
_PRELOAD: str | None = None
#: ``CXR_DAGSTER_FORKSERVER=off``: step processes start Dagster's default way
FORKSERVER_SWITCH = "CXR_DAGSTER_FORKSERVER"
#: what the forkserver imports first: its step processes' torch threads (step_server.py)
STEP_SERVER = "cxr_augment.orchestration.step_server"
#: what it imports last, after the definitions: their jobs built once (step_jobs.py)
STEP_JOBS = "cxr_augment.orchestration.step_jobs"


def warm_step_processes(named_executors: dict, dagster_config, module: str) -> None:
    """Every multiprocess executor of ``dagster.yml`` (named or a job's own) starts its step
    processes from a forkserver that has imported ``module``, the code location's definitions.

    Dagster's multiprocess executor starts each step in a new process that imports the code
    location and translates the project again before the step begins (about 8 s on 2 cores,
    for every step of every run). With ``start_method: forkserver`` and ``preload_modules``,
    the run's forkserver loads the definitions once and each step process is a fork of it: a
    step finds the definitions already built. The forkserver first imports ``step_server``, so
    that each step process runs torch with one thread, as a step process started the default
    way does (``threads.py``), and last ``step_jobs``, which builds the definitions' jobs (Dagster
    builds them lazily, which each step process would do again). The executor's own settings
    (``max_concurrent``, ``retries``) are kept; ``CXR_DAGSTER_FORKSERVER=off`` leaves Dagster's
    default start.
    """
    from cxr_augment.switches import switched_on

    if not switched_on(FORKSERVER_SWITCH):
        return
    import dagster as dg
    from kedro_dagster.config.models import MultiprocessExecutorOptions

    declared = dict(dagster_config.executors or {})
    for job_name, job in (dagster_config.jobs or {}).items():
        if job.executor is not None and not isinstance(job.executor, str):
            declared[f"{job_name}__executor"] = job.executor  # kedro-dagster's name for it
    for name, options in declared.items():
        # exactly Dagster's multiprocess executor: kedro-dagster's options of the executors
        # that span machines (Kubernetes, Docker, Celery on either) subclass its options
        if type(options) is MultiprocessExecutorOptions and name in named_executors:
            config = options.model_dump()
            # the thread cap before the code; the jobs built after it
            preload = ["dagster", STEP_SERVER, module, STEP_JOBS]
            config["start_method"] = {"forkserver": {"preload_modules": preload}}
            named_executors[name] = dg.multiprocess_executor.configured(config)


def translate(env: str, project_path: Path | None = None, preload: str | None = None):
    """kedro-dagster's code location for Kedro environment ``env`` (quiet, memoised).

    ``preload``: the module that defines the code location; its multiprocess executors'
    step processes then fork from a process that has loaded it (``warm_step_processes``).
    """
    global _PRELOAD
    from kedro_dagster import KedroProjectTranslator

    from cxr_augment.orchestration import metadata

    metadata.install()
    _PRELOAD = preload
    with _memoised():
        translator = KedroProjectTranslator(env=env, project_path=project_path)
        # Kedro's session configures logging: quieten after it
        with _quiet():
            try:
                location = translator.to_dagster()
            finally:
                _PRELOAD = None
            drop_report_input_sources(location)
            describe(location, env, translator._catalog)
    return location


# ---------------------------------------------------------------- descriptions, groups, versions

_GENERIC = ("Node outputs as a single value", "Kedro node ")
_EXPERIMENT = re.compile(r"^(ptx|pe)_(aug|ddim|sweep)_(.+)$|^(ptx|pe)_(.+)$")


def experiment_group(pipeline: str, namespace: str) -> str:
    """A short hierarchical group for an experiment's assets: ``augmentation/ptx_aug/
    rotation_balanced`` for ``ptx_aug_rotation_balanced``, ``classification/pe/densenet121``
    for ``pe_densenet121`` (the UI shows each level as a folder, so no name is cut)."""
    m = _EXPERIMENT.match(namespace)
    if m is None:
        return f"{pipeline}/{namespace}"
    if m.group(1):
        return f"{pipeline}/{m.group(1)}_{m.group(2)}/{m.group(3)}"
    return f"{pipeline}/{m.group(4)}/{m.group(5)}"


def _first_line(func) -> str:
    from cxr_augment.orchestration.versions import _unwrap

    doc = (_unwrap(func)[0].__doc__ or "").strip()
    return " ".join(doc.split("\n\n")[0].split())


def describe(location, env: str, catalog) -> None:
    """Descriptions, groups and code versions on the translated assets, in place.

    - description: the catalog entry's ``metadata.description`` (kedro-dagster puts it there);
      for a dataset without one, the producing node and the first paragraph of its function's
      docstring, never kedro-dagster's generic text;
    - group: an experiment's assets (its checkpoint folder included) in ``experiment_group``;
    - code version: the producing node's version (``versions.node_version``).
    """
    import dagster as dg
    from kedro.framework.project import pipelines

    from cxr_augment.orchestration.versions import is_parameter, node_version

    owner: dict[str, str] = {}  # namespace -> the first named pipeline holding it
    producer: dict[str, object] = {}
    home: dict[str, str] = {}  # node -> its pipeline (not a headline subset of one)
    for name, pipe in pipelines.items():
        if name.startswith("__") or name.endswith("_headline"):
            continue
        for node in pipe.nodes:
            home.setdefault(node.name, name)
            for out in node.outputs:
                producer[out] = node
            if node.namespace and node.namespace.split(".")[0] != name:
                owner.setdefault(node.namespace.split(".")[0], name)
    for name, pipe in pipelines.items():  # a headline subset's own node (its table): its
        if name.endswith("_headline"):  # pipeline's group
            for node in pipe.nodes:
                home.setdefault(node.name, name.removesuffix("_headline"))
                for out in node.outputs:
                    producer.setdefault(out, node)

    from cxr_augment.study import study_config

    titles = {g: v.get("title") for g, v in (study_config().get("groups") or {}).items()}
    versions: dict[str, str] = {}

    def version(node) -> str:
        if node.name not in versions:
            params = {n: catalog.load(n) for n in node.inputs if is_parameter(n)}
            versions[node.name] = node_version(node, params)
        return versions[node.name]

    def dataset_of(key: dg.AssetKey) -> str:
        return ".".join(key.path[1:] if key.path[0] == env else key.path)

    def group_for(dataset: str, current: str | None) -> str | None:
        head = dataset.split(".")[0]
        if head in owner:
            return experiment_group(owner[head], head)
        node = producer.get(dataset)
        if node is not None and not node.namespace:  # kedro-dagster may pick a headline subset
            return home.get(node.name, current)
        if head in pipelines and current == "external":  # e.g. a generator's checkpoints
            return head
        return current

    def fix(spec: dg.AssetSpec) -> dg.AssetSpec:
        dataset = dataset_of(spec.key)
        node = producer.get(dataset)
        description = spec.description or ""
        if not description or description.startswith(_GENERIC):
            if node is not None:
                doc = _first_line(node.func)
                description = f"Output of node `{node.name}`" + (f": {doc}" if doc else ".")
            elif dataset.endswith(".checkpoints"):
                description = (
                    "The training's checkpoint folder (the last checkpoints, from which an "
                    "interrupted training resumes); written by the training node itself."
                )
            else:
                description = f"Source dataset `{dataset}` (no node makes it)."
        parts = dataset.split(".")
        for i in range(len(parts) - 1):  # report.<group>.x, reporting.in.<group>.x
            if parts[i] in ("report", "in") and titles.get(parts[i + 1]):
                description = f"{titles[parts[i + 1]]}. {description}"
                break
        return spec.replace_attributes(
            description=description,
            group_name=group_for(dataset, spec.group_name),
            code_version=version(node) if node is not None else spec.code_version,
        )

    for name, asset in list(location.named_assets.items()):
        if isinstance(asset, dg.AssetSpec):
            location.named_assets[name] = fix(asset)
        else:
            location.named_assets[name] = asset.map_asset_specs(fix)


# ---------------------------------------------------------------- definitions


def definitions(location, checks: list, default_executor=None):
    """The ``Definitions`` of a translated location, each asset bound to the IO managers it
    uses.

    kedro-dagster makes an IO manager per dataset (about 700 here). Given them all as
    top-level resources, Dagster merges every one into every asset (about 600 x 700
    requirement checks per load) and puts every one in every job's run-config schema. Bound
    per asset instead, an asset carries the few it reads and writes, a job the ones of its
    assets, and the top level keeps only the default ``io_manager``. An external asset (a
    source no node makes) is bound to its own IO manager, so a job that reads it can load it.
    """
    import dagster as dg
    from dagster._core.definitions.assets.definition.assets_definition import AssetsDefinition
    from dagster._core.execution.build_resources import wrap_resources_for_execution

    from cxr_augment.orchestration import op_subsets
    from cxr_augment.orchestration.io_managers import ValueFilesystemIOManager

    op_subsets.install()  # op-selection runs keep the blocking checks' inputs (op_subsets.py)

    # wrapped once: Dagster requires an IO manager bound to several assets to be the same
    # object in each
    resources = wrap_resources_for_execution(location.named_resources)
    shared = {k: v for k, v in resources.items() if not k.endswith("_io_manager")}
    # the in-memory datasets' (pickled under the instance's storage), versioned by value
    shared["io_manager"] = ValueFilesystemIOManager()

    def bind(asset):
        if isinstance(asset, dg.AssetSpec):
            asset = AssetsDefinition(specs=[asset])
        wanted = {k: resources[k] for k in asset.required_resource_keys if k in resources}
        wanted.pop("io_manager", None)  # the top level's, bound once there
        return asset.with_resources(wanted) if wanted else asset

    return dg.Definitions(
        assets=[bind(a) for a in location.named_assets.values()],
        asset_checks=checks,
        resources=shared,
        jobs=list(location.named_jobs.values()),
        schedules=list(location.named_schedules.values()),
        sensors=list(location.named_sensors.values()),
        executor=location.named_executors.get("sequential", default_executor),
    )
