"""The Synthea CSV adapter (sources/synthea.py) on hand-written exports with the v3 exporter's
columns (every column of each file, in the exporter's order), and the round trip contract ->
Synthea (sample_data/formats/synthea.py) -> contract."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import polars as pl
import pytest

from chartaudit.sample_data.formats.synthea import (
    SITE_CODE_MAP_FILE,
    synthea_id,
    write_synthea,
)
from chartaudit.schemas.errors import ExtractRejected
from chartaudit.schemas.validation import load_extract
from chartaudit.sources.adapt import adapt_source
from chartaudit.sources.formats import detect_format
from chartaudit.sources.provenance import read_provenance, to_source_lines
from chartaudit.sources.synthea import staging_query
from chartaudit.storage import warehouse
from tests.sources.story import EXPECTED, PERIOD, write_story

P1 = "8f2d5a3c-0b1e-4c6a-9d2f-3e4b5c6d7e81"
P2 = "1c9e7b20-4a3d-4f8e-b6c5-d4e3f2a1b0c2"
P3 = "5a6b7c8d-9e0f-4a1b-8c2d-3e4f5a6b7c83"
E = [f"0e5f1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a{n:02d}" for n in range(10)]  # E[1] .. E[8]
ORG1, ORG2 = "e1d2c3b4-a596-4877-8899-aabbccddee01", "e1d2c3b4-a596-4877-8899-aabbccddee02"
PR1, PR2 = "7a8b9c0d-1e2f-4a3b-8c4d-5e6f7a8b9c01", "7a8b9c0d-1e2f-4a3b-8c4d-5e6f7a8b9c02"
PAYER = "d31fccc3-1767-390d-966a-22a5156f4219"

# Identifier-like values of the export (names, SSN, licence, passport, full birth dates,
# addresses, coordinates): none may reach the adapted folder.
IDENTIFIER_VALUES = [
    "999-12-3456",
    "S99912345",
    "X12345678X",
    "Ardith683",
    "Kuhlman484",
    "Wolff180",
    "Jose Eduardo181",
    "1961-05-17",
    "1948-11-02",
    "123 Fake Street Unit 4",
    "42.3601",
    "-71.0589",
    "Boston  Massachusetts  US",
    "Dr. Zelda Quack",
    "Fake General Hospital",
    "555-0100",
]
IDENTIFIER_COLUMNS = [
    "SSN",
    "DRIVERS",
    "PASSPORT",
    "PREFIX",
    "FIRST",
    "MIDDLE",
    "LAST",
    "SUFFIX",
    "MAIDEN",
    "BIRTHPLACE",
    "ADDRESS",
    "LAT",
    "LON",
    "NAME",
    "PHONE",
]


def export_files() -> dict[str, list[str]]:
    """Three patients' Synthea CSV export (v3 exporter columns, Synthea's value formats)."""
    return {
        "patients.csv": [
            "Id,BIRTHDATE,DEATHDATE,SSN,DRIVERS,PASSPORT,PREFIX,FIRST,MIDDLE,LAST,SUFFIX,MAIDEN,"
            "MARITAL,RACE,ETHNICITY,GENDER,BIRTHPLACE,ADDRESS,CITY,STATE,COUNTY,FIPS,ZIP,LAT,LON,"
            "HEALTHCARE_EXPENSES,HEALTHCARE_COVERAGE,INCOME",
            f"{P1},1961-05-17,,999-12-3456,S99912345,X12345678X,Mrs.,Ardith683,Jo,Kuhlman484,,"
            "Wolff180,M,white,nonhispanic,F,Boston  Massachusetts  US,123 Fake Street Unit 4,"
            "Boston,Massachusetts,Suffolk County,25025,02118,42.3601,-71.0589,12345.67,"
            "2345.67,55000",
            f"{P2},1948-11-02,2026-10-30,999-12-3456,S99912345,X12345678X,Mr.,Jose Eduardo181,,"
            "Kuhlman484,,,M,white,hispanic,M,Boston  Massachusetts  US,123 Fake Street Unit 4,"
            "Boston,Massachusetts,Suffolk County,25025,02118,42.3601,-71.0589,100.0,200.0,31000",
            f"{P3},1985-02-28,,999-12-3456,,,Ms.,Ardith683,,Kuhlman484,,,S,asian,nonhispanic,F,"
            '"Boston  Massachusetts  US","123 Fake Street Unit 4",Boston,Massachusetts,'
            "Suffolk County,25025,02118,42.3601,-71.0589,0.0,0.0,72000",
        ],
        "encounters.csv": [
            "Id,START,STOP,PATIENT,ORGANIZATION,PROVIDER,PAYER,ENCOUNTERCLASS,CODE,DESCRIPTION,"
            "BASE_ENCOUNTER_COST,TOTAL_CLAIM_COST,PAYER_COVERAGE,REASONCODE,REASONDESCRIPTION",
            f"{E[1]},2026-10-05T13:00:00Z,2026-10-05T19:00:00Z,{P1},{ORG1},{PR1},{PAYER},emergency,"
            "50849002,Emergency room admission (procedure),146.18,146.18,0.00,,",
            f"{E[2]},2026-03-10T14:00:00Z,2026-03-10T14:30:00Z,{P1},{ORG2},{PR2},{PAYER},wellness,"
            "162673000,General examination of patient (procedure),136.80,136.80,0.00,,",
            f"{E[3]},2026-10-12T22:00:00Z,2026-10-16T15:00:00Z,{P2},{ORG1},{PR1},{PAYER},"
            "inpatient,32485007,Hospital admission (procedure),1205.00,1205.00,1000.00,,",
            f"{E[4]},2026-10-20T16:00:00Z,2026-10-20T16:45:00Z,{P2},,{PR2},{PAYER},urgentcare,"
            "702927004,Urgent care clinic (environment),85.55,85.55,0.00,,",
            f"{E[5]},2026-10-21T15:00:00Z,2026-10-21T15:20:00Z,{P3},{ORG2},{PR2},{PAYER},virtual,"
            "185316007,Indirect encounter (procedure),85.55,85.55,0.00,,",
            f"{E[6]},2026-10-22T15:00:00Z,2026-10-22T16:00:00Z,{P3},{ORG2},,{PAYER},home,"
            "439708006,Home visit (procedure),85.55,85.55,0.00,,",
            f"{E[7]},2026-10-23T15:00:00Z,2026-10-23T15:15:00Z,{P3},{ORG2},{PR2},{PAYER},"
            "ambulatory,185345009,Encounter for symptom (procedure),85.55,85.55,0.00,,",
            f"{E[8]},2026-10-24T15:00:00Z,,{P1},{ORG2},{PR2},{PAYER},outpatient,"
            "185349003,Encounter for check up (procedure),85.55,85.55,0.00,,",
        ],
        "conditions.csv": [
            "START,STOP,PATIENT,ENCOUNTER,SYSTEM,CODE,DESCRIPTION",
            f"2026-03-10,,{P1},{E[2]},SNOMED-CT,44054006,Diabetes mellitus type 2 (disorder)",
            f"2026-10-13,2026-10-16,{P2},{E[3]},ICD-10-CM,G83.4,Cauda equina syndrome",
            f"2026-10-18,,{P2},{E[3]},SNOMED-CT,368581000119106,"
            "Neuropathy due to type 2 diabetes mellitus (disorder)",
            f"2026-10-21,,{P3},{E[5]},SNOMED-CT,271737000,Anemia (disorder)",
        ],
        "observations.csv": [
            "DATE,PATIENT,ENCOUNTER,CATEGORY,CODE,DESCRIPTION,VALUE,UNITS,TYPE",
            f"2026-10-05T13:30:00Z,{P1},{E[1]},exam,FS-SADDLE,Saddle anesthesia,present,,text",
            f"2026-10-05T13:00:00Z,{P1},{E[1]},vital-signs,8302-2,Body Height,165.3,cm,numeric",
            f"2026-10-05T13:00:00Z,{P1},{E[1]},vital-signs,29463-7,Body Weight,71.2,kg,numeric",
            f"2026-03-10T14:10:00Z,{P1},{E[2]},laboratory,4548-4,"
            "Hemoglobin A1c/Hemoglobin.total in Blood,7.9,%,numeric",
            f"2026-03-10T14:10:00Z,{P1},{E[2]},laboratory,5778-6,Color of urine,Yellow,,text",
            f"2026-03-10T14:20:00Z,{P1},{E[2]},survey,72166-2,Tobacco smoking status,"
            "Never smoked tobacco (finding),,text",
            f"2026-10-20T16:10:00Z,{P2},{E[4]},exam,FS-PULSES,Pedal pulses,Abnormal,,text",
            f"2026-10-20T16:30:00Z,{P2},{E[4]},laboratory,77194-9,Ankle-brachial index,0.85,"
            "{ratio},numeric",
            f"2026-10-21T15:10:00Z,{P3},{E[5]},laboratory,2276-4,Ferritin [Mass/volume] in "
            "Serum or Plasma,30.0,ng/mL,numeric",
            f"2026-01-01T00:00:00Z,{P1},,,QALY,QALY,63.0,a,numeric",
            f"2026-10-21T15:12:00Z,{P3},{E[5]},exam,FS-RLS,Restless legs,present,,text",
        ],
        "procedures.csv": [
            "START,STOP,PATIENT,ENCOUNTER,SYSTEM,CODE,DESCRIPTION,BASE_COST,REASONCODE,"
            "REASONDESCRIPTION",
            f"2026-10-05T20:00:00Z,2026-10-05T20:45:00Z,{P1},{E[1]},CPT,72148,"
            "MRI lumbar spine without contrast,1200.00,,",
            f"2026-03-10T14:05:00Z,2026-03-10T14:20:00Z,{P1},{E[2]},SNOMED-CT,430193006,"
            "Medication reconciliation (procedure),431.40,,",
            f"2026-10-20T16:20:00Z,2026-10-20T16:35:00Z,{P2},{E[4]},HOSPITAL-ORDER,ABI-BOTH,"
            "Ankle brachial index both legs,88.00,,",
            f"2026-10-13T08:00:00Z,,{P2},{E[3]},CPT,82607,Vitamin B12,25.00,,",
            f"2026-03-10T14:05:00Z,2026-03-10T14:20:00Z,{P1},{E[2]},SNOMED-CT,430193006,"
            "Medication reconciliation (procedure),431.40,,",
        ],
        "medications.csv": [
            "START,STOP,PATIENT,PAYER,ENCOUNTER,CODE,DESCRIPTION,BASE_COST,PAYER_COVERAGE,"
            "DISPENSES,TOTALCOST,REASONCODE,REASONDESCRIPTION",
            f"2026-03-10T14:25:00Z,,{P1},{PAYER},{E[2]},483438,pregabalin 100 MG Oral Capsule,"
            "12.34,0.00,3,37.02,368581000119106,Neuropathy due to type 2 diabetes mellitus",
            f"2026-10-13T09:00:00Z,2026-10-16T15:00:00Z,{P2},{PAYER},{E[3]},1049221,"
            "Acetaminophen 325 MG / Oxycodone Hydrochloride 5 MG Oral Tablet,4.21,0.00,1,4.21,,",
            f"2026-10-13T09:05:00Z,,{P2},{PAYER},{E[3]},834060,"
            "Penicillin V Potassium 250 MG Oral Tablet,0.85,0.00,1,0.85,,",
            f"2026-10-21T15:15:00Z,,{P3},{PAYER},{E[5]},308136,amLODIPine 2.5 MG Oral Tablet,"
            "0.45,0.00,1,0.45,,",
            f"2026-10-22T15:15:00Z,,{P3},{PAYER},{E[6]},834060,"
            "Penicillin V Potassium 250 MG Oral Tablet,0.85,0.00,1,0.85,,",
        ],
        "organizations.csv": [
            "Id,NAME,ADDRESS,CITY,STATE,ZIP,LAT,LON,PHONE,REVENUE,UTILIZATION,NPI",
            f"{ORG1},Fake General Hospital,123 Fake Street Unit 4,Boston,MA,02118,42.3601,"
            "-71.0589,555-0100,0.0,4,9999999991",
            f"{ORG2},Fake General Hospital,123 Fake Street Unit 4,Boston,MA,02118,42.3601,"
            "-71.0589,555-0100,0.0,4,9999999992",
        ],
        "providers.csv": [
            "Id,ORGANIZATION,NAME,GENDER,SPECIALITY,ADDRESS,CITY,STATE,ZIP,LAT,LON,ENCOUNTERS,"
            "PROCEDURES,NPI",
            f"{PR1},{ORG1},Dr. Zelda Quack,F,GENERAL PRACTICE,123 Fake Street Unit 4,Boston,MA,"
            "02118,42.3601,-71.0589,3,2,9999999993",
            f"{PR2},{ORG2},Dr. Zelda Quack,F,GENERAL PRACTICE,123 Fake Street Unit 4,Boston,MA,"
            "02118,42.3601,-71.0589,5,1,9999999994",
        ],
    }


CODE_MAP = [
    "source_system,source_code,code_system,code,description",
    "LOINC,FS-SADDLE,LOCAL,saddle_anesthesia,flowsheet row Saddle anesthesia",
    "LOINC,FS-PULSES,LOCAL,pedal_pulses,flowsheet row Pedal pulses",
    "HOSPITAL-ORDER,ABI-BOTH,CPT,93922,ankle-brachial index order",
]


def write_export(folder: Path, files: dict[str, list[str]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, lines in files.items():
        (folder / name).write_text("\n".join(lines) + "\n")
    (folder / "code-map.csv").write_text("\n".join(CODE_MAP) + "\n")
    return folder


def adapt(tmp_path: Path, files: dict[str, list[str]] | None = None):
    source = write_export(tmp_path / "synthea", files or export_files())
    return adapt_source(source, "synthea", tmp_path / "adapted", source / "code-map.csv")


def rows(folder: Path, table: str, *columns: str) -> list[tuple]:
    frame = pl.read_parquet(folder / f"{table}.parquet")
    return frame.select(columns or frame.columns).rows()


def digest(*values: str | None) -> str:
    """The documented id of a procedure or drug record: md5 of its facts joined by |."""
    return hashlib.md5("|".join(v for v in values if v is not None).encode()).hexdigest()[:16]


def test_patients_and_encounters(tmp_path):
    folder, _ = adapt(tmp_path)
    assert rows(folder, "patients") == [
        (P1, "1961", "F", None),
        (P2, "1948", "M", "2026-10-30"),
        (P3, "1985", "F", None),
    ]
    source = [line.split(",") for line in export_files()["encounters.csv"][1:]]
    assert rows(folder, "encounters", "encounter_id", "patient_id", "arrival_time") == [
        (f[0], f[3], f[1]) for f in source
    ]
    assert rows(folder, "encounters", "departure_time") == [(f[2] or None,) for f in source]
    assert rows(folder, "encounters", "site_id", "clinician_id", "setting") == [
        (ORG1, PR1, "emergency"),
        (ORG2, PR2, "outpatient"),  # wellness
        (ORG1, PR1, "inpatient"),
        (ORG2, PR2, "urgent_care"),  # no ORGANIZATION: its clinician's (providers.csv)
        (ORG2, PR2, "telehealth"),  # virtual
        (ORG2, None, "other"),  # home
        (ORG2, PR2, "outpatient"),  # ambulatory
        (ORG2, PR2, "outpatient"),
    ]
    assert rows(folder, "encounters", "department", "disposition") == [(None, None)] * 8


def test_conditions_take_their_system_and_their_encounters_time(tmp_path):
    folder, _ = adapt(tmp_path)
    assert rows(folder, "diagnoses") == [
        (P1, E[2], "SNOMEDCT", "44054006", "2026-03-10T14:00:00Z", "encounter"),
        # dated the day after its encounter began (an overnight stay): the encounter's start
        (P2, E[3], "ICD10CM", "G83.4", "2026-10-12T22:00:00Z", "encounter"),
        # six days into the stay: midnight of its date
        (P2, E[3], "SNOMEDCT", "368581000119106", "2026-10-18 00:00", "encounter"),
        (P3, E[5], "SNOMEDCT", "271737000", "2026-10-21T15:00:00Z", "encounter"),
    ]


def test_conditions_without_a_system_column_are_snomed_ct(tmp_path):
    files = export_files()
    files["conditions.csv"] = [
        "START,STOP,PATIENT,ENCOUNTER,CODE,DESCRIPTION",
        f"2026-03-10,,{P1},{E[2]},44054006,Diabetes mellitus type 2 (disorder)",
    ]
    folder, _ = adapt(tmp_path, files)
    assert rows(folder, "diagnoses", "code_system", "code") == [("SNOMEDCT", "44054006")]


def test_observations_become_findings_and_labs_and_the_rest_is_counted(tmp_path):
    folder, report = adapt(tmp_path)
    assert rows(folder, "findings") == [
        (P1, E[1], "LOCAL", "saddle_anesthesia", "present", None, "2026-10-05T13:30:00Z"),
        (P2, E[4], "LOCAL", "pedal_pulses", "abnormal", None, "2026-10-20T16:10:00Z"),
    ]
    assert rows(folder, "labs") == [
        (P1, E[2], "4548-4", "7.9", None, "%", "2026-03-10T14:10:00Z", None),
        (P2, E[4], "77194-9", "0.85", None, "{ratio}", "2026-10-20T16:30:00Z", None),
        (P3, E[5], "2276-4", "30.0", None, "ng/mL", "2026-10-21T15:10:00Z", None),
    ]
    assert (
        "adapter: 6 observations.csv rows left out (neither a numeric laboratory result nor a "
        "finding the site code map names): vital-signs 2, (no category) 1, exam 1, laboratory "
        "(not numeric) 1, survey 1"
    ) in report.lines()


def test_procedures_become_completed_orders_with_a_category_by_code(tmp_path):
    folder, _ = adapt(tmp_path)
    reconciliation = digest(P1, E[2], "2026-03-10T14:05:00Z", "SNOMED-CT", "430193006")
    assert rows(folder, "orders", "order_id", "patient_id", "encounter_id") == [
        (digest(P1, E[1], "2026-10-05T20:00:00Z", "CPT", "72148"), P1, E[1]),
        (reconciliation, P1, E[2]),
        (digest(P2, E[4], "2026-10-20T16:20:00Z", "HOSPITAL-ORDER", "ABI-BOTH"), P2, E[4]),
        (digest(P2, E[3], "2026-10-13T08:00:00Z", "CPT", "82607"), P2, E[3]),
        (f"{reconciliation}-2", P1, E[2]),  # the same procedure twice
    ]
    assert rows(folder, "orders", "code_system", "code", "category", "specialty") == [
        ("CPT", "72148", "imaging", None),  # CPT radiology section
        ("SNOMEDCT", "430193006", "procedure", None),
        ("CPT", "93922", "procedure", None),  # the site's order code, by the site code map
        ("CPT", "82607", "lab", None),  # CPT pathology and laboratory section
        ("SNOMEDCT", "430193006", "procedure", None),
    ]
    starts = [line.split(",")[0] for line in export_files()["procedures.csv"][1:]]
    assert rows(folder, "orders", "ordered_time", "performed_time", "status") == [
        (start, start, "completed") for start in starts
    ]


def test_drugs_reach_their_ingredients_and_the_unmapped_are_counted(tmp_path):
    folder, report = adapt(tmp_path)
    combination = digest(P2, E[3], "2026-10-13T09:00:00Z", "1049221")
    assert rows(folder, "medications", "medication_id", "patient_id", "encounter_id") == [
        (digest(P1, E[2], "2026-03-10T14:25:00Z", "483438"), P1, E[2]),
        (f"{combination}-acetaminophen", P2, E[3]),
        (f"{combination}-oxycodone", P2, E[3]),
    ]
    assert rows(folder, "medications", "ingredient", "rxnorm", "dose_mg", "status") == [
        ("pregabalin", "483438", 100.0, "active"),
        ("acetaminophen", "1049221", 325.0, "completed"),
        ("oxycodone", "1049221", 5.0, "completed"),
    ]
    assert rows(folder, "medications", "start_time", "end_time") == [
        ("2026-03-10T14:25:00Z", None),
        ("2026-10-13T09:00:00Z", "2026-10-16T15:00:00Z"),
        ("2026-10-13T09:00:00Z", "2026-10-16T15:00:00Z"),
    ]
    assert rows(folder, "medications", "doses_per_day", "route") == [(None, None)] * 3
    assert (
        "adapter: 3 medication records (2 codes) have no ingredient in the RxNorm map: 834060 "
        "Penicillin V Potassium 250 MG Oral Tablet, 308136 amLODIPine 2.5 MG Oral Tablet"
    ) in report.lines()


def test_identifier_columns_never_reach_the_adapted_folder(tmp_path):
    folder, _ = adapt(tmp_path)
    columns: set[str] = set()
    values: list[str] = []
    for path in sorted(folder.iterdir()):
        if path.suffix == ".parquet":
            frame = pl.read_parquet(path)
            columns |= {c.upper() for c in frame.columns}
            values += [str(v) for column in frame.iter_columns() for v in column.to_list()]
        else:
            values.append(path.read_text())
    text = "\n".join(values)
    assert [value for value in IDENTIFIER_VALUES if value in text] == []
    assert columns.isdisjoint(IDENTIFIER_COLUMNS)
    assert "1961" in text  # the birth year, and no more of the birth date
    assert sorted(p.name for p in folder.iterdir()) == [
        "_provenance.parquet",
        "diagnoses.parquet",
        "encounters.parquet",
        "findings.parquet",
        "labs.parquet",
        "manifest.json",
        "medications.parquet",
        "orders.parquet",
        "patients.parquet",
    ]


def test_duckdb_materialises_only_the_mapped_columns(tmp_path):
    """The scan's projections are the mapped columns: DuckDB never holds the others."""
    source = write_export(tmp_path / "synthea", export_files())
    con = duckdb.connect()
    plan = "\n".join(
        row[1] for row in con.sql(f"EXPLAIN {staging_query(source / 'patients.csv')}").fetchall()
    )
    scan = plan[plan.index("READ_CSV") :]
    projected = scan[scan.index("Projections:") : scan.index("~")]
    words = {w.strip("│ ,") for w in projected.split()} - {""}
    assert words == {"Projections:", "Id", "BIRTHDATE", "DEATHDATE", "GENDER"}
    staged = con.sql(staging_query(source / "providers.csv")).columns
    assert staged == ["origin_file", "origin_line", "Id", "ORGANIZATION"]


