"""summarise_sql, component_summary_sql and timing_summary_sql against hand-counted rows, and the
Wilson interval against its plain-Python oracle."""

from __future__ import annotations

import duckdb
import pytest

from chartaudit.reports.summary import (
    SUMMARY_COLUMNS,
    component_summary_sql,
    summarise_sql,
    timing_summary_sql,
    wilson_interval,
)
from chartaudit.schemas.results import LATEST_VIEWS_DDL, RESULT_TABLES, RESULT_TABLES_DDL
from tests.reports.conftest import LARGE, LOPS, REFLEXES, SLR, SMALL

R_NEW = "(SELECT * FROM case_results WHERE run_id = 'r-new')"
# The `measures` rows of exactly the run being summarised.
M_NEW = "(SELECT * FROM measures WHERE run_id = 'r-new')"


def _rounded(rows: list[tuple]) -> list[tuple]:
    return [tuple(round(v, 4) if isinstance(v, float) else v for v in row) for row in rows]


def _row(measure, kind, stratum, den, exc, met, not_met, pend, rate, low, high) -> tuple:
    return ("r-new", "2026-10", measure, kind, stratum, den, exc, met, not_met, pend, rate, low,
            high, "computed", None)  # fmt: skip


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
    for sql in (summarise_sql(), summarise_sql(R_NEW, M_NEW)):
        assert warehouse.sql(sql).columns == ddl_columns
    described = warehouse.sql(f"DESCRIBE {summarise_sql(R_NEW, M_NEW)}").fetchall()
    types = {r[0]: r[1] for r in described}
    assert [types[c] for c in ("denominator", "excluded", "met", "not_met", "pending", "rate")] == [
        "BIGINT"
    ] * 5 + ["DOUBLE"]


def test_exact_rows_for_one_run(warehouse: duckdb.DuckDBPyConnection) -> None:
    rows = _rounded(warehouse.sql(summarise_sql(R_NEW, M_NEW)).fetchall())
    assert rows == [
        _row("LN-01", "all", None, 6, 1, 4, 2, 1, 0.6667, 0.3, 0.9032),
        _row("LN-01", "site", "<script>alert(1)</script>", 1, 0, 1, 0, 0, 1.0, 0.2065, 1.0),
        _row("LN-01", "site", "S1", 2, 1, 2, 0, 0, 1.0, 0.3424, 1.0),
        _row("LN-01", "site", "S2", 2, 0, 1, 1, 1, 0.5, 0.0945, 0.9055),
        _row("LN-01", "site", None, 1, 0, 0, 1, 0, 0.0, 0.0, 0.7935),  # p05: no site
        _row("LN-01", "setting", "ed", 4, 1, 4, 0, 1, 1.0, 0.5101, 1.0),
        _row("LN-01", "setting", "inpatient", 1, 0, 0, 1, 0, 0.0, 0.0, 0.7935),
        _row("LN-01", "setting", None, 1, 0, 0, 1, 0, 0.0, 0.0, 0.7935),
        _row("LN-04", "all", None, 3, 1, 1, 2, 1, 0.3333, 0.0615, 0.7923),
        _row("LN-04", "site", "S1", 3, 1, 1, 2, 1, 0.3333, 0.0615, 0.7923),
        _row("LN-04", "setting", "ed", 3, 1, 1, 2, 1, 0.3333, 0.0615, 0.7923),
        # LN-05 ran but had no case: one `all` row of zeros.
        _row("LN-05", "all", None, 0, 0, 0, 0, 0, None, None, None),
        _row("LN-07", "all", None, 3, 0, 2, 1, 0, 0.6667, 0.2077, 0.9385),
        _row("LN-07", "site", "S1", 2, 0, 2, 0, 0, 1.0, 0.3424, 1.0),
        _row("LN-07", "site", "S2", 1, 0, 0, 1, 0, 0.0, 0.0, 0.7935),
        _row("LN-07", "setting", "outpatient", 2, 0, 1, 1, 0, 0.5, 0.0945, 0.9055),
        _row("LN-07", "setting", None, 1, 0, 1, 0, 0, 1.0, 0.2065, 1.0),
    ]


