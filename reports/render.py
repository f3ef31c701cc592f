"""The monthly compliance report: one self-contained HTML file, and a short Markdown summary.

Both read the warehouse only (warehouse-contract.md): the newest succeeded run of the period from
`latest_runs`; its rows in `latest_measure_summary`, `latest_component_summary`,
`latest_timing_summary` and `latest_case_results`; that run's `measures`; the `rejudged_cases` it
decided (for a `rejudge` run: the cases of its own month that were judged again); and the
`load_counts` and `quarantine` rows of the run that loaded the extract (a `rejudge` run loads
nothing: those of the audit run that triggered it). Every value in the HTML goes through Jinja2's
autoescaping (health data: a site name or evidence text is never trusted as markup), and the page
has inline CSS only: no script, no external URL.
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
_DASH = "\u2014"


class ReportError(Exception):
    """The report cannot be produced (no succeeded run for the period, bad period, ...)."""


@dataclass(frozen=True)
class _Run:
    fields: dict[str, Any]
    zone: tzinfo
    zone_name: str
    zone_note: str | None


# --------------------------------------------------------------------------------------------
# Formatting (used as Jinja2 filters and by the Markdown summary; they return plain text, which
# the template then escapes).


def _pct(value: float | None) -> str:
    return _DASH if value is None else f"{100 * value:.1f} %"


def _ci(low: float | None, high: float | None) -> str:
    if low is None or high is None:
        return _DASH
    return f"{100 * low:.1f}\u2013{100 * high:.1f} %"


def _count(value: int | None) -> str:
    return _DASH if value is None else f"{value:,}"


def _hours(value: float | None) -> str:
    return _DASH if value is None else f"{value:.1f} h"


def _elapsed(value: float | None) -> str:
    """Measured hours as today ("3.5 h"), with days beside them from 48 h ("216.0 h (9.0 d)")."""
    if value is None:
        return _DASH
    if abs(value) >= 48:
        return f"{_hours(value)} ({value / 24:.1f} d)"
    return _hours(value)


def _span(value: float | None) -> str:
    """A line or window: "4 h", "12 h", "1.5 h"; in days from 48 h: "14 d", "2.5 d"."""
    if value is None:
        return _DASH
    amount, unit = (value / 24, "d") if abs(value) >= 48 else (value, "h")
    text = f"{amount:.0f}" if amount == round(amount) else f"{amount:.1f}"
    return f"{text} {unit}"


def _share(part: int | None, whole: int | None) -> str:
    """Part of whole as "3 of 6 (50.0 %)"; a dash when there is no part (no line to be within)."""
    if part is None or whole is None:
        return _DASH
    return f"{_count(part)} of {_count(whole)} ({_pct(part / whole if whole else None)})"


def _outcome(value: str | None) -> str:
    return _DASH if value is None else value.replace("_", " ")


def _one_line(value: str | None) -> str:
    """Folded text (a measure file's `changes`) as one line; empty for None."""
    return " ".join((value or "").split())


def _offset(moment: datetime) -> str:
    delta = moment.utcoffset()
    minutes = 0 if delta is None else int(delta.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    hours, mins = divmod(abs(minutes), 60)
    return f"{sign}{hours:02d}:{mins:02d}"


def _local_time(value: datetime | None, zone: tzinfo) -> str:
    """An instant shown as local wall-clock time in ``zone`` with its UTC offset."""
    if value is None:
        return _DASH
    if value.tzinfo is None:  # a TIMESTAMP without zone: the warehouse stores UTC instants
        value = value.replace(tzinfo=UTC)
    local = value.astimezone(zone)
    return f"{local:%Y-%m-%d %H:%M} {_offset(local)}"


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


_MEASURES_SQL = """
WITH m AS (
    SELECT measure_id, any_value(measure_version) AS measure_version, any_value(title) AS title,
           any_value(unit) AS unit, any_value(measure_type) AS measure_type,
           any_value(reference_hours) AS reference_hours, any_value(ruleset) AS ruleset,
           any_value(window_hours) AS window_hours, any_value(changes) AS changes
    FROM measures WHERE run_id = $run_id GROUP BY measure_id
),
s AS (
    SELECT * FROM latest_measure_summary WHERE period = $period AND stratum_kind = 'all'
)
SELECT coalesce(m.measure_id, s.measure_id) AS measure_id,
       m.measure_version, m.title, m.unit, m.measure_type, m.reference_hours, m.ruleset,
       m.window_hours, m.changes,
       s.denominator, s.met, s.not_met, s.excluded, s.pending, s.rate, s.ci_low, s.ci_high
FROM m FULL OUTER JOIN s ON s.measure_id = m.measure_id
ORDER BY measure_id
"""

_STRATA_SQL = """
SELECT measure_id, stratum_kind, coalesce(stratum, 'unknown') AS stratum,
       denominator, met, not_met, excluded, pending, rate, ci_low, ci_high
FROM latest_measure_summary
WHERE period = $period AND stratum_kind IN ('site', 'setting')
ORDER BY measure_id, CASE stratum_kind WHEN 'site' THEN 0 ELSE 1 END, stratum
"""

# Components (LN-04's exam parts) and also-reported facts (LN-07's loss of protective sensation),
# among the denominator cases, in the order the measure file lists them.
_COMPONENTS_SQL = """
SELECT s.measure_id, s.kind, s.name, s.denominator, s.cases_with, s.rate, s.ci_low, s.ci_high
FROM latest_component_summary AS s
LEFT JOIN measures AS m ON m.run_id = s.run_id AND m.measure_id = s.measure_id
WHERE s.period = $period
ORDER BY s.measure_id, CASE s.kind WHEN 'component' THEN 0 ELSE 1 END,
         list_position(CASE s.kind WHEN 'component' THEN m.components ELSE m.also_report END,
                       s.name) NULLS LAST,
         s.name
"""

# Time to the numerator event (timeliness measures, and LN-01's 4 h reference line).
_TIMING_SQL = """
SELECT * FROM latest_timing_summary WHERE period = $period ORDER BY measure_id
"""

_NOT_MET_SQL = """
SELECT measure_id, patient_id, encounter_id, site_id, setting, index_time, evidence,
       count(*) OVER (PARTITION BY measure_id) AS total
FROM latest_case_results
WHERE period = $period AND outcome = 'not_met'
QUALIFY row_number() OVER (
    PARTITION BY measure_id ORDER BY index_time, patient_id, encounter_id
) <= $cap
ORDER BY measure_id, index_time, patient_id, encounter_id
"""

# Pending cases judged again: by an audit run, those of earlier months (rejudged_cases.run_id);
# for a rejudge run, those of its own month (rejudged_cases.rejudge_run_id). {column} is one of
# these two names, never input.
_REJUDGED_COUNTS_SQL = """
SELECT r.period, r.measure_id, r.previous_outcome, r.outcome, count(*) AS n,
       any_value(m.title) AS title
FROM rejudged_cases AS r
LEFT JOIN measures AS m ON m.run_id = r.rejudge_run_id AND m.measure_id = r.measure_id
WHERE r.{column} = $run_id
GROUP BY r.period, r.measure_id, r.previous_outcome, r.outcome
ORDER BY r.period, r.measure_id, r.previous_outcome, r.outcome
"""

_REJUDGED_CASES_SQL = """
SELECT period, measure_id, patient_id, encounter_id, index_time, previous_outcome, outcome,
       evidence
FROM rejudged_cases
WHERE {column} = $run_id
QUALIFY row_number() OVER (
    PARTITION BY period, measure_id ORDER BY index_time, patient_id, encounter_id
) <= $cap
ORDER BY period, measure_id, index_time, patient_id, encounter_id
"""

_LOAD_COUNTS_SQL = """
SELECT table_name,
       sum(input_rows) AS input_rows,
       sum(loaded_rows) AS loaded_rows,
       sum(quarantined_rows) AS quarantined_rows,
       list_sort(list(DISTINCT source_file)) AS source_files
FROM load_counts WHERE run_id = $run_id
GROUP BY table_name ORDER BY table_name
"""

_QUARANTINE_SQL = """
WITH g AS (
    SELECT table_name, column_name, rule, count(*) AS n,
           first(source_file || ' line ' || source_line ORDER BY source_file, source_line)
               AS first_seen
    FROM quarantine WHERE run_id = $run_id
    GROUP BY table_name, column_name, rule
)
SELECT *, count(*) OVER () AS groups, sum(n) OVER () AS problems
FROM g
ORDER BY n DESC, table_name, column_name NULLS FIRST, rule
LIMIT $top
"""


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
        "changes": _one_line(row.get("changes")),
        "no_case": not any(counts),
    }


def _timing_view(row: dict[str, Any]) -> dict[str, Any]:
    denominator = row["denominator"]
    within_reference = row["within_reference"] if row["reference_hours"] is not None else None
    within_window = row["within_window"] if row["window_hours"] is not None else None
    return {
        **row,
        "reference": _share(within_reference, denominator),
        "window": _share(within_window, denominator),
    }


def _rejudged_groups(
    con: duckdb.DuckDBPyConnection, fields: dict[str, Any], zone: tzinfo
) -> list[dict[str, Any]]:
    """Pending cases judged again, per (month, measure): counts by new outcome, and the cases
    (capped per group at REJUDGED_ROW_CAP, earliest index time first)."""
    column = "rejudge_run_id" if _is_rejudge(fields) else "run_id"
    params = {"run_id": fields["run_id"]}
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    counts = _records(con, _REJUDGED_COUNTS_SQL.format(column=column), params)
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
            f"{_count(row['n'])} {_outcome(row['previous_outcome'])} \u2192 "
            f"{_outcome(row['outcome'])}"
        )
        group["total"] += row["n"]
    cases = _records(
        con, _REJUDGED_CASES_SQL.format(column=column), {**params, "cap": REJUDGED_ROW_CAP}
    )
    for row in cases:
        row["index_local"] = _local_time(row["index_time"], zone)
        row["outcome_text"] = _outcome(row["outcome"])
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
        for row in _records(con, _MEASURES_SQL, {"run_id": run_id, "period": period})
    ]
    strata: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in _records(con, _STRATA_SQL, {"period": period}):
        strata[row["measure_id"]].append(row)
    components: dict[str, list[dict[str, Any]]] = defaultdict(list)
    also_report: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in _records(con, _COMPONENTS_SQL, {"period": period}):
        target = components if row["kind"] == "component" else also_report
        target[row["measure_id"]].append(row)
    timing = {
        row["measure_id"]: _timing_view(row)
        for row in _records(con, _TIMING_SQL, {"period": period})
    }
    not_met: dict[str, list[dict[str, Any]]] = defaultdict(list)
    not_met_total: dict[str, int] = {}
    for row in _records(con, _NOT_MET_SQL, {"period": period, "cap": NOT_MET_ROW_CAP}):
        row["index_local"] = _local_time(row["index_time"], zone)
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
    load_counts = _records(con, _LOAD_COUNTS_SQL, {"run_id": loading_run})
    quarantine = _records(
        con, _QUARANTINE_SQL, {"run_id": loading_run, "top": TOP_QUARANTINE_RULES}
    )
    quarantine_groups = quarantine[0]["groups"] if quarantine else 0
    quarantine_problems = quarantine[0]["problems"] if quarantine else 0

    return {
        "period": period,
        "run": fields,
        "rejudge": _is_rejudge(fields),
        "zone_name": run.zone_name,
        "zone_note": run.zone_note,
        "coverage_end": _local_time(fields.get("coverage_end"), zone),
        "started_at": _local_time(fields.get("started_at"), zone),
        "finished_at": _local_time(fields.get("finished_at"), zone),
        "generated_at": _local_time(generated_at, zone),
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
        pct=_pct,
        ci=_ci,
        count=_count,
        elapsed=_elapsed,
        span=_span,
    )
    return env


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
    try:
        context = _report_context(con, period, generated_at or datetime.now(UTC))
    except (duckdb.CatalogException, duckdb.BinderException) as exc:
        raise _older_warehouse(con, exc) from exc
    text = _environment().get_template("report.html.j2").render(**context)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"chartaudit-{period}.html"
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
        rows = _records(con, _MEASURES_SQL, {"run_id": run.fields["run_id"], "period": period})
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
            _pct(m["rate"]),
            _ci(m["ci_low"], m["ci_high"]),
            _count(m["denominator"]),
            _count(m["met"]),
            _count(m["not_met"]),
            _count(m["excluded"]),
            _count(m["pending"]),
        ]
        lines.append("| " + " | ".join(_md_cell(c) for c in cells) + " |")
    if rejudged:
        changed = "; ".join(g["line"] for g in rejudged)
        if _is_rejudge(run.fields):
            lead = (
                "Pending cases of this month judged again by run"
                f" {run.fields.get('triggered_by') or _DASH}"
                f" on extract {run.fields.get('extract_id') or _DASH}"
            )
        else:
            lead = "Pending cases of earlier months judged again by this run"
        lines += ["", _md_cell(f"{lead}: {changed}.")]
    return "\n".join(lines) + "\n"
