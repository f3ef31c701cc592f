"""The audit month as real instants in the extract's time zone, and the months an extract covers."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

# The whole text (fullmatch: "$" would let a trailing newline through): a period names files.
_PERIOD = re.compile(r"(\d{4})-(0[1-9]|1[0-2])")


class PeriodError(ValueError):
    pass


class CoverageError(ValueError):
    """A period (or a backfill's range) the extract does not cover, or covers only in part."""


def _month_start(year: int, month: int, zone: ZoneInfo) -> datetime:
    """Local midnight on the 1st of a month, as a UTC instant (year/month may overflow)."""
    year, month = year + (month - 1) // 12, (month - 1) % 12 + 1
    return datetime(year, month, 1, tzinfo=zone).astimezone(UTC)


def _coverage_instant(start: date | datetime | None, zone: ZoneInfo) -> datetime | None:
    """A coverage start as a UTC instant: an instant as it is; a day (the manifest's
    coverage_start) as the local midnight that starts it."""
    if start is None:
        return None
    if isinstance(start, datetime):  # before date: a datetime is a date too
        return start.astimezone(UTC)
    return datetime.combine(start, time(), zone).astimezone(UTC)


def parse_period(period: str) -> tuple[int, int]:
    """(year, month) of a ``YYYY-MM`` period; PeriodError otherwise."""
    match = _PERIOD.fullmatch(period) if isinstance(period, str) else None
    if not match:
        raise PeriodError(f"period {period!r} is not a month like 2026-10")
    return int(match.group(1)), int(match.group(2))


@dataclass(frozen=True)
class AuditPeriod:
    """Month M in zone Z: episodes indexed in [start, end) belong to it; patient measures are
    judged at ``end``, over a lookback from ``lookback_start`` (the 12 calendar months ending
    with M). ``coverage_end`` is the first instant the extract has no data for;
    ``coverage_start`` the first it has data for (local midnight starting the first day covered),
    None when unknown."""

    period: str
    timezone: str
    start: datetime
    end: datetime
    lookback_start: datetime
    coverage_end: datetime
    coverage_start: datetime | None = None

    @classmethod
    def of(
        cls,
        period: str,
        timezone: str,
        coverage_end: datetime,
        coverage_start: date | datetime | None = None,
    ) -> AuditPeriod:
        year, month = parse_period(period)
        zone = ZoneInfo(timezone)
        return cls(
            period=period,
            timezone=timezone,
            start=_month_start(year, month, zone),
            end=_month_start(year, month + 1, zone),
            lookback_start=_month_start(year, month - 11, zone),
            coverage_end=coverage_end.astimezone(UTC),
            coverage_start=_coverage_instant(coverage_start, zone),
        )

    @property
    def year(self) -> int:
        return int(self.period[:4])

    @property
    def first_day(self) -> date:
        return date(self.year, int(self.period[5:7]), 1)


# --- what an extract covers ---------------------------------------------------------------
# Months are counted as year * 12 + month - 1, so that the next month is one more.


def month_index(period: str) -> int:
    year, month = parse_period(period)
    return year * 12 + month - 1


def month_name(index: int) -> str:
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def month_names(first: int, last: int) -> str:
    """'2026-10', or '2025-01 to 2025-09' for a run of months."""
    return month_name(first) if first == last else f"{month_name(first)} to {month_name(last)}"


def both(names: list[str]) -> str:
    return " and ".join(names)


@dataclass(frozen=True)
class Coverage:
    """The span an extract covers, [start, end) as UTC instants, read in its time zone: ``start``
    is local midnight of the manifest's ``coverage_start`` (a date), ``end`` the first instant
    with no data (the manifest's ``coverage_end`` is the last day covered). Either is None when
    unknown (a manifest without the field, before the data are read): that side is not checked.

    A month is covered whole when the span holds it from its local midnight on the 1st to that
    of the next month; the month holding ``start`` or the last instant before ``end`` may be
    covered only in part (docs/decisions.md, "Periods the extract covers")."""

    timezone: str
    start: datetime | None
    end: datetime | None

    @classmethod
    def of(
        cls, coverage_start: date | None, coverage_end: datetime | None, timezone: str
    ) -> Coverage:
        start = None
        if coverage_start is not None:
            midnight = datetime.combine(coverage_start, time(), tzinfo=ZoneInfo(timezone))
            start = midnight.astimezone(UTC)
        end = None if coverage_end is None else coverage_end.astimezone(UTC)
        return cls(timezone, start, end)

    def _month_start(self, index: int) -> datetime:
        return _month_start(index // 12, index % 12 + 1, ZoneInfo(self.timezone))

    def _local(self, instant: datetime) -> datetime:
        return instant.astimezone(ZoneInfo(self.timezone))

    def _first(self) -> int | None:
        """The month holding ``start``."""
        if self.start is None:
            return None
        local = self._local(self.start)
        return local.year * 12 + local.month - 1

    def _last(self) -> int | None:
        """The month holding the last instant covered."""
        if self.end is None:
            return None
        local = self._local(self.end - timedelta(microseconds=1))
        return local.year * 12 + local.month - 1

    def _partial_at(self, index: int) -> bool:
        starts_inside = index == self._first() and self.start > self._month_start(index)
        ends_inside = index == self._last() and self.end < self._month_start(index + 1)
        return starts_inside or ends_inside

    def outside(self, period: str) -> bool:
        index, first, last = month_index(period), self._first(), self._last()
        return (first is not None and index < first) or (last is not None and index > last)

    def partial(self, period: str) -> bool:
        """Inside the coverage, but not wholly."""
        return not self.outside(period) and self._partial_at(month_index(period))

    def _whole(self) -> tuple[int | None, int | None]:
        """First and last month covered whole (None: that side is unknown); first > last when
        no month is."""
        first, last = self._first(), self._last()
        if first is not None and self._partial_at(first):
            first += 1
        if last is not None and self._partial_at(last):
            last -= 1
        return first, last

    def covered(self) -> tuple[str | None, str | None]:
        """First and last month covered at all, whole or in part (None: unknown)."""
        first, last = self._first(), self._last()
        return (
            None if first is None else month_name(first),
            None if last is None else month_name(last),
        )

    def partial_months(self) -> list[str]:
        ends = {self._first(), self._last()} - {None}
        return [month_name(i) for i in sorted(ends) if self._partial_at(i)]

    def whole_months(self) -> tuple[str, str] | None:
        """First and last month covered whole; None when there is none (or a side is unknown)."""
        first, last = self._whole()
        if first is None or last is None or first > last:
            return None
        return month_name(first), month_name(last)

    def last_whole_month(self) -> str:
        """The default audit period: the newest month covered whole."""
        first, last = self._whole()
        if last is None or (first is not None and first > last):
            raise CoverageError(
                f"the extract covers no whole month ({self.describe()}): give --period, and"
                " --allow-partial-month to audit a month it covers in part"
            )
        return month_name(last)

    # -- words --

    def _from_text(self, instant: datetime) -> str:
        local = self._local(instant)
        return f"{local:%Y-%m-%d}" if local.time() == time() else f"{local:%Y-%m-%d %H:%M}"

    def _to_text(self, instant: datetime) -> str:
        """An exclusive end: local midnight is the day before, read as "to the end of"."""
        local = self._local(instant)
        if local.time() == time():
            return f"{local.date() - timedelta(days=1):%Y-%m-%d}"
        return f"{local:%Y-%m-%d %H:%M}"

    def describe(self) -> str:
        """'2025-10-01 to 2026-10-31' (both days included)."""
        if self.start is None:
            return f"up to {self._to_text(self.end)}" if self.end else "unknown"
        if self.end is None:
            return f"from {self._from_text(self.start)}"
        return f"{self._from_text(self.start)} to {self._to_text(self.end)}"

    def part_of(self, period: str) -> str:
        """The days of ``period`` the extract covers: '2026-10-01 to 2026-10-15'."""
        index = month_index(period)
        start = self._month_start(index)
        end = self._month_start(index + 1)
        if self.start is not None:
            start = max(start, self.start)
        if self.end is not None:
            end = min(end, self.end)
        return f"{self._from_text(start)} to {self._to_text(end)}"

    def auditable(self, flag: bool = True) -> str:
        """The months a run may audit: 'a month from 2025-10 to 2026-09 (2026-10 only in part,
        with --allow-partial-month)'; without the parenthesis when ``flag`` is False."""
        first, last = self._whole()
        partial = self.partial_months()
        if first is not None and last is not None and first > last:
            return f"{both(partial)} only in part, with --allow-partial-month"
        if first is not None and first == last:
            months = month_name(first)
        elif first is None:
            months = f"a month up to {month_name(last)}"
        elif last is None:
            months = f"a month from {month_name(first)}"
        else:
            months = f"a month from {month_name(first)} to {month_name(last)}"
        if flag and partial:
            months += f" ({both(partial)} only in part, with --allow-partial-month)"
        return months

    def check(self, period: str, allow_partial: bool = False) -> bool:
        """Whether ``period`` is covered only in part (then ``allow_partial`` must be given);
        CoverageError, one line, when it is outside the coverage or partial without it."""
        if self.outside(period):
            raise CoverageError(
                f"period {period} is outside the extract's coverage ({self.describe()}):"
                f" audit {self.auditable()}"
            )
        partial = self.partial(period)
        if partial and not allow_partial:
            first, last = self._whole()
            whole = first is None or last is None or first <= last
            raise CoverageError(
                f"period {period} is a partial month: the extract covers"
                f" {self.part_of(period)} of it; add --allow-partial-month to audit it as"
                " partial" + (f", or audit {self.auditable(flag=False)}" if whole else "")
            )
        return partial
