"""Result tables and views of the warehouse (warehouse-contract.md, v1).

Names and the contract's columns are fixed; columns beyond them are additive. Every timestamp is a
TIMESTAMPTZ (a real instant); the warehouse connection works in UTC.
"""

from __future__ import annotations

from chartaudit.schemas.contract import TABLES, ColumnSpec

CASE_OUTCOMES = ("met", "not_met", "excluded", "pending")
RUN_STATUSES = ("running", "succeeded", "failed")

_DUCKDB_TYPES = {
    "str": "VARCHAR",
    "int": "BIGINT",
    "float": "DOUBLE",
    "date": "DATE",
    "timestamp": "TIMESTAMPTZ",
}


def _column_sql(column: ColumnSpec) -> str:
    return f"{column.name} {_DUCKDB_TYPES[column.type]}"


# A row of a table without an id of its own (diagnoses, findings, labs) is named by its content:
# the table, then 16 hex digits of the md5 of its contract values (instants as epoch
# microseconds, so neither the session's time zone nor CSV versus Parquet changes it). Evidence
# and index events name rows by this, not by the file line, so moving a row within the file, or
# exporting the same extract as Parquet, gives the same results (docs/decisions.md). Two rows
# with the same name are equal in every contract column.
ROW_ID = "row_id"


def has_row_id(table: str) -> bool:
    """Whether the canonical table carries a content-derived ``row_id`` (no primary key)."""
    return TABLES[table].primary_key is None


def row_id_sql(table: str) -> str:
    """SQL naming each row of ``table`` by its content, e.g. ``'labs:3f0c…'``."""
    values = ", ".join(
        f"epoch_us({c.name})" if c.type == "timestamp" else c.name for c in TABLES[table].columns
    )
    return f"'{table}:' || substr(md5(json_array({values})), 1, 16)"


def canonical_table_ddl(table: str) -> str:
    """DDL of one canonical (loaded) extract table: the contract's columns plus provenance."""
    columns = [_column_sql(c) for c in TABLES[table].columns]
    columns += ["source_line BIGINT NOT NULL", "extract_id VARCHAR NOT NULL"]
    if has_row_id(table):
        columns.append(f"{ROW_ID} VARCHAR")
    return f"CREATE TABLE IF NOT EXISTS {table} (\n  " + ",\n  ".join(columns) + "\n)"


def canonical_insert_sql(table: str, source: str) -> str:
    """INSERT of a relation with the canonical columns into ``table``, naming id-less rows."""
    row_id = f", {row_id_sql(table)} AS {ROW_ID}" if has_row_id(table) else ""
    return f"INSERT INTO {table} BY NAME SELECT *{row_id} FROM {source}"


def canonical_table_migrations() -> list[str]:
    """``row_id`` for the canonical tables of a warehouse created by an older chartaudit."""
    return [
        f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {ROW_ID} VARCHAR"
        for table in TABLES
        if has_row_id(table)
    ]


