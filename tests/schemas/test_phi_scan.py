"""The PHI scan: identifier-like column names and values, per file and column, with counts and
lines, and never the value itself."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from chartaudit.sample_data.generator import generate_extract
from chartaudit.schemas.errors import ExtractRejected
from chartaudit.schemas.phi_scan import PhiFinding, scan_extract

from .builders import MANIFEST, clean_rows, write_extract


def with_lab_texts(*texts: str) -> dict[str, list[dict[str, str]]]:
    """The clean rows, with one lab row per text (value_text), on lines 2, 3, ..."""
    rows = clean_rows()
    template = rows["labs"][0]
    rows["labs"] = [{**template, "value_text": text} for text in texts]
    return rows


def test_a_clean_extract_has_no_finding(tmp_path: Path) -> None:
    folder = write_extract(tmp_path / "x")
    scan = scan_extract(folder)
    assert scan.clean
    assert scan.files == (
        "diagnoses.csv",
        "encounters.csv",
        "findings.csv",
        "labs.csv",
        "medications.csv",
        "orders.csv",
        "patients.csv",
    )
    assert scan.rows == sum(len(rows) for rows in clean_rows().values())


def test_each_identifier_is_reported_by_file_column_and_line(tmp_path: Path) -> None:
    rows = with_lab_texts("call 555-123-4567", "call (555) 765-4321 or Dr. Roe")
    rows["encounters"][2]["department"] = "ref 123-45-6789"
    for row in rows["patients"]:
        row["home_phone"] = ""  # an identifier column, even when empty
    rows["patients"][1]["home_phone"] = "555 222 3333"
    folder = write_extract(tmp_path / "x", rows)
    assert scan_extract(folder).findings == (
        PhiFinding("encounters.csv", "column 'department'", "ssn", 1, (4,), "999-99-9999"),
        PhiFinding("labs.csv", "column 'value_text'", "phone", 2, (2, 3), "999-999-9999"),
        PhiFinding("patients.csv", "column 'home_phone'", "phone number"),
        PhiFinding("patients.csv", "column 'home_phone'", "phone", 1, (3,), "999 999 9999"),
    )


def test_a_value_with_two_kinds_counts_under_the_first_pattern_it_matches(tmp_path):
    rows = with_lab_texts("Dr. Roe", "(555) 765-4321 Dr. Roe")  # phone comes before name
    folder = write_extract(tmp_path / "x", rows)
    assert [(f.kind, f.lines) for f in scan_extract(folder).findings] == [
        ("name", (2,)),
        ("phone", (3,)),
    ]


def test_parquet_lines_are_row_numbers_and_every_column_name_is_checked(tmp_path: Path) -> None:
    rows = with_lab_texts("", "to jane.roe@example.org")
    for row in rows["labs"]:
        row["e_mail"] = ""
    folder = write_extract(tmp_path / "x", rows, parquet=("labs",))
    pl.DataFrame({"patient_id": ["P1"], "MRN": [12345]}).write_parquet(folder / "extra.parquet")
    assert scan_extract(folder).findings == (
        PhiFinding("extra.parquet", "column 'MRN'", "medical record number"),
        PhiFinding("labs.parquet", "column 'e_mail'", "e-mail address"),
        PhiFinding("labs.parquet", "column 'value_text'", "email", 1, (2,), "xxxx.xxx@xxxxxxx.xxx"),
    )


def test_a_header_cell_that_is_a_value_is_shown_by_position(tmp_path: Path) -> None:
    """A file exported without its header row: the first record is taken as the header, and
    its values are not printed as column names."""
    folder = write_extract(tmp_path / "x")
    (folder / "contacts.csv").write_text(
        "P1,555-201-7788\nP2,555-310-2299\nP3,555-410-3399\n", encoding="utf-8"
    )
    findings = scan_extract(folder).findings
    assert findings == (
        PhiFinding("contacts.csv", "column 2", "header value"),
        PhiFinding("contacts.csv", "column 2", "phone", 2, (2, 3), "999-999-9999"),
    )
    text = "\n".join(f.describe() for f in findings)
    assert text == (
        "contacts.csv: column 2: the header cell looks like an identifier value (is the header"
        " row missing?)\n"
        "contacts.csv: column 2: 2 phone-number-like values (lines 2, 3), e.g. 999-999-9999"
    )
    assert "201" not in text and "310" not in text


def test_the_manifest_values_are_scanned(tmp_path: Path) -> None:
    manifest = {**MANIFEST, "source": "exported by j.roe@hospital.example.org"}
    folder = write_extract(tmp_path / "x", manifest=manifest)
    assert scan_extract(folder).findings == (
        PhiFinding("manifest.json", "key 'source'", "email", 1, (1,), "x.xxx@xxxxxxxx.xxxxxxx.xxx"),
    )
    (folder / "manifest.json").write_text(json.dumps(["not", "a", "mapping"]))
    assert scan_extract(folder).clean


def test_more_than_ten_lines_are_counted_and_the_first_ten_shown(tmp_path: Path) -> None:
    rows = with_lab_texts(*(f"call 555-123-{i:04d}" for i in range(12)))
    finding = scan_extract(write_extract(tmp_path / "x", rows)).findings[0]
    assert (finding.rows, finding.lines) == (12, tuple(range(2, 12)))
    assert finding.describe() == (
        "labs.csv: column 'value_text': 12 phone-number-like values"
        " (lines 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, ...), e.g. 999-999-9999"
    )


def test_on_a_generated_extract_it_finds_exactly_the_rows_the_loader_quarantines(tmp_path):
    """The generator's identifier rows (e-mail and SSN in labs.value_text) and nothing else: no
    department, result text, code or id of thousands of rows looks like an identifier."""
    folder = tmp_path / "extract"
    generate_extract(folder, patients=600, seed=11)
    expected = pl.read_csv(folder / "expected_quarantine.csv").filter(
        pl.col("reason") == "looks_like_identifier"
    )
    scan = scan_extract(folder)
    assert {(f.file, f.column) for f in scan.findings} == {("labs.csv", "column 'value_text'")}
    assert {f.kind for f in scan.findings} == {"email", "ssn"}
    lines = sorted(line for f in scan.findings for line in f.lines)
    assert lines == sorted(expected["source_line"].to_list())
    assert sum(f.rows for f in scan.findings) == expected.height


def test_a_file_that_cannot_be_read_is_never_called_clean(tmp_path: Path) -> None:
    folder = write_extract(tmp_path / "x")
    (folder / "notes.parquet").write_bytes(b"PAR1 not really parquet")
    with pytest.raises(ExtractRejected) as caught:
        scan_extract(folder)
    assert str(caught.value) == (
        "PHI scan: notes.parquet cannot be read (ComputeError), so it was not scanned;"
        " re-export it as UTF-8 CSV or Parquet"
    )


def test_empty_and_header_only_files_are_scanned(tmp_path: Path) -> None:
    folder = tmp_path / "x"
    folder.mkdir()
    (folder / "empty.csv").write_text("")
    (folder / "header.csv").write_text("patient_id,email\n")
    scan = scan_extract(folder)
    assert (scan.files, scan.rows) == (("empty.csv", "header.csv"), 0)
    assert scan.findings == (PhiFinding("header.csv", "column 'email'", "e-mail address"),)
