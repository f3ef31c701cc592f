"""not_met_cases: the drill-down's and the export's rows, with evidence ids resolved to words
from the canonical tables of the extract the run judged."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import duckdb
import polars as pl

from chartaudit.reports.cases import CASE_COLUMNS, not_met_cases
from chartaudit.storage.warehouse import connect
from tests.reports.conftest import CASE_COLUMNS as RESULT_CASE_COLUMNS
from tests.reports.conftest import RUN_COLUMNS, _case, _insert


def _run(run_id: str, extract_id: str, status: str = "succeeded") -> tuple:
    return (run_id, "2026-10", "source-2025", status, "2026-11-05 08:00:00+00",
            "2026-11-05 08:05:00+00", extract_id, "d", "0.1.0", "America/Chicago",
            "2026-11-01 05:00:00+00", None, "audit", None, None)  # fmt: skip


def _with_evidence(case: tuple, evidence_id: str | None, reason: str | None = None) -> tuple:
    row = list(case)
    row[RESULT_CASE_COLUMNS.index("evidence_id")] = evidence_id
    row[RESULT_CASE_COLUMNS.index("reason")] = reason
    return tuple(row)


def _warehouse(path: Path) -> duckdb.DuckDBPyConnection:
    con = connect(path)  # the whole schema: canonical tables too
    con.executemany(_insert("runs", RUN_COLUMNS), [_run("r1", "x1"), _run("r0", "x0", "failed")])
    cases = [
        # an overuse case: the breaking order
        _with_evidence(
            _case("r1", "LN-06", "p1", "S1", "outpatient", "2026-10-03 19:00:00+00", "not_met",
                  "not met: lumbar imaging without an indication — lumbar imaging 72148"),
            "OR1", "lumbar imaging without an indication"),
        # nothing found in the window, the nearest lab outside it
        _with_evidence(
            _case("r1", "LN-11", "p2", "S2", "emergency", "2026-10-02 12:00:00+00", "not_met",
                  "not met: no ferritin between A and B; nearest outside the window: ferritin"),
            "labs:00000000000000aa"),
        # nothing at all
        _case("r1", "LN-11", "p3", "S2", "emergency", "2026-10-01 12:00:00+00", "not_met",
              "not met: no ferritin between C and D"),
        # an id of a row the tables no longer hold: the judge's words stand
        _with_evidence(
            _case("r1", "LN-11", "p4", "S2", "emergency", "2026-10-04 12:00:00+00", "not_met",
                  "not met: no ferritin; nearest outside the window: OLD"), "labs:gone"),
        _case("r1", "LN-11", "p5", "S2", "emergency", "2026-10-04 12:00:00+00", "met", "ok"),
        _case("r0", "LN-11", "p6", "S2", "emergency", "2026-10-04 12:00:00+00", "not_met", "x"),
    ]  # fmt: skip
    con.executemany(_insert("case_results", RESULT_CASE_COLUMNS), cases)
    con.execute(
        "INSERT INTO orders VALUES ('OR1', 'p1', 'e-p1', 'CPT', '72148', 'imaging', NULL,"
        " '2026-10-03 19:05:00+00', '2026-10-04 14:10:00+00', 'completed', 2, 'x1')"
    )
    con.execute(
        "INSERT INTO labs VALUES ('p2', 'e-p2', '2276-4', 71.6, NULL, 'ng/mL',"
        " '2026-07-03 14:09:00+00', NULL, 2, 'x1', 'labs:00000000000000aa')"
    )
    con.execute(
        "INSERT INTO encounters VALUES ('e-p1', 'p1', 'S1', '=HYPERLINK(\"x\")', NULL,"
        " 'outpatient', '2026-10-03 18:00:00+00', NULL, 'discharged', 2, 'x1'),"
        " ('e-p2', 'p2', 'S2', 'ED', NULL, 'emergency', '2026-10-02 11:00:00+00', NULL,"
        " 'admitted', 3, 'OTHER-EXTRACT')"
    )
    return con


def test_not_met_cases_resolve_evidence_in_words(tmp_path: Path) -> None:
    con = _warehouse(tmp_path / "audit.duckdb")
    cases = not_met_cases(con, "2026-10")
    assert cases.columns == list(CASE_COLUMNS)
    assert cases.drop("index_time").rows() == [
        ("LN-06", "2026-10", "p1", "e-p1", "S1", '=HYPERLINK("x")', "outpatient",
         "lumbar imaging without an indication",
         "MRI lumbar spine without contrast (CPT 72148), order OR1, ordered 2026-10-03 14:05,"
         " performed 2026-10-04 09:10, status completed"),
        ("LN-11", "2026-10", "p3", "e-p3", "S2", None, "emergency",
         "no ferritin between C and D", "no qualifying record found"),
        # the encounter row is another extract's: no department
        ("LN-11", "2026-10", "p2", "e-p2", "S2", None, "emergency", "no ferritin between A and B",
         "nearest outside the window: Ferritin [Mass/volume] in Serum or Plasma (LOINC 2276-4)"
         " = 71.6 ng/mL, collected 2026-07-03 09:09"),
        ("LN-11", "2026-10", "p4", "e-p4", "S2", None, "emergency", "no ferritin",
         "no ferritin; nearest outside the window: OLD"),
    ]  # fmt: skip
    assert cases["index_time"][0] == datetime(2026, 10, 3, 19, 0, tzinfo=UTC)


def test_not_met_cases_without_canonical_tables(warehouse: duckdb.DuckDBPyConnection) -> None:
    # The report tests' warehouse has result tables only, and no evidence ids.
    cases = not_met_cases(warehouse, "2026-10")
    assert cases.select("measure_id", "patient_id", "reason", "evidence_text").rows() == [
        ("LN-01", "p05", 'no spine MRI ordered; <b>see chart</b> & "nursing notes"',
         "no qualifying record found"),
        ("LN-01", "p04", "spine MRI (order O-9) at 20.0 h, after the 12 h window",
         "no qualifying record found"),
        ("LN-04", "p22", "no large fibre exam, no reflexes", "no qualifying record found"),
        ("LN-04", "p23", "no exam documented", "no qualifying record found"),
        ("LN-07", "p13", "no monofilament exam in the 12 months to 2026-10-31",
         "no qualifying record found"),
    ]  # fmt: skip
    assert not_met_cases(warehouse, "2026-11").height == 0
    assert isinstance(cases, pl.DataFrame)