# The result tables: (column, type, comment). Names and the contract's columns are fixed; new
# columns are added at the end, and `result_table_migrations` adds them to older warehouses.
RESULT_TABLES: dict[str, tuple[tuple[str, str, str], ...]] = {
    "runs": (
        ("run_id", "VARCHAR PRIMARY KEY", ""),
        ("period", "VARCHAR NOT NULL", "YYYY-MM"),
        ("ruleset", "VARCHAR NOT NULL", ""),
        ("status", "VARCHAR NOT NULL", "running | succeeded | failed"),
        ("started_at", "TIMESTAMPTZ NOT NULL", ""),
        ("finished_at", "TIMESTAMPTZ", ""),
        ("extract_id", "VARCHAR", ""),
        ("input_digest", "VARCHAR", "sha256 over the extract's files"),
        ("code_version", "VARCHAR", ""),
        ("timezone", "VARCHAR", "the extract's time zone (reports show local times)"),
        ("coverage_end", "TIMESTAMPTZ", "instants after this are not in the extract"),
        ("error", "VARCHAR", "one line, for failed runs"),
        ("kind", "VARCHAR", "audit | rejudge (pending cases of this period judged again)"),
        ("parent_run_id", "VARCHAR", "rejudge: the run whose results it updates"),
        ("triggered_by", "VARCHAR", "rejudge: the audit run that judged them again"),
        ("coverage_start", "TIMESTAMPTZ", "instants before this are not in the extract"),
        (
            "partial",
            "BOOLEAN",
            "the extract covers the period only in part (--allow-partial-month); a rejudge run"
            " inherits it from the run it updates",
        ),
    ),
    "load_counts": (
        ("run_id", "VARCHAR NOT NULL", ""),
        ("extract_id", "VARCHAR NOT NULL", ""),
        ("table_name", "VARCHAR NOT NULL", ""),
        ("source_file", "VARCHAR NOT NULL", ""),
        ("input_rows", "BIGINT NOT NULL", ""),
        ("loaded_rows", "BIGINT NOT NULL", ""),
        ("quarantined_rows", "BIGINT NOT NULL", "loaded_rows + quarantined_rows = input_rows"),
        ("warned_rows", "BIGINT", "loaded rows with a data-quality warning (data_quality)"),
    ),
    "quarantine": (
        ("run_id", "VARCHAR NOT NULL", ""),
        ("extract_id", "VARCHAR NOT NULL", ""),
        ("table_name", "VARCHAR NOT NULL", ""),
        ("source_file", "VARCHAR NOT NULL", ""),
        ("source_line", "BIGINT NOT NULL", "CSV line (header = 1) or Parquet row number + 1"),
        ("column_name", "VARCHAR", "NULL for a rule over the whole row"),
        ("rule", "VARCHAR NOT NULL", ""),
        ("value", "VARCHAR", ""),
    ),
    # Findings about rows that LOADED (extract contract, "Bad input": warning level).
    "data_quality": (
        ("run_id", "VARCHAR NOT NULL", ""),
        ("extract_id", "VARCHAR NOT NULL", ""),
        ("table_name", "VARCHAR NOT NULL", ""),
        ("source_file", "VARCHAR NOT NULL", ""),
        ("source_line", "BIGINT NOT NULL", "CSV line (header = 1) or Parquet row number + 1"),
        ("column_name", "VARCHAR", ""),
        ("rule", "VARCHAR NOT NULL", "time_order | after_extract_created | dose_above_label_max"),
        ("value", "VARCHAR", ""),
        ("level", "VARCHAR NOT NULL", "warning: the row loaded"),
    ),
    "measures": (
        ("run_id", "VARCHAR NOT NULL", ""),
        ("measure_id", "VARCHAR NOT NULL", ""),
        ("measure_version", "VARCHAR NOT NULL", ""),
        ("title", "VARCHAR NOT NULL", ""),
        ("unit", "VARCHAR NOT NULL", ""),
        ("measure_type", "VARCHAR NOT NULL", ""),
        ("source", "VARCHAR NOT NULL", "the seed statement the measure audits"),
        ("reference_hours", "DOUBLE", "a reported reference line (LN-01: 4 h), not the pass mark"),
        ("period", "VARCHAR", ""),
        ("ruleset", "VARCHAR", ""),
        ("window_hours", "DOUBLE", "the numerator window's end in hours, when fixed"),
        ("changes", "VARCHAR", "what this version changes for its rule sets"),
        ("components", "VARCHAR[]", "names of the components reported as rates"),
        ("also_report", "VARCHAR[]", "names of the facts reported beside the rate"),
        ("target", "DOUBLE", "a rate 0..1 the trend chart draws (measure file), or NULL"),
        ("target_source", "VARCHAR", "the statement or guideline that sets the target"),
        ("definition", "VARCHAR", "the version's definition in words (`measures show`)"),
        ("status", "VARCHAR", "computed | not_computable (look-back before the extract starts)"),
        ("status_reason", "VARCHAR", "not computable: why; computed: NULL or a note"),
        ("at_any_time", "VARCHAR[]", "criteria with no start bound, judged on the extract's rows"),
    ),
    "case_results": (
        ("run_id", "VARCHAR NOT NULL", ""),
        ("period", "VARCHAR NOT NULL", ""),
        ("measure_id", "VARCHAR NOT NULL", ""),
        ("measure_version", "VARCHAR NOT NULL", ""),
        ("unit", "VARCHAR NOT NULL", "episode | patient"),
        ("patient_id", "VARCHAR NOT NULL", ""),
        ("encounter_id", "VARCHAR", ""),
        ("site_id", "VARCHAR", ""),
        ("setting", "VARCHAR", ""),
        ("index_time", "TIMESTAMPTZ NOT NULL", ""),
        ("outcome", "VARCHAR NOT NULL", "met | not_met | excluded | pending"),
        ("evidence", "VARCHAR NOT NULL", ""),
        ("evidence_id", "VARCHAR", "the deciding row; for not_met the breaking or nearest row"),
        ("hours_to_event", "DOUBLE", "index to the deciding event (met: the numerator event)"),
        ("window_end", "TIMESTAMPTZ", "when the numerator window closes"),
        ("hours_from_arrival", "DOUBLE", "index encounter arrival to the deciding event"),
        ("index_event_id", "VARCHAR", "the row that made the case: its id, or its row_id"),
        ("index_event", "VARCHAR", "what it was, in words"),
        ("flags", "VARCHAR[]", "the measure's also-report facts that hold"),
        ("ruleset", "VARCHAR", "the rule set that judged the case"),
        ("reason", "VARCHAR", "excluded: the exclusion; not_met (fails-if measures): why"),
        ("components", "VARCHAR[]", "the measure's reported components that hold"),
    ),
    "measure_summary": (
        ("run_id", "VARCHAR NOT NULL", ""),
        ("period", "VARCHAR NOT NULL", ""),
        ("measure_id", "VARCHAR NOT NULL", ""),
        ("stratum_kind", "VARCHAR NOT NULL", "all | site | setting"),
        ("stratum", "VARCHAR", ""),
        ("denominator", "BIGINT", "met + not_met; NULL when not computable"),
        ("excluded", "BIGINT", ""),
        ("met", "BIGINT", ""),
        ("not_met", "BIGINT", ""),
        ("pending", "BIGINT", ""),
        ("rate", "DOUBLE", "met / denominator, NULL when the denominator is 0"),
        ("ci_low", "DOUBLE", "95 % Wilson interval"),
        ("ci_high", "DOUBLE", ""),
        ("status", "VARCHAR", "computed | not_computable: the measure was not judged this month"),
        ("status_reason", "VARCHAR", "not_computable: 'not computable for this period: …'"),
    ),
    "component_summary": (
        ("run_id", "VARCHAR NOT NULL", ""),
        ("period", "VARCHAR NOT NULL", ""),
        ("measure_id", "VARCHAR NOT NULL", ""),
        ("kind", "VARCHAR NOT NULL", "component | also_report"),
        ("name", "VARCHAR NOT NULL", ""),
        ("denominator", "BIGINT NOT NULL", "the measure's denominator (met + not_met)"),
        ("cases_with", "BIGINT NOT NULL", "denominator cases for which it holds"),
        ("rate", "DOUBLE", "cases_with / denominator"),
        ("ci_low", "DOUBLE", ""),
        ("ci_high", "DOUBLE", ""),
    ),
    "timing_summary": (
        ("run_id", "VARCHAR NOT NULL", ""),
        ("period", "VARCHAR NOT NULL", ""),
        ("measure_id", "VARCHAR NOT NULL", ""),
        ("denominator", "BIGINT NOT NULL", "met + not_met cases"),
        ("with_event", "BIGINT NOT NULL", "of them, cases with a numerator event at all"),
        ("median_hours", "DOUBLE", "index to event"),
        ("p90_hours", "DOUBLE", ""),
        ("median_hours_from_arrival", "DOUBLE", "index encounter arrival to event"),
        ("p90_hours_from_arrival", "DOUBLE", ""),
        ("reference_hours", "DOUBLE", "e.g. LN-01's 4 h reference line"),
        ("within_reference", "BIGINT", "denominator cases with the event by the reference"),
        ("window_hours", "DOUBLE", "the pass mark, e.g. 12 h"),
        ("within_window", "BIGINT", "denominator cases with the event by the window's end"),
    ),
    "rejudged_cases": (
        ("run_id", "VARCHAR NOT NULL", "the audit run that judged them again"),
        ("period", "VARCHAR NOT NULL", "the earlier period the case belongs to"),
        ("rejudge_run_id", "VARCHAR NOT NULL", "the period's new run holding the outcome"),
        ("previous_run_id", "VARCHAR NOT NULL", ""),
        ("measure_id", "VARCHAR NOT NULL", ""),
        ("patient_id", "VARCHAR NOT NULL", ""),
        ("encounter_id", "VARCHAR", ""),
        ("index_time", "TIMESTAMPTZ NOT NULL", ""),
        ("previous_outcome", "VARCHAR NOT NULL", "pending"),
        ("outcome", "VARCHAR NOT NULL", ""),
        ("evidence", "VARCHAR NOT NULL", ""),
    ),
}


