"""Runs the measure catalogue against a DuckDB connection that holds the canonical tables."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path

import duckdb

from chartaudit.audits.compiler import MeasureCompiler
from chartaudit.audits.describe import definition_lines
from chartaudit.audits.lookback import NOT_COMPUTABLE, computability, look_back
from chartaudit.audits.measure import Definition, Measure, MeasureError, Version, leaves
from chartaudit.audits.measure_parser import load_measures
from chartaudit.audits.period import AuditPeriod, parse_period
from chartaudit.audits.valuesets import ValueSet, load_value_sets

DEFAULT_RULESET = "source-2025"
# The built-in catalogue folder: measures/*.yaml, value_sets/*.csv and decks/*.yaml.
BUILT_IN = Path(__file__).parent
FOLDER_HELP = "a measure folder holds measures/*.yaml, and value_sets/*.csv and decks/*.yaml"


class NoMeasureInEffect(ValueError):
    """No measure of the rule set is in effect in the period asked for."""


class UnknownRuleset(ValueError):
    pass


# The order to load the canonical tables in for the engine: by the columns its criteria filter
# on, so that DuckDB's min/max per row group skips most of a table for a value set (measured at
# 100,000 patients: the fifteen measures' CPU time fell by a third). Results never depend on it:
# every choice the compiled SQL makes is by a total order.
SCAN_ORDER: dict[str, str] = {
    "diagnoses": "code_system, code",
    "findings": "code_system, code",
    "orders": "code_system, code",
    "labs": "loinc",
    "medications": "ingredient",
}


def check_measure_folder(folder: Path) -> Path:
    if not (folder / "measures").is_dir():
        raise MeasureError(f"{folder}: not a measure folder ({FOLDER_HELP})")
    return folder


@dataclass(frozen=True)
class Catalogue:
    """The measures and value sets one run audits with: the built-in ones and those of the
    extra measure folders named in settings or on the command line."""

    measures: tuple[Measure, ...]
    value_sets: dict[str, ValueSet]
    folders: tuple[Path, ...] = (BUILT_IN,)

    @classmethod
    def load(cls, extra_folders: Sequence[Path | str] = ()) -> Catalogue:
        extra = tuple(check_measure_folder(Path(f)) for f in extra_folders)
        folders = (BUILT_IN, *extra)
        return _load_catalogue(folders, _catalogue_files(folders))

    @property
    def rulesets(self) -> tuple[str, ...]:
        return tuple(sorted({r for m in self.measures for r in m.rulesets}))

    def require_ruleset(self, ruleset: str) -> None:
        if ruleset not in self.rulesets:
            known = ", ".join(self.rulesets)
            raise UnknownRuleset(f"unknown rule set {ruleset!r}; known: {known}")

    def require_in_effect(self, ruleset: str, period: str) -> None:
        """Refuse a period in which no measure of ``ruleset`` is in effect: its report would
        be empty with no word why (measure versions carry effective dates)."""
        period_start = date(*parse_period(period), 1)
        if any(m.version_for(ruleset, period_start) for m in self.measures):
            return
        starts = [
            v.effective_from for m in self.measures for v in m.versions if ruleset in v.rulesets
        ]
        after = [d for d in starts if d > period_start]
        when = f"; the earliest takes effect {min(after).isoformat()}" if after else ""
        raise NoMeasureInEffect(
            f"period {period}: no measure of rule set {ruleset} is in effect{when}. Audit a"
            " later month, or give --measures a folder whose measure versions take effect"
            " earlier"
        )

    def measure(self, measure_id: str) -> Measure:
        for measure in self.measures:
            if measure.id.lower() == measure_id.lower():
                return measure
        known = ", ".join(m.id for m in self.measures)
        raise MeasureError(f"no measure {measure_id!r}; known: {known}")

    def only(self, measure_id: str) -> Catalogue:
        return Catalogue((self.measure(measure_id),), self.value_sets, self.folders)

    def deck_files(self) -> list[Path]:
        return sorted(p for f in self.folders for p in (f / "decks").glob("*.yaml"))


def _catalogue_files(folders: tuple[Path, ...]) -> tuple[tuple[str, str], ...]:
    """(path, digest of its bytes) of every file a catalogue is read from: a changed file reads
    again. The bytes, not the modification time, whose clock ticks too coarsely to tell two
    quick edits of the same size apart."""
    files = [
        p
        for f in folders
        for p in (*(f / "value_sets").glob("*.csv"), *(f / "measures").glob("*.yaml"))
    ]
    return tuple((str(p), hashlib.sha256(p.read_bytes()).hexdigest()) for p in sorted(files))


@functools.lru_cache(maxsize=8)
def _load_catalogue(folders: tuple[Path, ...], files: tuple) -> Catalogue:
    """Parsing the YAML takes about a quarter of a second, and a run asked for the catalogue
    three times; the files' contents are the cache key, so an edited measure is read again."""
    value_sets = load_value_sets(tuple(f / "value_sets" for f in folders))
    measures = load_measures(set(value_sets), tuple(f / "measures" for f in folders))
    return Catalogue(tuple(measures), value_sets, folders)


