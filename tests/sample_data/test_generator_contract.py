"""The generated tables follow the extract contract, except exactly the listed dirty rows (the
expected quarantine) and the rows listed as loading with a data-quality warning."""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import polars as pl
import pytest

from chartaudit.sample_data.generator import GeneratedExtract, generate_extract
from chartaudit.schemas.contract import TABLE_ORDER, TABLES
from tests.sample_data.keyfiles import read_csv as read_rows

TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}([+-]\d{2}:\d{2})?$")
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
LOINC = re.compile(r"^\d{1,5}-\d$")
EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+")
SSN = re.compile(r"\b\d{3}-\d{2}-\d{4}\b")
FREE_TEXT = {"department", "value_text", "route", "ingredient"}
# The loader's quarantine rule names (chartaudit.schemas.models) that the dirty rows exercise.
DIRTY_REASONS = {
    "not_allowed",
    "out_of_range",
    "unparseable_timestamp",
    "timestamp_not_in_timezone",
    "duplicate_key",
    "foreign_key",
    "malformed_code",
    "malformed_loinc",
    "not_positive",
    "looks_like_identifier",
    "far_after_extract_created",
}
# ... and the warning rules (the row loads) that the rows listed in data quality exercise.
WARNING_REASONS = {"time_order", "after_extract_created", "dose_above_label_max"}
ICD10 = re.compile(r"^[A-Z][0-9][0-9A-Z](\.?[0-9A-Z]{1,4})?$")


class Tables:
    """Rows of each table keyed by source line, split into clean and dirty (quarantined or
    warned: each breaks the one rule its list names)."""

    def __init__(self, result: GeneratedExtract) -> None:
        manifest = json.loads(result.manifest.read_text())
        self.zone = ZoneInfo(manifest["timezone"])
        self.start = self.midnight(date.fromisoformat(manifest["coverage_start"]))
        self.end = self.midnight(date.fromisoformat(manifest["coverage_end"]) + timedelta(days=1))
        self.created = datetime.fromisoformat(manifest["created"])
        self.rows = {t: dict(enumerate(read_rows(result.tables[t]), start=2)) for t in TABLE_ORDER}
        self.quarantined = {
            (q["table_name"], int(q["source_line"])): q
            for q in read_rows(result.expected_quarantine)
        }
        self.warned = {
            (q["table_name"], int(q["source_line"])): q
            for q in read_rows(result.expected_data_quality)
        }
        self.dirty = {**self.quarantined, **self.warned}

    def midnight(self, day: date) -> datetime:
        return datetime(day.year, day.month, day.day, tzinfo=self.zone).astimezone(UTC)

    def clean(self, table: str) -> list[dict[str, str]]:
        return [r for line, r in self.rows[table].items() if (table, line) not in self.dirty]

    def instant(self, text: str) -> datetime:
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=self.zone)
        return moment.astimezone(UTC)

    def single_local_time(self, text: str) -> bool:
        """A naive text names exactly one instant (not skipped, not repeated)."""
        naive = datetime.fromisoformat(text)
        if naive.tzinfo is not None:
            return True
        first, second = (naive.replace(tzinfo=self.zone, fold=f) for f in (0, 1))
        return first.utcoffset() == second.utcoffset()


@pytest.fixture(scope="module")
def tables(extract1000: GeneratedExtract) -> Tables:
    return Tables(extract1000)


@pytest.mark.parametrize("table", TABLE_ORDER)
def test_header_is_exactly_the_contract_columns(extract1000: GeneratedExtract, table: str) -> None:
    header = extract1000.tables[table].read_text().splitlines()[0]
    assert tuple(header.split(",")) == TABLES[table].column_names


@pytest.mark.parametrize("table", TABLE_ORDER)
def test_allowed_columns_hold_allowed_values_except_dirty_rows(tables: Tables, table: str) -> None:
    for column in TABLES[table].columns:
        if not column.allowed:
            continue
        for line, row in tables.rows[table].items():
            value = row[column.name]
            dirty = tables.dirty.get((table, line))
            if dirty and dirty["column_name"] == column.name:
                assert value not in column.allowed
            elif value:
                assert value in column.allowed, (table, line, column.name, value)