def test_a_quarantined_row_names_the_synthea_file_and_line(tmp_path):
    files = export_files()
    files["encounters.csv"][4] = files["encounters.csv"][4].replace(
        "2026-10-20T16:00:00Z", "2026-10-32T16:00:00Z"
    )
    files["conditions.csv"].append(f"2026-10-21,,{P3},{E[5]},ICD-9-CM,285.9,Anemia")
    folder, _ = adapt(tmp_path, files)
    validated = load_extract(folder)
    quarantine = to_source_lines(validated.quarantine, read_provenance(folder))
    located = quarantine.select("table_name", "source_file", "source_line", "column_name").rows()
    assert ("encounters", "encounters.csv", 5, "arrival_time") in located
    assert ("diagnoses", "conditions.csv", 6, "code_system") in located
    assert {(t, f, n) for t, f, n, _ in located} == {
        ("encounters", "encounters.csv", 5),
        ("diagnoses", "conditions.csv", 6),
        # rows that point at the quarantined encounter follow it
        ("findings", "observations.csv", 8),
        ("labs", "observations.csv", 9),
        ("orders", "procedures.csv", 4),
    }


def test_a_missing_required_file_is_one_line_naming_it(tmp_path):
    files = export_files()
    del files["procedures.csv"]
    with pytest.raises(ExtractRejected) as raised:
        adapt(tmp_path, files)
    assert str(raised.value) == (
        "extract rejected: the Synthea folder has no procedures.csv; export it with Synthea's "
        "CSV exporter (exporter.csv.export = true) beside patients.csv"
    )