@dataclass(frozen=True)
class MeasureRun:
    """One measure as it judged one run: the row written to the ``measures`` table."""

    run_id: str
    period: str
    ruleset: str
    measure_id: str
    measure_version: str
    title: str
    unit: str
    measure_type: str
    source: str
    reference_hours: float | None
    window_hours: float | None  # the numerator window's end, when it is a fixed duration
    changes: str  # what this version changes, for rule sets that differ
    components: tuple[str, ...]  # names of the components reported as rates
    also_report: tuple[str, ...]  # names of the facts reported beside the rate
    target: float | None  # a rate 0..1 the trend chart draws, with its source in words
    target_source: str | None
    definition: str  # the version's definition in words (the report's appendix)
    status: str = "computed"  # computed | not_computable (audits/lookback.py)
    status_reason: str | None = None  # why not computable, or that the look-back is unchecked
    at_any_time: tuple[str, ...] = ()  # criteria judged on whatever history the extract holds


def window_hours(measure: Measure, version: Version) -> float | None:
    """Hours from the index to the numerator window's end, when every leaf agrees on one."""
    numerator = measure.definition(version).numerator
    criteria = [x.criterion for x in numerator.fails_if] or [numerator.criterion]
    ends = {
        leaf.window.end.minutes
        for criterion in criteria
        for leaf in leaves(criterion)
        if leaf.window and leaf.window.end
    }
    return ends.pop() / 60 if len(ends) == 1 and None not in ends else None


def run_measures(
    con: duckdb.DuckDBPyConnection,
    catalogue: Catalogue,
    period: AuditPeriod,
    ruleset: str,
    run_id: str,
    target: str = "case_results",
) -> list[MeasureRun]:
    """Appends every case of every measure in effect to ``target``; returns what ran.

    A measure with no version in effect for this rule set and month is skipped. A measure whose
    look-back reaches before the extract's coverage start (audits/lookback.py) is not judged:
    it has no case, and its MeasureRun says ``not_computable`` and why."""
    catalogue.require_ruleset(ruleset)
    con.execute("SET TimeZone = 'UTC'")  # windows are real elapsed time; see compiler.py
    ran = []
    for measure in catalogue.measures:
        version = measure.version_for(ruleset, period.first_day)
        if version is None:
            continue
        definition = measure.definition(version)
        lookback = look_back(definition)
        judged = computability(lookback, period)
        if judged.status != NOT_COMPUTABLE:
            compiler = MeasureCompiler(
                measure, version, catalogue.value_sets, period, run_id, ruleset
            )
            con.execute(f"INSERT INTO {target} BY NAME {compiler.sql()}")
        run = _measure_run(measure, version, definition, period, ruleset, run_id)
        ran.append(replace(run, at_any_time=lookback.at_any_time, **judged.columns()))
    return ran


def _measure_run(
    measure: Measure,
    version: Version,
    definition: Definition,
    period: AuditPeriod,
    ruleset: str,
    run_id: str,
) -> MeasureRun:
    return MeasureRun(
        run_id=run_id,
        period=period.period,
        ruleset=ruleset,
        measure_id=measure.id,
        measure_version=version.version,
        title=measure.title,
        unit=measure.unit,
        measure_type=measure.type,
        source=measure.source,
        reference_hours=measure.reference_hours,
        window_hours=window_hours(measure, version),
        changes=version.changes,
        components=tuple(x.name for x in definition.components),
        also_report=tuple(x.name for x in definition.also_report),
        target=measure.target,
        target_source=measure.target_source or None,
        definition="\n".join(definition_lines(definition)),
    )
