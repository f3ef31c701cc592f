"""Writers that turn a contract extract into other source formats (OMOP CDM, Synthea CSV,
FHIR NDJSON), for tests and benchmarks. The helpers below are what every writer reads first."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb

from chartaudit.schemas.contract import TABLE_ORDER
from chartaudit.schemas.folder import MANIFEST_FILE, table_files

__all__ = ["contract_manifest", "open_contract_tables"]


def contract_manifest(contract_dir: Path) -> dict:
    """The contract extract's manifest.json as a dict ({} when it has none)."""
    path = contract_dir / MANIFEST_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def open_contract_tables(con: duckdb.DuckDBPyConnection, contract_dir: Path) -> None:
    """A view ``c_<table>`` of every contract table, all values as text (as the file has them)."""
    files = {p.name.rsplit(".", 1)[0]: p for p in table_files(contract_dir)}
    for table in TABLE_ORDER:
        path = str(files[table]).replace("'", "''")
        if path.endswith(".csv"):
            scan = f"read_csv('{path}', all_varchar = true, header = true)"
        else:
            scan = f"(SELECT COLUMNS(*)::VARCHAR FROM read_parquet('{path}'))"
        con.execute(f"CREATE VIEW c_{table} AS SELECT * FROM {scan}")
