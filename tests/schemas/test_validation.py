from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from chartaudit.schemas.contract import TABLE_ORDER
from chartaudit.schemas.models import DATA_QUALITY_SCHEMA, RULES, WARNING_RULES, table_model
from chartaudit.schemas.reader import read_extract
from chartaudit.schemas.validation import (
    QUARANTINE_SCHEMA,
    ValidatedExtract,
    load_extract,
    validate_extract,
)

from .builders import MANIFEST, assert_counts_add_up, clean_rows, quarantine_rows, write_extract

# (table, row index, changes, expected quarantine rows of that table as
#  (line, column, rule, value)). Each case breaks exactly one rule of one row that nothing refers
# to (patients get a fourth, childless patient P4 on line 5), so nothing else is quarantined.
SINGLE_RULE_CASES = [
    ("patients", 3, {"sex": ""}, [(5, "sex", "missing_required", None)]),
    ("patients", 3, {"sex": "female"}, [(5, "sex", "not_allowed", "female")]),
    ("patients", 3, {"birth_year": "1899"}, [(5, "birth_year", "out_of_range", "1899")]),
    # the extract year is 2026 (coverage_end 2026-10-31)
    ("patients", 3, {"birth_year": "2027"}, [(5, "birth_year", "out_of_range", "2027")]),
    ("patients", 3, {"birth_year": "19x0"}, [(5, "birth_year", "unparseable_int", "19x0")]),
    (
        "patients",
        3,
        {"death_date": "1959-12-31"},
        [(5, "death_date", "death_before_birth", "1959-12-31 before birth_year 1960")],
    ),
    (
        "patients",
        3,
        {"death_date": "2026-5-1"},
        [(5, "death_date", "unparseable_date", "2026-5-1")],
    ),
    (
        "patients",
        3,
        {"patient_id": "123-45-6789"},
        [(5, "patient_id", "looks_like_identifier", "<redacted ssn-like value>")],
    ),
    ("encounters", 1, {"setting": "ER"}, [(3, "setting", "not_allowed", "ER")]),
    ("encounters", 1, {"disposition": "home"}, [(3, "disposition", "not_allowed", "home")]),
    ("encounters", 1, {"arrival_time": ""}, [(3, "arrival_time", "missing_required", None)]),
    ("encounters", 1, {"site_id": " "}, [(3, "site_id", "missing_required", None)]),
    ("diagnoses", 1, {"code_system": "ICD9"}, [(3, "code_system", "not_allowed", "ICD9")]),
    ("diagnoses", 0, {"code": "E11.4X2Z9"}, [(2, "code", "malformed_code", "E114X2Z9")]),
    ("diagnoses", 0, {"code": "11.42"}, [(2, "code", "malformed_code", "11.42")]),
    # the dot belongs after the three-character category
    ("diagnoses", 0, {"code": "E1.142"}, [(2, "code", "malformed_code", "E1.142")]),
    ("diagnoses", 0, {"code": "e114.2"}, [(2, "code", "malformed_code", "E114.2")]),
    ("diagnoses", 1, {"code": "44054"}, [(3, "code", "malformed_code", "44054")]),
    ("diagnoses", 1, {"code": "4405400A"}, [(3, "code", "malformed_code", "4405400A")]),
    ("diagnoses", 1, {"source": "claims"}, [(3, "source", "not_allowed", "claims")]),
    ("findings", 0, {"result": "positive"}, [(2, "result", "not_allowed", "positive")]),
    ("findings", 1, {"value_num": "0,9"}, [(3, "value_num", "unparseable_float", "0,9")]),
    ("orders", 0, {"category": "scan"}, [(2, "category", "not_allowed", "scan")]),
    ("orders", 1, {"specialty": "ortho"}, [(3, "specialty", "not_allowed", "ortho")]),
    ("orders", 1, {"status": ""}, [(3, "status", "missing_required", None)]),
    ("labs", 0, {"loinc": "4548"}, [(2, "loinc", "malformed_loinc", "4548")]),
    ("labs", 0, {"loinc": "12345678-9"}, [(2, "loinc", "malformed_loinc", "12345678-9")]),
    ("labs", 0, {"loinc": ""}, [(2, "loinc", "missing_required", None)]),
    (
        "labs",
        0,
        {"collected_time": "2026-03-08 2:30"},
        [(2, "collected_time", "unparseable_timestamp", "2026-03-08 2:30")],
    ),
    ("medications", 0, {"dose_mg": "0"}, [(2, "dose_mg", "not_positive", "0.0")]),
    ("medications", 0, {"doses_per_day": "-1"}, [(2, "doses_per_day", "not_positive", "-1.0")]),
    ("medications", 0, {"status": "on hold"}, [(2, "status", "not_allowed", "on hold")]),
    ("medications", 0, {"patient_id": "P9"}, [(2, "patient_id", "foreign_key", "P9")]),
    (
        "orders",
        0,
        {"encounter_id": "E2"},  # E2 is P2's
        [(2, "encounter_id", "encounter_of_other_patient", "E2 belongs to patient P2")],
    ),
    (
        "labs",
        0,
        {"encounter_id": "E3"},  # labs may name an outside encounter, not another patient's
        [(2, "encounter_id", "encounter_of_other_patient", "E3 belongs to patient P3")],
    ),
    (
        "diagnoses",
        1,
        {"recorded_time": "2026-11-03 08:01"},  # CST: 14:01Z, created is 2026-11-02 08:00Z
        [
            (
                3,
                "recorded_time",
                "far_after_extract_created",
                "2026-11-03 14:01:00Z, more than 24 h after created 2026-11-02 08:00:00Z",
            )
        ],
    ),
    ("diagnoses", 1, {"encounter_id": "E9"}, [(3, "encounter_id", "foreign_key", "E9")]),
    (
        "labs",
        0,
        {"value_text": "call 555-123-4567"},
        [(2, "value_text", "looks_like_identifier", "<redacted phone-like value>")],
    ),
    (
        "encounters",
        1,
        {"department": "SSN 123-45-6789"},
        [(3, "department", "looks_like_identifier", "<redacted ssn-like value>")],
    ),
    (
        "orders",
        1,
        {"code": "jane.doe@example.org"},
        [(3, "code", "looks_like_identifier", "<redacted email-like value>")],
    ),
    # A LOCAL code is lower-cased when loaded; the name is found in the text as read.
    (
        "orders",
        1,
        {"code": "Dr. Jane Roe"},
        [(3, "code", "looks_like_identifier", "<redacted name-like value>")],
    ),
    (
        "labs",
        0,
        {"value_text": "results to Mrs Ada Vale"},
        [(2, "value_text", "looks_like_identifier", "<redacted name-like value>")],
    ),
    # A bare name breaking another rule is masked in quarantine as name-shaped.
    (
        "orders",
        0,
        {"category": "Jane Roe"},
        [(2, "category", "not_allowed", "<redacted name-like value>")],
    ),
]


