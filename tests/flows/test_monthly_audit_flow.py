"""The Prefect flow, under one session-wide Prefect test harness (a temporary server)."""

from __future__ import annotations

import asyncio

import pytest

from chartaudit.flows.monthly_audit import monthly_audit
from chartaudit.flows.steps import QuarantineLimitExceeded, WarningLimitExceeded
from chartaudit.schemas.errors import ExtractRejected
from chartaudit.storage import warehouse
from tests.flows.conftest import answer_key


@pytest.fixture(scope="module", autouse=True)
def prefect_server(tmp_path_factory):
    import os

    os.environ["PREFECT_HOME"] = str(tmp_path_factory.mktemp("prefect-home"))
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def read_artifact(key: str) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    async def fetch():
        async with get_client() as client:
            found = await client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key]))
            )
            return found[0].data

    return asyncio.run(fetch())


def test_the_flow_audits_the_last_complete_month_and_reports(generated, tmp_path):
    path = tmp_path / "audit.duckdb"
    outcome = monthly_audit(str(generated), None, str(path), str(tmp_path / "out"))
    key = answer_key(generated)
    assert outcome.period == "2026-10"
    assert outcome.cases == key.filter(key["period"] == "2026-10").height
    report = (tmp_path / "out" / "chartaudit-2026-10.html").read_text()
    assert "LN-01" in report and "Spine MRI within 12 h" in report
    markdown = read_artifact("chartaudit-summary-2026-10")
    assert "| LN-07 Annual 10-g monofilament screening in diabetes |" in markdown
    with warehouse.connect(path, read_only=True) as con:
        assert con.execute("SELECT status FROM runs").fetchall() == [("succeeded",)]


def test_a_rejected_extract_fails_the_flow_and_writes_nothing(extract_copy, tmp_path):
    path = tmp_path / "audit.duckdb"
    patients = extract_copy / "patients.csv"
    lines = patients.read_text().splitlines()
    patients.write_text(
        "\n".join([lines[0] + ",patient_name"] + [f"{x},Jane Doe" for x in lines[1:]]) + "\n"
    )
    with pytest.raises(ExtractRejected, match="patient_name"):
        monthly_audit(str(extract_copy), "2026-10", str(path), str(tmp_path / "out"))
    assert not path.exists()


LATEST_VIEWS = (
    "latest_runs",
    "latest_case_results",
    "latest_measure_summary",
    "latest_component_summary",
    "latest_timing_summary",
    "latest_data_quality",
)


def latest(path) -> dict[str, list]:
    with warehouse.connect(path, read_only=True) as con:
        return {v: con.execute(f"SELECT * FROM {v} ORDER BY ALL").fetchall() for v in LATEST_VIEWS}


@pytest.mark.parametrize(
    ("settings", "option", "error", "message"),
    [
        (
            None,
            0.001,
            QuarantineLimitExceeded,
            r'^\w+: \d\.\d% of rows quarantined \(mostly "\w+"\), over the limit of 0\.1%$',
        ),
        (
            "[thresholds.tables.orders]\nwarning_rows = 0\n",
            None,
            WarningLimitExceeded,
            r'^orders: \d rows? with data-quality warnings \(mostly "time_order"\), over the limit'
            r" of 0 rows$",
        ),
    ],
    ids=["max-quarantine-share", "settings-warning-rows"],
)
def test_a_run_past_a_limit_fails_and_keeps_the_last_good_run_and_report(
    generated, tmp_path, monkeypatch, settings, option, error, message
):
    path, out = tmp_path / "audit.duckdb", tmp_path / "out"
    first = monthly_audit(str(generated), "2026-10", str(path), str(out))
    report = out / "chartaudit-2026-10.html"
    before, page = latest(path), report.read_bytes()
    assert before["latest_data_quality"]  # the generated extract has warned rows
    if settings:
        (tmp_path / "chartaudit.toml").write_text(settings)
        monkeypatch.chdir(tmp_path)
    with pytest.raises(error, match=message) as caught:
        monthly_audit(str(generated), "2026-10", str(path), str(out), max_quarantine_share=option)
    assert latest(path) == before
    assert report.read_bytes() == page
    with warehouse.connect(path, read_only=True) as con:
        runs = con.execute(
            "SELECT run_id = ?, status, error FROM runs ORDER BY started_at", [first.run_id]
        )
        ledger = runs.fetchall()
    assert ledger == [
        (True, "succeeded", None),
        (False, "failed", f"{error.__name__}: {caught.value}"),
    ]


def test_the_flow_writes_owner_only_files_and_removes_its_work_folder(
    generated, tmp_path, monkeypatch
):
    """The flow itself, as a deployment runs it (no CLI): the work folder's files as publish
    finds them are 0600 in 0700 folders, and the folder is gone afterwards."""
    import os
    import stat

    from chartaudit.flows import steps

    seen = {}
    publish = steps.publish_step

    def recording_publish(work, warehouse_path, **kwargs):
        seen["work"] = work
        seen["modes"] = {stat.S_IMODE(p.stat().st_mode) for p in work.rglob("*")}
        seen["files"] = sum(1 for p in work.rglob("*") if p.is_file())
        publish(work, warehouse_path, **kwargs)

    monkeypatch.setattr(steps, "publish_step", recording_publish)
    before = os.umask(0o022)
    try:
        outcome = monthly_audit(
            str(generated), "2026-10", str(tmp_path / "w.duckdb"), str(tmp_path)
        )
        assert os.umask(0o022) == 0o022  # the flow put the umask back
    finally:
        os.umask(before)
    assert seen["files"] > 20
    assert seen["modes"] == {0o600, 0o700}
    assert not seen["work"].exists()
    assert stat.S_IMODE((tmp_path / "w.duckdb").stat().st_mode) == 0o600
    assert stat.S_IMODE(os.stat(outcome.report).st_mode) == 0o600
