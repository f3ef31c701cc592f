"""The audit in partitions of patients, each a Prefect task on a Dask cluster.

Patients are independent: every measure judges a patient's own rows (validation refuses an
event whose encounter is another patient's), so the audit splits by a hash of ``patient_id``.
DuckDB's ``hash()`` decides the partition, in SQL, never Python's salted ``hash()``: the same
patient lands in the same partition on every worker and in every run of one DuckDB version.

    prepare    the earlier months' pending cases, read once from the warehouse into the work
               folder (workers never open the warehouse)
    partition  (one Dask task each) the validated canonical Parquet files, filtered to the
               partition, audited as ``audit_step`` does; this month's cases and the earlier
               months' fresh judgements go to ``partitions/<k>/`` as Parquet
    merge      the union, in one step: what ran (it depends on the catalogue and the period,
               never on rows), the cases in the order one process writes them, and the earlier
               months settled over every patient at once (a month gets a rejudge run when any
               of its cases changed, in whichever partition); then summarise and publish run on
               the union, as in a run of one process.

Only paths and partition numbers travel to the workers, so each worker must read the run's
work folder: on a cluster, ``[scale] work_dir`` on a filesystem every worker mounts.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import duckdb
from distributed import LocalCluster
from prefect import flow, get_run_logger, task, unmapped
from prefect.cache_policies import NONE
from prefect_dask import DaskTaskRunner

from chartaudit.audits.engine import run_measures
from chartaudit.audits.rejudge import judge_again, settle
from chartaudit.flows import steps
from chartaudit.flows.checkpoints import checkpoint
from chartaudit.flows.settings import ScaleSettings
from chartaudit.schemas.contract import TABLE_ORDER
from chartaudit.schemas.results import RESULT_TABLES_DDL, canonical_insert_sql, canonical_table_ddl
from chartaudit.storage import warehouse

PARTITIONS = "partitions"
EARLIER_CASES = "earlier_cases.parquet"  # the warehouse's pending months, for the rejudging
CASES = "case_results.parquet"  # one partition's cases of this month
FRESH = "fresh.parquet"  # one partition's fresh judgements of the earlier pending months


def partition_sql(partitions: int) -> str:
    """The partition of a row, in DuckDB SQL: stable across processes and machines."""
    return f"hash(patient_id) % {int(partitions)}"


def partition_dir(work: Path, partition: int) -> Path:
    return work / PARTITIONS / str(partition)


def prepare_partitions_step(work: Path, warehouse_path: Path | None) -> None:
    """Write the earlier months' pending cases (when the warehouse has any) beside the
    partitions, so that each worker takes its patients' share from a file."""
    (work / PARTITIONS).mkdir(parents=True, exist_ok=True)
    earlier = warehouse.earlier_pending_cases(warehouse_path, steps.RunPlan.load(work).period)
    if earlier is not None:
        earlier.write_parquet(work / PARTITIONS / EARLIER_CASES)