def test_a_missing_mapped_column_is_one_line_naming_file_and_column(tmp_path):
    files = export_files()
    files["observations.csv"][0] = files["observations.csv"][0].replace("TYPE", "KIND")
    with pytest.raises(ExtractRejected) as raised:
        adapt(tmp_path, files)
    assert str(raised.value) == (
        "extract rejected: observations.csv has no column TYPE, which Synthea's CSV exporter "
        "writes; export the file with its v3 columns"
    )


def test_coverage_is_the_data_s_own_dates_without_a_manifest(tmp_path):
    folder, report = adapt(tmp_path)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert {k: manifest[k] for k in ("timezone", "coverage_start", "coverage_end")} == {
        "timezone": "UTC",
        "coverage_start": "2026-03-10",  # the earliest encounter
        "coverage_end": "2026-10-30",  # the latest date: a death
    }
    assert report.lines()[-1] == (
        "adapter: coverage 2026-03-10 (the earliest encounter) to 2026-10-30 (the latest date "
        "in the Synthea files, which carry no export date); times are UTC as Synthea writes them"
    )


# A contract extract holding only what Synthea carries: diagnoses recorded when their encounter
# began, orders completed when ordered, doses of one unit, numeric labs.
ROUND_TRIP = {
    "patients": [
        "patient_id,birth_year,sex,death_date",
        "PT01,1950,F,",
        "PT02,1962,M,2026-10-28",
    ],
    "encounters": [
        "encounter_id,patient_id,site_id,department,clinician_id,setting,arrival_time,"
        "departure_time,disposition",
        "EN01,PT01,SITE-A,,CL1,emergency,2026-10-03 22:15,2026-10-04 03:00,",
        "EN02,PT01,SITE-B,,CL2,outpatient,2026-03-02 09:00,2026-03-02 09:30,",
        "EN03,PT02,SITE-B,,,telehealth,2026-09-01 10:00,2026-09-01 10:20,",
        "EN04,PT02,SITE-A,,CL1,urgent_care,2026-10-01 18:00,,",
        "EN05,PT02,SITE-A,,CL1,inpatient,2026-10-20 08:00,2026-10-25 12:00,",
        "EN06,PT02,SITE-B,,CL2,other,2026-10-26 10:00,2026-10-26 11:00,",
    ],
    "diagnoses": [
        "patient_id,encounter_id,code_system,code,recorded_time,source",
        "PT01,EN01,ICD10CM,G83.4,2026-10-03 22:15,encounter",
        "PT02,EN03,SNOMEDCT,44054006,2026-09-01 10:00,encounter",
        "PT02,EN05,SNOMEDCT,368581000119106,2026-10-23 00:00,encounter",
    ],
    "findings": [
        "patient_id,encounter_id,code_system,code,result,value_num,recorded_time",
        "PT01,EN01,LOCAL,saddle_anesthesia,present,,2026-10-03 22:30",
        "PT01,EN01,LOCAL,perianal_sensation,normal,,2026-10-03 22:40",
        "PT02,EN03,SNOMEDCT,134388005,normal,,2026-09-01 10:05",
    ],
    "orders": [
        "order_id,patient_id,encounter_id,code_system,code,category,specialty,ordered_time,"
        "performed_time,status",
        "OR01,PT01,EN01,CPT,72148,imaging,,2026-10-04 02:30,2026-10-04 02:30,completed",
        "OR02,PT02,EN03,CPT,93922,procedure,,2026-09-01 10:10,2026-09-01 10:10,completed",
        "OR03,PT02,EN05,CPT,82607,lab,,2026-10-20 09:00,2026-10-20 09:00,completed",
        "OR04,PT02,EN05,SNOMEDCT,430193006,procedure,,2026-10-21 09:00,2026-10-21 09:00,completed",
        "OR05,PT01,EN01,LOCAL,sacral_exam,procedure,,2026-10-03 23:00,2026-10-03 23:00,completed",
    ],
    "labs": [
        "patient_id,encounter_id,loinc,value_num,value_text,unit,collected_time,resulted_time",
        "PT02,EN03,4548-4,7.9,,%,2026-09-01 10:15,",
        "PT01,,2276-4,30,,ng/mL,2026-10-04 01:00,",
    ],
    "medications": [
        "medication_id,patient_id,encounter_id,ingredient,rxnorm,dose_mg,doses_per_day,route,"
        "start_time,end_time,status",
        "RX01,PT02,EN03,pregabalin,483438,100,,,2026-09-01 10:25,,active",
        "RX02,PT02,EN05,oxycodone,1049221,5,,,2026-10-20 12:00,2026-10-24 12:00,completed",
        "RX03,PT02,EN05,acetaminophen,1049221,325,,,2026-10-20 12:00,2026-10-24 12:00,completed",
    ],
}
MANIFEST = {
    "extract_id": "synthea-round-trip",
    "timezone": "America/Chicago",
    "coverage_start": "2025-10-01",
    "coverage_end": "2026-10-31",
}
ID_KINDS = {
    "patient_id": "patient",
    "encounter_id": "encounter",
    "site_id": "organization",
    "clinician_id": "provider",
}
DERIVED_IDS = ("order_id", "medication_id")  # Synthea has none: the adapter derives them