@pytest.mark.parametrize(
    ("table", "index", "changes", "expected"),
    SINGLE_RULE_CASES,
    ids=[f"{c[0]}-{c[3][0][2]}-{i}" for i, c in enumerate(SINGLE_RULE_CASES)],
)
def test_each_rule_quarantines_exactly_the_bad_row(
    tmp_path: Path, table: str, index: int, changes: dict, expected: list
) -> None:
    rows = clean_rows()
    rows["patients"].append(
        {"patient_id": "P4", "birth_year": "1960", "sex": "X", "death_date": ""}
    )
    rows[table][index].update(changes)
    validated = load_extract(write_extract(tmp_path / "x", rows))
    assert quarantine_rows(validated) == [(table, f"{table}.csv", *row) for row in expected]
    counts = {r[0]: r[2:] for r in validated.load_counts.rows()}
    n = len(rows[table])
    assert counts[table] == (n, n - 1, 1, 0)
    assert validated.tables[table]["source_line"].to_list() == [
        line for line in range(2, n + 2) if line != index + 2
    ]
    for other in TABLE_ORDER:
        if other != table:
            assert counts[other][2] == 0, other
    assert_counts_add_up(validated)


# (table, row index, changes, expected data_quality rows of that table as
#  (line, column, rule, value)). The row breaks one warning rule: it loads all the same.
WARNING_CASES = [
    (
        "encounters",
        1,
        {"departure_time": "2026-11-01 01:29"},
        [
            (
                3,
                "departure_time",
                "time_order",
                "2026-11-01 06:29:00Z before arrival_time 2026-11-01 06:30:00Z",
            )
        ],
    ),
    (
        "orders",
        0,
        {"performed_time": "2026-03-08 03:29"},
        [
            (
                2,
                "performed_time",
                "time_order",
                "2026-03-08 08:29:00Z before ordered_time 2026-03-08 08:30:00Z",
            )
        ],
    ),
    (
        "labs",
        0,
        {"resulted_time": "2026-03-08 03:39"},
        [
            (
                2,
                "resulted_time",
                "time_order",
                "2026-03-08 08:39:00Z before collected_time 2026-03-08 08:40:00Z",
            )
        ],
    ),
    (
        "medications",
        0,
        {"end_time": "2026-01-10 09:19"},
        [
            (
                2,
                "end_time",
                "time_order",
                "2026-01-10 15:19:00Z before start_time 2026-01-10 15:20:00Z",
            )
        ],
    ),
    (  # created is 2026-11-02 08:00Z; 2026-11-03 02:00 CST is 08:00Z, exactly 24 h later
        "diagnoses",
        1,
        {"recorded_time": "2026-11-03 02:00"},
        [
            (
                3,
                "recorded_time",
                "after_extract_created",
                "2026-11-03 08:00:00Z after created 2026-11-02 08:00:00Z",
            )
        ],
    ),
    (  # a date counts from its local midnight: the day after created's local date
        "patients",
        2,
        {"death_date": "2026-11-03"},
        [
            (
                4,
                "death_date",
                "after_extract_created",
                "2026-11-03 after created 2026-11-02 08:00:00Z",
            )
        ],
    ),
    (  # 8 mg three times a day: 24 mg is the label's maximum, 25.5 mg is above it
        "medications",
        0,
        {"dose_mg": "8.5", "doses_per_day": "3"},
        [
            (
                2,
                "dose_mg",
                "dose_above_label_max",
                "ropinirole 25.5 mg a day, above the label's 24.0 mg",
            )
        ],
    ),
    (  # no doses_per_day: one dose a day
        "medications",
        0,
        {"ingredient": "Pramipexole", "dose_mg": "4.6", "doses_per_day": ""},
        [
            (
                2,
                "dose_mg",
                "dose_above_label_max",
                "pramipexole 4.6 mg a day, above the label's 4.5 mg",
            )
        ],
    ),
]


