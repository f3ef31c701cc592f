"""Criteria as SQL: the leaves, groups and windows of a measure file, compiled against the
canonical tables for one audit month.

A criterion is used in two ways. As a *predicate* over the case ``c`` (index conditions,
look-backs, ``none_of``): "such a row exists". As *matches* (exclusions, numerators, facts):
one row per matching event with its id, time and a description, so that the case's evidence can
name the row a reviewer opens in the chart. Rows are aliased ``e`` (``e1`` inside
``in_same_encounter``); windows are whole minutes of real elapsed time from the anchor.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from chartaudit.audits.measure import Age, Bound, Criterion, Group, Leaf, Named, leaves
from chartaudit.audits.period import AuditPeriod
from chartaudit.audits.valuesets import ValueSet, value_set_sql
from chartaudit.schemas.contract import TABLES
from chartaudit.schemas.results import ROW_ID


@dataclass(frozen=True)
class EventTable:
    """How the engine reads one canonical table as events; SQL templates over alias ``{a}``."""

    time: str | None  # default time column
    event_id: str
    describe: str  # appended to the criterion's label
    codes: tuple[tuple[str, str], ...] = ()  # (code system, code) pairs a value set matches


# Rows without an id of their own are named by their content (schemas/results.py ROW_ID), not
# by file line: the same row gets the same name wherever it sits in the file, in CSV or Parquet,
# and ties between events at one instant are broken the same way every run.
_ROW_ID = "{a}." + ROW_ID


EVENT_TABLES = {
    "diagnoses": EventTable(
        "recorded_time",
        _ROW_ID,
        "' ' || {a}.code",
        (("{a}.code_system", "{a}.code"),),
    ),
    "findings": EventTable(
        "recorded_time",
        _ROW_ID,
        "' ' || {a}.code || ' ' || {a}.result || coalesce(' ' || {a}.value_num, '')",
        (("{a}.code_system", "{a}.code"),),
    ),
    "orders": EventTable(
        "ordered_time",
        "{a}.order_id",
        "' ' || {a}.code || coalesce(' ' || {a}.specialty, '') || ' ' || {a}.status",
        (("{a}.code_system", "{a}.code"),),
    ),
    "labs": EventTable(
        "collected_time",
        _ROW_ID,
        "' ' || {a}.loinc || coalesce(' = ' || {a}.value_num, '')",
        (("'LOINC'", "{a}.loinc"),),
    ),
    "medications": EventTable(
        "start_time",
        "{a}.medication_id",
        "' ' || {a}.ingredient || coalesce(' ' || {a}.dose_mg || ' mg', '')"
        " || coalesce(' x ' || {a}.doses_per_day || '/day', '')",
        (("'INGREDIENT'", "{a}.ingredient"),),
    ),
    "encounters": EventTable(
        "arrival_time",
        "{a}.encounter_id",
        "' ' || {a}.encounter_id || ' ' || {a}.setting"
        " || coalesce(' (' || {a}.disposition || ')', '')",
    ),
    "patients": EventTable(None, "{a}.patient_id", "''"),
}


@dataclass(frozen=True)
class Anchor:
    """What a criterion's rows are matched against: the case ``c``, or (``in_same_encounter``)
    an outer row. Window bounds are relative to ``time``."""

    patient: str
    time: str
    encounter: str
    depth: int = 0
    nested: bool = False

    @property
    def alias(self) -> str:
        return "e" if self.depth == 0 else f"e{self.depth}"


CASE = Anchor("c.patient_id", "c.index_time", "c.encounter_id")


def ts(instant: datetime) -> str:
    return f"TIMESTAMPTZ '{instant.isoformat()}'"


def quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _fill(template: str, alias: str) -> str:
    return template.replace("{a}", alias)


class CriteriaCompiler:
    """Compiles criteria to SQL for one audit month, with the catalogue's value sets."""

    def __init__(self, value_sets: dict[str, ValueSet], period: AuditPeriod):
        self.value_sets = value_sets
        self.period = period

    def local(self, expr: str) -> str:
        """An instant shown as local wall-clock time, for evidence a reviewer reads."""
        return f"strftime(timezone({quote(self.period.timezone)}, {expr}), '%Y-%m-%d %H:%M')"

    def bound(self, bound: Bound, anchor: Anchor = CASE) -> str:
        """A window edge: an anchor of the month, or minutes from the anchor's time."""
        if bound.anchor:
            return ts(getattr(self.period, _ANCHOR_FIELDS[bound.anchor]))
        return f"({anchor.time} + INTERVAL ({bound.minutes}) MINUTE)"

    def time_column(self, leaf: Leaf) -> str | None:
        return leaf.time or EVENT_TABLES[leaf.table].time

    def event_id(self, table: str, alias: str = "e") -> str:
        return _fill(EVENT_TABLES[table].event_id, alias)

    def row_filters(self, leaf: Leaf, alias: str, with_extras: bool = True) -> list[str]:
        """What the row itself must hold: its code, column values and comparisons."""
        table = EVENT_TABLES[leaf.table]
        conditions = []
        if leaf.value_set:
            vs = self.value_sets[leaf.value_set]
            tests = [value_set_sql(vs, _fill(s, alias), _fill(c, alias)) for s, c in table.codes]
            conditions.append("(" + " OR ".join(tests) + ")")
        for column, values in leaf.where:
            conditions.append(f"{alias}.{column} IN ({', '.join(quote(v) for v in values)})")
        if with_extras:
            conditions += [f"{alias}.{c.column} {c.op} {c.value!r}" for c in leaf.compare]
            if leaf.sql:
                conditions.append(f"({leaf.sql})")
        return conditions

    def leaf_conditions(
        self, leaf: Leaf, anchor: Anchor = CASE, correlated: bool = True, windowed: bool = True
    ) -> list[str]:
        alias = anchor.alias
        conditions = []
        if correlated:
            conditions.append(f"{alias}.patient_id = {anchor.patient}")
            if anchor.nested:
                conditions.append(f"{alias}.encounter_id = {anchor.encounter}")
            elif leaf.scope == "index_encounter":
                conditions.append(f"{alias}.encounter_id = c.encounter_id")
            elif leaf.scope == "index_event":
                conditions.append(
                    f"c.index_table = {quote(leaf.table)}"
                    f" AND {self.event_id(leaf.table, alias)} = c.index_event_id"
                )
        conditions += self.row_filters(leaf, alias)
        time = self.time_column(leaf)
        if windowed and leaf.window is not None:
            conditions += self.window_conditions(leaf, f"{alias}.{time}", anchor)
        if leaf.earliest_per:
            conditions.append(self.earliest(leaf, alias))
        if leaf.in_same_encounter is not None:
            inner = Anchor(
                f"{alias}.patient_id",
                f"{alias}.{time}",
                f"{alias}.encounter_id",
                anchor.depth + 1,
                nested=True,
            )
            conditions.append(self.predicate(leaf.in_same_encounter, inner))
        return conditions or ["TRUE"]

    def earliest(self, leaf: Leaf, alias: str) -> str:
        """No earlier row of the patient (per the listed columns) with the same code and values."""
        other = f"p{alias}"
        time = self.time_column(leaf)
        same = [f"{other}.{column} = {alias}.{column}" for column in leaf.earliest_per]
        among = replace(leaf, value_set=leaf.earliest_among or leaf.value_set)
        filters = self.row_filters(among, other, with_extras=False)
        where = " AND ".join([*same, *filters, f"{other}.{time} < {alias}.{time}"])
        return f"NOT EXISTS (SELECT 1 FROM {leaf.table} {other} WHERE {where})"

    def window_conditions(self, leaf: Leaf, column: str, anchor: Anchor = CASE) -> list[str]:
        is_date = TABLES[leaf.table].column(column.split(".", 1)[1]).type == "date"
        conditions = []
        for bound, strict_op, op in (
            (leaf.window.start, ">", ">="),
            (leaf.window.end, "<", "<="),
        ):
            if bound is None:
                continue
            edge = self.bound(bound, anchor)
            if is_date:  # a date column is compared with the local calendar date of the edge
                edge = f"CAST(timezone({quote(self.period.timezone)}, {edge}) AS DATE)"
            conditions.append(f"{column} {strict_op if bound.strict else op} {edge}")
        return conditions

    def event_time(self, leaf: Leaf, alias: str = "e") -> str:
        time = self.time_column(leaf)
        if time is None:
            return "NULL::TIMESTAMPTZ"
        if TABLES[leaf.table].column(time).type == "date":
            return f"timezone({quote(self.period.timezone)}, {alias}.{time}::TIMESTAMP)"
        return f"{alias}.{time}"

    def describe(self, leaf: Leaf, alias: str = "e") -> str:
        return f"{quote(leaf.label)} || {_fill(EVENT_TABLES[leaf.table].describe, alias)}"

    # -- criteria as predicates (index conditions, none_of, nested) -------------------------
    def predicate(self, criterion: Criterion, anchor: Anchor = CASE) -> str:
        if isinstance(criterion, Age):
            alias = anchor.alias
            tests = [f"{alias}.patient_id = {anchor.patient}"]
            age = f"{self.period.year} - {alias}.birth_year"
            if criterion.minimum is not None:
                tests.append(f"{age} >= {criterion.minimum}")
            if criterion.maximum is not None:
                tests.append(f"{age} <= {criterion.maximum}")
            return f"EXISTS (SELECT 1 FROM patients {alias} WHERE {' AND '.join(tests)})"
        if isinstance(criterion, Group):
            joiner = " AND " if criterion.kind == "all_of" else " OR "
            inner = "(" + joiner.join(self.predicate(c, anchor) for c in criterion.children) + ")"
            return f"(NOT {inner})" if criterion.kind == "none_of" else inner
        where = " AND ".join(self.leaf_conditions(criterion, anchor))
        return f"EXISTS (SELECT 1 FROM {criterion.table} {anchor.alias} WHERE {where})"

    # -- criteria as matching events (exclusions, numerator, facts; with evidence) ----------
    def matches(self, criterion: Criterion, windowed: bool = True) -> str:
        """SQL returning (case_id, event_id, event_time, event_desc) for every match."""
        if isinstance(criterion, Age):
            return (
                "SELECT c.case_id, c.patient_id AS event_id, NULL::TIMESTAMPTZ AS event_time,"
                f" {quote(_age_words(criterion))} AS event_desc FROM cases c"
                f" WHERE {self.predicate(criterion)}"
            )
        if isinstance(criterion, Group) and criterion.kind == "any_of":
            return " UNION ALL ".join(f"({self.matches(c, windowed)})" for c in criterion.children)
        if isinstance(criterion, Group) and criterion.kind == "all_of":
            return self.all_of_matches(criterion, windowed)
        if isinstance(criterion, Group):  # none_of: the case has none of them (in its window)
            labels = "; ".join(leaf.label for leaf in leaves(criterion)) or "the listed facts"
            return (
                "SELECT c.case_id, NULL::VARCHAR AS event_id, NULL::TIMESTAMPTZ AS event_time,"
                f" {quote('no ' + labels)} AS event_desc FROM cases c"
                f" WHERE {self.predicate(criterion)}"
            )
        where = " AND ".join(self.leaf_conditions(criterion, windowed=windowed))
        return (
            f"SELECT c.case_id, {self.event_id(criterion.table)} AS event_id,"
            f" {self.event_time(criterion)} AS event_time,"
            f" {self.describe(criterion)} AS event_desc"
            f" FROM cases c JOIN {criterion.table} e ON e.patient_id = c.patient_id"
            f" WHERE {where}"
        )

    def all_of_matches(self, group: Group, windowed: bool) -> str:
        """All children matched: the case is decided when the last of them happened."""
        parts = [
            f"({first_per_case(self.matches(c, windowed))}) k{i}"
            for i, c in enumerate(group.children)
        ]
        keys = [f"k{i}" for i in range(len(parts))]
        joined = parts[0] + "".join(f" JOIN {p} USING (case_id)" for p in parts[1:])
        return (
            "SELECT case_id,"
            f" concat_ws('; ', {', '.join(k + '.event_id' for k in keys)}) AS event_id,"
            f" greatest({', '.join(k + '.event_time' for k in keys)}) AS event_time,"
            f" concat_ws('; ', {', '.join(k + '.event_desc' for k in keys)}) AS event_desc"
            f" FROM {joined}"
        )

    def first_reason(self, name: str, items: tuple[Named, ...]) -> str:
        """The first item (in file order) that matches each case: exclusions, failures."""
        if not items:
            return (
                f"{name} AS (SELECT NULL::BIGINT AS case_id, NULL::VARCHAR AS reason,"
                " NULL::VARCHAR AS event_id, NULL::TIMESTAMPTZ AS event_time,"
                " NULL::VARCHAR AS event_desc WHERE FALSE)"
            )
        unions = " UNION ALL ".join(
            f"SELECT {i} AS priority, {quote(x.name)} AS reason, m.*"
            f" FROM ({self.matches(x.criterion)}) m"
            for i, x in enumerate(items)
        )
        order = f"ORDER BY priority, {EVENT_ORDER}"
        return (
            f"{name} AS (SELECT case_id, first(reason {order}) AS reason,"
            f" first(event_id {order}) AS event_id, first(event_time {order}) AS event_time,"
            f" first(event_desc {order}) AS event_desc FROM ({unions}) GROUP BY case_id)"
        )


_ANCHOR_FIELDS = {
    "period_start": "start",
    "period_end": "end",
    "lookback_start": "lookback_start",
}


# A total order of the matches of one case: time, then the row's id, then what it is (one row
# can match two criteria with different labels), so first() never picks by scan order.
EVENT_ORDER = "event_time NULLS LAST, event_id NULLS LAST, event_desc NULLS LAST"


def first_per_case(matches: str) -> str:
    """The earliest match per case (events without a time last, then by id, then by words)."""
    order = f"ORDER BY {EVENT_ORDER}"
    return (
        f"SELECT case_id, first(event_id {order}) AS event_id, min(event_time) AS event_time,"
        f" first(event_desc {order}) AS event_desc FROM ({matches}) GROUP BY case_id"
    )


def _age_words(age: Age) -> str:
    if age.minimum is not None and age.maximum is not None:
        return f"age {age.minimum} to {age.maximum}"
    if age.minimum is not None:
        return f"age {age.minimum} or over"
    return f"age {age.maximum} or under"
