"""Measures as data: the YAML measure files and the criteria they are written in.

A measure file (``measures/LN-01.yaml``) holds metadata, rule-set versions, and the eCQM
populations: ``index`` (who is a case, and when), ``exclusions`` (in order; the first that
matches is the reason) and ``numerator`` (what care meets the guideline); ``also_report``
names facts counted beside the rate (each case lists those that hold in ``flags``).
Populations are *criteria*:

- a leaf: ``{table, value_set?, where?, time?, window?, scope?, label?, sql?}`` — "a row of
  ``table`` exists for the case's patient (or index encounter, with ``scope: index_encounter``)
  whose code is in ``value_set``, whose columns hold one of the ``where`` values, and whose
  ``time`` column lies in ``window``";
- ``{min_age: N}`` — age (audit year - birth_year) at least N;
- ``{any_of: [...]}`` / ``{all_of: [...]}`` — groups of criteria.

Windows are closed intervals ``{start, end}`` relative to the index time in real elapsed time
(``-24h``, ``12h``, ``14d``, ``30m``), or the anchors ``period_start``, ``period_end`` and
``lookback_start`` (the 12 calendar months ending with the audit month). A missing bound is
open. ``sql`` is the escape hatch: an extra predicate over the row ``e`` and the case ``c``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import yaml

from chartaudit.schemas.contract import TABLES

MEASURE_DIR = Path(__file__).parent / "measures"
ANCHORS = ("period_start", "period_end", "lookback_start")
TRIGGERS = ("event", "encounter", "patient")
UNITS = ("episode", "patient")
SCOPES = ("patient", "index_encounter")
CODED_TABLES = ("diagnoses", "findings", "orders", "labs", "medications")  # value sets apply
_DURATION = re.compile(r"^(-?\d+)([mhd])$")
_MINUTES = {"m": 1, "h": 60, "d": 24 * 60}


class MeasureError(ValueError):
    """A measure file breaks its format; the message names the file and the place."""


@dataclass(frozen=True)
class Bound:
    """One end of a window: minutes after the index time, or a named anchor of the period."""

    minutes: int | None = None
    anchor: str | None = None


@dataclass(frozen=True)
class Window:
    start: Bound | None = None
    end: Bound | None = None


@dataclass(frozen=True)
class Leaf:
    table: str
    value_set: str | None = None
    where: tuple[tuple[str, tuple[str, ...]], ...] = ()
    time: str | None = None
    window: Window | None = None
    scope: str = "patient"
    label: str = ""
    sql: str | None = None


@dataclass(frozen=True)
class MinAge:
    years: int


@dataclass(frozen=True)
class Group:
    kind: str  # any_of | all_of
    children: tuple[Criterion, ...]


Criterion = Leaf | MinAge | Group


@dataclass(frozen=True)
class Exclusion:
    reason: str
    criterion: Criterion


@dataclass(frozen=True)
class AlsoReport:
    """A fact reported beside the rate (each case is flagged with ``name`` when it holds)."""

    name: str
    criterion: Criterion


@dataclass(frozen=True)
class Numerator:
    label: str
    criterion: Criterion


@dataclass(frozen=True)
class IndexSpec:
    trigger: str
    criterion: Criterion | None
    episode_days: int | None = None


@dataclass(frozen=True)
class Version:
    version: str
    rulesets: tuple[str, ...]
    effective_from: date
    effective_to: date | None = None
    numerator: Numerator | None = None  # a rule set's own numerator, when it differs

    def applies(self, ruleset: str, period_start: date) -> bool:
        in_effect = self.effective_from <= period_start and (
            self.effective_to is None or period_start < self.effective_to
        )
        return ruleset in self.rulesets and in_effect


@dataclass(frozen=True)
class Measure:
    id: str
    title: str
    unit: str
    type: str
    source: str
    index: IndexSpec
    numerator: Numerator
    versions: tuple[Version, ...]
    exclusions: tuple[Exclusion, ...] = ()
    also_report: tuple[AlsoReport, ...] = ()
    reference_hours: float | None = None
    path: Path | None = field(default=None, compare=False)

    def version_for(self, ruleset: str, period_start: date) -> Version | None:
        return next((v for v in self.versions if v.applies(ruleset, period_start)), None)

    def numerator_for(self, version: Version) -> Numerator:
        return version.numerator or self.numerator

    @property
    def rulesets(self) -> tuple[str, ...]:
        return tuple(sorted({r for v in self.versions for r in v.rulesets}))


class _Parser:
    """Turns one measure file's YAML into a Measure, naming the file in every error."""

    def __init__(self, path: Path, value_sets: set[str]):
        self.path = path
        self.value_sets = value_sets

    def fail(self, where: str, problem: str) -> MeasureError:
        return MeasureError(f"{self.path.name}: {where}: {problem}")

    def keys(self, where: str, data: dict, allowed: set[str], required: set[str] = frozenset()):
        if not isinstance(data, dict):
            raise self.fail(where, "expected a mapping")
        unknown = set(data) - allowed
        if unknown:
            raise self.fail(where, f"unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
        missing = required - set(data)
        if missing:
            raise self.fail(where, f"missing key(s) {sorted(missing)}")

    def bound(self, where: str, text) -> Bound:
        text = str(text).strip()
        if text in ANCHORS:
            return Bound(anchor=text)
        match = _DURATION.match(text)
        if not match:
            raise self.fail(where, f"window bound {text!r} is not like -24h, 12h, 14d or an anchor")
        return Bound(minutes=int(match.group(1)) * _MINUTES[match.group(2)])

    def window(self, where: str, data) -> Window:
        self.keys(where, data, {"start", "end"})
        start = self.bound(where, data["start"]) if "start" in data else None
        end = self.bound(where, data["end"]) if "end" in data else None
        return Window(start, end)

    def leaf(self, where: str, data: dict) -> Leaf:
        allowed = {"table", "value_set", "where", "time", "window", "scope", "label", "sql"}
        self.keys(where, data, allowed, {"table"})
        table = data["table"]
        if table not in TABLES:
            raise self.fail(where, f"unknown table {table!r}; tables: {sorted(TABLES)}")
        columns = TABLES[table].column_names
        value_set = data.get("value_set")
        if value_set is not None and table not in CODED_TABLES:
            raise self.fail(where, f"table {table} has no codes to match value set {value_set!r}")
        if value_set is not None and value_set not in self.value_sets:
            raise self.fail(
                where, f"unknown value set {value_set!r} (no value_sets/{value_set}.csv)"
            )
        where_items = []
        for column, values in (data.get("where") or {}).items():
            if column not in columns:
                raise self.fail(where, f"table {table} has no column {column!r}")
            values = values if isinstance(values, list) else [values]
            where_items.append((column, tuple(str(v) for v in values)))
        time = data.get("time")
        if time is not None and time not in columns:
            raise self.fail(where, f"table {table} has no column {time!r}")
        scope = data.get("scope", "patient")
        if scope not in SCOPES:
            raise self.fail(where, f"scope must be one of {SCOPES}")
        if scope == "index_encounter" and "encounter_id" not in columns:
            raise self.fail(where, f"table {table} has no encounter to match the index encounter")
        window = self.window(f"{where}.window", data["window"]) if "window" in data else None
        label = str(data.get("label") or value_set or table).replace("_", " ")
        return Leaf(
            table, value_set, tuple(where_items), time, window, scope, label, data.get("sql")
        )

    def criterion(self, where: str, data) -> Criterion:
        if not isinstance(data, dict):
            raise self.fail(where, "a criterion must be a mapping")
        if "min_age" in data:
            self.keys(where, data, {"min_age"})
            return MinAge(int(data["min_age"]))
        for kind in ("any_of", "all_of"):
            if kind in data:
                self.keys(where, data, {kind})
                children = data[kind]
                if not isinstance(children, list) or not children:
                    raise self.fail(where, f"{kind} needs a non-empty list")
                items = (self.criterion(f"{where}.{kind}[{i}]", c) for i, c in enumerate(children))
                return Group(kind, tuple(items))
        return self.leaf(where, data)

    def criterion_within(self, where: str, data: dict, own_keys: set[str]) -> Criterion:
        """A criterion written inline beside other keys (``reason``, ``label``, ``trigger``…)."""
        return self.criterion(where, {k: v for k, v in data.items() if k not in own_keys})

    def numerator(self, where: str, data: dict) -> Numerator:
        if not isinstance(data, dict) or "label" not in data:
            raise self.fail(where, "needs a label and a criterion")
        is_leaf = not {"any_of", "all_of", "min_age"} & set(data)
        # A single-row numerator names its events with the numerator's own label.
        criterion = (
            self.leaf(where, data) if is_leaf else self.criterion_within(where, data, {"label"})
        )
        return Numerator(str(data["label"]), criterion)

    def index(self, data: dict) -> IndexSpec:
        trigger = data.get("trigger")
        if trigger not in TRIGGERS:
            raise self.fail("index", f"trigger must be one of {TRIGGERS}")
        episode_days = data.get("episode_days")
        rest = {k: v for k, v in data.items() if k not in ("trigger", "episode_days")}
        criterion = self.criterion("index", rest) if rest else None
        if trigger == "event" and not _is_event_list(criterion):
            raise self.fail("index", "an event trigger takes one leaf or any_of leaves, no windows")
        if trigger != "patient" and not episode_days:
            raise self.fail("index", f"a {trigger} trigger needs episode_days")
        return IndexSpec(trigger, criterion, episode_days)

    def version(self, where: str, data: dict) -> Version:
        allowed = {"version", "rulesets", "effective_from", "effective_to", "numerator"}
        self.keys(where, data, allowed, {"version", "rulesets", "effective_from"})
        numerator = data.get("numerator")
        return Version(
            version=str(data["version"]),
            rulesets=tuple(data["rulesets"]),
            effective_from=_date(data["effective_from"]),
            effective_to=_date(data["effective_to"]) if data.get("effective_to") else None,
            numerator=self.numerator(f"{where}.numerator", numerator) if numerator else None,
        )

    def measure(self, data: dict) -> Measure:
        required = {"id", "title", "unit", "type", "source", "versions", "index", "numerator"}
        optional = {"exclusions", "also_report", "reference_hours"}
        self.keys("top level", data, required | optional, required)
        if data["unit"] not in UNITS:
            raise self.fail("unit", f"must be one of {UNITS}")
        exclusions = tuple(
            Exclusion(str(x["reason"]), self.criterion_within(f"exclusions[{i}]", x, {"reason"}))
            for i, x in enumerate(data.get("exclusions") or [])
        )
        also_report = tuple(
            AlsoReport(str(x["name"]), self.criterion_within(f"also_report[{i}]", x, {"name"}))
            for i, x in enumerate(data.get("also_report") or [])
        )
        reference = data.get("reference_hours")
        return Measure(
            id=str(data["id"]),
            title=str(data["title"]),
            unit=data["unit"],
            type=str(data["type"]),
            source=" ".join(str(data["source"]).split()),
            index=self.index(data["index"]),
            numerator=self.numerator("numerator", data["numerator"]),
            versions=tuple(
                self.version(f"versions[{i}]", v) for i, v in enumerate(data["versions"])
            ),
            exclusions=exclusions,
            also_report=also_report,
            reference_hours=float(reference) if reference is not None else None,
            path=self.path,
        )


def _date(value) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def _is_event_list(criterion: Criterion | None) -> bool:
    if isinstance(criterion, Leaf):
        return criterion.window is None
    if isinstance(criterion, Group) and criterion.kind == "any_of":
        return all(isinstance(c, Leaf) and c.window is None for c in criterion.children)
    return False


def read_measure(path: Path, value_sets: set[str]) -> Measure:
    with path.open(encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    return _Parser(path, value_sets).measure(data)


def load_measures(value_sets: set[str], directory: Path = MEASURE_DIR) -> list[Measure]:
    measures = [read_measure(p, value_sets) for p in sorted(directory.glob("*.yaml"))]
    ids = [m.id for m in measures]
    duplicated = sorted({i for i in ids if ids.count(i) > 1})
    if duplicated:
        raise MeasureError(f"{directory}: measure id(s) defined twice: {duplicated}")
    return measures
