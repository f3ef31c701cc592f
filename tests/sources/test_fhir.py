"""The FHIR R4 Bulk Data adapter (sources/fhir.py) on hand-written NDJSON that follows the R4
resource definitions, and on a contract extract written as FHIR by sample_data/formats/fhir.py
(round trip: the same canonical facts)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import duckdb
import polars as pl
import pytest

from chartaudit.sample_data.formats.fhir import SITE_CODE_MAP_FILE, write_fhir
from chartaudit.sample_data.generator import generate_extract
from chartaudit.schemas.reader import read_extract
from chartaudit.schemas.validation import validate_extract
from chartaudit.sources.adapt import adapt_source
from chartaudit.sources.code_maps import RXNORM_MAP_FILE
from chartaudit.sources.formats import detect_format
from chartaudit.sources.provenance import read_provenance, to_source_lines

SCT, LOINC, CPT = "http://snomed.info/sct", "http://loinc.org", "http://www.ama-assn.org/go/cpt"
ICD = "http://hl7.org/fhir/sid/icd-10-cm"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
HL7 = "http://terminology.hl7.org/CodeSystem"
FLOWSHEET = "http://hospital.example/fhir/flowsheet"


def coded(system: str, code: str) -> dict:
    return {"coding": [{"system": system, "code": code}]}


def write_ndjson(path: Path, resources: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in resources), encoding="utf-8")


PATIENTS = [
    {
        "resourceType": "Patient",
        "id": "p1",
        "identifier": [{"system": "http://hl7.org/fhir/sid/us-ssn", "value": "123-45-6789"}],
        "name": [{"family": "Doe", "given": ["Jane"]}],
        "gender": "female",
        "birthDate": "1961-04-12",
        "address": [{"line": ["1 Main St"], "city": "Springfield"}],
    },
    {
        "resourceType": "Patient",
        "id": "p2",
        "gender": "unknown",
        "birthDate": "1950",
        "deceasedDateTime": "2026-10-20T23:30:00-05:00",
    },
]
ENCOUNTERS = [
    {
        "resourceType": "Encounter",
        "id": "e1",
        "status": "finished",
        "class": {"system": f"{HL7}/v3-ActCode", "code": "EMER"},
        "serviceType": {"text": "Emergency Medicine"},
        "subject": {"reference": "Patient/p1"},
        "participant": [{"individual": {"reference": "Practitioner/dr7"}}],
        "period": {"start": "2026-10-03T08:00:00-05:00", "end": "2026-10-03T12:30:00-05:00"},
        "hospitalization": {
            "dischargeDisposition": coded(f"{HL7}/discharge-disposition", "aadvice")
        },
        "serviceProvider": {"reference": "Organization/site-a"},
    },
    {
        "resourceType": "Encounter",
        "id": "e2",
        "status": "finished",
        "class": {"system": f"{HL7}/v3-ActCode", "code": "AMB"},
        "type": [coded("http://hospital.example/fhir/encounter-type", "urgent_care")],
        "subject": {"reference": "urn:uuid:p2"},
        "period": {"start": "2026-10-05T09:00:00Z"},
    },
    {
        "resourceType": "Encounter",
        "id": "e3",
        "status": "entered-in-error",
        "class": {"system": f"{HL7}/v3-ActCode", "code": "IMP"},
        "subject": {"reference": "Patient/p1"},
        "period": {"start": "2026-10-06T09:00:00Z"},
    },
]
CONDITIONS = [
    {
        "resourceType": "Condition",
        "id": "c1",
        "category": [coded(f"{HL7}/condition-category", "encounter-diagnosis")],
        "code": {
            "coding": [
                {"system": SCT, "code": "279039007"},
                {"system": ICD, "code": "M54.50"},
            ]
        },
        "subject": {"reference": "Patient/p1"},
        "encounter": {"reference": "Encounter/e1"},
        "recordedDate": "2026-10-03T08:20:00-05:00",
    },
    {
        "resourceType": "Condition",
        "id": "c2",
        "clinicalStatus": coded(f"{HL7}/condition-clinical", "active"),
        "category": [coded(f"{HL7}/condition-category", "problem-list-item")],
        "code": coded(SCT, "44054006"),
        "subject": {"reference": "Patient/p1"},
        "onsetDateTime": "2019-05-01",
    },
    {
        "resourceType": "Condition",
        "id": "c3",
        "verificationStatus": coded(f"{HL7}/condition-ver-status", "entered-in-error"),
        "code": coded(ICD, "E11.9"),
        "subject": {"reference": "Patient/p1"},
        "recordedDate": "2026-10-03",
    },
]
OBSERVATIONS = [
    {
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "category": [coded(f"{HL7}/observation-category", "laboratory")],
        "code": coded(LOINC, "4548-4"),
        "subject": {"reference": "Patient/p1"},
        "encounter": {"reference": "Encounter/e1"},
        "effectiveDateTime": "2026-10-03T08:40:00-05:00",
        "issued": "2026-10-03T10:05:00.000-05:00",
        "valueQuantity": {"value": 7.9, "unit": "%", "system": "http://unitsofmeasure.org"},
    },
    {
        "resourceType": "Observation",
        "id": "o2",
        "status": "final",
        "category": [coded(f"{HL7}/observation-category", "vital-signs")],
        "code": coded(LOINC, "8867-4"),
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2026-10-03T08:05:00-05:00",
        "valueQuantity": {"value": 88, "unit": "/min"},
    },
    {
        "resourceType": "Observation",
        "id": "o3",
        "status": "final",
        "category": [coded(f"{HL7}/observation-category", "exam")],
        "code": coded(FLOWSHEET, "3041"),
        "subject": {"reference": "Patient/p1"},
        "encounter": {"reference": "Encounter/e1"},
        "effectiveDateTime": "2026-10-03T08:10:00-05:00",
        "valueBoolean": False,
    },
    {
        "resourceType": "Observation",
        "id": "o4",
        "status": "final",
        "code": coded(SCT, "401191002"),
        "subject": {"reference": "Patient/p2"},
        "encounter": {"reference": "Encounter/e2"},
        "effectiveDateTime": "2026-10-05T09:10:00Z",
        "dataAbsentReason": coded(f"{HL7}/data-absent-reason", "not-performed"),
    },
    {
        "resourceType": "Observation",
        "id": "o5",
        "status": "final",
        "code": coded(SCT, "91161007"),
        "subject": {"reference": "Patient/p2"},
        "encounter": {"reference": "Encounter/e2"},
        "effectiveDateTime": "2026-10-05T09:12:00Z",
        "interpretation": [coded(f"{HL7}/v3-ObservationInterpretation", "A")],
    },
]
SERVICE_REQUESTS = [
    {
        "resourceType": "ServiceRequest",
        "id": "sr1",
        "status": "completed",
        "intent": "order",
        "category": [coded(SCT, "363679005")],
        "code": coded(CPT, "72148"),
        "subject": {"reference": "Patient/p1"},
        "encounter": {"reference": "Encounter/e1"},
        "authoredOn": "2026-10-03T08:30:00-05:00",
    },
    {
        "resourceType": "ServiceRequest",
        "id": "sr2",
        "status": "active",
        "intent": "order",
        "category": [coded(SCT, "3457005")],
        "code": coded("http://hospital.example/fhir/order", "REF-NSG"),
        "subject": {"reference": "Patient/p1"},
        "encounter": {"reference": "Encounter/e1"},
        "authoredOn": "2026-10-03T11:00:00-05:00",
        "performerType": coded(SCT, "394610002"),
    },
    {
        "resourceType": "ServiceRequest",
        "id": "sr3",
        "status": "revoked",
        "intent": "order",
        "code": coded(CPT, "72131"),
        "subject": {"reference": "Patient/p2"},
        "authoredOn": "2026-10-05T09:20:00Z",
    },
]
PROCEDURES = [
    {
        "resourceType": "Procedure",
        "id": "pr1",
        "basedOn": [{"reference": "ServiceRequest/sr1"}],
        "status": "completed",
        "code": coded(CPT, "72148"),
        "subject": {"reference": "Patient/p1"},
        "performedDateTime": "2026-10-03T09:15:00-05:00",
    },
    {
        "resourceType": "Procedure",
        "id": "pr2",
        "status": "completed",
        "code": coded(CPT, "93922"),
        "subject": {"reference": "Patient/p2"},
        "encounter": {"reference": "Encounter/e2"},
        "performedPeriod": {"start": "2026-10-05T09:30:00Z", "end": "2026-10-05T09:45:00Z"},
    },
    {
        "resourceType": "Procedure",
        "id": "pr3",
        "status": "not-done",
        "code": coded(CPT, "93922"),
        "subject": {"reference": "Patient/p1"},
    },
]
MEDICATION_REQUESTS = [
    {
        "resourceType": "MedicationRequest",
        "id": "m1",
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": coded(RXNORM, "1049221"),
        "subject": {"reference": "Patient/p1"},
        "encounter": {"reference": "Encounter/e1"},
        "authoredOn": "2026-10-03T12:00:00-05:00",
        "dosageInstruction": [
            {
                "timing": {"repeat": {"frequency": 1, "period": 6, "periodUnit": "h"}},
                "route": {"text": "Oral"},
                "doseAndRate": [{"doseQuantity": {"value": 2, "unit": "tablet"}}],
            }
        ],
        "dispenseRequest": {"validityPeriod": {"end": "2026-10-10T12:00:00-05:00"}},
    },
    {
        "resourceType": "MedicationRequest",
        "id": "m2",
        "status": "completed",
        "intent": "order",
        "medicationCodeableConcept": coded(RXNORM, "483438"),
        "subject": {"reference": "Patient/p2"},
        "authoredOn": "2026-10-05T10:00:00Z",
    },
    {
        "resourceType": "MedicationRequest",
        "id": "m3",
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": coded(RXNORM, "999999"),
        "subject": {"reference": "Patient/p2"},
        "authoredOn": "2026-10-05T10:00:00Z",
    },
]
BULK_MANIFEST = {
    "transactionTime": "2026-11-02T06:00:00Z",
    "request": "https://ehr.example/fhir/$export",
    "requiresAccessToken": True,
    "output": [{"type": "Patient", "url": "https://ehr.example/bulk/part-1.ndjson"}],
    "error": [],
}


@pytest.fixture
def export(tmp_path) -> Path:
    """A hand-written export: a Patient file not named after its type, an unmapped type, the
    export manifest under its own name, and a site code map for the flowsheet and order codes."""
    folder = tmp_path / "export"
    folder.mkdir()
    write_ndjson(folder / "part-1.ndjson", PATIENTS)
    write_ndjson(folder / "Encounter.ndjson", ENCOUNTERS)
    write_ndjson(folder / "Condition.ndjson", CONDITIONS)
    write_ndjson(folder / "Observation.000.ndjson", OBSERVATIONS)
    write_ndjson(folder / "ServiceRequest.ndjson", SERVICE_REQUESTS)
    write_ndjson(folder / "Procedure.ndjson", PROCEDURES)
    write_ndjson(folder / "MedicationRequest.ndjson", MEDICATION_REQUESTS)
    write_ndjson(
        folder / "Immunization.ndjson",
        [{"resourceType": "Immunization", "id": "i1", "status": "completed"}],
    )
    (folder / "export.json").write_text(json.dumps(BULK_MANIFEST))
    (tmp_path / "codes.csv").write_text(
        "source_system,source_code,code_system,code,description\n"
        f"{FLOWSHEET},3041,LOCAL,saddle_anesthesia,saddle numbness row\n"
        "http://hospital.example/fhir/order,REF-NSG,LOCAL,referral,neurosurgery referral\n"
    )
    return folder


def adapted_rows(folder: Path, table: str) -> list[tuple]:
    return duckdb.sql(f"SELECT * FROM read_parquet('{folder / table}.parquet')").fetchall()


def test_a_hand_written_export_gives_exact_canonical_rows(export, tmp_path):
    folder, report = adapt_source(export, "auto", tmp_path / "adapted", tmp_path / "codes.csv")
    assert adapted_rows(folder, "patients") == [
        ("p1", "1961", "F", None),
        ("p2", "1950", "U", "2026-10-20"),
    ]
    assert adapted_rows(folder, "encounters") == [
        ("e1", "p1", "site-a", "Emergency Medicine", "dr7", "emergency",
         "2026-10-03T08:00:00-05:00", "2026-10-03T12:30:00-05:00", "left_ama"),
        ("e2", "p2", None, None, None, "urgent_care", "2026-10-05T09:00:00Z", None, None),
    ]  # fmt: skip
    assert adapted_rows(folder, "diagnoses") == [
        ("p1", "e1", "ICD10CM", "M54.50", "2026-10-03T08:20:00-05:00", "encounter"),
        ("p1", None, "SNOMEDCT", "44054006", "2019-05-01 00:00", "problem_list"),
    ]
    assert adapted_rows(folder, "findings") == [
        ("p1", "e1", "LOCAL", "saddle_anesthesia", "absent", None, "2026-10-03T08:10:00-05:00"),
        ("p2", "e2", "SNOMEDCT", "401191002", "not_done", None, "2026-10-05T09:10:00Z"),
        ("p2", "e2", "SNOMEDCT", "91161007", "abnormal", None, "2026-10-05T09:12:00Z"),
    ]
    assert adapted_rows(folder, "labs") == [
        ("p1", "e1", "4548-4", "7.9", None, "%", "2026-10-03T08:40:00-05:00",
         "2026-10-03T10:05:00.000-05:00"),
    ]  # fmt: skip
    assert adapted_rows(folder, "orders") == [
        ("pr2", "p2", "e2", "CPT", "93922", "procedure", None, "2026-10-05T09:30:00Z",
         "2026-10-05T09:30:00Z", "completed"),
        ("sr1", "p1", "e1", "CPT", "72148", "imaging", None, "2026-10-03T08:30:00-05:00",
         "2026-10-03T09:15:00-05:00", "completed"),
        ("sr2", "p1", "e1", "LOCAL", "referral", "referral", "neurosurgery",
         "2026-10-03T11:00:00-05:00", None, "ordered"),
        ("sr3", "p2", None, "CPT", "72131", "imaging", None, "2026-10-05T09:20:00Z", None,
         "cancelled"),
    ]  # fmt: skip
    # 1049221 is acetaminophen 325 mg + oxycodone 5 mg: one row per ingredient, 2 tablets a dose,
    # one dose every 6 hours; 483438 (pregabalin 100 mg) has no dosage: its strength.
    assert adapted_rows(folder, "medications") == [
        ("m1-acetaminophen", "p1", "e1", "acetaminophen", "1049221", 650.0, 4.0, "oral",
         "2026-10-03T12:00:00-05:00", "2026-10-10T12:00:00-05:00", "active"),
        ("m1-oxycodone", "p1", "e1", "oxycodone", "1049221", 10.0, 4.0, "oral",
         "2026-10-03T12:00:00-05:00", "2026-10-10T12:00:00-05:00", "active"),
        ("m2", "p2", None, "pregabalin", "483438", 100.0, None, None, "2026-10-05T10:00:00Z",
         None, "completed"),
    ]  # fmt: skip
    assert report.lines()[2:] == [
        "adapter: skipped 1 resources of types not mapped: Immunization 1",
        "adapter: skipped 1 Encounters by status: entered-in-error 1",
        "adapter: skipped 1 Conditions verified as refuted or entered-in-error",
        "adapter: skipped 1 Observations that are neither a LOINC lab result with a value nor a "
        "SNOMED CT/LOCAL finding, by category: vital-signs 1",
        "adapter: skipped 1 Procedures by status: not-done 1",
        "adapter: 1 drug records (1 codes) have no ingredient in the RxNorm map: 999999",
        "adapter: coverage end: the export's transactionTime 2026-11-02T06:00:00Z "
        "(export.json); coverage start: the earliest encounter (2026-10-03)",
    ]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert (manifest["coverage_start"], manifest["coverage_end"], manifest["created"]) == (
        "2026-10-03",
        "2026-11-02T06:00:00Z",
        "2026-11-02T06:00:00Z",
    )
    provenance = pl.read_parquet(folder / "_provenance.parquet")
    assert provenance.filter(pl.col("table_name") == "patients").rows() == [
        ("patients", 1, "part-1.ndjson", 1),
        ("patients", 2, "part-1.ndjson", 2),
    ]
    assert provenance.filter(pl.col("table_name") == "findings")["origin_line"].to_list() == [
        3,
        4,
        5,
    ]


def test_without_the_site_code_map_a_flowsheet_code_keeps_its_system(export, tmp_path):
    folder, _ = adapt_source(export, "fhir", tmp_path / "adapted")
    assert adapted_rows(folder, "findings")[0][2:4] == (FLOWSHEET, "3041")
    assert adapted_rows(folder, "orders")[2][3:5] == (
        "http://hospital.example/fhir/order",
        "REF-NSG",
    )
    validated = validate_extract(read_extract(folder))
    faults = to_source_lines(validated.quarantine, read_provenance(folder))
    faults = faults.filter(pl.col("column_name") == "code_system")
    assert faults.select("source_file", "source_line", "column_name", "value").rows() == [
        ("Observation.000.ndjson", 3, "code_system", FLOWSHEET),
        ("ServiceRequest.ndjson", 2, "code_system", "http://hospital.example/fhir/order"),
    ]


def test_a_quarantined_row_names_the_ndjson_file_and_line(tmp_path):
    folder = tmp_path / "export"
    folder.mkdir()
    bad = {"resourceType": "Patient", "id": "p3", "gender": "femal", "birthDate": "1970-01-01"}
    write_ndjson(folder / "Patient.000.ndjson", [*PATIENTS, bad])
    adapted, _ = adapt_source(folder, "fhir", tmp_path / "adapted")
    validated = validate_extract(read_extract(adapted))
    faults = to_source_lines(validated.quarantine, read_provenance(adapted))
    assert faults.select("table_name", "source_file", "source_line", "column_name").rows() == [
        ("patients", "Patient.000.ndjson", 3, "sex")
    ]


def test_auto_detects_a_bulk_export(export):
    detected = detect_format(export)
    assert detected.format == "fhir"
    assert detected.reason == (
        "FHIR NDJSON files found (Condition.ndjson, Encounter.ndjson, Immunization.ndjson, ...)"
    )


@pytest.fixture(scope="module")
def round_trip(tmp_path_factory) -> tuple[Path, Path, Path, list[str]]:
    """(contract, FHIR export, adapted folder, run-log lines) of a clean 500-patient extract."""
    root = tmp_path_factory.mktemp("fhir-round-trip")
    generate_extract(root / "contract", patients=500, dirty=False)
    write_fhir(root / "contract", root / "fhir")
    folder, report = adapt_source(
        root / "fhir", "fhir", root / "adapted", root / "fhir" / SITE_CODE_MAP_FILE
    )
    return root / "contract", root / "fhir", folder, report.lines()


def test_contract_to_fhir_to_adapter_gives_the_same_canonical_facts(round_trip):
    contract, _, adapted, _ = round_trip
    before, after = read_extract(contract), read_extract(adapted)
    assert (before.faults.height, after.faults.height) == (0, 0)
    for key in ("timezone", "coverage_start", "coverage_end", "created_at"):
        assert getattr(after.manifest, key) == getattr(before.manifest, key), key
    mapped = after.tables["medications"]["rxnorm"].unique().implode()
    for table, rows in before.tables.items():
        expected = rows.drop("source_line")
        if table == "medications":  # FHIR carries the drug code: its ingredient comes from the map
            expected = expected.with_columns(pl.col("ingredient").str.to_lowercase()).filter(
                pl.col("rxnorm").is_in(mapped)
            )
        got = after.tables[table].drop("source_line").select(expected.columns)
        assert got.sort(got.columns).equals(expected.sort(expected.columns)), table
    assert after.tables["medications"].height > 0


def test_drugs_the_rxnorm_map_cannot_name_are_counted(round_trip):
    contract, _, adapted, lines = round_trip
    medications = pl.read_csv(contract / "medications.csv", infer_schema=False)
    known = pl.read_csv(RXNORM_MAP_FILE, infer_schema=False)
    names = pl.concat([known["rxnorm"], known["ingredient_rxnorm"]]).unique().implode()
    unmapped = medications.filter(~pl.col("rxnorm").is_in(names) | pl.col("rxnorm").is_null())
    codes = sorted(unmapped["rxnorm"].drop_nulls().unique().to_list())
    no_code = unmapped["rxnorm"].null_count()
    listed = (["(no RxNorm coding)"] if no_code else []) + codes
    assert (
        f"adapter: {unmapped.height} drug records ({len(codes)} codes) have no ingredient in the "
        f"RxNorm map: {', '.join(listed)}"
    ) in lines
    assert pl.read_parquet(adapted / "medications.parquet").height == (
        medications.height - unmapped.height
    )


def test_the_writer_writes_r4_shapes_and_the_export_manifest(round_trip):
    contract, fhir, _, _ = round_trip
    bulk = json.loads((fhir / "bulk-export-manifest.json").read_text())
    created = json.loads((contract / "manifest.json").read_text())["created"]
    assert bulk["transactionTime"] == created
    lines = (fhir / "Encounter.ndjson").read_text().splitlines()
    counts = {o["type"]: o["count"] for o in bulk["output"]}
    assert counts["Encounter"] == len(lines)
    first = json.loads(lines[0])
    assert set(first) <= {
        "resourceType", "id", "status", "class", "type", "serviceType", "subject",
        "participant", "period", "hospitalization", "serviceProvider",
    }  # fmt: skip
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d", first["period"]["start"])
    assert "null" not in (fhir / "MedicationRequest.ndjson").read_text()


def test_chartaudit_run_reads_a_fhir_export(round_trip, tmp_path):
    _, fhir, _, _ = round_trip
    (tmp_path / "chartaudit.toml").write_text(
        f'[sources]\ncode_map = "{fhir / SITE_CODE_MAP_FILE}"\n'
    )
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
    env["PREFECT_HOME"] = str(tmp_path / ".prefect")
    done = subprocess.run(
        [str(Path(sys.executable).parent / "chartaudit"), "run", str(fhir), "--format", "auto",
         "--period", "2026-10", "--warehouse", str(tmp_path / "audit.duckdb"),
         "--out", str(tmp_path / "out")],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "extract format: fhir (FHIR NDJSON files found (Condition.ndjson, " in done.stdout
    assert "adapted rows: patients 500, " in done.stdout
    assert (tmp_path / "out" / "chartaudit-2026-10.html").is_file()
