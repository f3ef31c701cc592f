"""Periods the extract covers: a month outside its coverage, or one it covers only in part, is
refused in one line before anything is written (the command line's preflight, and the flow's load
step for runs a deployment starts); ``--allow-partial-month`` audits a partial month and marks it
in ``runs``, the run log and the report."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb
import polars as pl
import pytest

from chartaudit.audits.period import Coverage, CoverageError
from chartaudit.flows import steps
from chartaudit.flows.conditions import FLOW_RUN_LOGGER
from chartaudit.flows.months import complete_months, covered_range, month_range
from chartaudit.sample_data import DEMO_EXTRACT
from chartaudit.schemas.manifest import read_manifest
from chartaudit.storage import warehouse
from tests.flows.test_cli import chartaudit, snapshot
from tests.flows.test_pipeline import run_pipeline

ZONE = "America/Chicago"
WHOLE = "2025-10-01 to 2026-10-31"  # the generated extract's coverage
PARTIAL_END = "2026-10-15"  # a coverage end inside October


def shape(extract: Path, **fields: str | None) -> Path:
    """Change manifest.json's fields (None removes one)."""
    path = extract / "manifest.json"
    manifest = json.loads(path.read_text())
    for name, value in fields.items():
        if value is None:
            manifest.pop(name, None)
        else:
            manifest[name] = value
    path.write_text(json.dumps(manifest))
    return extract


@pytest.fixture(scope="session")
def generated(short_extract) -> Path:
    """The 13-month extract (2025-10-01 to 2026-10-31) the lines below name; ``extract_copy``
    copies it too."""
    return short_extract


def coverage(start: str | None, end: str) -> Coverage:
    """A coverage as the manifest's fields give it: coverage_end the last day covered (to its
    local midnight), or a local time."""
    zone = ZoneInfo(ZONE)
    if len(end) == 10:
        end_at = datetime.combine(date.fromisoformat(end) + timedelta(days=1), time(), zone)
    else:
        end_at = datetime.fromisoformat(end).replace(tzinfo=zone)
    return Coverage.of(None if start is None else date.fromisoformat(start), end_at, ZONE)


@pytest.fixture(scope="module")
def audited_once(generated, tmp_path_factory) -> Path:
    """A warehouse holding one succeeded run of 2026-10 (a whole month)."""
    root = tmp_path_factory.mktemp("audited")
    path = root / "audit.duckdb"
    run_pipeline(generated, path, root / "work")
    return path


@pytest.fixture
def published(audited_once, tmp_path) -> Path:
    return Path(shutil.copy(audited_once, tmp_path / "audit.duckdb"))


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def runs(path: Path) -> list[tuple]:
    with warehouse.connect(path, read_only=True) as con:
        return con.execute(
            "SELECT period, status, kind, partial FROM runs ORDER BY started_at, run_id"
        ).fetchall()


def assert_refused(done, line: str) -> None:
    assert (done.returncode, done.stderr.splitlines()) == (1, [line]), done.stderr
    assert done.stdout == ""  # refused in the preflight: no worker, no Prefect server
    assert "Traceback" not in done.stderr


# --- the command line refuses before anything starts ---------------------------------------


@pytest.mark.parametrize(
    ("period", "line"),
    [
        (
            "2030-01",
            "error: period 2030-01 is outside the extract's coverage (2025-10-01 to 2026-10-31):"
            " audit a month from 2025-10 to 2026-10",
        ),
        (
            "2026-11",
            "error: period 2026-11 is outside the extract's coverage (2025-10-01 to 2026-10-31):"
            " audit a month from 2025-10 to 2026-10",
        ),
        (
            "2025-09",
            "error: period 2025-09 is outside the extract's coverage (2025-10-01 to 2026-10-31):"
            " audit a month from 2025-10 to 2026-10",
        ),
    ],
    ids=["years-after", "month-after", "month-before"],
)
def test_a_period_outside_the_coverage_is_refused_and_the_warehouse_is_unchanged(
    generated, published, tmp_path, period, line
):
    before, rows = digest(published), snapshot(published)
    done = chartaudit(
        "run", generated, "--period", period, "--warehouse", published,
        "--out", tmp_path / "out", prefect_home=tmp_path / "prefect",
    )  # fmt: skip
    assert_refused(done, line)
    assert digest(published) == before  # byte for byte
    assert snapshot(published) == rows
    assert runs(published) == [("2026-10", "succeeded", "audit", False)]
    assert not (tmp_path / "out").exists() and not (tmp_path / "prefect").exists()


