"""Measure test decks: tiny patient timelines with the outcome each must get (eCQM style).

A deck (``decks/LN-01.yaml``) names a measure, an audit month, a time zone and a coverage end,
then lists cases. Each case is one patient: rows per table, written with the contract's column
names, local wall-clock times, and only the columns that matter (the rest take the defaults
below). ``expect`` is the outcome of each of the patient's cases in index-time order (an empty
list: the patient is no case at all); ``hours`` optionally pins hours_to_event, ``flags`` and
``components`` the facts that hold per case, and ``evidence`` words each case's evidence must
contain.

``unreachable`` lists window edges no timeline can exercise, each with why (e.g. LN-14's ABI one
minute before its numerator window falls in its look-back, so that visit is never a case); the
coverage checks accept them, and flag a declaration that a case does reach.

A deck runs under every rule set in its ``rulesets`` (default: both). Where the rule sets judge a
case differently, ``expect`` is a mapping from rule set to outcome(s), e.g.
``expect: {source-2025: met, evidence-2026: not_met}``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb
import yaml

from chartaudit.audits.compiler import MeasureCompiler
from chartaudit.audits.engine import Catalogue, run_measures
from chartaudit.audits.measure import MeasureError
from chartaudit.audits.period import AuditPeriod
from chartaudit.schemas.codes import normalise_code
from chartaudit.schemas.contract import TABLE_ORDER, TABLES
from chartaudit.schemas.results import (
    RESULT_TABLES_DDL,
    ROW_ID,
    canonical_table_ddl,
    has_row_id,
    row_id_sql,
)

DEFAULTS = {
    "patients": {"birth_year": 1960, "sex": "F"},
    "encounters": {"site_id": "SITE-A", "setting": "emergency"},
    "diagnoses": {"code_system": "ICD10CM", "source": "encounter"},
    "findings": {"code_system": "LOCAL", "result": "present"},
    "orders": {"code_system": "CPT", "category": "imaging", "status": "completed"},
    "labs": {},
    "medications": {"status": "active"},
}


RULESETS = ("source-2025", "evidence-2026")


class DeckError(MeasureError):
    """A deck file breaks its format; the message names the file and the case."""


@dataclass
class DeckCase:
    name: str
    patient_id: str
    expect: dict[str, list[str]]  # rule set -> outcomes in index-time order
    hours: list[float | None] | None = None
    flags: list[list[str]] | None = None
    components: list[list[str]] | None = None
    evidence: list[str] | None = None  # words each case's evidence contains, in order


@dataclass
class Deck:
    measure: str
    period: str
    timezone: str
    coverage_end: datetime
    cases: list[DeckCase]
    rows: dict[str, list[dict]]
    rulesets: tuple[str, ...] = RULESETS
    path: Path | None = None
    unreachable: tuple[tuple[str, str, str], ...] = ()  # (criterion path, side, spot)


def _instant(value, zone: ZoneInfo) -> datetime:
    return datetime.fromisoformat(str(value)).replace(tzinfo=zone)


def _complete(table: str, row: dict, patient_id: str, zone: ZoneInfo, n: int) -> dict:
    row = {**DEFAULTS[table], "patient_id": patient_id, **row}
    if table == "encounters":
        row.setdefault("encounter_id", f"{patient_id}-E{n}")
    if table == "orders":
        row.setdefault("order_id", f"{patient_id}-O{n}")
        row.setdefault("ordered_time", row.get("performed_time"))
    if table == "medications":
        row.setdefault("medication_id", f"{patient_id}-M{n}")
    for column in TABLES[table].columns:
        value = row.get(column.name)
        if value is None:
            continue
        if column.type == "timestamp":
            row[column.name] = _instant(value, zone)
        elif column.name == "code":
            row[column.name] = normalise_code(row["code_system"], str(value))
        elif column.name == "ingredient":  # as the loader does: any case matches
            row[column.name] = normalise_code("INGREDIENT", str(value))
    return row


def read_deck(path: Path) -> Deck:
    try:
        return _read_deck(path)
    except DeckError:
        raise
    except (KeyError, TypeError, ValueError, yaml.YAMLError) as exc:
        raise DeckError(f"{path.name}: {type(exc).__name__}: {exc}") from None


def _read_deck(path: Path) -> Deck:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    zone = ZoneInfo(data["timezone"])
    rows: dict[str, list[dict]] = {t: [] for t in TABLE_ORDER}
    rulesets = tuple(data.get("rulesets", RULESETS))
    cases = []
    for i, case in enumerate(data["cases"]):
        patient_id = f"P{i:03d}"
        patient = {"patient_id": patient_id, **DEFAULTS["patients"], **case.get("patient", {})}
        rows["patients"].append(patient)
        for table, table_rows in (case.get("rows") or {}).items():
            for n, row in enumerate(table_rows):
                rows[table].append(_complete(table, row, patient_id, zone, n))
        expect = _expectations(case["expect"], rulesets, f"{path.name}: {case['name']}")
        _check_unique_ids(rows, f"{path.name}: {case['name']}")
        evidence = case.get("evidence")
        cases.append(
            DeckCase(
                case["name"],
                patient_id,
                expect,
                case.get("hours"),
                case.get("flags"),
                case.get("components"),
                [evidence] if isinstance(evidence, str) else evidence,
            )
        )
    return Deck(
        data["measure"],
        data["period"],
        data["timezone"],
        _instant(data["coverage_end"], zone),
        cases,
        rows,
        rulesets,
        path,
        tuple(_unreachable(path, data.get("unreachable") or [])),
    )


def _unreachable(path: Path, items: list) -> list[tuple[str, str, str]]:
    """Declared unreachable window edges; each needs its criterion, side, spot and a reason."""
    edges = []
    for item in items:
        if not (isinstance(item, dict) and set(item) == {"criterion", "side", "spot", "why"}):
            raise DeckError(f"{path.name}: unreachable: give criterion, side, spot and why")
        if item["side"] not in ("start", "end") or item["spot"] not in ("on", "off"):
            raise DeckError(f"{path.name}: unreachable: side is start|end, spot is on|off")
        edges.append((str(item["criterion"]), item["side"], item["spot"]))
    return edges


def _check_unique_ids(rows: dict[str, list[dict]], where: str) -> None:
    """Ids are unique across the deck, as the loader requires (a duplicate is quarantined)."""
    for table, spec in TABLES.items():
        key = spec.primary_key
        ids = [row[key] for row in rows[table] if key and row.get(key) is not None]
        if len(ids) != len(set(ids)):
            twice = sorted({i for i in ids if ids.count(i) > 1})
            raise DeckError(f"{where}: {table} id(s) {twice} already used by another case")


def _outcomes(value) -> list[str]:
    return list(value) if isinstance(value, list) else [value]


def _expectations(expect, rulesets: tuple[str, ...], name: str) -> dict[str, list[str]]:
    """The outcomes a case must get under each rule set the deck runs."""
    if not isinstance(expect, dict):
        return {ruleset: _outcomes(expect) for ruleset in rulesets}
    if set(expect) != set(rulesets):
        raise DeckError(f"{name}: expect names {sorted(expect)}, the deck runs {list(rulesets)}")
    return {ruleset: _outcomes(expect[ruleset]) for ruleset in rulesets}


def build_database(rows: dict[str, list[dict]]) -> duckdb.DuckDBPyConnection:
    """An in-memory warehouse holding the canonical tables with these rows."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    for table in TABLE_ORDER:
        con.execute(canonical_table_ddl(table))
        columns = [*TABLES[table].column_names, "source_line", "extract_id"]
        for line, row in enumerate(rows.get(table, []), start=2):
            values = [row.get(c) for c in TABLES[table].column_names] + [line, "deck"]
            placeholders = ", ".join("?" for _ in values)
            con.execute(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({placeholders})", values
            )
        if has_row_id(table):
            con.execute(f"UPDATE {table} SET {ROW_ID} = {row_id_sql(table)}")
    return con


