"""The ``chartaudit`` command line (warehouse-contract.md). Exit 0 on success; otherwise one
line on standard error: status 1 for a known condition, 2 for an unexpected fault, whose
traceback goes to the run log on standard output (flows/conditions.py)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import polars as pl
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.syntax import Syntax
from rich.table import Table

from chartaudit.audits.describe import measure_lines
from chartaudit.audits.engine import DEFAULT_RULESET, Catalogue
from chartaudit.audits.lookback import first_computable_month
from chartaudit.audits.period import Coverage, parse_period
from chartaudit.flows import steps, supervisor
from chartaudit.flows.conditions import guarded
from chartaudit.flows.deck_report import (
    DeckFailures,
    compiled_sql,
    deck_runs,
    print_deck_run,
    print_unreached,
)
from chartaudit.flows.files import OWNER_ONLY_UMASK
from chartaudit.flows.months import complete_months, covered_range, month_range
from chartaudit.flows.settings import measure_folders, thresholds
from chartaudit.flows.sourcing import extract_in_contract_form
from chartaudit.flows.thresholds import breaches
from chartaudit.reports.export import export_folder, write_export
from chartaudit.reports.render import ReportError
from chartaudit.sample_data import DEMO_EXTRACT
from chartaudit.sample_data.generator import generate_extract
from chartaudit.schemas.layout import check_extract
from chartaudit.schemas.phi_scan import IdentifiersFound, scan_extract
from chartaudit.schemas.validation import load_extract
from chartaudit.sources.provenance import read_provenance
from chartaudit.storage import warehouse as storage_warehouse
from chartaudit.storage.warehouse import DEFAULT_WAREHOUSE, check_can_start_run

app = typer.Typer(
    help="Audit leg-numbness care in a de-identified encounter extract against guideline measures.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _owner_only_files() -> None:
    # Whatever the command writes (warehouse, reports, Prefect's own files) is the owner's only,
    # whatever umask the shell had; see flows/files.py.
    os.umask(OWNER_ONLY_UMASK)


measures_app = typer.Typer(help="The measure catalogue.", invoke_without_command=True)
app.add_typer(measures_app, name="measures")
out = Console()

WarehouseOption = Annotated[Path, typer.Option("--warehouse", help="DuckDB file.")]
OutOption = Annotated[Path, typer.Option("--out", help="Folder for the HTML report.")]
PeriodOption = Annotated[str, typer.Option("--period", help="Audit month, YYYY-MM.")]
SuppressOption = Annotated[
    int | None,
    typer.Option(
        "--suppress-below",
        min=1,
        help="Hide counts and rates of groups with fewer cases than this, and their cases"
        " (11 is the usual choice). Default: everything is shown.",
    ),
]
AllowPartialOption = Annotated[
    bool,
    typer.Option(
        "--allow-partial-month",
        help="Audit a month the extract covers only in part (its coverage starts or ends inside"
        " it); the run, the warehouse and the report mark it partial. Default: refused.",
    ),
]
DEFAULT_OUT = Path("reports/out")
MeasuresOption = Annotated[
    list[Path] | None,
    typer.Option(
        "--measures",
        help="An extra measure folder (measures/*.yaml, value_sets/*.csv, decks/*.yaml);"
        " repeat for more. Default: [measures] folders in chartaudit.toml.",
    ),
]


FormatOption = Annotated[
    str,
    typer.Option(
        "--format",
        help="The extract's format: contract (the extract contract's CSV/Parquet tables), omop"
        " (OMOP CDM v5.4 CSV/Parquet), synthea (Synthea CSV), fhir (FHIR R4 Bulk Data NDJSON),"
        " or auto (detected by file names; the run log says what it found).",
    ),
]


class ExportFormat(StrEnum):
    """What `chartaudit export` writes."""

    csv = "csv"
    fhir = "fhir"


def _guarded(action: Callable[[], int | None]) -> None:
    status = guarded(action)
    if status:
        raise typer.Exit(status)


def _check_measures(folders: list[Path], ruleset: str, period: str | None) -> None:
    """A malformed period or measure file, an unknown rule set, or a period in which no
    measure is in effect fails before anything starts."""
    catalogue = Catalogue.load(folders)
    catalogue.require_ruleset(ruleset)
    if period is not None:
        parse_period(period)
        catalogue.require_in_effect(ruleset, period)


def _preflight(
    extract_dir: Path,
    period: str | None,
    warehouse: Path,
    months: tuple[str, str] | None = None,
    allow_partial: bool = False,
) -> None:
    """The checks that need no data (after ``_check_measures``): a rejected extract, a period
    (or backfill ``months``, first and last) outside the coverage the manifest states, or a busy
    warehouse fails in a second, before Prefect starts its temporary server. Coverage the
    manifest leaves out is observed in the data, and checked by the flow's load step."""
    manifest = check_extract(extract_dir).manifest
    coverage = Coverage.of(manifest.coverage_start, manifest.coverage_end, manifest.timezone)
    if period is not None:
        coverage.check(period, allow_partial)
    if months is not None:
        covered_range(*months, coverage, allow_partial)
    check_can_start_run(warehouse)


