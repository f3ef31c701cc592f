"""Pending cases of earlier months, judged again on a newer extract.

A case is ``pending`` when its window was still open at the extract's coverage end. When the run
for a later month brings a newer extract, those months are judged again with the measures and
the rule set of their latest run; every case that was pending and now has another outcome takes
it, and the month gets a new ``rejudge`` run holding its cases with the new outcomes (all its
other cases unchanged), so the ``latest_*`` views show the final outcomes. A pending case the
newer extract no longer shows stays pending.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime

import duckdb

from chartaudit.audits.engine import Catalogue, MeasureRun, run_measures
from chartaudit.audits.lookback import COMPUTED, NOT_COMPUTABLE
from chartaudit.audits.period import AuditPeriod


@dataclass(frozen=True)
class RejudgeRun:
    run_id: str
    period: str
    ruleset: str
    parent_run_id: str
    changed: int


def rejudge_pending(
    con: duckdb.DuckDBPyConnection,
    catalogue: Catalogue,
    previous: str,
    timezone: str,
    coverage_end: datetime,
    triggered_by: str,
    coverage_start: date | None = None,
) -> tuple[list[RejudgeRun], list[MeasureRun]]:
    """Judge again the months in ``previous`` (a relation: the latest cases, with their run_id
    and ruleset, of earlier months that have pending cases), on the canonical tables of ``con``.
    A measure whose look-back reaches before ``coverage_start`` (the newer extract's) is not
    judged again: its pending cases stay pending (audits/lookback.py).

    Leaves in ``con`` the table ``rejudge_case_results`` (every case of each month that changed,
    under its new run id) and ``rejudged_cases`` (each case that left ``pending``)."""
    plan, ran = judge_again(
        con, catalogue, previous, timezone, coverage_end, triggered_by, coverage_start
    )
    return settle(con, previous, triggered_by, plan, ran)


RejudgePlan = list[tuple[str, str, str, str]]  # (period, parent_run_id, run_id, ruleset)


def judge_again(
    con: duckdb.DuckDBPyConnection,
    catalogue: Catalogue,
    previous: str,
    timezone: str,
    coverage_end: datetime,
    triggered_by: str,
    coverage_start: date | None = None,
) -> tuple[RejudgePlan, list[MeasureRun]]:
    """The first half of ``rejudge_pending``: each month of ``previous`` with a pending case
    judged afresh into the table ``fresh``. Per patient, so a partitioned run does it on each
    slice of patients and ``settle`` once on the union (flows/partitions.py)."""
    months = con.execute(
        f"SELECT period, any_value(run_id), any_value(ruleset) FROM {previous}"
        " GROUP BY period HAVING count(*) FILTER (WHERE outcome = 'pending') > 0 ORDER BY period"
    ).fetchall()
    con.execute("CREATE OR REPLACE TEMP TABLE fresh AS SELECT * FROM case_results WHERE FALSE")
    plan, ran = [], []
    for period, parent_run_id, ruleset in months:
        if ruleset not in catalogue.rulesets:  # a rule set this catalogue no longer has
            continue
        run_id = f"{period}_rejudged_by_{triggered_by}"
        audit = AuditPeriod.of(period, timezone, coverage_end, coverage_start)
        fresh = run_measures(con, catalogue, audit, ruleset, run_id, target="fresh")
        ran += _keep_judged_status(con, previous, period, fresh)
        plan.append((period, parent_run_id, run_id, ruleset))
    return plan, ran


def settle(
    con: duckdb.DuckDBPyConnection,
    previous: str,
    triggered_by: str,
    plan: RejudgePlan,
    ran: list[MeasureRun],
) -> tuple[list[RejudgeRun], list[MeasureRun]]:
    """The second half of ``rejudge_pending``: match ``fresh`` against the pending cases of
    ``previous`` and build the new runs of the months where one changed. A month gets a new run
    when ANY of its cases changed, so this needs every patient's cases at once."""
    con.execute(
        "CREATE OR REPLACE TEMP TABLE rejudge_plan"
        " (period VARCHAR, parent_run_id VARCHAR, run_id VARCHAR, ruleset VARCHAR)"
    )
    if plan:
        con.executemany("INSERT INTO rejudge_plan VALUES (?, ?, ?, ?)", plan)
    _match(con, previous, triggered_by)
    changed = dict(
        con.execute("SELECT rejudge_run_id, count(*) FROM rejudged_cases GROUP BY 1").fetchall()
    )
    _new_runs(con, previous)
    runs = [
        RejudgeRun(run_id, period, ruleset, parent, changed[run_id])
        for period, parent, run_id, ruleset in plan
        if run_id in changed
    ]
    return runs, [m for m in ran if m.run_id in changed]


def _keep_judged_status(
    con: duckdb.DuckDBPyConnection, previous: str, period: str, fresh: list[MeasureRun]
) -> list[MeasureRun]:
    """A measure the month's run judged keeps its cases (and status) in the rejudge run even
    when the newer extract starts too late to judge it again: only its pending cases are left
    as they were, which the status_reason says."""
    judged = {
        measure_id
        for (measure_id,) in con.execute(
            f"SELECT DISTINCT measure_id FROM {previous} WHERE period = ?", [period]
        ).fetchall()
    }
    kept = "pending cases not judged again: {}"
    return [
        replace(m, status=COMPUTED, status_reason=kept.format(m.status_reason))
        if m.status == NOT_COMPUTABLE and m.measure_id in judged
        else m
        for m in fresh
    ]


def _match(con: duckdb.DuckDBPyConnection, previous: str, triggered_by: str) -> None:
    """``rejudged_cases``: each pending case whose fresh judgement is no longer pending."""
    con.execute(
        "CREATE OR REPLACE TEMP TABLE rejudged_cases AS"
        f" SELECT {_quote(triggered_by)} AS run_id, p.period, plan.run_id AS rejudge_run_id,"
        " p.run_id AS previous_run_id, p.measure_id, p.patient_id, p.encounter_id,"
        " p.index_time, p.outcome AS previous_outcome, f.outcome, f.evidence"
        f" FROM {previous} p JOIN rejudge_plan plan ON plan.parent_run_id = p.run_id"
        " JOIN fresh f ON f.run_id = plan.run_id AND f.measure_id = p.measure_id"
        " AND f.patient_id = p.patient_id AND f.index_time = p.index_time"
        " AND f.encounter_id IS NOT DISTINCT FROM p.encounter_id"
        " WHERE p.outcome = 'pending' AND f.outcome <> 'pending'"
    )


def _new_runs(con: duckdb.DuckDBPyConnection, previous: str) -> None:
    """``rejudge_case_results``: for each month with a change, its cases under the new run id:
    the fresh judgement where a pending case changed, the earlier row everywhere else."""
    same_case = (
        "r.measure_id = {t}.measure_id AND r.patient_id = {t}.patient_id"
        " AND r.index_time = {t}.index_time"
        " AND r.encounter_id IS NOT DISTINCT FROM {t}.encounter_id"
    )
    con.execute(
        "CREATE OR REPLACE TEMP TABLE rejudge_case_results AS"
        " SELECT * EXCLUDE (new_run_id) REPLACE (new_run_id AS run_id) FROM ("
        "  SELECT p.*, plan.run_id AS new_run_id"
        f"  FROM {previous} p JOIN rejudge_plan plan ON plan.parent_run_id = p.run_id"
        "  WHERE plan.run_id IN (SELECT rejudge_run_id FROM rejudged_cases)"
        "  AND NOT EXISTS (SELECT 1 FROM rejudged_cases r WHERE r.previous_run_id = p.run_id"
        f"  AND {same_case.format(t='p')}))"
        " UNION ALL BY NAME"
        " SELECT f.* FROM fresh f WHERE EXISTS (SELECT 1 FROM rejudged_cases r"
        f" WHERE r.rejudge_run_id = f.run_id AND {same_case.format(t='f')})"
    )


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
