"""The DuckDB warehouse: connection, schema, the run ledger and the one-transaction publish.

One process writes at a time (DuckDB's rule); analysts open the file read-only between runs.
A run's canonical tables, quarantine, data-quality warnings, results and summary land in ONE
transaction, so a run that fails part-way leaves every earlier result exactly as it was.

A run holds the warehouse's run lock (``audit.duckdb.lock`` beside the file) from before it
records itself ``running`` until it has finished: DuckDB's own lock lasts only while a
connection is open, and a run opens the file briefly several times. Holding the run lock is also
what makes a ``running`` row found by the next run provably one whose process died.
"""

from __future__ import annotations

import fcntl
import functools
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import polars as pl

from chartaudit.schemas.contract import TABLE_ORDER
from chartaudit.schemas.results import (
    LATEST_VIEWS_DDL,
    RESULT_TABLES_DDL,
    canonical_insert_sql,
    canonical_table_ddl,
    canonical_table_migrations,
    result_table_migrations,
)

DEFAULT_WAREHOUSE = Path("audit.duckdb")
# Files are written in the v1.0 storage format, which every DuckDB since 1.0 (CLI, R, JDBC for
# DBeaver) can open; the default 2.x format would lock out analysts' older tools.
STORAGE_COMPATIBILITY = "v1.0.0"
STORAGE_VERSION_NUMBER = 64  # what that format writes in the file header (bytes 12-19)


# What the next run writes into `runs.error` of a run it finds `running` with no process.
INTERRUPTED = "interrupted: the process died before the run finished"
LOCK_SUFFIX = ".lock"


class WarehouseBusy(RuntimeError):
    """Another run is writing the warehouse, or another process holds the file."""


class WarehouseUnreadable(RuntimeError):
    """The warehouse file cannot be opened for another reason than a lock (not a DuckDB file)."""


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    period: str
    ruleset: str
    extract_id: str
    input_digest: str
    code_version: str
    timezone: str
    started_at: datetime
    coverage_start: datetime | None = None
    partial: bool = False  # the extract covers the period only in part


# DuckDB's share of the memory this process may use: the rest is for polars frames of the same
# run (and Prefect). Past its limit DuckDB spills to its temp_directory instead of failing.
DUCKDB_MEMORY_SHARE = 0.6
MIN_DUCKDB_MEMORY = 256 * 2**20


def machine_settings() -> dict[str, str | int]:
    """DuckDB's threads and memory_limit from this machine: the CPUs the process may run on
    (not the host's count, which a container or taskset narrows) and a share of the memory
    available (MemAvailable; a cgroup limit when lower), read without psutil. Read once per
    process: DuckDB refuses a second connection to an open file with a different config."""
    return dict(_machine_settings())


@functools.cache
def _machine_settings() -> dict[str, str | int]:
    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    limit = _available_memory()
    settings: dict[str, str | int] = {"threads": max(1, threads or 1)}
    if limit is not None:
        share = max(MIN_DUCKDB_MEMORY, int(limit * DUCKDB_MEMORY_SHARE))
        settings["memory_limit"] = f"{share // 2**20}MB"
    return settings


def _available_memory() -> int | None:
    """Bytes: /proc/meminfo's MemAvailable, or the cgroup's memory.max when that is lower."""
    found = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    try:
        cgroup = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if cgroup.isdigit():
            found.append(int(cgroup))
    except OSError:
        pass
    return min(found) if found else None


