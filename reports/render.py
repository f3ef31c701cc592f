"""The monthly compliance report: one self-contained HTML file, and a short Markdown summary.

Both read the warehouse only (warehouse-contract.md): the newest succeeded run of the period from
`latest_runs`; its rows in `latest_measure_summary` (and those of up to 23 earlier months, for the
trend charts), `latest_component_summary`, `latest_timing_summary` and `latest_case_results`
(with the canonical tables, for the not-met cases' evidence in words: reports/cases.py); that
run's `measures`; the `rejudged_cases` it decided (for a `rejudge` run: the cases of its own month
that were judged again); and the `load_counts`, `quarantine` and `data_quality` rows of the run
that loaded the extract (a `rejudge` run loads nothing: those of the audit run that triggered
it). Every value in the HTML goes through Jinja2's autoescaping (health data: a site name or
evidence text is never trusted as markup); the charts are matplotlib's SVG (reports/charts.py).
The page has no external URL: its CSS and its one small script (the drill-down's filter and sort)
are inline, and a Content-Security-Policy forbids any request. The page's DOM (classes and
data-* attributes the browser tests read) is described in docs/decisions.md, "The report's DOM".

``suppress_below`` N hides every stratum with 1 to N-1 cases (reports/suppression.py) in every
table, chart and case list, and the page says so.
"""

from __future__ import annotations

import html
import os
import re
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import duckdb
import jinja2
import polars as pl

from chartaudit.audits.lookback import NOT_COMPUTABLE
from chartaudit.audits.period import Coverage
from chartaudit.reports import formatting as fmt
from chartaudit.reports import queries
from chartaudit.reports.cases import not_met_cases
from chartaudit.reports.figures import month_shift, read_trend, sites_chart, trend_chart
from chartaudit.reports.suppression import (
    SUPPRESSED_TEXT,
    drop_suppressed_cases,
    suppress_summary,
    suppressed_strata,
)

# Not-met cases listed per measure (earliest index time first); `chartaudit export` writes them
# all. 500 rows keep the page quick to open and print while covering a typical month whole.
NOT_MET_ROW_CAP = 500
# Cases judged again listed per (month, measure); the rest are counted as omitted.
REJUDGED_ROW_CAP = 500
# Quarantine (table, column, rule) groups listed in the data-quality section.
TOP_QUARANTINE_RULES = 10

PENDING_EXPLANATION = "window still open at coverage end; judged again next month"

# Outcomes in the order the rejudged counts list them.
_OUTCOME_ORDER = {"met": 0, "not_met": 1, "excluded": 2, "pending": 3}

_PERIOD_RE = re.compile(r"\d{4}-(0[1-9]|1[0-2])")
fmt.DASH = "\u2014"


class ReportError(Exception):
    """The report cannot be produced (no succeeded run for the period, bad period, ...)."""


@dataclass(frozen=True)
class _Run:
    fields: dict[str, Any]
    zone: tzinfo
    zone_name: str
    zone_note: str | None


# --------------------------------------------------------------------------------------------
# Warehouse reads.


def _warehouse_name(con: duckdb.DuckDBPyConnection) -> str:
    try:
        row = con.execute(
            "SELECT path FROM duckdb_databases() WHERE database_name = current_database()"
        ).fetchone()
    except duckdb.Error:
        row = None
    if row is None or not row[0]:
        return "the in-memory warehouse"
    return str(row[0])


def _records(
    con: duckdb.DuckDBPyConnection, sql: str, params: dict[str, Any]
) -> list[dict[str, Any]]:
    cursor = con.execute(sql, params)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _check_period(period: str) -> None:
    if not isinstance(period, str) or not _PERIOD_RE.fullmatch(period):
        raise ReportError(f"period must look like YYYY-MM (e.g. 2026-10), got {period!r}")


def _latest_run(con: duckdb.DuckDBPyConnection, period: str) -> _Run:
    _check_period(period)
    try:
        rows = _records(con, "SELECT * FROM latest_runs WHERE period = $period", {"period": period})
    except duckdb.CatalogException as exc:
        raise ReportError(
            f"{_warehouse_name(con)} has no chartaudit results (missing latest_runs view); "
            "run `chartaudit run` first"
        ) from exc
    if not rows:
        raise ReportError(
            f"no succeeded run for period {period} in {_warehouse_name(con)}; "
            "run `chartaudit run` first"
        )
    fields = rows[0]
    zone_name = fields.get("timezone")
    if zone_name:
        try:
            return _Run(fields, ZoneInfo(zone_name), zone_name, None)
        except (ZoneInfoNotFoundError, ValueError):
            note = f"the run's time zone {zone_name!r} is unknown here; times are shown in UTC"
    else:
        note = "the run recorded no time zone; times are shown in UTC"
    return _Run(fields, UTC, "UTC", note)


