"""Per-measure summary rows (the `measure_summary` table) computed set-based in DuckDB.

`summarise_sql` returns ONE SELECT whose columns are exactly `measure_summary`'s, in DDL order, so a
caller can write ``INSERT INTO measure_summary <sql>`` (or wrap it in a view). `wilson_interval` is
a plain-Python oracle for the tests; nothing else uses it.

Definitions (warehouse-contract.md): denominator = met + not_met; excluded and pending are reported
beside it, never inside it; rate = met / denominator, NULL when the denominator is 0; ci_low and
ci_high are the 95 % Wilson score interval, NULL when the denominator is 0. Strata: `all` (stratum
NULL), `site` (stratum = site_id) and `setting` (stratum = setting). A case with no site_id (no
setting) is counted under stratum NULL of that kind: NULL is no value, so a real site named
`unknown` (or anything else) keeps its own row, and the `all` row is told apart by its kind
(docs/decisions.md, "A missing site or setting is its own stratum").
A measure that was not judged because its look-back reaches before the extract's start
(audits/lookback.py; `measures.status` = 'not_computable') has one `all` row with NULL counts,
rate and interval, and the reason in `status_reason`; every other row has status 'computed'.
"""

from __future__ import annotations

import math

# Two-sided 95 % normal quantile, the z of the Wilson interval.
Z_95 = 1.959963984540054

SUMMARY_COLUMNS = (
    "run_id",
    "period",
    "measure_id",
    "stratum_kind",
    "stratum",
    "denominator",
    "excluded",
    "met",
    "not_met",
    "pending",
    "rate",
    "ci_low",
    "ci_high",
    "status",
    "status_reason",
)


