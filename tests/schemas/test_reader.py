from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from chartaudit.schemas.contract import TABLE_ORDER
from chartaudit.schemas.errors import ExtractRejected
from chartaudit.schemas.models import canonical_schema
from chartaudit.schemas.reader import RawExtract, read_extract
from chartaudit.schemas.validation import QUARANTINE_SCHEMA, load_extract

from .builders import MANIFEST, assert_counts_add_up, clean_rows, quarantine_rows, write_extract


def _utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def test_clean_extract_loads_every_row_with_canonical_dtypes(extract_dir: Path) -> None:
    validated = load_extract(extract_dir)
    expected_rows = {t: len(rows) for t, rows in clean_rows().items()}
    for table in TABLE_ORDER:
        frame = validated.tables[table]
        assert frame.schema == canonical_schema(table)
        assert frame.height == expected_rows[table]
        assert frame["source_line"].to_list() == list(range(2, 2 + expected_rows[table]))
    assert validated.quarantine.height == 0
    assert dict(validated.quarantine.schema) == QUARANTINE_SCHEMA
    assert validated.warnings == []
    assert validated.load_counts.rows() == [
        (t, f"{t}.csv", n, n, 0, 0) for t, n in expected_rows.items()
    ]
    assert_counts_add_up(validated)


def test_canonical_dtypes_are_exact(extract_dir: Path) -> None:
    schema = read_extract(extract_dir).tables["medications"].schema
    assert schema["medication_id"] == pl.String
    assert schema["dose_mg"] == pl.Float64
    assert schema["start_time"] == pl.Datetime("us", "UTC")
    assert schema["source_line"] == pl.Int64
    patients = read_extract(extract_dir).tables["patients"].schema
    assert (patients["birth_year"], patients["death_date"]) == (pl.Int64, pl.Date)


def test_naive_times_are_local_in_the_manifest_zone(extract_dir: Path) -> None:
    encounters = read_extract(extract_dir).tables["encounters"]
    assert encounters.select("encounter_id", "arrival_time", "departure_time").rows() == [
        # 01:30 CST (UTC-6), then 04:00 CDT (UTC-5) after clocks went forward at 02:00
        ("E1", _utc(2026, 3, 8, 7, 30), _utc(2026, 3, 8, 9, 0)),
        # 01:30 happens twice on 2026-11-01: the earlier instant (CDT) is taken
        ("E2", _utc(2026, 11, 1, 6, 30), _utc(2026, 11, 1, 9, 0)),
        # explicit offsets are instants: 12:00+02:00 == 10:00Z
        ("E3", _utc(2026, 4, 1, 10, 0), _utc(2026, 4, 1, 10, 0)),
    ]


def test_nonexistent_local_time_is_quarantined_not_shifted(tmp_path: Path) -> None:
    rows = clean_rows()
    rows["encounters"][2]["arrival_time"] = "2026-03-08 02:30"  # skipped when clocks go forward
    rows["encounters"][2]["departure_time"] = ""
    validated = load_extract(write_extract(tmp_path / "x", rows))
    assert quarantine_rows(validated) == [
        (
            "encounters",
            "encounters.csv",
            4,
            "arrival_time",
            "timestamp_not_in_timezone",
            "2026-03-08 02:30",
        )
    ]
    assert validated.tables["encounters"]["encounter_id"].to_list() == ["E1", "E2"]
    assert_counts_add_up(validated)


@pytest.mark.parametrize(
    ("text", "instant"),
    [
        ("2026-06-01 10:00Z", _utc(2026, 6, 1, 10, 0)),
        ("2026-06-01T10:00:00Z", _utc(2026, 6, 1, 10, 0)),
        ("2026-06-01 10:00:00 Z", _utc(2026, 6, 1, 10, 0)),
        ("2026-06-01 12:00+02:00", _utc(2026, 6, 1, 10, 0)),
        ("2026-06-01T05:00:00-0500", _utc(2026, 6, 1, 10, 0)),
        ("2026-06-01 15:30+05:30", _utc(2026, 6, 1, 10, 0)),
        ("2026-06-01 12:00:00.250+02", _utc(2026, 6, 1, 10, 0, 0, 250000)),
        ("2026-06-01T05:00:07.5", _utc(2026, 6, 1, 10, 0, 7, 500000)),  # naive: CDT
        ("2026-01-01 00:00", _utc(2026, 1, 1, 6, 0)),  # naive: CST
    ],
)
def test_timestamp_forms(tmp_path: Path, text: str, instant: datetime) -> None:
    rows = clean_rows()
    rows["encounters"][2].update(arrival_time=text, departure_time="")
    raw = read_extract(write_extract(tmp_path / "x", rows))
    assert raw.faults.height == 0
    assert raw.tables["encounters"]["arrival_time"][2] == instant


