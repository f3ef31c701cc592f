"""The monthly audit's steps as plain functions over a run's work folder.

Prefect tasks (monthly_audit.py) wrap these one to one and pass only the work folder's path
between them; tests call them directly. The work folder holds each step's output as Parquet:

    plan.json      run id, period, rule set, measure folders, extract identity, coverage, and
                   whether the extract covers the period only in part
    raw/           the extract as read (typed), with read faults
    validated/     canonical rows, quarantine, data-quality warnings, load counts
    results/       case_results and measures (this month's run, and the runs of earlier months
                   whose pending cases the newer extract decided), rejudged_cases, rejudge_runs,
                   then the summaries: measure_summary, component_summary, timing_summary
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, date, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb
import polars as pl

from chartaudit.audits.engine import (
    DEFAULT_RULESET,
    SCAN_ORDER,
    Catalogue,
    MeasureRun,
    run_measures,
)
from chartaudit.audits.period import AuditPeriod, Coverage, parse_period
from chartaudit.audits.rejudge import rejudge_pending
from chartaudit.flows.settings import DEFAULT_QUARANTINE_SHARE, ThresholdSettings
from chartaudit.flows.thresholds import QUARANTINE, breaches
from chartaudit.reports.render import render_markdown_summary, render_report
from chartaudit.reports.summary import component_summary_sql, summarise_sql, timing_summary_sql
from chartaudit.schemas.contract import TABLE_ORDER, TABLES
from chartaudit.schemas.reader import RawExtract, read_extract
from chartaudit.schemas.results import (
    RESULT_TABLES_DDL,
    canonical_insert_sql,
    canonical_table_ddl,
)
from chartaudit.schemas.validation import ValidatedExtract, validate_extract
from chartaudit.sources.provenance import (
    PROVENANCE_FILE,
    read_provenance,
    to_source_files,
    to_source_lines,
)
from chartaudit.storage import warehouse

DEFAULT_MAX_QUARANTINE_SHARE = DEFAULT_QUARANTINE_SHARE


class RunError(RuntimeError):
    """The run cannot go on; the message is one line for the person on call."""


class DataQualityLimitExceeded(RunError):
    """A table is past a data-quality limit (settings: [thresholds]); the run stops."""


class QuarantineLimitExceeded(DataQualityLimitExceeded):
    """Too large a share (or count) of a table was quarantined for its results to be trusted."""


class WarningLimitExceeded(DataQualityLimitExceeded):
    """Too many rows of a table have data-quality warnings for its results to be trusted."""


@dataclass(frozen=True)
class RunPlan:
    run_id: str
    period: str
    ruleset: str
    extract_id: str
    input_digest: str
    timezone: str
    timezone_defaulted: bool
    coverage_end: str  # ISO instant
    coverage_end_observed: bool  # True when taken from the data, not the manifest
    code_version: str
    started_at: str
    measure_folders: tuple[str, ...] = ()  # extra measure folders beside the built-in ones
    coverage_start: str | None = None  # ISO instant: local midnight of the first day covered
    coverage_start_observed: bool = False  # True when taken from the data, not the manifest
    partial: bool = False  # the extract covers the period only in part (--allow-partial-month)

    @property
    def coverage_start_instant(self) -> datetime | None:
        return None if self.coverage_start is None else datetime.fromisoformat(self.coverage_start)

    def save(self, work: Path) -> None:
        (work / "plan.json").write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, work: Path) -> RunPlan:
        fields = json.loads((work / "plan.json").read_text())
        return cls(**{**fields, "measure_folders": tuple(fields.get("measure_folders", ()))})

    @property
    def catalogue(self) -> Catalogue:
        return Catalogue.load(self.measure_folders)

    @property
    def audit_period(self) -> AuditPeriod:
        return AuditPeriod.of(
            self.period,
            self.timezone,
            datetime.fromisoformat(self.coverage_end),
            None if self.coverage_start is None else datetime.fromisoformat(self.coverage_start),
        )

    @property
    def coverage(self) -> Coverage:
        start = self.audit_period.coverage_start
        return Coverage(self.timezone, start, datetime.fromisoformat(self.coverage_end))

    @property
    def record(self) -> warehouse.RunRecord:
        return warehouse.RunRecord(
            self.run_id,
            self.period,
            self.ruleset,
            self.extract_id,
            self.input_digest,
            self.code_version,
            self.timezone,
            datetime.fromisoformat(self.started_at),
            coverage_start=self.audit_period.coverage_start,
            partial=self.partial,
        )


def package_version() -> str:
    try:
        return version("chartaudit")
    except PackageNotFoundError:  # a source tree that was never installed
        return "0.0.0+source"


def code_version() -> str:
    """The package version, plus the git commit when run from a checkout."""
    release = package_version()
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{release}+{commit}" if commit else release


def _latest_instant(raw: RawExtract) -> datetime | None:
    """Coverage end when the manifest gives none: the latest instant in the extract."""
    latest = [
        raw.tables[t].get_column(c.name).max()
        for t in TABLE_ORDER
        for c in TABLES[t].columns
        if c.type == "timestamp"
    ]
    latest = [x for x in latest if x is not None]
    return max(latest) if latest else None


def _first_encounter_day(raw: RawExtract) -> date | None:
    """Coverage start when the manifest gives none: the local day of the earliest encounter.
    Not the earliest instant of any table: diagnoses carry a patient's history, years older
    than the extract's encounters (docs/decisions.md, "Periods the extract covers")."""
    earliest = raw.tables["encounters"].get_column("arrival_time").min()
    return None if earliest is None else earliest.astimezone(ZoneInfo(raw.manifest.timezone)).date()


