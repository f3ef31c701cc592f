"""One extract's figures for `make bench`, in a process of their own (benchmarks/run.py starts it):

    .venv/bin/python benchmarks/stages.py EXTRACT_DIR SCRATCH_DIR OUT_JSON

First the floor: DuckDB reading every input file into a table (``CREATE TABLE … AS SELECT *
FROM read_parquet/read_csv``). Then the monthly run's plain steps (flows/steps.py, no Prefect),
stage by stage, each with its wall time, input rows per second and its own peak resident memory
(proc.py). Stages and steps: read = ``load_step`` (read the extract, keep it as the run's raw
tables); validate = ``validate_step``; load = the start of ``audit_step`` up to the canonical
DuckDB tables being filled (``saved_canonical_connection``, timed by wrapping it, so steps.py is
unchanged); audit = the rest of ``audit_step`` (all measures, rejudging); summarise, publish,
report = their steps.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
from proc import PEAK_SOURCE, peak_mb, reset_peak

from chartaudit.flows import steps
from chartaudit.schemas.contract import TABLE_ORDER
from chartaudit.storage import warehouse

PERIOD = "2026-10"  # the generator's default last month: the extract's last whole month


def input_files(extract: Path) -> list[Path]:
    found = [extract / f"{t}.{ext}" for t in TABLE_ORDER for ext in ("parquet", "csv")]
    return [path for path in found if path.exists()]


def input_rows(extract: Path) -> int:
    """Data rows of every input table (Parquet: from the footers; CSV: lines minus headers)."""
    total = 0
    for path in input_files(extract):
        if path.suffix == ".parquet":
            total += pq.ParquetFile(path).metadata.num_rows
        else:
            with path.open("rb") as handle:
                total += sum(
                    chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 24), b"")
                )
            total -= 1
    return total


class Stages:
    """Wall time and peak memory of consecutive stages."""

    def __init__(self, rows: int) -> None:
        self.rows = rows
        self.figures: list[dict[str, Any]] = []
        self._start = 0.0

    def _begin(self) -> None:
        reset_peak()
        self._start = time.perf_counter()

    def _end(self, name: str) -> None:
        seconds = time.perf_counter() - self._start
        self.figures.append(
            {
                "stage": name,
                "seconds": round(seconds, 3),
                "rows_per_second": round(self.rows / seconds) if seconds else None,
                "peak_rss_mb": round(peak_mb()),
            }
        )

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self._begin()
        yield
        self._end(name)

    def split(self, name: str) -> None:
        """End the part of the current stage done so far as stage ``name``; go on timing."""
        self._end(name)
        self._begin()


def duckdb_floor(extract: Path, stages: Stages) -> None:
    """DuckDB reading every input file into an in-memory table: the least any run must do."""
    with stages.stage("floor"), duckdb.connect() as con:
        for path in input_files(extract):
            reader = "read_parquet" if path.suffix == ".parquet" else "read_csv"
            con.execute(f"CREATE TABLE {path.stem} AS SELECT * FROM {reader}('{path}')")


@contextmanager
def load_split(stages: Stages) -> Iterator[Callable[[], bool]]:
    """Time ``audit_step``'s loading of the canonical tables as its own stage; yields whether
    that happened (False: the steps changed and load is inside audit)."""
    original, seen = steps.saved_canonical_connection, []

    def timed(*args: Any, **kwargs: Any):
        con = original(*args, **kwargs)
        stages.split("load")
        seen.append(True)
        return con

    steps.saved_canonical_connection = timed
    try:
        yield lambda: bool(seen)
    finally:
        steps.saved_canonical_connection = original


def run_stages(extract: Path, scratch: Path, stages: Stages) -> tuple[int, bool]:
    """The monthly run's steps, as the flow runs them; (this month's cases, load split out)."""
    work, path = scratch / "work", scratch / "audit.duckdb"
    work.mkdir(parents=True)
    with stages.stage("read"):
        plan = steps.load_step(extract, work, PERIOD)
    with warehouse.run_lock(path, plan.record):
        warehouse.begin_run(path, plan.record)
        with stages.stage("validate"):
            steps.validate_step(work)
        with load_split(stages) as split_seen, stages.stage("audit"):
            cases = steps.audit_step(work, path)
        with stages.stage("summarise"):
            steps.summarise_step(work)
        with stages.stage("publish"):
            steps.publish_step(work, path)
    with stages.stage("report"):
        steps.report_step(path, PERIOD, scratch / "out")
    return cases, split_seen()


def main() -> None:
    extract, scratch, out = (Path(arg) for arg in sys.argv[1:4])
    stages = Stages(input_rows(extract))
    duckdb_floor(extract, stages)
    cases, load_split_out = run_stages(extract, scratch, stages)
    floor, *run = stages.figures
    figures = {
        "input_rows": stages.rows,
        "input_bytes": sum(p.stat().st_size for p in input_files(extract)),
        "cases": cases,
        "peak_source": PEAK_SOURCE,
        "floor": floor,
        "stages": run,
        "load_within_audit": not load_split_out,
        "warehouse_mb": round((scratch / "audit.duckdb").stat().st_size / 1e6, 1),
    }
    out.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
