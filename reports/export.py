"""`chartaudit export`: one period's results as files for people outside the warehouse.

The folder ``<out>/chartaudit-YYYY-MM-export/`` holds, for the period's newest succeeded run:

- ``<measure>-not-met.csv`` for every measure that ran: its not-met cases for chart review
  (reports/cases.py, the rows the report's drill-down shows), a header even when there are none;
- ``case_results.parquet`` and ``measure_summary.parquet``: the run's rows, types kept, for
  analysts;
- ``README.txt``: what the files are, the run and whether small strata were suppressed.

The folder is built beside its final name and renamed into place, so a reader sees the old export
or the new one, never half of one. Spreadsheets run a cell that starts with ``=`` and its like as a
formula, so every CSV text cell that could start one begins with a ``'`` instead (``neutralise``).
With ``suppress_below`` set, the shared rule of reports/suppression.py hides small strata in the
summary and drops their cases from the CSVs and case_results.parquet.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import textwrap
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import duckdb
import polars as pl

from chartaudit.audits.period import parse_period
from chartaudit.reports.cases import not_met_cases
from chartaudit.reports.render import ReportError
from chartaudit.reports.suppression import (
    drop_suppressed_cases,
    suppress_summary,
    suppressed_strata,
)

CASE_RESULTS_FILE = "case_results.parquet"
SUMMARY_FILE = "measure_summary.parquet"
README_FILE = "README.txt"
NOT_MET_SUFFIX = "-not-met.csv"

# OWASP "CSV Injection": a cell must not begin with = + - @, tab, carriage return or line feed,
# nor reach one past leading spaces or quotes (some spreadsheets trim them before deciding). The
# full-width forms count too: spreadsheets read them as the ASCII ones.
# One pattern for polars (Rust regex) and Python's re: the full-width characters are literal.
FORMULA_START = "^(?:[\t\r\n]|[\\s\"']*[=+\\-@\uff1d\uff0b\uff0d\uff20])"
# Files are named after measure ids; an id that is not a plain name would leave the folder.
_MEASURE_FILE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
OWNER_ONLY_FILE = 0o600


@dataclass(frozen=True)
class ExportRun:
    """The run an export is of (a row of `latest_runs`)."""

    run_id: str
    period: str
    ruleset: str
    extract_id: str | None
    finished_at: datetime | None
    timezone: str


def export_folder(out_dir: Path, period: str) -> Path:
    """``out_dir/chartaudit-YYYY-MM-export``; a period that is not a month (``../x``) raises
    PeriodError before anything is read or written."""
    parse_period(period)
    return Path(out_dir) / f"chartaudit-{period}-export"


def neutralise(column: str) -> pl.Expr:
    """The text column with a ``'`` before every value a spreadsheet would run as a formula
    (OWASP's advice: the quote makes the cell text, and shows what the value was)."""
    text = pl.col(column).cast(pl.String)
    return pl.when(text.str.contains(FORMULA_START)).then("'" + text).otherwise(text).alias(column)


def _neutralised_name(name: str) -> str:
    """A header cell, by the same rule (the names are ours, but the rule is for every cell)."""
    return "'" + name if re.match(FORMULA_START, name) else name


def csv_safe(frame: pl.DataFrame, zone: str) -> pl.DataFrame:
    """``frame`` ready for a spreadsheet: times as ISO text with their offset in ``zone`` (a time
    without a zone is taken as UTC), numbers left numbers (docs/decisions.md), and every other
    cell, header included, text and neutralised."""
    schema = frame.schema
    times = [c for c, t in schema.items() if isinstance(t, pl.Datetime)]
    frame = frame.with_columns(
        _in_zone(c, schema[c].time_zone, zone).dt.strftime("%Y-%m-%dT%H:%M:%S%:z") for c in times
    )
    text = [c for c, t in frame.schema.items() if not t.is_numeric()]
    frame = frame.with_columns(neutralise(c) for c in text)
    return frame.rename({c: _neutralised_name(c) for c in frame.columns})


def _in_zone(column: str, stored_zone: str | None, zone: str) -> pl.Expr:
    time = pl.col(column)
    if stored_zone is None:
        time = time.dt.replace_time_zone("UTC")
    return time.dt.convert_time_zone(zone)


def latest_run(con: duckdb.DuckDBPyConnection, period: str, warehouse_name: str) -> ExportRun:
    """The period's newest succeeded run (the CSV and the FHIR export are of it)."""
    try:
        rows = con.execute(
            "SELECT run_id, period, ruleset, extract_id, finished_at, timezone"
            " FROM latest_runs WHERE period = $period",
            {"period": period},
        ).fetchall()
    except duckdb.CatalogException as exc:
        raise ReportError(
            f"{warehouse_name} has no chartaudit results; run chartaudit run first"
        ) from exc
    if not rows:
        raise ReportError(
            f"no succeeded run for period {period} in {warehouse_name}; run chartaudit run first"
        )
    run_id, period, ruleset, extract_id, finished_at, zone = rows[0]
    return ExportRun(run_id, period, ruleset, extract_id, finished_at, _known_zone(zone))


def _known_zone(zone: str | None) -> str:
    """The run's time zone, or UTC when it is missing or unknown here."""
    try:
        ZoneInfo(zone or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return "UTC"
    return zone or "UTC"


def _rows(con: duckdb.DuckDBPyConnection, view: str, run_id: str, order: str) -> pl.DataFrame:
    # The view name is one of ours; only the run id comes from the warehouse.
    return con.sql(
        f"SELECT * FROM {view} WHERE run_id = $run_id ORDER BY {order}", params={"run_id": run_id}
    ).pl()


@dataclass(frozen=True)
class ExportFrames:
    """What goes into the files, suppression applied."""

    summary: pl.DataFrame
    case_results: pl.DataFrame
    not_met: pl.DataFrame
    measure_ids: list[str]
    suppressed: pl.DataFrame  # the hidden strata (suppressed_strata)


def export_frames(
    con: duckdb.DuckDBPyConnection, run: ExportRun, suppress_below: int | None
) -> ExportFrames:
    """The run's summary (hidden values null, flag column), its cases and its not-met cases
    without those of suppressed strata."""
    summary = suppress_summary(
        _rows(con, "latest_measure_summary", run.run_id, "measure_id, stratum_kind, stratum"),
        suppress_below,
    )
    strata = suppressed_strata(summary)
    cases = _rows(con, "latest_case_results", run.run_id, "measure_id, index_time, patient_id")
    measure_ids = summary["measure_id"].unique().sort().to_list()
    for measure_id in measure_ids:
        if not _MEASURE_FILE_ID.fullmatch(measure_id):
            raise ReportError(f"measure id {measure_id!r} cannot name an export file")
    return ExportFrames(
        summary=summary,
        case_results=drop_suppressed_cases(cases, strata),
        not_met=drop_suppressed_cases(not_met_cases(con, run.period), strata),
        measure_ids=measure_ids,
        suppressed=strata,
    )


def write_export(
    con: duckdb.DuckDBPyConnection,
    period: str,
    out_dir: Path,
    *,
    suppress_below: int | None = None,
    warehouse_name: str = "the warehouse",
    generated_at: datetime | None = None,
) -> Path:
    """Write the period's export folder (replacing an older one) and return its path.

    A bad period or a period without a succeeded run raises before anything is written."""
    target = export_folder(out_dir, period)
    run = latest_run(con, period, warehouse_name)
    frames = export_frames(con, run, suppress_below)
    readme = readme_text(run, frames, suppress_below, generated_at or datetime.now(UTC))

    target.parent.mkdir(parents=True, exist_ok=True)
    # mkdtemp's folder is 0700: nobody else sees the files even before they are renamed in.
    building = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        _write_files(building, frames, run, readme)
        swap_in(building, target)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return target


def _write_files(folder: Path, frames: ExportFrames, run: ExportRun, readme: str) -> None:
    for measure_id in frames.measure_ids:
        cases = frames.not_met.filter(pl.col("measure_id") == measure_id)
        csv_safe(cases, run.timezone).write_csv(
            folder / f"{measure_id}{NOT_MET_SUFFIX}", quote_style="non_numeric"
        )
    frames.case_results.write_parquet(folder / CASE_RESULTS_FILE)
    frames.summary.write_parquet(folder / SUMMARY_FILE)
    (folder / README_FILE).write_text(readme, encoding="utf-8")
    for file in folder.iterdir():
        file.chmod(OWNER_ONLY_FILE)


def swap_in(building: Path, target: Path) -> None:
    """Rename the new folder to ``target``; an older export there is moved aside first and then
    removed (a reader in between finds no folder, never a mix of the two)."""
    if not (target.is_symlink() or target.exists()):
        building.rename(target)
        return
    aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
    target.rename(aside / "old")  # a symlink moves as a link; what it points at stays
    building.rename(target)
    shutil.rmtree(aside)


def readme_text(
    run: ExportRun, frames: ExportFrames, suppress_below: int | None, generated_at: datetime
) -> str:
    """README.txt: the files, the run, and whether (and how) small strata were hidden."""
    finished = run.finished_at.astimezone(UTC).isoformat() if run.finished_at else "unknown"
    ids = frames.measure_ids
    csv_files = f"{ids[0]}{NOT_MET_SUFFIX} … {ids[-1]}{NOT_MET_SUFFIX}" if ids else "(no CSV)"
    header = {
        "Period": run.period,
        "Run": f"{run.run_id} (finished {finished}, extract {run.extract_id or 'unknown'})",
        "Rule set": run.ruleset,
        "Generated": generated_at.astimezone(UTC).isoformat(timespec="seconds"),
        "Suppression": _suppression_line(frames, suppress_below),
    }
    files = {
        csv_files: (
            f"one per measure ({len(frames.measure_ids)}), its not-met cases for chart review:"
            f" pseudonymous ids, index time in {run.timezone} with its UTC offset, site,"
            " department, setting (an empty cell: not recorded in the extract; a value is its"
            " text, whatever it says), reason, evidence in words. A file with only a header has no"
            " case to show. Text cells a spreadsheet would run as a formula (starting with"
            " = + - @, a tab or a line break, also after spaces or quotes) begin with ' so they"
            " open as text."
        ),
        CASE_RESULTS_FILE: (
            "every case of the run with its outcome and evidence (the warehouse's case_results"
            " rows), for analysts; times are instants with their time zone (UTC)."
        ),
        SUMMARY_FILE: (
            "per measure and stratum (all, site, setting): denominator, met, not met, excluded,"
            " pending, rate and 95 % Wilson interval; a site or setting row with an empty (null)"
            " stratum counts the cases with none recorded, apart from any site of any name;"
            " `suppressed` says whether the row's values were hidden; `status` not_computable"
            " (with `status_reason`) marks a measure not judged this month because its"
            " look-back reaches before the extract."
        ),
        README_FILE: "this file.",
    }
    lines = ["chartaudit export", ""]
    for name, text in header.items():
        lines += textwrap.wrap(f"{name + ':':<13}{text}", 96, subsequent_indent=" " * 13)
    lines += ["", "Files"]
    for name, text in files.items():
        lines += textwrap.wrap(f"- {name}: {text}", 96, subsequent_indent="  ")
    return "\n".join(lines) + "\n"


def _suppression_line(frames: ExportFrames, suppress_below: int | None) -> str:
    if suppress_below is None:
        return "not applied: every count and every case of the run is included."
    hidden = frames.suppressed
    withheld = hidden.filter(pl.col("stratum_kind") == "all")["measure_id"].sort().to_list()
    line = (
        f"applied, N = {suppress_below}: strata with a denominator of 1 to {suppress_below - 1}"
        " (and, where one alone would be hidden, the next-smallest of its kind) have their counts,"
        " rate and interval left empty in measure_summary.parquet, and their cases are left out"
        f" of the CSV files and case_results.parquet. {hidden.height} strata hidden."
    )
    if withheld:
        line += f" Every case of {', '.join(withheld)} is left out (its total is under N)."
    return line