# The coverage of the extract a period's cases were found in: the run's own, or for a rejudge
# run (which judges again only cases found before) that of the audit run at the root of its
# chain of parents.
_FOUND_IN_SQL = """
WITH RECURSIVE chain AS (
  SELECT run_id, parent_run_id, kind, coverage_start, coverage_end, 0 AS depth
  FROM runs WHERE run_id = $run_id
  UNION ALL
  SELECT r.run_id, r.parent_run_id, r.kind, r.coverage_start, r.coverage_end, c.depth + 1
  FROM runs r JOIN chain c ON r.run_id = c.parent_run_id
  WHERE c.kind = 'rejudge' AND c.depth < 1000
)
SELECT coverage_start, coverage_end FROM chain WHERE kind IS DISTINCT FROM 'rejudge'
ORDER BY depth LIMIT 1
"""


def _partial_month(con: duckdb.DuckDBPyConnection, run: _Run, period: str) -> str | None:
    """'2026-10-01 to 2026-10-15' when the run is marked partial (--allow-partial-month): the
    days of the period its extract covers; None for a whole month (or an older warehouse)."""
    if not run.fields.get("partial"):
        return None
    rows = con.execute(_FOUND_IN_SQL, {"run_id": run.fields["run_id"]}).fetchall()
    start, end = rows[0] if rows else (None, run.fields.get("coverage_end"))
    if end is None:
        return "part of the month"
    return Coverage(run.zone_name, start, end).part_of(period)


def _is_rejudge(fields: dict[str, Any]) -> bool:
    return fields.get("kind") == "rejudge"


def _loading_run_id(fields: dict[str, Any]) -> str:
    """The run whose load_counts and quarantine describe the data: a rejudge run loads nothing
    of its own, so the audit run that triggered it."""
    if _is_rejudge(fields) and fields.get("triggered_by"):
        return fields["triggered_by"]
    return fields["run_id"]


# Columns of `measures` added since v1: an older warehouse reads them as NULL.
_NEWER_MEASURE_COLUMNS = ("target", "target_source", "definition", "at_any_time")


def _measures_sql(con: duckdb.DuckDBPyConnection) -> str:
    present = {
        name
        for (name,) in con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE table_name = 'measures'"
            " AND database_name = current_database() AND schema_name = current_schema()"
        ).fetchall()
    }
    extra = ", ".join(
        f"any_value({c}) AS {c}" if c in present else f"NULL AS {c}" for c in _NEWER_MEASURE_COLUMNS
    )
    return queries.MEASURES_SQL.format(extra=extra)


def _summary(con: duckdb.DuckDBPyConnection, period: str, below: int | None) -> pl.DataFrame:
    """Every stratum of the period, suppression applied (a boolean `suppressed` column)."""
    return suppress_summary(con.sql(queries.SUMMARY_SQL, params={"period": period}).pl(), below)


def _measures(
    con: duckdb.DuckDBPyConnection,
    fields: dict[str, Any],
    period: str,
    summary: pl.DataFrame,
    previous: dict[str, dict[str, Any]],
) -> list[dict[str, Any]]:
    """The run's measures with their `all` stratum this month (suppression applied) and the
    change of rate from the previous month's latest run."""
    rows = _records(con, _measures_sql(con), {"run_id": fields["run_id"], "period": period})
    shown = {r["measure_id"]: r for r in summary.filter(pl.col("stratum_kind") == "all").to_dicts()}
    measures = []
    for row in rows:
        counted = shown.get(row["measure_id"], {"suppressed": False})
        row = {**row, **{k: v for k, v in counted.items() if k in _SUMMARY_VALUES}}
        row["suppressed"] = counted["suppressed"]
        measures.append(_measure_view(row, fields.get("ruleset"), previous.get(row["measure_id"])))
    return measures


_SUMMARY_VALUES = (
    "denominator", "met", "not_met", "excluded", "pending", "rate", "ci_low", "ci_high",
    "status", "status_reason",
)  # fmt: skip


def _measure_view(
    row: dict[str, Any], run_ruleset: str | None, previous: dict[str, Any] | None
) -> dict[str, Any]:
    counts = [row.get(k) or 0 for k in ("denominator", "excluded", "pending")]
    before = previous.get("rate") if previous and not previous["suppressed"] else None
    rate = None if row["suppressed"] else row.get("rate")
    return {
        **row,
        "ruleset": row.get("ruleset") or run_ruleset,
        "changes": fmt.one_line(row.get("changes")),
        "not_computable": row.get("status") == NOT_COMPUTABLE,
        "no_case": not row["suppressed"] and not any(counts),
        "change": None if rate is None or before is None else rate - before,
    }


