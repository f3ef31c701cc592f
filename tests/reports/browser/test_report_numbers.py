"""Every number the page shows, read back from the browser and checked against the warehouse.

Each number sits in an element with `data-field`, inside an element whose `data-source` names
the warehouse view it comes from and whose key attributes (`data-measure`, `data-period`,
`data-stratum-kind`, `data-stratum`, `data-name`, `data-table-name`, `data-column`,
`data-rule`) pick one row of it. The test
formats that row's value with chartaudit.reports.formatting, as the report does, and compares
the text. A field or a source the test does not know fails it, so does a row it cannot find, and
so does a page that shows fewer numbers than the warehouse holds for the month.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from chartaudit.reports import formatting as fmt
from tests.reports.browser.conftest import REPORT_PERIOD

pytestmark = pytest.mark.browser

Row = dict[str, Any]

# Page attribute -> warehouse column, for the keys that pick a row.
KEY_ATTRIBUTES = {
    "measure": "measure_id",
    "period": "period",
    "stratumKind": "stratum_kind",
    "stratum": "stratum",
    "kind": "kind",
    "name": "name",
    "tableName": "table_name",
    "column": "column_name",
    "rule": "rule",
}

# Each source's rows for the month: one query, its key columns in KEY_ATTRIBUTES' terms. The
# measure summary covers the 24 months a p-chart shows, with the same stratum's rate a month
# earlier (the change from last month) and, for the overall rows, the p-chart's centre line and
# 3-sigma limits computed here independently: centre = sum of met / sum of denominators over the
# months with cases (two at least), limits = centre -/+ 3 sqrt(centre (1 - centre) / n) clipped
# to [0, 1]. The load counts are those of the run that loaded the month's extract (a rejudge run
# loads nothing: the audit run that triggered it), summed over the table's files.
SUMMARY_SQL = """
WITH shown AS (
    SELECT * FROM latest_measure_summary
    WHERE period BETWEEN strftime(strptime($period, '%Y-%m') - INTERVAL 23 MONTH, '%Y-%m')
                     AND $period
),
centre AS (
    SELECT measure_id, sum(met) / sum(denominator) AS centre FROM shown
    WHERE stratum_kind = 'all' AND denominator > 0
    GROUP BY measure_id HAVING count(*) >= 2
),
charted AS (
    SELECT s.*, p.rate AS previous_rate,
           CASE WHEN s.stratum_kind = 'all' AND s.denominator > 0 THEN c.centre END AS centre,
           3 * sqrt(c.centre * (1 - c.centre) / nullif(s.denominator, 0)) AS spread
    FROM shown AS s
    LEFT JOIN latest_measure_summary AS p
      ON p.measure_id = s.measure_id AND p.stratum_kind = s.stratum_kind
     AND p.stratum IS NOT DISTINCT FROM s.stratum
     AND p.period = strftime(strptime(s.period, '%Y-%m') - INTERVAL 1 MONTH, '%Y-%m')
    LEFT JOIN centre AS c ON c.measure_id = s.measure_id
)
SELECT *, greatest(centre - spread, 0.0) AS lower_limit, least(centre + spread, 1.0) AS upper_limit
FROM charted
"""
# The run that loaded the month's extract: a rejudge run loads nothing, so its triggering run.
LOADING_RUN_SQL = """SELECT coalesce(CASE kind WHEN 'rejudge' THEN triggered_by END, run_id)
                     FROM latest_runs WHERE period = $period"""
SOURCES = {
    "latest_measure_summary": (SUMMARY_SQL, ("measure_id", "period", "stratum_kind", "stratum")),
    "latest_component_summary": (
        "SELECT * FROM latest_component_summary WHERE period = $period",
        ("measure_id", "period", "kind", "name"),
    ),
    "latest_timing_summary": (
        "SELECT * FROM latest_timing_summary WHERE period = $period",
        ("measure_id", "period"),
    ),
    "load_counts": (
        f"""SELECT table_name, sum(input_rows) AS input_rows, sum(loaded_rows) AS loaded_rows,
                   sum(quarantined_rows) AS quarantined_rows, sum(warned_rows) AS warned_rows
            FROM load_counts WHERE run_id = ({LOADING_RUN_SQL})
            GROUP BY table_name""",
        ("table_name",),
    ),
    # Rows put aside and rows loaded with a warning, by table, column and rule.
    **{
        table: (
            f"""SELECT table_name, column_name, rule, count(*) AS count FROM {table}
                WHERE run_id = ({LOADING_RUN_SQL}) GROUP BY ALL""",
            ("table_name", "column_name", "rule"),
        )
        for table in ("quarantine", "data_quality")
    },
}


def _count(column: str) -> Callable[[Row], str]:
    return lambda row: fmt.count(row[column])


def _elapsed(column: str) -> Callable[[Row], str]:
    return lambda row: fmt.elapsed(row[column])


def _within(column: str, line: str) -> Callable[[Row], str]:
    # As the report's timing table: "3 of 6 (50.0 %)", a dash when the measure has no such line.
    return lambda row: fmt.share(row[column] if row[line] is not None else None, row["denominator"])


# Case counts of the summaries, and row counts of the load.
COUNTED = (
    *("denominator", "met", "not_met", "excluded", "pending", "cases_with", "with_event"),
    *("input_rows", "loaded_rows", "quarantined_rows", "warned_rows", "count"),
)
FIELDS: dict[str, Callable[[Row], str]] = {
    **{name: _count(name) for name in COUNTED},
    **{
        name: _elapsed(name)
        for name in (
            "median_hours",
            "p90_hours",
            "median_hours_from_arrival",
            "p90_hours_from_arrival",
        )
    },
    "rate": lambda row: fmt.pct(row["rate"]),
    "ci": lambda row: fmt.ci(row["ci_low"], row["ci_high"]),
    "change": lambda row: fmt.change(
        None
        if row["rate"] is None or row["previous_rate"] is None
        else row["rate"] - row["previous_rate"]
    ),
    "centre": lambda row: fmt.pct(row["centre"]),
    "lower_limit": lambda row: fmt.pct(row["lower_limit"]),
    "upper_limit": lambda row: fmt.pct(row["upper_limit"]),
    "within_reference": _within("within_reference", "reference_hours"),
    "within_window": _within("within_window", "window_hours"),
}

CASES = "latest_case_results"
READ_NUMBERS_JS = """() => [...document.querySelectorAll('[data-field]')].map(el => {
    const holder = el.closest('[data-source]');
    return {
        field: el.dataset.field,
        text: el.textContent.trim(),
        suppressed: el.classList.contains('suppressed'),
        source: holder ? holder.dataset.source : null,
        keys: holder ? Object.fromEntries(KEYS.map(k => [k, holder.dataset[k] ?? null])) : {},
    };
})"""


def warehouse_rows(con, period: str) -> dict[str, dict[tuple, Row]]:
    """Each source's rows of the month by their key (None for a null key)."""
    by_source = {}
    for source, (sql, keys) in SOURCES.items():
        cursor = con.execute(sql, {"period": period})
        names = [d[0] for d in cursor.description]
        rows = [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]
        by_source[source] = {tuple(row[k] for k in keys): row for row in rows}
        assert len(by_source[source]) == len(rows), f"{source}: key {keys} is not unique"
    return by_source


