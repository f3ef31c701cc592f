"""The ``chartaudit`` command line (warehouse-contract.md). Exit 0 on success; otherwise one
line on standard error and a non-zero status."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from chartaudit.audits.engine import DEFAULT_RULESET, Catalogue, UnknownRuleset
from chartaudit.audits.measure import Group, Leaf, MeasureError, MinAge
from chartaudit.audits.period import PeriodError, parse_period
from chartaudit.audits.valuesets import ValueSetError
from chartaudit.flows import steps
from chartaudit.reports.render import ReportError
from chartaudit.sample_data import DEMO_EXTRACT
from chartaudit.sample_data.generator import generate_extract
from chartaudit.schemas.errors import ExtractRejected
from chartaudit.schemas.layout import check_extract
from chartaudit.schemas.validation import load_extract
from chartaudit.storage.warehouse import DEFAULT_WAREHOUSE, WarehouseBusy

app = typer.Typer(
    help="Audit leg-numbness care in a de-identified encounter extract against guideline measures.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
measures_app = typer.Typer(help="The measure catalogue.", invoke_without_command=True)
app.add_typer(measures_app, name="measures")
out = Console()
err = Console(stderr=True, highlight=False, soft_wrap=True)

# Failures a user can act on: shown as one line, exit status 1.
EXPECTED_ERRORS = (
    ExtractRejected,
    steps.RunError,
    WarehouseBusy,
    UnknownRuleset,
    PeriodError,
    ReportError,
    MeasureError,
    ValueSetError,
    FileNotFoundError,
)

WarehouseOption = Annotated[Path, typer.Option("--warehouse", help="DuckDB file.")]
OutOption = Annotated[Path, typer.Option("--out", help="Folder for the HTML report.")]
PeriodOption = Annotated[str, typer.Option("--period", help="Audit month, YYYY-MM.")]
DEFAULT_OUT = Path("reports/out")


def _guarded(action: Callable[[], None]) -> None:
    try:
        action()
    except EXPECTED_ERRORS as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(1) from None
    except Exception as exc:  # a bug or an environment fault: still one line, distinct status
        err.print(f"error: unexpected {type(exc).__name__}: {exc}", markup=False)
        raise typer.Exit(2) from None


def _preflight(extract_dir: Path, period: str | None, ruleset: str) -> None:
    """The checks that need no data: a bad argument or a rejected extract fails in a second,
    before Prefect starts its temporary server."""
    if period is not None:
        parse_period(period)
    Catalogue.load().require_ruleset(ruleset)
    check_extract(extract_dir)


def _run_flow(
    extract_dir: Path,
    period: str | None,
    warehouse: Path,
    out_dir: Path,
    ruleset: str = DEFAULT_RULESET,
    **kw,
) -> None:
    _preflight(extract_dir, period, ruleset)
    from chartaudit.flows.monthly_audit import monthly_audit  # Prefect loads only when needed

    outcome = monthly_audit(
        str(extract_dir), period, str(warehouse), str(out_dir), ruleset=ruleset, **kw
    )
    out.print(
        f"[bold]period {outcome.period}[/]: {outcome.cases} cases judged (run {outcome.run_id})"
    )
    out.print(f"warehouse: {Path(outcome.warehouse).resolve()}")
    out.print(f"report:    {Path(outcome.report).resolve()}")


@app.command()
def run(
    extract_dir: Annotated[Path, typer.Argument(help="Extract folder (CSV/Parquet + manifest).")],
    period: PeriodOption,
    warehouse: WarehouseOption = DEFAULT_WAREHOUSE,
    out_dir: OutOption = DEFAULT_OUT,
    ruleset: Annotated[str, typer.Option(help="Rule set to judge by.")] = DEFAULT_RULESET,
    max_quarantine_share: Annotated[
        float, typer.Option(help="Fail when a table has a larger quarantined share.")
    ] = steps.DEFAULT_MAX_QUARANTINE_SHARE,
) -> None:
    """Load, validate and audit one month of an extract; write the warehouse and the report."""
    _guarded(
        lambda: _run_flow(
            extract_dir,
            period,
            warehouse,
            out_dir,
            ruleset=ruleset,
            max_quarantine_share=max_quarantine_share,
        )
    )


@app.command()
def validate(
    extract_dir: Annotated[Path, typer.Argument(help="Extract folder to check.")],
) -> None:
    """Check an extract against the contract; writes nothing to the warehouse."""

    def check() -> None:
        validated = load_extract(extract_dir)
        table = Table(title=f"{validated.manifest.extract_id} ({extract_dir})")
        for column in ("table", "file", "input rows", "loaded", "quarantined"):
            table.add_column(column, justify="left" if column in ("table", "file") else "right")
        for row in validated.load_counts.iter_rows():
            table.add_row(*(str(v) for v in row))
        out.print(table)
        quarantine = validated.quarantine
        if quarantine.height:
            top = (
                quarantine.group_by("table_name", "column_name", "rule")
                .len()
                .sort("len", descending=True)
            )
            rules = Table(title="Quarantined rows by rule")
            for column in ("table", "column", "rule", "rows"):
                rules.add_column(column)
            for row in top.head(15).iter_rows():
                rules.add_row(*(str(v) for v in row))
            out.print(rules)
        for warning in validated.warnings:
            out.print(f"[yellow]warning:[/] {warning}")

    _guarded(check)


@app.command()
def report(
    period: PeriodOption,
    warehouse: WarehouseOption = DEFAULT_WAREHOUSE,
    out_dir: OutOption = DEFAULT_OUT,
) -> None:
    """Render the HTML report of a period already audited into the warehouse."""

    def render() -> None:
        if not warehouse.exists():
            raise FileNotFoundError(f"no warehouse at {warehouse}; run `chartaudit run` first")
        path, _ = steps.report_step(warehouse, period, out_dir)
        out.print(f"report: {path.resolve()}")

    _guarded(render)


@measures_app.callback()
def measures(ctx: typer.Context) -> None:
    """List the measures (the default) or show one."""
    if ctx.invoked_subcommand is None:
        _guarded(_list_measures)


@measures_app.command("list")
def measures_list() -> None:
    """One line per measure."""
    _guarded(_list_measures)


def _list_measures() -> None:
    table = Table(title="Measures")
    for column in ("id", "title", "unit", "type", "versions (rule sets)"):
        table.add_column(column)
    for m in Catalogue.load().measures:
        versions = "; ".join(f"{v.version} ({', '.join(v.rulesets)})" for v in m.versions)
        table.add_row(m.id, m.title, m.unit, m.type, versions)
    out.print(table)


@measures_app.command("show")
def measures_show(measure_id: Annotated[str, typer.Argument(help="e.g. LN-01")]) -> None:
    """A measure's populations, value sets and source statement."""

    def show() -> None:
        catalogue = Catalogue.load()
        try:
            measure = catalogue.measure(measure_id)
        except KeyError:
            known = ", ".join(m.id for m in catalogue.measures)
            raise MeasureError(f"no measure {measure_id!r}; known: {known}") from None
        out.print(f"[bold]{measure.id}[/] {measure.title}")
        out.print(f"unit: {measure.unit}   type: {measure.type}   file: {measure.path}")
        out.print(f"source: {measure.source}", markup=False)
        out.print(f"index ({measure.index.trigger}):", markup=False)
        _print_criterion(measure.index.criterion, 1)
        for exclusion in measure.exclusions:
            out.print(f"exclusion: {exclusion.reason}", markup=False)
            _print_criterion(exclusion.criterion, 1)
        out.print(f"numerator: {measure.numerator.label}", markup=False)
        _print_criterion(measure.numerator.criterion, 1)
        for v in measure.versions:
            out.print(f"version {v.version}: {', '.join(v.rulesets)} from {v.effective_from}")

    _guarded(show)