def _timing_view(row: dict[str, Any]) -> dict[str, Any]:
    denominator = row["denominator"]
    within_reference = row["within_reference"] if row["reference_hours"] is not None else None
    within_window = row["within_window"] if row["window_hours"] is not None else None
    return {
        **row,
        "reference": fmt.share(within_reference, denominator),
        "window": fmt.share(within_window, denominator),
    }


def _rejudged_groups(
    con: duckdb.DuckDBPyConnection, fields: dict[str, Any], zone: tzinfo
) -> list[dict[str, Any]]:
    """Pending cases judged again, per (month, measure): counts by new outcome, and the cases
    (capped per group at REJUDGED_ROW_CAP, earliest index time first)."""
    column = "rejudge_run_id" if _is_rejudge(fields) else "run_id"
    params = {"run_id": fields["run_id"]}
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    counts = _records(con, queries.REJUDGED_COUNTS_SQL.format(column=column), params)
    counts.sort(key=lambda r: (r["period"], r["measure_id"], _OUTCOME_ORDER.get(r["outcome"], 9)))
    for row in counts:
        group = groups.setdefault(
            (row["period"], row["measure_id"]),
            {
                "period": row["period"],
                "measure_id": row["measure_id"],
                "title": row["title"],
                "changes": [],
                "total": 0,
                "cases": [],
            },
        )
        group["changes"].append(
            f"{fmt.count(row['n'])} {fmt.outcome(row['previous_outcome'])} \u2192 "
            f"{fmt.outcome(row['outcome'])}"
        )
        group["total"] += row["n"]
    cases = _records(
        con, queries.REJUDGED_CASES_SQL.format(column=column), {**params, "cap": REJUDGED_ROW_CAP}
    )
    for row in cases:
        row["index_local"] = fmt.local_time(row["index_time"], zone)
        row["outcome_text"] = fmt.outcome(row["outcome"])
        groups[(row["period"], row["measure_id"])]["cases"].append(row)
    for group in groups.values():
        group["line"] = f"{group['period']} {group['measure_id']}: " + ", ".join(group["changes"])
        group["omitted"] = group["total"] - len(group["cases"])
    return list(groups.values())


def _not_met(
    con: duckdb.DuckDBPyConnection,
    period: str,
    zone_name: str,
    summary: pl.DataFrame,
) -> dict[str, dict[str, Any]]:
    """Per measure: the not-met cases the page lists (those of suppressed strata left out; at
    most NOT_MET_ROW_CAP, earliest index time first), with how many there are in all."""
    cases = drop_suppressed_cases(not_met_cases(con, period), suppressed_strata(summary))
    cases = cases.with_columns(
        index_local=pl.col("index_time")
        .dt.convert_time_zone(zone_name)
        .dt.strftime("%Y-%m-%d %H:%M %:z"),
        index_sort=pl.col("index_time").dt.convert_time_zone("UTC").dt.strftime("%Y-%m-%dT%H:%MZ"),
        listed_total=pl.len().over("measure_id"),
    ).filter(pl.int_range(pl.len()).over("measure_id") < NOT_MET_ROW_CAP)
    return {
        key[0]: {"cases": part.to_dicts(), "total": part["listed_total"][0]}
        for key, part in cases.partition_by("measure_id", as_dict=True, maintain_order=True).items()
    }


def _section(
    m: dict[str, Any],
    strata: list[dict[str, Any]],
    parts: dict[str, Any],
    below: int | None,
) -> dict[str, Any]:
    mid = m["measure_id"]
    listed = parts["not_met"].get(mid, {"cases": [], "total": 0})
    not_met = None if m["suppressed"] else m.get("not_met")
    return {
        "measure": m,
        "trend": trend_chart(parts["trend"], m, below, m.get("target")),
        "sites": sites_chart(m, [r for r in strata if r["stratum_kind"] == "site"], below),
        "strata": strata,
        "components": parts["components"].get(mid, []),
        "also_report": parts["also_report"].get(mid, []),
        "timing": parts["timing"].get(mid),
        "not_met": listed["cases"],
        "not_met_listed_total": listed["total"],
        "not_met_total": not_met,
        "not_met_omitted": listed["total"] - len(listed["cases"]),
        "not_met_left_out": (not_met or 0) - listed["total"],
    }