@pytest.mark.parametrize("table", TABLE_ORDER)
def test_clean_rows_follow_every_value_rule(tables: Tables, table: str) -> None:
    spec = TABLES[table]
    for row in tables.clean(table):
        for column in spec.columns:
            value = row[column.name]
            if column.required:
                assert value, (table, column.name, row)
            if not value:
                continue
            if column.type == "timestamp":
                assert TIMESTAMP.match(value), value
                assert tables.single_local_time(value), value
            elif column.type == "date":
                assert DATE.match(value), value
            elif column.name in ("dose_mg", "doses_per_day"):
                assert float(value) > 0, (column.name, value)
            if column.type == "timestamp":
                assert tables.instant(value) <= tables.created, value
            if column.name == "code" and row.get("code_system") == "ICD10CM":
                assert ICD10.match(value.upper()), value
            if column.name in FREE_TEXT:
                assert not EMAIL.search(value) and not SSN.search(value), value
        for later, earlier in spec.ordered_times:
            if row[later] and row[earlier]:
                assert tables.instant(row[later]) >= tables.instant(row[earlier]), row
    if table == "patients":
        assert all(1900 <= int(r["birth_year"]) <= 2026 for r in tables.clean(table))
    if table == "labs":
        assert all(LOINC.match(r["loinc"]) for r in tables.clean(table))


def test_keys_are_unique_and_foreign_keys_resolve_among_clean_rows(tables: Tables) -> None:
    keys: dict[str, set[str]] = {}
    for table in TABLE_ORDER:
        spec = TABLES[table]
        rows = tables.clean(table)
        if spec.primary_key:
            values = [r[spec.primary_key] for r in rows]
            assert len(values) == len(set(values)), table
            keys[table] = set(values)
        for column, parent, parent_column in spec.foreign_keys:
            parent_values = {r[parent_column] for r in tables.clean(parent)}
            missing = [r[column] for r in rows if r[column] and r[column] not in parent_values]
            assert not missing, (table, column, missing[:3])


def test_each_dirty_row_breaks_exactly_its_stated_rule(tables: Tables) -> None:
    patients = {r["patient_id"] for r in tables.rows["patients"].values()}
    for (table, line), dirty in tables.dirty.items():
        row, column, reason = tables.rows[table][line], dirty["column_name"], dirty["reason"]
        value = row[column]
        if reason == "out_of_range":
            assert int(value) < 1900
        elif reason == "time_order":
            earlier = dict(TABLES[table].ordered_times)[column]
            assert tables.instant(value) < tables.instant(row[earlier])
        elif reason == "after_extract_created":
            assert tables.created < tables.instant(value) <= tables.created + timedelta(hours=24)
        elif reason == "far_after_extract_created":
            assert tables.instant(value) > tables.created + timedelta(hours=24)
        elif reason == "dose_above_label_max":
            assert (row["ingredient"], float(value) * float(row["doses_per_day"])) == (
                "ropinirole",
                30.0,
            )
        elif reason == "malformed_code":
            assert not ICD10.match(value)
        elif reason == "unparseable_timestamp":
            with pytest.raises(ValueError):
                datetime.fromisoformat(value)
        elif reason == "timestamp_not_in_timezone":
            naive = datetime.fromisoformat(value)
            back = naive.replace(tzinfo=tables.zone).astimezone(UTC).astimezone(tables.zone)
            assert back.replace(tzinfo=None) != naive
        elif reason == "duplicate_key":
            earlier = [r for n, r in tables.rows[table].items() if n < line and r[column] == value]
            assert len(earlier) == 1
        elif reason == "foreign_key":
            assert value not in patients
        elif reason == "malformed_loinc":
            assert not LOINC.match(value)
        elif reason == "not_positive":
            assert float(value) <= 0
        elif reason == "looks_like_identifier":
            assert EMAIL.search(value) or SSN.search(value)
        else:
            assert reason == "not_allowed"
            assert value not in TABLES[table].column(column).allowed


