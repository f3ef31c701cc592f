"""Run the flow's steps over an extract in a process of its own and write what the run
published: ``python -m tests.flows.pipeline_child EXTRACT OUT_DIR``.

The determinism tests start it with different ``TZ`` and ``PYTHONHASHSEED`` values. OUT_DIR gets
``case_results.json`` and ``measure_summary.json`` (rows without run_id, in a total order) and
``environment.json`` (the zone DuckDB and Python saw, so a test knows ``TZ`` took effect).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import duckdb

from chartaudit.storage import warehouse
from tests.flows.test_pipeline import run_pipeline

PUBLISHED = ("case_results", "measure_summary")


def main(extract: Path, out: Path) -> None:
    out.mkdir(parents=True)
    path = out / "audit.duckdb"
    run_pipeline(extract, path, out / "work")
    with warehouse.connect(path, read_only=True) as con:
        for table in PUBLISHED:
            rows = con.sql(f"SELECT * EXCLUDE (run_id) FROM {table} ORDER BY ALL").pl()
            rows.write_ndjson(out / f"{table}.json")
    (out / "environment.json").write_text(
        json.dumps(
            {
                "duckdb_timezone": duckdb.connect()
                .execute("SELECT current_setting('TimeZone')")
                .fetchone()[0],
                "python_utc_offset": time.localtime().tm_gmtoff,
            }
        )
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
