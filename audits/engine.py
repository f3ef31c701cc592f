"""Runs the measure catalogue against a DuckDB connection that holds the canonical tables."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb

from chartaudit.audits.compiler import MeasureCompiler
from chartaudit.audits.measure import MEASURE_DIR, Measure, load_measures
from chartaudit.audits.period import AuditPeriod
from chartaudit.audits.valuesets import VALUE_SET_DIR, ValueSet, load_value_sets

DEFAULT_RULESET = "source-2025"


class UnknownRuleset(ValueError):
    pass


@dataclass(frozen=True)
class Catalogue:
    """The measures and value sets one run audits with."""

    measures: tuple[Measure, ...]
    value_sets: dict[str, ValueSet]

    @classmethod
    def load(cls, measure_dir: Path = MEASURE_DIR, value_set_dir: Path = VALUE_SET_DIR):
        value_sets = load_value_sets(value_set_dir)
        return cls(tuple(load_measures(set(value_sets), measure_dir)), value_sets)

    @property
    def rulesets(self) -> tuple[str, ...]:
        return tuple(sorted({r for m in self.measures for r in m.rulesets}))

    def require_ruleset(self, ruleset: str) -> None:
        if ruleset not in self.rulesets:
            known = ", ".join(self.rulesets)
            raise UnknownRuleset(f"unknown rule set {ruleset!r}; known: {known}")

    def measure(self, measure_id: str) -> Measure:
        for measure in self.measures:
            if measure.id.lower() == measure_id.lower():
                return measure
        raise KeyError(measure_id)


@dataclass(frozen=True)
class MeasureRun:
    """One measure as it judged one run: the row written to the ``measures`` table."""

    run_id: str
    measure_id: str
    measure_version: str
    title: str
    unit: str
    measure_type: str
    source: str
    reference_hours: float | None


def run_measures(
    con: duckdb.DuckDBPyConnection,
    catalogue: Catalogue,
    period: AuditPeriod,
    ruleset: str,
    run_id: str,
    target: str = "case_results",
) -> list[MeasureRun]:
    """Appends every case of every measure in effect to ``target``; returns what ran.

    A measure with no version in effect for this rule set and month is skipped."""
    catalogue.require_ruleset(ruleset)
    con.execute("SET TimeZone = 'UTC'")  # windows are real elapsed time; see compiler.py
    ran = []
    for measure in catalogue.measures:
        version = measure.version_for(ruleset, period.first_day)
        if version is None:
            continue
        sql = MeasureCompiler(measure, version, catalogue.value_sets, period, run_id).sql()
        con.execute(f"INSERT INTO {target} BY NAME {sql}")
        ran.append(
            MeasureRun(
                run_id,
                measure.id,
                version.version,
                measure.title,
                measure.unit,
                measure.type,
                measure.source,
                measure.reference_hours,
            )
        )
    return ran