def _run_flow(
    extract_dir: Path,
    period: str | None,
    warehouse: Path,
    out_dir: Path,
    ruleset: str = DEFAULT_RULESET,
    folders: list[Path] | None = None,
    flow: str = "monthly_audit",
    extract_format: str = "contract",
    **kw,
) -> int:
    """Check the arguments here, then run ``flow`` (a key of FLOWS) in a supervised worker
    process group (flows/supervisor.py), which prints the run log, the outcome or the error
    line."""
    folders = measure_folders(folders)
    thresholds(kw.get("max_quarantine_share"))  # a malformed [thresholds] fails here, too
    months = (kw["first"], kw["last"]) if flow == "backfill" else None
    allow_partial = kw.get("allow_partial_month", False)
    _check_measures(folders, ruleset, period)  # before a long adaptation
    with extract_in_contract_form(extract_dir, extract_format, out) as (contract, adapted):
        _preflight(contract, period, warehouse, months, allow_partial)
        job = {
            "flow": flow,
            "extract_dir": str(contract),
            **({} if period is None else {"period": period}),
            "warehouse_path": str(warehouse),
            "out_dir": str(out_dir),
            "ruleset": ruleset,
            "measure_folders": [str(f) for f in folders],
            "source_log": adapted.lines(),
            **kw,  # the flow's other parameters, as JSON
        }
        return supervisor.supervise(job)


def run_in_this_process(job: dict) -> int:
    """The worker's part: run the flow the job names (the monthly audit when it names none)
    with the job's other keys as arguments, print the outcome; return the exit status."""
    arguments = {k: v for k, v in job.items() if k != "flow"}
    run_flow = FLOWS[job.get("flow", "monthly_audit")]
    return guarded(lambda: run_flow(arguments))


def _run_monthly_audit(job: dict) -> None:
    from chartaudit.flows.monthly_audit import monthly_audit  # Prefect loads only when needed

    outcome = monthly_audit(**job)
    partial = " (a partial month)" if outcome.partial else ""
    out.print(
        f"[bold]period {outcome.period}[/]{partial}: {outcome.cases} cases judged"
        f" (run {outcome.run_id})"
    )
    out.print(f"warehouse: {Path(outcome.warehouse).resolve()}")
    out.print(f"report:    {Path(outcome.report).resolve()}")


def _run_backfill(job: dict) -> None:
    from chartaudit.flows.backfill import backfill  # Prefect loads only when needed

    backfill(**job)  # prints its summary table; raises BackfillIncomplete when a month failed


FLOWS: dict[str, Callable[[dict], None]] = {
    "monthly_audit": _run_monthly_audit,
    "backfill": _run_backfill,
}


