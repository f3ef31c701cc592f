"""The adapter frame every source shares (sources/formats.py, output.py, code_maps.py,
provenance.py): format detection, the adapted contract folder, the site code map, and quarantine
rows that name the source's own file and line."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from chartaudit.schemas.contract import TABLES
from chartaudit.schemas.errors import ExtractRejected
from chartaudit.schemas.layout import check_extract
from chartaudit.schemas.validation import load_extract
from chartaudit.sources.formats import detect_format, resolve_format
from chartaudit.sources.output import AdaptedExtract
from chartaudit.sources.provenance import read_provenance, to_source_files, to_source_lines

EMPTY_TABLES = ("diagnoses", "findings", "orders", "labs", "medications")


def touch(folder: Path, *names: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_text("")
    return folder


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (("PERSON.csv", "VISIT_OCCURRENCE.csv", "CONCEPT.csv"), "omop"),
        (("person.parquet", "visit_occurrence.parquet"), "omop"),
        (("Patient.000.ndjson", "Encounter.000.ndjson", "manifest.json"), "fhir"),
        (("patients.csv", "conditions.csv", "observations.csv", "encounters.csv"), "synthea"),
        # the contract's own tables win: a Synthea-like name beside diagnoses is an extra file
        (("patients.csv", "conditions.csv", "observations.csv", "diagnoses.csv"), "contract"),
        (("patients.csv", "encounters.csv", "diagnoses.parquet"), "contract"),
        ((), "contract"),
    ],
)
def test_auto_detects_the_format_by_file_names(tmp_path, files, expected):
    detected = detect_format(touch(tmp_path / "x", *files))
    assert detected.format == expected


def test_detection_says_what_it_found(tmp_path):
    folder = touch(tmp_path / "x", "PERSON.csv", "VISIT_OCCURRENCE.csv")
    assert resolve_format(folder, "auto").reason == (
        "OMOP CDM tables PERSON.csv and VISIT_OCCURRENCE.csv found"
    )
    assert resolve_format(folder, "FHIR").format == "fhir"
    assert resolve_format(folder, "fhir").reason == "given with --format"


def test_an_unknown_format_is_refused_with_the_choices(tmp_path):
    with pytest.raises(ExtractRejected) as raised:
        resolve_format(tmp_path, "hl7v2")
    assert str(raised.value) == (
        "extract rejected: --format hl7v2 is not a format; choose one of contract, omop,"
        " synthea, fhir, auto"
    )


def empty(table: str) -> str:
    columns = ", ".join(f"NULL::VARCHAR AS {c}" for c in TABLES[table].required_columns)
    return f"SELECT {columns}, 'none' AS origin_file, 0 AS origin_line WHERE false"


def adapt_toy(source: Path, folder: Path, code_map: Path | None = None, findings: str = ""):
    """Two patients (the second with a sex the contract refuses) and one encounter, from
    made-up source files P.csv and E.csv."""
    with AdaptedExtract(folder, source, "toy", "test", code_map) as out:
        out.write_table(
            "patients",
            "SELECT * FROM (VALUES ('p2', 1960, 'Q', 'P.csv', 3), ('p1', 1950, 'F', 'P.csv', 2))"
            " t(patient_id, birth_year, sex, origin_file, origin_line)",
        )
        out.write_table(
            "encounters",
            "SELECT 'e1' AS encounter_id, 'p1' AS patient_id, 's1' AS site_id,"
            " 'emergency' AS setting, '2026-10-01T10:00:00-05:00' AS arrival_time,"
            " 'E.csv' AS origin_file, 7 AS origin_line",
        )
        for table in EMPTY_TABLES:
            if table == "findings" and findings:
                out.write_table(table, out.map_codes(findings))
            else:
                out.write_table(table, empty(table))
        out.coverage.start, out.coverage.end = date(2026, 1, 1), date(2026, 10, 31)
        out.coverage.how = "coverage from the toy source"
        return out.finish()


def test_the_adapted_folder_is_a_contract_extract(tmp_path):
    source = touch(tmp_path / "src")
    report = adapt_toy(source, tmp_path / "adapted")
    assert report.rows == {
        "patients": 2,
        "encounters": 1,
        "diagnoses": 0,
        "findings": 0,
        "orders": 0,
        "labs": 0,
        "medications": 0,
    }
    assert report.lines() == [
        "extract format: toy (test)",
        "adapted rows: patients 2, encounters 1, diagnoses 0, findings 0, orders 0, labs 0,"
        " medications 0",
        "adapter: coverage from the toy source",
    ]
    layout = check_extract(tmp_path / "adapted")
    assert layout.warnings == []  # _provenance.parquet belongs to the folder
    assert layout.manifest.coverage_start == date(2026, 1, 1)
    assert layout.manifest.timezone_defaulted
    manifest = json.loads((tmp_path / "adapted" / "manifest.json").read_text())
    assert manifest["source"] == "toy: src"
    assert manifest["extract_id"].startswith("src-toy-")
    # rows are numbered in source order (file, line), whatever order the query gave
    patients = pl.read_parquet(tmp_path / "adapted" / "patients.parquet")
    assert patients["patient_id"].to_list() == ["p1", "p2"]
    assert patients.columns == ["patient_id", "birth_year", "sex", "death_date"]


def test_the_same_source_gives_the_same_extract_id(tmp_path):
    source = touch(tmp_path / "src")
    adapt_toy(source, tmp_path / "a")
    adapt_toy(source, tmp_path / "b")
    ids = [json.loads((tmp_path / f / "manifest.json").read_text())["extract_id"] for f in "ab"]
    assert ids[0] == ids[1]
    assert check_extract(tmp_path / "a").digest == check_extract(tmp_path / "b").digest


def test_a_manifest_beside_the_source_overrides_what_the_adapter_derived(tmp_path):
    source = touch(tmp_path / "src")
    (source / "manifest.json").write_text(
        json.dumps(
            {
                "timezone": "America/Chicago",
                "coverage_end": "2026-09-30",
                "transactionTime": "2026-11-01T00:00:00Z",  # a FHIR export's own key
            }
        )
    )
    report = adapt_toy(source, tmp_path / "adapted")
    manifest = json.loads((tmp_path / "adapted" / "manifest.json").read_text())
    assert manifest["timezone"] == "America/Chicago"
    assert manifest["coverage_end"] == "2026-09-30"
    assert manifest["coverage_start"] == "2026-01-01"
    assert "transactionTime" not in manifest
    assert "adapter: manifest.json beside the source gives coverage_end, timezone" in (
        report.lines()
    )


def test_quarantine_names_the_source_file_and_line(tmp_path):
    adapt_toy(touch(tmp_path / "src"), tmp_path / "adapted")
    validated = load_extract(tmp_path / "adapted")
    provenance = read_provenance(tmp_path / "adapted")
    quarantine = to_source_lines(validated.quarantine, provenance)
    assert quarantine.select("table_name", "source_file", "source_line", "column_name").rows() == [
        ("patients", "P.csv", 3, "sex")
    ]
    counts = to_source_files(validated.load_counts, provenance)
    assert counts.filter(pl.col("table_name") == "patients").row(0) == (
        "patients",
        "P.csv",
        2,
        1,
        1,
        0,
    )
    assert read_provenance(touch(tmp_path / "plain")) is None


FINDINGS = (
    "SELECT * FROM (VALUES"
    " ('p1', 'e1', 'urn:site:flowsheet', 'F-77', 'present', '2026-10-01 10:05', 'O.ndjson', 4),"
    " ('p1', 'e1', 'SNOMEDCT', '134388005', 'normal', '2026-10-01 10:06', 'O.ndjson', 5),"
    " ('p1', 'e1', 'urn:site:flowsheet', 'F-99', 'present', '2026-10-01 10:07', 'O.ndjson', 6))"
    " t(patient_id, encounter_id, code_system, code, result, recorded_time, origin_file,"
    " origin_line)"
)


def write_code_map(path: Path, rows: str) -> Path:
    path.write_text("source_system,source_code,code_system,code,description\n" + rows)
    return path


def test_the_site_code_map_turns_local_codes_into_contract_concepts(tmp_path):
    code_map = write_code_map(
        tmp_path / "site-codes.csv",
        "urn:site:flowsheet,F-77,local,saddle_anesthesia,Saddle numbness (ED flowsheet)\n",
    )
    adapt_toy(touch(tmp_path / "src"), tmp_path / "adapted", code_map, FINDINGS)
    findings = pl.read_parquet(tmp_path / "adapted" / "findings.parquet")
    assert findings.select("code_system", "code").rows() == [
        ("LOCAL", "saddle_anesthesia"),
        ("SNOMEDCT", "134388005"),
        ("urn:site:flowsheet", "F-99"),  # unmapped: kept, and the contract quarantines it
    ]
    validated = load_extract(tmp_path / "adapted")
    quarantine = to_source_lines(validated.quarantine, read_provenance(tmp_path / "adapted"))
    assert quarantine.filter(pl.col("table_name") == "findings").select(
        "source_file", "source_line", "column_name", "value"
    ).rows() == [("O.ndjson", 6, "code_system", "urn:site:flowsheet")]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            "source_system,source_code,system,code\n",
            "has no column code_system; its columns are source_system, source_code,"
            " code_system, code (and any others, ignored)",
        ),
        (
            "source_system,source_code,code_system,code\nurn:x,1,ICD9,250\n",
            "maps urn:x 1 to code_system 'ICD9', which is not one of LOCAL, SNOMEDCT, ICD10CM,"
            " CPT, HCPCS, LOINC",
        ),
        (
            "source_system,source_code,code_system,code\nurn:x,1,LOCAL,a\nurn:x,1,LOCAL,b\n",
            "maps urn:x 1 to more than one concept; keep one row for it",
        ),
    ],
)
def test_a_malformed_code_map_is_refused_in_one_line(tmp_path, content, message):
    code_map = tmp_path / "site-codes.csv"
    code_map.write_text(content)
    with pytest.raises(ExtractRejected) as raised:
        adapt_toy(touch(tmp_path / "src"), tmp_path / "adapted", code_map)
    assert str(raised.value) == f"extract rejected: code map {code_map} {message}"


def test_a_missing_code_map_is_named(tmp_path):
    with pytest.raises(ExtractRejected) as raised:
        adapt_toy(touch(tmp_path / "src"), tmp_path / "adapted", tmp_path / "nope.csv")
    assert str(raised.value) == (
        f"extract rejected: code map {tmp_path / 'nope.csv'} (setting [sources] code_map)"
        " does not exist"
    )
