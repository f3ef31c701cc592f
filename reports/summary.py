"""Per-measure summary rows (the `measure_summary` table) computed set-based in DuckDB.

`summarise_sql` returns ONE SELECT whose columns are exactly `measure_summary`'s, in DDL order, so a
caller can write ``INSERT INTO measure_summary <sql>`` (or wrap it in a view). `wilson_interval` is
a plain-Python oracle for the tests; nothing else uses it.

Definitions (warehouse-contract.md): denominator = met + not_met; excluded and pending are reported
beside it, never inside it; rate = met / denominator, NULL when the denominator is 0; ci_low and
ci_high are the 95 % Wilson score interval, NULL when the denominator is 0. Strata: `all` (stratum
NULL), `site` (stratum = site_id) and `setting` (stratum = setting); a case with no site_id or no
setting is counted under stratum 'unknown' of that kind.
"""

from __future__ import annotations

import math

# Two-sided 95 % normal quantile, the z of the Wilson interval.
Z_95 = 1.959963984540054

# Stratum for cases whose site_id or setting is missing.
UNKNOWN_STRATUM = "unknown"

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
)


def summarise_sql(case_results: str = "case_results", measures: str | None = None) -> str:
    """One DuckDB SELECT turning case rows into `measure_summary` rows.

    ``case_results`` names a table, view or parenthesised subquery with the `case_results` columns
    (normally one run's rows; several runs are summarised separately, grouped by run_id and
    period). ``measures``, when given, names a relation with at least run_id and measure_id (the
    warehouse `measures` table will do): each of its measures for a run present in
    ``case_results`` that has no case gets an `all` row of zeros (rate and interval NULL). A run
    with no case at all yields no rows, because its period is not known from these relations.

    The names are interpolated into the SQL as they are: pass trusted relation names only.
    Rows come out ordered by run_id, measure_id, stratum kind (all, site, setting) and stratum.
    """
    zero_rows = ""
    if measures is not None:
        # Measures that ran but have no case: one `all` row with no outcome, counted as zeros.
        zero_rows = f"""
    UNION ALL
    SELECT DISTINCT r.run_id, r.period, m.measure_id, 'all' AS stratum_kind,
           NULL::VARCHAR AS stratum, NULL::VARCHAR AS outcome
    FROM (SELECT DISTINCT run_id, period FROM {case_results}) AS r
    JOIN {measures} AS m ON m.run_id = r.run_id
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
               WHEN 'site' THEN coalesce(c.site_id, '{UNKNOWN_STRATUM}')
               ELSE coalesce(c.setting, '{UNKNOWN_STRATUM}')
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
)
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
            ELSE least(1.0, centre + half_width) END AS ci_high
FROM wilson
ORDER BY run_id, measure_id,
         CASE stratum_kind WHEN 'all' THEN 0 WHEN 'site' THEN 1 ELSE 2 END,
         stratum NULLS FIRST
"""


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
