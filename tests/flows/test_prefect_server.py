"""The monthly deployment on a real Prefect server, as README's "Scheduling the monthly run"
sets it up: `prefect server start` on a loopback port, the work pool, `prefect deploy --name
monthly-audit` of prefect.yaml as committed, a worker, and a run of the deployment on the demo
extract, whose results land in the warehouse and whose artifacts land on the server. Every
process started is stopped at the end (tests/flows/prefect_server.py)."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
from datetime import datetime, timedelta
from pathlib import Path
from uuid import UUID
from zoneinfo import ZoneInfo

import polars as pl
import pytest
import yaml

from chartaudit.storage import warehouse
from tests.flows.conftest import answer_key
from tests.flows.prefect_server import ROOT, PrefectSession
from tests.flows.test_artifacts import expected_table

pytestmark = pytest.mark.prefect_server

DEMO = ROOT / "sample_data" / "demo_extract"
PERIOD = "2026-10"
RUN_SECONDS = 600  # a flow run takes ~15 s on an idle machine
MEASURES = [f"LN-{n:02d}" for n in range(1, 16)]


def committed_deployment() -> dict:
    config = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    (found,) = [d for d in config["deployments"] if d["name"] == "monthly-audit"]
    return {**found, "pull": config["pull"]}


def test_the_deployment_runs_on_a_real_server_and_a_worker_and_everything_stops(tmp_path):
    yaml_before = (ROOT / "prefect.yaml").read_bytes()
    warehouse_path, out = tmp_path / "audit.duckdb", tmp_path / "reports"
    with PrefectSession(tmp_path / "prefect") as session:
        session.prefect("work-pool", "create", "chartaudit", "--type", "process", cwd=tmp_path)
        session.prefect("deploy", "--name", "monthly-audit", "--no-prompt", cwd=ROOT)
        assert (ROOT / "prefect.yaml").read_bytes() == yaml_before, "deploy rewrote the file"
        assert_registered_as_committed(on_server(session, deployment_as_registered))

        # The worker runs from elsewhere: the deployment's pull step takes it to the checkout.
        (tmp_path / "worker").mkdir()
        worker = session.start(
            "worker",
            ["worker", "start", "--pool", "chartaudit"],
            cwd=tmp_path / "worker",
            CHARTAUDIT_HOME=str(ROOT),
            PREFECT_WORKER_QUERY_SECONDS="1",  # pick the run up at once (default 10 s)
        )
        triggered = session.prefect(
            *("deployment", "run", "monthly-audit/monthly-audit"),
            *("--param", f"extract_dir={DEMO}", "--param", f"period={PERIOD}"),
            *("--param", f"warehouse_path={warehouse_path}", "--param", f"out_dir={out}"),
            cwd=tmp_path,
        )
        flow_run_id = re.search(r"UUID: ([0-9a-f-]{36})", triggered).group(1)
        state = wait_for_the_end(session, flow_run_id, worker)
        assert state == "COMPLETED", f"the flow run ended {state}:\n{session.report()}"
        found = on_server(session, artifacts_of_run, flow_run_id)
        assert_scheduled_monthly(wait_for_scheduled_runs(session))
        worker_left = session.stop(worker)
        assert worker_left == [], "the worker's group outlived SIGTERM and SIGKILL"
    assert session.left_behind == [], "processes of the test still run"

    assert_results_in_the_warehouse(warehouse_path)
    assert_artifacts_of_the_run(found, warehouse_path, out)


def assert_registered_as_committed(deployment: dict) -> None:
    """The server holds prefect.yaml's deployment as written: parameters, pool, pull step
    (still a template: the worker's CHARTAUDIT_HOME fills it at run time) and schedule."""
    committed = committed_deployment()
    (schedule,) = committed["schedules"]
    assert deployment["parameters"] == committed["parameters"]
    assert deployment["work_pool_name"] == committed["work_pool"]["name"]
    assert deployment["entrypoint"] == committed["entrypoint"]
    assert deployment["pull_steps"] == committed["pull"]
    assert deployment["schedules"] == [(schedule["cron"], schedule["timezone"], schedule["active"])]


def assert_scheduled_monthly(scheduled: list[tuple[datetime, dict]]) -> None:
    """The server's scheduler has put the next months' runs at 06:00 on the 2nd, local time,
    each with prefect.yaml's parameters."""
    committed = committed_deployment()
    (schedule,) = committed["schedules"]
    zone = ZoneInfo(schedule["timezone"])
    local = [start.astimezone(zone) for start, _ in scheduled]
    assert [parameters for _, parameters in scheduled] == [committed["parameters"]] * len(local)
    assert local[0] == next_second_at_six(datetime.now(zone))
    for earlier, later in itertools.pairwise(local):
        assert (later.day, later.hour, later.minute) == (2, 6, 0)
        assert (later.year * 12 + later.month) - (earlier.year * 12 + earlier.month) == 1


def next_second_at_six(now: datetime) -> datetime:
    """The first 06:00 on the 2nd of a month after ``now`` (in now's time zone)."""
    candidate = now.replace(day=2, hour=6, minute=0, second=0, microsecond=0)
    if candidate <= now:
        first_of_next = (now.replace(day=1) + timedelta(days=32)).replace(day=1)
        candidate = first_of_next.replace(day=2, hour=6, minute=0, second=0, microsecond=0)
    return candidate


def assert_results_in_the_warehouse(path: Path) -> None:
    """The month's fifteen measures are published, and every case has the outcome the demo's
    answer key gives it."""
    with warehouse.connect(path, read_only=True) as con:
        measures = con.sql(
            "SELECT measure_id FROM latest_measure_summary"
            " WHERE period = ? AND stratum_kind = 'all' ORDER BY measure_id",
            params=[PERIOD],
        ).fetchall()
        counts = con.sql(
            "SELECT measure_id, outcome, count(*) FROM latest_case_results WHERE period = ?"
            " GROUP BY ALL ORDER BY ALL",
            params=[PERIOD],
        ).fetchall()
        runs = con.sql("SELECT period, status FROM runs").fetchall()
    assert [m for (m,) in measures] == MEASURES
    key = answer_key(DEMO).filter(pl.col("period") == PERIOD)
    assert counts == key.group_by("measure_id", "outcome").len().sort(pl.all()).rows()
    assert runs == [(PERIOD, "succeeded")]


def assert_artifacts_of_the_run(found: dict, warehouse_path: Path, out: Path) -> None:
    assert sorted(found) == [
        f"chartaudit-measures-{PERIOD}",
        f"chartaudit-report-{PERIOD}",
        f"chartaudit-summary-{PERIOD}",
    ]
    kind, markdown = found[f"chartaudit-summary-{PERIOD}"]
    assert kind == "markdown" and markdown.startswith(f"**Chart audit {PERIOD}**")
    kind, table = found[f"chartaudit-measures-{PERIOD}"]
    assert kind == "table"
    assert json.loads(table) == expected_table(warehouse_path, PERIOD)
    report = (out / f"chartaudit-{PERIOD}.html").resolve()
    assert report.is_file()
    assert found[f"chartaudit-report-{PERIOD}"] == (
        "markdown",  # Prefect stores a link artifact as Markdown
        f"[{report.name}]({report.as_uri()})",
    )


def wait_for_the_end(session: PrefectSession, flow_run_id: str, worker) -> str:
    """Poll the flow run until it reaches a final state; that state's type."""
    deadline = time.monotonic() + RUN_SECONDS
    while time.monotonic() < deadline:
        state = on_server(session, flow_run_state, flow_run_id)
        if state in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
            return state
        if worker.process.poll() is not None:
            raise AssertionError(f"the worker ended during the run:\n{session.report()}")
        time.sleep(1)
    raise AssertionError(f"the flow run did not end in {RUN_SECONDS} s:\n{session.report()}")


def on_server(session: PrefectSession, query, *args):
    """Run one async query against the session's server with Prefect's client."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    async def run():
        async with get_client() as client:
            return await query(client, *args)

    with temporary_settings(updates={PREFECT_API_URL: session.api_url}):
        return asyncio.run(run())


def wait_for_scheduled_runs(session: PrefectSession) -> list[tuple[datetime, dict]]:
    """The deployment's scheduled runs (expected start, parameters), once there are any."""
    deadline = time.monotonic() + RUN_SECONDS
    while not (scheduled := on_server(session, scheduled_runs)):
        if time.monotonic() > deadline:
            raise AssertionError(f"the server scheduled no run:\n{session.report()}")
        time.sleep(1)
    return scheduled


async def deployment_as_registered(client) -> dict:
    found = await client.read_deployment_by_name("monthly-audit/monthly-audit")
    return {
        "parameters": found.parameters,
        "work_pool_name": found.work_pool_name,
        "entrypoint": found.entrypoint,
        "pull_steps": found.pull_steps,
        "schedules": [(s.schedule.cron, s.schedule.timezone, s.active) for s in found.schedules],
    }


async def scheduled_runs(client) -> list[tuple[datetime, dict]]:
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    found = await client.read_deployment_by_name("monthly-audit/monthly-audit")
    runs = await client.read_flow_runs(
        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[found.id])),
        flow_run_filter=FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))
        ),
        sort=FlowRunSort.EXPECTED_START_TIME_ASC,
    )
    return [(run.expected_start_time, run.parameters) for run in runs]


async def flow_run_state(client, flow_run_id: str) -> str | None:
    run = await client.read_flow_run(UUID(flow_run_id))
    return run.state.type.value if run.state else None


async def artifacts_of_run(client, flow_run_id: str) -> dict[str, tuple[str, str]]:
    """key -> (type, data) of every artifact of the flow run (its tasks' included)."""
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    artifacts = await client.read_artifacts(
        artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(flow_run_id)])
        )
    )
    return {a.key: (a.type, a.data) for a in artifacts}
