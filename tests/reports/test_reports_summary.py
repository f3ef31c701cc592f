"""summarise_sql against hand-counted rows and the plain-Python Wilson oracle."""

from __future__ import annotations

import duckdb
import pytest

from chartaudit.reports.summary import SUMMARY_COLUMNS, summarise_sql, wilson_interval
from chartaudit.schemas.results import LATEST_VIEWS_DDL, RESULT_TABLES_DDL

R_NEW = "(SELECT * FROM case_results WHERE run_id = 'r-new')"


def _rounded(rows: list[tuple]) -> list[tuple]:
    return [tuple(round(v, 4) if isinstance(v, float) else v for v in row) for row in rows]


def _row(measure, kind, stratum, den, exc, met, not_met, pend, rate, low, high) -> tuple:
    return ("r-new", "2026-10", measure, kind, stratum, den, exc, met, not_met, pend, rate, low,
            high)  # fmt: skip


def test_known_wilson_values() -> None:
    assert [round(v, 4) for v in wilson_interval(8, 10)] == [0.4902, 0.9433]
    assert [round(v, 4) for v in wilson_interval(0, 10)] == [0.0, 0.2775]
    assert [round(v, 4) for v in wilson_interval(10, 10)] == [0.7225, 1.0]
    assert [round(v, 4) for v in wilson_interval(1, 2)] == [0.0945, 0.9055]
    assert wilson_interval(0, 0) is None
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def test_columns_are_measure_summary_in_ddl_order(warehouse: duckdb.DuckDBPyConnection) -> None:
    ddl_columns = [
        r[0]
        for r in warehouse.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_name = 'measure_summary' ORDER BY ordinal_position"
        ).fetchall()
    ]
    assert list(SUMMARY_COLUMNS) == ddl_columns
    for sql in (summarise_sql(), summarise_sql(R_NEW, "measures")):
        assert warehouse.sql(sql).columns == ddl_columns
    described = warehouse.sql(f"DESCRIBE {summarise_sql(R_NEW, 'measures')}").fetchall()
    types = {r[0]: r[1] for r in described}
    assert [types[c] for c in ("denominator", "excluded", "met", "not_met", "pending", "rate")] == [
        "BIGINT"
    ] * 5 + ["DOUBLE"]


def test_exact_rows_for_one_run(warehouse: duckdb.DuckDBPyConnection) -> None:
    rows = _rounded(warehouse.sql(summarise_sql(R_NEW, "measures")).fetchall())
    assert rows == [
        _row("LN-01", "all", None, 6, 1, 4, 2, 1, 0.6667, 0.3, 0.9032),
        _row("LN-01", "site", "<script>alert(1)</script>", 1, 0, 1, 0, 0, 1.0, 0.2065, 1.0),
        _row("LN-01", "site", "S1", 2, 1, 2, 0, 0, 1.0, 0.3424, 1.0),
        _row("LN-01", "site", "S2", 2, 0, 1, 1, 1, 0.5, 0.0945, 0.9055),
        _row("LN-01", "site", "unknown", 1, 0, 0, 1, 0, 0.0, 0.0, 0.7935),
        _row("LN-01", "setting", "ed", 4, 1, 4, 0, 1, 1.0, 0.5101, 1.0),
        _row("LN-01", "setting", "inpatient", 1, 0, 0, 1, 0, 0.0, 0.0, 0.7935),
        _row("LN-01", "setting", "unknown", 1, 0, 0, 1, 0, 0.0, 0.0, 0.7935),
        # LN-05 ran but had no case: one `all` row of zeros.
        _row("LN-05", "all", None, 0, 0, 0, 0, 0, None, None, None),
        _row("LN-07", "all", None, 3, 0, 2, 1, 0, 0.6667, 0.2077, 0.9385),
        _row("LN-07", "site", "S1", 2, 0, 2, 0, 0, 1.0, 0.3424, 1.0),
        _row("LN-07", "site", "S2", 1, 0, 0, 1, 0, 0.0, 0.0, 0.7935),
        _row("LN-07", "setting", "outpatient", 2, 0, 1, 1, 0, 0.5, 0.0945, 0.9055),
        _row("LN-07", "setting", "unknown", 1, 0, 1, 0, 0, 1.0, 0.2065, 1.0),
    ]


