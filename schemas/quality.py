"""Data-quality checks beyond the per-value rules: warnings, and the bound on future times.

A WARNING is a finding about a row whose facts are usable but look inconsistent: the row loads
and the finding goes to the ``data_quality`` table (extract contract, "Bad input"). Quarantine
is for rows whose facts cannot be used. The warning rules, each with its threshold here:

- ``time_order``: the later time of one event precedes its earlier time (encounter departure
  before arrival, order performed before ordered, lab resulted before collected, medication
  ended before it started: ``contract.TableSpec.ordered_times``). EHRs back-date entries: an MRI
  order signed 15 minutes after the scan is still an MRI, and quarantining it would fail the
  case against the clinician.
- ``after_extract_created``: a time (or date) later than the manifest's ``created`` by at most
  ``FUTURE_TOLERANCE``: clock or time-zone skew between systems. More than that is impossible
  (the event had not happened when the extract was made): the quarantine rule
  ``far_after_extract_created``. Without ``created`` in the manifest neither check runs.
- ``dose_above_label_max``: a medication's daily dose (``dose_mg * coalesce(doses_per_day, 1)``,
  as LN-13 computes it) above ``DAILY_DOSE_LIMITS_MG``: the highest daily dose the label allows
  for any indication, for the ingredients whose dose a measure judges. Possible (off-label), but
  most often a unit slip (micrograms written as milligrams), so a reviewer should look.

Warnings are found on the LOADED rows only: a quarantined row's problems are in quarantine.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import polars as pl

from chartaudit.schemas.contract import SOURCE_LINE, TABLES
from chartaudit.schemas.manifest import Manifest
from chartaudit.schemas.models import (
    AFTER_CREATED,
    DOSE_ABOVE_LABEL_MAX,
    FAR_AFTER_CREATED,
    QUARANTINE_SCHEMA,
    TIME_ORDER,
)

__all__ = [
    "DAILY_DOSE_LIMITS_MG",
    "FUTURE_TOLERANCE",
    "far_future_faults",
    "shown",
    "warning_findings",
]

# How far after the manifest's `created` a time may lie and still load (with a warning).
FUTURE_TOLERANCE = timedelta(hours=24)

# Highest labelled daily dose (mg/day, any indication: Parkinson's disease) of the dopamine
# agonists whose dose LN-13 judges against the far lower RLS schedule (4 mg, 0.5 mg).
# Ropinirole: Requip 24 mg/day; pramipexole: Mirapex 4.5 mg/day; rotigotine: Neupro 16 mg/24 h.
DAILY_DOSE_LIMITS_MG: dict[str, float] = {
    "ropinirole": 24.0,
    "pramipexole": 4.5,
    "rotigotine": 16.0,
}

# A finding before its table and file are filled in (validation.py adds them).
ROW_FINDING_SCHEMA = {
    k: v for k, v in QUARANTINE_SCHEMA.items() if k not in ("table_name", "source_file")
}


def shown(frame: pl.DataFrame, column: str) -> pl.Expr:
    """A canonical value as quarantine and data_quality show it (UTC instants with a Z)."""
    if frame.schema[column] == pl.Datetime("us", "UTC"):
        return pl.col(column).dt.strftime("%Y-%m-%d %H:%M:%SZ")
    return pl.col(column).cast(pl.String)


def _findings(hits: pl.DataFrame, column: str, rule: str, value: pl.Expr) -> pl.DataFrame:
    return hits.select(
        pl.col(SOURCE_LINE),
        pl.lit(column, dtype=pl.String).alias("column_name"),
        pl.lit(rule).alias("rule"),
        value.cast(pl.String).alias("value"),
    )


def _none() -> pl.DataFrame:
    return pl.DataFrame(schema=ROW_FINDING_SCHEMA)


def _concat(parts: list[pl.DataFrame]) -> pl.DataFrame:
    return pl.concat(parts).cast(ROW_FINDING_SCHEMA) if parts else _none()


# --- times after the extract was made -----------------------------------------------------------


def _dated_columns(table: str) -> list[tuple[str, str]]:
    return [(c.name, c.type) for c in TABLES[table].columns if c.type in ("timestamp", "date")]


def _after(frame: pl.DataFrame, column: str, kind: str, moment: datetime, zone: str) -> pl.Expr:
    """The column's value is later than ``moment``; a date counts from its local midnight, so a
    date is "after" only from the day after ``moment``'s local date."""
    if kind == "timestamp":
        return pl.col(column) > pl.lit(moment).cast(pl.Datetime("us", "UTC"))
    return pl.col(column) > pl.lit(moment.astimezone(ZoneInfo(zone)).date())


def _created_text(manifest: Manifest) -> str:
    return f"{manifest.created_at:%Y-%m-%d %H:%M:%S}Z"


def far_future_faults(table: str, frame: pl.DataFrame, manifest: Manifest) -> pl.DataFrame:
    """Quarantine: times more than FUTURE_TOLERANCE after the manifest's created."""
    if manifest.created_at is None:
        return _none()
    limit = manifest.created_at + FUTURE_TOLERANCE
    parts = []
    for column, kind in _dated_columns(table):
        hits = frame.filter(_after(frame, column, kind, limit, manifest.timezone))
        value = pl.concat_str(
            shown(frame, column),
            pl.lit(f", more than 24 h after created {_created_text(manifest)}"),
        )
        parts.append(_findings(hits, column, FAR_AFTER_CREATED, value))
    return _concat(parts)


# --- warnings -----------------------------------------------------------------------------------


def _time_order(table: str, frame: pl.DataFrame) -> list[pl.DataFrame]:
    parts = []
    for later, earlier in TABLES[table].ordered_times:
        hits = frame.filter(pl.col(later) < pl.col(earlier))
        value = pl.concat_str(
            shown(frame, later), pl.lit(f" before {earlier} "), shown(frame, earlier)
        )
        parts.append(_findings(hits, later, TIME_ORDER, value))
    return parts


def _soon_after_created(table: str, frame: pl.DataFrame, manifest: Manifest) -> list[pl.DataFrame]:
    if manifest.created_at is None:
        return []
    created, zone = manifest.created_at, manifest.timezone
    parts = []
    for column, kind in _dated_columns(table):
        hits = frame.filter(_after(frame, column, kind, created, zone))
        value = pl.concat_str(
            shown(frame, column), pl.lit(f" after created {_created_text(manifest)}")
        )
        parts.append(_findings(hits, column, AFTER_CREATED, value))
    return parts


def _dose_above_label_max(table: str, frame: pl.DataFrame) -> list[pl.DataFrame]:
    if table != "medications":
        return []
    limit = pl.col("ingredient").replace_strict(
        DAILY_DOSE_LIMITS_MG, default=None, return_dtype=pl.Float64
    )
    daily = pl.col("dose_mg") * pl.col("doses_per_day").fill_null(1.0)
    hits = frame.filter(daily > limit)
    value = pl.format(
        "{} {} mg a day, above the label's {} mg",
        pl.col("ingredient"),
        daily.round(3),
        limit,
    )
    return [_findings(hits, "dose_mg", DOSE_ABOVE_LABEL_MAX, value)]


def warning_findings(table: str, frame: pl.DataFrame, manifest: Manifest) -> pl.DataFrame:
    """Warnings of one table's loaded rows: (source_line, column_name, rule, value)."""
    parts = [
        *_time_order(table, frame),
        *_soon_after_created(table, frame, manifest),
        *_dose_above_label_max(table, frame),
    ]
    return _concat(parts)