@pytest.mark.parametrize(
    "text",
    [
        "2026-02-30 10:00",
        "2026-06-01",
        "yesterday",
        "2026-06-01 24:00",
        "2026-06-01 10:00:60",
        "06/01/2026 10:00",
        "2026-06-01 10:00 CST",
        "2026-06-01 10:00+25:00",
        "2026-6-1 10:00",
    ],
)
def test_unparseable_timestamp_is_quarantined(tmp_path: Path, text: str) -> None:
    rows = clean_rows()
    rows["labs"][0]["resulted_time"] = text
    validated = load_extract(write_extract(tmp_path / "x", rows))
    assert quarantine_rows(validated) == [
        ("labs", "labs.csv", 2, "resulted_time", "unparseable_timestamp", text)
    ]
    assert validated.tables["labs"].height == 0
    assert_counts_add_up(validated)


def test_codes_and_ingredients_are_normalised_and_strings_stripped(extract_dir: Path) -> None:
    tables = read_extract(extract_dir).tables
    assert tables["diagnoses"]["code"].to_list() == ["E1142", "44054006"]  # e11.42 -> E1142
    assert tables["findings"]["code"].to_list() == ["monofilament_10g", "91161007"]
    assert tables["orders"]["code"].to_list() == ["72148", "ref_neuro"]
    assert tables["medications"]["ingredient"].to_list() == ["ropinirole"]
    # empty strings are nulls
    assert tables["encounters"]["department"].to_list() == ["ED", None, "Spine"]
    assert tables["diagnoses"]["encounter_id"].to_list() == ["E1", None]


def test_icd10_with_and_without_dot_load_the_same(tmp_path: Path) -> None:
    rows = clean_rows()
    extra = dict(rows["diagnoses"][0], code="E1142")
    rows["diagnoses"].append(extra)
    diagnoses = load_extract(write_extract(tmp_path / "x", rows)).tables["diagnoses"]
    assert diagnoses["code"].to_list() == ["E1142", "44054006", "E1142"]


def test_missing_table_is_rejected_in_one_line(tmp_path: Path) -> None:
    folder = write_extract(tmp_path / "x")
    (folder / "encounters.csv").unlink()
    with pytest.raises(ExtractRejected) as caught:
        read_extract(folder)
    assert str(caught.value) == (
        f"extract rejected: encounters (encounters.csv or encounters.parquet) is missing from "
        f"{folder}; export it (a header row is enough for an empty table)"
    )


def test_wrongly_cased_table_file_gets_a_hint(tmp_path: Path) -> None:
    folder = write_extract(tmp_path / "x")
    (folder / "labs.csv").rename(folder / "Labs.CSV")
    with pytest.raises(ExtractRejected) as caught:
        read_extract(folder)
    assert str(caught.value) == (
        f"extract rejected: labs (labs.csv or labs.parquet) (found Labs.CSV: rename it in lower "
        f"case) is missing from {folder}; export it (a header row is enough for an empty table)"
    )


def test_missing_required_column_is_rejected_in_one_line(tmp_path: Path) -> None:
    rows = clean_rows()
    folder = write_extract(
        tmp_path / "x", rows, columns={"patients": ["patient_id", "sex", "death_date"]}
    )
    with pytest.raises(ExtractRejected) as caught:
        read_extract(folder)
    assert str(caught.value) == (
        "extract rejected: patients.csv has no required column birth_year; add it to the export"
    )


def test_misnamed_required_column_gets_a_hint(tmp_path: Path) -> None:
    rows = clean_rows()
    for row in rows["labs"]:
        row["LOINC"] = row.pop("loinc")
    with pytest.raises(ExtractRejected) as caught:
        read_extract(write_extract(tmp_path / "x", rows))
    assert str(caught.value) == (
        "extract rejected: labs.csv has no column loinc (found 'LOINC'); rename that column to "
        "loinc"
    )


def test_identifier_column_is_rejected_even_when_extra(tmp_path: Path) -> None:
    rows = clean_rows()
    for row in rows["encounters"]:
        row["Patient Name"] = "someone"
    with pytest.raises(ExtractRejected) as caught:
        read_extract(write_extract(tmp_path / "x", rows))
    message = str(caught.value)
    assert message == (
        "extract rejected: encounters.csv has column 'Patient Name', which looks like a direct "
        "identifier (person name); remove it from the export (only de-identified data is "
        "accepted)"
    )
    assert "\n" not in message


