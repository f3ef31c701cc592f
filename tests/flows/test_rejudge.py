"""A case pending in month M is judged again in the run for M+1, once the newer extract closes
its window: the latest views show the final outcome and the run records what changed."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from chartaudit.flows import steps
from chartaudit.storage import warehouse
from tests.flows.test_pipeline import run_pipeline
from tests.schemas.builders import MANIFEST, write_extract


def _encounter(encounter_id: str, patient: str, arrival: str, departure: str) -> dict:
    return {
        "encounter_id": encounter_id,
        "patient_id": patient,
        "site_id": "S1",
        "department": "ED",
        "clinician_id": "C1",
        "setting": "emergency",
        "arrival_time": arrival,
        "departure_time": departure,
        "disposition": "discharged",
    }


def _red_flag(patient: str, encounter_id: str, at: str) -> dict:
    return {
        "patient_id": patient,
        "encounter_id": encounter_id,
        "code_system": "LOCAL",
        "code": "saddle_anesthesia",
        "result": "present",
        "value_num": "",
        "recorded_time": at,
    }


def _mri(order_id: str, patient: str, encounter_id: str, at: str) -> dict:
    return {
        "order_id": order_id,
        "patient_id": patient,
        "encounter_id": encounter_id,
        "code_system": "CPT",
        "code": "72148",
        "category": "imaging",
        "specialty": "",
        "ordered_time": at,
        "performed_time": at,
        "status": "completed",
    }


EMPTY = {"diagnoses": [], "labs": [], "medications": []}
# R1: red flag on the last evening of September, MRI after midnight (known only to October's
# extract); R2: red flag that evening, never scanned; R3: scanned in good time mid-September.
SEPTEMBER = {
    "patients": [
        {"patient_id": p, "birth_year": "1960", "sex": "F", "death_date": ""}
        for p in ("R1", "R2", "R3")
    ],
    "encounters": [
        _encounter("E1", "R1", "2026-09-30 19:00", "2026-09-30 23:00"),
        _encounter("E2", "R2", "2026-09-30 20:00", "2026-09-30 23:30"),
        _encounter("E3", "R3", "2026-09-10 08:00", "2026-09-10 15:00"),
    ],
    "findings": [
        _red_flag("R1", "E1", "2026-09-30 20:00"),
        _red_flag("R2", "E2", "2026-09-30 21:00"),
        _red_flag("R3", "E3", "2026-09-10 09:00"),
    ],
    "orders": [_mri("O3", "R3", "E3", "2026-09-10 11:00")],
    **EMPTY,
}


def _extracts(tmp_path: Path) -> tuple[Path, Path]:
    september = write_extract(
        tmp_path / "september",
        copy.deepcopy(SEPTEMBER),
        manifest={**MANIFEST, "extract_id": "site-2026-09", "coverage_end": "2026-09-30"},
    )
    october_rows = copy.deepcopy(SEPTEMBER)
    october_rows["orders"].append(_mri("O1", "R1", "E1", "2026-10-01 02:00"))
    october = write_extract(
        tmp_path / "october",
        october_rows,
        manifest={**MANIFEST, "extract_id": "site-2026-10", "coverage_end": "2026-10-31"},
    )
    return september, october


def _outcomes(path: Path, view: str, period: str) -> dict[tuple[str, str], str]:
    with warehouse.connect(path, read_only=True) as con:
        rows = con.execute(
            f"SELECT measure_id, patient_id, outcome FROM {view} WHERE period = ?"
            " AND measure_id IN ('LN-01', 'LN-02')",
            [period],
        ).fetchall()
    return {(m, p): o for m, p, o in rows}


@pytest.fixture
def audited(tmp_path: Path) -> tuple[Path, object, object]:
    september, october = _extracts(tmp_path)
    path = tmp_path / "audit.duckdb"
    first = run_pipeline(september, path, tmp_path / "w1", period="2026-09")
    second = run_pipeline(october, path, tmp_path / "w2", period="2026-10")
    return path, first, second


def test_september_is_pending_before_october_arrives(tmp_path: Path) -> None:
    september, _ = _extracts(tmp_path)
    path = tmp_path / "audit.duckdb"
    run_pipeline(september, path, tmp_path / "w1", period="2026-09")
    assert _outcomes(path, "latest_case_results", "2026-09") == {
        ("LN-01", "R1"): "pending",
        ("LN-01", "R2"): "pending",
        ("LN-01", "R3"): "met",
        ("LN-02", "R1"): "pending",
        ("LN-02", "R2"): "pending",
        ("LN-02", "R3"): "not_met",
    }


def test_the_october_run_decides_septembers_pending_cases(audited) -> None:
    path, first, second = audited
    assert _outcomes(path, "latest_case_results", "2026-09") == {
        ("LN-01", "R1"): "met",  # the MRI at 02:00 on 1 October, 6 h after the red flag
        ("LN-01", "R2"): "not_met",
        ("LN-01", "R3"): "met",
        ("LN-02", "R1"): "not_met",
        ("LN-02", "R2"): "not_met",
        ("LN-02", "R3"): "not_met",
    }
    with warehouse.connect(path, read_only=True) as con:
        runs = con.execute(
            "SELECT period, kind, status, parent_run_id, triggered_by FROM latest_runs"
            " ORDER BY period"
        ).fetchall()
        changed = con.execute(
            "SELECT period, measure_id, patient_id, previous_outcome, outcome FROM rejudged_cases"
            " WHERE run_id = ? ORDER BY ALL",
            [second.run_id],
        ).fetchall()
        summary = con.execute(
            "SELECT measure_id, denominator, met, not_met, pending FROM latest_measure_summary"
            " WHERE period = '2026-09' AND stratum_kind = 'all'"
            " AND measure_id IN ('LN-01', 'LN-02') ORDER BY 1"
        ).fetchall()
        history = con.execute(
            "SELECT count(*) FROM case_results WHERE run_id = ? AND outcome = 'pending'",
            [first.run_id],
        ).fetchone()[0]
    assert runs == [
        ("2026-09", "rejudge", "succeeded", first.run_id, second.run_id),
        ("2026-10", "audit", "succeeded", None, None),
    ]
    assert changed == [
        ("2026-09", "LN-01", "R1", "pending", "met"),
        ("2026-09", "LN-01", "R2", "pending", "not_met"),
        ("2026-09", "LN-02", "R1", "pending", "not_met"),
        ("2026-09", "LN-02", "R2", "pending", "not_met"),
    ]
    assert summary == [("LN-01", 3, 2, 1, 0), ("LN-02", 3, 0, 3, 0)]
    assert history == 4  # the first run's rows stay as they were


def test_the_rejudged_month_keeps_its_other_cases_unchanged(audited) -> None:
    path, first, _ = audited
    with warehouse.connect(path, read_only=True) as con:
        before = con.execute(
            "SELECT * EXCLUDE (run_id) FROM case_results WHERE run_id = ?"
            " AND outcome <> 'pending' ORDER BY ALL",
            [first.run_id],
        ).fetchall()
        after = con.execute(
            "SELECT * EXCLUDE (run_id) FROM latest_case_results WHERE period = '2026-09'"
            " AND (measure_id, patient_id) NOT IN"
            " (SELECT (measure_id, patient_id) FROM rejudged_cases) ORDER BY ALL"
        ).fetchall()
    assert after == before


def test_nothing_is_judged_again_once_nothing_is_pending(audited, tmp_path: Path) -> None:
    path, _, _ = audited
    _, october = _extracts(tmp_path / "again")
    third = run_pipeline(october, path, tmp_path / "w3", period="2026-10")
    with warehouse.connect(path, read_only=True) as con:
        kinds = con.execute("SELECT kind, count(*) FROM runs GROUP BY 1 ORDER BY 1").fetchall()
        mine = con.execute(
            "SELECT count(*) FROM rejudged_cases WHERE run_id = ?", [third.run_id]
        ).fetchone()[0]
    assert kinds == [("audit", 3), ("rejudge", 1)]
    assert mine == 0
    assert steps.rejudged_summary(tmp_path / "w3") == ""