def load_step(
    extract_dir: Path,
    work: Path,
    period: str | None,
    ruleset: str = DEFAULT_RULESET,
    measure_folders: tuple[str, ...] = (),
    allow_partial_month: bool = False,
) -> RunPlan:
    """Read the extract (table-level faults raise ExtractRejected) and plan the run. A period
    the extract does not cover, or covers in part without ``allow_partial_month``, raises
    CoverageError here, before anything is written; no period is its last whole month."""
    Catalogue.load(measure_folders).require_ruleset(ruleset)
    raw = read_extract(extract_dir)
    manifest = raw.manifest
    coverage_end = manifest.coverage_end or _latest_instant(raw)
    if coverage_end is None:
        raise RunError(
            f"{extract_dir}: no coverage_end in manifest.json and no timestamps in the data"
        )
    coverage = Coverage.of(
        manifest.coverage_start or _first_encounter_day(raw), coverage_end, manifest.timezone
    )
    period = period or coverage.last_whole_month()
    parse_period(period)  # a malformed period fails here, before anything is written
    Catalogue.load(measure_folders).require_in_effect(ruleset, period)
    partial = coverage.check(period, allow_partial_month)
    raw.save(work / "raw")
    provenance = read_provenance(extract_dir)
    if provenance is not None:  # an adapted source: keep where each row came from
        provenance.write_parquet(work / "raw" / PROVENANCE_FILE)
    now = datetime.now(UTC)
    plan = RunPlan(
        run_id=f"{period}_{now:%Y%m%dT%H%M%SZ}_{uuid.uuid4().hex[:6]}",
        period=period,
        ruleset=ruleset,
        extract_id=manifest.extract_id,
        input_digest=raw.digest,
        timezone=manifest.timezone,
        timezone_defaulted=manifest.timezone_defaulted,
        coverage_end=coverage_end.astimezone(UTC).isoformat(),
        coverage_end_observed=manifest.coverage_end is None,
        code_version=code_version(),
        started_at=now.isoformat(),
        measure_folders=tuple(str(f) for f in measure_folders),
        coverage_start=None if coverage.start is None else coverage.start.isoformat(),
        coverage_start_observed=manifest.coverage_start is None,
        partial=partial,
    )
    plan.save(work)
    return plan


def validate_step(work: Path, limits: ThresholdSettings | None = None) -> ValidatedExtract:
    """Apply the row-level rules; fail when a table is past a data-quality limit (default: the
    settings' defaults), naming the table, its most frequent rule and its share."""
    validated = with_source_lines(
        validate_extract(RawExtract.load(work / "raw")), read_provenance(work / "raw")
    )
    validated.save(work / "validated")
    over = breaches(validated, limits or ThresholdSettings())
    if over:
        worst = over[0]
        error = QuarantineLimitExceeded if worst.level == QUARANTINE else WarningLimitExceeded
        raise error(worst.message())
    return validated


def with_source_lines(
    validated: ValidatedExtract, provenance: pl.DataFrame | None
) -> ValidatedExtract:
    """An adapted source's quarantine, warnings and load counts name the source's own files
    and lines (sources/provenance.py); a contract extract's are returned as they are."""
    if provenance is None:
        return validated
    return replace(
        validated,
        quarantine=to_source_lines(validated.quarantine, provenance),
        data_quality=to_source_lines(validated.data_quality, provenance),
        load_counts=to_source_files(validated.load_counts, provenance),
    )


def scratch_connection(work: Path | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB that spills, if it must, into the run's work folder (removed after
    the run) rather than into a ``.tmp`` folder of the working directory."""
    machine = warehouse.machine_settings()  # threads and memory_limit
    if work is None:
        return duckdb.connect(config=machine)
    return duckdb.connect(config={"temp_directory": str(work / "duckdb-spill"), **machine})


def canonical_connection(
    validated: ValidatedExtract, extract_id: str, work: Path | None = None
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB holding the validated canonical tables, ready for the engine."""
    con = scratch_connection(work)
    con.execute("SET python_enable_replacements = false")
    for table in TABLE_ORDER:
        frame = validated.tables[table].with_columns(extract_id=pl.lit(extract_id))
        con.register("incoming", frame.to_arrow())
        _insert_canonical(con, table, "incoming")
        con.unregister("incoming")
    con.execute(RESULT_TABLES_DDL)
    return con