@pytest.mark.parametrize(
    ("fields", "period", "line"),
    [
        (
            {"coverage_end": PARTIAL_END},
            "2026-10",
            "error: period 2026-10 is a partial month: the extract covers 2026-10-01 to"
            " 2026-10-15 of it; add --allow-partial-month to audit it as partial, or audit a"
            " month from 2025-10 to 2026-09",
        ),
        (
            {"coverage_start": "2025-10-12"},
            "2025-10",
            "error: period 2025-10 is a partial month: the extract covers 2025-10-12 to"
            " 2025-10-31 of it; add --allow-partial-month to audit it as partial, or audit a"
            " month from 2025-11 to 2026-10",
        ),
    ],
    ids=["coverage-ends-inside", "coverage-starts-inside"],
)
def test_a_partial_month_is_refused_without_the_flag(
    extract_copy, published, tmp_path, fields, period, line
):
    shape(extract_copy, **fields)
    before, rows = digest(published), snapshot(published)
    done = chartaudit(
        "run", extract_copy, "--period", period, "--warehouse", published,
        prefect_home=tmp_path / "prefect",
    )  # fmt: skip
    assert_refused(done, line)
    assert digest(published) == before
    assert snapshot(published) == rows


def test_past_a_partial_end_the_line_names_the_partial_month_and_the_flag(extract_copy, tmp_path):
    shape(extract_copy, coverage_end=PARTIAL_END)
    done = chartaudit(
        "run", extract_copy, "--period", "2026-11", "--warehouse", tmp_path / "audit.duckdb"
    )
    assert_refused(
        done,
        "error: period 2026-11 is outside the extract's coverage (2025-10-01 to 2026-10-15):"
        " audit a month from 2025-10 to 2026-09 (2026-10 only in part, with"
        " --allow-partial-month)",
    )
    assert not (tmp_path / "audit.duckdb").exists()


@pytest.mark.parametrize(
    ("fields", "first", "last", "line"),
    [
        (
            {},
            "2025-07",
            "2026-12",
            "error: backfill 2025-07 to 2026-12 reaches outside the extract's coverage"
            " (2025-10-01 to 2026-10-31): 2025-07 to 2025-09 and 2026-11 to 2026-12 are not"
            " covered; backfill from 2025-10 to 2026-10",
        ),
        (
            {},
            "2030-01",
            "2030-02",
            "error: backfill 2030-01 to 2030-02 reaches outside the extract's coverage"
            " (2025-10-01 to 2026-10-31): 2030-01 to 2030-02 are not covered; backfill from"
            " 2025-10 to 2026-10",
        ),
        (
            {"coverage_end": PARTIAL_END},
            "2026-08",
            "2026-10",
            "error: 2026-10 is a partial month: the extract covers 2026-10-01 to 2026-10-15"
            " of it; add --allow-partial-month to audit it as partial, or backfill from 2026-08"
            " to 2026-09",
        ),
    ],
    ids=["reaches-both-sides", "wholly-outside", "partial-last-month"],
)
def test_a_backfill_reaching_outside_the_coverage_is_refused_naming_the_months(
    extract_copy, published, tmp_path, fields, first, last, line
):
    shape(extract_copy, **fields)
    before = digest(published)
    done = chartaudit(
        "backfill", extract_copy, "--from", first, "--to", last, "--warehouse", published,
        prefect_home=tmp_path / "prefect",
    )  # fmt: skip
    assert_refused(done, line)
    assert digest(published) == before
    assert not (tmp_path / "prefect").exists()