def write_contract(folder: Path, tables: dict[str, list[str]]) -> Path:
    folder.mkdir(parents=True)
    for table, lines in tables.items():
        (folder / f"{table}.csv").write_text("\n".join(lines) + "\n")
    (folder / "manifest.json").write_text(json.dumps(MANIFEST))
    return folder


def canonical(folder: Path, contract_ids: bool = False) -> dict[str, set[tuple]]:
    """Each loaded table as a set of rows (typed, time zone applied); contract ids as the
    writer's Synthea ids; derived ids left out."""
    validated = load_extract(folder)
    assert validated.quarantine.height == 0, validated.quarantine
    tables = {}
    for table, frame in validated.tables.items():
        frame = frame.drop("source_line", *(c for c in DERIVED_IDS if c in frame.columns))
        if contract_ids:
            frame = frame.with_columns(
                pl.col(c).map_elements(lambda v, k=k: synthea_id(k, v), return_dtype=pl.Utf8)
                for c, k in ID_KINDS.items()
                if c in frame.columns
            )
        tables[table] = set(frame.select(sorted(frame.columns)).rows())
    return tables


def test_a_contract_extract_written_as_synthea_adapts_back_to_the_same_facts(tmp_path):
    contract = write_contract(tmp_path / "contract", ROUND_TRIP)
    write_synthea(contract, tmp_path / "synthea")
    assert detect_format(tmp_path / "synthea").format == "synthea"
    assert detect_format(contract).format == "contract"
    folder, report = adapt_source(
        tmp_path / "synthea",
        "auto",
        tmp_path / "adapted",
        tmp_path / "synthea" / SITE_CODE_MAP_FILE,
    )
    assert report.format == "synthea"
    assert report.reason == (
        "Synthea CSV files patients.csv, conditions.csv and observations.csv found"
    )
    adapted, original = canonical(folder), canonical(contract, contract_ids=True)
    assert adapted == original
    assert {t: len(r) for t, r in adapted.items()} == {
        "patients": 2,
        "encounters": 6,
        "diagnoses": 3,
        "findings": 3,
        "orders": 5,
        "labs": 2,
        "medications": 3,
    }
    manifest = json.loads((folder / "manifest.json").read_text())
    assert {k: manifest[k] for k in ("timezone", "coverage_start", "coverage_end")} == {
        "timezone": "America/Chicago",
        "coverage_start": "2025-10-01",
        "coverage_end": "2026-10-31",
    }


