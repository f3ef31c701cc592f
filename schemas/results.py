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


def canonical_table_ddl(table: str) -> str:
    """DDL of one canonical (loaded) extract table: the contract's columns plus provenance."""
    columns = [_column_sql(c) for c in TABLES[table].columns]
    columns += ["source_line BIGINT NOT NULL", "extract_id VARCHAR NOT NULL"]
    return f"CREATE TABLE IF NOT EXISTS {table} (\n  " + ",\n  ".join(columns) + "\n)"


RESULT_TABLES_DDL = """
CREATE TABLE IF NOT EXISTS runs (
  run_id        VARCHAR PRIMARY KEY,
  period        VARCHAR NOT NULL,      -- YYYY-MM
  ruleset       VARCHAR NOT NULL,
  status        VARCHAR NOT NULL,      -- running | succeeded | failed
  started_at    TIMESTAMPTZ NOT NULL,
  finished_at   TIMESTAMPTZ,
  extract_id    VARCHAR,
  input_digest  VARCHAR,              -- sha256 over the extract's files
  code_version  VARCHAR,
  timezone      VARCHAR,              -- the extract's time zone (reports show local times)
  coverage_end  TIMESTAMPTZ,          -- instants after this are not in the extract
  error         VARCHAR               -- one line, for failed runs
);

CREATE TABLE IF NOT EXISTS load_counts (
  run_id           VARCHAR NOT NULL,
  extract_id       VARCHAR NOT NULL,
  table_name       VARCHAR NOT NULL,
  source_file      VARCHAR NOT NULL,
  input_rows       BIGINT NOT NULL,
  loaded_rows      BIGINT NOT NULL,
  quarantined_rows BIGINT NOT NULL   -- loaded_rows + quarantined_rows = input_rows
);

CREATE TABLE IF NOT EXISTS quarantine (
  run_id      VARCHAR NOT NULL,
  extract_id  VARCHAR NOT NULL,
  table_name  VARCHAR NOT NULL,
  source_file VARCHAR NOT NULL,
  source_line BIGINT NOT NULL,        -- CSV line (header = 1) or Parquet row number + 1
  column_name VARCHAR,                -- NULL for a rule over the whole row
  rule        VARCHAR NOT NULL,
  value       VARCHAR
);

CREATE TABLE IF NOT EXISTS measures (
  run_id          VARCHAR NOT NULL,
  measure_id      VARCHAR NOT NULL,
  measure_version VARCHAR NOT NULL,
  title           VARCHAR NOT NULL,
  unit            VARCHAR NOT NULL,
  measure_type    VARCHAR NOT NULL,
  source          VARCHAR NOT NULL,   -- the seed statement the measure audits
  reference_hours DOUBLE              -- a reported reference line (LN-01: 4 h), not the pass mark
);

CREATE TABLE IF NOT EXISTS case_results (
  run_id             VARCHAR NOT NULL,
  period             VARCHAR NOT NULL,
  measure_id         VARCHAR NOT NULL,
  measure_version    VARCHAR NOT NULL,
  unit               VARCHAR NOT NULL,  -- episode | patient
  patient_id         VARCHAR NOT NULL,
  encounter_id       VARCHAR,
  site_id            VARCHAR,
  setting            VARCHAR,
  index_time         TIMESTAMPTZ NOT NULL,
  outcome            VARCHAR NOT NULL,  -- met | not_met | excluded | pending
  evidence           VARCHAR NOT NULL,
  evidence_id        VARCHAR,           -- the deciding row; for not_met the nearest miss
  hours_to_event     DOUBLE,
  window_end         TIMESTAMPTZ,       -- when the numerator window closes
  hours_from_arrival DOUBLE,            -- index encounter arrival to the numerator event
  index_event_id     VARCHAR,           -- the row that made the case (file:line or its id)
  index_event        VARCHAR,           -- what it was, in words
  flags              VARCHAR[]          -- the measure's also-report facts that hold
);

CREATE TABLE IF NOT EXISTS measure_summary (
  run_id       VARCHAR NOT NULL,
  period       VARCHAR NOT NULL,
  measure_id   VARCHAR NOT NULL,
  stratum_kind VARCHAR NOT NULL,        -- all | site | setting
  stratum      VARCHAR,
  denominator  BIGINT NOT NULL,         -- met + not_met
  excluded     BIGINT NOT NULL,
  met          BIGINT NOT NULL,
  not_met      BIGINT NOT NULL,
  pending      BIGINT NOT NULL,
  rate         DOUBLE,                  -- met / denominator, NULL when the denominator is 0
  ci_low       DOUBLE,                  -- 95 % Wilson interval
  ci_high      DOUBLE
);
"""

# The newest succeeded run of each period: what analysts query by default.
LATEST_VIEWS_DDL = """
CREATE OR REPLACE VIEW latest_runs AS
SELECT * FROM runs WHERE status = 'succeeded'
QUALIFY row_number() OVER (PARTITION BY period ORDER BY finished_at DESC, run_id DESC) = 1;

CREATE OR REPLACE VIEW latest_case_results AS
SELECT c.* FROM case_results c JOIN latest_runs r USING (run_id);

CREATE OR REPLACE VIEW latest_measure_summary AS
SELECT s.* FROM measure_summary s JOIN latest_runs r USING (run_id);
"""
