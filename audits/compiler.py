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
``num``      the earliest numerator event in its window (or, for a fails-if numerator, the
             first reason it is broken)
``near``     for evidence: the numerator event closest to the index, ignoring the window, and
             the first one after the window closed (a late event)
then one outcome per case: excluded, met, pending (window still open at coverage end), not_met.
How each criterion becomes SQL is in ``criteria.py``. Every instant is a TIMESTAMPTZ; the
connection runs in UTC.
"""

from __future__ import annotations

from chartaudit.audits.criteria import (
    CriteriaCompiler,
    first_per_case,
    quote,
    ts,
)
from chartaudit.audits.measure import Criterion, Definition, Leaf, Measure, Named, Version, leaves
from chartaudit.audits.period import AuditPeriod
from chartaudit.audits.valuesets import ValueSet
from chartaudit.schemas.contract import TABLES

# Candidates of one patient at one instant, in a total order: the row, then the criterion that
# made it one (a row can match two index criteria).
CANDIDATE_ORDER = "{c}.index_event_id, {c}.index_leaf NULLS LAST, {c}.index_event"


class MeasureCompiler(CriteriaCompiler):
    def __init__(
        self,
        measure: Measure,
        version: Version,
        value_sets: dict[str, ValueSet],
        period: AuditPeriod,
        run_id: str,
        ruleset: str = "",
    ):
        super().__init__(value_sets, period)
        self.measure = measure
        self.version = version
        self.definition: Definition = measure.definition(version)
        self.numerator = self.definition.numerator
        self.run_id = run_id
        self.ruleset = ruleset

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
            # id stands for it (an event without an encounter only when none has one), then
            # the smallest row id and criterion, so the choice never depends on scan order.
            "idx AS (SELECT cand.* FROM cand JOIN ep ON cand.patient_id = ep.patient_id"
            " AND cand.index_time = ep.start_time"
            " QUALIFY row_number() OVER (PARTITION BY cand.patient_id, cand.index_time"
            f" ORDER BY cand.encounter_id NULLS LAST, {CANDIDATE_ORDER.format(c='cand')}) = 1)",
        ]

    def cases(self) -> str:
        period = self.period
        if self.definition.index.trigger == "patient":
            # A patient case is shown under the site and setting of its latest encounter (of
            # two at one instant, the one with the larger id: both columns from the same row).
            latest = "ORDER BY arrival_time DESC, encounter_id DESC"
            return (
                "cases AS (SELECT row_number() OVER (ORDER BY c.patient_id) AS case_id, c.*,"
                " last.site_id, last.setting, NULL::TIMESTAMPTZ AS arrival_time,"
                " NULL::TIMESTAMPTZ AS departure_time FROM idx c"
                f" LEFT JOIN (SELECT patient_id, first(site_id {latest}) AS site_id,"
                f" first(setting {latest}) AS setting FROM encounters"
                f" WHERE arrival_time BETWEEN {ts(period.lookback_start)} AND {ts(period.end)}"
                " GROUP BY patient_id) last USING (patient_id))"
            )
        return (
            "cases AS (SELECT row_number() OVER"
            f" (ORDER BY i.patient_id, i.index_time, {CANDIDATE_ORDER.format(c='i')}) AS case_id,"
            " i.*,"
            " enc.site_id, enc.setting, enc.arrival_time, enc.departure_time FROM idx i"
            " LEFT JOIN encounters enc ON enc.encounter_id = i.encounter_id"
            f" WHERE i.index_time >= {ts(period.start)} AND i.index_time < {ts(period.end)})"
        )

    def numerator_ctes(self) -> list[str]:
        if self.numerator.inverted:
            return [self.first_reason("num", self.numerator.fails_if)]
        criterion = self.numerator.criterion
        nearest = (
            "ORDER BY abs(epoch(m.event_time) - epoch(c.index_time)) NULLS LAST,"
            " m.event_time, m.event_id NULLS LAST, m.event_desc NULLS LAST"
        )
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

    def window_edges(self) -> list[tuple[str, Leaf, str]]:
        """(population, leaf, side) of every window bound this version judges by."""
        return [
            (part, leaf, side)
            for part, leaf in self.traced_leaves()
            if leaf.window is not None
            for side in ("start", "end")
            if getattr(leaf.window, side) is not None
        ]

    def edge_sql(self) -> str:
        """(patient_id, leaf path, side, spot) for every window bound that a row of the patient
        sits exactly on (spot 'on') or one step to the other side of (spot 'off': one minute,
        or one day for a date column; outside a closed bound, inside an open one), relative to
        one of the patient's candidate index events or cases."""
        selects = []
        for part, leaf, side in self.window_edges():
            bound = getattr(leaf.window, side)
            rows = "cand_all" if part == "index" else "cases"
            column = f"e.{self.time_column(leaf)}"
            is_date = TABLES[leaf.table].column(self.time_column(leaf)).type == "date"
            edge = self.bound(bound)
            outward = -1 if side == "start" else 1
            step = outward if not bound.strict else -outward
            if is_date:
                edge = f"CAST(timezone({quote(self.period.timezone)}, {edge}) AS DATE)"
                off = f"{edge} + INTERVAL ({step}) DAY"
            else:
                off = f"{edge} + INTERVAL ({step}) MINUTE"
            where = " AND ".join(self.leaf_conditions(leaf, windowed=False))
            for spot, instant in (("on", edge), ("off", off)):
                selects.append(
                    f"SELECT c.patient_id, {quote(leaf.path)} AS leaf, {quote(side)} AS side,"
                    f" {quote(spot)} AS spot FROM {rows} c JOIN {leaf.table} e"
                    f" ON e.patient_id = c.patient_id WHERE {where} AND {column} = {instant}"
                )
        if not selects:
            selects = ["SELECT NULL AS patient_id, NULL AS leaf, NULL AS side, NULL AS spot"]
        return (
            "WITH RECURSIVE\n" + ",\n".join(self.ctes()) + "\n"
            "SELECT DISTINCT * FROM (" + " UNION ALL ".join(selects) + ") WHERE leaf IS NOT NULL"
        )


# Hours from the index to the deciding event, for the evidence sentence.
DECIDING_HOURS = "((epoch(n_time) - epoch(index_time)) / 3600.0)"


def _duration(hours_sql: str) -> str:
    """'12 h 01 min after' / '20 h 00 min before' from a signed number of hours."""
    minutes = f"round(abs({hours_sql}) * 60)::BIGINT"
    return (
        f"(({minutes}) // 60)::VARCHAR || ' h ' || lpad((({minutes}) % 60)::VARCHAR, 2, '0')"
        f" || ' min ' || CASE WHEN {hours_sql} < 0 THEN 'before' ELSE 'after' END"
    )