def test_the_writer_writes_every_v3_column_with_placeholder_identifiers(tmp_path):
    contract = write_contract(tmp_path / "contract", ROUND_TRIP)
    write_synthea(contract, tmp_path / "synthea")
    patients = (tmp_path / "synthea" / "patients.csv").read_text().splitlines()
    assert patients[0] == export_files()["patients.csv"][0]
    assert patients[1] == (
        f"{synthea_id('patient', 'PT01')},1950-01-01,,999-00-0000,S99999999,X99999999X,Mx.,"
        "Synthetic,Test,Patient,,Placeholder,S,other,nonhispanic,F,Testville  Nowhere  US,"
        "1 Synthetic Way,Testville,Nowhere,Test County,00000,00000,0.0,0.0,0.0,0.0,0"
    )
    for name, lines in export_files().items():
        assert (tmp_path / "synthea" / name).read_text().splitlines()[0] == lines[0]
    # a naive Chicago time becomes Synthea's UTC instant; a condition keeps its local date
    encounters = (tmp_path / "synthea" / "encounters.csv").read_text().splitlines()
    assert encounters[1].split(",")[1:3] == ["2026-10-04T03:15:00Z", "2026-10-04T08:00:00Z"]
    conditions = (tmp_path / "synthea" / "conditions.csv").read_text().splitlines()
    assert conditions[1].split(",")[0] == "2026-10-03"
    assert (tmp_path / "synthea" / SITE_CODE_MAP_FILE).read_text().splitlines() == [
        "source_system,source_code,code_system,code,description",
        "HOSPITAL-ORDER,sacral_exam,LOCAL,sacral_exam,site order code",
        "LOINC,134388005,SNOMEDCT,134388005,site flowsheet row recorded in observations.csv",
        "LOINC,FS-perianal_sensation,LOCAL,perianal_sensation,site flowsheet row recorded in "
        "observations.csv",
        "LOINC,FS-saddle_anesthesia,LOCAL,saddle_anesthesia,site flowsheet row recorded in "
        "observations.csv",
    ]


