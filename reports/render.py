"""The monthly compliance report: one self-contained HTML file, and a short Markdown summary.

Both read the warehouse only (warehouse-contract.md): the newest succeeded run of the period from
`latest_runs`; its rows in `latest_measure_summary`, `latest_component_summary`,
`latest_timing_summary` and `latest_case_results`; that run's `measures`; the `rejudged_cases` it
decided (for a `rejudge` run: the cases of its own month that were judged again); and the
`load_counts`, `quarantine` and `data_quality` rows of the run that loaded the extract (a
`rejudge` run loads nothing: those of the audit run that triggered it). Every value in the HTML
goes through Jinja2's autoescaping (health data: a site name or evidence text is never trusted as
markup), and the page has inline CSS only: no script, no external URL.
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

from chartaudit.reports import formatting as fmt
from chartaudit.reports import queries

# Not-met cases listed per measure; the rest are counted as omitted.
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


def _is_rejudge(fields: dict[str, Any]) -> bool:
    return fields.get("kind") == "rejudge"


def _loading_run_id(fields: dict[str, Any]) -> str:
    """The run whose load_counts and quarantine describe the data: a rejudge run loads nothing
    of its own, so the audit run that triggered it."""
    if _is_rejudge(fields) and fields.get("triggered_by"):
        return fields["triggered_by"]
    return fields["run_id"]


def _measure_view(row: dict[str, Any], run_ruleset: str | None) -> dict[str, Any]:
    counts = [row.get(k) or 0 for k in ("denominator", "excluded", "pending")]
    return {
        **row,
        "ruleset": row.get("ruleset") or run_ruleset,
        "changes": fmt.one_line(row.get("changes")),
        "no_case": not any(counts),
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


def _report_context(
    con: duckdb.DuckDBPyConnection, period: str, generated_at: datetime
) -> dict[str, Any]:
    run = _latest_run(con, period)
    fields = run.fields
    run_id = fields["run_id"]
    zone = run.zone

    measures = [
        _measure_view(row, fields.get("ruleset"))
        for row in _records(con, queries.MEASURES_SQL, {"run_id": run_id, "period": period})
    ]
    strata: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in _records(con, queries.STRATA_SQL, {"period": period}):
        strata[row["measure_id"]].append(row)
    components: dict[str, list[dict[str, Any]]] = defaultdict(list)
    also_report: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in _records(con, queries.COMPONENTS_SQL, {"period": period}):
        target = components if row["kind"] == "component" else also_report
        target[row["measure_id"]].append(row)
    timing = {
        row["measure_id"]: _timing_view(row)
        for row in _records(con, queries.TIMING_SQL, {"period": period})
    }
    not_met: dict[str, list[dict[str, Any]]] = defaultdict(list)
    not_met_total: dict[str, int] = {}
    for row in _records(con, queries.NOT_MET_SQL, {"period": period, "cap": NOT_MET_ROW_CAP}):
        row["index_local"] = fmt.local_time(row["index_time"], zone)
        not_met[row["measure_id"]].append(row)
        not_met_total[row["measure_id"]] = row["total"]

    sections = []
    for m in measures:
        mid = m["measure_id"]
        listed = not_met.get(mid, [])
        total = not_met_total.get(mid, 0)
        sections.append(
            {
                "measure": m,
                "strata": strata.get(mid, []),
                "components": components.get(mid, []),
                "also_report": also_report.get(mid, []),
                "timing": timing.get(mid),
                "not_met": listed,
                "not_met_total": total,
                "not_met_omitted": total - len(listed),
            }
        )

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
        "run": fields,
        "rejudge": _is_rejudge(fields),
        "zone_name": run.zone_name,
        "zone_note": run.zone_note,
        "coverage_end": fmt.local_time(fields.get("coverage_end"), zone),
        "started_at": fmt.local_time(fields.get("started_at"), zone),
        "finished_at": fmt.local_time(fields.get("finished_at"), zone),
        "generated_at": fmt.local_time(generated_at, zone),
        "measures": measures,
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
        pct=fmt.pct,
        ci=fmt.ci,
        count=fmt.count,
        elapsed=fmt.elapsed,
        span=fmt.span,
    )
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
) -> Path:
    """Write ``out_dir / f"chartaudit-{period}.html"`` for the period's newest succeeded run.

    Raises ReportError when the period has no succeeded run. ``generated_at`` (default: now)
    is shown in the header.
    """
    target = report_path(out_dir, period)  # a hostile period fails before anything is read
    try:
        context = _report_context(con, period, generated_at or datetime.now(UTC))
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


def render_markdown_summary(con: duckdb.DuckDBPyConnection, period: str) -> str:
    """A short Markdown table of the period's measures (a Prefect artifact), and one line on the
    pending cases of earlier months this run judged again, when there were any. Reads only."""
    run = _latest_run(con, period)
    try:
        rows = _records(
            con, queries.MEASURES_SQL, {"run_id": run.fields["run_id"], "period": period}
        )
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
        cells = [
            name,
            fmt.pct(m["rate"]),
            fmt.ci(m["ci_low"], m["ci_high"]),
            fmt.count(m["denominator"]),
            fmt.count(m["met"]),
            fmt.count(m["not_met"]),
            fmt.count(m["excluded"]),
            fmt.count(m["pending"]),
        ]
        lines.append("| " + " | ".join(_md_cell(c) for c in cells) + " |")
    if rejudged:
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
