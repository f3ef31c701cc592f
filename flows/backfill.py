"""The backfill flow: the monthly audit of every month of a range, oldest first, as one Prefect
flow with a subflow per month (``chartaudit backfill``, ``chartaudit demo``).

- **Resumable.** A month whose latest run succeeded on the same extract (extract_id and
  input_digest) under the same rule set is skipped (``storage.warehouse.succeeded_on``);
  ``redo`` runs every month anyway.
- **A failed month does not stop the others.** Each month's subflow is called with
  ``return_state=True`` (Prefect 3: the call returns the subflow's final state instead of
  raising its exception), and its error is recorded as one line. Two failures stop the whole
  backfill, because every later month would fail the same way or the person asked to stop: a
  rejected extract, and a stop signal (RunInterrupted).
- **Only months the extract covers.** A range reaching outside the coverage the manifest
  states is refused before any month starts, naming the months; a first or last month the
  extract covers only in part needs ``allow_partial_month`` (each such month's run is marked
  partial). Coverage the manifest leaves out is checked per month by its load step.
- **A summary at the end:** a Rich table on standard output, a Markdown artifact, and, when any
  month failed, BackfillIncomplete naming them (one ``error: …`` line, exit status 1).

Each month's subflow takes the warehouse's run lock itself, as a ``chartaudit run`` does; only
paths and strings cross a flow or task boundary.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NONE
from rich.console import Console
from rich.table import Table

from chartaudit.audits.engine import DEFAULT_RULESET
from chartaudit.audits.period import Coverage
from chartaudit.flows.conditions import error_line, install_log_filter
from chartaudit.flows.monthly_audit import monthly_audit, report
from chartaudit.flows.months import covered_range, month_range
from chartaudit.flows.steps import RunError
from chartaudit.flows.supervisor import STOPPED, RunInterrupted, stop_requested
from chartaudit.reports.render import report_path
from chartaudit.schemas.errors import ExtractRejected
from chartaudit.schemas.layout import check_extract
from chartaudit.storage import warehouse

install_log_filter()

SUCCEEDED, SKIPPED, FAILED = "succeeded", "skipped", "failed"
# Failures that would repeat in every later month, or that ask the backfill to stop.
STOPS_THE_BACKFILL = (ExtractRejected, RunInterrupted)


class BackfillIncomplete(RunError):
    """Some months of a backfill failed (the others ran); the message names them."""


@dataclass(frozen=True)
class MonthResult:
    period: str
    outcome: str  # succeeded | skipped | failed
    cases: int | None = None
    run_id: str | None = None
    error: str | None = None  # one line, for a failed month


@dataclass(frozen=True)
class BackfillOutcome:
    months: tuple[MonthResult, ...]
    warehouse: str
    report: str | None  # the newest month's report, when there is one


@dataclass(frozen=True)
class ExtractIdentity:
    extract_id: str
    input_digest: str
    coverage: Coverage  # what the manifest states of it


@task(cache_policy=NONE)
def identify_extract(extract_dir: str) -> ExtractIdentity:
    """The extract's id and digest (what a month's run records), from its table-level checks:
    a rejected extract fails here, once, before any month starts."""
    layout = check_extract(Path(extract_dir))
    manifest = layout.manifest
    coverage = Coverage.of(manifest.coverage_start, manifest.coverage_end, manifest.timezone)
    return ExtractIdentity(manifest.extract_id, layout.digest, coverage)


@task(cache_policy=NONE)
def earlier_success(
    warehouse_path: str, period: str, ruleset: str, extract: ExtractIdentity
) -> warehouse.SucceededRun | None:
    return warehouse.succeeded_on(
        Path(warehouse_path), period, ruleset, extract.extract_id, extract.input_digest
    )


@flow(name="backfill", log_prints=False)
def backfill(
    extract_dir: str,
    first: str,
    last: str,
    warehouse_path: str = str(warehouse.DEFAULT_WAREHOUSE),
    out_dir: str = "reports/out",
    ruleset: str = DEFAULT_RULESET,
    max_quarantine_share: float | None = None,
    measure_folders: list[str] | None = None,
    redo: bool = False,
    suppress_below: int | None = None,
    allow_partial_month: bool = False,
    source_log: list[str] | None = None,
) -> BackfillOutcome:
    """Audit every month from ``first`` to ``last`` (YYYY-MM, both included) of one extract;
    the other arguments are the monthly audit's. Raises BackfillIncomplete after the summary
    when any month failed."""
    month_range(first, last)  # a bad range fails before the extract is read
    for line in source_log or ():  # what --format found and adapted (flows/sourcing.py)
        get_run_logger().info("%s", line)
    extract = identify_extract(extract_dir)
    months = covered_range(first, last, extract.coverage, allow_partial_month)
    get_run_logger().info(
        "backfill of extract %s, %s to %s (%d months), rule set %s%s",
        extract.extract_id,
        first,
        last,
        len(months),
        ruleset,
        ", every month run again (--redo)" if redo else "",
    )
    month_args = {
        "extract_dir": extract_dir,
        "warehouse_path": warehouse_path,
        "out_dir": out_dir,
        "ruleset": ruleset,
        "max_quarantine_share": max_quarantine_share,
        "measure_folders": list(measure_folders or []),
        "suppress_below": suppress_below,
        "allow_partial_month": allow_partial_month,
    }
    results = []
    for period in months:
        done = None if redo else earlier_success(warehouse_path, period, ruleset, extract)
        results.append(_skipped(period, done) if done else _audit_month(period, month_args))
    newest = _newest_report(results[-1], warehouse_path, out_dir, suppress_below)
    outcome = BackfillOutcome(tuple(results), warehouse_path, newest)
    create_markdown_artifact(
        key=f"chartaudit-backfill-{first}-{last}",
        markdown=summary_markdown(outcome),
        description=f"Backfill of {extract.extract_id}, {first} to {last}",
    )
    print_summary(outcome)
    failed = [r.period for r in results if r.outcome == FAILED]
    if failed:
        raise BackfillIncomplete(
            f"{len(failed)} of {len(results)} months failed: {', '.join(failed)}"
        )
    return outcome


def _skipped(period: str, done: warehouse.SucceededRun) -> MonthResult:
    get_run_logger().info("%s: skipped: already succeeded in run %s", period, done.run_id)
    return MonthResult(period, SKIPPED, done.cases, done.run_id)


def _audit_month(period: str, month_args: dict) -> MonthResult:
    logger = get_run_logger()
    logger.info("%s: auditing", period)
    month_flow = monthly_audit.with_options(flow_run_name=f"monthly-audit-{period}")
    state = month_flow(period=period, **month_args, return_state=True)
    if state.is_completed():
        audited = state.result()
        logger.info("%s: succeeded: %d cases (run %s)", period, audited.cases, audited.run_id)
        return MonthResult(period, SUCCEEDED, audited.cases, audited.run_id)
    exc = state.result(raise_on_failure=False)
    if isinstance(exc, STOPS_THE_BACKFILL):
        raise exc
    if stop_requested():  # the stop surfaced as another error (flows/supervisor.py)
        raise RunInterrupted(STOPPED)
    line = error_line(exc).removeprefix("error: ") if isinstance(exc, BaseException) else None
    line = line or state.message or state.name
    logger.error("%s: failed: %s", period, line)
    return MonthResult(period, FAILED, error=line)


def _newest_report(
    newest: MonthResult, warehouse_path: str, out_dir: str, suppress_below: int | None
) -> str | None:
    """The report of the range's last month: written by its run; for a skipped month the one
    on disk, rendered again when it is missing (the warehouse has its results) or when
    suppression is asked for (the one on disk may show every count)."""
    if newest.outcome == FAILED:
        return None
    path = report_path(Path(out_dir), newest.period)
    if newest.outcome == SKIPPED and (suppress_below is not None or not path.exists()):
        return report(warehouse_path, newest.period, out_dir, suppress_below)
    return str(path)


def summary_table(outcome: BackfillOutcome) -> Table:
    table = Table(title="Backfill")
    for column in ("month", "outcome", "cases", "run id or error"):
        table.add_column(column, justify="right" if column == "cases" else "left")
    for month in outcome.months:
        cases = "" if month.cases is None else f"{month.cases:,}"
        table.add_row(month.period, month.outcome, cases, month.error or month.run_id or "")
    return table


def print_summary(outcome: BackfillOutcome) -> None:
    console = Console(soft_wrap=True)
    console.print(summary_table(outcome), markup=False, highlight=False)
    counts = {kind: sum(m.outcome == kind for m in outcome.months) for kind in (SUCCEEDED, SKIPPED)}
    console.print(
        f"{counts[SUCCEEDED]} succeeded, {counts[SKIPPED]} skipped (already succeeded),"
        f" {len(outcome.months) - sum(counts.values())} failed",
        markup=False,
        highlight=False,
    )
    console.print(f"warehouse: {Path(outcome.warehouse).resolve()}", markup=False)
    if outcome.report:
        console.print(f"report:    {Path(outcome.report).resolve()}", markup=False)


def summary_markdown(outcome: BackfillOutcome) -> str:
    lines = ["| month | outcome | cases | run id or error |", "|---|---|---:|---|"]
    for m in outcome.months:
        detail = (m.error or m.run_id or "").replace("|", "\\|")
        cases = "" if m.cases is None else f"{m.cases:,}"
        lines.append(f"| {m.period} | {m.outcome} | {cases} | {detail} |")
    return "\n".join(lines) + "\n"