def saved_canonical_connection(
    validated_dir: Path, extract_id: str, work: Path | None = None
) -> duckdb.DuckDBPyConnection:
    """``canonical_connection`` of a saved ValidatedExtract, read by DuckDB from its Parquet
    files: no polars copy of the tables is held beside DuckDB's (half the audit step's memory)."""
    con = scratch_connection(work)
    con.execute("SET python_enable_replacements = false")
    for table, path in ValidatedExtract.table_files(validated_dir).items():
        rows = "(SELECT *, $extract_id::VARCHAR AS extract_id FROM read_parquet($path))"
        _insert_canonical(con, table, rows, {"extract_id": extract_id, "path": str(path)})
    con.execute(RESULT_TABLES_DDL)
    return con


def _insert_canonical(
    con: duckdb.DuckDBPyConnection, table: str, source: str, params: dict | None = None
) -> None:
    """Create the canonical table and fill it from ``source``, in the engine's scan order."""
    con.execute(canonical_table_ddl(table))
    order = f" ORDER BY {SCAN_ORDER[table]}" if table in SCAN_ORDER else ""
    con.execute(canonical_insert_sql(table, f"(SELECT * FROM {source}{order})"), params)


def audit_step(work: Path, warehouse_path: Path | None = None) -> int:
    """Judge every case of every measure in effect; then judge again the earlier months'
    pending cases that the warehouse holds (see audits/rejudge.py). Returns this month's cases."""
    plan = RunPlan.load(work)
    results = work / "results"
    results.mkdir(parents=True, exist_ok=True)
    catalogue = plan.catalogue
    with saved_canonical_connection(work / "validated", plan.extract_id, work) as con:
        ran = run_measures(con, catalogue, plan.audit_period, plan.ruleset, plan.run_id)
        (cases,) = con.execute("SELECT count(*) FROM case_results").fetchall()[0]
        earlier = warehouse.earlier_pending_cases(warehouse_path, plan.period)
        rejudged = []
        if earlier is not None:
            con.register("earlier_cases", earlier.to_arrow())
            rejudged, reran = rejudge_pending(
                con,
                catalogue,
                "earlier_cases",
                plan.timezone,
                datetime.fromisoformat(plan.coverage_end),
                plan.run_id,
                plan.coverage_start_instant,
            )
            ran += reran
            con.execute("INSERT INTO case_results BY NAME SELECT * FROM rejudge_case_results")
            _copy(con, "rejudged_cases", results / "rejudged_cases.parquet")
        _rejudge_runs(plan, rejudged).write_parquet(results / "rejudge_runs.parquet")
        measure_frame(ran).write_parquet(results / "measures.parquet")
        _copy(con, "case_results", results / "case_results.parquet")
        return cases


def measure_frame(ran: list[MeasureRun]) -> pl.DataFrame:
    """The `measures` rows of what ran (typed, even when nothing was in effect)."""
    schema = {
        "run_id": pl.String,
        "period": pl.String,
        "ruleset": pl.String,
        "measure_id": pl.String,
        "measure_version": pl.String,
        "title": pl.String,
        "unit": pl.String,
        "measure_type": pl.String,
        "source": pl.String,
        "reference_hours": pl.Float64,
        "window_hours": pl.Float64,
        "changes": pl.String,
        "components": pl.List(pl.String),
        "also_report": pl.List(pl.String),
        "target": pl.Float64,
        "target_source": pl.String,
        "definition": pl.String,
        "status": pl.String,
        "status_reason": pl.String,
        "at_any_time": pl.List(pl.String),
    }
    return pl.DataFrame([asdict(m) for m in ran], schema=schema)


def measure_status_lines(work: Path) -> list[str]:
    """One line per measure of this month's run that was not judged, or whose look-back could
    not be checked: 'LN-07 not computable for this period: needs data from …'."""
    plan = RunPlan.load(work)
    measures = pl.read_parquet(work / "results" / "measures.parquet")
    noted = measures.filter(
        (pl.col("run_id") == plan.run_id) & pl.col("status_reason").is_not_null()
    ).sort("measure_id")
    return [f"{m} {reason}" for m, reason in noted.select("measure_id", "status_reason").rows()]


def _copy(con: duckdb.DuckDBPyConnection, table: str, path: Path) -> None:
    con.execute(f"COPY {table} TO '{path}' (FORMAT parquet)")


