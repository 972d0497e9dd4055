"""What kedro-viz shows: each experiment a collapsed modular pipeline, no false update banner."""

from __future__ import annotations

# kedro-viz is a required dependency (pinned in pyproject.toml): a broken install fails these
# tests at import instead of skipping them
import kedro_viz  # noqa: F401
import pytest


@pytest.fixture(scope="module")
def registered():
    from kedro.framework.project import configure_project

    from cxr_augment.pipeline_registry import register_pipelines

    configure_project("cxr_augment")  # find_pipelines needs the package's name

    return register_pipelines()


def _experiments(kind: str) -> set[str]:
    from cxr_augment.pipelines.classification.pipeline import is_augmented
    from cxr_augment.study import study_config

    study = study_config()
    return {n for n in study["experiments"] if is_augmented(study, n) == (kind == "augmentation")}


def test_a_dotted_node_name_is_its_namespace(registered):
    """kedro-viz groups nodes by ``Node.namespace``, never by their names: a node named
    ``<experiment>.<step>`` without that namespace would sit loose at the top level. A node's
    name is its namespace plus its own name, so the names Dagster and the tests rely on are
    the namespaces kedro-viz draws."""
    for name, pipe in registered.items():
        loose = sorted(n.name for n in pipe.nodes if "." in n.name and not n.namespace)
        assert loose == [], name
        for node in pipe.nodes:
            if node.namespace:
                assert node.name.startswith(node.namespace + "."), node.name


@pytest.mark.parametrize("kind", ["classification", "augmentation"])
def test_each_experiment_is_one_top_level_modular_pipeline(registered, kind):
    """kedro-viz's own tree of the pipeline: the top level holds one (collapsed, by default)
    modular pipeline per experiment and nothing nested; each holds its experiment's nodes."""
    from kedro_viz.constants import ROOT_MODULAR_PIPELINE_ID
    from kedro_viz.data_access.repositories.modular_pipelines import (
        ModularPipelinesRepository,
    )
    from kedro_viz.models.flowchart.model_utils import GraphNodeType
    from kedro_viz.utils import _hash

    pipe = registered[kind]
    repo = ModularPipelinesRepository()
    repo.populate_tree(pipe)
    tree = repo.as_dict()
    top = {
        c.id
        for c in tree[ROOT_MODULAR_PIPELINE_ID].children
        if c.type == GraphNodeType.MODULAR_PIPELINE
    }
    assert top == _experiments(kind)
    assert set(tree) == top | {ROOT_MODULAR_PIPELINE_ID}
    for exp in top:
        tasks = {c.id for c in tree[exp].children if c.type == GraphNodeType.TASK}
        assert tasks == {_hash(str(n)) for n in pipe.nodes if n.namespace == exp}
        assert tasks


def test_kedro_viz_server_reports_no_update_without_asking_pypi(monkeypatch):
    """Offline kedro-viz 12.5 answers ``/api/version`` with ``latest: "None"`` and
    ``is_outdated: true`` ("Kedro-Viz None is here!"); in its server the registry makes the
    installed version the latest, without a request."""
    import requests
    from kedro_viz import __version__
    from kedro_viz.api.rest.responses import version

    from cxr_augment.pipeline_registry import _no_kedro_viz_update_check

    def no_network(*args, **kwargs):
        raise AssertionError(f"network request: {args} {kwargs}")

    monkeypatch.setattr(requests, "get", no_network)
    # restored after the test: the module is kedro-viz's, shared by the whole session
    monkeypatch.setattr(version, "get_latest_version", version.get_latest_version)
    _no_kedro_viz_update_check()
    response = version.get_version_response()
    assert (response.installed, response.latest, response.is_outdated) == (
        __version__,
        __version__,
        False,
    )


def test_kedro_viz_commands_ask_pypi_nothing(monkeypatch):
    """``kedro viz run`` asks PyPI for the latest version before starting its server; the
    project's CLI hook (installed as a ``kedro.cli_hooks`` entry point) answers with the
    installed version for ``viz`` commands, and leaves other commands alone."""
    from importlib.metadata import entry_points

    import requests
    from kedro.framework.cli.hooks import get_cli_hook_manager
    from kedro_viz import __version__
    from kedro_viz.integrations import pypi
    from packaging.version import parse

    from cxr_augment import cli_hooks

    assert "cxr_augment.cli_hooks" in {ep.value for ep in entry_points(group="kedro.cli_hooks")}, (
        "reinstall the project (make install) to register its CLI hooks"
    )
    assert get_cli_hook_manager().is_registered(cli_hooks) or any(
        getattr(p, "__name__", None) == "cxr_augment.cli_hooks"
        for p in get_cli_hook_manager().get_plugins()
    )

    def no_network(*args, **kwargs):
        raise AssertionError(f"network request: {args} {kwargs}")

    monkeypatch.setattr(requests, "get", no_network)
    monkeypatch.setattr(pypi, "get_latest_version", pypi.get_latest_version)
    original = pypi.get_latest_version
    cli_hooks.before_command_run(None, ["run", "--pipeline", "x"])
    assert pypi.get_latest_version is original
    cli_hooks.before_command_run(None, ["viz", "run"])
    assert pypi.get_latest_version() == parse(__version__)
    assert not pypi.is_running_outdated_version(parse(__version__), pypi.get_latest_version())
