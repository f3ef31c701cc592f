"""Month ranges for ``chartaudit backfill`` and ``chartaudit demo``: plain Python, no Prefect, so
a bad range is refused in the command line before a worker or Prefect's server starts."""

from __future__ import annotations

from datetime import date, datetime

from chartaudit.audits.period import PeriodError, last_complete_period, parse_period

# A backfill of ten years is a mistake in the range far more often than an intent.
MAX_MONTHS = 120


def _month(text: str, option: str) -> tuple[int, int]:
    try:
        return parse_period(text)
    except PeriodError:
        raise PeriodError(f"{option} {text!r} is not a month like 2026-10") from None


def month_range(first: str, last: str) -> list[str]:
    """The months from ``first`` to ``last``, both included, oldest first; PeriodError (one
    line) for a malformed month, a range that runs backwards or one longer than MAX_MONTHS."""
    start, end = _month(first, "--from"), _month(last, "--to")
    if start > end:
        raise PeriodError(f"--from {first} is after --to {last}")
    count = (end[0] - start[0]) * 12 + end[1] - start[1] + 1
    if count > MAX_MONTHS:
        raise PeriodError(
            f"{first} to {last} is {count} months; a backfill runs at most {MAX_MONTHS}"
        )
    index = start[0] * 12 + start[1] - 1
    return [f"{(index + i) // 12:04d}-{(index + i) % 12 + 1:02d}" for i in range(count)]


def complete_months(
    coverage_start: date | None, coverage_end: datetime, timezone: str
) -> tuple[str, str]:
    """First and last month an extract covers wholly: the month of ``coverage_start`` when it
    is the 1st (else the next one; the last complete month when it is absent) to the month
    before the one holding ``coverage_end`` (the monthly run's default period)."""
    last = last_complete_period(coverage_end, timezone)
    if coverage_start is None:
        return last, last
    year, month = coverage_start.year, coverage_start.month
    if coverage_start.day != 1:
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return f"{year:04d}-{month:02d}", last