def test_both_csv_and_parquet_is_rejected(tmp_path: Path) -> None:
    folder = write_extract(tmp_path / "x")
    write_extract(folder, {"orders": clean_rows()["orders"]}, parquet=("orders",), manifest=None)
    with pytest.raises(ExtractRejected) as caught:
        read_extract(folder)
    assert str(caught.value) == (
        f"extract rejected: both orders.csv and orders.parquet are in {folder}; keep only one "
        "of them"
    )


def test_duplicate_contract_column_is_rejected(tmp_path: Path) -> None:
    folder = write_extract(tmp_path / "x")
    (folder / "patients.csv").write_text("patient_id,birth_year,sex,sex\nP1,1950,F,M\n")
    with pytest.raises(ExtractRejected) as caught:
        read_extract(folder)
    assert str(caught.value) == (
        "extract rejected: patients.csv has column sex more than once; keep only one"
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (  # caught while reading the header (Python decodes the first block)
            b"patient_id,birth_year,sex\nP1,1950,F\nP2,19\xff0,M\n",
            "extract rejected: patients.csv is not UTF-8 text; re-export it as UTF-8 CSV with a "
            "header row",
        ),
        (  # caught by the CSV reader, far from the header
            b"patient_id,birth_year,sex\n" + b"P1,1950,F\n" * 20_000 + b"P2,19\xff0,M\n",
            "extract rejected: patients.csv is not UTF-8 text (invalid utf-8 sequence); "
            "re-export it as UTF-8 CSV with a header row",
        ),
        (
            b"",
            "extract rejected: patients.csv has no header row; export it with the column names "
            "first",
        ),
    ],
)
def test_unreadable_csv_is_rejected(tmp_path: Path, content: bytes, message: str) -> None:
    folder = write_extract(tmp_path / "x")
    (folder / "patients.csv").write_bytes(content)
    with pytest.raises(ExtractRejected) as caught:
        read_extract(folder)
    assert str(caught.value) == message


def test_extra_files_columns_and_manifest_keys_are_warnings(tmp_path: Path) -> None:
    rows = clean_rows()
    for row in rows["labs"]:
        row["lab_comment"] = "fasting"
        row["source_line"] = "17"  # an extra column, even with the name of our own column
    folder = write_extract(tmp_path / "x", rows, manifest={**MANIFEST, "owner": "QI team"})
    (folder / "notes.txt").write_text("hello", encoding="utf-8")
    (folder / "old").mkdir()
    raw = read_extract(folder)
    assert raw.warnings == [
        "ignored extra file notes.txt",
        "ignored extra folder old",
        "manifest.json: ignored unknown key owner",
        "labs.csv: ignored extra column(s) lab_comment, source_line",
    ]
    assert raw.tables["labs"].schema == canonical_schema("labs")
    assert raw.tables["labs"]["source_line"].to_list() == [2]


def test_absent_optional_columns_are_added_as_nulls(tmp_path: Path) -> None:
    rows = clean_rows()
    for row in rows["patients"]:
        del row["death_date"]
    patients = read_extract(write_extract(tmp_path / "x", rows)).tables["patients"]
    assert patients.schema == canonical_schema("patients")
    assert patients["death_date"].null_count() == 3


def test_source_line_is_the_physical_csv_line(tmp_path: Path) -> None:
    folder = write_extract(tmp_path / "x")
    labs = (
        "patient_id,encounter_id,loinc,value_num,value_text,unit,collected_time,resulted_time\n"
        'P1,E1,4548-4,7.9,"two\nline comment",%,2026-03-08 03:40,\n'  # lines 2-3
        "\n"  # line 4: blank, skipped with a warning
        "P1,E1,2345-7,,,mg/dL,2026-03-08 03:41,2026-03-08 01:00\n"  # line 5: time order
        'P1,E1,2345-7,5.5,"a\n\nb",mg/dL,2026-03-08 03:42\n'  # lines 6-8: one field short
        "P1,E1,2345-7,5.5,,mg/dL,2026-03-08 03:42,\n"  # line 9
    )
    (folder / "labs.csv").write_text(labs, encoding="utf-8")
    validated = load_extract(folder)
    assert validated.tables["labs"]["source_line"].to_list() == [2, 5, 9]
    assert validated.tables["labs"]["value_text"][0] == "two\nline comment"
    assert quarantine_rows(validated) == [
        ("labs", "labs.csv", 6, None, "missing_fields", "7 fields, the header has 8")
    ]
    assert validated.data_quality.select("source_line", "rule", "value").rows() == [
        (5, "time_order", "2026-03-08 07:00:00Z before collected_time 2026-03-08 08:41:00Z")
    ]
    assert validated.warnings == ["labs.csv: skipped 1 empty line(s) (line 4)"]
    assert_counts_add_up(validated)