def test_what_synthea_cannot_carry_comes_back_as_the_docs_say(tmp_path):
    """docs/sources/synthea.md, "What Synthea does not carry"."""
    tables = {t: lines[:1] for t, lines in ROUND_TRIP.items()}
    tables["patients"] += ["PT01,1950,X,"]
    tables["encounters"] += [
        "EN01,PT01,SITE-A,Emergency Medicine,CL1,emergency,2026-10-03 22:15,"
        "2026-10-04 03:00,left_ama"
    ]
    tables["diagnoses"] += ["PT01,EN01,ICD10CM,G83.4,2026-10-03 22:40,history"]
    tables["findings"] += ["PT01,EN01,SNOMEDCT,401221002,abnormal,0.85,2026-10-03 22:50"]
    tables["orders"] += [
        "OR01,PT01,EN01,CPT,72148,imaging,,2026-10-04 01:00,2026-10-04 02:30,completed",
        "OR02,PT01,EN01,CPT,72148,imaging,,2026-10-04 01:05,,cancelled",
        "OR03,PT01,EN01,SNOMEDCT,183546007,referral,neurosurgery,2026-10-04 01:10,,ordered",
    ]
    tables["labs"] += ["PT01,EN01,2276-4,30,low,ng/mL,2026-10-04 01:00,2026-10-04 02:00"]
    tables["labs"] += ["PT01,EN01,56888-1,,negative,,2026-10-04 01:00,"]
    tables["medications"] += [
        "RX01,PT01,EN01,pregabalin,483438,200,2,oral,2026-10-04 01:00,,active",
        "RX02,PT01,EN01,pregabalin,483438,100,,,2026-10-04 01:10,2026-10-04 01:20,cancelled",
        "RX03,PT01,EN01,ropinirole,,0.25,,,2026-10-04 01:15,,active",
    ]
    contract = write_contract(tmp_path / "contract", tables)
    write_synthea(contract, tmp_path / "synthea")
    folder, report = adapt_source(
        tmp_path / "synthea",
        "synthea",
        tmp_path / "adapted",
        tmp_path / "synthea" / SITE_CODE_MAP_FILE,
    )
    assert rows(folder, "patients", "sex") == [("U",)]  # Synthea's genders are M and F
    assert rows(folder, "encounters", "department", "disposition") == [(None, None)]
    # a condition is dated: it takes its encounter's start; every condition is an encounter's
    assert rows(folder, "diagnoses", "recorded_time", "source") == [
        ("2026-10-04T03:15:00Z", "encounter")
    ]
    assert rows(folder, "findings", "result", "value_num") == [("abnormal", None)]
    # a procedure is done: only completed orders are written, ordered when performed, and a
    # referral is a procedure with no specialty
    assert rows(folder, "orders", "ordered_time", "performed_time", "category") == [
        ("2026-10-04T07:30:00Z", "2026-10-04T07:30:00Z", "imaging")
    ]
    # numeric results only: the text one is left out, counted
    assert rows(folder, "labs", "loinc", "value_text", "resulted_time") == [("2276-4", None, None)]
    assert (
        "adapter: 1 observations.csv rows left out (neither a numeric laboratory result nor a "
        "finding the site code map names): laboratory (not numeric) 1"
    ) in report.lines()
    # one unit a dose, no frequency or route; stopped when it has an end, else active
    assert rows(folder, "medications", "dose_mg", "doses_per_day", "route", "status") == [
        (100.0, None, None, "active"),
        (100.0, None, None, "completed"),
    ]
    assert (
        "adapter: 1 medication records (1 codes) have no ingredient in the RxNorm map: "
        "(no code) ropinirole"
    ) in report.lines()