def test_every_kind_of_dirty_row_is_present_and_each_table_stays_mostly_clean(
    tables: Tables,
) -> None:
    assert {d["reason"] for d in tables.quarantined.values()} == DIRTY_REASONS
    assert {d["reason"] for d in tables.warned.values()} == WARNING_REASONS
    assert not set(tables.quarantined) & set(tables.warned)
    texts = [tables.rows[t][line]["value_text"] for t, line in tables.dirty if t == "labs"]
    assert any(EMAIL.search(t) for t in texts) and any(SSN.search(t) for t in texts)
    per_table = Counter(table for table, _ in tables.dirty)
    for table, count in per_table.items():
        assert count / len(tables.rows[table]) < 0.05, table


def test_no_row_depends_on_a_dirty_row(tables: Tables) -> None:
    """Quarantine must not cascade: the expected list is the whole list."""
    bad_patients = {
        tables.rows["patients"][line]["patient_id"]
        for t, line in tables.quarantined
        if t == "patients"
    }
    bad_encounters = {
        tables.rows["encounters"][line]["encounter_id"]
        for (t, line), d in tables.quarantined.items()
        if t == "encounters" and d["reason"] != "duplicate_key"
    }
    for table in TABLE_ORDER[1:]:
        for row in tables.clean(table):
            assert row["patient_id"] not in bad_patients
            assert row.get("encounter_id") not in bad_encounters


def test_events_fall_inside_the_coverage(extract1000: GeneratedExtract, tables: Tables) -> None:
    """Only history/problem-list diagnoses predate the coverage; after it, only the LN-07
    'diagnosed after the period' diagnosis and the departures of patients still admitted at the
    end of coverage (LN-03 and LN-04 pending cases)."""
    patients = extract1000.scenario_patients
    late_diagnoses = set(patients["ln07_dx_after_period"])
    still_admitted = {
        patient
        for label in (
            "ln03_pending_still_admitted",
            "ln03_still_admitted_examined",
            "ln04_pending_still_admitted",
        )
        for patient in patients[label]
    }
    for table in TABLE_ORDER[1:]:
        for row in tables.clean(table):
            for column in TABLES[table].columns:
                if column.type != "timestamp" or not row[column.name]:
                    continue
                moment = tables.instant(row[column.name])
                if moment >= tables.end and column.name == "departure_time":
                    assert row["patient_id"] in still_admitted
                elif moment >= tables.end:
                    assert table == "diagnoses" and row["patient_id"] in late_diagnoses
                if moment < tables.start:
                    assert table == "diagnoses" and row["source"] in ("history", "problem_list")


def test_some_timestamps_carry_an_explicit_offset(tables: Tables) -> None:
    with_offset = [
        value
        for table in ("encounters", "orders")
        for row in tables.clean(table)
        for value in row.values()
        if value and TIMESTAMP.match(value) and len(value) > 19
    ]
    assert with_offset


def test_parquet_holds_the_same_rows_as_csv(tmp_path: Path) -> None:
    as_csv = generate_extract(tmp_path / "csv", patients=600)
    as_parquet = generate_extract(tmp_path / "parquet", patients=600, fmt="parquet")
    for table in TABLE_ORDER:
        frame = pl.read_parquet(as_parquet.tables[table])
        assert tuple(frame.columns) == TABLES[table].column_names
        assert frame.height == as_csv.row_counts[table]
        again = pl.read_csv(as_csv.tables[table], schema=frame.schema)
        assert frame.equals(again), table


def test_reasons_are_the_loaders_rule_names() -> None:
    models = pytest.importorskip("chartaudit.schemas.models")
    assert DIRTY_REASONS.issubset(models.RULES)
    assert set(models.WARNING_RULES) == WARNING_REASONS
