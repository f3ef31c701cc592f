"""The extract folder's ``manifest.json``: its fields, time zone and coverage.

``manifest.json`` is optional (extract contract, "The folder"). Without it, or without its
``timezone``, naive timestamps are read as UTC and ``Manifest.timezone_defaulted`` is True so the
flow can say so in the run log.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import polars as pl

from chartaudit.schemas.errors import ExtractRejected
from chartaudit.schemas.folder import MANIFEST_FILE, extract_digest

DEFAULT_TIMEZONE = "UTC"
MANIFEST_KEYS = ("extract_id", "source", "timezone", "coverage_start", "coverage_end", "created")


@dataclass(frozen=True)
class Manifest:
    extract_id: str  # from manifest.json; when absent: "<folder name>-<first 8 hex of digest>"
    source: str | None
    timezone: str  # IANA zone of naive timestamps; "UTC" when absent
    timezone_defaulted: bool  # True when manifest.json or its timezone was absent
    coverage_start: date | None
    # A tz-aware UTC instant. A date "2026-10-31" means the END of that local day (local midnight
    # starting 2026-11-01, in UTC); a full timestamp is that instant (naive = in `timezone`).
    coverage_end: datetime | None
    created: str | None  # as written
    # `created` as a tz-aware UTC instant (a date: the end of that local day); times more than
    # a day after it cannot be true (quality.py). None when the manifest gives none.
    created_at: datetime | None = None

    @property
    def extract_year(self) -> int:
        """The year the extract covers up to (upper bound of birth_year).

        The local year of the last instant before ``coverage_end``, so that a coverage end of
        "2026-12-31" in America/Chicago (2027-01-01 06:00 UTC) is 2026; the current year when
        the manifest gives no coverage end.
        """
        if self.coverage_end is None:
            return date.today().year
        last = self.coverage_end - timedelta(microseconds=1)
        return last.astimezone(ZoneInfo(self.timezone)).year

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (for ``RawExtract.save`` / ``ValidatedExtract.save``)."""
        return {
            "extract_id": self.extract_id,
            "source": self.source,
            "timezone": self.timezone,
            "timezone_defaulted": self.timezone_defaulted,
            "coverage_start": self.coverage_start.isoformat() if self.coverage_start else None,
            "coverage_end": self.coverage_end.isoformat() if self.coverage_end else None,
            "created": self.created,
            "created_at": self.created_at.isoformat() if self.created_at else None,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Manifest:
        """Inverse of ``to_json``."""
        start, end = data.get("coverage_start"), data.get("coverage_end")
        created_at = data.get("created_at")
        return cls(
            extract_id=data["extract_id"],
            source=data.get("source"),
            timezone=data["timezone"],
            timezone_defaulted=bool(data["timezone_defaulted"]),
            coverage_start=date.fromisoformat(start) if start else None,
            coverage_end=datetime.fromisoformat(end).astimezone(UTC) if end else None,
            created=data.get("created"),
            created_at=datetime.fromisoformat(created_at).astimezone(UTC) if created_at else None,
        )


def _reject(field: str, problem: str, fix: str) -> ExtractRejected:
    return ExtractRejected(f"extract rejected: {MANIFEST_FILE} field {field} {problem}; {fix}")


def _optional_str(data: dict[str, Any], field: str) -> str | None:
    value = data.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _reject(field, f"is {json.dumps(value)}, not a string", "write it as a JSON string")
    return value.strip() or None


def _check_timezone(name: str) -> str:
    fix = "use an IANA zone name such as 'America/Chicago'"
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise _reject("timezone", f"{name!r} is not a known IANA time zone", fix) from None
    try:  # polars localises the timestamps: it must know the zone too
        pl.Series([datetime(2000, 1, 1)]).dt.replace_time_zone(name)
    except Exception:
        raise _reject("timezone", f"{name!r} is not a time zone polars knows", fix) from None
    return name


def _parse_coverage_start(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text).date()
    except ValueError:
        raise _reject(
            "coverage_start", f"{text!r} is not a date", "write it as YYYY-MM-DD"
        ) from None


def _parse_coverage_end(text: str, zone: str, field: str = "coverage_end") -> datetime:
    """A date (the end of that local day) or a timestamp (naive = local time) as a UTC instant."""
    tz = ZoneInfo(zone)
    try:
        day = date.fromisoformat(text)
    except ValueError:
        day = None
    if day is not None:
        # The end of that local day = the local midnight that starts the next day. fold=0 takes
        # the earlier instant if that midnight is repeated; if it is skipped (DST at midnight),
        # fold=0 uses the pre-transition offset, which is exactly the instant the day starts.
        end = datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=tz)
        return end.astimezone(UTC)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise _reject(
            field,
            f"{text!r} is not a date or timestamp",
            "write it as YYYY-MM-DD"
            + (" (the last day covered)" if field == "coverage_end" else "")
            + " or an ISO 8601 timestamp",
        ) from None
    if moment.tzinfo is not None:
        return moment.astimezone(UTC)
    # A naive instant is local time; an ambiguous one takes the earlier instant (fold=0).
    local = moment.replace(tzinfo=tz)
    if local.astimezone(UTC).astimezone(tz).replace(tzinfo=None) != moment:
        raise _reject(
            field,
            f"{text!r} does not exist in {zone} (skipped by a clock change)",
            "give a time that exists locally or add a UTC offset",
        )
    return local.astimezone(UTC)


