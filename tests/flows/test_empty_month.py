"""A month with no case at all still gets a summary row for every measure that ran, so a
zero is visible as a zero and not as a measure that silently did not run."""

from __future__ import annotations

from pathlib import Path

from chartaudit.audits.engine import Catalogue
from chartaudit.storage import warehouse
from tests.flows.test_pipeline import run_pipeline
from tests.schemas.builders import MANIFEST, write_extract


def test_every_measure_has_a_zero_row_in_a_month_without_cases(tmp_path: Path) -> None:
    # A few clean rows, none of them a case; the extract said to start early enough for every
    # measure's look-back from 2026-02 (the builders' 2025-11-01 is not: audits/lookback.py).
    manifest = {**MANIFEST, "coverage_start": "2024-01-01"}
    extract = write_extract(tmp_path / "extract", manifest=manifest)
    path = tmp_path / "audit.duckdb"
    run_pipeline(extract, path, tmp_path / "work", period="2026-02")
    with warehouse.connect(path, read_only=True) as con:
        cases = con.execute("SELECT count(*) FROM latest_case_results").fetchall()[0][0]
        rows = con.execute(
            "SELECT measure_id, stratum_kind, denominator, met, not_met, excluded, pending, rate"
            " FROM latest_measure_summary WHERE period = '2026-02' ORDER BY measure_id"
        ).fetchall()
        components = con.execute(
            "SELECT measure_id, name, denominator, cases_with, rate FROM latest_component_summary"
            " WHERE period = '2026-02' AND measure_id = 'LN-04' ORDER BY name"
        ).fetchall()
    ids = [m.id for m in Catalogue.load().measures]
    assert cases == 0
    assert rows == [(m, "all", 0, 0, 0, 0, 0, None) for m in ids]
    assert [(m, d, k, r) for m, _, d, k, r in components] == [("LN-04", 0, 0, None)] * 5
