"""Write a contract extract as a FHIR R4 Bulk Data export: one NDJSON file per resource type.

``write_fhir(contract_dir, out_dir)`` writes Patient, Encounter, Condition, Observation
(findings: category exam; labs: category laboratory), ServiceRequest (every order), Procedure
(an order's performance, ``basedOn`` its ServiceRequest) and MedicationRequest resources in
R4 shapes (docs/sources/fhir.md), plus:

- ``bulk-export-manifest.json``: the Bulk Data export manifest (transactionTime = when the
  contract extract was created, else the end of its coverage; output[] with each file's type
  and count);
- ``site-code-map.csv``: the site's own codes (LOCAL findings in the flowsheet system, LOCAL
  orders in the order system) mapped to the contract's concepts, for ``[sources] code_map``;
- ``manifest.json``: the contract's timezone and coverage, so coverage matches across formats.

Every resource is built as JSON text by DuckDB and copied to its file (nothing is held in
Python), so a large extract is written in bounded memory. Naive contract times are written as
instants with the UTC offset of the manifest's time zone; values FHIR cannot carry as they are
(an unparseable time, an unknown code) are written as given, so the adapter and the reader
quarantine them as they would the contract's.
"""

from __future__ import annotations

import json
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb

from chartaudit.sample_data.formats import contract_manifest, open_contract_tables
from chartaudit.schemas.folder import MANIFEST_FILE
from chartaudit.sources.fhir import CODE_SYSTEMS_FILE

__all__ = [
    "BULK_MANIFEST_FILE",
    "FLOWSHEET_SYSTEM",
    "ORDER_SYSTEM",
    "SITE_CODE_MAP_FILE",
    "write_fhir",
]

SITE = "http://hospital.example/fhir"
FLOWSHEET_SYSTEM = f"{SITE}/flowsheet"  # LOCAL findings
ORDER_SYSTEM = f"{SITE}/order"  # LOCAL orders
BULK_MANIFEST_FILE = "bulk-export-manifest.json"
SITE_CODE_MAP_FILE = "site-code-map.csv"
SNOMED = "http://snomed.info/sct"
HL7 = "http://terminology.hl7.org/CodeSystem"

# Which contract table becomes which resource file, in write order.
RESOURCES = (
    "Patient",
    "Encounter",
    "Condition",
    "Observation",
    "ServiceRequest",
    "Procedure",
    "MedicationRequest",
)


