from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from chartaudit.schemas.contract import TABLES
from chartaudit.schemas.deidentification import (
    BARE_IDENTIFIER_NAMES,
    DIRECT_IDENTIFIER_TOKEN_RUNS,
    identifier_columns,
    identifier_kind,
    identifier_value_kind,
    mask_identifier_values,
    mask_quarantine_value,
    masked_shape,
    name_tokens,
)
from chartaudit.schemas.errors import ExtractRejected
from chartaudit.schemas.reader import read_extract

from .builders import clean_rows, write_extract

ALL_RUNS = [(kind, run) for kind, runs in DIRECT_IDENTIFIER_TOKEN_RUNS for run in runs]
CONTRACT_COLUMNS = sorted({c for spec in TABLES.values() for c in spec.column_names})


@pytest.mark.parametrize(("kind", "run"), ALL_RUNS, ids=["_".join(r) for _, r in ALL_RUNS])
def test_every_pattern_marks_a_direct_identifier(kind: str, run: tuple[str, ...]) -> None:
    snake = "_".join(run)
    camel = "".join(token.capitalize() for token in run)
    for name in (snake, f"patient_{snake}", f"{snake}_raw", camel, f"Pt{camel}", snake.upper()):
        assert identifier_kind(name) == kind, name


def test_bare_name_is_an_identifier_but_qualified_names_are_not() -> None:
    assert list(BARE_IDENTIFIER_NAMES) == [("name",)]
    assert identifier_kind("name") == "person name"
    assert identifier_kind(" Name ") == "person name"
    for fine in ("site_name", "drug_name", "department_name", "test_name"):
        assert identifier_kind(fine) is None, fine


@pytest.mark.parametrize("column", CONTRACT_COLUMNS)
def test_every_contract_column_passes(column: str) -> None:
    assert identifier_kind(column) is None


@pytest.mark.parametrize(
    "column",
    [
        "department",
        "site_id",
        "clinician_id",
        "birth_year",
        "city",
        "state",
        "zip3_region",
        "sex",
        "age_group",
        "visit_reason",
        "emergency_contact_relation",
        "ordered_by_role",
    ],
)
def test_ordinary_column_names_pass(column: str) -> None:
    assert identifier_kind(column) is None


@pytest.mark.parametrize(
    ("column", "kind"),
    [
        ("PatientName", "person name"),
        ("first_name", "person name"),
        ("LAST-NAME", "person name"),
        ("surname", "person name"),
        ("home_address", "address"),
        ("street", "address"),
        ("zip", "address"),
        ("postal code", "address"),
        ("phone_number", "phone number"),
        ("Telephone", "phone number"),
        ("fax", "phone number"),
        ("e-mail", "e-mail address"),
        ("EMail", "e-mail address"),
        ("ssn_last4", "social security number"),
        ("social_security_no", "social security number"),
        ("MRN", "medical record number"),
        ("PatientMRN", "medical record number"),
        ("medical_record_number", "medical record number"),
        ("birth_date", "full birth date"),
        ("DateOfBirth", "full birth date"),
        ("dob", "full birth date"),
        ("birthdate", "full birth date"),
    ],
)
def test_typical_identifier_columns(column: str, kind: str) -> None:
    assert identifier_kind(column) == kind


def test_name_tokens() -> None:
    assert name_tokens("PatientFirst-Name") == ("patient", "first", "name")
    assert name_tokens("MRNNumber") == ("mrn", "number")
    assert name_tokens("  dose_mg ") == ("dose", "mg")
    assert identifier_columns(["site_id", "dob", "email"]) == [
        ("dob", "full birth date"),
        ("email", "e-mail address"),
    ]


@pytest.mark.parametrize("table", list(TABLES))
def test_reader_rejects_an_identifier_column_in_any_table(tmp_path: Path, table: str) -> None:
    rows = clean_rows()
    for row in rows[table]:
        row["DOB"] = "1950-01-01"
    with pytest.raises(ExtractRejected) as caught:
        read_extract(write_extract(tmp_path / "x", rows))
    assert str(caught.value) == (
        f"extract rejected: {table}.csv has column 'DOB', which looks like a direct identifier "
        "(full birth date); remove it from the export (only de-identified data is accepted)"
    )


VALUES = [
    ("123-45-6789", "ssn"),
    ("ssn 123-45-6789.", "ssn"),
    ("555-123-4567", "phone"),
    ("(555) 123-4567", "phone"),
    ("+1 555 123 4567", "phone"),
    ("call 555.123.4567 after 5", "phone"),
    ("jane.doe@example.org", "email"),
    ("J_Doe+x@mail.example.co.uk", "email"),
    ("P000123", None),
    ("E1142", None),
    ("134388005", None),  # SNOMED CT id
    ("5551234567", None),  # bare digits: an id, not a phone number
    ("2345-7", None),  # LOINC
    ("2026-03-08 01:30", None),
    ("1234-56-7890", None),
    ("ropinirole 0.25 mg", None),
    ("user at example dot org", None),
    ("Dr. Jane Roe", "name"),
    ("seen by Dr Patel", "name"),
    ("Mx Kai Reed", "name"),
    ("Surname: Roe", "name"),
    ("patient name=jq", "name"),
    ("MS Clinic", None),  # multiple sclerosis: an honorific is written Ms
    ("Missed dose", None),
    ("dr review", None),  # a cue is a capitalised honorific and a capitalised word
    ("drug name", None),
    ("rename=yes", None),
    ("Hospital Medicine", None),  # a bare pair of capitalised words is no name here
    (None, None),
]


def test_identifier_looking_values() -> None:
    frame = pl.DataFrame({"v": [v for v, _ in VALUES]}, schema={"v": pl.String})
    result = frame.select(
        identifier_value_kind(pl.col("v")).alias("kind"),
        mask_identifier_values(pl.col("v")).alias("masked"),
    )
    assert result["kind"].to_list() == [k for _, k in VALUES]
    assert result["masked"].to_list() == [
        f"<redacted {k}-like value>" if k else v for v, k in VALUES
    ]


def test_quarantine_masks_name_shaped_values_too() -> None:
    values = [
        ("Jane Roe", "<redacted name-like value>"),
        ("Mary-Ann O'Neil Smith", "<redacted name-like value>"),
        ("Home Visit", "<redacted name-like value>"),  # the price of masking by shape
        ("ref 123-45-6789", "<redacted ssn-like value>"),
        ("home_visit", "home_visit"),
        ("Q", "Q"),
        ("Smith", "Smith"),  # one word is not name-shaped
        ("2026-13-45 25:00", "2026-13-45 25:00"),
        ("Jane Roe was here today", "Jane Roe was here today"),
        (None, None),
    ]
    frame = pl.DataFrame({"v": [v for v, _ in values]}, schema={"v": pl.String})
    masked = frame.select(mask_quarantine_value(pl.col("v")).alias("m"))["m"].to_list()
    assert masked == [m for _, m in values]


def test_a_masked_shape_keeps_no_letter_or_digit() -> None:
    frame = pl.DataFrame({"v": ["(555) 201-7788", "h.roe@example.net", "Dr. Roe", "Ünal 12"]})
    shapes = frame.select(masked_shape(pl.col("v")))["v"].to_list()
    assert shapes == ["(999) 999-9999", "x.xxx@xxxxxxx.xxx", "xx. xxx", "xxxx 99"]