# --- --allow-partial-month --------------------------------------------------------------------


def test_allow_partial_month_audits_it_and_marks_the_run_and_the_report(extract_copy, tmp_path):
    shape(extract_copy, coverage_end=PARTIAL_END)
    path, out = tmp_path / "audit.duckdb", tmp_path / "out"
    done = chartaudit(
        "run", extract_copy, "--period", "2026-10", "--allow-partial-month",
        "--warehouse", path, "--out", out, prefect_home=tmp_path / "prefect",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert (
        "period 2026-10 is a partial month: the extract covers 2026-10-01 to 2026-10-15 of it;"
        " audited as partial (--allow-partial-month), its counts hold only those days"
    ) in done.stdout
    assert "period 2026-10 (a partial month): " in done.stdout
    with warehouse.connect(path, read_only=True) as con:
        row = con.execute(
            "SELECT period, status, partial, coverage_start, coverage_end FROM runs"
        ).fetchall()
    assert row == [
        (
            "2026-10",
            "succeeded",
            True,
            datetime(2025, 10, 1, 5, tzinfo=UTC),  # local midnight, CDT
            datetime(2026, 10, 16, 5, tzinfo=UTC),
        )
    ]
    page = (out / "chartaudit-2026-10.html").read_text()
    assert "<dt>Audit month</dt><dd>2026-10 (partial month)</dd>" in page
    assert (
        '<p class="warn" id="partial-month">Partial month: the extract covers 2026-10-01 to'
        " 2026-10-15\n(audited with --allow-partial-month)."
    ) in page


def test_a_backfill_with_the_flag_marks_its_partial_month(extract_copy, tmp_path):
    shape(extract_copy, coverage_end=PARTIAL_END)
    path = tmp_path / "audit.duckdb"
    done = chartaudit(
        "backfill", extract_copy, "--from", "2026-10", "--to", "2026-10",
        "--allow-partial-month", "--warehouse", path, "--out", tmp_path / "out",
        prefect_home=tmp_path / "prefect",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert runs(path) == [("2026-10", "succeeded", "audit", True)]


def test_a_whole_month_is_not_marked_partial(published):
    assert runs(published) == [("2026-10", "succeeded", "audit", False)]


def test_a_partial_month_judged_again_stays_partial_in_runs_and_the_report(extract_copy, tmp_path):
    """October audited in part (coverage to the 15th) leaves cases pending; the next extract's
    November run judges them again: October's latest run is then a rejudge run, still partial,
    and its report names the days the first extract covered."""
    path = tmp_path / "audit.duckdb"
    october = shape(extract_copy, coverage_end=PARTIAL_END)
    audit(october, path, tmp_path / "w1", "2026-10", allow_partial=True)
    november = shape(
        Path(shutil.copytree(october, tmp_path / "november")),
        extract_id="later",
        coverage_end="2026-11-30",
    )
    audit(november, path, tmp_path / "w2", "2026-11")
    assert runs(path) == [
        ("2026-10", "succeeded", "audit", True),
        ("2026-10", "succeeded", "rejudge", True),  # started with the run that triggered it
        ("2026-11", "succeeded", "audit", False),
    ]
    report, _ = steps.report_step(path, "2026-10", tmp_path / "out")
    page = report.read_text()
    assert "This month's latest run is a rejudge run" in page
    assert "Partial month: the extract covers 2026-10-01 to 2026-10-15\n" in page


def audit(extract: Path, path: Path, work: Path, period: str, allow_partial: bool = False):
    return run_pipeline(extract, path, work, period, allow_partial_month=allow_partial)


# --- the flow's own check (runs a deployment starts) and the default period ----------------


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory):
    from prefect.testing.utilities import prefect_test_harness

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PREFECT_HOME", str(tmp_path_factory.mktemp("prefect-home")))
        with prefect_test_harness(server_startup_timeout=120):
            yield


class Collected(logging.Handler):
    """The records one logger hands its handlers (after the logger's own filters)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_a_deployment_run_outside_the_coverage_fails_with_the_same_words_and_no_runs_row(
    prefect_server, generated, published, tmp_path
):
    from chartaudit.flows.monthly_audit import monthly_audit

    before = digest(published)
    line = (
        "period 2030-01 is outside the extract's coverage (2025-10-01 to 2026-10-31): audit a"
        " month from 2025-10 to 2026-10"
    )
    # Read the flow-run log where its handlers get it: what the console or the Prefect API
    # receives, whichever stream an earlier test left Prefect's console handler holding.
    collected, logger = Collected(), logging.getLogger(FLOW_RUN_LOGGER)
    logger.addHandler(collected)
    try:
        with pytest.raises(CoverageError) as raised:
            monthly_audit(str(generated), "2030-01", str(published), str(tmp_path / "out"))
    finally:
        logger.removeHandler(collected)
    assert str(raised.value) == line
    assert digest(published) == before  # not even a runs row
    assert [r.getMessage() for r in collected.records] == [f"error: {line}"]
    assert all(r.exc_info is None and not r.exc_text for r in collected.records)  # no traceback


def test_the_default_period_is_the_last_whole_month(extract_copy, tmp_path):
    shape(extract_copy, coverage_end=PARTIAL_END)
    (tmp_path / "work").mkdir()
    plan = steps.load_step(extract_copy, tmp_path / "work", None)
    assert (plan.period, plan.partial) == ("2026-09", False)


def test_an_extract_with_no_whole_month_has_no_default_period(extract_copy, tmp_path):
    shape(extract_copy, coverage_start="2026-10-03", coverage_end="2026-10-20")
    (tmp_path / "work").mkdir()
    with pytest.raises(CoverageError) as raised:
        steps.load_step(extract_copy, tmp_path / "work", None)
    assert str(raised.value) == (
        "the extract covers no whole month (2026-10-03 to 2026-10-20): give --period, and"
        " --allow-partial-month to audit a month it covers in part"
    )
    assert list((tmp_path / "work").iterdir()) == []  # refused before the extract was saved


def test_without_coverage_start_the_earliest_encounter_day_starts_the_coverage(
    extract_copy, tmp_path
):
    """Not the earliest instant of any table: diagnoses carry years of history. The generated
    extract's first encounter is on 2 October, so without a stated start October is partial."""
    shape(extract_copy, coverage_start=None)
    arrivals = pl.read_csv(extract_copy / "encounters.csv", infer_schema=False)["arrival_time"]
    first_day = min(a for a in arrivals.drop_nulls() if a[:2] == "20")[:10]
    recorded = pl.read_csv(extract_copy / "diagnoses.csv", infer_schema=False)["recorded_time"]
    assert recorded.drop_nulls().min()[:10] < first_day  # history older than the encounters
    assert first_day == "2025-10-02"
    (tmp_path / "w1").mkdir()
    plan = steps.load_step(extract_copy, tmp_path / "w1", "2025-11")
    assert (plan.coverage_start, plan.coverage_start_observed, plan.partial) == (
        "2025-10-02T05:00:00+00:00",
        True,
        False,
    )
    refused = {
        "2025-10": "period 2025-10 is a partial month: the extract covers 2025-10-02 to 2025-10-31"
        " of it; add --allow-partial-month to audit it as partial, or audit a month from 2025-11"
        " to 2026-10",
        "2025-09": "period 2025-09 is outside the extract's coverage (2025-10-02 to 2026-10-31):"
        " audit a month from 2025-11 to 2026-10 (2025-10 only in part, with"
        " --allow-partial-month)",
    }
    for period, line in refused.items():
        work = tmp_path / f"w-{period}"
        work.mkdir()
        with pytest.raises(CoverageError) as raised:
            steps.load_step(extract_copy, work, period)
        assert str(raised.value) == line


def test_the_demo_backfills_only_months_its_extract_covers_whole():
    manifest = read_manifest(DEMO_EXTRACT)
    demo = Coverage.of(manifest.coverage_start, manifest.coverage_end, manifest.timezone)
    first, last = complete_months(manifest.coverage_start, manifest.coverage_end, ZONE)
    assert covered_range(first, last, demo) == month_range(first, last)
    assert not any(demo.partial(m) for m in month_range(first, last))


# --- the rule itself --------------------------------------------------------------------------


def test_partial_months_at_both_ends_and_a_time_of_day_end():
    both_ends = coverage("2025-10-12", "2026-10-15")
    assert both_ends.whole_months() == ("2025-11", "2026-09")
    assert both_ends.partial_months() == ["2025-10", "2026-10"]
    assert [both_ends.check(m, allow_partial=True) for m in ("2025-10", "2026-01", "2026-10")] == [
        True,
        False,
        True,
    ]
    with pytest.raises(CoverageError) as raised:
        covered_range("2025-10", "2026-10", both_ends)
    assert str(raised.value) == (
        "2025-10 and 2026-10 are partial months: the extract covers 2025-10-12 to 2026-10-15;"
        " add --allow-partial-month to audit them as partial, or backfill from 2025-11 to 2026-09"
    )
    assert len(covered_range("2025-10", "2026-10", both_ends, allow_partial=True)) == 13
    noon = coverage("2025-10-01", "2026-10-31T12:00")  # an instant, not a day
    assert (noon.describe(), noon.part_of("2026-10")) == (
        "2025-10-01 to 2026-10-31 12:00",
        "2026-10-01 to 2026-10-31 12:00",
    )
    assert noon.last_whole_month() == "2026-09"


def test_a_month_ending_at_local_midnight_is_whole_across_a_clock_change():
    """Coverage to 2026-10-31 in Chicago ends at 05:00 UTC on 1 November (CDT), and November's
    end at 06:00 UTC on 1 December (CST, after the change on 1 November)."""
    assert coverage("2026-11-01", "2026-11-30").whole_months() == ("2026-11", "2026-11")
    assert coverage("2025-10-01", "2026-10-31").partial_months() == []


def test_without_a_stated_start_only_the_end_is_checked_up_front():
    end_only = coverage(None, "2026-10-31")
    assert end_only.check("2001-01") is False  # the load step checks it against the data
    with pytest.raises(CoverageError) as raised:
        end_only.check("2030-01")
    assert str(raised.value) == (
        "period 2030-01 is outside the extract's coverage (up to 2026-10-31): audit a month up"
        " to 2026-10"
    )


def test_an_older_warehouse_gains_the_coverage_columns_of_runs(tmp_path):
    path = tmp_path / "old.duckdb"
    with duckdb.connect(str(path)) as con:  # runs as chartaudit 0.x created it
        con.execute(
            "CREATE TABLE runs (run_id VARCHAR PRIMARY KEY, period VARCHAR NOT NULL,"
            " ruleset VARCHAR NOT NULL, status VARCHAR NOT NULL, started_at TIMESTAMPTZ NOT NULL,"
            " finished_at TIMESTAMPTZ, extract_id VARCHAR, input_digest VARCHAR,"
            " code_version VARCHAR, timezone VARCHAR, coverage_end TIMESTAMPTZ, error VARCHAR,"
            " kind VARCHAR, parent_run_id VARCHAR, triggered_by VARCHAR)"
        )
        con.execute(
            "INSERT INTO runs (run_id, period, ruleset, status, started_at)"
            " VALUES ('r0', '2026-09', 'source-2025', 'succeeded', '2026-10-02 08:00+00')"
        )
    with warehouse.connect(path) as con:
        columns = {name: kind for name, kind, *_ in con.execute("DESCRIBE runs").fetchall()}
        old = con.execute("SELECT run_id, coverage_start, partial FROM runs").fetchall()
    assert (columns["coverage_start"], columns["partial"]) == (
        "TIMESTAMP WITH TIME ZONE",
        "BOOLEAN",
    )
    assert old == [("r0", None, None)]  # unknown, which the report reads as a whole month
