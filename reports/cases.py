"""Not-met cases of a period with their evidence in words: the report's drill-down and the
per-measure CSVs of `chartaudit export` read the same rows.

``not_met_cases(con, period)`` returns one row per not-met case of the period's newest succeeded
run (``latest_case_results``), with the columns of ``CASE_COLUMNS``. The deciding row a case
names (``evidence_id``) is described from the warehouse's canonical tables in one query; a
warehouse without some of those tables (or whose tables now hold another extract) keeps the
judge's own words. Suppression is the caller's (reports/suppression.py).
"""

from __future__ import annotations

from functools import cache

import duckdb
import polars as pl

from chartaudit.audits.valuesets import load_value_sets
from chartaudit.reports import queries

CASE_COLUMNS = (
    "measure_id", "period", "patient_id", "encounter_id", "site_id", "department", "setting",
    "index_time", "reason", "evidence_text",
)  # fmt: skip

_CODE_NAMES = "code_names"


@cache
def code_names() -> pl.DataFrame:
    """(code_system, code, description) of every exact code in the packaged value sets; the
    first description of a code wins (value sets sorted by name)."""
    rows = [
        (rule.code_system, rule.low, rule.description)
        for _, value_set in sorted(load_value_sets().items())
        for rule in value_set.rules
        if rule.kind == "exact" and rule.description
    ]
    frame = pl.DataFrame(rows, schema=["code_system", "code", "description"], orient="row")
    return frame.unique(["code_system", "code"], keep="first", maintain_order=True)


def _tables(con: duckdb.DuckDBPyConnection) -> set[str]:
    rows = con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database()"
        " AND schema_name = current_schema()"
    ).fetchall()
    return {name for (name,) in rows}


def not_met_cases_sql(con: duckdb.DuckDBPyConnection) -> str:
    """NOT_MET_CASES_SQL over the canonical tables this warehouse has."""
    present = _tables(con)
    selects = [sql for table, sql in queries.EVIDENCE_ROW_SQL.items() if table in present]
    evidence_rows = "\nUNION ALL\n".join(selects) or queries.NO_EVIDENCE_ROWS_SQL
    encounters = queries.NO_ENCOUNTERS_SQL
    if "encounters" in present:
        encounters = "SELECT * FROM encounters"
    return queries.NOT_MET_CASES_SQL.format(evidence_rows=evidence_rows, encounters=encounters)


def _run_zone(con: duckdb.DuckDBPyConnection, period: str) -> str:
    rows = con.execute(
        "SELECT timezone FROM latest_runs WHERE period = $period", {"period": period}
    ).fetchall()
    return (rows[0][0] if rows else None) or "UTC"


def not_met_cases(con: duckdb.DuckDBPyConnection, period: str) -> pl.DataFrame:
    """Every not-met case of ``period``'s newest succeeded run, by measure then index time.

    ``index_time`` is the UTC instant (format it for people); ``evidence_text`` gives local
    times in the run's time zone. No row when the period has no succeeded run."""
    sql = not_met_cases_sql(con)
    params = {"period": period}
    if "$zone" in sql:  # only the canonical tables' words use it; DuckDB refuses unused ones
        params["zone"] = _run_zone(con, period)
    con.register(_CODE_NAMES, code_names().to_arrow())
    try:
        frame = con.sql(sql, params=params).pl()
    finally:
        con.unregister(_CODE_NAMES)
    return frame.select(CASE_COLUMNS)