@app.command()
def run(
    extract_dir: Annotated[Path, typer.Argument(help="Extract folder (CSV/Parquet + manifest).")],
    period: PeriodOption,
    warehouse: WarehouseOption = DEFAULT_WAREHOUSE,
    out_dir: OutOption = DEFAULT_OUT,
    ruleset: Annotated[str, typer.Option(help="Rule set to judge by.")] = DEFAULT_RULESET,
    max_quarantine_share: Annotated[
        float | None,
        typer.Option(
            help="Fail when any table has a larger quarantined share (overrides [thresholds]"
            " quarantine_share in chartaudit.toml, default 0.05)."
        ),
    ] = None,
    folders: MeasuresOption = None,
    suppress_below: SuppressOption = None,
    allow_partial_month: AllowPartialOption = False,
    extract_format: FormatOption = "auto",
    partitions: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Audit in N partitions of patients, as Prefect tasks on Dask (default: [scale]"
            " partitions in chartaudit.toml, else 1: one process).",
        ),
    ] = None,
    dask_address: Annotated[
        str | None,
        typer.Option(
            help="The Dask scheduler the partitions run on, e.g. tcp://scheduler:8786 (default:"
            " [scale] dask_address, else a local cluster started for the run).",
        ),
    ] = None,
) -> None:
    """Load, validate and audit one month of an extract; write the warehouse and the report.
    A month outside the extract's coverage is refused, and so is one it covers only in part
    unless --allow-partial-month is given."""
    spread = {"partitions": partitions, "dask_address": dask_address}
    _guarded(
        lambda: _run_flow(
            extract_dir,
            period,
            warehouse,
            out_dir,
            ruleset=ruleset,
            folders=folders,
            extract_format=extract_format,
            max_quarantine_share=max_quarantine_share,
            suppress_below=suppress_below,
            allow_partial_month=allow_partial_month,
            **{k: v for k, v in spread.items() if v is not None},  # else the settings'
        )
    )


