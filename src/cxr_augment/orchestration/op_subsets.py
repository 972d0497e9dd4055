"""Op-selection runs of jobs with blocking asset checks (``dagster job execute -o``).

In a job, an op that reads an asset with a blocking check waits for the check: Dagster wires
that input to the check's output and to the asset's producing output as one
``BlockingAssetChecksDependencyDefinition``, and passes the asset's value alone. When a run
selects ops (``get_graph_subset``), Dagster 1.13 rebuilds that input as a plain fan-in
(``MultiDependencyDefinition``): the op then asks the IO manager for a list of both outputs,
and the check's output has no stored value, so the step fails (``FileNotFoundError`` under
``storage/<asset key>``). The project's blocking checks sit on the split table, the
preprocessing report, the manifest, each generator's memorisation summary and each augmented
set, so, for example, ``dagster job execute -j augmentation -o "*<experiment>__evaluate_asset"``
failed at the experiment's training. Asset selections (the UI's "Materialize", ``resume``)
were not affected.

``install`` wraps Dagster's ``_get_graph_subset`` so that such an input stays a blocking-check
dependency, on the selected checks and, when it is selected, the producing output (Dagster
then loads the asset from its IO manager once the checks have run, as in the whole job).
"""

from __future__ import annotations

import functools

_INSTALLED = "_cxr_keeps_blocking_checks"


def _name(invocation) -> str:
    return invocation if isinstance(invocation, str) else (invocation.alias or invocation.name)


def keep_blocking_checks(graph, subset):
    """``subset`` (Dagster's op-selection subset of ``graph``) with every input that was a
    blocking-check dependency in ``graph`` made one again, over what the subset kept."""
    from dagster._core.definitions.dependency import (
        BlockingAssetChecksDependencyDefinition,
        DependencyDefinition,
        MultiDependencyDefinition,
    )
    from dagster._core.definitions.graph_definition import SubselectedGraphDefinition

    original = {_name(inv): deps for inv, deps in graph.dependencies.items()}
    fixed, changed = {}, False
    for invocation, deps in subset.dependencies.items():
        before = original.get(_name(invocation), {})
        deps = dict(deps)
        for input_name, dep in list(deps.items()):
            was = before.get(input_name)
            if not (
                isinstance(was, BlockingAssetChecksDependencyDefinition)
                and isinstance(dep, MultiDependencyDefinition)
            ):
                continue
            kept = {(d.node, d.output) for d in dep.get_node_dependencies()}
            checks = [d for d in was.asset_check_dependencies if (d.node, d.output) in kept]
            other = was.other_dependency
            if other is not None and (other.node, other.output) not in kept:
                other = None
            if checks:
                deps[input_name] = BlockingAssetChecksDependencyDefinition(
                    asset_check_dependencies=checks, other_dependency=other
                )
            elif other is not None:
                deps[input_name] = DependencyDefinition(node=other.node, output=other.output)
            else:
                del deps[input_name]  # nothing selected upstream: the asset is loaded
            changed = True
        fixed[invocation] = deps
    if not changed:
        return subset
    return SubselectedGraphDefinition(
        parent_graph_def=graph,
        dependencies=fixed,
        node_defs=list(subset.node_defs),
        input_mappings=list(subset.input_mappings),
        output_mappings=list(subset.output_mappings),
    )


def install() -> bool:
    """Wrap Dagster's op-selection subsetting once (``keep_blocking_checks``). False where
    this Dagster has no ``_get_graph_subset`` to wrap."""
    from dagster._core.definitions import op_selection

    subset_of = getattr(op_selection, "_get_graph_subset", None)
    if subset_of is None:
        return False
    if getattr(subset_of, _INSTALLED, False):
        return True

    @functools.wraps(subset_of)
    def _get_graph_subset(graph, *args, **kwargs):
        return keep_blocking_checks(graph, subset_of(graph, *args, **kwargs))

    setattr(_get_graph_subset, _INSTALLED, True)
    op_selection._get_graph_subset = _get_graph_subset
    return True