def _report_context(
    con: duckdb.DuckDBPyConnection,
    period: str,
    generated_at: datetime,
    below: int | None,
) -> dict[str, Any]:
    run = _latest_run(con, period)
    fields = run.fields
    zone = run.zone

    summary = _summary(con, period, below)
    trend = read_trend(con, period, below)
    previous_period = month_shift(period, -1)
    previous = {
        r["measure_id"]: r
        for r in trend.summary.filter(pl.col("period") == previous_period).to_dicts()
    }
    measures = _measures(con, fields, period, summary, previous)
    strata: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in summary.filter(pl.col("stratum_kind") != "all").to_dicts():
        strata[row["measure_id"]].append(row)
    components: dict[str, list[dict[str, Any]]] = defaultdict(list)
    also_report: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in _records(con, queries.COMPONENTS_SQL, {"period": period}):
        target = components if row["kind"] == "component" else also_report
        target[row["measure_id"]].append(row)
    parts = {
        "trend": trend,
        "components": components,
        "also_report": also_report,
        "timing": {
            row["measure_id"]: _timing_view(row)
            for row in _records(con, queries.TIMING_SQL, {"period": period})
        },
        "not_met": _not_met(con, period, run.zone_name, summary),
    }
    sections = [_section(m, strata.get(m["measure_id"], []), parts, below) for m in measures]

    loading_run = _loading_run_id(fields)
    load_counts = _records(con, queries.LOAD_COUNTS_SQL, {"run_id": loading_run})
    quarantine = _records(
        con, queries.QUARANTINE_SQL, {"run_id": loading_run, "top": TOP_QUARANTINE_RULES}
    )
    quarantine_groups = quarantine[0]["groups"] if quarantine else 0
    quarantine_problems = quarantine[0]["problems"] if quarantine else 0
    data_quality = _records(con, queries.DATA_QUALITY_SQL, {"run_id": loading_run})

    return {
        "period": period,
        "previous_period": previous_period,
        "run": fields,
        "rejudge": _is_rejudge(fields),
        "zone_name": run.zone_name,
        "zone_note": run.zone_note,
        "coverage_end": fmt.local_time(fields.get("coverage_end"), zone),
        "partial_month": _partial_month(con, run, period),
        "started_at": fmt.local_time(fields.get("started_at"), zone),
        "finished_at": fmt.local_time(fields.get("finished_at"), zone),
        "generated_at": fmt.local_time(generated_at, zone),
        "suppress_below": below,
        "suppressed_text": SUPPRESSED_TEXT(below) if below is not None else "",
        "suppression_note": suppression_note(below),
        "trend_months": trend.months,
        "measures": measures,
        "not_computable": [m for m in measures if m["not_computable"]],
        "at_any_time": [m for m in measures if m.get("at_any_time")],
        "sections": sections,
        "pending_explanation": PENDING_EXPLANATION,
        "not_met_cap": NOT_MET_ROW_CAP,
        "rejudged": _rejudged_groups(con, fields, zone),
        "rejudged_cap": REJUDGED_ROW_CAP,
        "loading_run": loading_run,
        "load_counts": load_counts,
        "quarantine": quarantine,
        "quarantine_groups": quarantine_groups,
        "quarantine_problems": quarantine_problems,
        "quarantine_top": TOP_QUARANTINE_RULES,
        "data_quality": data_quality,
        "data_quality_total": sum(row["n"] for row in data_quality),
    }


# --------------------------------------------------------------------------------------------
# Rendering.


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("chartaudit.reports", "templates"),
        autoescape=True,  # every value, whatever the template's file name
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        change=fmt.change,
        pct=fmt.pct,
        ci=fmt.ci,
        count=fmt.count,
        elapsed=fmt.elapsed,
        span=fmt.span,
    )
    env.globals["not_recorded"] = fmt.NOT_RECORDED
    return env


def report_path(out_dir: Path, period: str) -> Path:
    """``out_dir/chartaudit-YYYY-MM.html``; a period that is not a month, or a name that would
    land outside ``out_dir``, raises ReportError before anything is written."""
    _check_period(period)
    name = f"chartaudit-{period}.html"
    if Path(name).name != name or os.sep in name or (os.altsep and os.altsep in name):
        raise ReportError(f"report name for period {period!r} would leave {out_dir}")
    return Path(out_dir) / name


