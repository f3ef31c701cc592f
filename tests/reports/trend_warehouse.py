"""A ten-month warehouse for the trend, drill-down and suppression tests (and the browser tests).

LN-01 (timeliness) has 20 cases in each month 2026-01..2026-10: cases 0-11 at the site named
``XSS_SITE`` (setting emergency), 12-17 at S2 (urgent_care), 18-19 at TINY (inpatient). The first
``LN01_MET[m]`` cases are met, the rest not met: 16 of 20 in January to August, 17 in September,
4 in October. So p̄ = 149/200 = 0.745; January to September lie above it (a run of 9) and October
lies below its lower limit 0.745 - 3 sqrt(0.745 * 0.255 / 20) = 0.45246.

LN-06 (overuse) has 3 cases in October only (2 met, 1 not met). Every month has a succeeded run
(r01..r10, extract x01..x10, time zone America/Chicago); October's canonical tables hold the
encounters of its cases (department ``XSS_DEPARTMENT`` at the XSS site) and the order one case
names as evidence.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from chartaudit.storage.warehouse import connect
from tests.reports.conftest import (
    CASE_COLUMNS,
    MEASURE_COLUMNS,
    RUN_COLUMNS,
    XSS_SITE,
    _case,
    _insert,
    summarise_run,
)

XSS_DEPARTMENT = '=HYPERLINK("x")'
MONTHS = [f"2026-{m:02d}" for m in range(1, 11)]
LN01_MET = dict(zip(MONTHS, [16] * 8 + [17, 4], strict=True))
EVIDENCE_PATIENT = "p1004"  # October, case 4: not met, with an order outside the window


def _site(i: int) -> tuple[str, str]:
    if i < 12:
        return XSS_SITE, "emergency"
    return ("S2", "urgent_care") if i < 18 else ("TINY", "inpatient")


def _run(month: int) -> tuple:
    period = MONTHS[month - 1]
    return (f"r{month:02d}", period, "source-2025", "succeeded",
            f"2026-{month + 1:02d}-03 08:00:00+00",
            f"2026-{month + 1:02d}-03 08:05:00+00", f"x{month:02d}", "d", "0.2.0",
            "America/Chicago", f"2026-{month + 1:02d}-01 05:00:00+00", None, "audit", None,
            None)  # fmt: skip


def _measures(run_id: str, period: str) -> list[tuple]:
    return [
        (run_id, "LN-01", "1", "Spine MRI within 12 h", "episode", "timeliness", "Seed, red flags",
         4.0, period, "source-2025", 12.0, "", [], []),
        (run_id, "LN-06", "1", "No lumbar imaging without an indication", "episode", "overuse",
         "Seed, pitfalls", None, period, "source-2025", None, "", [], []),
    ]  # fmt: skip


def _ln01_cases(month: int) -> list[tuple]:
    period = MONTHS[month - 1]
    cases = []
    for i in range(20):
        site, setting = _site(i)
        patient = f"p{month:02d}{i:02d}"
        outcome = "met" if i < LN01_MET[period] else "not_met"
        evidence = (
            "spine MRI at 3.0 h"
            if outcome == "met"
            else ("not met: no completed spine MRI between A and B")
        )
        cases.append(_case(f"r{month:02d}", "LN-01", patient, site, setting,
                           f"{period}-{i + 1:02d} 15:00:00+00", outcome, evidence,
                           3.0 if outcome == "met" else None, period=period))  # fmt: skip
    return cases


def _with_evidence_id(case: tuple, evidence: str, evidence_id: str) -> tuple:
    row = list(case)
    row[CASE_COLUMNS.index("evidence")] = evidence
    row[CASE_COLUMNS.index("evidence_id")] = evidence_id
    return tuple(row)


def build_trend_warehouse(path: Path) -> duckdb.DuckDBPyConnection:
    con = connect(path)  # the whole schema, canonical tables too
    con.executemany(_insert("runs", RUN_COLUMNS), [_run(m) for m in range(1, 11)])
    cases = []
    for month in range(1, 11):
        run_id, period = f"r{month:02d}", MONTHS[month - 1]
        con.executemany(_insert("measures", MEASURE_COLUMNS), _measures(run_id, period))
        cases += _ln01_cases(month)
    cases = [
        _with_evidence_id(
            c,
            "not met: no completed spine MRI between A and B; nearest outside the window: OR1",
            "OR1",
        )
        if c[CASE_COLUMNS.index("patient_id")] == EVIDENCE_PATIENT
        else c
        for c in cases
    ]
    cases += [
        _case("r10", "LN-06", f"q{i}", "S2", "urgent_care", f"2026-10-{i + 2:02d} 12:00:00+00",
              outcome, "no imaging" if outcome == "met" else "not met: imaging without an "
              "indication", period="2026-10")
        for i, outcome in enumerate(["met", "met", "not_met"])
    ]  # fmt: skip
    con.executemany(_insert("case_results", CASE_COLUMNS), cases)
    for month in range(1, 11):
        summarise_run(con, f"r{month:02d}")
    october = [c for c in cases if c[1] == "2026-10"]
    con.executemany(
        "INSERT INTO encounters (encounter_id, patient_id, site_id, department, setting,"
        " arrival_time, source_line, extract_id) VALUES (?, ?, ?, ?, ?, ?, ?, 'x10')",
        [
            (c[6], c[5], c[7], XSS_DEPARTMENT if c[7] == XSS_SITE else "ED", c[8], c[9], n + 2)
            for n, c in enumerate(october)
        ],
    )
    con.execute(
        "INSERT INTO orders VALUES ('OR1', $p, $e, 'CPT', '72148', 'imaging', NULL,"
        " '2026-10-06 02:00:00+00', '2026-10-06 04:30:00+00', 'completed', 2, 'x10')",
        {"p": EVIDENCE_PATIENT, "e": f"e-{EVIDENCE_PATIENT}"},
    )
    return con