def test_row_with_extra_fields_is_quarantined(tmp_path: Path) -> None:
    folder = write_extract(tmp_path / "x")
    (folder / "patients.csv").write_text(
        "patient_id,birth_year,sex\nP1,1950,F\nP2,1980,M,oops\nP3,1935,U\n", encoding="utf-8"
    )
    validated = load_extract(folder)
    assert quarantine_rows(validated, "patients") == [
        ("patients", "patients.csv", 3, None, "extra_fields", "4 fields, the header has 3")
    ]
    assert validated.tables["patients"]["patient_id"].to_list() == ["P1", "P3"]
    assert_counts_add_up(validated)


def test_header_only_tables_load_empty(tmp_path: Path) -> None:
    rows = clean_rows()
    rows["labs"] = []
    rows["medications"] = []
    validated = load_extract(write_extract(tmp_path / "x", rows))
    assert validated.tables["labs"].schema == canonical_schema("labs")
    assert validated.tables["labs"].height == 0
    assert validated.quarantined_share()["medications"] == 0.0
    assert_counts_add_up(validated)


def test_missing_folder_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ExtractRejected) as caught:
        read_extract(tmp_path / "nope")
    assert str(caught.value) == (
        f"extract rejected: {tmp_path / 'nope'} is not a folder; give the folder holding the "
        "table files"
    )


# --- Parquet ------------------------------------------------------------------------------------


def test_text_parquet_loads_like_csv(tmp_path: Path) -> None:
    csv_tables = read_extract(write_extract(tmp_path / "csv")).tables
    raw = read_extract(write_extract(tmp_path / "pq", parquet=TABLE_ORDER))
    assert raw.source_files == {t: f"{t}.parquet" for t in TABLE_ORDER}
    for table in TABLE_ORDER:
        expected = csv_tables[table].with_columns(pl.col("source_line") - 1)  # row number + 1
        assert_frame_equal(raw.tables[table], expected)


def test_native_parquet_types(tmp_path: Path) -> None:
    folder = write_extract(tmp_path / "x")
    (folder / "patients.csv").unlink()
    pl.DataFrame(
        {
            "patient_id": ["P1", "P2", "P3"],
            "birth_year": [1950.0, 1980.0, 1935.5],  # pandas writes ints with gaps as floats
            "sex": pl.Series(["F", "M", "U"], dtype=pl.Categorical),
            "death_date": [None, None, date(2026, 5, 1)],
        }
    ).write_parquet(folder / "patients.parquet")
    (folder / "encounters.csv").unlink()
    pl.DataFrame(
        {
            "encounter_id": ["E1", "E2", "E3"],
            "patient_id": ["P1", "P2", "P3"],
            "site_id": [1, 1, 2],  # integers are read as text
            "setting": ["emergency", "outpatient", "inpatient"],
            "arrival_time": [  # naive: local time in America/Chicago
                datetime(2026, 3, 8, 1, 30),
                datetime(2026, 11, 1, 1, 30),
                datetime(2026, 3, 8, 2, 30),  # does not exist locally
            ],
            "departure_time": pl.Series(  # aware: converted (10:00 in Paris = 09:00Z)
                [datetime(2026, 3, 8, 10, 0, tzinfo=ZoneInfo("Europe/Paris")), None, None],
                dtype=pl.Datetime("ns", "Europe/Paris"),
            ),
        }
    ).write_parquet(folder / "encounters.parquet")
    (folder / "medications.csv").unlink()
    pl.DataFrame(
        {
            "medication_id": ["M1"],
            "patient_id": ["P2"],
            "ingredient": ["Ropinirole"],
            "dose_mg": [float("nan")],  # pandas' missing value
            "doses_per_day": [2],
            "start_time": ["2026-01-10 09:20"],
            "status": ["active"],
        }
    ).write_parquet(folder / "medications.parquet")

    raw = read_extract(folder)
    assert raw.faults.rows() == [
        ("patients", "patients.parquet", 3, "birth_year", "unparseable_int", "1935.5"),
        (
            "encounters",
            "encounters.parquet",
            3,
            "arrival_time",
            "timestamp_not_in_timezone",
            "2026-03-08 02:30:00.000000",
        ),
    ]
    patients = raw.tables["patients"]
    assert patients.schema == canonical_schema("patients")
    assert patients["birth_year"].to_list() == [1950, 1980, None]
    assert patients["death_date"].to_list() == [None, None, date(2026, 5, 1)]
    encounters = raw.tables["encounters"]
    assert encounters.schema == canonical_schema("encounters")
    assert encounters["site_id"].to_list() == ["1", "1", "2"]
    assert encounters["arrival_time"].to_list() == [
        _utc(2026, 3, 8, 7, 30),
        _utc(2026, 11, 1, 6, 30),
        None,
    ]
    assert encounters["departure_time"].to_list() == [_utc(2026, 3, 8, 9, 0), None, None]
    meds = raw.tables["medications"]
    assert meds.select("dose_mg", "doses_per_day", "start_time").row(0) == (
        None,
        2.0,
        _utc(2026, 1, 10, 15, 20),
    )
    assert meds["source_line"].to_list() == [1]