def render_report(
    con: duckdb.DuckDBPyConnection,
    period: str,
    out_dir: Path,
    *,
    generated_at: datetime | None = None,
    suppress_below: int | None = None,
) -> Path:
    """Write ``out_dir / f"chartaudit-{period}.html"`` for the period's newest succeeded run.

    Raises ReportError when the period has no succeeded run. ``generated_at`` (default: now)
    is shown in the header. ``suppress_below`` N hides strata of 1 to N-1 cases everywhere.
    """
    target = report_path(out_dir, period)  # a hostile period fails before anything is read
    _check_below(suppress_below)
    try:
        context = _report_context(con, period, generated_at or datetime.now(UTC), suppress_below)
    except (duckdb.CatalogException, duckdb.BinderException) as exc:
        raise _older_warehouse(con, exc) from exc
    text = _environment().get_template("report.html.j2").render(**context)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # Write beside the target and rename, so a reader never sees half a report.
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", dir=out_dir)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return target


def _check_below(below: int | None) -> None:
    if below is not None and (isinstance(below, bool) or not isinstance(below, int) or below < 1):
        raise ReportError(f"suppress_below must be a whole number of 1 or more, got {below!r}")


def _older_warehouse(con: duckdb.DuckDBPyConnection, exc: duckdb.Error) -> ReportError:
    first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return ReportError(
        f"{_warehouse_name(con)} lacks a table or column this report reads ({first_line}); it was "
        "written by an older chartaudit: the next `chartaudit run` on it upgrades it"
    )


def _md_cell(value: object) -> str:
    """Text safe inside a Markdown table cell: no pipe, no line break, no raw HTML."""
    text = " ".join(str(value).split())
    text = html.escape(text, quote=False)
    return text.replace("\\", "\\\\").replace("|", "\\|")


SUPPRESSION_NOTE = (
    "Counts under {below} are suppressed (shown as \u201c{text}\u201d): a measure, site or "
    "setting with 1 to {last} cases in the denominator this month has its counts, rate and "
    "interval hidden, one more group is hidden where a single hidden one could be worked out by "
    "subtraction, and the cases of hidden groups are not listed."
)


def suppression_note(below: int | None) -> str:
    """The sentence the page and the Markdown summary print when suppression is on."""
    if below is None:
        return ""
    return SUPPRESSION_NOTE.format(below=below, text=SUPPRESSED_TEXT(below), last=below - 1)


def _md_values(m: dict[str, Any], below: int | None) -> list[str]:
    if m["not_computable"]:
        return [m["status_reason"], *[fmt.DASH] * 6]
    if m["suppressed"]:
        return [SUPPRESSED_TEXT(below)] * 7
    return [
        fmt.pct(m["rate"]),
        fmt.ci(m["ci_low"], m["ci_high"]),
        fmt.count(m["denominator"]),
        fmt.count(m["met"]),
        fmt.count(m["not_met"]),
        fmt.count(m["excluded"]),
        fmt.count(m["pending"]),
    ]


def render_markdown_summary(
    con: duckdb.DuckDBPyConnection, period: str, suppress_below: int | None = None
) -> str:
    """A short Markdown table of the period's measures (a Prefect artifact), and one line on the
    pending cases of earlier months this run judged again, when there were any (not with
    suppression on: those are cases one by one). Reads only."""
    _check_below(suppress_below)
    run = _latest_run(con, period)
    try:
        summary = _summary(con, period, suppress_below)
        rows = _measures(con, run.fields, period, summary, {})
        rejudged = _rejudged_groups(con, run.fields, run.zone)
    except (duckdb.CatalogException, duckdb.BinderException) as exc:
        raise _older_warehouse(con, exc) from exc
    lines = [
        f"**Chart audit {_md_cell(period)}** (run {_md_cell(run.fields['run_id'])}, "
        f"rule set {_md_cell(run.fields.get('ruleset'))}); rate = met / (met + not met), "
        "higher is better.",
        "",
        "| Measure | Rate | 95 % CI | Denominator | Met | Not met | Excluded | Pending |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for m in rows:
        name = m["measure_id"] if not m["title"] else f"{m['measure_id']} {m['title']}"
        cells = [name, *_md_values(m, suppress_below)]
        lines.append("| " + " | ".join(_md_cell(c) for c in cells) + " |")
    if suppress_below is not None:
        lines += ["", _md_cell(suppression_note(suppress_below))]
    elif rejudged:
        changed = "; ".join(g["line"] for g in rejudged)
        if _is_rejudge(run.fields):
            lead = (
                "Pending cases of this month judged again by run"
                f" {run.fields.get('triggered_by') or fmt.DASH}"
                f" on extract {run.fields.get('extract_id') or fmt.DASH}"
            )
        else:
            lead = "Pending cases of earlier months judged again by this run"
        lines += ["", _md_cell(f"{lead}: {changed}.")]
    return "\n".join(lines) + "\n"
