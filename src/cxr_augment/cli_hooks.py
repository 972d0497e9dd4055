"""Kedro CLI hooks of the project (the ``kedro.cli_hooks`` entry point in pyproject.toml).

``kedro viz run`` asks PyPI for kedro-viz's latest version before it starts its server (one
request, 30 s timeout, on every launch; kedro-viz has no setting to turn it off). The project
runs offline: for ``kedro viz`` commands the latest version is the installed one, so no
request is made and no update notice printed. The server's own check is answered in
``pipeline_registry._no_kedro_viz_update_check``.
"""

from __future__ import annotations

from kedro.framework.cli.hooks import cli_hook_impl


@cli_hook_impl
def before_command_run(project_metadata, command_args: list[str]) -> None:
    if command_args[:1] != ["viz"]:
        return
    try:
        from kedro_viz.integrations import pypi
    except ImportError:  # kedro-viz is an optional tool
        return
    from packaging.version import parse

    installed = parse(str(pypi.__version__))
    pypi.get_latest_version = lambda: installed