def test_without_measures_no_zero_rows(warehouse: duckdb.DuckDBPyConnection) -> None:
    ids = {
        r[0] for r in warehouse.sql(f"SELECT measure_id FROM ({summarise_sql(R_NEW)})").fetchall()
    }
    assert ids == {"LN-01", "LN-07"}


def test_zero_rows_only_for_the_summarised_run(warehouse: duckdb.DuckDBPyConnection) -> None:
    warehouse.execute(
        "INSERT INTO measures VALUES ('r-elsewhere', 'LN-99', '1', 't', 'episode', 'x', 's', NULL)"
    )
    rows = warehouse.sql(
        f"SELECT run_id, measure_id, stratum_kind FROM ({summarise_sql(R_NEW, 'measures')}) "
        "WHERE denominator = 0 AND excluded = 0 AND pending = 0"
    ).fetchall()
    assert rows == [("r-new", "LN-05", "all")]


def test_stored_summary_matches_the_sql(warehouse: duckdb.DuckDBPyConnection) -> None:
    stored = warehouse.execute(
        "SELECT * FROM latest_measure_summary WHERE period = '2026-10'"
    ).fetchall()
    assert sorted(stored, key=repr) == sorted(
        warehouse.sql(summarise_sql(R_NEW, "measures")).fetchall(), key=repr
    )


def test_sql_matches_oracle_on_a_grid() -> None:
    con = duckdb.connect()
    con.execute(RESULT_TABLES_DDL)
    con.execute(LATEST_VIEWS_DDL)
    # Measure M-n-k: n cases in the denominator of which k are met, plus 2 excluded and 1 pending
    # that must stay out of the denominator; n = 0 leaves only the excluded and pending cases.
    con.execute("""
        INSERT INTO case_results (run_id, period, measure_id, measure_version, unit, patient_id,
                                  site_id, setting, index_time, outcome, evidence)
        WITH grid AS (
            SELECT n, k FROM range(0, 41) a(n), range(0, 41) b(k) WHERE k <= n
        ),
        judged AS (
            SELECT n, k, CASE WHEN i < k THEN 'met' ELSE 'not_met' END AS outcome
            FROM grid CROSS JOIN range(0, 40) c(i) WHERE i < n
            UNION ALL SELECT n, k, 'excluded' FROM grid
            UNION ALL SELECT n, k, 'excluded' FROM grid
            UNION ALL SELECT n, k, 'pending' FROM grid
        )
        SELECT 'g', '2026-10', 'M-' || n || '-' || k, '1', 'episode', 'p', 's', 'ed',
               TIMESTAMPTZ '2026-10-01 00:00:00+00', outcome, 'e'
        FROM judged
    """)
    rows = con.execute(
        f"SELECT measure_id, stratum_kind, denominator, met, excluded, pending, rate, ci_low, "
        f"ci_high FROM ({summarise_sql()})"
    ).fetchall()
    assert len(rows) == 3 * sum(n + 1 for n in range(41))  # all, site, setting per measure
    for measure_id, _kind, den, met, excluded, pending, rate, low, high in rows:
        _, n, k = measure_id.split("-")
        assert (den, met, excluded, pending) == (int(n), int(k), 2, 1)
        expected = wilson_interval(met, den)
        if expected is None:
            assert (rate, low, high) == (None, None, None)
            continue
        assert rate == pytest.approx(met / den, abs=1e-12)
        assert (low, high) == pytest.approx(expected, abs=1e-12)
        assert 0.0 <= low <= rate <= high <= 1.0