def _phi_scan(extract_dir: Path) -> None:
    scan = scan_extract(extract_dir)
    for finding in scan.findings:
        out.print(finding.describe(), markup=False, highlight=False, soft_wrap=True)
    scanned = f"{len(scan.files)} file(s), {scan.rows} row(s)"
    if scan.clean:
        out.print(
            f"PHI scan of {extract_dir}: {scanned}: no identifier-like column or value",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        return
    raise IdentifiersFound(
        f"PHI scan of {extract_dir}: {len(scan.findings)} finding(s) in {scanned}: identifier-like"
        " columns or values (listed above, values masked); remove them from the export"
    )


@app.command()
def validate(
    extract_dir: Annotated[Path, typer.Argument(help="Extract folder to check.")],
    phi_scan: Annotated[
        bool,
        typer.Option(
            "--phi-scan",
            help="Only scan every CSV/Parquet file and the manifest for identifier-like column"
            " names and values (SSN, phone, e-mail, cued names); exit 1 when any is found.",
        ),
    ] = False,
    extract_format: FormatOption = "auto",
) -> None:
    """Check an extract against the contract; writes nothing to the warehouse. Lists the rows
    quarantined and loaded with warnings, and any data-quality limit a run would stop at."""
    if phi_scan:
        _guarded(lambda: _phi_scan(extract_dir))
        return

    def check() -> None:
        with extract_in_contract_form(extract_dir, extract_format, out) as (contract, _):
            validated = steps.with_source_lines(load_extract(contract), read_provenance(contract))
        table = Table(title=f"{validated.manifest.extract_id} ({extract_dir})")
        for column in ("table", "file", "input rows", "loaded", "quarantined", "with warnings"):
            table.add_column(column, justify="left" if column in ("table", "file") else "right")
        for row in validated.load_counts.iter_rows():
            table.add_row(*(str(v) for v in row))
        out.print(table)
        if validated.quarantine.height:
            out.print(_by_rule(validated.quarantine, "Quarantined rows by rule"))
        if validated.data_quality.height:
            title = "Data-quality warnings by rule (the rows loaded)"
            out.print(_by_rule(validated.data_quality, title))
        for warning in validated.warnings:
            out.print(f"[yellow]warning:[/] {warning}")
        for breach in breaches(validated, thresholds()):  # what would stop `chartaudit run`
            out.print(f"[red]over a limit:[/] {breach.message()}", soft_wrap=True)

    _guarded(check)


def _by_rule(findings: pl.DataFrame, title: str, top: int = 15) -> Table:
    """The most frequent (table, column, rule) groups, with the first line of each."""
    groups = (
        findings.group_by("table_name", "column_name", "rule")
        .agg(
            pl.len().alias("rows"),
            pl.format("{} line {}", pl.col("source_file"), pl.col("source_line"))
            .sort_by("source_line")
            .first()
            .alias("first"),
        )
        .sort(["rows", "table_name", "rule"], descending=[True, False, False])
    )
    table = Table(title=title)
    for column in ("table", "column", "rule", "rows", "first seen at"):
        table.add_column(column, justify="right" if column == "rows" else "left")
    for row in groups.head(top).iter_rows():
        table.add_row(*("(whole row)" if v is None else str(v) for v in row))
    return table


@app.command()
def report(
    period: PeriodOption,
    warehouse: WarehouseOption = DEFAULT_WAREHOUSE,
    out_dir: OutOption = DEFAULT_OUT,
    suppress_below: SuppressOption = None,
) -> None:
    """Render the HTML report of a period already audited into the warehouse."""

    def render() -> None:
        if not warehouse.exists():
            raise ReportError(f"no warehouse at {warehouse}; run `chartaudit run` first")
        path, _ = steps.report_step(warehouse, period, out_dir, suppress_below=suppress_below)
        out.print(f"report: {path.resolve()}")
        if suppress_below is not None:
            out.print(f"counts under {suppress_below} suppressed")

    _guarded(render)


@app.command()
def export(
    period: PeriodOption,
    warehouse: WarehouseOption = DEFAULT_WAREHOUSE,
    out_dir: Annotated[
        Path,
        typer.Option("--out", help="Folder the chartaudit-YYYY-MM-export (-fhir) folder goes in."),
    ] = DEFAULT_OUT,
    suppress_below: SuppressOption = None,
    export_format: Annotated[
        ExportFormat,
        typer.Option(
            "--format",
            help="csv: a CSV of not-met cases per measure and the run's rows as Parquet, in"
            " chartaudit-YYYY-MM-export; fhir: FHIR R4 MeasureReport and List resources (JSON),"
            " in chartaudit-YYYY-MM-fhir.",
        ),
    ] = ExportFormat.csv,
) -> None:
    """Write a period's not-met cases (a CSV per measure, for chart review) and its case_results
    and measure_summary (Parquet, for analysts) into one folder, replacing an older export; with
    --format fhir, its FHIR R4 MeasureReports (summary and not-met subject lists) instead."""

    def write() -> None:
        export_folder(out_dir, period)  # a bad period fails before the warehouse is opened
        if not warehouse.exists():
            raise ReportError(f"no warehouse at {warehouse}; run chartaudit run first")
        writer = write_export
        if export_format is ExportFormat.fhir:
            # Imported here: the FHIR models load only for the export that needs them.
            from chartaudit.reports.fhir_measure_report import write_fhir_export

            writer = write_fhir_export
        with storage_warehouse.connect(warehouse, read_only=True) as con:
            folder = writer(
                con, period, out_dir, suppress_below=suppress_below, warehouse_name=str(warehouse)
            )
        out.print(f"export: {folder.resolve()}", markup=False, highlight=False, soft_wrap=True)

    _guarded(write)


def _catalogue(folders: list[Path] | None) -> Catalogue:
    return Catalogue.load(measure_folders(folders))


@measures_app.callback()
def measures(ctx: typer.Context, folders: MeasuresOption = None) -> None:
    """List the measures (the default), show one, or run their test decks."""
    ctx.obj = folders
    if ctx.invoked_subcommand is None:
        _guarded(lambda: _list_measures(folders))


@measures_app.command("list")
def measures_list(ctx: typer.Context) -> None:
    """One line per measure."""
    _guarded(lambda: _list_measures(ctx.obj))


def _list_measures(folders: list[Path] | None) -> None:
    table = Table(title="Measures")
    for column in ("id", "title", "unit", "type", "versions (rule sets, from)"):
        table.add_column(column)
    for m in _catalogue(folders).measures:
        versions = "; ".join(
            f"{v.version} ({', '.join(v.rulesets)}, {v.effective_from})" for v in m.versions
        )
        table.add_row(m.id, m.title, m.unit, m.type, versions)
    out.print(table)


@measures_app.command("show")
def measures_show(
    ctx: typer.Context,
    measure_id: Annotated[str, typer.Argument(help="e.g. LN-01")],
    ruleset: Annotated[str, typer.Option(help="Rule set of the SQL shown.")] = DEFAULT_RULESET,
    period: Annotated[str, typer.Option(help="Audit month of the SQL shown.")] = "2026-10",
    timezone: Annotated[str, typer.Option(help="Time zone of the SQL shown.")] = "UTC",
) -> None:
    """A measure in words, what differs between the rule sets, and its compiled SQL."""

    def show() -> None:
        catalogue = _catalogue(ctx.obj)
        catalogue.require_ruleset(ruleset)
        measure = catalogue.measure(measure_id)
        for line in measure_lines(measure):
            out.print(line, markup=False, highlight=False, soft_wrap=True)
        sql = compiled_sql(catalogue, measure, ruleset, period, timezone)
        out.print(f"\nCompiled SQL ({ruleset}, {period}, {timezone}):", markup=False)
        out.print(Syntax(sql, "sql", word_wrap=True, theme="ansi_dark"))

    _guarded(show)


@measures_app.command("test")
def measures_test(
    ctx: typer.Context,
    measure_id: Annotated[str | None, typer.Argument(help="One measure; default all.")] = None,
) -> None:
    """Run the measures' test decks: each case, the criteria it exercised, and the criteria no
    case reaches. Exit 1 when a case gets another outcome than it expects."""

    def test() -> None:
        catalogue = _catalogue(ctx.obj)
        runs = deck_runs(catalogue, measure_id)
        for run in runs:
            print_deck_run(out, run)
        print_unreached(out, runs)
        failed = sum(not c.passed for run in runs for c in run.cases)
        total = sum(len(run.cases) for run in runs)
        cases = len({(run.deck.path, c.case.name) for run in runs for c in run.cases})
        out.print(
            f"\n{total - failed} of {total} deck case runs passed"
            f" ({cases} cases, each under each rule set of its deck)",
            markup=False,
            soft_wrap=True,
        )
        if failed:
            raise DeckFailures(f"{failed} of {total} deck case runs failed; see above")

    _guarded(test)


@app.command()
def generate(
    out_dir: Annotated[Path, typer.Argument(help="Folder to write the synthetic extract to.")],
    patients: Annotated[int, typer.Option(help="Number of patients.")] = 1500,
    months: Annotated[int, typer.Option(help="Months of coverage.")] = 13,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same bytes).")] = 7,
    end_month: Annotated[str, typer.Option(help="Last month of coverage, YYYY-MM.")] = "2026-10",
    fmt: Annotated[str, typer.Option("--format", help="csv or parquet.")] = "csv",
) -> None:
    """Write a synthetic extract with an answer key (the outcome every case must get), in
    batches of patients (bounded memory; a progress bar on a terminal)."""

    def make() -> None:
        with _batch_progress(patients) as progress:
            result = generate_extract(
                out_dir,
                patients=patients,
                months=months,
                seed=seed,
                end_month=end_month,
                fmt=fmt,
                progress=progress,
            )
        out.print(f"synthetic extract written to {out_dir.resolve()}", markup=False)
        rows = ", ".join(f"{table} {count:,}" for table, count in result.row_counts.items())
        out.print(f"rows: {rows}; expected in quarantine: {result.quarantine_rows:,}")
        cases = sum(
            n for per in result.case_counts.values() for m in per.values() for n in m.values()
        )
        out.print(f"answer key: {cases:,} cases ({result.answer_key.name})")

    _guarded(make)


