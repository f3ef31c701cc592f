"""What each chart of the report shows: the numbers (from the warehouse, suppression applied),
the drawing (reports/charts.py) and the caption in words.

The trend chart of a measure covers up to ``TREND_MONTHS`` months ending with the report's month,
from the first of them that has a succeeded run. A month shows no point when it has no run, when
the measure was not audited in its run, when it was not computable that month (its look-back
reaches before the extract: audits/lookback.py), when no case was in the denominator, or when its
`all` stratum is suppressed; the chart-data table says which.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import duckdb
import polars as pl

from chartaudit.reports import charts, queries
from chartaudit.reports import formatting as fmt
from chartaudit.reports.spc import MIN_POINTS, RUN_LENGTH, p_chart, signal_words
from chartaudit.reports.suppression import SUPPRESSED_TEXT, suppress_summary

TREND_MONTHS = 24

# Measures whose guideline is about avoiding something: `met` means it did not happen.
AVOIDANCE_WORDS = {
    "overuse": "met = the unneeded care did not happen",
    "safety": "met = the unsafe care did not happen",
}


def month_shift(period: str, months: int) -> str:
    year, month = (int(part) for part in period.split("-"))
    index = year * 12 + month - 1 + months
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


# The rate axis, short enough for the p-chart's height: what met means for avoidance measures.
AXIS_WORDS = {"overuse": "met = no overuse", "safety": "met = no unsafe care"}


def rate_label(measure_type: str | None, separator: str = "\n") -> str:
    """The rate axis: every rate is higher-is-better; avoidance measures say what met means."""
    return separator.join((AXIS_WORDS.get(measure_type or "", "rate"), "higher is better"))


@dataclass(frozen=True)
class Trend:
    """The trend months of every measure: ``summary`` holds the `all` rows (suppressed ones
    nulled and flagged), ``months`` the periods shown, ``run_periods`` those with a run."""

    months: list[str]
    run_periods: set[str]
    summary: pl.DataFrame


def read_trend(con: duckdb.DuckDBPyConnection, period: str, below: int | None) -> Trend:
    params = {"first": month_shift(period, 1 - TREND_MONTHS), "period": period}
    run_periods = [p for (p,) in con.execute(queries.RUN_PERIODS_SQL, params).fetchall()]
    summary = suppress_summary(con.sql(queries.TREND_SQL, params=params).pl(), below)
    first = run_periods[0] if run_periods else period
    count = 1 + (int(period[:4]) - int(first[:4])) * 12 + int(period[5:]) - int(first[5:])
    months = [month_shift(first, i) for i in range(count)]
    return Trend(months, set(run_periods), summary)


def _month_status(trend: Trend) -> pl.Expr:
    """Why a month has no point (null when it has one)."""
    return (
        pl.when(~pl.col("period").is_in(sorted(trend.run_periods)))
        .then(pl.lit("no point: no run for this month"))
        .when(pl.col("status") == "not_computable")
        .then(pl.lit("no point: not computable for this month (look-back before the extract)"))
        .when(pl.col("suppressed"))
        .then(pl.lit("no point: suppressed"))
        .when(pl.col("in_summary").is_null())
        .then(pl.lit("no point: not audited in this month's run"))
        .when(pl.col("denominator") == 0)
        .then(pl.lit("no point: no case in the denominator"))
    )


def trend_chart(
    trend: Trend, measure: dict[str, Any], below: int | None, target: float | None
) -> dict[str, Any]:
    """One measure's p-chart: its months (for the chart-data table), the SVG and the caption."""
    measure_id = measure["measure_id"]
    rows = trend.summary.filter(pl.col("measure_id") == measure_id).select(
        "period", "denominator", "met", "suppressed", "status", in_summary=pl.lit(True)
    )
    frame = pl.DataFrame({"period": trend.months}).join(
        rows, on="period", how="left", maintain_order="left"
    )
    chart = p_chart(frame).with_columns(
        suppressed=pl.col("suppressed").fill_null(False),
        status=_month_status(trend),
    )
    months = chart.to_dicts()  # at most 24 rows of monthly figures
    for month in months:
        month["signal"] = signal_words(month) or month["status"] or ""
        month["has_row"] = bool(month["in_summary"])
    points = chart.filter(pl.col("rate").is_not_null())
    svg = None
    if points.height:
        svg = charts.p_chart_svg(
            chart,
            chart_id=f"pchart-{measure_id}",
            rate_label=rate_label(measure.get("measure_type")),
            target=target,
        )
    return {
        "months": months,
        "svg": svg,
        "caption": _trend_caption(measure, chart, below, target, measure.get("target_source")),
    }