def summarise_sql(case_results: str = "case_results", measures: str | None = None) -> str:
    """One DuckDB SELECT turning case rows into `measure_summary` rows.

    ``case_results`` names a table, view or parenthesised subquery with the `case_results` columns
    (normally one run's rows; several runs are summarised separately, grouped by run_id and
    period). ``measures``, when given, names the `measures` rows of exactly the runs being
    summarised (run_id, measure_id, period, status, status_reason): each of those measures without
    a case gets an `all` row of zeros (rate and interval NULL), so every measure that ran has a
    row, even in a run with no case at all; a not-computable one gets NULL counts instead, and
    every row takes its measure's status and status_reason.

    The names are interpolated into the SQL as they are: pass trusted relation names only.
    Rows come out ordered by run_id, measure_id, stratum kind (all, site, setting) and stratum,
    the missing (NULL) stratum of a kind last.
    """
    zero_rows = ""
    status = "'computed' AS status, NULL::VARCHAR AS status_reason"
    status_join = ""
    if measures is not None:
        status = (
            "coalesce(st.status, 'computed') AS status, st.status_reason::VARCHAR AS status_reason"
        )
        status_join = f"""
LEFT JOIN (SELECT DISTINCT run_id, measure_id, status, status_reason FROM {measures}) AS st
    USING (run_id, measure_id)"""
        # Measures that ran but have no case: one `all` row with no outcome, counted as zeros.
        # The period is the measures row's own (a run with no case at all has one too).
        zero_rows = f"""
    UNION ALL
    SELECT m.run_id, coalesce(m.period, r.period) AS period, m.measure_id, 'all' AS stratum_kind,
           NULL::VARCHAR AS stratum, NULL::VARCHAR AS outcome
    FROM {measures} AS m
    LEFT JOIN (SELECT DISTINCT run_id, period FROM {case_results}) AS r USING (run_id)
    WHERE NOT EXISTS (
        SELECT 1 FROM {case_results} AS c
        WHERE c.run_id = m.run_id AND c.measure_id = m.measure_id
    )"""

    z = repr(Z_95)
    return f"""
WITH stratified AS (
    SELECT c.run_id, c.period, c.measure_id, k.stratum_kind,
           CASE k.stratum_kind
               WHEN 'all' THEN NULL::VARCHAR
               WHEN 'site' THEN c.site_id
               ELSE c.setting
           END AS stratum,
           c.outcome
    FROM {case_results} AS c
    CROSS JOIN (VALUES ('all'), ('site'), ('setting')) AS k(stratum_kind){zero_rows}
),
counts AS (
    SELECT run_id, period, measure_id, stratum_kind, stratum,
           count(*) FILTER (WHERE outcome = 'met') AS met,
           count(*) FILTER (WHERE outcome = 'not_met') AS not_met,
           count(*) FILTER (WHERE outcome = 'excluded') AS excluded,
           count(*) FILTER (WHERE outcome = 'pending') AS pending
    FROM stratified
    GROUP BY run_id, period, measure_id, stratum_kind, stratum
),
proportions AS (
    SELECT *,
           met + not_met AS n,
           CASE WHEN met + not_met > 0 THEN met::DOUBLE / (met + not_met) END AS p
    FROM counts
),
wilson AS (
    SELECT *,
           CASE WHEN n > 0 THEN
               (p + {z} * {z} / (2 * n)) / (1 + {z} * {z} / n)
           END AS centre,
           CASE WHEN n > 0 THEN
               {z} * sqrt(p * (1 - p) / n + {z} * {z} / (4 * n * n)) / (1 + {z} * {z} / n)
           END AS half_width
    FROM proportions
),
judged AS (
    SELECT run_id,
           period,
           measure_id,
           stratum_kind,
           stratum,
           n AS denominator,
           excluded,
           met,
           not_met,
           pending,
           p AS rate,
           CASE WHEN n = 0 THEN NULL
                WHEN met = 0 THEN 0.0
                ELSE greatest(0.0, centre - half_width) END AS ci_low,
           CASE WHEN n = 0 THEN NULL
                WHEN met = n THEN 1.0
                ELSE least(1.0, centre + half_width) END AS ci_high,
           {status}
    FROM wilson{status_join}
)
-- A measure not judged this month has no counts: NULL, not zero.
SELECT * REPLACE (
    {_null_when_not_computable("denominator")}, {_null_when_not_computable("excluded")},
    {_null_when_not_computable("met")}, {_null_when_not_computable("not_met")},
    {_null_when_not_computable("pending")}
)
FROM judged
ORDER BY run_id, measure_id,
         CASE stratum_kind WHEN 'all' THEN 0 WHEN 'site' THEN 1 ELSE 2 END,
         stratum NULLS LAST
"""


def _null_when_not_computable(column: str) -> str:
    return f"CASE WHEN status = 'not_computable' THEN NULL ELSE {column} END AS {column}"


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float] | None:
    """Wilson score interval for successes/n (None when n is 0): the test oracle.

    Computed from the roots of (p_hat - p)^2 = z^2 p (1 - p) / n, a different algebraic form from
    the centre/half-width one in the SQL, so the two check each other.
    """
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"need 0 <= successes <= n, got {successes}/{n}")
    if n == 0:
        return None
    p_hat = successes / n
    z2 = z * z
    root = z * math.sqrt(z2 + 4 * n * p_hat * (1 - p_hat))
    low = (2 * n * p_hat + z2 - root) / (2 * (n + z2))
    high = (2 * n * p_hat + z2 + root) / (2 * (n + z2))
    low = 0.0 if successes == 0 else max(0.0, low)
    high = 1.0 if successes == n else min(1.0, high)
    return low, high


# Measures judged in their run: a not-computable one has no components or timing to report.
JUDGED = "coalesce(status, 'computed') <> 'not_computable'"