@contextmanager
def _batch_progress(total: int) -> Iterator[Callable[[int, int], None] | None]:
    """A Rich progress bar of patients written, advanced per batch; None off a terminal (no bar
    in logs or captured output)."""
    if not out.is_terminal:
        yield None
        return
    with Progress(
        TextColumn("generating"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("patients"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=out,
    ) as bar:
        task = bar.add_task("generate", total=total)
        yield lambda done, _total: bar.update(task, completed=done)


@app.command()
def backfill(
    extract_dir: Annotated[Path, typer.Argument(help="Extract folder (CSV/Parquet + manifest).")],
    first: Annotated[str, typer.Option("--from", help="First month, YYYY-MM.")],
    last: Annotated[str, typer.Option("--to", help="Last month, YYYY-MM (included).")],
    warehouse: WarehouseOption = DEFAULT_WAREHOUSE,
    out_dir: OutOption = DEFAULT_OUT,
    ruleset: Annotated[str, typer.Option(help="Rule set to judge by.")] = DEFAULT_RULESET,
    max_quarantine_share: Annotated[
        float | None,
        typer.Option(help="As for `run`: the most of any table that may be quarantined."),
    ] = None,
    folders: MeasuresOption = None,
    redo: Annotated[
        bool, typer.Option("--redo", help="Audit every month again, also those that succeeded.")
    ] = False,
    suppress_below: SuppressOption = None,
    allow_partial_month: Annotated[
        bool,
        typer.Option(
            "--allow-partial-month",
            help="Also audit the range's first or last month when the extract covers it only"
            " in part; those runs are marked partial. Default: such a range is refused.",
        ),
    ] = False,
    extract_format: FormatOption = "auto",
) -> None:
    """Audit every month of a range, oldest first, one Prefect flow with a subflow per month.
    Months already audited successfully from this extract under this rule set are skipped; a
    failed month does not stop the others; exit 1 when any failed, naming them. A range
    reaching outside the extract's coverage is refused before anything starts."""

    def start() -> int:
        month_range(first, last)  # a bad range is refused before anything starts
        return _run_flow(
            extract_dir,
            None,
            warehouse,
            out_dir,
            ruleset=ruleset,
            folders=folders,
            flow="backfill",
            extract_format=extract_format,
            first=first,
            last=last,
            redo=redo,
            max_quarantine_share=max_quarantine_share,
            suppress_below=suppress_below,
            allow_partial_month=allow_partial_month,
        )

    _guarded(start)


def _first_computable(manifest, first: str, last: str) -> str:
    """The first month from ``first`` in which every measure is computable (else ``first``)."""
    months = month_range(first, last)
    found = first_computable_month(
        Catalogue.load(),
        DEFAULT_RULESET,
        months,
        manifest.timezone,
        manifest.coverage_start,
        manifest.coverage_end,
    )
    return found or first


@app.command()
def demo(
    warehouse: WarehouseOption = DEFAULT_WAREHOUSE,
    out_dir: OutOption = DEFAULT_OUT,
    suppress_below: SuppressOption = None,
) -> None:
    """Backfill the bundled sample extract (what `make demo` runs): every complete month in
    which every measure is computable (its look-back lies inside the extract); months a
    previous demo audited into the same warehouse are skipped."""

    def start() -> int:
        manifest = check_extract(DEMO_EXTRACT).manifest
        first, last = complete_months(
            manifest.coverage_start, manifest.coverage_end, manifest.timezone
        )
        # The extract's early months serve as the later months' look-back: auditing them
        # would only show "not computable" for most measures (audits/lookback.py).
        if manifest.coverage_start is not None:
            first = _first_computable(manifest, first, last)
        months = len(month_range(first, last))
        out.print(
            f"backfilling the bundled sample extract {DEMO_EXTRACT}: {first} to {last}, the"
            f" {months} complete months in which every measure's look-back lies inside it"
            f" (it starts {manifest.coverage_start}); months already audited into {warehouse}"
            " are skipped",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        return _run_flow(
            DEMO_EXTRACT,
            None,
            warehouse,
            out_dir,
            flow="backfill",
            first=first,
            last=last,
            suppress_below=suppress_below,
        )

    _guarded(start)