@dataclass
class CaseRun:
    """One deck case as the engine judged it under one rule set."""

    case: DeckCase
    outcomes: list[str]
    evidence: list[str]
    criteria: set[str]  # paths of the measure's criteria that held for the patient
    reasons: list[str | None] = field(default_factory=list)  # exclusion / failure reasons
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems


@dataclass
class DeckRun:
    deck: Deck
    ruleset: str
    measure_version: str
    cases: list[CaseRun]
    criteria: list[tuple[str, str, str]]  # (population, path, label) of every criterion
    bounds: list[tuple[str, str, str, str]] = field(default_factory=list)  # part, path, label, side
    edges: set[tuple[str, str, str]] = field(default_factory=set)  # (path, side, on | off) seen
    reasons: list[tuple[str, str]] = field(default_factory=list)  # (outcome, reason) possible

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.cases)

    @property
    def held(self) -> set[str]:
        return set().union(*(c.criteria for c in self.cases))


def by_measure(runs: list[DeckRun]) -> dict[tuple[str, str], list[DeckRun]]:
    """The runs grouped by (measure, rule set): what the coverage checks look at together."""
    groups: dict[tuple[str, str], list[DeckRun]] = {}
    for run in runs:
        groups.setdefault((run.deck.measure, run.ruleset), []).append(run)
    return groups