@pytest.mark.parametrize(
    ("table", "index", "changes", "expected"),
    WARNING_CASES,
    ids=[f"{c[0]}-{c[3][0][2]}-{i}" for i, c in enumerate(WARNING_CASES)],
)
def test_each_warning_loads_the_row_and_records_the_finding(
    tmp_path: Path, table: str, index: int, changes: dict, expected: list
) -> None:
    rows = clean_rows()
    rows[table][index].update(changes)
    validated = load_extract(write_extract(tmp_path / "x", rows))
    assert validated.quarantine.height == 0
    assert validated.data_quality.rows() == [
        (table, f"{table}.csv", *row, "warning") for row in expected
    ]
    assert dict(validated.data_quality.schema) == DATA_QUALITY_SCHEMA
    n = len(rows[table])
    counts = {r[0]: r[2:] for r in validated.load_counts.rows()}
    assert counts[table] == (n, n, 0, 1)
    assert index + 2 in validated.tables[table]["source_line"].to_list()
    assert_counts_add_up(validated)


def test_warnings_at_the_bounds_are_not_raised(tmp_path: Path) -> None:
    """Equal times are in order; a dose exactly at the label's maximum and a time exactly at
    created are plausible."""
    rows = clean_rows()
    rows["orders"][0]["performed_time"] = rows["orders"][0]["ordered_time"]
    rows["medications"][0].update(dose_mg="8", doses_per_day="3")  # 24 mg a day
    rows["diagnoses"][1]["recorded_time"] = "2026-11-02 02:00"  # CST: 08:00Z, created
    rows["patients"][2]["death_date"] = "2026-11-02"  # created's local date
    validated = load_extract(write_extract(tmp_path / "x", rows))
    assert validated.data_quality.height == 0
    assert validated.quarantine.height == 0