def _rejudge_runs(plan: RunPlan, rejudged: list) -> pl.DataFrame:
    """`runs` rows for the earlier months judged again: succeeded, on this run's extract."""
    now = datetime.now(UTC)
    return pl.DataFrame(
        {
            "run_id": [r.run_id for r in rejudged],
            "period": [r.period for r in rejudged],
            "ruleset": [r.ruleset for r in rejudged],
            "status": ["succeeded"] * len(rejudged),
            "started_at": [datetime.fromisoformat(plan.started_at)] * len(rejudged),
            "finished_at": [now] * len(rejudged),
            "extract_id": [plan.extract_id] * len(rejudged),
            "input_digest": [plan.input_digest] * len(rejudged),
            "code_version": [plan.code_version] * len(rejudged),
            "timezone": [plan.timezone] * len(rejudged),
            "coverage_end": [datetime.fromisoformat(plan.coverage_end)] * len(rejudged),
            "coverage_start": [plan.audit_period.coverage_start] * len(rejudged),
            "kind": ["rejudge"] * len(rejudged),
            "parent_run_id": [r.parent_run_id for r in rejudged],
            "triggered_by": [plan.run_id] * len(rejudged),
        },
        schema_overrides={
            "started_at": pl.Datetime("us", "UTC"),
            "finished_at": pl.Datetime("us", "UTC"),
            "coverage_end": pl.Datetime("us", "UTC"),
            "coverage_start": pl.Datetime("us", "UTC"),
        },
    )


def summarise_step(work: Path) -> pl.DataFrame:
    """Rates with Wilson intervals per measure, overall and by site and setting; component
    rates; and time-to-event figures. One set of each per run (this month's and any rejudged)."""
    results = work / "results"
    with scratch_connection(work) as con:
        for name in ("case_results", "measures"):
            con.execute(
                f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{results / name}.parquet')"
            )
        summary = con.sql(summarise_sql("case_results", "measures")).pl()
        con.sql(component_summary_sql("case_results", "measures")).pl().write_parquet(
            results / "component_summary.parquet"
        )
        con.sql(timing_summary_sql("case_results", "measures")).pl().write_parquet(
            results / "timing_summary.parquet"
        )
    summary.write_parquet(results / "measure_summary.parquet")
    return summary


def publish_step(
    work: Path, warehouse_path: Path, before_commit: Callable[[], None] | None = None
) -> None:
    """Everything the run produced lands in the warehouse in one transaction."""
    plan = RunPlan.load(work)
    validated = ValidatedExtract.load(work / "validated", tables=False)
    results = work / "results"
    outputs = warehouse.RunOutputs(
        tables=ValidatedExtract.table_files(work / "validated"),
        quarantine=validated.quarantine,
        data_quality=validated.data_quality,
        load_counts=validated.load_counts,
        measures=pl.read_parquet(results / "measures.parquet"),
        case_results=pl.read_parquet(results / "case_results.parquet"),
        measure_summary=pl.read_parquet(results / "measure_summary.parquet"),
        component_summary=pl.read_parquet(results / "component_summary.parquet"),
        timing_summary=pl.read_parquet(results / "timing_summary.parquet"),
        rejudged_cases=_optional(results / "rejudged_cases.parquet"),
        rejudge_runs=pl.read_parquet(results / "rejudge_runs.parquet"),
    )
    coverage_end = datetime.fromisoformat(plan.coverage_end)
    warehouse.publish_run(
        warehouse_path, plan.run_id, plan.extract_id, coverage_end, outputs, before_commit
    )


def rejudged_summary(work: Path) -> str:
    """'2026-09 LN-01 pending -> met: 2; …' for the run log (empty when nothing changed)."""
    path = work / "results" / "rejudged_cases.parquet"
    if not path.exists():
        return ""
    counts = (
        pl.read_parquet(path)
        .group_by("period", "measure_id", "outcome")
        .len()
        .sort("period", "measure_id", "outcome")
    )
    return "; ".join(f"{p} {m} pending -> {o}: {n}" for p, m, o, n in counts.iter_rows())


def _optional(path: Path) -> pl.DataFrame | None:
    return pl.read_parquet(path) if path.exists() else None


def report_step(
    warehouse_path: Path, period: str, out_dir: Path, suppress_below: int | None = None
) -> tuple[Path, str]:
    """Render the period's HTML report from the warehouse; also return a Markdown summary.
    ``suppress_below`` N hides strata of 1 to N-1 cases in both (off when None)."""
    parse_period(period)  # the report's name comes from it: a bad one fails before any mkdir
    out_dir.mkdir(parents=True, exist_ok=True)
    with warehouse.connect(warehouse_path, read_only=True) as con:
        return (
            render_report(con, period, out_dir, suppress_below=suppress_below),
            render_markdown_summary(con, period, suppress_below=suppress_below),
        )