def unused_reasons(runs: list[DeckRun]) -> list[tuple[str, str]]:
    """(outcome, reason) of every exclusion, and every reason a fails-if numerator fails, that
    no deck case of the measure (one rule set) gets as its outcome's reason."""
    pairs = (zip(c.outcomes, c.reasons, strict=True) for run in runs for c in run.cases)
    seen = {pair for case in pairs for pair in case}
    wanted = dict.fromkeys(w for run in runs for w in run.reasons)
    return [w for w in wanted if w not in seen]


def untested_edges(runs: list[DeckRun]) -> list[tuple[str, str, str, str, list[str]]]:
    """Window bounds of the measure (one rule set) that no deck case puts a row exactly on
    ('on') or one step past ('off'): (population, path, label, side, the spots missing)."""
    seen = set().union(*(run.edges for run in runs), *(run.deck.unreachable for run in runs))
    bounds = dict.fromkeys(b for run in runs for b in run.bounds)
    missing = []
    for part, path, label, side in bounds:
        spots = [spot for spot in ("on", "off") if (path, side, spot) not in seen]
        if spots:
            missing.append((part, path, label, side, spots))
    return missing


def reached_unreachable(runs: list[DeckRun]) -> list[tuple[str, str, str]]:
    """Edges a deck declares unreachable that a deck case does reach (one measure, all its rule
    sets), or that name no window bound of the measure: the declaration is wrong or stale."""
    seen = set().union(*(run.edges for run in runs))
    bounds = {(path, side) for run in runs for _, path, _, side in run.bounds}
    declared = {edge for run in runs for edge in run.deck.unreachable}
    return sorted(e for e in declared if e in seen or (e[0], e[1]) not in bounds)


def unreached(runs: list[DeckRun]) -> list[tuple[str, str, str]]:
    """Criteria of the measure that held for no case of any of these runs (one measure and
    rule set): a branch its decks never exercise."""
    held = set().union(*(run.held for run in runs))
    criteria = dict.fromkeys(c for run in runs for c in run.criteria)
    return [c for c in criteria if c[1] not in held]


def run_deck(deck: Deck, catalogue: Catalogue, ruleset: str) -> DeckRun:
    """Judge a deck's timelines with its measure and compare with what each case expects."""
    measure = catalogue.measure(deck.measure)
    period = AuditPeriod.of(deck.period, deck.timezone, deck.coverage_end)
    version = measure.version_for(ruleset, period.first_day)
    if version is None:
        raise DeckError(f"{deck.path}: {measure.id} has no {ruleset} version for {deck.period}")
    with build_database(deck.rows) as con:
        con.execute(RESULT_TABLES_DDL)
        run_measures(con, catalogue.only(deck.measure), period, ruleset, run_id="deck")
        results = con.execute(
            "SELECT patient_id, outcome, hours_to_event, evidence, flags, components, reason"
            " FROM case_results ORDER BY patient_id, index_time, index_event_id"
        ).fetchall()
        compiler = MeasureCompiler(measure, version, catalogue.value_sets, period, "deck")
        held = con.execute(compiler.trace_sql()).fetchall()
        edges = {
            (path, side, spot)
            for _, path, side, spot in con.execute(compiler.edge_sql()).fetchall()
        }
    criteria = [(part, leaf.path, leaf.label) for part, leaf in compiler.traced_leaves()]
    bounds = [(part, leaf.path, leaf.label, side) for part, leaf, side in compiler.window_edges()]
    runs = [
        _compare(case, ruleset, [r for r in results if r[0] == case.patient_id], held)
        for case in deck.cases
    ]
    definition = compiler.definition
    reasons = [("excluded", x.name) for x in definition.exclusions]
    reasons += [("not_met", x.name) for x in definition.numerator.fails_if]
    return DeckRun(deck, ruleset, version.version, runs, criteria, bounds, edges, reasons)


def _compare(case: DeckCase, ruleset: str, got: list[tuple], held: list[tuple]) -> CaseRun:
    outcomes, evidence = [r[1] for r in got], [r[3] for r in got]
    criteria = {leaf for p, leaf in held if p == case.patient_id}
    run = CaseRun(case, outcomes, evidence, criteria, [r[6] for r in got])
    expect = case.expect[ruleset]
    if outcomes != expect:
        run.problems.append(f"expected {expect}, got {outcomes}: {evidence}")
    if case.hours is not None:
        hours = [None if r[2] is None else round(r[2], 4) for r in got]
        if hours != case.hours:
            run.problems.append(f"expected hours {case.hours}, got {hours}")
    for name, column in (("flags", 4), ("components", 5)):
        wanted = getattr(case, name)
        if wanted is not None and [sorted(r[column]) for r in got] != [sorted(w) for w in wanted]:
            run.problems.append(f"expected {name} {wanted}, got {[r[column] for r in got]}")
    for words, text in zip(case.evidence or [], evidence, strict=False):
        if words not in text:
            run.problems.append(f"evidence {text!r} does not say {words!r}")
    return run