@pytest.mark.parametrize(
    ("table", "column", "values", "message"),
    [
        (
            "patients",
            "birth_year",
            [True, False, True],
            "extract rejected: patients.parquet column birth_year has type Boolean, which cannot "
            "be read as int; export it as integers",
        ),
        (
            "encounters",
            "arrival_time",
            [date(2026, 3, 8)] * 3,
            "extract rejected: encounters.parquet column arrival_time has type Date, which "
            "cannot be read as timestamp; export it as timestamps or ISO 8601 text",
        ),
        (
            "encounters",
            "site_id",
            [1.5, 2.5, 3.5],
            "extract rejected: encounters.parquet column site_id has type Float64, which cannot "
            "be read as str; export it as text",
        ),
    ],
)
def test_parquet_column_that_cannot_be_cast_is_rejected(
    tmp_path: Path, table: str, column: str, values: list, message: str
) -> None:
    folder = write_extract(tmp_path / "x", parquet=(table,))
    path = folder / f"{table}.parquet"
    pl.read_parquet(path).with_columns(pl.Series(column, values)).write_parquet(path)
    with pytest.raises(ExtractRejected) as caught:
        read_extract(folder)
    assert str(caught.value) == message


def test_unreadable_parquet_is_rejected(tmp_path: Path) -> None:
    folder = write_extract(tmp_path / "x")
    (folder / "labs.csv").unlink()
    (folder / "labs.parquet").write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(ExtractRejected, match=r"^extract rejected: labs.parquet cannot be read "):
        read_extract(folder)


def test_raw_extract_save_load_round_trip(tmp_path: Path) -> None:
    rows = clean_rows()
    rows["patients"][0]["birth_year"] = "nineteen fifty"
    raw = read_extract(write_extract(tmp_path / "x", rows))
    raw.save(tmp_path / "saved")
    back = RawExtract.load(tmp_path / "saved")
    assert (back.manifest, back.digest, back.source_files, back.warnings) == (
        raw.manifest,
        raw.digest,
        raw.source_files,
        raw.warnings,
    )
    assert_frame_equal(back.faults, raw.faults)
    assert back.faults.height == 1
    for table in TABLE_ORDER:
        assert_frame_equal(back.tables[table], raw.tables[table])


def test_bom_crlf_and_quoted_fields_are_read_exactly(tmp_path: Path) -> None:
    folder = write_extract(tmp_path / "x")
    content = (
        "\ufeffpatient_id, birth_year ,sex,death_date\r\n"
        '"P1",1950,F,\r\n'
        '"P2","1980","M",""\r\n'
        "P3,1935,U,2026-05-01\r\n"
    )
    (folder / "patients.csv").write_bytes(content.encode("utf-8"))
    validated = load_extract(folder)
    assert validated.tables["patients"].rows() == [
        ("P1", 1950, "F", None, 2),
        ("P2", 1980, "M", None, 3),
        ("P3", 1935, "U", date(2026, 5, 1), 4),
    ]
    assert validated.quarantine.height == 0


def test_line_numbers_count_line_breaks_in_fields_beyond_the_header(tmp_path: Path) -> None:
    folder = write_extract(tmp_path / "x")
    (folder / "patients.csv").write_text(
        'patient_id,birth_year,sex\nP1,1950,F,"two\nlines"\nP2,1980,M\nP3,1935,"U"\n',
        encoding="utf-8",
    )
    validated = load_extract(folder)
    assert quarantine_rows(validated, "patients") == [
        ("patients", "patients.csv", 2, None, "extra_fields", "4 fields, the header has 3")
    ]
    assert validated.tables["patients"].select("patient_id", "source_line").rows() == [
        ("P2", 4),
        ("P3", 5),
    ]