def connect(path: Path, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open the warehouse (creating its tables when writing); sessions run in UTC."""
    try:
        if read_only:
            con = duckdb.connect(str(path), read_only=True, config=machine_settings())
        else:
            config = {"storage_compatibility_version": STORAGE_COMPATIBILITY, **machine_settings()}
            con = duckdb.connect(str(path), config=config)
    except duckdb.IOException as exc:
        first_line = str(exc).splitlines()[0]
        if "lock" not in first_line.lower():  # not a DuckDB file, a disk fault…: no retry helps
            raise WarehouseUnreadable(f"cannot open warehouse {path}: {first_line}") from exc
        raise WarehouseBusy(
            f"cannot open warehouse {path}: {first_line} — close other sessions on it and retry"
        ) from exc
    con.execute("SET TimeZone = 'UTC'")
    # Only explicitly registered frames are visible to SQL, never a Python variable by name.
    con.execute("SET python_enable_replacements = false")
    if not read_only:
        create_schema(con)
    return con


def create_schema(con: duckdb.DuckDBPyConnection) -> None:
    for table in TABLE_ORDER:
        con.execute(canonical_table_ddl(table))
    con.execute(RESULT_TABLES_DDL)
    # A warehouse from an older chartaudit gains the newer columns.
    for statement in [*canonical_table_migrations(), *result_table_migrations()]:
        con.execute(statement)
    con.execute(LATEST_VIEWS_DDL)


# --- the run lock --------------------------------------------------------------------------

# Warehouses whose run lock this process holds (resolved path -> the lock file's descriptor).
_held_locks: dict[Path, int] = {}


def lock_path(path: Path) -> Path:
    path = Path(path)
    return path.with_name(path.name + LOCK_SUFFIX)


@contextmanager
def run_lock(path: Path, run: RunRecord) -> Iterator[None]:
    """Hold the warehouse's run lock for a whole run, or raise WarehouseBusy naming the run that
    holds it. The lock is an flock on ``<warehouse>.lock``: the kernel drops it when the holder
    exits, however it dies, so a killed run never leaves the warehouse locked. The file stays
    (empty between runs); removing it would let two runs lock two different files."""
    _require_folder(path)
    fd = os.open(lock_path(path), os.O_RDWR | os.O_CREAT, 0o600)  # it names the run
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise WarehouseBusy(_busy_message(path, _read_holder(fd))) from None
        holder = {
            "run_id": run.run_id,
            "period": run.period,
            "started_at": run.started_at.astimezone(UTC).isoformat(),
            "pid": os.getpid(),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        key = Path(path).resolve()
        _held_locks[key] = fd
        try:
            yield
        finally:
            del _held_locks[key]
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # releases the lock


def check_can_start_run(path: Path) -> None:
    """Raise WarehouseUnreadable when the warehouse's folder does not exist, WarehouseBusy when
    a run holds its run lock. Takes nothing and writes nothing: a command line refuses at once,
    before it starts anything."""
    _require_folder(path)
    try:
        fd = os.open(lock_path(path), os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        raise WarehouseBusy(_busy_message(path, _read_holder(fd))) from None
    finally:
        os.close(fd)


def _require_folder(path: Path) -> None:
    folder = Path(path).parent
    if not folder.is_dir():
        raise WarehouseUnreadable(f"cannot open warehouse {path}: no folder {folder}")


def _read_holder(fd: int) -> dict:
    try:
        return json.loads(os.pread(fd, 4096, 0) or b"{}")
    except ValueError:  # the holder is writing it at this instant
        return {}


def _busy_message(path: Path, holder: dict) -> str:
    if not holder:
        return f"warehouse is busy: another run is writing {path}; try again when it has finished"
    started = datetime.fromisoformat(holder["started_at"]).strftime("%Y-%m-%d %H:%M:%S UTC")
    return (
        f"warehouse is busy: run {holder['run_id']} (period {holder['period']}, started"
        f" {started}, process {holder['pid']}) is writing {path}; try again when it has finished"
    )


@dataclass(frozen=True)
class InterruptedRun:
    run_id: str
    period: str
    started_at: datetime


def begin_run(path: Path, run: RunRecord) -> list[InterruptedRun]:
    """Record a run as ``running`` (its own small transaction), so a crash stays visible.

    The caller holds the run lock, so any other ``running`` row belongs to a run whose process
    died (killed, or the machine went down): it is recorded ``failed`` with INTERRUPTED, in the
    same transaction, and returned for the run log."""
    if Path(path).resolve() not in _held_locks:
        raise RuntimeError(f"begin_run on {path} without its run lock (warehouse.run_lock)")
    with connect(path) as con:
        con.begin()
        interrupted = con.execute(
            "SELECT run_id, period, started_at FROM runs WHERE status = 'running'"
            " ORDER BY started_at"
        ).fetchall()
        con.execute(
            "UPDATE runs SET status = 'failed', error = ? WHERE status = 'running'",
            [f"{INTERRUPTED} (found by run {run.run_id})"],
        )
        con.execute(
            "INSERT INTO runs (run_id, period, ruleset, status, started_at, extract_id,"
            " input_digest, code_version, timezone, kind, coverage_start, partial)"
            " VALUES (?, ?, ?, 'running', ?, ?, ?, ?, ?, 'audit', ?, ?)",
            [
                run.run_id,
                run.period,
                run.ruleset,
                run.started_at,
                run.extract_id,
                run.input_digest,
                run.code_version,
                run.timezone,
                run.coverage_start,
                run.partial,
            ],
        )
        con.commit()
    return [InterruptedRun(*row) for row in interrupted]


def fail_run(path: Path, run_id: str, error: str) -> None:
    """Mark a run failed; nothing else in the warehouse changes."""
    with connect(path) as con:
        con.execute(
            "UPDATE runs SET status = 'failed', finished_at = ?, error = ? WHERE run_id = ?",
            [datetime.now(UTC), error.splitlines()[0][:2000] if error else "", run_id],
        )


@dataclass(frozen=True)
class RunOutputs:
    """Everything one run publishes, as frames (read by the publish step from its work dir)."""

    # per canonical table: its rows, or the Parquet file holding them (DuckDB reads it itself,
    # so the publishing process holds no copy of the extract)
    tables: dict[str, pl.DataFrame | Path]
    quarantine: pl.DataFrame
    load_counts: pl.DataFrame
    measures: pl.DataFrame
    case_results: pl.DataFrame
    measure_summary: pl.DataFrame
    component_summary: pl.DataFrame | None = None
    timing_summary: pl.DataFrame | None = None
    rejudged_cases: pl.DataFrame | None = None
    rejudge_runs: pl.DataFrame | None = None  # `runs` rows of earlier months judged again
    data_quality: pl.DataFrame | None = None  # warnings about loaded rows


def earlier_pending_cases(path: Path | None, period: str) -> pl.DataFrame | None:
    """The latest cases (all of them) of every month before ``period`` that still has pending
    cases, each with its rule set; None when there is no warehouse or nothing is pending."""
    if path is None or not Path(path).exists():
        return None
    with connect(path, read_only=True) as con:
        frame = con.sql(
            "SELECT c.* REPLACE (coalesce(c.ruleset, r.ruleset) AS ruleset)"
            " FROM latest_case_results c JOIN latest_runs r USING (run_id)"
            " WHERE c.period < ? AND c.period IN"
            " (SELECT period FROM latest_case_results WHERE outcome = 'pending')",
            params=[period],
        ).pl()
    return frame if frame.height else None


def publish_run(
    path: Path,
    run_id: str,
    extract_id: str,
    coverage_end: datetime,
    outputs: RunOutputs,
    before_commit: Callable[[], None] | None = None,
) -> None:
    """Replace the canonical tables and add the run's results, all in one transaction.
    ``before_commit`` runs with everything written and nothing committed (a test's kill point)."""
    provenance = {"run_id": pl.lit(run_id), "extract_id": pl.lit(extract_id)}
    files = {t: f for t, f in outputs.tables.items() if isinstance(f, Path)}
    incoming = {
        **{
            t: outputs.tables[t].with_columns(extract_id=pl.lit(extract_id))
            for t in TABLE_ORDER
            if t not in files
        },
        "quarantine": outputs.quarantine.with_columns(**provenance),
        "data_quality": (
            None
            if outputs.data_quality is None
            else outputs.data_quality.with_columns(**provenance)
        ),
        "load_counts": outputs.load_counts.with_columns(**provenance),
        "measures": outputs.measures,
        "case_results": outputs.case_results,
        "measure_summary": outputs.measure_summary,
        "component_summary": outputs.component_summary,
        "timing_summary": outputs.timing_summary,
        "rejudged_cases": outputs.rejudged_cases,
    }
    incoming = {table: frame for table, frame in incoming.items() if frame is not None}
    if outputs.rejudge_runs is not None:  # before their cases: runs first, as for every run
        incoming = {"runs": outputs.rejudge_runs, **incoming}
    with connect(path) as con:
        # Frames are registered explicitly (replacement scans are off), before the transaction.
        for table, frame in incoming.items():
            con.register(f"incoming_{table}", frame.to_arrow())
        con.begin()
        try:
            for table in TABLE_ORDER:
                con.execute(f"DELETE FROM {table}")
            for table, path in files.items():
                rows = "(SELECT *, $extract_id::VARCHAR AS extract_id FROM read_parquet($path))"
                con.execute(
                    canonical_insert_sql(table, rows), {"extract_id": extract_id, "path": str(path)}
                )
            for table in incoming:
                if table in TABLE_ORDER:
                    con.execute(canonical_insert_sql(table, f"incoming_{table}"))
                else:
                    con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM incoming_{table}")
            con.execute(
                "UPDATE runs SET status = 'succeeded', finished_at = ?, coverage_end = ?"
                " WHERE run_id = ?",
                [datetime.now(UTC), coverage_end, run_id],
            )
            # A month first audited in part stays partial when its pending cases are judged
            # again: the later extract decides those cases, and adds none of the month's.
            con.execute(
                "UPDATE runs SET partial = parent.partial FROM runs parent"
                " WHERE runs.triggered_by = ? AND runs.kind = 'rejudge'"
                " AND parent.run_id = runs.parent_run_id",
                [run_id],
            )
            if before_commit is not None:
                before_commit()
            con.commit()
        except BaseException:
            con.rollback()
            raise


@dataclass(frozen=True)
class SucceededRun:
    run_id: str
    cases: int  # the period's cases the run holds


def succeeded_on(
    path: Path, period: str, ruleset: str, extract_id: str, input_digest: str
) -> SucceededRun | None:
    """The period's latest run (of any kind and status) when it succeeded on this extract (same
    extract_id and input_digest) under ``ruleset``; None otherwise, or when there is no
    warehouse. A backfill skips such a month: running it again would publish the same."""
    if not Path(path).exists():
        return None
    with connect(path, read_only=True) as con:
        rows = con.execute(
            "SELECT r.run_id, r.status = 'succeeded' AND r.ruleset = ? AND r.extract_id = ?"
            " AND r.input_digest = ?,"
            " (SELECT count(*) FROM case_results c WHERE c.run_id = r.run_id AND c.period = ?)"
            " FROM runs r WHERE r.period = ?"
            " ORDER BY r.started_at DESC, r.finished_at DESC NULLS FIRST, r.run_id DESC LIMIT 1",
            [ruleset, extract_id, input_digest, period, period],
        ).fetchall()
    if not rows or not rows[0][1]:
        return None
    return SucceededRun(rows[0][0], rows[0][2])
