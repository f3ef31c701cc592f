"""Measures as data: the YAML measure files and the criteria they are written in.

A measure file (``measures/LN-01.yaml``) holds metadata, rule-set versions and the eCQM
populations:

- ``index``: who is a case, and when. ``trigger: event`` takes ``events`` (rows whose own time
  is the index time), ``trigger: encounter`` takes encounters (index time = arrival) and
  ``trigger: patient`` judges each patient at the end of the audit month. ``require`` adds
  conditions relative to the candidate index (its patient, encounter and time), including
  look-backs (``none_of`` … ``window: {start: -365d, before: 0m}``). ``episodes``: ``30d`` (the
  first qualifying event per patient within 30 days), ``first`` (the patient's earliest only) or
  ``each`` (every qualifying event is a case).
- ``exclusions``: in order; the first that matches is the reason.
- ``numerator``: what care meets the guideline. Either a criterion (met when it holds) or
  ``fails_if``: reasons that make the case not met (overuse and safety measures: met only once the
  window has closed without any of them). ``closes: index_departure`` keeps an encounter-scoped
  numerator pending while the index encounter is still open at coverage end.
- ``components`` (named parts whose rates are reported; ``{component: NAME}`` refers to one) and
  ``also_report`` (facts counted beside the rate; each case lists those that hold in ``flags``).

A version may replace ``index``, ``exclusions``, ``numerator``, ``components`` or
``also_report`` for its rule sets, with a ``changes`` sentence saying why.

Criteria:

- a leaf: ``{table, value_set?, where?, time?, window?, scope?, label?, sql?, earliest_per?,
  in_same_encounter?}`` — "a row of ``table`` exists for the case's patient (``scope:
  index_encounter``: in the index encounter; ``scope: index_event``: the index row itself) whose
  code is in ``value_set``, whose columns hold one of the ``where`` values (or pass a comparison
  such as ``"<= 0.90"``), and whose ``time`` lies in ``window``". ``earliest_per: [patient_id,
  ingredient]`` keeps only rows with no earlier row of the same patient and ingredient with the
  same code and ``where`` values (``earliest_among: SET``: with a code in that value set instead);
  ``in_same_encounter`` is a criterion over the rows of the matched row's encounter;
- ``{min_age: N}`` / ``{max_age: N}`` — age (audit year - birth_year) at least / at most N;
- ``{any_of: [...]}``, ``{all_of: [...]}``, ``{none_of: [...]}`` — groups of criteria;
- ``{component: NAME}`` — the component of that name.

Windows are intervals relative to the index time in real elapsed time (``-24h``, ``12h``,
``14d``, ``30m``) or the anchors ``period_start``, ``period_end`` and ``lookback_start`` (the 12
calendar months ending with the audit month): ``start``/``end`` are closed bounds,
``after``/``before`` open ones. A missing bound is open-ended. ``sql`` is the escape hatch: an
extra predicate over the row ``e`` and the case ``c``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path

import yaml

from chartaudit.schemas.contract import TABLES

MEASURE_DIR = Path(__file__).parent / "measures"
ANCHORS = ("period_start", "period_end", "lookback_start")
TRIGGERS = ("event", "encounter", "patient")
UNITS = ("episode", "patient")
SCOPES = ("patient", "index_encounter", "index_event")
CLOSES = ("window", "index_departure")
CODED_TABLES = ("diagnoses", "findings", "orders", "labs", "medications")  # value sets apply
OVERRIDABLE = ("index", "exclusions", "numerator", "components", "also_report")
_DURATION = re.compile(r"^(-?\d+)([mhd])$")
_COMPARISON = re.compile(r"^(<=|>=|<|>|=)\s*(-?\d+(?:\.\d+)?)$")
_MINUTES = {"m": 1, "h": 60, "d": 24 * 60}
_NUMERIC = ("int", "float")


class MeasureError(ValueError):
    """A measure file breaks its format; the message names the file and the place."""


@dataclass(frozen=True)
class Bound:
    """One end of a window: minutes after the index time, or a named anchor of the period.
    ``strict`` bounds exclude their own instant (``after``/``before``)."""

    minutes: int | None = None
    anchor: str | None = None
    strict: bool = False


@dataclass(frozen=True)
class Window:
    start: Bound | None = None
    end: Bound | None = None


@dataclass(frozen=True)
class Comparison:
    """A numeric test on a column, e.g. ``value_num <= 0.90``."""

    column: str
    op: str
    value: float


@dataclass(frozen=True)
class Leaf:
    table: str
    value_set: str | None = None
    where: tuple[tuple[str, tuple[str, ...]], ...] = ()
    compare: tuple[Comparison, ...] = ()
    time: str | None = None
    window: Window | None = None
    scope: str = "patient"
    label: str = ""
    sql: str | None = None
    earliest_per: tuple[str, ...] = ()
    earliest_among: str | None = None  # the value set "earlier" rows are taken from
    in_same_encounter: Criterion | None = None
    path: str = field(default="", compare=False)  # where in the file, for traces and errors


@dataclass(frozen=True)
class Age:
    minimum: int | None = None
    maximum: int | None = None
    path: str = field(default="", compare=False)


@dataclass(frozen=True)
class Group:
    kind: str  # any_of | all_of | none_of
    children: tuple[Criterion, ...]


Criterion = Leaf | Age | Group


@dataclass(frozen=True)
class Named:
    """A criterion with a name: an exclusion's reason, a component, an also-report fact, or a
    reason a fails-if numerator is not met."""

    name: str
    criterion: Criterion


@dataclass(frozen=True)
class Numerator:
    label: str
    criterion: Criterion | None = None  # met when it holds
    fails_if: tuple[Named, ...] = ()  # or: not met when any holds
    closes: str = "window"

    @property
    def inverted(self) -> bool:
        return bool(self.fails_if)


@dataclass(frozen=True)
class IndexSpec:
    trigger: str
    events: Criterion | None = None  # event trigger: the rows that can be an index event
    require: Criterion | None = None
    episodes: str = "30d"  # <N>d | first | each (episode units); ignored for patient triggers

    @property
    def episode_minutes(self) -> int | None:
        match = _DURATION.match(self.episodes)
        return int(match.group(1)) * _MINUTES[match.group(2)] if match else None


@dataclass(frozen=True)
class Definition:
    """What one version of a measure judges by: populations, components and facts."""

    index: IndexSpec
    numerator: Numerator
    exclusions: tuple[Named, ...] = ()
    components: tuple[Named, ...] = ()
    also_report: tuple[Named, ...] = ()


@dataclass(frozen=True)
class Version:
    version: str
    rulesets: tuple[str, ...]
    effective_from: date
    effective_to: date | None = None
    changes: str = ""
    overrides: dict = field(default_factory=dict, compare=False)  # part name -> replacement

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
    base: Definition
    versions: tuple[Version, ...]
    reference_hours: float | None = None
    path: Path | None = field(default=None, compare=False)

    def version_for(self, ruleset: str, period_start: date) -> Version | None:
        return next((v for v in self.versions if v.applies(ruleset, period_start)), None)

    def definition(self, version: Version) -> Definition:
        """The populations this version judges by: the file's, with the version's overrides."""
        return replace(self.base, **version.overrides)

    @property
    def rulesets(self) -> tuple[str, ...]:
        return tuple(sorted({r for v in self.versions for r in v.rulesets}))

    # Shortcuts to the file's own (base) populations.
    @property
    def index(self) -> IndexSpec:
        return self.base.index

    @property
    def numerator(self) -> Numerator:
        return self.base.numerator

    @property
    def exclusions(self) -> tuple[Named, ...]:
        return self.base.exclusions


class _Parser:
    """Turns one measure file's YAML into a Measure, naming the file in every error."""

    def __init__(self, path: Path, value_sets: set[str]):
        self.path = path
        self.value_sets = value_sets
        self.components: dict[str, Criterion] = {}

    def fail(self, where: str, problem: str) -> MeasureError:
        return MeasureError(f"{self.path.name}: {where}: {problem}")

    def keys(self, where: str, data, allowed: set[str], required: set[str] = frozenset()):
        if not isinstance(data, dict):
            raise self.fail(where, "expected a mapping")
        unknown = set(data) - allowed
        if unknown:
            raise self.fail(where, f"unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
        missing = required - set(data)
        if missing:
            raise self.fail(where, f"missing key(s) {sorted(missing)}")

    # -- windows and leaves ------------------------------------------------------------------
    def bound(self, where: str, text, strict: bool) -> Bound:
        text = str(text).strip()
        if text in ANCHORS:
            return Bound(anchor=text, strict=strict)
        match = _DURATION.match(text)
        if not match:
            raise self.fail(where, f"window bound {text!r} is not like -24h, 12h, 14d or an anchor")
        return Bound(minutes=int(match.group(1)) * _MINUTES[match.group(2)], strict=strict)

    def window(self, where: str, data) -> Window:
        self.keys(where, data, {"start", "end", "after", "before"})
        if {"start", "after"} <= set(data) or {"end", "before"} <= set(data):
            raise self.fail(where, "give one lower bound (start or after) and one upper bound")
        lower = ("start", False) if "start" in data else ("after", True)
        upper = ("end", False) if "end" in data else ("before", True)
        start = self.bound(where, data[lower[0]], lower[1]) if lower[0] in data else None
        end = self.bound(where, data[upper[0]], upper[1]) if upper[0] in data else None
        return Window(start, end)

    def where(self, where: str, table: str, data) -> tuple[tuple, tuple]:
        """Equality lists, and numeric comparisons written as ``"<= 0.90"``."""
        if not isinstance(data, dict):
            raise self.fail(where, "where: expected a mapping of column to value(s)")
        equal, compare = [], []
        for column, values in data.items():
            if column not in TABLES[table].column_names:
                raise self.fail(where, f"table {table} has no column {column!r}")
            numeric = TABLES[table].column(column).type in _NUMERIC
            match = _COMPARISON.match(str(values).strip()) if numeric else None
            if match:
                compare.append(Comparison(column, match.group(1), float(match.group(2))))
                continue
            values = values if isinstance(values, list) else [values]
            equal.append((column, tuple(str(v) for v in values)))
        return tuple(equal), tuple(compare)

    def leaf(self, where: str, data: dict, nested: bool = False) -> Leaf:
        allowed = {"table", "value_set", "where", "time", "window", "scope", "label", "sql"}
        allowed |= {"earliest_per", "earliest_among", "in_same_encounter"}
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
        equal, compare = self.where(where, table, data.get("where") or {})
        time = data.get("time")
        if time is not None and time not in columns:
            raise self.fail(where, f"table {table} has no column {time!r}")
        scope = data.get("scope", "patient")
        if scope not in SCOPES:
            raise self.fail(where, f"scope must be one of {SCOPES}")
        if scope == "index_encounter" and "encounter_id" not in columns:
            raise self.fail(where, f"table {table} has no encounter to match the index encounter")
        if nested and (scope != "patient" or data.get("sql")):
            raise self.fail(where, "inside in_same_encounter a leaf takes no scope and no sql")
        earliest = data.get("earliest_per") or []
        earliest = earliest if isinstance(earliest, list) else [earliest]
        for column in earliest:
            if column not in columns:
                raise self.fail(where, f"earliest_per: table {table} has no column {column!r}")
        among = data.get("earliest_among")
        if among is not None and (not earliest or among not in self.value_sets):
            raise self.fail(where, "earliest_among needs earliest_per and a known value set")
        same = data.get("in_same_encounter")
        if same is not None and "encounter_id" not in columns:
            raise self.fail(where, f"table {table} has no encounter for in_same_encounter")
        return Leaf(
            table=table,
            value_set=value_set,
            where=equal,
            compare=compare,
            time=time,
            window=self.window(f"{where}.window", data["window"]) if "window" in data else None,
            scope=scope,
            label=str(data.get("label") or value_set or table).replace("_", " "),
            sql=data.get("sql"),
            earliest_per=tuple(earliest),
            earliest_among=among,
            in_same_encounter=(
                self.criterion(f"{where}.in_same_encounter", same, nested=True) if same else None
            ),
            path=where,
        )

    # -- criteria ---------------------------------------------------------------------------
    def criterion(self, where: str, data, nested: bool = False) -> Criterion:
        if not isinstance(data, dict):
            raise self.fail(where, "a criterion must be a mapping")
        if {"min_age", "max_age"} & set(data):
            self.keys(where, data, {"min_age", "max_age"})
            return Age(data.get("min_age"), data.get("max_age"), where)
        if "component" in data:
            self.keys(where, data, {"component"})
            if data["component"] not in self.components:
                known = sorted(self.components)
                raise self.fail(where, f"unknown component {data['component']!r}; known: {known}")
            return self.components[data["component"]]
        for kind in ("any_of", "all_of", "none_of"):
            if kind in data:
                self.keys(where, data, {kind})
                children = data[kind]
                if not isinstance(children, list) or not children:
                    raise self.fail(where, f"{kind} needs a non-empty list")
                items = (
                    self.criterion(f"{where}.{kind}[{i}]", c, nested)
                    for i, c in enumerate(children)
                )
                return Group(kind, tuple(items))
        return self.leaf(where, data, nested)

    def criterion_within(self, where: str, data: dict, own_keys: set[str]) -> Criterion:
        """A criterion written inline beside other keys (``reason``, ``label``, ``name``…)."""
        if not isinstance(data, dict):
            raise self.fail(where, "expected a mapping")
        rest = {k: v for k, v in data.items() if k not in own_keys}
        if not rest:
            raise self.fail(where, "needs a criterion")
        return self.criterion(where, rest)

    def named(self, where: str, items, key: str) -> tuple[Named, ...]:
        if not isinstance(items, list):
            raise self.fail(where, "expected a list")
        named = []
        for i, item in enumerate(items):
            if not isinstance(item, dict) or key not in item:
                raise self.fail(f"{where}[{i}]", f"needs a {key} and a criterion")
            criterion = self.criterion_within(f"{where}[{i}]", item, {key})
            named.append(Named(str(item[key]), criterion))
        return tuple(named)

    def numerator(self, where: str, data) -> Numerator:
        if not isinstance(data, dict) or "label" not in data:
            raise self.fail(where, "needs a label and a criterion (or fails_if)")
        closes = data.get("closes", "window")
        if closes not in CLOSES:
            raise self.fail(where, f"closes must be one of {CLOSES}")
        own = {"label", "closes", "fails_if"}
        if "fails_if" in data:
            if set(data) - own:
                raise self.fail(where, "fails_if takes no other criterion beside it")
            fails = self.named(f"{where}.fails_if", data["fails_if"], "reason")
            return Numerator(str(data["label"]), None, fails, closes)
        if not {"any_of", "all_of", "none_of", "component", "min_age", "max_age"} & set(data):
            # A single-row numerator names its events with the numerator's own label.
            criterion = self.leaf(where, {k: v for k, v in data.items() if k != "closes"})
        else:
            criterion = self.criterion_within(where, data, own)
        return Numerator(str(data["label"]), criterion, (), closes)

    def index(self, where: str, data) -> IndexSpec:
        self.keys(where, data, {"trigger", "events", "require", "episodes"}, {"trigger"})
        trigger = data["trigger"]
        if trigger not in TRIGGERS:
            raise self.fail(where, f"trigger must be one of {TRIGGERS}")
        events = data.get("events")
        if (trigger == "event") != (events is not None):
            raise self.fail(where, "an event trigger takes events; other triggers take none")
        events = self.criterion(f"{where}.events", events) if events is not None else None
        if events is not None and not _is_event_list(events):
            raise self.fail(where, "events: one leaf or any_of leaves, without windows")
        require = data.get("require")
        episodes = str(data.get("episodes", "30d"))
        if episodes not in ("first", "each") and not _DURATION.match(episodes):
            raise self.fail(
                where, f"episodes must be like 30d, or first, or each, not {episodes!r}"
            )
        return IndexSpec(
            trigger,
            events,
            self.criterion(f"{where}.require", require) if require is not None else None,
            episodes,
        )

    def parts(self, where: str, data: dict) -> dict:
        """The populations given in ``data`` (a measure's top level or a version's overrides)."""
        parts = {}
        if "components" in data:  # first: the numerator may refer to them
            parts["components"] = self.named(f"{where}components", data["components"], "name")
            self.components.update({c.name: c.criterion for c in parts["components"]})
        if "index" in data:
            parts["index"] = self.index(f"{where}index", data["index"])
        if "exclusions" in data:
            parts["exclusions"] = self.named(f"{where}exclusions", data["exclusions"], "reason")
        if "numerator" in data:
            parts["numerator"] = self.numerator(f"{where}numerator", data["numerator"])
        if "also_report" in data:
            parts["also_report"] = self.named(f"{where}also_report", data["also_report"], "name")
        return parts

    def version(self, where: str, data: dict) -> Version:
        allowed = {"version", "rulesets", "effective_from", "effective_to", "changes", *OVERRIDABLE}
        self.keys(where, data, allowed, {"version", "rulesets", "effective_from"})
        overrides = self.parts(f"{where}.", data)
        if overrides and not data.get("changes"):
            raise self.fail(where, "a version that changes the populations needs `changes`")
        try:
            effective_from = _date(data["effective_from"])
            effective_to = _date(data["effective_to"]) if data.get("effective_to") else None
        except ValueError as exc:
            raise self.fail(where, f"effective dates: {exc}") from None
        return Version(
            version=str(data["version"]),
            rulesets=tuple(data["rulesets"]),
            effective_from=effective_from,
            effective_to=effective_to,
            changes=" ".join(str(data.get("changes", "")).split()),
            overrides=overrides,
        )

    def measure(self, data) -> Measure:
        required = {"id", "title", "unit", "type", "source", "versions", "index", "numerator"}
        optional = {"exclusions", "also_report", "components", "reference_hours"}
        self.keys("top level", data, required | optional, required)
        if data["unit"] not in UNITS:
            raise self.fail("unit", f"must be one of {UNITS}")
        base = Definition(**self.parts("", data))
        if (data["unit"] == "patient") != (base.index.trigger == "patient"):
            raise self.fail("index", "a patient trigger goes with unit patient, and only with it")
        if not isinstance(data["versions"], list) or not data["versions"]:
            raise self.fail("versions", "needs a non-empty list")
        versions = tuple(self.version(f"versions[{i}]", v) for i, v in enumerate(data["versions"]))
        reference = data.get("reference_hours")
        return Measure(
            id=str(data["id"]),
            title=str(data["title"]),
            unit=data["unit"],
            type=str(data["type"]),
            source=" ".join(str(data["source"]).split()),
            base=base,
            versions=versions,
            reference_hours=float(reference) if reference is not None else None,
            path=self.path,
        )


def _date(value) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def _is_event_list(criterion: Criterion) -> bool:
    if isinstance(criterion, Leaf):
        return criterion.window is None and criterion.scope == "patient"
    if isinstance(criterion, Group) and criterion.kind == "any_of":
        return all(_is_event_list(c) and isinstance(c, Leaf) for c in criterion.children)
    return False


def leaves(criterion: Criterion | None) -> list[Leaf]:
    """Every leaf of a criterion, in file order."""
    if criterion is None or isinstance(criterion, Age):
        return []
    if isinstance(criterion, Leaf):
        return [criterion]
    return [leaf for child in criterion.children for leaf in leaves(child)]


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML that refuses a key written twice in one mapping (the second would silently win)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is written twice", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def read_measure(path: Path, value_sets: set[str]) -> Measure:
    try:
        with path.open(encoding="utf-8") as handle:
            data = yaml.load(handle, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        place = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "YAML"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise MeasureError(f"{path.name}: {place}: {problem}") from None
    return _Parser(path, value_sets).measure(data)


def load_measures(value_sets: set[str], directories: tuple[Path, ...]) -> list[Measure]:
    """Every measure file of the folders, in id order; an id defined twice is an error."""
    measures = [
        read_measure(p, value_sets) for directory in directories for p in measure_files(directory)
    ]
    seen: dict[str, Path] = {}
    for measure in measures:
        if measure.id in seen:
            raise MeasureError(
                f"{measure.path}: measure {measure.id} is already defined in {seen[measure.id]}"
            )
        seen[measure.id] = measure.path
    return sorted(measures, key=lambda m: m.id)


def measure_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.yaml"))
