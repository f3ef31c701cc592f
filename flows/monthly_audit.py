"""The Prefect flow of the monthly audit: load -> validate -> audit -> summarise -> publish ->
report. Each task wraps one plain function of ``steps`` and passes the work folder's path on,
never a data frame (hashing a frame for Prefect's cache costs seconds per call)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

# Importing this module runs flows/__init__.py (chartaudit.flows) first: the no-telemetry
# defaults are in place before Prefect loads.
from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_table_artifact,
)
from prefect.cache_policies import NONE

from chartaudit.audits.engine import DEFAULT_RULESET
from chartaudit.flows import steps
from chartaudit.flows.checkpoints import checkpoint
from chartaudit.flows.conditions import install_log_filter
from chartaudit.flows.files import owner_only_files
from chartaudit.flows.settings import ThresholdSettings, scale, thresholds
from chartaudit.flows.workfolder import work_folder
from chartaudit.reports.formatting import ci, pct
from chartaudit.reports.suppression import SUPPRESSED_TEXT, suppress_summary
from chartaudit.storage import warehouse

FILE_IO_RETRIES = 2

# A known condition (rejected extract, threshold passed, busy warehouse…) logs one line, not
# Prefect's traceback; a bug keeps its traceback (flows/conditions.py).
install_log_filter()


def _retry_on_io_error(task, task_run, state) -> bool:
    """Retry a step only for file-system trouble; a bad extract fails the same way twice."""
    try:
        state.result()
    except OSError:
        return True
    except Exception:
        return False
    return False


io_task = task(
    cache_policy=NONE,
    retries=FILE_IO_RETRIES,
    retry_delay_seconds=2,
    retry_condition_fn=_retry_on_io_error,
)


@io_task
def load(
    extract_dir: str,
    work: str,
    period: str | None,
    ruleset: str,
    measure_folders: list[str],
    allow_partial_month: bool = False,
) -> steps.RunPlan:
    logger = get_run_logger()
    plan = steps.load_step(
        Path(extract_dir),
        Path(work),
        period,
        ruleset,
        tuple(measure_folders),
        allow_partial_month=allow_partial_month,
    )
    checkpoint("load")
    if plan.timezone_defaulted:
        logger.warning("manifest.json gives no time zone: naive timestamps are read as UTC")
    if plan.coverage_end_observed:
        logger.warning("manifest.json gives no coverage_end: using the latest instant in the data")
    if plan.coverage_start_observed and plan.coverage_start is None:
        logger.warning("manifest.json gives no coverage_start and the extract no encounter")
    elif plan.coverage_start_observed:
        logger.warning(
            "manifest.json gives no coverage_start: using the day of the earliest encounter"
            " (coverage %s)",
            plan.coverage.describe(),
        )
    if plan.partial:
        logger.warning(
            "period %s is a partial month: the extract covers %s of it; audited as partial"
            " (--allow-partial-month), its counts hold only those days",
            plan.period,
            plan.coverage.part_of(plan.period),
        )
    logger.info(
        "run %s: extract %s, period %s, rule set %s, time zone %s, coverage end %s",
        plan.run_id,
        plan.extract_id,
        plan.period,
        plan.ruleset,
        plan.timezone,
        plan.coverage_end,
    )
    return plan


@task(cache_policy=NONE)
def validate(work: str, limits: ThresholdSettings) -> None:
    logger = get_run_logger()
    validated = steps.validate_step(Path(work), limits)
    checkpoint("validate")
    for row in validated.load_counts.iter_rows(named=True):
        logger.info(
            "%s: %d rows read, %d loaded (%d with data-quality warnings), %d quarantined",
            row["table_name"],
            row["input_rows"],
            row["loaded_rows"],
            row["warned_rows"],
            row["quarantined_rows"],
        )
    for warning in validated.warnings:
        logger.warning(warning)


@task(cache_policy=NONE)
def audit(work: str, warehouse_path: str) -> int:
    cases = steps.audit_step(Path(work), Path(warehouse_path))
    checkpoint("audit")
    _log_audit(work, cases)
    return cases


def _log_audit(work: str, cases: int) -> None:
    logger = get_run_logger()
    logger.info("%d cases judged", cases)
    for line in steps.measure_status_lines(Path(work)):
        logger.warning(line)  # a measure not judged this month (or its look-back unchecked)
    rejudged = steps.rejudged_summary(Path(work))
    if rejudged:
        logger.info("pending cases of earlier months judged again: %s", rejudged)


@task(cache_policy=NONE)
def summarise(work: str) -> None:
    summary = steps.summarise_step(Path(work))
    get_run_logger().info("%d summary rows", summary.height)


@io_task
def publish(work: str, warehouse_path: str) -> None:
    steps.publish_step(
        Path(work), Path(warehouse_path), before_commit=lambda: checkpoint("publish")
    )


@io_task
def report(
    warehouse_path: str, period: str, out_dir: str, suppress_below: int | None = None
) -> str:
    """Render the report; leave three artifacts on the flow run (Prefect's keys are lowercase
    letters, digits and dashes): the Markdown summary, the measure summary as a table, and a
    link to the report file."""
    path, markdown = steps.report_step(
        Path(warehouse_path), period, Path(out_dir), suppress_below=suppress_below
    )
    create_markdown_artifact(
        key=f"chartaudit-summary-{period}",
        markdown=markdown,
        description=f"Compliance summary for {period}",
    )
    create_table_artifact(
        key=f"chartaudit-measures-{period}",
        table=measure_summary_table(Path(warehouse_path), period, suppress_below),
        description=f"Each measure's rate for {period} (all sites and settings)",
    )
    create_link_artifact(
        key=f"chartaudit-report-{period}",
        link=path.resolve().as_uri(),
        link_text=path.name,
        description=f"The HTML report for {period}",
    )
    get_run_logger().info("report written to %s", path)
    return str(path)


SUMMARY_TABLE_COLUMNS = (
    "measure",
    "denominator",
    "met",
    "not met",
    "excluded",
    "pending",
    "rate",
    "95 % interval",
)


def measure_summary_table(
    warehouse_path: Path, period: str, suppress_below: int | None = None
) -> list[dict]:
    """The period's ``latest_measure_summary`` rows of stratum 'all', one per measure, with
    the rate and interval formatted as the report prints them; a suppressed measure's values
    read "<N", as in the report."""
    with warehouse.connect(warehouse_path, read_only=True) as con:
        summary = con.sql(
            "SELECT * FROM latest_measure_summary WHERE period = $period",
            params={"period": period},
        ).pl()
    shown = suppress_summary(summary, suppress_below).filter(pl.col("stratum_kind") == "all")
    hidden = SUPPRESSED_TEXT(suppress_below) if suppress_below is not None else None
    return [
        dict(zip(SUMMARY_TABLE_COLUMNS, _summary_cells(row, hidden), strict=True))
        for row in shown.sort("measure_id").iter_rows(named=True)  # one row per measure
    ]


def _summary_cells(row: dict, hidden: str | None) -> tuple:
    counts = ("denominator", "met", "not_met", "excluded", "pending")
    if row["suppressed"]:
        return (row["measure_id"], *(hidden for _ in counts), hidden, hidden)
    if row.get("status") == "not_computable":  # not judged: the reason instead of a rate
        return (row["measure_id"], *(None for _ in counts), row["status_reason"], None)
    return (
        row["measure_id"],
        *(row[c] for c in counts),
        pct(row["rate"]),
        ci(row["ci_low"], row["ci_high"]),
    )


@dataclass(frozen=True)
class AuditOutcome:
    run_id: str
    period: str
    cases: int
    warehouse: str
    report: str
    partial: bool = False  # the extract covers the period only in part


@flow(name="monthly-audit", log_prints=False)
def monthly_audit(
    extract_dir: str,
    period: str | None = None,
    warehouse_path: str = str(warehouse.DEFAULT_WAREHOUSE),
    out_dir: str = "reports/out",
    ruleset: str = DEFAULT_RULESET,
    max_quarantine_share: float | None = None,
    measure_folders: list[str] | None = None,
    suppress_below: int | None = None,
    allow_partial_month: bool = False,
    source_log: list[str] | None = None,
    partitions: int | None = None,
    dask_address: str | None = None,
) -> AuditOutcome:
    """Audit one month of an extract into the warehouse and render its report.

    ``period`` defaults to the extract's last complete month. A period outside the extract's
    coverage fails before anything is written (not even a ``runs`` row); so does a month the
    extract covers only in part, unless ``allow_partial_month``: then the run, its ``runs``
    row and the report mark it partial (docs/decisions.md, "Periods the extract covers").
    ``source_log`` is what the command line's adaptation of a non-contract source did (one
    line each, logged first). ``measure_folders`` adds measure folders to the built-in
    catalogue; ``suppress_below`` N hides strata of 1 to N-1 cases in the report and the
    artifacts (reports/suppression.py).
    The data-quality limits are the settings' ([thresholds] in chartaudit.toml,
    CHARTAUDIT_THRESHOLDS__*); ``max_quarantine_share`` overrides the quarantined share of every
    table. Earlier months' pending cases that this extract decides are judged again. A rejected
    extract writes nothing; any later failure (a table past a limit included) marks the run
    failed and leaves every result and report as it was. Files the run creates are the owner's
    only (flows/files.py), and its work folder is removed at the end, also after a failure
    (flows/workfolder.py).

    From before it records itself ``running`` to its end the run holds the warehouse's run lock:
    another run meanwhile fails with WarehouseBusy and writes nothing, and a ``running`` run
    this one finds is one whose process died; it is recorded ``failed`` (interrupted).

    ``partitions`` N > 1 audits N partitions of patients as tasks on Dask: the cluster at
    ``dask_address``, else a local one for the run (flows/partitions.py); both default to the
    settings' [scale], whose ``work_dir`` is where the work folder goes.
    """
    limits = thresholds(max_quarantine_share)  # a malformed settings file fails here
    spread = scale(partitions, dask_address)
    for line in source_log or ():  # what --format found and adapted (flows/sourcing.py)
        get_run_logger().info("%s", line)
    with owner_only_files(), work_folder(spread.work_dir) as folder:
        work = str(folder)
        plan = load(
            extract_dir, work, period, ruleset, list(measure_folders or []), allow_partial_month
        )
        with warehouse.run_lock(Path(warehouse_path), plan.record):
            _log_interrupted(warehouse.begin_run(Path(warehouse_path), plan.record))
            try:
                validate(work, limits)
                if spread.partitions > 1:
                    # Dask loads only for a partitioned run: a run of one process starts as fast
                    from chartaudit.flows.partitions import audit_partitioned

                    cases = audit_partitioned(work, warehouse_path, spread)
                    _log_audit(work, cases)
                else:
                    cases = audit(work, warehouse_path)
                summarise(work)
                publish(work, warehouse_path)
            except Exception as exc:
                warehouse.fail_run(
                    Path(warehouse_path), plan.run_id, f"{type(exc).__name__}: {exc}"
                )
                raise
            path = report(warehouse_path, plan.period, out_dir, suppress_below)
    return AuditOutcome(plan.run_id, plan.period, cases, warehouse_path, path, plan.partial)


def _log_interrupted(runs: list[warehouse.InterruptedRun]) -> None:
    for run in runs:
        get_run_logger().warning(
            "run %s (period %s, started %s) was interrupted: its process died before it"
            " finished; recorded as failed",
            run.run_id,
            run.period,
            f"{run.started_at:%Y-%m-%d %H:%M:%S %Z}",
        )