def _check_coverage(start: date | None, end: datetime | None, zone: str, end_text: str) -> None:
    """coverage_end must come after the start of coverage_start (local midnight)."""
    if start is None or end is None:
        return
    first_instant = datetime.combine(start, datetime.min.time(), tzinfo=ZoneInfo(zone))
    if end <= first_instant.astimezone(UTC):
        raise _reject(
            "coverage_end",
            f"{end_text!r} is before coverage_start {start.isoformat()!r}",
            "give the last day the extract covers, on or after coverage_start",
        )


def read_manifest(extract_dir: Path, digest: str | None = None) -> Manifest:
    """Read ``manifest.json`` of an extract folder (defaults when it is absent).

    ``digest`` (of ``extract_digest``) is only used for the default ``extract_id``; it is
    computed when not given. Bad JSON, a wrongly typed field, an unknown time zone, an
    unreadable date or a coverage_end before coverage_start raise ``ExtractRejected``.
    """
    extract_dir = Path(extract_dir)
    path = extract_dir / MANIFEST_FILE
    data: dict[str, Any] = {}
    if path.is_file():
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            raise ExtractRejected(
                f"extract rejected: {MANIFEST_FILE} in {extract_dir} is not UTF-8 text; "
                "save it as UTF-8 or remove the file"
            ) from None
        except json.JSONDecodeError as exc:
            raise ExtractRejected(
                f"extract rejected: {MANIFEST_FILE} in {extract_dir} is not valid JSON "
                f"({exc.msg} at line {exc.lineno} column {exc.colno}); fix it or remove the file"
            ) from None
        if not isinstance(loaded, dict):
            raise ExtractRejected(
                f"extract rejected: {MANIFEST_FILE} in {extract_dir} is not a JSON object; "
                'write it as {"extract_id": ..., "timezone": ..., ...} or remove the file'
            )
        data = loaded

    zone_text = _optional_str(data, "timezone")
    timezone = _check_timezone(zone_text) if zone_text else DEFAULT_TIMEZONE
    start_text = _optional_str(data, "coverage_start")
    end_text = _optional_str(data, "coverage_end")
    coverage_start = _parse_coverage_start(start_text) if start_text else None
    coverage_end = _parse_coverage_end(end_text, timezone) if end_text else None
    _check_coverage(coverage_start, coverage_end, timezone, end_text or "")
    created = _optional_str(data, "created")
    extract_id = _optional_str(data, "extract_id")
    if extract_id is None:
        extract_id = f"{extract_dir.resolve().name}-{(digest or extract_digest(extract_dir))[:8]}"
    return Manifest(
        extract_id=extract_id,
        source=_optional_str(data, "source"),
        timezone=timezone,
        timezone_defaulted=zone_text is None,
        coverage_start=coverage_start,
        coverage_end=coverage_end,
        created=created,
        created_at=_parse_coverage_end(created, timezone, "created") if created else None,
    )


def unknown_manifest_keys(extract_dir: Path) -> list[str]:
    """Keys of manifest.json the contract does not define (reported as warnings)."""
    path = Path(extract_dir) / MANIFEST_FILE
    if not path.is_file():
        return []
    data = json.loads(path.read_text(encoding="utf-8"))
    return sorted(k for k in data if k not in MANIFEST_KEYS)
