"""Reading a measure file: YAML into the Measure model of ``measure.py``, with every mistake
reported as the file and the place (``LN-01.yaml: numerator.window: …``)."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import yaml

from chartaudit.audits.measure import (
    DURATION,
    MINUTES,
    Age,
    Bound,
    Comparison,
    Criterion,
    Definition,
    Group,
    IndexSpec,
    Leaf,
    Measure,
    MeasureError,
    Named,
    Numerator,
    Version,
    Window,
)
from chartaudit.schemas.contract import TABLES

ANCHORS = ("period_start", "period_end", "lookback_start")
TRIGGERS = ("event", "encounter", "patient")
UNITS = ("episode", "patient")
SCOPES = ("patient", "index_encounter", "index_event")
CLOSES = ("window", "index_departure")
CODED_TABLES = ("diagnoses", "findings", "orders", "labs", "medications")  # value sets apply
OVERRIDABLE = ("index", "exclusions", "numerator", "components", "also_report")
_COMPARISON = re.compile(r"^(<=|>=|<|>|=)\s*(-?\d+(?:\.\d+)?)$")
_NUMERIC = ("int", "float")
# A measure id names anchors, artifact keys and perhaps one day files: letters and digits joined
# by single - _ or . (LN-01, XX-01, site.foot_2), so "../x" or "a/b" never becomes a path.
_MEASURE_ID = re.compile(r"[A-Za-z0-9]+(?:[-_.][A-Za-z0-9]+)*")


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
        match = DURATION.match(text)
        if not match:
            raise self.fail(where, f"window bound {text!r} is not like -24h, 12h, 14d or an anchor")
        return Bound(minutes=int(match.group(1)) * MINUTES[match.group(2)], strict=strict)

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
        if episodes not in ("first", "each") and not DURATION.match(episodes):
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
        optional = {
            "exclusions", "also_report", "components", "reference_hours", "target", "target_source"
        }  # fmt: skip
        self.keys("top level", data, required | optional, required)
        if not (isinstance(data["id"], str) and _MEASURE_ID.fullmatch(data["id"])):
            raise self.fail(
                "id", f"{data['id']!r} is not letters and digits joined by - _ or . (e.g. XX-01)"
            )
        if data["unit"] not in UNITS:
            raise self.fail("unit", f"must be one of {UNITS}")
        base = Definition(**self.parts("", data))
        if (data["unit"] == "patient") != (base.index.trigger == "patient"):
            raise self.fail("index", "a patient trigger goes with unit patient, and only with it")
        if not isinstance(data["versions"], list) or not data["versions"]:
            raise self.fail("versions", "needs a non-empty list")
        versions = tuple(self.version(f"versions[{i}]", v) for i, v in enumerate(data["versions"]))
        reference = data.get("reference_hours")
        target, target_source = self.target(data)
        return Measure(
            id=str(data["id"]),
            title=str(data["title"]),
            unit=data["unit"],
            type=str(data["type"]),
            source=" ".join(str(data["source"]).split()),
            base=base,
            versions=versions,
            reference_hours=float(reference) if reference is not None else None,
            target=target,
            target_source=target_source,
            path=self.path,
        )

    def target(self, data) -> tuple[float | None, str]:
        """``target`` (a rate from 0 to 1) and ``target_source`` (words), both or neither."""
        target, source = data.get("target"), " ".join(str(data.get("target_source", "")).split())
        if target is None and not source:
            return None, ""
        if target is None or not source:
            raise self.fail("target", "target and target_source go together: give both")
        if isinstance(target, bool) or not isinstance(target, int | float) or not 0 <= target <= 1:
            raise self.fail("target", f"{target!r} is not a rate from 0 to 1 (e.g. 0.9 for 90 %)")
        return float(target), source


def _date(value) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def _is_event_list(criterion: Criterion) -> bool:
    if isinstance(criterion, Leaf):
        return criterion.window is None and criterion.scope == "patient"
    if isinstance(criterion, Group) and criterion.kind == "any_of":
        return all(_is_event_list(c) and isinstance(c, Leaf) for c in criterion.children)
    return False


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