def test_a_site_named_unknown_and_a_missing_site_are_two_strata() -> None:
    # A site and a setting really named `unknown`, and cases with none recorded: each kind has
    # one stratum of each, the missing one NULL and last (the `all` row is NULL by its kind).
    con = duckdb.connect()
    con.execute(RESULT_TABLES_DDL)
    con.execute(
        "INSERT INTO case_results (run_id, period, measure_id, measure_version, unit,"
        " patient_id, site_id, setting, index_time, outcome, evidence)"
        " SELECT 'r-x', '2026-10', 'LN-01', '1', 'episode', patient, site, setting,"
        " TIMESTAMPTZ '2026-10-05 08:00:00+00', outcome, outcome FROM (VALUES"
        " ('pa', 'unknown', 'unknown', 'met'), ('pb', 'unknown', 'unknown', 'not_met'),"
        " ('pc', 'unknown', 'ed', 'met'), ('pd', NULL, NULL, 'not_met'),"
        " ('pe', NULL, 'ed', 'excluded'), ('pf', 'A', NULL, 'pending'))"
        " AS v(patient, site, setting, outcome)"
    )
    rows = _rounded(con.sql(summarise_sql()).fetchall())
    strata = [(r[3], r[4], *r[5:10]) for r in rows]  # kind, stratum, den, exc, met, not met, pend
    assert strata == [
        ("all", None, 4, 1, 2, 2, 1),
        ("site", "A", 0, 0, 0, 0, 1),
        ("site", "unknown", 3, 0, 2, 1, 0),
        ("site", None, 1, 1, 0, 1, 0),
        ("setting", "ed", 1, 1, 1, 0, 0),
        ("setting", "unknown", 2, 0, 1, 1, 0),
        ("setting", None, 1, 0, 0, 1, 1),
    ]
    con.close()


def test_without_measures_no_zero_rows(warehouse: duckdb.DuckDBPyConnection) -> None:
    ids = {
        r[0] for r in warehouse.sql(f"SELECT measure_id FROM ({summarise_sql(R_NEW)})").fetchall()
    }
    assert ids == {"LN-01", "LN-04", "LN-07"}


def _add_measures(con: duckdb.DuckDBPyConnection, run_id: str, period: str, ids: list[str]) -> None:
    for measure_id in ids:
        con.execute(
            "INSERT INTO measures (run_id, measure_id, measure_version, title, unit, measure_type,"
            " source, period) VALUES (?, ?, '1', 't', 'episode', 'process', 's', ?)",
            [run_id, measure_id, period],
        )


def test_zero_rows_only_for_the_summarised_run(warehouse: duckdb.DuckDBPyConnection) -> None:
    # `measures` names the measures rows of exactly the runs being summarised: another run's
    # measures never get a row, and a run with no case at all still gets a zero row per measure,
    # with the period of its measures rows.
    _add_measures(warehouse, "r-elsewhere", "2026-10", ["LN-99"])
    _add_measures(warehouse, "r-empty", "2026-12", ["LN-01", "LN-98"])
    rows = warehouse.sql(
        f"SELECT run_id, measure_id, stratum_kind FROM ({summarise_sql(R_NEW, M_NEW)}) "
        "WHERE denominator = 0 AND excluded = 0 AND pending = 0"
    ).fetchall()
    assert rows == [("r-new", "LN-05", "all")]
    empty = warehouse.sql(
        summarise_sql(
            "(SELECT * FROM case_results WHERE run_id = 'r-empty')",
            "(SELECT * FROM measures WHERE run_id = 'r-empty')",
        )
    ).fetchall()
    zeros = (0, 0, 0, 0, 0, None, None, None, "computed", None)
    assert empty == [
        ("r-empty", "2026-12", "LN-01", "all", None, *zeros),
        ("r-empty", "2026-12", "LN-98", "all", None, *zeros),
    ]


NOT_COMPUTABLE_REASON = (
    "not computable for this period: needs data from 2025-11-01, the extract starts 2025-12-01"
)


def test_a_not_computable_measure_has_one_row_of_nulls_and_its_reason(
    warehouse: duckdb.DuckDBPyConnection,
) -> None:
    # The engine judges no case of a measure whose look-back the extract cannot show; its
    # measures row says so, and the summary has one `all` row with no counts and no rate.
    _add_measures(warehouse, "r-short", "2026-12", ["LN-01", "LN-07"])
    warehouse.execute(
        "UPDATE measures SET status = 'not_computable', status_reason = ?"
        " WHERE run_id = 'r-short' AND measure_id = 'LN-07'",
        [NOT_COMPUTABLE_REASON],
    )
    rows = warehouse.sql(
        summarise_sql(
            "(SELECT * FROM case_results WHERE run_id = 'r-short')",
            "(SELECT * FROM measures WHERE run_id = 'r-short')",
        )
    ).fetchall()
    nothing = (None,) * 8
    assert rows == [
        ("r-short", "2026-12", "LN-01", "all", None, 0, 0, 0, 0, 0, None, None, None, "computed",
         None),
        ("r-short", "2026-12", "LN-07", "all", None, *nothing, "not_computable",
         NOT_COMPUTABLE_REASON),
    ]  # fmt: skip
    # Nor has it components or timing: both measures have a component and are timeliness
    # measures here, only the judged one gets rows.
    warehouse.execute(
        "UPDATE measures SET components = ['x'], measure_type = 'timeliness'"
        " WHERE run_id = 'r-short'"
    )
    short = (
        "(SELECT * FROM case_results WHERE run_id = 'r-short')",
        "(SELECT * FROM measures WHERE run_id = 'r-short')",
    )
    components = warehouse.sql(component_summary_sql(*short)).fetchall()
    assert components == [("r-short", "2026-12", "LN-01", "component", "x", 0, 0, None, None, None)]
    timing = warehouse.sql(f"SELECT measure_id FROM ({timing_summary_sql(*short)})").fetchall()
    assert timing == [("LN-01",)]


