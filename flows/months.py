"""Month ranges for ``chartaudit backfill`` and ``chartaudit demo``, and the part of a range an
extract covers: plain Python, no Prefect, so a bad range, or one reaching outside the extract's
coverage, is refused in the command line before a worker or Prefect's server starts."""

from __future__ import annotations

from datetime import date, datetime

from chartaudit.audits.period import (
    Coverage,
    CoverageError,
    PeriodError,
    both,
    month_index,
    month_names,
    parse_period,
)

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
    """First and last month an extract covers wholly (Coverage.whole_months); without
    ``coverage_start``, the last complete month alone (the monthly run's default period)."""
    coverage = Coverage.of(coverage_start, coverage_end, timezone)
    last = coverage.last_whole_month()
    whole = coverage.whole_months()
    return (whole[0] if whole else last), last


def _blocks(months: list[str]) -> str:
    """Months in runs: '2025-01 to 2025-09 and 2026-11'."""
    indexes = [month_index(m) for m in months]
    runs: list[list[int]] = []
    for i in indexes:
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return both([month_names(a, b) for a, b in runs])


def covered_range(
    first: str, last: str, coverage: Coverage, allow_partial: bool = False
) -> list[str]:
    """The months of a backfill (month_range) when the extract covers every one of them, and
    the partial ones only with ``allow_partial``; CoverageError, one line naming the months
    and what can be backfilled, otherwise."""
    months = month_range(first, last)
    outside = [m for m in months if coverage.outside(m)]
    partial = [m for m in months if coverage.partial(m)]
    if outside:
        verb = "is" if len(outside) == 1 else "are"
        raise CoverageError(
            f"backfill {first} to {last} reaches outside the extract's coverage"
            f" ({coverage.describe()}): {_blocks(outside)} {verb} not covered;"
            f" {_what_to_backfill(months, outside, coverage, allow_partial)}"
        )
    if partial and not allow_partial:
        whole = [m for m in months if m not in partial]
        one = len(partial) == 1
        raise CoverageError(
            f"{both(partial)} {'is a partial month' if one else 'are partial months'}: the"
            f" extract covers {_parts(coverage, partial)}; add --allow-partial-month to audit"
            f" {'it' if one else 'them'} as partial"
            + (f", or backfill {_from_to(whole[0], whole[-1])}" if whole else "")
        )
    return months


def _what_to_backfill(
    months: list[str], outside: list[str], coverage: Coverage, allow_partial: bool
) -> str:
    """'backfill from 2025-10 to 2026-09 (2026-10 only in part, with --allow-partial-month)':
    the range's covered months, or when none is, every month the extract covers."""
    inside = [m for m in months if m not in outside]
    low, high = (inside[0], inside[-1]) if inside else coverage.covered()
    if low is None or high is None:  # one side unknown: the manifest does not state it
        return f"backfill up to {high}" if low is None else f"backfill from {low}"
    partial = [] if allow_partial else [m for m in month_range(low, high) if coverage.partial(m)]
    whole = [m for m in month_range(low, high) if m not in partial]
    if not partial:
        return f"backfill {_from_to(low, high)}"
    flagged = f"{both(partial)} only in part, with --allow-partial-month"
    if not whole:
        return f"backfill {flagged}"
    return f"backfill {_from_to(whole[0], whole[-1])} ({flagged})"


def _from_to(first: str, last: str) -> str:
    return first if first == last else f"from {first} to {last}"


def _parts(coverage: Coverage, partial: list[str]) -> str:
    """'2026-10-01 to 2026-10-15 of it', or of two partial months the whole coverage."""
    if len(partial) == 1:
        return f"{coverage.part_of(partial[0])} of it"
    return coverage.describe()
