"""End to end: the Dagster webserver over a tiny copy of the project, served as `make dagster`
serves it (the warm code server and a workspace pointing at it); a materialisation launched
through its GraphQL API succeeds, and so do the asset checks its job evaluates; the second run
starts in the warm launcher's standby worker."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.test_dagster import PROJECT, TINY

RUN_EVENTS = """
query RunEvents($runId: ID!, $cursor: String) {
  logsForRun(runId: $runId, afterCursor: $cursor) {
    __typename
    ... on EventConnection {
      cursor
      hasMore
      events {
        __typename
        ... on AssetCheckEvaluationEvent { evaluation { checkName success } }
        ... on MaterializationEvent { assetKey { path } }
      }
    }
  }
}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def webserver(tmp_path_factory, tiny_atlas, parameters):
    root = tmp_path_factory.mktemp("project")
    shutil.copy(PROJECT / "pyproject.toml", root / "pyproject.toml")
    shutil.copytree(PROJECT / "conf", root / "conf", ignore=shutil.ignore_patterns("local"))
    (root / "src").mkdir()
    (root / "conf" / "local").mkdir()
    (root / "conf" / "local" / "parameters_tiny.yml").write_text(yaml.safe_dump(TINY))
    # the demo dataset where the catalog reads it (conf/base/globals.yml), rendered here from
    # the tests' tiny atlas: the jobs launched below read it (the demo_data job's own run is
    # tests/test_dagster.py's)
    from tests.pipelines.test_demo_data import _run as render_demo

    render_demo(root / "data" / "01_raw", tiny_atlas, parameters, seed=3)
    home = root / ".dagster_home"
    home.mkdir()
    shutil.copy(PROJECT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    port = _free_port()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "KEDRO_DISABLE_TELEMETRY": "true",
        "DAGSTER_DISABLE_TELEMETRY": "true",
        "MPLBACKEND": "Agg",
        "OMP_NUM_THREADS": "1",
    }
    # as `make dagster` serves it (orchestration/dev.py): the warm code server, and the
    # webserver over a workspace that points at it
    from cxr_augment.orchestration.dev import wait_for_code_server, workspace

    grpc_port = _free_port()
    code_log = open(root / "code_server.log", "w")  # noqa: SIM115 (closed below)
    code_server = subprocess.Popen(
        [sys.executable, "-m", "cxr_augment.orchestration.code_server",
         "-m", "cxr_augment.definitions", "--port", str(grpc_port), "-d", str(root)],
        cwd=root, env=env, stdout=code_log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    wait_for_code_server(code_server, grpc_port, timeout=240)
    (root / "workspace.yaml").write_text(
        yaml.safe_dump(workspace(grpc_port, "cxr_augment.definitions"))
    )
    webserver = Path(sys.executable).with_name("dagster-webserver")
    log = open(root / "webserver.log", "w")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(
        [str(webserver), "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=root,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    from dagster_graphql import DagsterGraphQLClient

    client = DagsterGraphQLClient("127.0.0.1", port_number=port, timeout=60)
    deadline = time.monotonic() + 240
    while True:
        try:
            client._execute("{ version }")
            break
        except Exception:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                code_server.kill()
                log.close()
                code_log.close()
                pytest.fail(
                    "the webserver did not answer:\n"
                    + (root / "webserver.log").read_text()
                    + (root / "code_server.log").read_text()
                )
            time.sleep(1)
    # the instance primes its standby once it sees the webserver's port open (it polls): a run
    # submitted in between would start the default way, so wait for the standby to exist
    while not _standbys(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    yield client, root
    for process in (proc, code_server):
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
    log.close()
    code_log.close()


def _wait(client, run_id: str, timeout: float = 400) -> str:
    from dagster_graphql import DagsterGraphQLClientError  # noqa: F401

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get_run_status(run_id).value
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            return status
        time.sleep(1)
    return "TIMEOUT"


def _events(client, run_id: str) -> list[dict]:
    events, cursor = [], None
    while True:
        data = client._execute(RUN_EVENTS, {"runId": run_id, "cursor": cursor})["logsForRun"]
        events += data["events"]
        cursor = data["cursor"]
        if not data["hasMore"]:
            return events


RUN_TAGS = """
query RunTags($runId: ID!) {
  runOrError(runId: $runId) { __typename ... on Run { tags { key value } } }
}
"""


def _standbys(pid: int) -> list[int]:
    """The standby run workers the webserver ``pid`` has started."""
    import psutil

    from cxr_augment.orchestration.launcher import _is_standby

    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []
    return [c.pid for c in children if _is_standby(c.pid)]


def _tags(client, run_id: str) -> dict[str, str]:
    run = client._execute(RUN_TAGS, {"runId": run_id})["runOrError"]
    return {t["key"]: t["value"] for t in run["tags"]}


def test_a_job_launched_through_graphql_materialises_its_assets_and_passes_its_checks(webserver):
    from cxr_augment.orchestration.launcher import STANDBY_TAG

    client, root = webserver
    checks: dict[str, bool] = {}
    for job in ("preprocessing", "preprocessing"):
        run_id = client.submit_job_execution(job)
        status = _wait(client, run_id)
        # deploy/dagster.yaml's instance and launcher: the first run starts in the standby
        # worker that loaded the code when the webserver started, the next one in the standby
        # that loaded it while the first ran
        assert STANDBY_TAG in _tags(client, run_id), job
        events = _events(client, run_id)
        assert status == "SUCCESS", (job, [e for e in events if "Failure" in e["__typename"]])
        materialised = {
            e["assetKey"]["path"][-1] for e in events if e["__typename"] == "MaterializationEvent"
        }
        checks |= {
            e["evaluation"]["checkName"]: e["evaluation"]["success"]
            for e in events
            if e["__typename"] == "AssetCheckEvaluationEvent"
        }
        assert {"manifest", "split_table", "preprocessing_report"} <= materialised
    assert checks == {
        "no_patient_in_two_splits": True,
        "no_image_unreported": True,
        "label_distribution_kept": True,
    }
    assert (root / "data" / "05_model_input" / "manifest.parquet").exists()


def test_a_reload_through_graphql_loads_the_location_again(webserver):
    from dagster_graphql import ReloadRepositoryLocationStatus

    client, _ = webserver
    info = client.reload_repository_location("cxr_augment.definitions")
    assert info.status == ReloadRepositoryLocationStatus.SUCCESS, info.message
    data = client._execute(
        "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus "
        "locationOrLoadError { __typename ... on RepositoryLocation { repositories { "
        "jobs { name } } } } } } } }"
    )
    (entry,) = data["workspaceOrError"]["locationEntries"]
    assert entry["loadStatus"] == "LOADED"
    jobs = {j["name"] for r in entry["locationOrLoadError"]["repositories"] for j in r["jobs"]}
    assert {"demo_data", "preprocessing", "classification"} <= jobs