def _trend_caption(
    measure: dict[str, Any],
    chart: pl.DataFrame,
    below: int | None,
    target: float | None,
    target_source: str | None,
) -> str:
    months = chart["period"].to_list()
    points = chart.filter(pl.col("rate").is_not_null())
    words = [
        f"{measure['measure_id']}, monthly rate {months[0]} to {months[-1]}: "
        f"{len(months)} months, {points.height} with a rate."
    ]
    if measure.get("measure_type") in AVOIDANCE_WORDS:
        kind = measure["measure_type"]
        article = "An" if kind[0] in "aeiou" else "A"
        words.append(f"{article} {kind} measure: {AVOIDANCE_WORDS[kind]}, so higher is better.")
    if points.height >= MIN_POINTS:
        words.append(
            f"Centre line {fmt.pct(points['centre'][0])} (all cases of the months shown); the "
            "3-sigma limits follow each month's denominator."
        )
        words.append(_signals_sentence(chart))
    else:
        words.append(f"Limits need {MIN_POINTS} or more months with a rate.")
    suppressed = chart.filter(pl.col("suppressed"))["period"].to_list()
    if suppressed and below is not None:
        words.append(
            f"Not drawn, fewer than {below} cases ({SUPPRESSED_TEXT(below)}): "
            f"{', '.join(suppressed)}."
        )
    not_computable = chart.filter(pl.col("status") == "not_computable")["period"].to_list()
    if not_computable:
        words.append(
            "Not drawn, not computable (the look-back reaches before the extract): "
            f"{', '.join(not_computable)}."
        )
    if target is not None:
        words.append(f"Target {fmt.pct(target)} ({target_source}).")
    return " ".join(words)


def _signals_sentence(chart: pl.DataFrame) -> str:
    beyond = chart.filter("beyond").select("period", "rate", "upper").rows(named=True)
    runs = (
        chart.filter("in_run")
        .with_columns(run=(pl.col("run_side") != pl.col("run_side").shift()).fill_null(True))
        .with_columns(run=pl.col("run").cum_sum())
        .group_by("run", maintain_order=True)
        .agg(
            first=pl.col("period").first(),
            last=pl.col("period").last(),
            length=pl.len(),
            side=pl.col("run_side").first(),
        )
        .rows(named=True)
    )
    found = [
        f"{row['period']} {'above the upper' if row['rate'] > row['upper'] else 'below the lower'}"
        " limit"
        for row in beyond
    ] + [
        f"{row['length']} months in a row {'above' if row['side'] > 0 else 'below'} the centre"
        f" ({row['first']} to {row['last']})"
        for row in runs
    ]
    if not found:
        return f"No signal (no point beyond a limit, no run of {RUN_LENGTH} on one side)."
    return "Signals: " + "; ".join(found) + "."


def sites_chart(
    measure: dict[str, Any], sites: list[dict[str, Any]], below: int | None
) -> dict[str, Any] | None:
    """The forest chart of a measure's site rates this month (None when no site has a rate):
    suppressed sites and sites without a case in the denominator are left out and named. The
    cases with no site recorded are a row of their own, labelled in italics."""
    drawn = [s for s in sites if not s["suppressed"] and s["rate"] is not None]
    if not drawn:
        return None
    overall = None if measure.get("suppressed") else measure.get("rate")
    svg = charts.sites_svg(
        [
            charts.SiteRate(
                fmt.recorded(s["stratum"]),
                s["rate"],
                s["ci_low"],
                s["ci_high"],
                recorded=s["stratum"] is not None,
            )
            for s in drawn
        ],
        overall=overall,
        chart_id=f"sites-{measure['measure_id']}",
        rate_label=rate_label(measure.get("measure_type"), separator="; "),
    )
    words = [f"Rate at each site this month with its 95 % interval ({len(drawn)} sites)"]
    if overall is not None:
        words[0] += f"; dashed line: all sites, {fmt.pct(overall)}."
        below_all = [fmt.recorded(s["stratum"]) for s in drawn if s["ci_high"] < overall]
        above_all = [fmt.recorded(s["stratum"]) for s in drawn if s["ci_low"] > overall]
        words.append(
            f"Interval wholly below the overall rate: {', '.join(below_all) or 'none'}; "
            f"wholly above: {', '.join(above_all) or 'none'}."
        )
    else:
        words[0] += "."
    no_case = [
        fmt.recorded(s["stratum"]) for s in sites if not s["suppressed"] and s["rate"] is None
    ]
    if no_case:
        words.append(f"Not drawn, no case in the denominator: {', '.join(no_case)}.")
    hidden = [fmt.recorded(s["stratum"]) for s in sites if s["suppressed"]]
    if hidden and below is not None:
        words.append(
            f"Not drawn, suppressed ({SUPPRESSED_TEXT(below)} or hidden so that a small site "
            f"cannot be worked out): {', '.join(hidden)}."
        )
    return {"svg": svg, "caption": " ".join(words), "sites": drawn}
