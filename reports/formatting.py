"""Formatting for the report and the Markdown summary: plain text (the template escapes it),
used as Jinja2 filters."""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo

DASH = "\u2014"

# What the report prints for a site, department or setting the extract does not record (NULL).
# These columns are free text, so a real value could read exactly so: the page prints the label
# in its own element, in italics (em.not-recorded, with data-stratum="" on a stratum's row), and a
# real value as written, upright (docs/decisions.md, "A missing site or setting is its own
# stratum").
NOT_RECORDED = "(not recorded)"


def recorded(value: str | None) -> str:
    """A site, department or setting as plain text: NOT_RECORDED for a missing one."""
    return NOT_RECORDED if value is None else value


def pct(value: float | None) -> str:
    return DASH if value is None else f"{100 * value:.1f} %"


def ci(low: float | None, high: float | None) -> str:
    if low is None or high is None:
        return DASH
    return f"{100 * low:.1f}\u2013{100 * high:.1f} %"


def change(value: float | None) -> str:
    """A change of rate in percentage points, signed: "+3.2 pp", "-1.0 pp", "0.0 pp"."""
    if value is None:
        return DASH
    points = round(100 * value, 1)
    return f"{points:+.1f} pp" if points else "0.0 pp"


def count(value: int | None) -> str:
    return DASH if value is None else f"{value:,}"


def hours(value: float | None) -> str:
    return DASH if value is None else f"{value:.1f} h"


def elapsed(value: float | None) -> str:
    """Measured hours as today ("3.5 h"), with days beside them from 48 h ("216.0 h (9.0 d)")."""
    if value is None:
        return DASH
    if abs(value) >= 48:
        return f"{hours(value)} ({value / 24:.1f} d)"
    return hours(value)


def span(value: float | None) -> str:
    """A line or window: "4 h", "12 h", "1.5 h"; in days from 48 h: "14 d", "2.5 d"."""
    if value is None:
        return DASH
    amount, unit = (value / 24, "d") if abs(value) >= 48 else (value, "h")
    text = f"{amount:.0f}" if amount == round(amount) else f"{amount:.1f}"
    return f"{text} {unit}"


def share(part: int | None, whole: int | None) -> str:
    """Part of whole as "3 of 6 (50.0 %)"; a dash when there is no part (no line to be within)."""
    if part is None or whole is None:
        return DASH
    return f"{count(part)} of {count(whole)} ({pct(part / whole if whole else None)})"


def outcome(value: str | None) -> str:
    return DASH if value is None else value.replace("_", " ")


def one_line(value: str | None) -> str:
    """Folded text (a measure file's `changes`) as one line; empty for None."""
    return " ".join((value or "").split())


def offset(moment: datetime) -> str:
    delta = moment.utcoffset()
    minutes = 0 if delta is None else int(delta.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    whole_hours, mins = divmod(abs(minutes), 60)
    return f"{sign}{whole_hours:02d}:{mins:02d}"


def local_time(value: datetime | None, zone: tzinfo) -> str:
    """An instant shown as local wall-clock time in ``zone`` with its UTC offset."""
    if value is None:
        return DASH
    if value.tzinfo is None:  # a TIMESTAMP without zone: the warehouse stores UTC instants
        value = value.replace(tzinfo=UTC)
    local = value.astimezone(zone)
    return f"{local:%Y-%m-%d %H:%M} {offset(local)}"
