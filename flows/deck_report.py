"""``chartaudit measures test`` and ``show``: run the test decks and print what they exercised."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from chartaudit.audits.compiler import MeasureCompiler
from chartaudit.audits.decks import (
    DeckRun,
    by_measure,
    read_deck,
    run_deck,
    unreached,
    untested_edges,
    unused_reasons,
)
from chartaudit.audits.engine import Catalogue
from chartaudit.audits.measure import Measure, MeasureError
from chartaudit.audits.period import AuditPeriod

SPOT_WORDS = {"on": "exactly on", "off": "one step (minute or day) past"}


class DeckFailures(RuntimeError):
    """At least one deck case got another outcome than it expects."""


def deck_runs(catalogue: Catalogue, measure_id: str | None = None) -> list[DeckRun]:
    """Every deck of the catalogue (or of one measure), under each of its rule sets."""
    wanted = catalogue.measure(measure_id).id if measure_id else None
    decks = [read_deck(path) for path in catalogue.deck_files()]
    decks = [d for d in decks if wanted is None or d.measure == wanted]
    if not decks:
        raise MeasureError(f"no test deck for {wanted or 'any measure'}")
    return [run_deck(deck, catalogue, ruleset) for deck in decks for ruleset in deck.rulesets]


def print_deck_run(console: Console, run: DeckRun) -> None:
    deck = run.deck
    labels = {path: label for _, path, label in run.criteria}
    title = (
        f"{deck.measure} {run.ruleset} (version {run.measure_version}) — {deck.path.name},"
        f" {deck.period}"
    )
    table = Table(title=escape(title), title_justify="left", show_lines=False)
    for column in ("case", "expected", "got", "", "criteria that held"):
        table.add_column(column)
    for case in run.cases:
        held = sorted({labels[path] for path in case.criteria if path in labels})
        table.add_row(
            escape(case.case.name),
            escape(", ".join(case.case.expect[run.ruleset]) or "no case"),
            escape(", ".join(case.outcomes) or "no case"),
            "[green]pass[/]" if case.passed else "[red]FAIL[/]",
            escape("; ".join(held)),
        )
    console.print(table)
    for case in run.cases:
        for problem in case.problems:
            console.print(f"  FAIL {case.case.name}: {problem}", markup=False, soft_wrap=True)


def print_unreached(console: Console, runs: list[DeckRun]) -> None:
    """Per measure and rule set, the criteria no deck case reaches, the window edges no deck
    case sits on or just past, and the reasons no deck case is excluded or fails for."""
    for (measure, ruleset), group in by_measure(runs).items():
        for part, path, label, side, spots in untested_edges(group):
            where = " and ".join(SPOT_WORDS[s] for s in spots)
            console.print(
                f"{measure} {ruleset}: no deck case has a row {where} the {side} of {part}"
                f" {path} ({label})",
                markup=False,
                soft_wrap=True,
            )
        for outcome, reason in unused_reasons(group):
            console.print(
                f"{measure} {ruleset}: no deck case is {outcome} because {reason}",
                markup=False,
                soft_wrap=True,
            )
        for part, path, label in unreached(group):
            console.print(
                f"{measure} {ruleset}: no deck case reaches {part} {path} ({label})",
                markup=False,
                soft_wrap=True,
            )


def compiled_sql(
    catalogue: Catalogue, measure: Measure, ruleset: str, period: str, timezone: str
) -> str:
    """The SQL the engine runs for this measure, rule set and month (coverage: the month)."""
    placeholder = AuditPeriod.of(period, timezone, datetime.now(UTC))
    audit = AuditPeriod.of(period, timezone, placeholder.end)
    version = measure.version_for(ruleset, audit.first_day)
    if version is None:
        raise MeasureError(f"{measure.id} has no {ruleset} version in effect for {period}")
    compiler = MeasureCompiler(measure, version, catalogue.value_sets, audit, "RUN", ruleset)
    return compiler.sql()
