"""Issue 8, look-backs: on an extract starting 2025-10-01, the audit of 2026-03 does not judge
the measures whose look-back reaches before that day, says so in `measure_summary`, the run log
and the report, and judges the others exactly as the answer key (and as a run with an unchecked
coverage start) does."""

from __future__ import annotations

import json
import shutil
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from chartaudit.audits.engine import Catalogue, run_measures
from chartaudit.audits.period import AuditPeriod
from chartaudit.audits.rejudge import rejudge_pending
from chartaudit.flows import steps
from chartaudit.schemas.validation import load_extract
from chartaudit.storage import warehouse
from tests.flows.conftest import KEY_COLUMNS, answer_key, case_rows
from tests.flows.test_cli import chartaudit
from tests.flows.test_pipeline import run_pipeline

PERIOD = "2026-03"
NOT_COMPUTABLE = {
    "LN-04": "2025-09-02",  # 180 days
    "LN-06": "2025-03-01",  # 365 days (its exclusions)
    "LN-07": "2025-04-01",  # the 12 calendar months ending with March
    "LN-08": "2025-03-01",
    "LN-09": "2025-03-01",
    "LN-11": "2025-03-01",
    "LN-14": "2025-01-30",  # 365 days and one 30-day episode
}
COMPUTABLE = {"LN-01", "LN-02", "LN-03", "LN-05", "LN-10", "LN-12", "LN-13", "LN-15"}


def reason(measure_id: str) -> str:
    return (
        f"not computable for this period: needs data from {NOT_COMPUTABLE[measure_id]}, the"
        " extract starts 2025-10-01"
    )


@pytest.fixture(scope="module")
def audited(short_extract, tmp_path_factory) -> tuple[Path, Path, steps.RunPlan]:
    root = tmp_path_factory.mktemp("lookback")
    path = root / "audit.duckdb"
    plan = run_pipeline(short_extract, path, root / "work", PERIOD)
    return short_extract, path, plan


def test_the_measures_whose_look_back_reaches_before_the_extract_are_not_judged(audited):
    _, path, plan = audited
    with warehouse.connect(path, read_only=True) as con:
        judged = {
            m for (m,) in con.execute("SELECT DISTINCT measure_id FROM case_results").fetchall()
        }
        rows = con.execute(
            "SELECT measure_id, stratum_kind, stratum, denominator, excluded, met, not_met,"
            " pending, rate, ci_low, ci_high, status, status_reason FROM latest_measure_summary"
            " WHERE period = ? AND status = 'not_computable' ORDER BY measure_id",
            [PERIOD],
        ).fetchall()
        statuses = dict(
            con.execute(
                "SELECT measure_id, status FROM measures WHERE run_id = ?", [plan.run_id]
            ).fetchall()
        )
    assert judged == COMPUTABLE
    assert rows == [
        (
            m,
            "all",
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            "not_computable",
            reason(m),
        )
        for m in sorted(NOT_COMPUTABLE)
    ]
    assert statuses == {
        **{m: "not_computable" for m in NOT_COMPUTABLE},
        **{m: "computed" for m in COMPUTABLE},
    }


def test_the_run_log_has_one_line_per_measure_not_judged(audited, tmp_path):
    short_extract, _, _ = audited
    work = tmp_path / "work"
    run_pipeline(short_extract, tmp_path / "audit.duckdb", work, PERIOD)
    assert steps.measure_status_lines(work) == [f"{m} {reason(m)}" for m in sorted(NOT_COMPUTABLE)]


def test_the_measures_that_fit_are_judged_as_the_key_and_an_unchecked_run_judge_them(audited):
    extract, path, _ = audited
    with warehouse.connect(path, read_only=True) as con:
        got = case_rows(con.sql("SELECT * FROM latest_case_results").pl())
    key = answer_key(extract).filter(
        (pl.col("period") == PERIOD) & pl.col("measure_id").is_in(sorted(COMPUTABLE))
    )
    assert got.sort(KEY_COLUMNS).rows() == key.select(KEY_COLUMNS).sort(KEY_COLUMNS).rows()
    assert set(got["measure_id"]) == COMPUTABLE
    # The same month judged without a coverage start (look-backs unchecked): the measures that
    # fit get exactly the same case rows, outcome, evidence and all.
    validated = load_extract(extract)
    manifest = validated.manifest
    with steps.canonical_connection(validated, manifest.extract_id) as con:
        unchecked = AuditPeriod.of(PERIOD, manifest.timezone, manifest.coverage_end)
        run_measures(con, Catalogue.load(), unchecked, "source-2025", "unchecked")
        before = con.sql(
            "SELECT * EXCLUDE (run_id) FROM case_results WHERE measure_id IN"
            f" ({', '.join(repr(m) for m in sorted(COMPUTABLE))}) ORDER BY ALL"
        ).fetchall()
    with warehouse.connect(path, read_only=True) as con:
        after = con.sql(
            "SELECT * EXCLUDE (run_id) FROM latest_case_results ORDER BY ALL"
        ).fetchall()
    assert after == before