def write_fhir(contract_dir: Path, out_dir: Path) -> None:
    """Write the contract extract in ``contract_dir`` as a Bulk Data export in ``out_dir``."""
    contract_dir, out_dir = Path(contract_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = contract_manifest(contract_dir)
    zone = manifest.get("timezone", "UTC")
    con = duckdb.connect(config={"memory_limit": "1GB", "temp_directory": str(out_dir / ".spill")})
    try:
        con.execute(f"SET TimeZone = '{zone}'")
        open_contract_tables(con, contract_dir)
        _macros(con, zone)
        counts = {name: _write_resource(con, name, out_dir) for name in RESOURCES}
        _write_site_code_map(con, out_dir)
    finally:
        con.close()
    _write_manifests(out_dir, manifest, counts)


def _macros(con: duckdb.DuckDBPyConnection, zone: str) -> None:
    con.execute(
        "CREATE TABLE code_urls AS SELECT code_system, url FROM read_csv(?, all_varchar = true)",
        [str(CODE_SYSTEMS_FILE)],
    )
    # Contract time text -> a FHIR instant: naive = local time in the manifest's zone, written
    # with that zone's offset at that moment; a value with an offset, or unparseable, as is.
    con.execute(
        "CREATE MACRO fhir_instant(t) AS CASE WHEN t IS NULL THEN NULL "
        "WHEN regexp_matches(t, '(Z|z|[+-][0-9]{2}(:?[0-9]{2})?)$') THEN replace(t, ' ', 'T') "
        "ELSE coalesce(regexp_replace(regexp_replace(strftime(timezone("
        f"'{zone}', TRY_CAST(t AS TIMESTAMP)), '%Y-%m-%dT%H:%M:%S%z'), "
        "'([+-][0-9]{2})$', '\\1:00'), '([+-][0-9]{2})([0-9]{2})$', '\\1:\\2'), t) END"
    )
    # A contract code system -> the coding's system URL (LOCAL: the site's own system).
    con.execute(
        "CREATE MACRO coding(system_name, code, local_url) AS json_object('system', "
        "CASE WHEN system_name = 'LOCAL' THEN local_url ELSE coalesce((SELECT url FROM "
        "code_urls WHERE code_urls.code_system = system_name), system_name) END, 'code', code)"
    )
    con.execute(
        "CREATE MACRO concept(c) AS json_object('coding', json_array(c))"
    )  # a CodeableConcept of one coding
    con.execute(
        "CREATE MACRO ref(kind, id) AS CASE WHEN id IS NOT NULL THEN "
        "json_object('reference', kind || '/' || id) END"
    )
    con.execute("CREATE MACRO resource(o) AS json_merge_patch('{}', o)")  # drops null members


SETTING_CLASS = (
    "CASE setting WHEN 'emergency' THEN 'EMER' WHEN 'inpatient' THEN 'IMP' "
    "WHEN 'outpatient' THEN 'AMB' WHEN 'telehealth' THEN 'VR' WHEN 'urgent_care' THEN 'AMB' "
    "WHEN 'other' THEN 'AMB' ELSE setting END"
)
DISPOSITION_CODES = {
    "discharged": "home",
    "transferred": "other-hcf",
    "left_ama": "aadvice",
    "died": "exp",
    "other": "oth",
}


def _case(column: str, mapping: dict[str, str], otherwise: str = "NULL") -> str:
    whens = " ".join(f"WHEN '{k}' THEN '{v}'" for k, v in mapping.items())
    return f"CASE {column} {whens} ELSE {otherwise} END"


def _patient() -> str:
    sex = _case("sex", {"M": "male", "F": "female", "X": "other", "U": "unknown"}, "sex")
    return (
        "SELECT resource(json_object('resourceType', 'Patient', 'id', patient_id, "
        f"'gender', {sex}, 'birthDate', birth_year, 'deceasedDateTime', death_date)) "
        "FROM c_patients"
    )


def _encounter() -> str:
    disposition = (
        "CASE WHEN disposition IS NULL THEN NULL "
        f"WHEN disposition IN {tuple(DISPOSITION_CODES)} THEN json_object('coding', json_array("
        f"json_object('system', '{HL7}/discharge-disposition', "
        f"'code', {_case('disposition', DISPOSITION_CODES)}))) "
        f"ELSE concept(json_object('system', '{SITE}/discharge-disposition', "
        "'code', disposition)) END"
    )
    return (
        "SELECT resource(json_object('resourceType', 'Encounter', 'id', encounter_id, "
        "'status', CASE WHEN departure_time IS NULL THEN 'in-progress' ELSE 'finished' END, "
        f"'class', json_object('system', '{HL7}/v3-ActCode', 'code', {SETTING_CLASS}), "
        "'type', CASE WHEN setting IN ('urgent_care', 'other') THEN json_array(concept("
        f"json_object('system', '{SITE}/encounter-type', 'code', setting))) END, "
        "'serviceType', CASE WHEN department IS NOT NULL THEN json_object('text', department) "
        "END, 'subject', ref('Patient', patient_id), "
        "'participant', CASE WHEN clinician_id IS NOT NULL THEN json_array(json_object("
        "'individual', ref('Practitioner', clinician_id))) END, "
        "'period', json_object('start', fhir_instant(arrival_time), "
        "'end', fhir_instant(departure_time)), "
        f"'hospitalization', CASE WHEN disposition IS NOT NULL THEN json_object("
        f"'dischargeDisposition', {disposition}) END, "
        "'serviceProvider', ref('Organization', site_id))) FROM c_encounters"
    )


CONDITION_CATEGORIES = {"encounter": "encounter-diagnosis", "problem_list": "problem-list-item"}


def _condition() -> str:
    category = (
        "CASE WHEN source IS NULL THEN NULL WHEN source IN ('encounter', 'problem_list') THEN "
        f"json_array(concept(json_object('system', '{HL7}/condition-category', 'code', "
        f"{_case('source', CONDITION_CATEGORIES)}"
        f"))) ELSE json_array(concept(json_object('system', '{SITE}/condition-category', "
        "'code', source))) END"
    )
    return (
        "SELECT resource(json_object('resourceType', 'Condition', "
        "'id', 'dx-' || row_number() OVER (), "
        # con-3: a problem-list item has a clinical status.
        "'clinicalStatus', CASE WHEN source = 'problem_list' THEN concept(json_object("
        f"'system', '{HL7}/condition-clinical', 'code', 'active')) END, "
        f"'category', {category}, "
        "'code', concept(coding(code_system, code, NULL)), "
        "'subject', ref('Patient', patient_id), 'encounter', ref('Encounter', encounter_id), "
        "'recordedDate', fhir_instant(recorded_time))) FROM c_diagnoses"
    )


RESULT_CONCEPTS = {"present": "52101004", "absent": "2667000"}
RESULT_INTERPRETATIONS = {"normal": "N", "abnormal": "A"}


def _finding() -> str:
    value = (
        "CASE WHEN result IN ('present', 'absent') THEN concept(json_object('system', "
        f"'{SNOMED}', 'code', {_case('result', RESULT_CONCEPTS)})) "
        "WHEN result NOT IN ('normal', 'abnormal', 'not_done') THEN concept(json_object("
        f"'system', '{SITE}/finding-result', 'code', result)) END"
    )
    return (
        "SELECT resource(json_object('resourceType', 'Observation', "
        "'id', 'finding-' || row_number() OVER (), 'status', 'final', "
        f"'category', json_array(concept(json_object('system', '{HL7}/observation-category', "
        "'code', 'exam'))), "
        f"'code', concept(coding(code_system, code, '{FLOWSHEET_SYSTEM}')), "
        "'subject', ref('Patient', patient_id), 'encounter', ref('Encounter', encounter_id), "
        "'effectiveDateTime', fhir_instant(recorded_time), "
        "'valueQuantity', CASE WHEN value_num IS NOT NULL AND result IS DISTINCT FROM "
        "'not_done' THEN json_object('value', TRY_CAST(value_num AS DOUBLE)) END, "
        f"'valueCodeableConcept', {value}, "
        "'interpretation', CASE WHEN result IN ('normal', 'abnormal') THEN json_array(concept("
        f"json_object('system', '{HL7}/v3-ObservationInterpretation', "
        f"'code', {_case('result', RESULT_INTERPRETATIONS)}))) END, "
        "'dataAbsentReason', CASE WHEN result = 'not_done' THEN concept(json_object("
        f"'system', '{HL7}/data-absent-reason', 'code', 'not-performed')) END)) FROM c_findings"
    )


def _lab() -> str:
    return (
        "SELECT resource(json_object('resourceType', 'Observation', "
        "'id', 'lab-' || row_number() OVER (), 'status', 'final', "
        f"'category', json_array(concept(json_object('system', '{HL7}/observation-category', "
        "'code', 'laboratory'))), "
        "'code', concept(json_object('system', 'http://loinc.org', 'code', loinc)), "
        "'subject', ref('Patient', patient_id), 'encounter', ref('Encounter', encounter_id), "
        "'effectiveDateTime', fhir_instant(collected_time), 'issued', fhir_instant(resulted_time), "
        "'valueQuantity', CASE WHEN value_num IS NOT NULL THEN json_object('value', "
        "TRY_CAST(value_num AS DOUBLE), 'unit', unit) END, "
        "'valueString', CASE WHEN value_num IS NULL THEN value_text END)) FROM c_labs"
    )


CATEGORY_CODES = {"imaging": "363679005", "referral": "3457005", "lab": "108252007"}
CATEGORY_CODES["procedure"] = "71388002"
SPECIALTY_CODES = {
    "neurosurgery": "394610002",
    "neurology": "394591006",
    "vascular_surgery": "408463005",
}


def _service_request() -> str:
    category = (
        f"CASE WHEN category IN {tuple(CATEGORY_CODES)} THEN json_object('system', '{SNOMED}', "
        f"'code', {_case('category', CATEGORY_CODES)}) ELSE json_object('system', "
        f"'{SITE}/order-category', 'code', category) END"
    )
    performer = (
        f"CASE WHEN specialty IS NULL THEN NULL WHEN specialty IN {tuple(SPECIALTY_CODES)} THEN "
        f"concept(json_object('system', '{SNOMED}', 'code', "
        f"{_case('specialty', SPECIALTY_CODES)})) ELSE concept(json_object('system', "
        f"'{SITE}/specialty', 'code', specialty)) END"
    )
    status = _case(
        "status", {"ordered": "active", "completed": "completed", "cancelled": "revoked"}, "status"
    )
    return (
        "SELECT resource(json_object('resourceType', 'ServiceRequest', 'id', order_id, "
        f"'status', {status}, 'intent', 'order', "
        f"'category', CASE WHEN category IS NOT NULL THEN json_array(concept({category})) END, "
        f"'code', concept(coding(code_system, code, '{ORDER_SYSTEM}')), "
        "'subject', ref('Patient', patient_id), 'encounter', ref('Encounter', encounter_id), "
        f"'authoredOn', fhir_instant(ordered_time), 'performerType', {performer})) FROM c_orders"
    )


def _procedure() -> str:
    return (
        "SELECT resource(json_object('resourceType', 'Procedure', 'id', order_id || '-performed', "
        "'basedOn', json_array(ref('ServiceRequest', order_id)), 'status', 'completed', "
        f"'code', concept(coding(code_system, code, '{ORDER_SYSTEM}')), "
        "'subject', ref('Patient', patient_id), 'encounter', ref('Encounter', encounter_id), "
        "'performedDateTime', fhir_instant(performed_time))) "
        "FROM c_orders WHERE performed_time IS NOT NULL"
    )


def _medication_request() -> str:
    per_day = "TRY_CAST(doses_per_day AS DOUBLE)"
    # Timing.repeat.frequency is a positiveInt: a whole number of doses a day, else one dose
    # every 1/n days.
    repeat = (
        f"json_object('frequency', CASE WHEN {per_day} = round({per_day}) THEN "
        f"{per_day}::BIGINT ELSE 1 END, 'period', CASE WHEN {per_day} = round({per_day}) "
        f"THEN 1 ELSE 1 / {per_day} END, 'periodUnit', 'd')"
    )
    timing = (
        "json_merge_patch('{}', json_object("
        f"'repeat', json_merge_patch(CASE WHEN {per_day} > 0 THEN {repeat} "
        "ELSE '{}' END, json_object('boundsPeriod', CASE WHEN end_time IS NOT NULL THEN "
        "json_object('start', fhir_instant(start_time), 'end', fhir_instant(end_time)) END))))"
    )
    dosage = (
        "json_merge_patch('{}', json_object("
        f"'timing', CASE WHEN {per_day} > 0 OR end_time IS NOT NULL THEN {timing} END, "
        "'route', CASE WHEN route IS NOT NULL THEN json_object('text', route) END, "
        "'doseAndRate', CASE WHEN dose_mg IS NOT NULL THEN json_array(json_object("
        "'doseQuantity', json_object('value', TRY_CAST(dose_mg AS DOUBLE), 'unit', 'mg', "
        "'system', 'http://unitsofmeasure.org', 'code', 'mg'))) END))"
    )
    medication = (
        "json_merge_patch('{}', json_object('coding', CASE WHEN rxnorm IS NOT NULL THEN "
        "json_array(json_object('system', 'http://www.nlm.nih.gov/research/umls/rxnorm', "
        "'code', rxnorm, 'display', ingredient)) END, 'text', ingredient))"
    )
    return (
        "SELECT resource(json_object('resourceType', 'MedicationRequest', 'id', medication_id, "
        f"'status', status, 'intent', 'order', 'medicationCodeableConcept', {medication}, "
        "'subject', ref('Patient', patient_id), 'encounter', ref('Encounter', encounter_id), "
        "'authoredOn', fhir_instant(start_time), "
        f"'dosageInstruction', CASE WHEN {dosage} <> '{{}}' THEN json_array({dosage}) END)) "
        "FROM c_medications"
    )


QUERIES = {
    "Patient": _patient,
    "Encounter": _encounter,
    "Condition": _condition,
    "Observation": lambda: f"{_finding()} UNION ALL {_lab()}",
    "ServiceRequest": _service_request,
    "Procedure": _procedure,
    "MedicationRequest": _medication_request,
}


def _write_resource(con: duckdb.DuckDBPyConnection, name: str, out_dir: Path) -> int:
    """``<name>.ndjson``: one resource per line; returns how many."""
    target = out_dir / f"{name}.ndjson"
    # CSV with no quoting and a delimiter JSON never holds raw: each line is the JSON text.
    path = str(target).replace("'", "''")
    written = con.execute(
        f"COPY ({QUERIES[name]()}) TO '{path}' "
        "(FORMAT csv, HEADER false, QUOTE '', ESCAPE '', DELIMITER '\x1f')"
    ).fetchall()
    return written[0][0]


def _write_site_code_map(con: duckdb.DuckDBPyConnection, out_dir: Path) -> None:
    target = str(out_dir / SITE_CODE_MAP_FILE).replace("'", "''")
    con.execute(
        "COPY (SELECT DISTINCT source_system, source_code, 'LOCAL' AS code_system, "
        "source_code AS code, description FROM ("
        f"SELECT '{FLOWSHEET_SYSTEM}' AS source_system, code AS source_code, "
        "'site flowsheet row' AS description FROM c_findings WHERE code_system = 'LOCAL' "
        f"UNION ALL SELECT '{ORDER_SYSTEM}', code, 'site order code' FROM c_orders "
        "WHERE code_system = 'LOCAL') WHERE source_code IS NOT NULL ORDER BY ALL) "
        f"TO '{target}' (FORMAT csv, HEADER true)"
    )


def _end_instant(coverage_end: str, zone: str) -> str:
    """The contract's coverage_end as an instant: a date means the end of that local day."""
    if len(coverage_end) == 10:
        day = date.fromisoformat(coverage_end) + timedelta(days=1)
        return datetime.combine(day, time(), ZoneInfo(zone)).isoformat()
    return coverage_end


def _write_manifests(out_dir: Path, manifest: dict, counts: dict[str, int]) -> None:
    zone = manifest.get("timezone", "UTC")
    end = manifest.get("coverage_end")
    # transactionTime: when the export ran, i.e. when the extract was created (an extract made
    # a week after its last month holds times of that week); else the end of its coverage.
    when = manifest.get("created") or (_end_instant(end, zone) if end else None)
    bulk = {
        "transactionTime": when,
        "request": f"{SITE}/$export",
        "requiresAccessToken": False,
        "output": [
            {"type": name, "url": f"{SITE}/bulk/{name}.ndjson", "count": counts[name]}
            for name in RESOURCES
        ],
        "error": [],
    }
    (out_dir / BULK_MANIFEST_FILE).write_text(json.dumps(bulk, indent=2) + "\n", encoding="utf-8")
    keys = ("timezone", "coverage_start", "coverage_end")
    contract = {k: manifest[k] for k in keys if k in manifest}
    (out_dir / MANIFEST_FILE).write_text(json.dumps(contract, indent=2) + "\n", encoding="utf-8")
