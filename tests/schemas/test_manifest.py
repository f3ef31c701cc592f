from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from chartaudit.schemas.errors import ExtractRejected
from chartaudit.schemas.folder import extract_digest
from chartaudit.schemas.manifest import Manifest, read_manifest
from chartaudit.schemas.reader import read_extract

from .builders import MANIFEST, write_extract


def _with_manifest(tmp_path: Path, **fields) -> Path:
    manifest = {**MANIFEST, **fields}
    manifest = {k: v for k, v in manifest.items() if v is not None}
    return write_extract(tmp_path / "x", manifest=manifest)


def test_manifest_fields_are_read(extract_dir: Path) -> None:
    assert read_manifest(extract_dir) == Manifest(
        extract_id="demo-2026-10",
        source="test EHR",
        timezone="America/Chicago",
        timezone_defaulted=False,
        coverage_start=date(2025, 11, 1),
        # the end of 2026-10-31 in Chicago: local midnight starting 2026-11-01 (CDT, UTC-5)
        coverage_end=datetime(2026, 11, 1, 5, 0, tzinfo=UTC),
        created="2026-11-02T08:00:00Z",
        created_at=datetime(2026, 11, 2, 8, 0, tzinfo=UTC),
    )


def test_absent_manifest_defaults_to_utc_and_a_digest_based_id(tmp_path: Path) -> None:
    folder = write_extract(tmp_path / "extract-2026-10", manifest=None)
    manifest = read_manifest(folder)
    digest = extract_digest(folder)
    assert manifest == Manifest(
        extract_id=f"extract-2026-10-{digest[:8]}",
        source=None,
        timezone="UTC",
        timezone_defaulted=True,
        coverage_start=None,
        coverage_end=None,
        created=None,
    )
    # naive timestamps are then UTC
    raw = read_extract(folder)
    arrival = raw.tables["encounters"]["arrival_time"][0]
    assert arrival == datetime(2026, 3, 8, 1, 30, tzinfo=UTC)


def test_manifest_without_timezone_is_defaulted(tmp_path: Path) -> None:
    manifest = read_manifest(_with_manifest(tmp_path, timezone=None))
    assert (manifest.timezone, manifest.timezone_defaulted) == ("UTC", True)
    assert manifest.extract_id == "demo-2026-10"
    assert manifest.coverage_end == datetime(2026, 11, 1, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("coverage_end", "expected"),
    [
        ("2026-10-31", datetime(2026, 11, 1, 5, 0, tzinfo=UTC)),
        ("2026-12-31", datetime(2027, 1, 1, 6, 0, tzinfo=UTC)),  # CST, UTC-6
        ("2026-10-31 23:59:59", datetime(2026, 11, 1, 4, 59, 59, tzinfo=UTC)),  # naive = local
        ("2026-10-31T23:00:00+00:00", datetime(2026, 10, 31, 23, 0, tzinfo=UTC)),
        ("2026-10-31T23:00:00Z", datetime(2026, 10, 31, 23, 0, tzinfo=UTC)),
        ("2026-11-01 01:30", datetime(2026, 11, 1, 6, 30, tzinfo=UTC)),  # ambiguous: earlier
    ],
)
def test_coverage_end_is_a_utc_instant(tmp_path: Path, coverage_end: str, expected) -> None:
    manifest = read_manifest(_with_manifest(tmp_path, coverage_end=coverage_end))
    assert manifest.coverage_end == expected
    assert manifest.coverage_end.tzinfo is UTC


@pytest.mark.parametrize(
    ("coverage_end", "year"), [("2026-12-31", 2026), ("2027-01-01 00:00", 2026), (None, None)]
)
def test_extract_year_is_the_local_year_of_coverage_end(tmp_path, coverage_end, year) -> None:
    manifest = read_manifest(_with_manifest(tmp_path, coverage_end=coverage_end))
    assert manifest.extract_year == (year or date.today().year)


def test_bad_json_is_rejected_in_one_line(tmp_path: Path) -> None:
    folder = write_extract(tmp_path / "x")
    (folder / "manifest.json").write_text('{"timezone": "UTC",\n}', encoding="utf-8")
    with pytest.raises(ExtractRejected) as caught:
        read_manifest(folder)
    assert str(caught.value) == (
        f"extract rejected: manifest.json in {folder} is not valid JSON (Expecting property "
        "name enclosed in double quotes at line 2 column 1); fix it or remove the file"
    )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"timezone": "Central Time"},
            "extract rejected: manifest.json field timezone 'Central Time' is not a known IANA "
            "time zone; use an IANA zone name such as 'America/Chicago'",
        ),
        (
            {"timezone": -6},
            "extract rejected: manifest.json field timezone is -6, not a string; write it as a "
            "JSON string",
        ),
        (
            {"coverage_end": "31/10/2026"},
            "extract rejected: manifest.json field coverage_end '31/10/2026' is not a date or "
            "timestamp; write it as YYYY-MM-DD (the last day covered) or an ISO 8601 timestamp",
        ),
        (
            {"coverage_end": "2026-03-08 02:30"},
            "extract rejected: manifest.json field coverage_end '2026-03-08 02:30' does not "
            "exist in America/Chicago (skipped by a clock change); give a time that exists "
            "locally or add a UTC offset",
        ),
        (
            {"coverage_start": "Oct 2025"},
            "extract rejected: manifest.json field coverage_start 'Oct 2025' is not a date; "
            "write it as YYYY-MM-DD",
        ),
    ],
)
def test_bad_manifest_fields_are_rejected(tmp_path: Path, fields: dict, message: str) -> None:
    folder = _with_manifest(tmp_path, **fields)
    with pytest.raises(ExtractRejected) as caught:
        read_extract(folder)
    assert str(caught.value) == message


def test_manifest_that_is_not_an_object_is_rejected(tmp_path: Path) -> None:
    folder = write_extract(tmp_path / "x")
    (folder / "manifest.json").write_text("[]", encoding="utf-8")
    with pytest.raises(ExtractRejected, match=r"^extract rejected: manifest.json in .* is not a"):
        read_manifest(folder)


def test_digest_covers_table_files_and_manifest_only(tmp_path: Path) -> None:
    folder = write_extract(tmp_path / "x")
    first = extract_digest(folder)
    assert len(first) == 64 and int(first, 16) >= 0
    (folder / "notes.txt").write_text("not part of the extract", encoding="utf-8")
    assert extract_digest(folder) == first  # extra files do not count
    assert extract_digest(write_extract(tmp_path / "y")) == first  # same content, other folder

    manifest = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps({**manifest, "source": "other"}))
    second = extract_digest(folder)
    assert second != first

    labs = folder / "labs.csv"
    labs.write_text(labs.read_text().replace("7.9", "8.0"), encoding="utf-8")
    assert extract_digest(folder) not in (first, second)


def test_manifest_round_trips_through_json(extract_dir: Path) -> None:
    manifest = read_manifest(extract_dir)
    assert Manifest.from_json(json.loads(json.dumps(manifest.to_json()))) == manifest
