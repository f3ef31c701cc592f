"""The Prefect artifacts a run leaves, read back through Prefect's client from a real (temporary)
server: per monthly flow run the Markdown summary, the measure-summary table and the link to the
report; per backfill its summary table."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from chartaudit.reports.formatting import ci, pct
from chartaudit.storage import warehouse


@pytest.fixture(scope="module", autouse=True)
def prefect_server(tmp_path_factory):
    import os

    os.environ["PREFECT_HOME"] = str(tmp_path_factory.mktemp("prefect-home"))
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def artifacts_of(flow_run_id) -> dict[str, tuple[str, str]]:
    """key -> (type, data) of every artifact of one flow run (its tasks' included)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    async def fetch():
        async with get_client() as client:
            return await client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])
                )
            )

    return {a.key: (a.type, a.data) for a in asyncio.run(fetch())}


def subflow_runs(parent_flow_run_id) -> dict[str, object]:
    """name -> id of the flow runs started as subflows of one flow run."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    async def fetch():
        async with get_client() as client:
            return await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parent_flow_run_id])
                )
            )

    return {run.name: run.id for run in asyncio.run(fetch())}


def expected_table(path: Path, period: str) -> list[dict]:
    with warehouse.connect(path, read_only=True) as con:
        rows = con.sql(
            "SELECT * FROM latest_measure_summary WHERE period = ? AND stratum_kind = 'all'"
            " ORDER BY measure_id",
            params=[period],
        ).pl()
    return [
        {
            "measure": r["measure_id"],
            "denominator": r["denominator"],
            "met": r["met"],
            "not met": r["not_met"],
            "excluded": r["excluded"],
            "pending": r["pending"],
            # A measure not computable this month (2026-09: LN-14, whose look-back reaches
            # before the extract) has its reason in place of a rate.
            **(
                {"rate": r["status_reason"], "95 % interval": None}
                if r["status"] == "not_computable"
                else {"rate": pct(r["rate"]), "95 % interval": ci(r["ci_low"], r["ci_high"])}
            ),
        }
        for r in rows.iter_rows(named=True)
    ]


def test_a_monthly_run_leaves_the_summary_the_measure_table_and_the_report_link(
    generated, tmp_path
):
    from chartaudit.flows.monthly_audit import monthly_audit

    path, out = tmp_path / "audit.duckdb", tmp_path / "out"
    state = monthly_audit(str(generated), "2026-10", str(path), str(out), return_state=True)
    assert state.is_completed()
    found = artifacts_of(state.state_details.flow_run_id)
    assert sorted(found) == [
        "chartaudit-measures-2026-10",
        "chartaudit-report-2026-10",
        "chartaudit-summary-2026-10",
    ]
    kind, markdown = found["chartaudit-summary-2026-10"]
    assert kind == "markdown" and "| LN-07 Annual 10-g monofilament screening in diabetes |" in (
        markdown
    )
    kind, table = found["chartaudit-measures-2026-10"]
    assert kind == "table"
    rows = json.loads(table)
    assert rows == expected_table(path, "2026-10")
    assert [r["measure"] for r in rows] == [f"LN-{n:02d}" for n in range(1, 16)]
    report = (out / "chartaudit-2026-10.html").resolve()
    assert found["chartaudit-report-2026-10"] == (
        "markdown",
        f"[chartaudit-2026-10.html]({report.as_uri()})",
    )


def test_a_backfill_leaves_its_summary_and_each_month_its_three_artifacts(generated, tmp_path):
    from chartaudit.flows.backfill import backfill

    path, out = tmp_path / "audit.duckdb", tmp_path / "out"
    state = backfill(str(generated), "2026-09", "2026-10", str(path), str(out), return_state=True)
    assert state.is_completed()
    outcome = state.result()
    found = artifacts_of(state.state_details.flow_run_id)
    assert list(found) == ["chartaudit-backfill-2026-09-2026-10"]
    kind, markdown = found["chartaudit-backfill-2026-09-2026-10"]
    assert kind == "markdown"
    assert markdown.splitlines() == [
        "| month | outcome | cases | run id or error |",
        "|---|---|---:|---|",
        *(f"| {m.period} | succeeded | {m.cases:,} | {m.run_id} |" for m in outcome.months),
    ]
    months = subflow_runs(state.state_details.flow_run_id)
    assert sorted(months) == ["monthly-audit-2026-09", "monthly-audit-2026-10"]
    for period in ("2026-09", "2026-10"):
        month = artifacts_of(months[f"monthly-audit-{period}"])
        assert sorted(month) == [
            f"chartaudit-measures-{period}",
            f"chartaudit-report-{period}",
            f"chartaudit-summary-{period}",
        ]
        assert json.loads(month[f"chartaudit-measures-{period}"][1]) == expected_table(path, period)