def page_key(source: str, keys: dict[str, str | None]) -> tuple:
    # A null key (the overall row's stratum) can only be written as an empty attribute.
    columns = {column: keys.get(attribute) or None for attribute, column in KEY_ATTRIBUTES.items()}
    return tuple(columns[column] for column in SOURCES[source][1])


def expected_floor(rows: dict[str, dict[tuple, Row]]) -> int:
    """The fewest numbers a page showing this month can have: the 7 of every measure's overall
    row (denominator, met, not met, excluded, pending, rate, interval), denominator and rate of
    every site and setting, cases and rate of every component, and each timing row's median."""
    summary = [r for r in rows["latest_measure_summary"].values() if r["period"] == REPORT_PERIOD]
    overall = sum(1 for row in summary if row["stratum_kind"] == "all")
    strata = len(summary) - overall
    return (
        7 * overall
        + 2 * strata
        + 2 * len(rows["latest_component_summary"])
        + len(rows["latest_timing_summary"])
    )


def test_every_number_in_the_page_equals_the_warehouse(visit, demo_report):
    page = visit(demo_report.url).page
    numbers = page.evaluate(READ_NUMBERS_JS.replace("KEYS", repr(list(KEY_ATTRIBUTES))))
    with demo_report.connect() as con:
        rows = warehouse_rows(con, REPORT_PERIOD)

    unknown, unmatched, wrong, shown = [], [], [], set()
    for number in numbers:
        source, field = number["source"], number["field"]
        if source == CASES:
            continue  # words and identifiers, checked row by row below
        if source not in SOURCES or field not in FIELDS:
            unknown.append((source, field))
            continue
        key = page_key(source, number["keys"])
        row = rows[source].get(key)
        if row is None:
            unmatched.append((source, key, field))
            continue
        shown.add((source, key, field))
        if number["text"] != FIELDS[field](row):
            wrong.append((source, key, field, number["text"], FIELDS[field](row)))

    assert sorted(set(unknown), key=str) == []
    assert unmatched == []
    assert wrong == []
    # Suppression is off by default: nothing may be hidden.
    assert [n for n in numbers if n["suppressed"]] == []
    assert len(shown) >= expected_floor(rows) > 100
    # Every stratum of the month is on the page, with its denominator and rate.
    month = [
        key for key, row in rows["latest_measure_summary"].items() if row["period"] == REPORT_PERIOD
    ]
    for key in month:
        for field in ("denominator", "rate"):
            assert ("latest_measure_summary", key, field) in shown, (key, field)