def test_stored_summary_matches_the_sql(warehouse: duckdb.DuckDBPyConnection) -> None:
    stored = warehouse.execute(
        "SELECT * FROM latest_measure_summary WHERE period = '2026-10'"
    ).fetchall()
    assert sorted(stored, key=repr) == sorted(
        warehouse.sql(summarise_sql(R_NEW, M_NEW)).fetchall(), key=repr
    )


@pytest.mark.parametrize(
    ("table", "make_sql"),
    [("component_summary", component_summary_sql), ("timing_summary", timing_summary_sql)],
)
def test_columns_are_the_tables_in_ddl_order(warehouse, table, make_sql) -> None:
    assert warehouse.sql(make_sql(R_NEW, M_NEW)).columns == [c for c, _, _ in RESULT_TABLES[table]]


def test_component_rows_for_one_run(warehouse: duckdb.DuckDBPyConnection) -> None:
    rows = _rounded(warehouse.sql(component_summary_sql(R_NEW, M_NEW)).fetchall())
    head = ("r-new", "2026-10")
    # LN-04's denominator is p21 (met), p22 and p23 (not met); the excluded p24 and the pending
    # p25 hold components but count for none. Sorted by name within (measure, kind).
    assert rows == [
        (*head, "LN-04", "component", LARGE, 3, 1, 0.3333, 0.0615, 0.7923),
        (*head, "LN-04", "component", REFLEXES, 3, 1, 0.3333, 0.0615, 0.7923),
        (*head, "LN-04", "component", SMALL, 3, 2, 0.6667, 0.2077, 0.9385),
        (*head, "LN-04", "component", SLR, 3, 0, 0.0, 0.0, 0.5615),  # no case has it
        (*head, "LN-07", "also_report", LOPS, 3, 1, 0.3333, 0.0615, 0.7923),
    ]


def test_timing_rows_for_one_run(warehouse: duckdb.DuckDBPyConnection) -> None:
    rows = _rounded(warehouse.sql(timing_summary_sql(R_NEW, M_NEW)).fetchall())
    # LN-01 among met + not met: hours 1, 2, 3.5, 6, 20 (p04's late scan) and p05 with no scan;
    # arrival 1.5, 3, 5, 7.5, 21. The excluded p06's scan at 0.5 h is in nothing. p90 at rank
    # 0.9 * 4 = 3.6: 6 + 0.6 * 14 = 14.4 and 7.5 + 0.6 * 13.5 = 15.6. By 4 h: 1, 2, 3.5; by 12 h:
    # also 6. LN-05 (timeliness, no case): zeros, no times, and no reference line to be within.
    # LN-04 and LN-07 are neither timeliness measures nor have a reference line: no row.
    assert rows == [
        ("r-new", "2026-10", "LN-01", 6, 5, 3.5, 14.4, 5.0, 15.6, 4.0, 3, 12.0, 4),
        ("r-new", "2026-10", "LN-05", 0, 0, None, None, None, None, None, None, 336.0, 0),
    ]


def test_a_run_with_no_case_gets_component_and_timing_rows_of_zeros(warehouse) -> None:
    warehouse.execute(
        "INSERT INTO measures (run_id, measure_id, measure_version, title, unit, measure_type,"
        " source, period, reference_hours, window_hours, components, also_report)"
        " VALUES ('r-empty', 'LN-01', '1', 't', 'episode', 'timeliness', 's', '2026-12', 4, 12,"
        " [], []), ('r-empty', 'LN-04', '1', 't', 'episode', 'process', 's', '2026-12', NULL,"
        " NULL, ['b', 'a'], ['c'])"
    )
    cases = "(SELECT * FROM case_results WHERE run_id = 'r-empty')"
    measures = "(SELECT * FROM measures WHERE run_id = 'r-empty')"
    head = ("r-empty", "2026-12", "LN-04")
    assert warehouse.sql(component_summary_sql(cases, measures)).fetchall() == [
        (*head, "also_report", "c", 0, 0, None, None, None),
        (*head, "component", "a", 0, 0, None, None, None),
        (*head, "component", "b", 0, 0, None, None, None),
    ]
    assert warehouse.sql(timing_summary_sql(cases, measures)).fetchall() == [
        ("r-empty", "2026-12", "LN-01", 0, 0, None, None, None, None, 4.0, 0, 12.0, 0)
    ]


def test_stored_component_and_timing_summaries_are_the_latest_runs(warehouse) -> None:
    for view, sql in (
        ("latest_component_summary", component_summary_sql(R_NEW, M_NEW)),
        ("latest_timing_summary", timing_summary_sql(R_NEW, M_NEW)),
    ):
        stored = warehouse.execute(f"SELECT * FROM {view} WHERE period = '2026-10'").fetchall()
        assert sorted(stored, key=repr) == sorted(warehouse.sql(sql).fetchall(), key=repr)


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