def test_a_quarantined_row_has_no_warnings(tmp_path: Path) -> None:
    rows = clean_rows()
    rows["orders"][0].update(performed_time="2026-03-08 03:29", status="done")
    validated = load_extract(write_extract(tmp_path / "x", rows))
    assert quarantine_rows(validated) == [
        ("orders", "orders.csv", 2, "status", "not_allowed", "done")
    ]
    assert validated.data_quality.height == 0


def test_without_created_no_time_is_in_the_future(tmp_path: Path) -> None:
    rows = clean_rows()
    rows["diagnoses"][1]["recorded_time"] = "2099-01-01 00:00"
    manifest = {k: v for k, v in MANIFEST.items() if k != "created"}
    validated = load_extract(write_extract(tmp_path / "x", rows, manifest=manifest))
    assert (validated.quarantine.height, validated.data_quality.height) == (0, 0)


def test_every_rule_has_a_description() -> None:
    assert {case[3][0][2] for case in WARNING_CASES} == set(WARNING_RULES)
    assert not set(WARNING_RULES) & set(RULES)
    used = {case[3][0][2] for case in SINGLE_RULE_CASES}
    assert used <= set(RULES)
    assert set(RULES) - used == {
        "duplicate_key",
        "extra_fields",
        "missing_fields",
        "timestamp_not_in_timezone",
    }  # each tested on its own (here, in test_reader.py and test_bad_input_matrix.py)


def test_duplicate_key_keeps_the_first_row(tmp_path: Path) -> None:
    rows = clean_rows()
    rows["orders"].append(dict(rows["orders"][0], code="72149"))  # line 4
    rows["orders"].append(dict(rows["orders"][1]))  # line 5
    rows["orders"].append(dict(rows["orders"][0], code_system="X"))  # line 6, two faults
    validated = load_extract(write_extract(tmp_path / "x", rows))
    assert quarantine_rows(validated) == [
        ("orders", "orders.csv", 4, "order_id", "duplicate_key", "O1"),
        ("orders", "orders.csv", 5, "order_id", "duplicate_key", "O2"),
        ("orders", "orders.csv", 6, "order_id", "duplicate_key", "O1"),
        ("orders", "orders.csv", 6, "code_system", "not_allowed", "X"),
    ]
    orders = validated.tables["orders"]
    assert orders.select("order_id", "code", "source_line").rows() == [
        ("O1", "72148", 2),
        ("O2", "ref_neuro", 3),
    ]
    assert validated.load_counts.filter(pl.col("table_name") == "orders").row(0)[2:] == (
        5,
        2,
        3,
        0,
    )
    assert_counts_add_up(validated)


