"""Compiles one measure, for one audit month, into one set-based DuckDB query.

The query reads the canonical tables (patients, encounters, diagnoses, …) and returns one row
per case with the ``case_results`` columns. Its CTEs follow the eCQM populations:

``cand_all`` rows that can start a case (index events, encounters, or patients)
``cand``     those that pass the index conditions (``require``, look-backs included)
``ep``/``idx`` episodes: per patient the first candidate, then the first one more than the
             episode length after the previous episode's start (a recursive CTE); or the
             patient's first candidate only; or every candidate
``cases``    the episodes (or eligible patients) the audit month owns, with site and setting
``excl``     the first exclusion that matches each case, in the file's order
``num``      the earliest numerator event in its window (or ``fail``: the first reason a
             fails-if numerator is broken)
``near``     for evidence: the numerator event closest to the index, ignoring the window, and
             the first one after the window closed (a late event)
then one outcome per case: excluded, met, pending (window still open at coverage end), not_met.

Every instant is a TIMESTAMPTZ and windows are whole minutes of real elapsed time, so a window
across a daylight-saving change is measured in true hours; the connection runs in UTC.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from chartaudit.audits.measure import (
    Age,
    Bound,
    Criterion,
    Definition,
    Group,
    Leaf,
    Measure,
    Named,
    Version,
    leaves,
)
from chartaudit.audits.period import AuditPeriod
from chartaudit.audits.valuesets import ValueSet, value_set_sql
from chartaudit.schemas.contract import TABLES


@dataclass(frozen=True)
class EventTable:
    """How the engine reads one canonical table as events; SQL templates over alias ``{a}``."""

    time: str | None  # default time column
    event_id: str
    describe: str  # appended to the criterion's label
    codes: tuple[tuple[str, str], ...] = ()  # (code system, code) pairs a value set matches


def _line_id(table: str) -> str:
    # Rows without an id of their own are named by file line, which a reviewer can open.
    return f"'{table}:' || {{a}}.source_line"


EVENT_TABLES = {
    "diagnoses": EventTable(
        "recorded_time",
        _line_id("diagnoses"),
        "' ' || {a}.code",
        (("{a}.code_system", "{a}.code"),),
    ),
    "findings": EventTable(
        "recorded_time",
        _line_id("findings"),
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
        _line_id("labs"),
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


class MeasureCompiler:
    def __init__(
        self,
        measure: Measure,
        version: Version,
        value_sets: dict[str, ValueSet],
        period: AuditPeriod,
        run_id: str,
        ruleset: str = "",
    ):
        self.measure = measure
        self.version = version
        self.definition: Definition = measure.definition(version)
        self.numerator = self.definition.numerator
        self.value_sets = value_sets
        self.period = period
        self.run_id = run_id
        self.ruleset = ruleset

    # -- building blocks -------------------------------------------------------------------
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
        order = "ORDER BY priority, event_time NULLS LAST, event_id"
        return (
            f"{name} AS (SELECT case_id, first(reason {order}) AS reason,"
            f" first(event_id {order}) AS event_id, first(event_time {order}) AS event_time,"
            f" first(event_desc {order}) AS event_desc FROM ({unions}) GROUP BY case_id)"
        )

    # -- the numerator window, for pending and evidence --------------------------------------
    def numerator_criteria(self) -> list[Criterion]:
        if self.numerator.inverted:
            return [x.criterion for x in self.numerator.fails_if]
        return [self.numerator.criterion]

    def window_edge(self, side: str) -> str | None:
        """The numerator window's outer edge on one side, over all its leaves."""
        edges = []
        for criterion in self.numerator_criteria():
            for leaf in leaves(criterion):
                bound = getattr(leaf.window, side) if leaf.window else None
                if bound is not None:
                    edges.append(self.bound(bound))
        edges = list(dict.fromkeys(edges))
        if not edges:
            return None
        if len(edges) == 1:
            return edges[0]
        return f"{'least' if side == 'start' else 'greatest'}({', '.join(edges)})"

    def closes(self) -> str:
        """When the numerator can no longer change: the window's end, or the index encounter's
        departure (a missing departure counts as departed)."""
        if self.numerator.closes == "index_departure":
            return "coalesce(c.departure_time, c.index_time)"
        return self.window_edge("end") or "c.index_time"

    # -- the populations ---------------------------------------------------------------------
    def candidates(self) -> list[str]:
        index = self.definition.index
        end = ts(self.period.end)
        if index.trigger == "event":
            event_leaves = leaves(index.events)
            union = " UNION ALL ".join(
                f"SELECT e.patient_id, e.encounter_id, {self.event_time(leaf)} AS index_time,"
                f" {self.event_id(leaf.table)} AS index_event_id,"
                f" {quote(leaf.table)} AS index_table, {self.describe(leaf)} AS index_event,"
                f" {quote(leaf.path)} AS index_leaf FROM {leaf.table} e"
                f" WHERE {' AND '.join(self.leaf_conditions(leaf, correlated=False))}"
                f" AND {self.event_time(leaf)} < {end}"
                for leaf in event_leaves
            )
        elif index.trigger == "encounter":
            union = (
                "SELECT patient_id, encounter_id, arrival_time AS index_time,"
                " encounter_id AS index_event_id, 'encounters' AS index_table,"
                " 'encounter ' || encounter_id || ' ' || setting AS index_event,"
                f" NULL AS index_leaf FROM encounters WHERE arrival_time < {end}"
            )
        else:
            union = (
                f"SELECT patient_id, NULL::VARCHAR AS encounter_id, {end} AS index_time,"
                " patient_id AS index_event_id, 'patients' AS index_table,"
                " 'patient at the end of the audit month' AS index_event, NULL AS index_leaf"
                " FROM patients"
            )
        require = self.predicate(index.require) if index.require else "TRUE"
        return [
            f"cand_all AS ({union})",
            f"cand AS (SELECT * FROM cand_all c WHERE {require})",
        ]

    def episode_ctes(self) -> list[str]:
        index = self.definition.index
        if index.trigger == "patient" or index.episodes == "each":
            return ["idx AS (SELECT * FROM cand)"]
        if index.episodes == "first":
            starts = "ep AS (SELECT patient_id, min(index_time) AS start_time FROM cand GROUP BY 1)"
        else:
            gap = f"INTERVAL ({index.episode_minutes}) MINUTE"
            starts = (
                "ep(patient_id, start_time) AS ("
                " SELECT patient_id, min(index_time) FROM cand GROUP BY patient_id"
                " UNION ALL"
                " SELECT n.patient_id, min(n.index_time) FROM ep JOIN cand n"
                f" ON n.patient_id = ep.patient_id AND n.index_time > ep.start_time + {gap}"
                " GROUP BY n.patient_id)"
            )
        return [
            starts,
            # Candidates at the same instant are one case: the one with the smallest encounter
            # id stands for it (an event without an encounter only when none has one).
            "idx AS (SELECT cand.* FROM cand JOIN ep ON cand.patient_id = ep.patient_id"
            " AND cand.index_time = ep.start_time"
            " QUALIFY row_number() OVER (PARTITION BY cand.patient_id, cand.index_time"
            " ORDER BY cand.encounter_id NULLS LAST, cand.index_event_id) = 1)",
        ]

    def cases(self) -> str:
        period = self.period
        if self.definition.index.trigger == "patient":
            # A patient case is shown under the site and setting of its latest encounter.
            return (
                "cases AS (SELECT row_number() OVER (ORDER BY c.patient_id) AS case_id, c.*,"
                " last.site_id, last.setting, NULL::TIMESTAMPTZ AS arrival_time,"
                " NULL::TIMESTAMPTZ AS departure_time FROM idx c"
                " LEFT JOIN (SELECT patient_id, arg_max(site_id, arrival_time) AS site_id,"
                " arg_max(setting, arrival_time) AS setting FROM encounters"
                f" WHERE arrival_time BETWEEN {ts(period.lookback_start)} AND {ts(period.end)}"
                " GROUP BY patient_id) last USING (patient_id))"
            )
        return (
            "cases AS (SELECT row_number() OVER"
            " (ORDER BY i.patient_id, i.index_time, i.index_event_id) AS case_id, i.*,"
            " enc.site_id, enc.setting, enc.arrival_time, enc.departure_time FROM idx i"
            " LEFT JOIN encounters enc ON enc.encounter_id = i.encounter_id"
            f" WHERE i.index_time >= {ts(period.start)} AND i.index_time < {ts(period.end)})"
        )

    def numerator_ctes(self) -> list[str]:
        if self.numerator.inverted:
            return [self.first_reason("num", self.numerator.fails_if)]
        criterion = self.numerator.criterion
        nearest = "ORDER BY abs(epoch(m.event_time) - epoch(c.index_time)) NULLS LAST, m.event_id"
        late = f"m.event_time > {self.closes()}"
        return [
            f"num AS ({first_per_case(self.matches(criterion))})",
            f"near AS (SELECT m.case_id, first(m.event_id {nearest}) AS event_id,"
            f" first(m.event_time {nearest}) AS event_time,"
            f" first(m.event_desc {nearest}) AS event_desc,"
            f" min(m.event_time) FILTER (WHERE {late}) AS late_time"
            f" FROM ({self.matches(criterion, windowed=False)}) m JOIN cases c USING (case_id)"
            " GROUP BY m.case_id)",
        ]

    def fact_ctes(self) -> list[str]:
        facts = [*self.definition.components, *self.definition.also_report]
        return [
            f"fact{i} AS (SELECT DISTINCT case_id FROM ({self.matches(x.criterion)}))"
            for i, x in enumerate(facts)
        ]

    def fact_list(self, items: tuple[Named, ...], offset: int) -> str:
        """The names of the facts that hold for the case, as a list."""
        parts = [
            f"CASE WHEN case_id IN (SELECT case_id FROM fact{offset + i}) THEN {quote(x.name)} END"
            for i, x in enumerate(items)
        ]
        return f"list_filter([{', '.join(parts)}]::VARCHAR[], lambda f: f IS NOT NULL)"

    def judged(self) -> str:
        coverage = ts(self.period.coverage_end)
        window_start = self.window_edge("start") or "NULL::TIMESTAMPTZ"
        common = (
            "SELECT c.*, x.reason AS x_reason, x.event_id AS x_id, x.event_time AS x_time,"
            " x.event_desc AS x_desc, n.event_id AS n_id, n.event_time AS n_time,"
            f" n.event_desc AS n_desc, {window_start} AS window_start,"
            f" {self.closes()} AS window_end,"
        )
        if self.numerator.inverted:
            return (
                common + " n.reason AS n_reason, NULL AS near_id, NULL::TIMESTAMPTZ AS near_time,"
                " NULL AS near_desc, NULL::TIMESTAMPTZ AS late_time,"
                " CASE WHEN x.case_id IS NOT NULL THEN 'excluded'"
                " WHEN n.case_id IS NOT NULL THEN 'not_met'"
                f" WHEN {self.closes()} > {coverage} THEN 'pending'"
                " ELSE 'met' END AS outcome"
                " FROM cases c LEFT JOIN excl x USING (case_id) LEFT JOIN num n USING (case_id)"
            )
        return (
            common + " NULL AS n_reason, near.event_id AS near_id, near.event_time AS near_time,"
            " near.event_desc AS near_desc, near.late_time,"
            " CASE WHEN x.case_id IS NOT NULL THEN 'excluded'"
            " WHEN n.case_id IS NOT NULL THEN 'met'"
            f" WHEN {self.closes()} > {coverage} THEN 'pending'"
            " ELSE 'not_met' END AS outcome"
            " FROM cases c LEFT JOIN excl x USING (case_id) LEFT JOIN num n USING (case_id)"
            " LEFT JOIN near USING (case_id)"
        )

    def evidence(self) -> str:
        """Words a reviewer can check in the chart, one sentence per outcome."""
        label = quote(self.numerator.label)
        event = (
            "n_desc || coalesce(' (' || n_id || ')', '')"
            f" || coalesce(' at ' || {self.local('n_time')}, '')"
        )
        if self.measure.unit == "episode":
            event += f" || coalesce(', ' || {_duration(DECIDING_HOURS)} || ' the index', '')"
        between = (
            f"coalesce(' between ' || {self.local('window_start')}, '')"
            f" || coalesce(' and ' || {self.local('window_end')}, '')"
        )
        open_until = (
            f"'; the window closes ' || {self.local('window_end')}"
            f" || ', after the extract''s coverage end '"
            f" || {self.local(ts(self.period.coverage_end))}"
        )
        excluded = (
            "'excluded: ' || x_reason || coalesce(' — ' || x_desc || ' (' || x_id || ')', '')"
            f" || coalesce(' at ' || {self.local('x_time')}, '')"
        )
        if self.numerator.inverted:
            reasons = quote("; ".join(x.name for x in self.numerator.fails_if))
            # The window is worth naming only when it reaches past the index (LN-06's 28 days).
            met = (
                f"'met: none of: ' || {reasons}"
                f" || CASE WHEN window_end > index_time THEN {between} ELSE '' END"
            )
            not_met = f"'not met: ' || n_reason || ' — ' || {event}"
            pending = f"'pending: no ' || {label} || ' so far' || {open_until}"
        else:
            near = (
                "coalesce('; nearest outside the window: ' || near_desc || ' (' || near_id || ')'"
                f" || coalesce(' at ' || {self.local('near_time')}, ''), '')"
            )
            met = f"'met: ' || {event}"
            not_met = f"'not met: no ' || {label} || {between} || {near}"
            pending = f"'pending: no ' || {label} || ' yet' || {open_until}"
        return (
            f"CASE outcome WHEN 'excluded' THEN {excluded} WHEN 'met' THEN {met}"
            f" WHEN 'pending' THEN {pending} ELSE {not_met} END"
        )

    def ctes(self) -> list[str]:
        return [
            *self.candidates(),
            *self.episode_ctes(),
            self.cases(),
            self.first_reason("excl", self.definition.exclusions),
            *self.numerator_ctes(),
            *self.fact_ctes(),
            f"judged AS ({self.judged()})",
        ]

    def sql(self) -> str:
        m, v = self.measure, self.version
        definition = self.definition
        episode = m.unit == "episode"
        # The event that decided the case: the numerator event when met, the breaking event of
        # a fails-if numerator, and for a presence numerator not met, a late event if any.
        decided = "CASE WHEN outcome IN ('met', 'not_met') THEN coalesce(n_time, late_time) END"
        return (
            "WITH RECURSIVE\n" + ",\n".join(self.ctes()) + "\n"
            f"SELECT {quote(self.run_id)} AS run_id, {quote(self.period.period)} AS period,"
            f" {quote(self.ruleset)} AS ruleset,"
            f" {quote(m.id)} AS measure_id, {quote(v.version)} AS measure_version,"
            f" {quote(m.unit)} AS unit, patient_id, encounter_id, site_id, setting, index_time,"
            f" outcome, {self.evidence()} AS evidence,"
            " CASE outcome WHEN 'excluded' THEN x_reason WHEN 'not_met' THEN n_reason"
            " END AS reason,"
            " CASE outcome WHEN 'excluded' THEN x_id WHEN 'met' THEN n_id"
            " WHEN 'not_met' THEN coalesce(n_id, near_id) END AS evidence_id,"
            f" {f'(epoch({decided}) - epoch(index_time)) / 3600.0' if episode else 'NULL'}"
            " AS hours_to_event, window_end,"
            f" (epoch({decided}) - epoch(arrival_time)) / 3600.0 AS hours_from_arrival,"
            " index_event_id, index_event,"
            f" {self.fact_list(definition.also_report, len(definition.components))} AS flags,"
            f" {self.fact_list(definition.components, 0)} AS components"
            " FROM judged ORDER BY patient_id, index_time, index_event_id"
        )

    # -- which criteria held, for `chartaudit measures test` ---------------------------------
    def traced_leaves(self) -> list[tuple[str, Leaf]]:
        """(population, leaf) for every leaf this version judges by, in file order."""
        d = self.definition
        parts = [
            ("index", d.index.events),
            ("index", d.index.require),
            *(("exclusion", x.criterion) for x in d.exclusions),
            *(("numerator", c) for c in self.numerator_criteria()),
            *(("component", x.criterion) for x in d.components),
            *(("also report", x.criterion) for x in d.also_report),
        ]
        traced, seen = [], set()
        for part, criterion in parts:
            for leaf in leaves(criterion):
                if id(leaf) not in seen:
                    seen.add(id(leaf))
                    traced.append((part, leaf))
        return traced

    def trace_sql(self) -> str:
        """(patient_id, leaf path) for every leaf that held for one of the patient's candidate
        index events (index criteria) or cases (the other populations), ignoring the rest."""
        index = self.definition.index
        selects = ["SELECT DISTINCT patient_id, index_leaf AS leaf FROM cand_all"]
        for part, leaf in self.traced_leaves():
            if part == "index" and index.events is not None and leaf in leaves(index.events):
                continue  # named by index_leaf above
            rows = "cand_all" if part == "index" else "cases"
            selects.append(
                f"SELECT c.patient_id, {quote(leaf.path)} AS leaf FROM {rows} c"
                f" WHERE {self.predicate(leaf)}"
            )
        return (
            "WITH RECURSIVE\n" + ",\n".join(self.ctes()) + "\n"
            "SELECT DISTINCT patient_id, leaf FROM (" + " UNION ALL ".join(selects) + ")"
            " WHERE leaf IS NOT NULL"
        )


# Hours from the index to the deciding event, for the evidence sentence.
DECIDING_HOURS = "((epoch(n_time) - epoch(index_time)) / 3600.0)"
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


def _age_words(age: Age) -> str:
    if age.minimum is not None and age.maximum is not None:
        return f"age {age.minimum} to {age.maximum}"
    if age.minimum is not None:
        return f"age {age.minimum} or over"
    return f"age {age.maximum} or under"


def _duration(hours_sql: str) -> str:
    """'12 h 01 min after' / '20 h 00 min before' from a signed number of hours."""
    minutes = f"round(abs({hours_sql}) * 60)::BIGINT"
    return (
        f"(({minutes}) // 60)::VARCHAR || ' h ' || lpad((({minutes}) % 60)::VARCHAR, 2, '0')"
        f" || ' min ' || CASE WHEN {hours_sql} < 0 THEN 'before' ELSE 'after' END"
    )