def test_the_report_shows_the_note_instead_of_rates(audited, tmp_path):
    _, path, _ = audited
    report, markdown = steps.report_step(path, PERIOD, tmp_path / "out")
    text = " ".join(report.read_text(encoding="utf-8").split())
    for measure_id in NOT_COMPUTABLE:
        assert f"This measure is {reason(measure_id)}." in text
        assert f"| {reason(measure_id)} |" in markdown
    assert text.count('class="this-month not-computable"') == len(NOT_COMPUTABLE)
    assert (
        "Not computable this month, so not judged (no counts, no rate): LN-04, LN-06, LN-07,"
        " LN-08, LN-09, LN-11, LN-14." in text
    )
    # "At any time" criteria are named once, in the appendix.
    assert text.count('class="note at-any-time"') == 1
    assert "LN-05 (malignancy history); LN-06 (malignancy);" in text
    # The p-chart data names the month as not computable.
    assert "no point: not computable for this month (look-back before the extract)" in text
    # The Prefect table artifact gives the reason in the rate column.
    from chartaudit.flows.monthly_audit import measure_summary_table

    table = {row["measure"]: row for row in measure_summary_table(path, PERIOD)}
    assert table["LN-07"] == {
        "measure": "LN-07",
        **dict.fromkeys(("denominator", "met", "not met", "excluded", "pending"), None),
        "rate": reason("LN-07"),
        "95 % interval": None,
    }


def test_an_extract_without_coverage_start_is_checked_from_its_first_encounter(
    short_extract, tmp_path
):
    """Without coverage_start the extract starts on the local day of its first encounter
    (2025-10-02 here; flows/steps.py), and the look-backs are checked against that day."""
    extract = Path(shutil.copytree(short_extract, tmp_path / "extract"))
    manifest = json.loads((extract / "manifest.json").read_text())
    del manifest["coverage_start"]
    (extract / "manifest.json").write_text(json.dumps(manifest))
    work = tmp_path / "work"
    run_pipeline(extract, tmp_path / "audit.duckdb", work, PERIOD)
    assert steps.measure_status_lines(work) == [
        f"{m} not computable for this period: needs data from {day}, the extract starts 2025-10-02"
        for m, day in sorted(NOT_COMPUTABLE.items())
    ]
    with warehouse.connect(tmp_path / "audit.duckdb", read_only=True) as con:
        judged = {
            m for (m,) in con.execute("SELECT DISTINCT measure_id FROM case_results").fetchall()
        }
    assert judged == COMPUTABLE


def test_the_command_line_run_log_names_each_measure_not_judged(short_extract, tmp_path):
    done = chartaudit(
        "run", short_extract, "--period", PERIOD, cwd=tmp_path, prefect_home=tmp_path / ".prefect"
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    log = " ".join(done.stdout.split())
    for measure_id in NOT_COMPUTABLE:
        assert f"{measure_id} {reason(measure_id)}" in log
    assert log.count("not computable for this period") == len(NOT_COMPUTABLE)


def test_rejudging_does_not_judge_a_measure_the_newer_extract_cannot_compute(generated):
    """2026-08 judged with an extract ending 2026-08-31 (many cases pending), then judged again
    on the full extract (2025-09-01 to 2026-10-31): with its coverage start unchecked every
    pending case is judged again; with it, the measures whose look-back from August reaches
    before 2025-09-01 are not, their pending cases stay pending, and their status says why."""
    validated = load_extract(generated)
    manifest = validated.manifest
    catalogue = Catalogue.load()
    early_end = AuditPeriod.of("2026-09", manifest.timezone, manifest.coverage_end).start
    august = AuditPeriod.of("2026-08", manifest.timezone, early_end)
    rejudged = {}
    for start in (None, manifest.coverage_start):
        with steps.canonical_connection(validated, manifest.extract_id) as con:
            run_measures(con, catalogue, august, "source-2025", "aug")
            con.execute(
                "CREATE TABLE earlier AS SELECT * FROM case_results; DELETE FROM case_results"
            )
            _, ran = rejudge_pending(
                con, catalogue, "earlier", manifest.timezone, manifest.coverage_end, "oct", start
            )
            changed = con.execute(
                "SELECT DISTINCT measure_id FROM rejudged_cases ORDER BY 1"
            ).fetchall()
            rejudged[start] = ({m for (m,) in changed}, {m.measure_id: m for m in ran})
    everything, _ = rejudged[None]
    changed, ran = rejudged[manifest.coverage_start]
    assert manifest.coverage_start == date(2025, 9, 1)
    short = {"LN-06", "LN-08", "LN-09", "LN-11", "LN-14"}  # 2026-08-01 less 365 d or more
    # Those with pending cases the full extract decides (LN-06's are all decided by August's
    # end already: its window is 28 days).
    assert short & everything == {"LN-08", "LN-09", "LN-11", "LN-14"}
    assert changed == everything - short
    assert changed == {"LN-05", "LN-12", "LN-15"}
    assert ran["LN-14"].status == "computed"
    assert ran["LN-14"].status_reason == (
        "pending cases not judged again: not computable for this period: needs data from"
        " 2025-07-02, the extract starts 2025-09-01"
    )
    assert ran["LN-15"].status_reason is None