def partition_connection(
    work: Path, extract_id: str, partition: int | None, partitions: int
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB holding the canonical tables of one partition's patients, read from
    the validated Parquet files; ``partition`` None gives the tables empty (the merge's)."""
    own = work / PARTITIONS / "merge" if partition is None else partition_dir(work, partition)
    own.mkdir(parents=True, exist_ok=True)
    con = steps.scratch_connection(own)  # a spill folder of its own: partitions run at once
    con.execute("SET python_enable_replacements = false")
    keep = "FALSE" if partition is None else f"{partition_sql(partitions)} = {int(partition)}"
    for table in TABLE_ORDER:
        con.execute(canonical_table_ddl(table))
        source = work / "validated" / "tables" / f"{table}.parquet"
        con.execute(
            f"CREATE TEMP VIEW incoming AS SELECT *, {_quote(extract_id)} AS extract_id"
            f" FROM read_parquet({_quote(str(source))}) WHERE {keep}"
        )
        con.execute(canonical_insert_sql(table, "incoming"))
        con.execute("DROP VIEW incoming")
    con.execute(RESULT_TABLES_DDL)
    return con


def audit_partition_step(work: Path, partition: int, partitions: int) -> int:
    """Judge one partition's patients (``audit_step`` on a slice); returns its cases."""
    plan = steps.RunPlan.load(work)
    catalogue = plan.catalogue
    out = partition_dir(work, partition)
    with partition_connection(work, plan.extract_id, partition, partitions) as con:
        run_measures(con, catalogue, plan.audit_period, plan.ruleset, plan.run_id)
        steps._copy(con, "case_results", out / CASES)
        earlier = work / PARTITIONS / EARLIER_CASES
        if earlier.exists():
            con.execute(
                "CREATE TEMP VIEW earlier_cases AS SELECT * FROM"
                f" read_parquet({_quote(str(earlier))})"
                f" WHERE {partition_sql(partitions)} = {int(partition)}"
            )
            judge_again(con, catalogue, "earlier_cases", *_rejudge_context(plan))
            steps._copy(con, "fresh", out / FRESH)
        (cases,) = con.execute("SELECT count(*) FROM case_results").fetchall()[0]
        return cases


def merge_partitions_step(work: Path, partitions: int) -> int:
    """The partitions' union in the files ``audit_step`` writes (results/), as one process
    would have written them; returns this month's cases."""
    plan = steps.RunPlan.load(work)
    catalogue = plan.catalogue
    results = work / "results"
    results.mkdir(parents=True, exist_ok=True)
    parts = [partition_dir(work, k) for k in range(partitions)]
    with partition_connection(work, plan.extract_id, None, partitions) as con:
        # On empty tables: what ran, and no case; the cases come from the partitions.
        ran = run_measures(con, catalogue, plan.audit_period, plan.ruleset, plan.run_id)
        order = _quote_list([m.measure_id for m in ran])
        con.execute(
            f"INSERT INTO case_results BY NAME SELECT * FROM read_parquet({_files(parts, CASES)})"
            f" ORDER BY list_position({order}, measure_id), patient_id, index_time,"
            " index_event_id"  # one process's order: measure by measure, as the compiler sorts
        )
        (cases,) = con.execute("SELECT count(*) FROM case_results").fetchall()[0]
        earlier = work / PARTITIONS / EARLIER_CASES
        rejudged = []
        if earlier.exists():
            con.execute(
                "CREATE TEMP VIEW earlier_cases AS SELECT * FROM"
                f" read_parquet({_quote(str(earlier))})"
            )
            plan_again, reran = judge_again(
                con, catalogue, "earlier_cases", *_rejudge_context(plan)
            )
            con.execute(
                f"INSERT INTO fresh BY NAME SELECT * FROM read_parquet({_files(parts, FRESH)})"
            )
            rejudged, reran = settle(con, "earlier_cases", plan.run_id, plan_again, reran)
            ran += reran
            con.execute("INSERT INTO case_results BY NAME SELECT * FROM rejudge_case_results")
            steps._copy(con, "rejudged_cases", results / "rejudged_cases.parquet")
        steps._rejudge_runs(plan, rejudged).write_parquet(results / "rejudge_runs.parquet")
        steps.measure_frame(ran).write_parquet(results / "measures.parquet")
        steps._copy(con, "case_results", results / "case_results.parquet")
        return cases


def _rejudge_context(plan: steps.RunPlan) -> tuple:
    """judge_again's arguments after ``previous``, as audit_step gives them."""
    return (
        plan.timezone,
        datetime.fromisoformat(plan.coverage_end),
        plan.run_id,
        plan.coverage_start_instant,
    )


def _files(folders: list[Path], name: str) -> str:
    return _quote_list([str(f / name) for f in folders])


def _quote_list(texts: list[str]) -> str:
    return "[" + ", ".join(_quote(t) for t in texts) + "]"


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# -- Prefect and Dask ------------------------------------------------------------------------


@contextmanager
def dask_task_runner(scale: ScaleSettings) -> Iterator[DaskTaskRunner]:
    """A task runner on the cluster at ``scale.dask_address``; without one, on a local cluster
    started here and closed at the end whatever happens. The local one runs its workers as
    threads of this process (DuckDB and polars release the GIL while they work): no process
    to start, to pickle frames to, or to leave behind."""
    with _dask_warnings_only():
        if scale.dask_address:
            yield DaskTaskRunner(address=scale.dask_address)
            return
        with _local_cluster(scale.partitions) as cluster:
            yield DaskTaskRunner(address=cluster.scheduler_address)


@contextmanager
def _dask_warnings_only() -> Iterator[None]:
    """Dask logs each worker's and connection's coming and going at INFO, some sixty lines a run
    that Prefect's console shows among the run's own: only its warnings are worth the log."""
    dask_logger = logging.getLogger("distributed")
    level = dask_logger.level
    dask_logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        dask_logger.setLevel(level)


@contextmanager
def _local_cluster(partitions: int) -> Iterator[LocalCluster]:
    cluster = LocalCluster(
        n_workers=max(1, min(partitions, os.cpu_count() or 1)),
        threads_per_worker=1,
        processes=False,
        # Scheduler and workers serve HTTP (health, metrics) even with no dashboard, by default
        # on every interface: loopback only, on free ports.
        dashboard_address="127.0.0.1:0",
        worker_dashboard_address="127.0.0.1:0",
    )
    try:
        yield cluster
    finally:
        cluster.close()


@task(cache_policy=NONE)
def prepare_partitions(work: str, warehouse_path: str) -> None:
    prepare_partitions_step(Path(work), Path(warehouse_path))


@task(cache_policy=NONE)
def audit_partition(work: str, partition: int, partitions: int) -> int:
    cases = audit_partition_step(Path(work), partition, partitions)
    get_run_logger().info("partition %d of %d: %d cases judged", partition, partitions, cases)
    return cases


@flow(name="audit-partitions")
def audit_partitions(work: str, partitions: int) -> list[int]:
    """Every partition's audit as a task on the flow's task runner (a DaskTaskRunner)."""
    futures = audit_partition.map(unmapped(work), range(partitions), unmapped(partitions))
    return [future.result() for future in futures]


@task(cache_policy=NONE)
def merge_partitions(work: str, partitions: int) -> int:
    cases = merge_partitions_step(Path(work), partitions)
    checkpoint("audit")
    return cases


def audit_partitioned(work: str, warehouse_path: str, scale: ScaleSettings) -> int:
    """The monthly audit's audit step in ``scale.partitions`` partitions on Dask; returns this
    month's cases. The files it leaves in results/ are those of ``steps.audit_step``."""
    if scale.dask_address and scale.work_dir is None:
        get_run_logger().warning(
            "dask address %s without [scale] work_dir: the workers must read %s",
            scale.dask_address,
            work,
        )
    prepare_partitions(work, warehouse_path)
    with dask_task_runner(scale) as runner:
        audit_partitions.with_options(task_runner=runner)(work, scale.partitions)
    return merge_partitions(work, scale.partitions)
