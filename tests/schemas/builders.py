"""Builders of tiny extract folders for the schema tests.

``clean_rows()`` is a small extract (America/Chicago) that loads completely; tests change a row
or add one and write the folder with ``write_extract``. CSV rows are written as given, one
physical line per row, so row ``i`` of a table (0-based) is on line ``i + 2`` of its file.
"""

from __future__ import annotations

import copy
import csv
import io
import json
from pathlib import Path

import polars as pl

from chartaudit.schemas.contract import TABLE_ORDER

MANIFEST = {
    "extract_id": "demo-2026-10",
    "source": "test EHR",
    "timezone": "America/Chicago",
    "coverage_start": "2025-11-01",
    "coverage_end": "2026-10-31",
    "created": "2026-11-02T08:00:00Z",
}

_CLEAN: dict[str, list[dict[str, str]]] = {
    "patients": [
        {"patient_id": "P1", "birth_year": "1950", "sex": "F", "death_date": ""},
        {"patient_id": "P2", "birth_year": "1980", "sex": "M", "death_date": ""},
        {"patient_id": "P3", "birth_year": "1935", "sex": "U", "death_date": "2026-05-01"},
    ],
    "encounters": [
        {
            "encounter_id": "E1",
            "patient_id": "P1",
            "site_id": "S1",
            "department": "ED",
            "clinician_id": "C1",
            "setting": "emergency",
            "arrival_time": "2026-03-08 01:30",  # CST, the night clocks go forward
            "departure_time": "2026-03-08 04:00",  # CDT
            "disposition": "discharged",
        },
        {
            "encounter_id": "E2",
            "patient_id": "P2",
            "site_id": "S1",
            "department": "",
            "clinician_id": "C2",
            "setting": "outpatient",
            "arrival_time": "2026-11-01 01:30",  # repeated hour: the earlier (CDT) instant
            "departure_time": "2026-11-01 03:00:00",
            "disposition": "discharged",
        },
        {
            "encounter_id": "E3",
            "patient_id": "P3",
            "site_id": "S2",
            "department": "Spine",
            "clinician_id": "C3",
            "setting": "inpatient",
            "arrival_time": "2026-04-01T10:00:00Z",
            "departure_time": "2026-04-01 12:00+02:00",  # the same instant: not before
            "disposition": "died",
        },
    ],
    "diagnoses": [
        {
            "patient_id": "P1",
            "encounter_id": "E1",
            "code_system": "ICD10CM",
            "code": "e11.42",
            "recorded_time": "2026-03-08 03:15",
            "source": "encounter",
        },
        {
            "patient_id": "P2",
            "encounter_id": "",
            "code_system": "SNOMEDCT",
            "code": "44054006",
            "recorded_time": "2026-01-10 09:00-0600",
            "source": "problem_list",
        },
    ],
    "findings": [
        {
            "patient_id": "P1",
            "encounter_id": "E1",
            "code_system": "LOCAL",
            "code": " Monofilament_10g ",
            "result": "abnormal",
            "value_num": "",
            "recorded_time": "2026-03-08 03:20",
        },
        {
            "patient_id": "P1",
            "encounter_id": "E1",
            "code_system": "SNOMEDCT",
            "code": "91161007",
            "result": "normal",
            "value_num": "0.9",
            "recorded_time": "2026-03-08 03:25:30.5",
        },
    ],
    "orders": [
        {
            "order_id": "O1",
            "patient_id": "P1",
            "encounter_id": "E1",
            "code_system": "CPT",
            "code": "72148",
            "category": "imaging",
            "specialty": "",
            "ordered_time": "2026-03-08 03:30",
            "performed_time": "2026-03-08 05:00",
            "status": "completed",
        },
        {
            "order_id": "O2",
            "patient_id": "P2",
            "encounter_id": "",
            "code_system": "LOCAL",
            "code": "REF_NEURO",
            "category": "referral",
            "specialty": "neurosurgery",
            "ordered_time": "2026-01-10 09:10",
            "performed_time": "",
            "status": "ordered",
        },
    ],
    "labs": [
        {
            "patient_id": "P1",
            "encounter_id": "E1",
            "loinc": "4548-4",
            "value_num": "7.9",
            "value_text": "",
            "unit": "%",
            "collected_time": "2026-03-08 03:40",
            "resulted_time": "2026-03-08 05:40",
        },
    ],
    "medications": [
        {
            "medication_id": "M1",
            "patient_id": "P2",
            "encounter_id": "",
            "ingredient": "Ropinirole",
            "rxnorm": "72302",
            "dose_mg": "0.25",
            "doses_per_day": "1",
            "route": "oral",
            "start_time": "2026-01-10 09:20",
            "end_time": "",
            "status": "active",
        },
    ],
}


def clean_rows() -> dict[str, list[dict[str, str]]]:
    """A fresh copy of the clean extract's rows (every value as CSV text)."""
    return copy.deepcopy(_CLEAN)


def csv_text(rows: list[dict[str, str]], columns: list[str] | None = None) -> str:
    columns = columns if columns is not None else list(rows[0]) if rows else []
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([row.get(c, "") for c in columns])
    return out.getvalue()


def write_extract(
    folder: Path,
    tables: dict[str, list[dict[str, str]]] | None = None,
    *,
    manifest: dict | None = MANIFEST,
    parquet: tuple[str, ...] = (),
    columns: dict[str, list[str]] | None = None,
) -> Path:
    """Write an extract folder. Tables named in ``parquet`` are written as all-text Parquet.

    ``columns`` gives a table's header explicitly (to leave a column out or add one); by default
    it is the keys of the table's first row, or the clean table's columns when it has no rows.
    """
    tables = clean_rows() if tables is None else tables
    folder.mkdir(parents=True, exist_ok=True)
    for table, rows in tables.items():
        header = (columns or {}).get(table) or (list(rows[0]) if rows else list(_CLEAN[table][0]))
        if table in parquet:
            frame = pl.DataFrame(
                {c: [row.get(c, "") for row in rows] for c in header},
                schema={c: pl.String for c in header},
            )
            frame.write_parquet(folder / f"{table}.parquet")
        else:
            (folder / f"{table}.csv").write_text(csv_text(rows, header), encoding="utf-8")
    if manifest is not None:
        (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return folder


def quarantine_rows(validated, table: str | None = None) -> list[tuple]:
    """(table, file, line, column, rule, value) of quarantine, optionally for one table."""
    frame = validated.quarantine
    if table is not None:
        frame = frame.filter(pl.col("table_name") == table)
    return frame.rows()


def assert_counts_add_up(validated) -> None:
    """loaded + quarantined == input, quarantined == distinct quarantined lines, per table."""
    counts = {row["table_name"]: row for row in validated.load_counts.iter_rows(named=True)}
    assert list(counts) == list(TABLE_ORDER)
    for table in TABLE_ORDER:
        row = counts[table]
        lines = validated.quarantine.filter(pl.col("table_name") == table)["source_line"]
        assert row["loaded_rows"] + row["quarantined_rows"] == row["input_rows"], table
        assert row["quarantined_rows"] == lines.n_unique(), table
        assert validated.tables[table].height == row["loaded_rows"], table
        loaded_lines = set(validated.tables[table]["source_line"].to_list())
        assert loaded_lines.isdisjoint(lines.to_list()), table