def _table_ddl(name: str) -> str:
    columns = ",\n  ".join(f"{c} {t}" for c, t, _ in RESULT_TABLES[name])
    return f"CREATE TABLE IF NOT EXISTS {name} (\n  {columns}\n);"


RESULT_TABLES_DDL = "\n".join(_table_ddl(name) for name in RESULT_TABLES)


# Columns that were NOT NULL in v1 and may now be NULL (a measure not computable for a month
# has no counts): an older warehouse drops the constraint.
NULLABLE_SINCE_V1 = {
    "measure_summary": ("denominator", "excluded", "met", "not_met", "pending"),
}


def result_table_migrations() -> list[str]:
    """Columns added since v1 (and constraints relaxed), for warehouses created by an older
    chartaudit."""
    added = [
        f"ALTER TABLE {name} ADD COLUMN IF NOT EXISTS {column} {type_.split(' NOT NULL')[0]}"
        for name, columns in RESULT_TABLES.items()
        for column, type_, _ in columns
        if "PRIMARY KEY" not in type_ and "NOT NULL" not in type_
    ]
    relaxed = [
        f"ALTER TABLE {name} ALTER COLUMN {column} DROP NOT NULL"
        for name, columns in NULLABLE_SINCE_V1.items()
        for column in columns
    ]
    return added + relaxed


