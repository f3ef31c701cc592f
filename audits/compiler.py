"""Compiles one measure, for one audit month, into one set-based DuckDB query.

The query reads the canonical tables (patients, encounters, diagnoses, …) and returns one row
per case with the ``case_results`` columns. Its CTEs follow the eCQM populations:

``cand``  candidate index events (or encounters, or patients) that meet the index criteria
``ep``    episodes: per patient the first candidate, then the first one more than
          ``episode_days`` after the previous episode's start (a recursive CTE)
``cases`` the episodes (or eligible patients) the audit month owns, with site and setting
``excl``  the first exclusion that matches each case, in the file's order
``num``   the earliest numerator event in its window
``near``  for evidence: the numerator event closest to the index, ignoring the window
then one outcome per case: excluded, met, pending (window still open at coverage end), not_met.

Every instant is a TIMESTAMPTZ and windows are whole minutes of real elapsed time, so a window
across a daylight-saving change is measured in true hours; the connection runs in UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from chartaudit.audits.measure import Bound, Criterion, Group, Leaf, Measure, MinAge, Version
from chartaudit.audits.period import AuditPeriod
from chartaudit.audits.valuesets import ValueSet, value_set_sql
from chartaudit.schemas.contract import TABLES


@dataclass(frozen=True)
class EventTable:
    """How the engine reads one canonical table as events."""

    time: str | None  # default time column
    event_id: str  # SQL over alias e
    describe: str  # SQL over alias e, appended to the criterion's label
    system: str | None = None  # SQL giving the code system
    code: str | None = None  # SQL giving the normalised code


def _line_id(table: str) -> str:
    # Rows without an id of their own are named by file line, which a reviewer can open.
    return f"'{table}:' || e.source_line"


EVENT_TABLES = {
    "diagnoses": EventTable(
        "recorded_time", _line_id("diagnoses"), "' ' || e.code", "e.code_system", "e.code"
    ),
    "findings": EventTable(
        "recorded_time",
        _line_id("findings"),
        "' ' || e.code || ' ' || e.result",
        "e.code_system",
        "e.code",
    ),
    "orders": EventTable("ordered_time", "e.order_id", "' ' || e.code", "e.code_system", "e.code"),
    "labs": EventTable(
        "collected_time",
        _line_id("labs"),
        "' ' || e.loinc || coalesce(' = ' || e.value_num, '')",
        "'LOINC'",
        "e.loinc",
    ),
    "medications": EventTable(
        "start_time", "e.medication_id", "' ' || e.ingredient", "'INGREDIENT'", "e.ingredient"
    ),
    "encounters": EventTable(
        "arrival_time", "e.encounter_id", "coalesce(' (' || e.disposition || ')', '')"
    ),
    "patients": EventTable(None, "e.patient_id", "''"),
}


def ts(instant: datetime) -> str:
    return f"TIMESTAMPTZ '{instant.isoformat()}'"


def quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class MeasureCompiler:
    def __init__(
        self,
        measure: Measure,
        version: Version,
        value_sets: dict[str, ValueSet],
        period: AuditPeriod,
        run_id: str,
    ):
        self.measure = measure
        self.version = version
        self.numerator = measure.numerator_for(version)
        self.value_sets = value_sets
        self.period = period
        self.run_id = run_id

    # -- building blocks -------------------------------------------------------------------
    def local(self, expr: str) -> str:
        """An instant shown as local wall-clock time, for evidence a reviewer reads."""
        return f"strftime(timezone({quote(self.period.timezone)}, {expr}), '%Y-%m-%d %H:%M')"

    def bound(self, bound: Bound) -> str:
        """A window edge for the case ``c``: an anchor of the month, or minutes from the index."""
        if bound.anchor:
            return ts(getattr(self.period, _ANCHOR_FIELDS[bound.anchor]))
        return f"(c.index_time + INTERVAL ({bound.minutes}) MINUTE)"

    def leaf_conditions(self, leaf: Leaf, correlated: bool = True, windowed: bool = True):
        table = EVENT_TABLES[leaf.table]
        conditions = []
        if correlated:
            conditions.append("e.patient_id = c.patient_id")
            if leaf.scope == "index_encounter":
                conditions.append("e.encounter_id = c.encounter_id")
        if leaf.value_set:
            vs = self.value_sets[leaf.value_set]
            conditions.append(value_set_sql(vs, table.system, table.code))
        for column, values in leaf.where:
            conditions.append(f"e.{column} IN ({', '.join(quote(v) for v in values)})")
        time = leaf.time or table.time
        if windowed and leaf.window is not None:
            conditions += self.window_conditions(leaf, f"e.{time}")
        if leaf.sql:
            conditions.append(f"({leaf.sql})")
        return conditions or ["TRUE"]

    def window_conditions(self, leaf: Leaf, column: str) -> list[str]:
        is_date = TABLES[leaf.table].column(column.removeprefix("e.")).type == "date"
        conditions = []
        for bound, op in ((leaf.window.start, ">="), (leaf.window.end, "<=")):
            if bound is None:
                continue
            edge = self.bound(bound)
            if is_date:  # a date column is compared with the local calendar date of the edge
                edge = f"CAST(timezone({quote(self.period.timezone)}, {edge}) AS DATE)"
            conditions.append(f"{column} {op} {edge}")
        return conditions

    def event_time(self, leaf: Leaf) -> str:
        time = leaf.time or EVENT_TABLES[leaf.table].time
        if time is None:
            return "NULL::TIMESTAMPTZ"
        if TABLES[leaf.table].column(time).type == "date":
            return f"timezone({quote(self.period.timezone)}, e.{time}::TIMESTAMP)"
        return f"e.{time}"

    def describe(self, leaf: Leaf) -> str:
        return f"{quote(leaf.label)} || {EVENT_TABLES[leaf.table].describe}"

    # -- criteria as predicates (index and eligibility) -------------------------------------
    def predicate(self, criterion: Criterion) -> str:
        if isinstance(criterion, MinAge):
            return (
                "EXISTS (SELECT 1 FROM patients e WHERE e.patient_id = c.patient_id"
                f" AND {self.period.year} - e.birth_year >= {criterion.years})"
            )
        if isinstance(criterion, Group):
            joiner = " OR " if criterion.kind == "any_of" else " AND "
            return "(" + joiner.join(self.predicate(c) for c in criterion.children) + ")"
        where = " AND ".join(self.leaf_conditions(criterion))
        return f"EXISTS (SELECT 1 FROM {criterion.table} e WHERE {where})"

    # -- criteria as matching events (exclusions and numerator, with evidence) --------------
    def matches(self, criterion: Criterion, windowed: bool = True) -> str:
        """SQL returning (case_id, event_id, event_time, event_desc) for every match."""
        if isinstance(criterion, MinAge):
            return (
                "SELECT c.case_id, c.patient_id AS event_id, NULL::TIMESTAMPTZ AS event_time,"
                f" 'age {criterion.years} or over' AS event_desc FROM cases c JOIN patients e"
                f" ON e.patient_id = c.patient_id"
                f" WHERE {self.period.year} - e.birth_year >= {criterion.years}"
            )
        if isinstance(criterion, Group) and criterion.kind == "any_of":
            return " UNION ALL ".join(f"({self.matches(c, windowed)})" for c in criterion.children)
        if isinstance(criterion, Group):
            return self.all_of_matches(criterion, windowed)
        where = " AND ".join(self.leaf_conditions(criterion, windowed=windowed))
        return (
            f"SELECT c.case_id, {EVENT_TABLES[criterion.table].event_id} AS event_id,"
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

    # -- the numerator window, for pending and evidence --------------------------------------
    def window_edge(self, criterion: Criterion, side: str) -> str | None:
        """The numerator window's outer edge on one side, over all its leaves."""
        if isinstance(criterion, Leaf):
            bound = getattr(criterion.window, side) if criterion.window else None
            return self.bound(bound) if bound else None
        if isinstance(criterion, MinAge):
            return None
        edges = [self.window_edge(c, side) for c in criterion.children]
        edges = [e for e in edges if e is not None]
        if not edges:
            return None
        return f"{'least' if side == 'start' else 'greatest'}({', '.join(edges)})"

    # -- the populations ---------------------------------------------------------------------
    def candidates(self) -> str:
        index = self.measure.index
        period = self.period
        if index.trigger == "event":
            leaves = (
                [index.criterion] if isinstance(index.criterion, Leaf) else index.criterion.children
            )
            return " UNION ALL ".join(
                f"SELECT e.patient_id, e.encounter_id, {self.event_time(leaf)} AS index_time,"
                f" {EVENT_TABLES[leaf.table].event_id} AS index_event_id,"
                f" {self.describe(leaf)} AS index_event"
                f" FROM {leaf.table} e"
                f" WHERE {' AND '.join(self.leaf_conditions(leaf, correlated=False))}"
                f" AND {self.event_time(leaf)} < {ts(period.end)}"
                for leaf in leaves
            )
        if index.trigger == "encounter":
            base = (
                "SELECT patient_id, encounter_id, arrival_time AS index_time,"
                " encounter_id AS index_event_id, 'encounter ' || setting AS index_event"
                f" FROM encounters WHERE arrival_time < {ts(period.end)}"
            )
        else:
            base = (
                f"SELECT patient_id, NULL::VARCHAR AS encounter_id, {ts(period.end)} AS index_time,"
                " patient_id AS index_event_id, 'patient at the end of the audit month' AS"
                " index_event FROM patients"
            )
        predicate = self.predicate(index.criterion) if index.criterion else "TRUE"
        return f"SELECT * FROM ({base}) c WHERE {predicate}"

    def cases(self) -> str:
        period = self.period
        if self.measure.index.trigger == "patient":
            # A patient case is shown under the site and setting of its latest encounter.
            return (
                "SELECT row_number() OVER (ORDER BY c.patient_id) AS case_id, c.*,"
                " last.site_id, last.setting, NULL::TIMESTAMPTZ AS arrival_time FROM cand c"
                " LEFT JOIN (SELECT patient_id, arg_max(site_id, arrival_time) AS site_id,"
                " arg_max(setting, arrival_time) AS setting FROM encounters"
                f" WHERE arrival_time BETWEEN {ts(period.lookback_start)} AND {ts(period.end)}"
                " GROUP BY patient_id) last USING (patient_id)"
            )
        return (
            "SELECT row_number() OVER (ORDER BY i.patient_id, i.index_time) AS case_id, i.*,"
            " enc.site_id, enc.setting, enc.arrival_time FROM idx i"
            " LEFT JOIN encounters enc ON enc.encounter_id = i.encounter_id"
            f" WHERE i.index_time >= {ts(period.start)} AND i.index_time < {ts(period.end)}"
        )

    def episode_ctes(self) -> list[str]:
        if self.measure.index.trigger == "patient":
            return []
        gap = f"INTERVAL ({self.measure.index.episode_days * 24}) HOUR"
        return [
            "ep(patient_id, start_time) AS ("
            " SELECT patient_id, min(index_time) FROM cand GROUP BY patient_id"
            " UNION ALL"
            " SELECT n.patient_id, min(n.index_time) FROM ep JOIN cand n"
            f" ON n.patient_id = ep.patient_id AND n.index_time > ep.start_time + {gap}"
            " GROUP BY n.patient_id)",
            # One index event per episode: prefer one tied to an encounter, then the lowest id.
            "idx AS (SELECT cand.* FROM cand JOIN ep ON cand.patient_id = ep.patient_id"
            " AND cand.index_time = ep.start_time"
            " QUALIFY row_number() OVER (PARTITION BY cand.patient_id, cand.index_time"
            " ORDER BY cand.encounter_id IS NULL, cand.index_event_id) = 1)",
        ]

    def exclusion_ctes(self) -> list[str]:
        if not self.measure.exclusions:
            return [
                "excl AS (SELECT NULL::BIGINT AS case_id, NULL AS reason, NULL AS event_id,"
                " NULL::TIMESTAMPTZ AS event_time, NULL AS event_desc WHERE FALSE)"
            ]
        unions = " UNION ALL ".join(
            f"SELECT {i} AS priority, {quote(x.reason)} AS reason, m.*"
            f" FROM ({self.matches(x.criterion)}) m"
            for i, x in enumerate(self.measure.exclusions)
        )
        order = "ORDER BY priority, event_time NULLS LAST, event_id"
        return [
            f"excl AS (SELECT case_id, first(reason {order}) AS reason,"
            f" first(event_id {order}) AS event_id, first(event_time {order}) AS event_time,"
            f" first(event_desc {order}) AS event_desc FROM ({unions}) GROUP BY case_id)"
        ]

    def numerator_ctes(self) -> list[str]:
        criterion = self.numerator.criterion
        nearest = "ORDER BY abs(epoch(m.event_time) - epoch(c.index_time)) NULLS LAST, m.event_id"
        return [
            f"num AS ({first_per_case(self.matches(criterion))})",
            "near AS (SELECT m.case_id, first(m.event_id " + nearest + ") AS event_id,"
            f" first(m.event_time {nearest}) AS event_time,"
            f" first(m.event_desc {nearest}) AS event_desc"
            f" FROM ({self.matches(criterion, windowed=False)}) m JOIN cases c USING (case_id)"
            " GROUP BY m.case_id)",
        ]

    def flag_ctes(self) -> list[str]:
        return [
            f"flag{i} AS (SELECT DISTINCT case_id FROM ({self.matches(x.criterion)}))"
            for i, x in enumerate(self.measure.also_report)
        ]

    def flags(self) -> str:
        """The names of the also-report facts that hold for the case, as a list."""
        items = [
            f"CASE WHEN case_id IN (SELECT case_id FROM flag{i}) THEN {quote(x.name)} END"
            for i, x in enumerate(self.measure.also_report)
        ]
        return f"list_filter([{', '.join(items)}]::VARCHAR[], lambda f: f IS NOT NULL)"

    def judged(self) -> str:
        criterion = self.numerator.criterion
        window_end = self.window_edge(criterion, "end") or "c.index_time"
        window_start = self.window_edge(criterion, "start") or "NULL::TIMESTAMPTZ"
        coverage = ts(self.period.coverage_end)
        return (
            "SELECT c.*, x.reason AS x_reason, x.event_id AS x_id, x.event_time AS x_time,"
            " x.event_desc AS x_desc, n.event_id AS n_id, n.event_time AS n_time,"
            " n.event_desc AS n_desc, near.event_id AS near_id, near.event_time AS near_time,"
            f" near.event_desc AS near_desc, {window_start} AS window_start,"
            f" {window_end} AS window_end,"
            " CASE WHEN x.case_id IS NOT NULL THEN 'excluded'"
            " WHEN n.case_id IS NOT NULL THEN 'met'"
            f" WHEN {window_end} > {coverage} THEN 'pending'"
            " ELSE 'not_met' END AS outcome"
            " FROM cases c LEFT JOIN excl x USING (case_id) LEFT JOIN num n USING (case_id)"
            " LEFT JOIN near USING (case_id)"
        )

    def evidence(self) -> str:
        """Words a reviewer can check in the chart, one sentence per outcome."""
        label = quote(self.numerator.label)
        after_index = self.measure.unit == "episode"
        met = (
            f"'met: ' || n_desc || ' (' || n_id || ')'"
            f" || coalesce(' at ' || {self.local('n_time')}, '')"
        )
        if after_index:
            met += f" || coalesce(', ' || {_duration(HOURS_TO_EVENT)} || ' the index', '')"
        near = (
            "coalesce('; nearest outside the window: ' || near_desc || ' (' || near_id || ')'"
            f" || coalesce(' at ' || {self.local('near_time')}, ''), '')"
        )
        not_met = (
            f"'not met: no ' || {label}"
            f" || coalesce(' between ' || {self.local('window_start')}, '')"
            f" || coalesce(' and ' || {self.local('window_end')}, '') || {near}"
        )
        pending = (
            f"'pending: no ' || {label} || ' yet; the window closes '"
            f" || {self.local('window_end')} || ', after the extract''s coverage end '"
            f" || {self.local(ts(self.period.coverage_end))}"
        )
        excluded = (
            "'excluded: ' || x_reason || coalesce(' — ' || x_desc || ' (' || x_id || ')', '')"
            f" || coalesce(' at ' || {self.local('x_time')}, '')"
        )
        return (
            f"CASE outcome WHEN 'excluded' THEN {excluded} WHEN 'met' THEN {met}"
            f" WHEN 'pending' THEN {pending} ELSE {not_met} END"
        )

    def sql(self) -> str:
        m, v = self.measure, self.version
        ctes = [
            f"cand AS ({self.candidates()})",
            *self.episode_ctes(),
            f"cases AS ({self.cases()})",
            *self.exclusion_ctes(),
            *self.numerator_ctes(),
            *self.flag_ctes(),
            f"judged AS ({self.judged()})",
        ]
        hours_to_event = HOURS_TO_EVENT if m.unit == "episode" else "NULL::DOUBLE"
        return (
            "WITH RECURSIVE " + ",\n".join(ctes) + "\n"
            f"SELECT {quote(self.run_id)} AS run_id, {quote(self.period.period)} AS period,"
            f" {quote(m.id)} AS measure_id, {quote(v.version)} AS measure_version,"
            f" {quote(m.unit)} AS unit, patient_id, encounter_id, site_id, setting, index_time,"
            f" outcome, {self.evidence()} AS evidence,"
            " CASE outcome WHEN 'excluded' THEN x_id WHEN 'met' THEN n_id"
            " WHEN 'not_met' THEN near_id END AS evidence_id,"
            f" CASE WHEN outcome = 'met' THEN {hours_to_event} END AS hours_to_event,"
            " window_end,"
            " CASE WHEN outcome = 'met' THEN (epoch(n_time) - epoch(arrival_time)) / 3600.0"
            " END AS hours_from_arrival,"
            f" index_event_id, index_event, {self.flags()} AS flags"
            " FROM judged ORDER BY patient_id, index_time"
        )


HOURS_TO_EVENT = "((epoch(n_time) - epoch(index_time)) / 3600.0)"
_ANCHOR_FIELDS = {
    "period_start": "start",
    "period_end": "end",
    "lookback_start": "lookback_start",
}


def first_per_case(matches: str) -> str:
    """The earliest match per case (events without a time last, then by id)."""
    order = "ORDER BY event_time NULLS LAST, event_id"
    return (
        f"SELECT case_id, first(event_id {order}) AS event_id, min(event_time) AS event_time,"
        f" first(event_desc {order}) AS event_desc FROM ({matches}) GROUP BY case_id"
    )


def _duration(hours_sql: str) -> str:
    """'12 h 01 min after' / '20 h 00 min before' from a signed number of hours."""
    minutes = f"round(abs({hours_sql}) * 60)::BIGINT"
    return (
        f"(({minutes}) // 60)::VARCHAR || ' h ' || lpad((({minutes}) % 60)::VARCHAR, 2, '0')"
        f" || ' min ' || CASE WHEN {hours_sql} < 0 THEN 'before' ELSE 'after' END"
    )