def test_every_numeric_cell_says_which_number_it_is(visit, demo_report):
    page = visit(demo_report.url).page
    cells = page.locator("td.num")
    assert cells.count() > 100
    unlabelled = page.locator("td.num:not([data-field])")
    assert unlabelled.count() == 0, unlabelled.first.evaluate("el => el.outerHTML")


# A drill-down row's identifying cells: a case without an encounter shows a dash; a site or
# setting not recorded is the page's own element (em.not-recorded), read back as NULL, so it can
# match only a NULL, never a real site of any name.
CASE_CELLS_SQL = """
SELECT measure_id, patient_id, coalesce(encounter_id, '\u2014') AS encounter_id, site_id, setting
FROM latest_case_results WHERE period = ? AND outcome = 'not_met'
"""
READ_CASES_JS = """rows => rows.map(r => [
    r.dataset.measure,
    ...['patient_id', 'encounter_id', 'site_id', 'setting'].map(f => {
        const cell = r.querySelector(`[data-field="${f}"]`);
        return cell.querySelector('em.not-recorded') ? null : cell.textContent.trim();
    }),
])"""


def test_the_drilldown_lists_exactly_the_not_met_cases_of_the_warehouse(visit, demo_report):
    page = visit(demo_report.url).page
    shown = page.locator(f'tr[data-source="{CASES}"]').evaluate_all(READ_CASES_JS)
    with demo_report.connect() as con:
        expected = con.execute(CASE_CELLS_SQL, [REPORT_PERIOD]).fetchall()
    assert len(expected) > 100
    assert any(row[3] is None for row in expected)  # the demo has a case with no site
    # repr orders tuples that hold None (a plain sort cannot compare None with text).
    assert sorted(map(tuple, shown), key=repr) == sorted(expected, key=repr)
