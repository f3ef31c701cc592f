"""A small hand-written warehouse for the report tests.

Period 2026-10 has three runs: an older succeeded run (r-old), the newest succeeded run (r-new)
and a later failed run (r-fail). Only r-new may appear in anything the reports show. Period 2026-11
has only a failed run. The extract's time zone is Europe/London: BST (+01:00) until 25 October
2026, GMT (+00:00) after, so index times on either side show different offsets.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from chartaudit.reports.summary import summarise_sql
from chartaudit.schemas.results import LATEST_VIEWS_DDL, RESULT_TABLES_DDL

XSS_SITE = "<script>alert(1)</script>"

RUN_COLUMNS = (
    "run_id", "period", "ruleset", "status", "started_at", "finished_at", "extract_id",
    "input_digest", "code_version", "timezone", "coverage_end", "error",
)  # fmt: skip
MEASURE_COLUMNS = (
    "run_id", "measure_id", "measure_version", "title", "unit", "measure_type", "source",
    "reference_hours",
)  # fmt: skip
CASE_COLUMNS = (
    "run_id", "period", "measure_id", "measure_version", "unit", "patient_id", "encounter_id",
    "site_id", "setting", "index_time", "outcome", "evidence", "evidence_id", "hours_to_event",
    "window_end", "hours_from_arrival",
)  # fmt: skip
LOAD_COUNT_COLUMNS = (
    "run_id", "extract_id", "table_name", "source_file", "input_rows", "loaded_rows",
    "quarantined_rows",
)  # fmt: skip
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
    ),
]

LN01_TITLE = "Spine MRI within 12 h of a cauda equina red flag"
LN05_TITLE = "Spine MRI within 2 weeks for intermediate-risk leg numbness"
LN07_TITLE = "Annual 10-g monofilament screening in diabetes"


def _measures(run_id: str) -> list[tuple]:
    return [
        (run_id, "LN-01", "1", LN01_TITLE, "episode", "timeliness", "src", 4.0),
        (run_id, "LN-05", "1", LN05_TITLE, "episode", "timeliness", "src", None),
        (run_id, "LN-07", "2", LN07_TITLE, "patient", "underuse", "src", None),
    ]


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
) -> tuple:
    encounter = None if unit == "patient" else f"e-{patient}"
    return (
        run_id,
        "2026-10",
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
    _case("r-new", "LN-01", "p06", "S1", "ed", "2026-10-12 12:00:00+00", "excluded",
          "mri_contraindication present (pacemaker)"),
    _case("r-new", "LN-01", "p07", "S2", "ed", "2026-10-31 20:00:00+00", "pending",
          "no spine MRI yet; window closes 2026-11-01 08:00"),
    _case("r-new", "LN-01", "p08", XSS_SITE, "ed", "2026-10-20 16:45:00+00", "met",
          "spine MRI at 1.0 h", 1.0, 1.5),
    _case("r-new", "LN-07", "p11", "S1", "outpatient", "2026-10-31 23:00:00+00", "met",
          "monofilament_10g normal on 2026-03-02", unit="patient"),
    _case("r-new", "LN-07", "p12", "S1", None, "2026-10-31 23:00:00+00", "met",
          "monofilament_10g abnormal on 2026-07-19", unit="patient"),
    _case("r-new", "LN-07", "p13", "S2", "outpatient", "2026-10-31 23:00:00+00", "not_met",
          "no monofilament exam in the 12 months to 2026-10-31", unit="patient"),
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

LOAD_COUNTS = [
    ("r-new", "x-2026-10-b", "encounters", "encounters.csv", 100, 98, 2),
    ("r-new", "x-2026-10-b", "findings", "findings.csv", 50, 50, 0),
    ("r-new", "x-2026-10-b", "orders", "orders_1.csv", 30, 29, 1),
    ("r-new", "x-2026-10-b", "orders", "orders_2.csv", 20, 17, 3),
    ("r-old", "x-old", "encounters", "encounters.csv", 7777, 7777, 0),
]


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
    return rows


def _insert(table: str, columns: tuple[str, ...]) -> str:
    # Named columns: the result tables may gain (additive) columns.
    placeholders = ", ".join("?" for _ in columns)
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({placeholders})"


def build_warehouse(path: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(str(path))
    con.execute(RESULT_TABLES_DDL)
    con.execute(LATEST_VIEWS_DDL)
    con.executemany(_insert("runs", RUN_COLUMNS), RUNS)
    for run_id in ("r-old", "r-new", "r-fail"):
        con.executemany(_insert("measures", MEASURE_COLUMNS), _measures(run_id))
    con.executemany(_insert("case_results", CASE_COLUMNS), NEW_CASES + OLD_CASES + FAILED_CASES)
    for run_id in ("r-old", "r-new", "r-fail"):
        one_run = f"(SELECT * FROM case_results WHERE run_id = '{run_id}')"
        con.execute(
            "INSERT INTO measure_summary "
            + summarise_sql(case_results=one_run, measures="measures")
        )
    con.executemany(_insert("load_counts", LOAD_COUNT_COLUMNS), LOAD_COUNTS)
    con.executemany(_insert("quarantine", QUARANTINE_COLUMNS), _quarantine())
    return con


@pytest.fixture
def warehouse(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    con = build_warehouse(tmp_path / "audit.duckdb")
    try:
        yield con
    finally:
        con.close()
