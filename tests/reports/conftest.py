"""A small hand-written warehouse for the report tests.

Period 2026-10 has three runs: an older succeeded run (r-old), the newest succeeded run (r-new)
and a later failed run (r-fail). Only r-new may appear in anything the reports show. Period 2026-11
has only a failed run. The extract's time zone is Europe/London: BST (+01:00) until 25 October
2026, GMT (+00:00) after, so index times on either side show different offsets.

Period 2026-09 was first audited by r-sep, which left four cases pending; r-new's newer extract
judged them again, so 2026-09's latest run is the rejudge run r-sep-rj (parent r-sep, triggered by
r-new) and `rejudged_cases` holds the four changes under run_id r-new.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from chartaudit.reports.summary import component_summary_sql, summarise_sql, timing_summary_sql
from chartaudit.schemas.results import LATEST_VIEWS_DDL, RESULT_TABLES_DDL

XSS_SITE = "<script>alert(1)</script>"

REJUDGED_XSS = '<script>alert("again")</script> & <i>late</i>'

RUN_COLUMNS = (
    "run_id", "period", "ruleset", "status", "started_at", "finished_at", "extract_id",
    "input_digest", "code_version", "timezone", "coverage_end", "error", "kind", "parent_run_id",
    "triggered_by",
)  # fmt: skip
MEASURE_COLUMNS = (
    "run_id", "measure_id", "measure_version", "title", "unit", "measure_type", "source",
    "reference_hours", "period", "ruleset", "window_hours", "changes", "components",
    "also_report",
)  # fmt: skip
CASE_COLUMNS = (
    "run_id", "period", "measure_id", "measure_version", "unit", "patient_id", "encounter_id",
    "site_id", "setting", "index_time", "outcome", "evidence", "evidence_id", "hours_to_event",
    "window_end", "hours_from_arrival", "flags", "ruleset", "reason", "components",
)  # fmt: skip
REJUDGED_COLUMNS = (
    "run_id", "period", "rejudge_run_id", "previous_run_id", "measure_id", "patient_id",
    "encounter_id", "index_time", "previous_outcome", "outcome", "evidence",
)  # fmt: skip
LOAD_COUNT_COLUMNS = (
    "run_id", "extract_id", "table_name", "source_file", "input_rows", "loaded_rows",
    "quarantined_rows", "warned_rows",
)  # fmt: skip
DATA_QUALITY_COLUMNS = (
    "run_id", "extract_id", "table_name", "source_file", "source_line", "column_name", "rule",
    "value", "level",
)  # fmt: skip
DQ_XSS = '<b onmouseover="alert(4)">late</b>'
QUARANTINE_COLUMNS = (
    "run_id", "extract_id", "table_name", "source_file", "source_line", "column_name", "rule",
    "value",
)  # fmt: skip

RUNS = [
    (
        "r-old",
        "2026-10",
        "source-2025",
        "succeeded",
        "2026-11-02 08:00:00+00",
        "2026-11-02 08:05:00+00",
        "x-old",
        "d0",
        "0.0.9",
        "Europe/London",
        "2026-11-01 00:00:00+00",
        None,
        "audit",
        None,
        None,
    ),
    (
        "r-new",
        "2026-10",
        "source-2025",
        "succeeded",
        "2026-11-05 08:00:00+00",
        "2026-11-05 08:05:00+00",
        "x-2026-10-b",
        "d1",
        "0.1.0",
        "Europe/London",
        "2026-11-04 23:59:00+00",
        None,
        "audit",
        None,
        None,
    ),
    (
        "r-fail",
        "2026-10",
        "source-2025",
        "failed",
        "2026-11-06 08:00:00+00",
        "2026-11-06 08:01:00+00",
        "x-fail",
        "d2",
        "0.1.1",
        "Europe/London",
        None,
        "boom",
        "audit",
        None,
        None,
    ),
    (
        "r-nov-fail",
        "2026-11",
        "source-2025",
        "failed",
        "2026-12-03 08:00:00+00",
        "2026-12-03 08:01:00+00",
        "x-nov",
        "d3",
        "0.1.0",
        "Europe/London",
        None,
        "boom",
        "audit",
        None,
        None,
    ),
    (
        "r-sep",
        "2026-09",
        "source-2025",
        "succeeded",
        "2026-10-05 08:00:00+00",
        "2026-10-05 08:05:00+00",
        "x-2026-09",
        "d4",
        "0.1.0",
        "Europe/London",
        "2026-09-30 23:00:00+00",
        None,
        "audit",
        None,
        None,
    ),
    # Written by r-new: on its extract, finished before r-new itself.
    (
        "r-sep-rj",
        "2026-09",
        "source-2025",
        "succeeded",
        "2026-11-05 08:00:00+00",
        "2026-11-05 08:04:00+00",
        "x-2026-10-b",
        "d1",
        "0.1.0",
        "Europe/London",
        "2026-11-04 23:59:00+00",
        None,
        "rejudge",
        "r-sep",
        "r-new",
    ),
]

LN01_TITLE = "Spine MRI within 12 h of a cauda equina red flag"
LN05_TITLE = "Spine MRI within 2 weeks for intermediate-risk leg numbness"
LN07_TITLE = "Annual 10-g monofilament screening in diabetes"
LN04_TITLE = "Focused neurological examination for leg numbness"

SMALL = "small fibre (pinprick or temperature)"
LARGE = "large fibre (vibration or monofilament)"
REFLEXES = "reflexes (knee or ankle)"
SLR = "straight leg raise"
# In the measure file's order, which the report keeps (the SQL sorts them by name).
LN04_COMPONENTS = [SMALL, LARGE, REFLEXES, SLR]
LOPS = "loss of protective sensation (abnormal 10-g monofilament in the 12 months)"
# LN-07 version 2 changes something for its rule set; written folded, as a measure file does.
LN07_CHANGES = "Counts a SNOMEDCT 134388005 finding\n  as well as a LOCAL monofilament_10g one.\n"


def _measures(run_id: str, period: str = "2026-10") -> list[tuple]:
    def row(mid, version, title, unit, kind, reference, window, changes="", comps=(), also=()):
        return (run_id, mid, version, title, unit, kind, "src", reference, period,
                "source-2025", window, changes, list(comps), list(also))  # fmt: skip

    return [
        row("LN-01", "1", LN01_TITLE, "episode", "timeliness", 4.0, 12.0),
        row("LN-04", "1", LN04_TITLE, "episode", "process", None, None, comps=LN04_COMPONENTS),
        row("LN-05", "1", LN05_TITLE, "episode", "timeliness", None, 336.0),
        row("LN-07", "2", LN07_TITLE, "patient", "underuse", None, None, LN07_CHANGES,
            also=[LOPS]),
    ]  # fmt: skip


def _case(
    run_id: str,
    measure_id: str,
    patient: str,
    site: str | None,
    setting: str | None,
    index_time: str,
    outcome: str,
    evidence: str,
    hours: float | None = None,
    arrival: float | None = None,
    unit: str = "episode",
    flags: list[str] | None = None,
    components: list[str] | None = None,
    period: str = "2026-10",
) -> tuple:
    encounter = None if unit == "patient" else f"e-{patient}"
    return (
        run_id,
        period,
        measure_id,
        "1",
        unit,
        patient,
        encounter,
        site,
        setting,
        index_time,
        outcome,
        evidence,
        None,
        hours,
        None,
        arrival,
        flags or [],
        "source-2025",
        None,
        components or [],
    )


# r-new, LN-01: met 4, not_met 2, excluded 1, pending 1 (denominator 6).
NEW_CASES = [
    _case("r-new", "LN-01", "p01", "S1", "ed", "2026-10-03 09:15:00+00", "met",
          "spine MRI at 2.0 h", 2.0, 3.0),
    _case("r-new", "LN-01", "p02", "S1", "ed", "2026-10-04 10:00:00+00", "met",
          "spine MRI at 3.5 h", 3.5, 5.0),
    _case("r-new", "LN-01", "p03", "S2", "ed", "2026-10-05 11:00:00+00", "met",
          "spine MRI at 6.0 h", 6.0, 7.5),
    _case("r-new", "LN-01", "p04", "S2", "inpatient", "2026-10-28 23:30:00+00", "not_met",
          "spine MRI (order O-9) at 20.0 h, after the 12 h window", 20.0, 21.0),
    _case("r-new", "LN-01", "p05", None, None, "2026-10-10 07:00:00+00", "not_met",
          "no spine MRI ordered; <b>see chart</b> & \"nursing notes\""),
    # An excluded case's scan is in no timing figure.
    _case("r-new", "LN-01", "p06", "S1", "ed", "2026-10-12 12:00:00+00", "excluded",
          "mri_contraindication present (pacemaker)", 0.5, 0.5),
    _case("r-new", "LN-01", "p07", "S2", "ed", "2026-10-31 20:00:00+00", "pending",
          "no spine MRI yet; window closes 2026-11-01 08:00"),
    _case("r-new", "LN-01", "p08", XSS_SITE, "ed", "2026-10-20 16:45:00+00", "met",
          "spine MRI at 1.0 h", 1.0, 1.5),
    _case("r-new", "LN-07", "p11", "S1", "outpatient", "2026-10-31 23:00:00+00", "met",
          "monofilament_10g normal on 2026-03-02", unit="patient"),
    _case("r-new", "LN-07", "p12", "S1", None, "2026-10-31 23:00:00+00", "met",
          "monofilament_10g abnormal on 2026-07-19", unit="patient", flags=[LOPS]),
    _case("r-new", "LN-07", "p13", "S2", "outpatient", "2026-10-31 23:00:00+00", "not_met",
          "no monofilament exam in the 12 months to 2026-10-31", unit="patient"),
    # LN-04, denominator 3: small fibre in 2, large fibre and reflexes in 1, straight leg raise in
    # none. The excluded and the pending case hold components too, and count for none.
    _case("r-new", "LN-04", "p21", "S1", "ed", "2026-10-06 10:00:00+00", "met",
          "all exam parts documented", components=[SMALL, LARGE, REFLEXES]),
    _case("r-new", "LN-04", "p22", "S1", "ed", "2026-10-07 10:00:00+00", "not_met",
          "no large fibre exam, no reflexes", components=[SMALL]),
    _case("r-new", "LN-04", "p23", "S1", "ed", "2026-10-08 10:00:00+00", "not_met",
          "no exam documented"),
    _case("r-new", "LN-04", "p24", "S1", "ed", "2026-10-09 10:00:00+00", "excluded",
          "left against medical advice", components=[SMALL, LARGE, REFLEXES, SLR]),
    _case("r-new", "LN-04", "p25", "S1", "ed", "2026-10-31 22:00:00+00", "pending",
          "still in the department at coverage end", components=[SLR]),
]  # fmt: skip

OLD_CASES = [
    _case("r-old", "LN-01", f"q{i}", "OLDSITE", "ed", "2026-10-03 09:15:00+00", "met",
          "OLD EVIDENCE", 1.0, 1.0)
    for i in range(3)
] + [
    _case("r-old", "LN-01", "q9", "OLDSITE", "ed", "2026-10-03 09:15:00+00", "not_met",
          "OLD NOT MET EVIDENCE"),
]  # fmt: skip

FAILED_CASES = [
    _case("r-fail", "LN-01", "f1", "FAILSITE", "ed", "2026-10-03 09:15:00+00", "not_met",
          "FAILED RUN EVIDENCE"),
]  # fmt: skip


def _sep(
    run_id: str,
    measure_id: str,
    patient: str,
    index_time: str,
    outcome: str,
    evidence: str,
    hours: float | None = None,
) -> tuple:
    return _case(run_id, measure_id, patient, "S1", "ed", index_time, outcome, evidence, hours,
                 None if hours is None else hours + 1, period="2026-09")  # fmt: skip


# 2026-09 as first audited (r-sep): four cases pending at the September extract's coverage end.
SEP_CASES = [
    _sep("r-sep", "LN-01", "s01", "2026-09-10 09:00:00+00", "met", "spine MRI at 3.0 h", 3.0),
    _sep("r-sep", "LN-01", "s02", "2026-09-30 20:00:00+00", "pending", "no spine MRI yet"),
    _sep("r-sep", "LN-01", "s03", "2026-09-30 21:30:00+00", "pending", "no spine MRI yet"),
    _sep("r-sep", "LN-01", "s04", "2026-09-30 22:00:00+00", "pending", "no spine MRI yet"),
    _sep("r-sep", "LN-05", "s05", "2026-09-25 10:00:00+00", "pending", "no spine MRI yet"),
]
# The same month judged again on r-new's extract (r-sep-rj): no case is pending any more.
REJUDGED = [
    ("LN-01", "s02", "2026-09-30 20:00:00+00", "met", "spine MRI at 10.0 h", 10.0),
    ("LN-01", "s03", "2026-09-30 21:30:00+00", "met", "spine MRI at 11.5 h", 11.5),
    ("LN-01", "s04", "2026-09-30 22:00:00+00", "not_met", REJUDGED_XSS, 30.0),
    ("LN-05", "s05", "2026-09-25 10:00:00+00", "met", "spine MRI at 100.0 h", 100.0),
]  # fmt: skip
SEP_RJ_CASES = [
    _sep("r-sep-rj", "LN-01", "s01", "2026-09-10 09:00:00+00", "met", "spine MRI at 3.0 h", 3.0)
] + [_sep("r-sep-rj", m, p, t, o, e, h) for m, p, t, o, e, h in REJUDGED]
REJUDGED_CASES = [
    ("r-new", "2026-09", "r-sep-rj", "r-sep", m, p, f"e-{p}", t, "pending", o, e)
    for m, p, t, o, e, _ in REJUDGED
]

LOAD_COUNTS = [
    ("r-new", "x-2026-10-b", "encounters", "encounters.csv", 100, 98, 2, 3),
    ("r-new", "x-2026-10-b", "findings", "findings.csv", 50, 50, 0, 0),
    ("r-new", "x-2026-10-b", "orders", "orders_1.csv", 30, 29, 1, 1),
    ("r-new", "x-2026-10-b", "orders", "orders_2.csv", 20, 17, 3, 0),
    # written before warned_rows existed
    ("r-old", "x-old", "encounters", "encounters.csv", 7777, 7777, 0, None),
    ("r-sep", "x-2026-09", "encounters", "september_encounters.csv", 60, 60, 0, None),
]
# Warnings: rows that loaded (r-new's), and one of an older run that no report shows.
DATA_QUALITY = [
    ("r-new", "x-2026-10-b", "encounters", "encounters.csv", line, "departure_time", "time_order",
     f"departure {line} before arrival_time", "warning")
    for line in (40, 5, 9)
] + [
    ("r-new", "x-2026-10-b", "orders", "orders_1.csv", 12, "performed_time", "time_order", DQ_XSS,
     "warning"),
    ("r-old", "x-old", "orders", "orders.csv", 3, "dose_mg", "old_warning", "x", "warning"),
]  # fmt: skip


def _quarantine() -> list[tuple]:
    rows = []
    # 11 (table, column, rule) groups; group k has k + 1 rows, so only the top 10 are listed.
    for k in range(11):
        for j in range(k + 1):
            rows.append(
                (
                    "r-new",
                    "x-2026-10-b",
                    "orders",
                    "orders_1.csv",
                    10 + 100 * k + j,
                    f"col_{k:02d}",
                    f"rule_{k:02d}",
                    "bad",
                )
            )
    rows.append(("r-old", "x-old", "orders", "orders.csv", 2, "status", "old_rule", "x"))
    rows.append(("r-sep", "x-2026-09", "orders", "orders.csv", 3, "status", "sep_rule", "x"))
    return rows


def _insert(table: str, columns: tuple[str, ...]) -> str:
    # Named columns: the result tables may gain (additive) columns.
    placeholders = ", ".join("?" for _ in columns)
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({placeholders})"


def summarise_run(con: duckdb.DuckDBPyConnection, run_id: str) -> None:
    """(Re)write one run's measure_summary, component_summary and timing_summary rows, from its
    case_results and its measures rows, as the summarise step does."""
    cases = f"(SELECT * FROM case_results WHERE run_id = '{run_id}')"
    measures = f"(SELECT * FROM measures WHERE run_id = '{run_id}')"
    for table, sql in (
        ("measure_summary", summarise_sql(cases, measures)),
        ("component_summary", component_summary_sql(cases, measures)),
        ("timing_summary", timing_summary_sql(cases, measures)),
    ):
        con.execute(f"DELETE FROM {table} WHERE run_id = ?", [run_id])
        con.execute(f"INSERT INTO {table} BY NAME {sql}")


def build_warehouse(path: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(str(path))
    con.execute(RESULT_TABLES_DDL)
    con.execute(LATEST_VIEWS_DDL)
    con.executemany(_insert("runs", RUN_COLUMNS), RUNS)
    for run_id in ("r-old", "r-new", "r-fail"):
        con.executemany(_insert("measures", MEASURE_COLUMNS), _measures(run_id))
    for run_id in ("r-sep", "r-sep-rj"):
        con.executemany(_insert("measures", MEASURE_COLUMNS), _measures(run_id, "2026-09"))
    con.executemany(
        _insert("case_results", CASE_COLUMNS),
        NEW_CASES + OLD_CASES + FAILED_CASES + SEP_CASES + SEP_RJ_CASES,
    )
    con.executemany(_insert("rejudged_cases", REJUDGED_COLUMNS), REJUDGED_CASES)
    for run_id in ("r-old", "r-new", "r-fail", "r-sep", "r-sep-rj"):
        summarise_run(con, run_id)
    con.executemany(_insert("load_counts", LOAD_COUNT_COLUMNS), LOAD_COUNTS)
    con.executemany(_insert("quarantine", QUARANTINE_COLUMNS), _quarantine())
    con.executemany(_insert("data_quality", DATA_QUALITY_COLUMNS), DATA_QUALITY)
    return con


@pytest.fixture
def warehouse(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    con = build_warehouse(tmp_path / "audit.duckdb")
    try:
        yield con
    finally:
        con.close()