def test_chartaudit_run_reads_a_synthea_export(tmp_path):
    source = tmp_path / "synthea"
    write_synthea(write_story(tmp_path / "story"), source)
    path = tmp_path / "audit.duckdb"
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "chartaudit"),
            "run",
            str(source),
            "--format",
            "synthea",
            "--period",
            PERIOD,
            "--warehouse",
            str(path),
            "--out",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
        env={
            **os.environ,
            "NO_COLOR": "1",
            "COLUMNS": "200",
            "PREFECT_HOME": str(tmp_path / "prefect"),
            "CHARTAUDIT_SOURCES__CODE_MAP": str(source / SITE_CODE_MAP_FILE),
        },
    )
    assert done.returncode == 0, done.stderr
    assert "extract format: synthea (given with --format)" in done.stdout
    with warehouse.connect(path, read_only=True) as con:
        outcomes = con.execute(
            "SELECT c.measure_id, p.birth_year, c.outcome FROM latest_case_results c "
            "JOIN patients p USING (patient_id) ORDER BY ALL"
        ).fetchall()
    assert outcomes == EXPECTED


def test_the_writer_reads_naive_times_in_the_zone_as_the_contract_does(tmp_path):
    tables = {t: list(lines) for t, lines in ROUND_TRIP.items()}
    tables["encounters"][4] = "EN04,PT02,SITE-A,,CL1,urgent_care,2026-11-01 01:30,,"
    tables["encounters"][6] = "EN06,PT02,SITE-B,,CL2,other,2026-03-08 02:30,2026-03-08 03:10,"
    write_synthea(write_contract(tmp_path / "contract", tables), tmp_path / "synthea")
    lines = (tmp_path / "synthea" / "encounters.csv").read_text().splitlines()
    assert [line.split(",")[1:3] for line in (lines[4], lines[6])] == [
        ["2026-11-01T06:30:00Z", ""],  # the repeated hour: its first (daylight-time) instant
        ["2026-03-08 02:30", "2026-03-08T08:10:00Z"],  # the missing hour: as given
    ]