def component_summary_sql(case_results: str, measures: str) -> str:
    """`component_summary` rows: for every component and also-report fact of every measure that
    ran (the names come from ``measures``, so a fact no case has still gets a row of zeros), how
    many denominator cases (met + not_met) it holds for, with a 95 % Wilson interval. A measure
    not computable in its run (not judged) has none."""
    z = repr(Z_95)
    return f"""
WITH judged_measures AS (
    SELECT * FROM {measures} WHERE {JUDGED}
),
facts AS (
    SELECT run_id, period, measure_id, 'component' AS kind, unnest(components) AS name
    FROM judged_measures
    UNION ALL
    SELECT run_id, period, measure_id, 'also_report' AS kind, unnest(also_report) AS name
    FROM judged_measures
),
judged AS (
    SELECT run_id, measure_id, components, flags FROM {case_results}
    WHERE outcome IN ('met', 'not_met')
),
counts AS (
    SELECT f.run_id, f.period, f.measure_id, f.kind, f.name,
           count(j.run_id) AS n,
           count(j.run_id) FILTER (WHERE list_contains(
               CASE f.kind WHEN 'component' THEN j.components ELSE j.flags END, f.name)
           ) AS k
    FROM facts f LEFT JOIN judged j USING (run_id, measure_id)
    GROUP BY ALL
),
wilson AS (
    SELECT *, CASE WHEN n > 0 THEN k::DOUBLE / n END AS p FROM counts
)
SELECT run_id, period, measure_id, kind, name, n AS denominator, k AS cases_with, p AS rate,
       CASE WHEN n = 0 THEN NULL WHEN k = 0 THEN 0.0 ELSE greatest(0.0,
           (p + {z} * {z} / (2 * n) - {z} * sqrt(p * (1 - p) / n + {z} * {z} / (4 * n * n)))
           / (1 + {z} * {z} / n)) END AS ci_low,
       CASE WHEN n = 0 THEN NULL WHEN k = n THEN 1.0 ELSE least(1.0,
           (p + {z} * {z} / (2 * n) + {z} * sqrt(p * (1 - p) / n + {z} * {z} / (4 * n * n)))
           / (1 + {z} * {z} / n)) END AS ci_high
FROM wilson
ORDER BY run_id, measure_id, kind, name
"""


def timing_summary_sql(case_results: str, measures: str) -> str:
    """`timing_summary` rows for timeliness measures and those with a reference line (LN-01):
    among denominator cases, how many had the event at all, the median and 90th percentile of
    hours index-to-event and arrival-to-event (linear interpolation), and how many had it by the
    reference line (LN-01: 4 h) and by the window's end (the pass mark, LN-01: 12 h).
    ``hours_to_event`` of a not-met case is its late event, if any, so the times include them.
    A measure with no reference line (or no fixed window) has NULL, not 0, in within_reference
    (within_window): there is nothing to be within. A measure with no case gets a row of zeros
    (times NULL); a measure not computable in its run (not judged) has no row."""
    return f"""
SELECT m.run_id, m.period, m.measure_id,
       count(c.run_id) AS denominator,
       count(c.hours_to_event) AS with_event,
       median(c.hours_to_event) AS median_hours,
       quantile_cont(c.hours_to_event, 0.9) AS p90_hours,
       median(c.hours_from_arrival) AS median_hours_from_arrival,
       quantile_cont(c.hours_from_arrival, 0.9) AS p90_hours_from_arrival,
       any_value(m.reference_hours) AS reference_hours,
       CASE WHEN any_value(m.reference_hours) IS NOT NULL THEN
           count(*) FILTER (WHERE c.hours_to_event <= m.reference_hours) END AS within_reference,
       any_value(m.window_hours) AS window_hours,
       CASE WHEN any_value(m.window_hours) IS NOT NULL THEN
           count(*) FILTER (WHERE c.hours_to_event <= m.window_hours) END AS within_window
FROM {measures} AS m
LEFT JOIN (SELECT * FROM {case_results} WHERE outcome IN ('met', 'not_met')) AS c
    USING (run_id, measure_id)
WHERE (m.reference_hours IS NOT NULL OR m.measure_type = 'timeliness') AND {JUDGED}
GROUP BY m.run_id, m.period, m.measure_id
ORDER BY m.run_id, m.measure_id
"""