def test_duplicate_of_a_quarantined_row_is_still_a_duplicate(tmp_path: Path) -> None:
    rows = clean_rows()
    rows["patients"][1]["sex"] = "?"  # P2 at line 3 is bad ...
    rows["patients"].append(dict(rows["patients"][1], sex="M"))  # ... and repeated at line 5
    validated = load_extract(write_extract(tmp_path / "x", rows))
    assert quarantine_rows(validated, "patients") == [
        ("patients", "patients.csv", 3, "sex", "not_allowed", "?"),
        ("patients", "patients.csv", 5, "patient_id", "duplicate_key", "P2"),
    ]
    assert validated.tables["patients"]["patient_id"].to_list() == ["P1", "P3"]


def test_children_of_a_quarantined_parent_are_quarantined(tmp_path: Path) -> None:
    rows = clean_rows()
    rows["patients"][0]["birth_year"] = "1850"  # P1
    validated = load_extract(write_extract(tmp_path / "x", rows))
    assert quarantine_rows(validated) == [
        ("patients", "patients.csv", 2, "birth_year", "out_of_range", "1850"),
        ("encounters", "encounters.csv", 2, "patient_id", "foreign_key", "P1"),
        # E1 was not loaded, so rows naming it are orphans twice over
        ("diagnoses", "diagnoses.csv", 2, "patient_id", "foreign_key", "P1"),
        ("diagnoses", "diagnoses.csv", 2, "encounter_id", "foreign_key", "E1"),
        ("findings", "findings.csv", 2, "patient_id", "foreign_key", "P1"),
        ("findings", "findings.csv", 2, "encounter_id", "foreign_key", "E1"),
        ("findings", "findings.csv", 3, "patient_id", "foreign_key", "P1"),
        ("findings", "findings.csv", 3, "encounter_id", "foreign_key", "E1"),
        ("orders", "orders.csv", 2, "patient_id", "foreign_key", "P1"),
        ("orders", "orders.csv", 2, "encounter_id", "foreign_key", "E1"),
        ("labs", "labs.csv", 2, "patient_id", "foreign_key", "P1"),
        # labs need not name a known encounter, but not a quarantined one
        ("labs", "labs.csv", 2, "encounter_id", "foreign_key", "E1"),
    ]
    assert validated.load_counts.rows() == [
        ("patients", "patients.csv", 3, 2, 1, 0),
        ("encounters", "encounters.csv", 3, 2, 1, 0),
        ("diagnoses", "diagnoses.csv", 2, 1, 1, 0),
        ("findings", "findings.csv", 2, 0, 2, 0),
        ("orders", "orders.csv", 2, 1, 1, 0),
        ("labs", "labs.csv", 1, 0, 1, 0),
        ("medications", "medications.csv", 1, 1, 0, 0),
    ]
    assert validated.quarantined_share() == {
        "patients": 1 / 3,
        "encounters": 1 / 3,
        "diagnoses": 0.5,
        "findings": 1.0,
        "orders": 0.5,
        "labs": 1.0,
        "medications": 0.0,
    }
    assert_counts_add_up(validated)


def test_labs_encounter_id_need_not_exist(tmp_path: Path) -> None:
    rows = clean_rows()
    rows["labs"][0]["encounter_id"] = "OUTSIDE-LAB-1"
    validated = load_extract(write_extract(tmp_path / "x", rows))
    assert validated.quarantine.height == 0


def test_a_value_that_could_not_be_cast_is_reported_once(tmp_path: Path) -> None:
    rows = clean_rows()
    rows["encounters"][2]["arrival_time"] = "soon"  # required: also null after the cast
    validated = load_extract(write_extract(tmp_path / "x", rows))
    assert quarantine_rows(validated, "encounters") == [
        ("encounters", "encounters.csv", 4, "arrival_time", "unparseable_timestamp", "soon")
    ]


