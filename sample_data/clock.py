"""Time for the synthetic extract: real instants inside, local wall-clock text outside.

Every event is built as a UTC instant, so "MRI 12 h after the red flag" is 12 real hours even
across a daylight-saving change; only when a row is written is the instant turned into the naive
local text of the extract's time zone. A local time that the zone repeats (the fall-back hour)
is written with its explicit UTC offset, so no written timestamp is ambiguous.
"""

from __future__ import annotations

import random
from calendar import monthrange
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from chartaudit.sample_data import GeneratorArgumentError


class Unplaceable(Exception):
    """A scenario's timeline does not fit inside the extract's coverage."""


def hours(n: float) -> timedelta:
    return timedelta(hours=n)


def days(n: float) -> timedelta:
    return timedelta(days=n)


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


def shift_month(year: int, month: int, delta: int) -> tuple[int, int]:
    index = year * 12 + (month - 1) + delta
    return index // 12, index % 12 + 1


class Clock:
    """The coverage months of one extract in one IANA time zone."""

    def __init__(self, timezone: str, end_month: str, months: int) -> None:
        if months < 1:
            raise GeneratorArgumentError("months must be at least 1")
        self.zone = ZoneInfo(timezone)
        end_year, end_mon = (int(part) for part in end_month.split("-"))
        self.months = [shift_month(end_year, end_mon, -k) for k in reversed(range(months))]
        self.first_day = date(*self.months[0], 1)
        self.last_day = date(end_year, end_mon, monthrange(end_year, end_mon)[1])
        self.start = self.month_start(*self.months[0])
        self.end = self.month_start(*shift_month(end_year, end_mon, 1))
        # When the extract was made (manifest.json `created`): a week after the coverage ends,
        # after every row it holds (departures of patients still admitted at coverage end run
        # up to 3 days past it). The loader quarantines times over a day after this instant.
        self.created = self.end + timedelta(days=7)

    # --- local wall clock -> instant -------------------------------------------------------
    def month_start(self, year: int, month: int) -> datetime:
        """Local midnight on the 1st of a month, as a UTC instant."""
        return datetime(year, month, 1, tzinfo=self.zone).astimezone(UTC)

    def at(self, day: date, hour: int, minute: int = 0) -> datetime | None:
        """The instant of a local wall-clock time, or None when the zone skips or repeats it."""
        naive = datetime(day.year, day.month, day.day, hour, minute)
        first = naive.replace(tzinfo=self.zone, fold=0)
        if first.utcoffset() != naive.replace(tzinfo=self.zone, fold=1).utcoffset():
            return None
        return first.astimezone(UTC)

    def exact(self, day: date, hour: int, minute: int = 0) -> datetime:
        instant = self.at(day, hour, minute)
        if instant is None:
            raise Unplaceable(f"{day} {hour:02d}:{minute:02d} is not a single local time")
        return instant

    # --- instant -> text ------------------------------------------------------------------
    def text(self, instant: datetime, *, offset: bool = False) -> str:
        """``YYYY-MM-DD HH:MM:SS`` local, plus the UTC offset when asked or when ambiguous."""
        local = instant.astimezone(self.zone)
        full = local.isoformat(sep=" ", timespec="seconds")
        if offset or local.replace(fold=1 - local.fold).utcoffset() != local.utcoffset():
            return full
        return full[:19]

    def next_month_start(self, instant: datetime) -> datetime:
        """Local midnight on the 1st of the month after the one holding ``instant``: the first
        instant that is no longer "at or before the end" of that month."""
        local = instant.astimezone(self.zone)
        return self.month_start(*shift_month(local.year, local.month, 1))

    def local_date(self, instant: datetime) -> date:
        return instant.astimezone(self.zone).date()

    def period_of(self, instant: datetime) -> str:
        return instant.astimezone(self.zone).strftime("%Y-%m")

    # --- placing events -------------------------------------------------------------------
    def place(
        self,
        rng: random.Random,
        month_index: int,
        *,
        before: timedelta = timedelta(0),
        after: timedelta = timedelta(0),
        hour_range: tuple[int, int] = (0, 23),
    ) -> datetime:
        """A random instant in coverage month ``month_index`` whose span
        ``[t - before, t + after]`` lies inside the coverage; earlier months when it cannot."""
        count = len(self.months)
        for shift in range(count):
            year, month = self.months[(month_index - shift) % count]
            for _ in range(40):
                day = date(year, month, rng.randint(1, monthrange(year, month)[1]))
                instant = self.at(day, rng.randint(*hour_range), rng.randrange(0, 60, 5))
                if instant and instant - before >= self.start and instant + after < self.end:
                    return instant
        raise Unplaceable(f"no room in coverage for a span of {before} before and {after} after")

    def between(
        self,
        rng: random.Random,
        start: datetime,
        end: datetime,
        hour_range: tuple[int, int] = (8, 17),
    ) -> datetime:
        """A random local wall-clock time (whole 5 minutes) with ``start <= t < end``."""
        first, last = self.local_date(start), self.local_date(end)
        span = (last - first).days
        for _ in range(200):
            day = first + timedelta(days=rng.randint(0, span))
            instant = self.at(day, rng.randint(*hour_range), rng.randrange(0, 60, 5))
            if instant and start <= instant < end:
                return instant
        raise Unplaceable(f"no local time between {start} and {end}")

    # --- daylight saving ------------------------------------------------------------------
    def dst_changes(self) -> tuple[list[date], list[date]]:
        """Coverage days on which the clocks go forward, and days on which they go back."""
        forward: list[date] = []
        back: list[date] = []
        day = self.first_day
        previous = self._noon_offset(day - timedelta(days=1))
        while day <= self.last_day:
            current = self._noon_offset(day)
            if current > previous:
                forward.append(day)
            elif current < previous:
                back.append(day)
            previous, day = current, day + timedelta(days=1)
        return forward, back

    def _noon_offset(self, day: date) -> timedelta:
        offset = datetime(day.year, day.month, day.day, 12, tzinfo=self.zone).utcoffset()
        assert offset is not None
        return offset

    def skipped_wall_time(self, day: date) -> tuple[int, int] | None:
        """An (hour, minute) that does not exist on ``day`` (inside a spring-forward gap)."""
        for hour in range(24):
            for minute in (30, 0):
                naive = datetime(day.year, day.month, day.day, hour, minute)
                there = naive.replace(tzinfo=self.zone).astimezone(UTC).astimezone(self.zone)
                if there.replace(tzinfo=None) != naive:
                    return hour, minute
        return None