def _print_criterion(criterion, depth: int) -> None:
    pad = "  " * depth
    if criterion is None:
        return
    if isinstance(criterion, MinAge):
        out.print(f"{pad}age >= {criterion.years}", markup=False)
    elif isinstance(criterion, Group):
        out.print(f"{pad}{criterion.kind.replace('_', ' ')}:", markup=False)
        for child in criterion.children:
            _print_criterion(child, depth + 1)
    elif isinstance(criterion, Leaf):
        parts = [criterion.table]
        if criterion.value_set:
            parts.append(f"in {criterion.value_set}")
        parts += [f"{c} in {list(v)}" for c, v in criterion.where]
        if criterion.scope == "index_encounter":
            parts.append("in the index encounter")
        if criterion.window:
            w = criterion.window
            edge = lambda b: "open" if b is None else (b.anchor or f"{b.minutes / 60:+g} h")  # noqa: E731
            parts.append(f"{criterion.time or 'time'} in [{edge(w.start)}, {edge(w.end)}]")
        out.print(f"{pad}{' · '.join(parts)}", markup=False)


@app.command()
def generate(
    out_dir: Annotated[Path, typer.Argument(help="Folder to write the synthetic extract to.")],
    patients: Annotated[int, typer.Option(help="Number of patients.")] = 1500,
    months: Annotated[int, typer.Option(help="Months of coverage.")] = 13,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same bytes).")] = 7,
    end_month: Annotated[str, typer.Option(help="Last month of coverage, YYYY-MM.")] = "2026-10",
    fmt: Annotated[str, typer.Option("--format", help="csv or parquet.")] = "csv",
) -> None:
    """Write a synthetic extract with an answer key (the outcome every case must get)."""

    def make() -> None:
        result = generate_extract(
            out_dir, patients=patients, months=months, seed=seed, end_month=end_month, fmt=fmt
        )
        out.print(f"synthetic extract written to {out_dir.resolve()}")
        out.print(result)

    _guarded(make)


@app.command()
def demo(
    warehouse: WarehouseOption = DEFAULT_WAREHOUSE,
    out_dir: OutOption = DEFAULT_OUT,
) -> None:
    """Audit the bundled sample extract's last complete month (the README's first command)."""
    out.print(f"auditing the bundled sample extract {DEMO_EXTRACT}")
    _guarded(lambda: _run_flow(DEMO_EXTRACT, None, warehouse, out_dir))
