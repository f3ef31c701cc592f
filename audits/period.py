"""The audit month as real instants in the extract's time zone."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

# The whole text (fullmatch: "$" would let a trailing newline through): a period names files.
_PERIOD = re.compile(r"(\d{4})-(0[1-9]|1[0-2])")


class PeriodError(ValueError):
    pass


def _month_start(year: int, month: int, zone: ZoneInfo) -> datetime:
    """Local midnight on the 1st of a month, as a UTC instant (year/month may overflow)."""
    year, month = year + (month - 1) // 12, (month - 1) % 12 + 1
    return datetime(year, month, 1, tzinfo=zone).astimezone(UTC)


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
    ``coverage_start`` the first it has data for (local midnight starting the manifest's
    coverage_start), None when the manifest gives none (audits/lookback.py)."""

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
        coverage_start: date | None = None,
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
            coverage_start=(
                datetime.combine(coverage_start, time(), zone).astimezone(UTC)
                if coverage_start is not None
                else None
            ),
        )

    @property
    def year(self) -> int:
        return int(self.period[:4])

    @property
    def first_day(self) -> date:
        return date(self.year, int(self.period[5:7]), 1)


def last_complete_period(coverage_end: datetime, timezone: str) -> str:
    """The newest month wholly inside the extract: the month before the one holding
    ``coverage_end`` (an exclusive instant, e.g. local midnight on 1 November -> October)."""
    local = coverage_end.astimezone(ZoneInfo(timezone))
    year, month = (local.year - 1, 12) if local.month == 1 else (local.year, local.month - 1)
    return f"{year:04d}-{month:02d}"