def test_every_broken_rule_of_a_row_is_listed(tmp_path: Path) -> None:
    rows = clean_rows()
    rows["encounters"][2].update(setting="ward", disposition="gone", site_id="")
    validated = load_extract(write_extract(tmp_path / "x", rows))
    assert quarantine_rows(validated, "encounters") == [
        ("encounters", "encounters.csv", 4, "site_id", "missing_required", None),
        ("encounters", "encounters.csv", 4, "setting", "not_allowed", "ward"),
        ("encounters", "encounters.csv", 4, "disposition", "not_allowed", "gone"),
    ]
    assert validated.load_counts.filter(pl.col("table_name") == "encounters").row(0)[2:] == (
        3,
        2,
        1,
        0,
    )


def test_quarantine_never_shows_identifier_looking_values(tmp_path: Path) -> None:
    rows = clean_rows()
    rows["patients"][1]["sex"] = "jdoe@example.org"  # not allowed AND an e-mail
    rows["patients"][2]["birth_year"] = "123-45-6789"  # not an int AND an SSN
    validated = load_extract(write_extract(tmp_path / "x", rows))
    assert quarantine_rows(validated, "patients") == [
        (
            "patients",
            "patients.csv",
            3,
            "sex",
            "looks_like_identifier",
            "<redacted email-like value>",
        ),
        ("patients", "patients.csv", 3, "sex", "not_allowed", "<redacted email-like value>"),
        (
            "patients",
            "patients.csv",
            4,
            "birth_year",
            "unparseable_int",
            "<redacted ssn-like value>",
        ),
    ]
    text = validated.quarantine.write_csv()
    assert "jdoe" not in text and "6789" not in text


def test_loaded_tables_pass_their_pandera_models(tmp_path: Path) -> None:
    rows = clean_rows()
    rows["patients"][0]["sex"] = "?"
    validated = load_extract(write_extract(tmp_path / "x", rows))
    for table, frame in validated.tables.items():
        table_model(table, validated.manifest.extract_year).validate(frame, lazy=True)


def test_validated_extract_save_load_round_trip(tmp_path: Path) -> None:
    rows = clean_rows()
    rows["orders"][0]["status"] = "done"
    rows["labs"][0]["resulted_time"] = "2026-03-08 03:00"
    validated = load_extract(write_extract(tmp_path / "x", rows))
    assert (validated.quarantine.height, validated.data_quality.height) == (1, 1)
    validated.save(tmp_path / "saved")
    back = ValidatedExtract.load(tmp_path / "saved")
    assert (back.manifest, back.digest, back.warnings) == (
        validated.manifest,
        validated.digest,
        validated.warnings,
    )
    assert_frame_equal(back.quarantine, validated.quarantine)
    assert_frame_equal(back.data_quality, validated.data_quality)
    assert_frame_equal(back.load_counts, validated.load_counts)
    assert list(back.tables) == list(TABLE_ORDER)
    for table in TABLE_ORDER:
        assert_frame_equal(back.tables[table], validated.tables[table])
    assert back.quarantined_share() == validated.quarantined_share()
    assert back.warned_share()["labs"] == 1.0


def test_validate_extract_accepts_a_reloaded_raw_extract(tmp_path: Path) -> None:
    from chartaudit.schemas.reader import RawExtract

    rows = clean_rows()
    rows["labs"][0]["loinc"] = "bad"
    raw = read_extract(write_extract(tmp_path / "x", rows))
    raw.save(tmp_path / "raw")
    again = validate_extract(RawExtract.load(tmp_path / "raw"))
    assert_frame_equal(again.quarantine, validate_extract(raw).quarantine)
    assert dict(again.quarantine.schema) == QUARANTINE_SCHEMA


def test_a_hand_built_frame_with_wrong_dtypes_is_refused(tmp_path: Path) -> None:
    raw = read_extract(write_extract(tmp_path / "x"))
    raw.tables["patients"] = raw.tables["patients"].with_columns(
        pl.col("birth_year").cast(pl.Int32)
    )
    with pytest.raises(ValueError, match="patients is not a canonical frame: column birth_year"):
        validate_extract(raw)
