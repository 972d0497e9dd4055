"""Op-selection runs of a job whose asset has a blocking check (``op_subsets.py``)."""

from __future__ import annotations

import dagster as dg
from dagster._core.definitions import op_selection
from dagster._core.execution.api import create_execution_plan

from cxr_augment.orchestration import op_subsets


class _Store(dg.IOManager):
    """Values by asset key, in memory; a value never stored is an error, as a file's is."""

    def __init__(self) -> None:
        self.values: dict = {}

    def handle_output(self, context, obj) -> None:
        if context.has_asset_key:
            self.values[context.asset_key] = obj

    def load_input(self, context):
        key = context.asset_key
        if key not in self.values:
            raise FileNotFoundError(f"nothing stored for {key.to_user_string()}")
        return self.values[key]


def _job(tmp_path):
    """``made`` on an IO manager of its own, as each Kedro dataset is; the check's output on
    the default filesystem one, as in the project."""

    @dg.asset(io_manager_key="made_store")
    def made():
        return 7

    @dg.asset_check(asset=made, blocking=True)
    def made_is_positive(made) -> dg.AssetCheckResult:
        return dg.AssetCheckResult(passed=made > 0)

    @dg.asset(io_manager_key="made_store")
    def doubled(made):
        return 2 * made

    store = _Store()
    defs = dg.Definitions(
        assets=[made, doubled],
        asset_checks=[made_is_positive],
        jobs=[dg.define_asset_job("both")],
        resources={
            "made_store": store,
            "io_manager": dg.FilesystemIOManager(base_dir=str(tmp_path)),
        },
    )
    return defs.resolve_job_def("both"), store


def _source(job, step: str, input_name: str) -> str:
    plan = create_execution_plan(job)
    (source,) = [i.source for i in plan.get_step_by_key(step).step_inputs if i.name == input_name]
    return type(source).__name__


def _installed():
    op_subsets.install()
    return op_selection._get_graph_subset


def test_unwrapped_dagster_loads_the_check_output_in_an_op_selection(monkeypatch, tmp_path):
    """What the wrapper is for: Dagster's own subset turns the blocking-check input into a
    fan-in, and the op asks for the check's stored output, which does not exist."""
    wrapped = _installed()
    monkeypatch.setattr(op_selection, "_get_graph_subset", wrapped.__wrapped__)
    job, _ = _job(tmp_path)
    assert _source(job, "doubled", "made") == "FromMultipleSourcesLoadSingleSource"
    subset = job.get_subset(op_selection=["*doubled"])
    assert _source(subset, "doubled", "made") == "FromMultipleSources"
    result = subset.execute_in_process(raise_on_error=False)
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert failure.step_key == "doubled"
    assert "FileNotFoundError" in str(failure.event_specific_data.error)


def test_an_op_selection_keeps_the_blocking_check_and_passes_the_assets_value(tmp_path):
    _installed()
    job, store = _job(tmp_path)
    subset = job.get_subset(op_selection=["*doubled"])
    assert _source(subset, "doubled", "made") == "FromMultipleSourcesLoadSingleSource"
    result = subset.execute_in_process()
    assert result.success
    assert store.values[dg.AssetKey("doubled")] == 14  # the value, not a list of two
    (check,) = result.get_asset_check_evaluations()
    assert check.passed
    # the check still runs before the op that reads the asset
    order = [e.step_key for e in result.all_events if e.event_type_value == "STEP_START"]
    assert order.index("made_made_is_positive") < order.index("doubled")


def test_an_op_selection_without_the_producer_loads_the_asset_after_its_check(tmp_path):
    _installed()
    job, store = _job(tmp_path)
    store.values[dg.AssetKey("made")] = 5  # made by an earlier run
    subset = job.get_subset(op_selection=["made_made_is_positive", "doubled"])
    result = subset.execute_in_process()
    assert result.success and store.values[dg.AssetKey("doubled")] == 10
    # and selecting the reader alone loads the asset as Dagster does
    alone = job.get_subset(op_selection=["doubled"])
    assert alone.execute_in_process().success


def test_install_wraps_once():
    first = _installed()
    assert op_subsets.install() is True
    assert op_selection._get_graph_subset is first