# The newest succeeded run of each period: what analysts query by default.
LATEST_VIEWS_DDL = """
CREATE OR REPLACE VIEW latest_runs AS
SELECT * FROM runs WHERE status = 'succeeded'
QUALIFY row_number() OVER (PARTITION BY period ORDER BY finished_at DESC, run_id DESC) = 1;

CREATE OR REPLACE VIEW latest_case_results AS
SELECT c.* FROM case_results c JOIN latest_runs r USING (run_id);

CREATE OR REPLACE VIEW latest_measure_summary AS
SELECT s.* FROM measure_summary s JOIN latest_runs r USING (run_id);

CREATE OR REPLACE VIEW latest_component_summary AS
SELECT s.* FROM component_summary s JOIN latest_runs r USING (run_id);

CREATE OR REPLACE VIEW latest_timing_summary AS
SELECT s.* FROM timing_summary s JOIN latest_runs r USING (run_id);

-- The data-quality warnings behind each period's latest results: a rejudge run loads nothing of
-- its own, so for it those of the audit run that triggered it (as the report shows them).
CREATE OR REPLACE VIEW latest_data_quality AS
SELECT r.period, d.* FROM data_quality d JOIN latest_runs r
  ON d.run_id = CASE WHEN r.kind = 'rejudge' THEN r.triggered_by ELSE r.run_id END;
"""
