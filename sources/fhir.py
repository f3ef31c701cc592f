"""FHIR R4 Bulk Data export (NDJSON) -> the contract's canonical tables.

A folder of ``*.ndjson`` files, one resource per line and one resource type per file (the Bulk
Data spec); a file's type is its first line's ``resourceType``, whatever the file is called.
Patient, Encounter, Condition, Observation, Procedure, ServiceRequest and MedicationRequest are
mapped (docs/sources/fhir.md has the table); other types are counted and skipped.

Streamed: each file is scanned by DuckDB (``read_ndjson_objects``) into a narrow staging table
holding only the elements this adapter maps, so Python never holds a file and DuckDB's memory
limit (``output.MEMORY_LIMIT``) bounds the work, spilling past it. Identifying elements (name,
telecom, address, identifier, photo, contact) are never extracted. A row's line is its record
number in the file (``WITH ORDINALITY``): a Bulk Data file has no blank lines.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import duckdb

from chartaudit.schemas.contract import (
    DIAGNOSIS_SOURCES,
    DISPOSITIONS,
    ORDER_CATEGORIES,
    SETTINGS,
    SPECIALTIES,
)
from chartaudit.sources.code_maps import RXNORM_INGREDIENTS, RXNORM_MAP_FILE
from chartaudit.sources.output import AdaptedExtract

__all__ = ["CODE_SYSTEMS_FILE", "adapt", "find_export_manifest"]

CODE_SYSTEMS_FILE = Path(__file__).parent / "maps" / "fhir_code_systems.csv"
RXNORM_URL = "http://www.nlm.nih.gov/research/umls/rxnorm"
CODINGS = '[{"system": "VARCHAR", "code": "VARCHAR"}]'

# Per resource type: staged column -> JSON path of a single value (json_extract_string), a
# list of values ("[*]" paths), or a coding array (parsed as a list of {system, code}).
SCALARS: dict[str, dict[str, str]] = {
    "Patient": {
        "id": "$.id",
        "gender": "$.gender",
        "birth_date": "$.birthDate",
        "deceased": "$.deceasedDateTime",
    },
    "Encounter": {
        "id": "$.id",
        "status": "$.status",
        "subject": "$.subject.reference",
        "class_code": "$.class.code",
        "service_type_text": "$.serviceType.text",
        "service_type_display": "$.serviceType.coding[0].display",
        "service_provider": "$.serviceProvider.reference",
        "period_start": "$.period.start",
        "period_end": "$.period.end",
    },
    "Condition": {
        "id": "$.id",
        "subject": "$.subject.reference",
        "encounter": "$.encounter.reference",
        "recorded": "$.recordedDate",
        "onset": "$.onsetDateTime",
    },
    "Observation": {
        "id": "$.id",
        "status": "$.status",
        "subject": "$.subject.reference",
        "encounter": "$.encounter.reference",
        "effective": "$.effectiveDateTime",
        "effective_start": "$.effectivePeriod.start",
        "issued": "$.issued",
        "value_quantity": "$.valueQuantity.value",
        "value_unit": "$.valueQuantity.unit",
        "value_unit_code": "$.valueQuantity.code",
        "value_string": "$.valueString",
        "value_boolean": "$.valueBoolean",
        "value_concept_text": "$.valueCodeableConcept.text",
        "absent_reason": "$.dataAbsentReason.coding[0].code",
        "absent_reason_text": "$.dataAbsentReason.text",
    },
    "Procedure": {
        "id": "$.id",
        "status": "$.status",
        "subject": "$.subject.reference",
        "encounter": "$.encounter.reference",
        "performed": "$.performedDateTime",
        "performed_start": "$.performedPeriod.start",
    },
    "ServiceRequest": {
        "id": "$.id",
        "status": "$.status",
        "subject": "$.subject.reference",
        "encounter": "$.encounter.reference",
        "authored": "$.authoredOn",
    },
    "MedicationRequest": {
        "id": "$.id",
        "status": "$.status",
        "subject": "$.subject.reference",
        "encounter": "$.encounter.reference",
        "authored": "$.authoredOn",
        "medication_reference": "$.medicationReference.reference",
        "dose_value": "$.dosageInstruction[0].doseAndRate[0].doseQuantity.value",
        "dose_unit": "$.dosageInstruction[0].doseAndRate[0].doseQuantity.unit",
        "dose_unit_code": "$.dosageInstruction[0].doseAndRate[0].doseQuantity.code",
        "frequency": "$.dosageInstruction[0].timing.repeat.frequency",
        "period": "$.dosageInstruction[0].timing.repeat.period",
        "period_unit": "$.dosageInstruction[0].timing.repeat.periodUnit",
        "bounds_end": "$.dosageInstruction[0].timing.repeat.boundsPeriod.end",
        "validity_end": "$.dispenseRequest.validityPeriod.end",
        "route_text": "$.dosageInstruction[0].route.text",
        "route_display": "$.dosageInstruction[0].route.coding[0].display",
    },
}
LISTS: dict[str, dict[str, str]] = {
    "Encounter": {
        "participants": "$.participant[*].individual.reference",
        "type_codes": "$.type[*].coding[*].code",
        "disposition_codes": "$.hospitalization.dischargeDisposition.coding[*].code",
    },
    "Condition": {
        "category_codes": "$.category[*].coding[*].code",
        "verification_codes": "$.verificationStatus.coding[*].code",
    },
    "Observation": {
        "category_codes": "$.category[*].coding[*].code",
        "value_concept_codes": "$.valueCodeableConcept.coding[*].code",
        "interpretation_codes": "$.interpretation[*].coding[*].code",
    },
    "Procedure": {
        "based_on": "$.basedOn[*].reference",
        "category_codes": "$.category.coding[*].code",
    },
    "ServiceRequest": {
        "category_codes": "$.category[*].coding[*].code",
        "performer_codes": "$.performerType.coding[*].code",
    },
    "MedicationRequest": {},
    "Patient": {},
}
CODING_ARRAYS: dict[str, dict[str, str]] = {
    "Condition": {"codings": "$.code.coding"},
    "Observation": {"codings": "$.code.coding"},
    "Procedure": {"codings": "$.code.coding"},
    "ServiceRequest": {"codings": "$.code.coding"},
    "MedicationRequest": {"codings": "$.medicationCodeableConcept.coding"},
}
RESOURCE_TYPES = tuple(SCALARS)


def _in(values) -> str:
    return "(" + ", ".join(f"'{v}'" for v in values) + ")"


def _named(codes_column: str, names) -> str:
    """The first code of the list that is itself one of the contract's value names (a site
    coding its own system with the contract's words, e.g. urgent_care, admitted)."""
    return f"list_filter({codes_column}, lambda c: c IN {_in(names)})[1]"


MACROS = (
    # Patient/123, https://x/fhir/Patient/123/_history/2, urn:uuid:abc -> 123, 123, abc.
    "CREATE OR REPLACE TEMP MACRO fhir_ref(r) AS CASE WHEN r LIKE 'urn:%' "
    "THEN regexp_replace(r, '^urn:(uuid|oid):', '') "
    "ELSE regexp_extract(regexp_replace(r, '/_history/.*$', ''), '([^/]+)$', 1) END",
    # A FHIR date (no time) is local midnight; dateTimes and instants pass as they are.
    "CREATE OR REPLACE TEMP MACRO fhir_time(t) AS CASE WHEN regexp_full_match(t, "
    "'[0-9]{4}-[0-9]{2}-[0-9]{2}') THEN t || ' 00:00' ELSE t END",
)


def adapt(source: Path, out: AdaptedExtract) -> None:
    """Map the export in ``source`` onto ``out`` (see the module docstring)."""
    con = out.con
    for macro in MACROS:
        con.execute(macro)
    con.execute(
        "CREATE TEMP TABLE fhir_code_systems AS SELECT trim(url) AS url, "
        "upper(trim(code_system)) AS code_system FROM read_csv(?, all_varchar = true)",
        [str(CODE_SYSTEMS_FILE)],
    )
    _stage(source, out)
    _patients(out)
    _encounters(out)
    _diagnoses(out)
    _observations(out)
    _orders(out)
    _medications(out)
    _coverage(source, out)


# --- staging ---------------------------------------------------------------------------------


def _stage_select(resource: str, origin: str, source_sql: str) -> str:
    scalars, lists = SCALARS[resource], LISTS[resource]
    codings = CODING_ARRAYS.get(resource, {})
    paths = ", ".join(f"'{p}'" for p in scalars.values())
    columns = [f"__s[{i}] AS {name}" for i, name in enumerate(scalars, start=1)]
    columns += [f"json_extract_string(json, '{p}') AS {name}" for name, p in lists.items()]
    columns += [
        f"from_json(json_extract(json, '{p}'), '{CODINGS}') AS {name}"
        for name, p in codings.items()
    ]
    return (
        f"SELECT '{origin}' AS origin_file, ordinality AS origin_line, "
        f"json_extract_string(json, '$.resourceType') AS resource_type, {', '.join(columns)} "
        f"FROM (SELECT json, ordinality, json_extract_string(json, [{paths}]) AS __s "
        f"FROM {source_sql})"
    )


def _stage(source: Path, out: AdaptedExtract) -> None:
    """One staging table per mapped type (``fhir_<Type>``), each file scanned once."""
    con = out.con
    empty = "(SELECT NULL::JSON AS json, 0::BIGINT AS ordinality WHERE false)"
    for resource in RESOURCE_TYPES:
        con.execute(f"CREATE TEMP TABLE fhir_{resource} AS {_stage_select(resource, '', empty)}")
    files = sorted(p for p in source.iterdir() if p.is_file() and p.suffix == ".ndjson")
    skipped: dict[str, int] = {}
    for path in files:
        scan = f"read_ndjson_objects('{_quoted(path)}') WITH ORDINALITY"
        first = con.sql(
            f"SELECT json_extract_string(json, '$.resourceType') FROM {scan} LIMIT 1"
        ).fetchall()
        resource = first[0][0] if first else None
        if resource in RESOURCE_TYPES:
            con.execute(
                f"INSERT INTO fhir_{resource} {_stage_select(resource, _quoted(path.name), scan)}"
            )
        elif first:
            count = con.sql(f"SELECT count(*) FROM {scan}").fetchall()[0][0]
            skipped[str(resource)] = skipped.get(str(resource), 0) + count
    if skipped:
        shown = ", ".join(f"{t} {n}" for t, n in sorted(skipped.items()))
        out.note(f"skipped {sum(skipped.values())} resources of types not mapped: {shown}")
    for resource in RESOURCE_TYPES:
        stray = con.sql(
            f"SELECT count(*) FROM fhir_{resource} WHERE resource_type IS DISTINCT FROM "
            f"'{resource}'"
        ).fetchall()[0][0]
        if stray:
            out.note(
                f"skipped {stray} resources in {resource} files that are not {resource} "
                "(a Bulk Data file holds one resource type)"
            )
            con.execute(
                f"DELETE FROM fhir_{resource} WHERE resource_type IS DISTINCT FROM '{resource}'"
            )


def _quoted(text: str | Path) -> str:
    return str(text).replace("'", "''")


def _count_skipped(out: AdaptedExtract, what: str, where: str, table: str) -> None:
    rows = out.con.sql(
        f"SELECT coalesce(status, '(none)') AS s, count(*) FROM {table} WHERE {where} "
        "GROUP BY ALL ORDER BY s"
    ).fetchall()
    if rows:
        shown = ", ".join(f"{s} {n}" for s, n in rows)
        out.note(f"skipped {sum(n for _, n in rows)} {what} by status: {shown}")


# --- coded elements ----------------------------------------------------------------------------


def _codings(out: AdaptedExtract, table: str, where: str = "true") -> str:
    """One row per (resource, coding): id, pos, code_system, code; the site's own codes mapped
    through the code map (keyed on the coding's system URL), known URLs named as the contract
    names them (``maps/fhir_code_systems.csv``), other URLs left as they are."""
    unnested = (
        f"SELECT origin_file, origin_line, unnest(list_transform(codings, lambda c, i: "
        f"{{'pos': i, 'code_system': c.system, 'code': c.code}}), recursive := true) "
        f"FROM {table} WHERE {where}"
    )
    return (
        "SELECT q.* REPLACE (coalesce(u.code_system, q.code_system) AS code_system) "
        f"FROM ({out.map_codes(unnested)}) q LEFT JOIN fhir_code_systems u "
        "ON u.url = q.code_system"
    )


def _first_coding(out: AdaptedExtract, table: str, allowed, where: str = "true") -> str:
    """Per resource (origin_file, origin_line): its first coding in one of ``allowed`` systems,
    else its first coding as it is (the reader then quarantines the unknown system)."""
    return (
        f"SELECT origin_file, origin_line, code_system, code FROM ({_codings(out, table, where)})"
        f" QUALIFY row_number() OVER (PARTITION BY origin_file, origin_line "
        f"ORDER BY code_system IN {_in(allowed)} DESC, pos) = 1"
    )


# --- tables ----------------------------------------------------------------------------------


def _patients(out: AdaptedExtract) -> None:
    out.write_table(
        "patients",
        "SELECT id AS patient_id, substr(birth_date, 1, 4) AS birth_year, "
        "CASE gender WHEN 'male' THEN 'M' WHEN 'female' THEN 'F' WHEN 'other' THEN 'X' "
        "WHEN 'unknown' THEN 'U' ELSE gender END AS sex, "
        "substr(deceased, 1, 10) AS death_date, origin_file, origin_line FROM fhir_Patient",
    )


CLASS_SETTINGS = (
    "CASE WHEN class_code IS NULL THEN NULL WHEN class_code = 'EMER' THEN 'emergency' "
    "WHEN class_code IN ('IMP', 'ACUTE', 'NONAC') THEN 'inpatient' "
    "WHEN class_code = 'AMB' THEN 'outpatient' WHEN class_code = 'VR' THEN 'telehealth' "
    "ELSE 'other' END"
)
# http://terminology.hl7.org/CodeSystem/discharge-disposition -> the contract's dispositions.
DISCHARGE_DISPOSITIONS = {
    "home": "discharged",
    "alt-home": "discharged",
    "other-hcf": "transferred",
    "hosp": "transferred",
    "long": "transferred",
    "psy": "transferred",
    "rehab": "transferred",
    "snf": "transferred",
    "aadvice": "left_ama",
    "exp": "died",
    "oth": "other",
}
SKIPPED_ENCOUNTERS = ("entered-in-error", "cancelled", "planned")


def _encounters(out: AdaptedExtract) -> None:
    hl7 = " ".join(
        f"WHEN list_contains(disposition_codes, '{c}') THEN '{d}'"
        for c, d in DISCHARGE_DISPOSITIONS.items()
    )
    disposition = (
        f"coalesce({_named('disposition_codes', DISPOSITIONS)}, CASE {hl7} "
        "WHEN len(disposition_codes) > 0 THEN 'other' END)"
    )
    where = f"status IN {_in(SKIPPED_ENCOUNTERS)}"
    _count_skipped(out, "Encounters", where, "fhir_Encounter")
    out.write_table(
        "encounters",
        "SELECT id AS encounter_id, fhir_ref(subject) AS patient_id, "
        "fhir_ref(service_provider) AS site_id, "
        "coalesce(service_type_text, service_type_display) AS department, "
        "fhir_ref(participants[1]) AS clinician_id, "
        f"coalesce({_named('type_codes', SETTINGS)}, {CLASS_SETTINGS}) AS setting, "
        "fhir_time(period_start) AS arrival_time, fhir_time(period_end) AS departure_time, "
        f"{disposition} AS disposition, origin_file, origin_line "
        f"FROM fhir_Encounter WHERE NOT coalesce({where}, false)",
    )


def _diagnoses(out: AdaptedExtract) -> None:
    con = out.con
    skip = "list_has_any(verification_codes, ['entered-in-error', 'refuted'])"
    skipped = con.sql(f"SELECT count(*) FROM fhir_Condition WHERE {skip}").fetchall()[0][0]
    if skipped:
        out.note(f"skipped {skipped} Conditions verified as refuted or entered-in-error")
    coded = _codings(out, "fhir_Condition", f"NOT coalesce({skip}, false)")
    # ICD-10-CM when the Condition has one, else SNOMED CT: one diagnosis per kept coding.
    kept = (
        f"SELECT * FROM ({coded}) WHERE code_system IN ('ICD10CM', 'SNOMEDCT') QUALIFY "
        "code_system = min(code_system) OVER (PARTITION BY origin_file, origin_line)"
    )
    con.execute(f"CREATE TEMP TABLE fhir_condition_codes AS {kept}")
    uncoded = con.sql(
        f"SELECT count(*) FROM fhir_Condition c WHERE NOT coalesce({skip}, false) AND NOT "
        "EXISTS (SELECT 1 FROM fhir_condition_codes k WHERE k.origin_file = c.origin_file "
        "AND k.origin_line = c.origin_line)"
    ).fetchall()[0][0]
    if uncoded:
        out.note(f"skipped {uncoded} Conditions with no ICD-10-CM or SNOMED CT coding")
    source = (
        f"coalesce({_named('category_codes', DIAGNOSIS_SOURCES)}, CASE "
        "WHEN list_contains(category_codes, 'encounter-diagnosis') THEN 'encounter' "
        "WHEN list_contains(category_codes, 'problem-list-item') THEN 'problem_list' END)"
    )
    out.write_table(
        "diagnoses",
        "SELECT fhir_ref(c.subject) AS patient_id, fhir_ref(c.encounter) AS encounter_id, "
        "k.code_system, k.code, fhir_time(coalesce(c.recorded, c.onset)) AS recorded_time, "
        f"{source} AS source, c.origin_file, c.origin_line "
        "FROM fhir_Condition c JOIN fhir_condition_codes k USING (origin_file, origin_line)",
    )


# SNOMED CT qualifier values and v3 ObservationInterpretation codes -> findings.result.
RESULT_CODES = {
    "52101004": "present",
    "2667000": "absent",
    "17621005": "normal",
    "263654008": "abnormal",
}
INTERPRETATIONS = {
    "N": "normal",
    "A": "abnormal",
    "AA": "abnormal",
    "H": "abnormal",
    "HH": "abnormal",
    "L": "abnormal",
    "LL": "abnormal",
    "HU": "abnormal",
    "LU": "abnormal",
    "POS": "present",
    "NEG": "absent",
}
RESULTS = ("present", "absent", "normal", "abnormal", "not_done")


def _result() -> str:
    concept = " ".join(
        f"WHEN list_contains(value_concept_codes, '{c}') THEN '{r}'"
        for c, r in RESULT_CODES.items()
    )
    interpretation = " ".join(
        f"WHEN list_contains(interpretation_codes, '{c}') THEN '{r}'"
        for c, r in INTERPRETATIONS.items()
    )
    return (
        "CASE WHEN o.status = 'cancelled' OR o.absent_reason IS NOT NULL "
        "OR o.absent_reason_text IS NOT NULL THEN 'not_done' "
        "WHEN o.value_boolean = 'true' THEN 'present' "
        "WHEN o.value_boolean = 'false' THEN 'absent' "
        f"ELSE coalesce({_named('value_concept_codes', RESULTS)}, CASE {concept} END, "
        f"CASE {interpretation} END) END"
    )


# Observation categories (http://terminology.hl7.org/CodeSystem/observation-category): a finding
# is an exam, or has no category of this list; vital signs, surveys etc. have no canonical place.
LAB, EXAM = "laboratory", "exam"
NOT_FINDINGS = (
    "laboratory",
    "vital-signs",
    "survey",
    "social-history",
    "imaging",
    "procedure",
    "therapy",
    "activity",
)


def _observations(out: AdaptedExtract) -> None:
    con = out.con
    con.execute("DELETE FROM fhir_Observation WHERE status = 'entered-in-error'")
    finding_codes = _first_coding(out, "fhir_Observation", ("LOCAL", "SNOMEDCT"))
    loinc = (
        f"SELECT origin_file, origin_line, code FROM ({_codings(out, 'fhir_Observation')}) "
        "WHERE code_system = 'LOINC' "
        "QUALIFY row_number() OVER (PARTITION BY origin_file, origin_line ORDER BY pos) = 1"
    )
    # finding: an exam (whatever its code: an unmapped site code is then quarantined, not
    # lost), or coded in a finding system with no other category; lab: LOINC-coded with a
    # value, laboratory or uncategorised; anything else (vital signs, surveys, ...) skipped.
    con.execute(
        "CREATE TEMP TABLE fhir_observation_kind AS SELECT o.origin_file, o.origin_line, "
        f"CASE WHEN coalesce(list_contains(o.category_codes, '{EXAM}'), false) OR (f.code_system "
        "IN ('LOCAL', 'SNOMEDCT') AND len(list_intersect(coalesce(o.category_codes, []), "
        f"{list(NOT_FINDINGS)})) = 0) THEN 'finding' "
        "WHEN l.code IS NOT NULL AND (o.value_quantity IS NOT NULL OR o.value_string IS NOT "
        f"NULL) AND (len(coalesce(o.category_codes, [])) = 0 OR list_contains(o.category_codes, "
        f"'{LAB}')) AND o.status IS DISTINCT FROM 'cancelled' THEN 'lab' "
        "ELSE coalesce(o.category_codes[1], 'uncategorised') END AS kind, "
        "f.code_system, f.code, l.code AS loinc "
        f"FROM fhir_Observation o LEFT JOIN ({finding_codes}) f USING (origin_file, origin_line)"
        f" LEFT JOIN ({loinc}) l USING (origin_file, origin_line)"
    )
    skipped = con.sql(
        "SELECT kind, count(*) FROM fhir_observation_kind WHERE kind NOT IN ('finding', 'lab') "
        "GROUP BY ALL ORDER BY kind"
    ).fetchall()
    if skipped:
        shown = ", ".join(f"{k} {n}" for k, n in skipped)
        out.note(
            f"skipped {sum(n for _, n in skipped)} Observations that are neither a LOINC lab "
            f"result with a value nor a SNOMED CT/LOCAL finding, by category: {shown}"
        )
    joined = "FROM fhir_Observation o JOIN fhir_observation_kind k USING (origin_file, origin_line)"
    out.write_table(
        "findings",
        "SELECT fhir_ref(o.subject) AS patient_id, fhir_ref(o.encounter) AS encounter_id, "
        f"k.code_system, k.code, {_result()} AS result, o.value_quantity AS value_num, "
        "fhir_time(coalesce(o.effective, o.effective_start, o.issued)) AS recorded_time, "
        f"o.origin_file, o.origin_line {joined} WHERE k.kind = 'finding'",
    )
    out.write_table(
        "labs",
        "SELECT fhir_ref(o.subject) AS patient_id, fhir_ref(o.encounter) AS encounter_id, "
        "k.loinc, o.value_quantity AS value_num, "
        "coalesce(o.value_string, o.value_concept_text) AS value_text, "
        "coalesce(o.value_unit, o.value_unit_code) AS unit, "
        "fhir_time(coalesce(o.effective, o.effective_start)) AS collected_time, "
        f"fhir_time(o.issued) AS resulted_time, o.origin_file, o.origin_line {joined} "
        "WHERE k.kind = 'lab'",
    )


# ServiceRequest / Procedure category codings (SNOMED CT) -> orders.category.
CATEGORY_CODES = {
    "363679005": "imaging",
    "3457005": "referral",
    "108252007": "lab",
    "71388002": "procedure",
    "387713003": "procedure",
    "103693007": "procedure",
}
# ServiceRequest.performerType (SNOMED CT practice settings) -> orders.specialty.
SPECIALTY_CODES = {
    "394610002": "neurosurgery",
    "394591006": "neurology",
    "408463005": "vascular_surgery",
}
ORDER_SYSTEMS = ("CPT", "HCPCS", "LOINC", "SNOMEDCT", "LOCAL")
SR_STATUSES = {
    "active": "ordered",
    "on-hold": "ordered",
    "completed": "completed",
    "revoked": "cancelled",
}


def _category(otherwise: str) -> str:
    coded = " ".join(
        f"WHEN list_contains(category_codes, '{c}') THEN '{k}'" for c, k in CATEGORY_CODES.items()
    )
    by_code = (
        "CASE WHEN k.code_system = 'CPT' AND regexp_full_match(k.code, '7[0-9]{4}') "
        f"THEN 'imaging' WHEN k.code_system = 'LOINC' THEN 'lab' ELSE '{otherwise}' END"
    )
    return f"coalesce({_named('category_codes', ORDER_CATEGORIES)}, CASE {coded} END, {by_code})"


def _orders(out: AdaptedExtract) -> None:
    con = out.con
    sr_skip = "status IN ('entered-in-error', 'draft')"
    _count_skipped(out, "ServiceRequests", sr_skip, "fhir_ServiceRequest")
    con.execute(f"DELETE FROM fhir_ServiceRequest WHERE {sr_skip}")
    _count_skipped(out, "Procedures", "status IS DISTINCT FROM 'completed'", "fhir_Procedure")
    con.execute("DELETE FROM fhir_Procedure WHERE status IS DISTINCT FROM 'completed'")
    # A completed Procedure based on an exported ServiceRequest is that order's performance.
    con.execute(
        "CREATE TEMP TABLE fhir_performed AS SELECT s.id AS order_id, "
        "arg_min(fhir_time(coalesce(p.performed, p.performed_start)), "
        "TRY_CAST(coalesce(p.performed, p.performed_start) AS TIMESTAMPTZ)) AS performed_time "
        "FROM (SELECT *, unnest(based_on) AS based FROM fhir_Procedure) p "
        "JOIN fhir_ServiceRequest s ON s.id = fhir_ref(p.based) GROUP BY s.id"
    )
    statuses = " ".join(f"WHEN '{s}' THEN '{o}'" for s, o in SR_STATUSES.items())
    performer = " ".join(
        f"WHEN list_contains(performer_codes, '{c}') THEN '{s}'" for c, s in SPECIALTY_CODES.items()
    )
    specialty = (
        f"coalesce({_named('performer_codes', SPECIALTIES)}, CASE {performer} "
        "WHEN len(performer_codes) > 0 THEN 'other' END)"
    )
    sr_codes = _first_coding(out, "fhir_ServiceRequest", ORDER_SYSTEMS)
    procedure_codes = _first_coding(out, "fhir_Procedure", ORDER_SYSTEMS)
    requests = (
        "SELECT s.id AS order_id, fhir_ref(s.subject) AS patient_id, "
        "fhir_ref(s.encounter) AS encounter_id, k.code_system, k.code, "
        f"{_category('other')} AS category, {specialty} AS specialty, "
        "fhir_time(s.authored) AS ordered_time, f.performed_time, "
        f"CASE s.status {statuses} ELSE s.status END AS status, s.origin_file, s.origin_line "
        f"FROM fhir_ServiceRequest s LEFT JOIN ({sr_codes})"
        " k USING (origin_file, origin_line) LEFT JOIN fhir_performed f ON f.order_id = s.id"
    )
    # Other completed Procedures are orders of their own, ordered when performed.
    procedures = (
        "SELECT p.id AS order_id, fhir_ref(p.subject) AS patient_id, "
        "fhir_ref(p.encounter) AS encounter_id, k.code_system, k.code, "
        f"{_category('procedure')} AS category, NULL AS specialty, "
        "fhir_time(coalesce(p.performed, p.performed_start)) AS ordered_time, "
        "fhir_time(coalesce(p.performed, p.performed_start)) AS performed_time, "
        "'completed' AS status, p.origin_file, p.origin_line "
        f"FROM fhir_Procedure p LEFT JOIN ({procedure_codes})"
        " k USING (origin_file, origin_line) WHERE NOT EXISTS (SELECT 1 FROM "
        "(SELECT unnest(p.based_on) AS based) b JOIN fhir_ServiceRequest s "
        "ON s.id = fhir_ref(b.based))"
    )
    out.write_table("orders", f"{requests} UNION ALL {procedures}")


MED_STATUSES = ("active", "completed", "stopped", "cancelled")
# Timing.repeat.periodUnit (UCUM) -> days.
PERIOD_DAYS = {"h": 1 / 24, "d": 1, "wk": 7, "mo": 30, "a": 365}
MG_PER_UNIT = {"mg": 1, "g": 1000, "ug": 0.001, "mcg": 0.001}


def _ingredient_map(con: duckdb.DuckDBPyConnection) -> str:
    """The shared map (clinical drug -> ingredients), plus each ingredient's own RxNorm code
    (an order coded at ingredient level) when the map file names it (ingredient_rxnorm)."""
    header = [
        d[0]
        for d in con.sql(
            "SELECT * FROM read_csv(?, all_varchar = true) LIMIT 0", params=[str(RXNORM_MAP_FILE)]
        ).description
    ]
    shared = f"SELECT rxnorm, ingredient, strength_mg FROM {RXNORM_INGREDIENTS}"
    if "ingredient_rxnorm" not in header:
        return shared
    return (
        f"{shared} UNION ALL SELECT DISTINCT trim(ingredient_rxnorm), lower(trim(ingredient)), "
        f"NULL::DOUBLE FROM read_csv('{_quoted(RXNORM_MAP_FILE)}', all_varchar = true) "
        f"WHERE trim(ingredient_rxnorm) NOT IN (SELECT rxnorm FROM {RXNORM_INGREDIENTS})"
    )


def _medications(out: AdaptedExtract) -> None:
    con = out.con
    skip = "status IN ('entered-in-error', 'draft')"
    _count_skipped(out, "MedicationRequests", skip, "fhir_MedicationRequest")
    con.execute(f"DELETE FROM fhir_MedicationRequest WHERE {skip}")
    referenced = con.sql(
        "SELECT count(*) FROM fhir_MedicationRequest WHERE medication_reference IS NOT NULL"
    ).fetchall()[0][0]
    if referenced:
        out.note(
            f"skipped {referenced} MedicationRequests naming their drug by a Medication "
            "reference (only medicationCodeableConcept is read)"
        )
    con.execute(
        "CREATE TEMP TABLE fhir_drugs AS SELECT m.*, r.code AS rxnorm, i.ingredient, "
        "i.strength_mg, count(i.ingredient) OVER (PARTITION BY m.origin_file, m.origin_line) "
        "AS ingredients FROM fhir_MedicationRequest m LEFT JOIN (SELECT origin_file, "
        "origin_line, code FROM (SELECT origin_file, origin_line, unnest(list_transform("
        "codings, lambda c, i: {'pos': i, 'system': c.system, 'code': c.code}), recursive := "
        f"true) FROM fhir_MedicationRequest) WHERE system = '{RXNORM_URL}' QUALIFY "
        "row_number() OVER (PARTITION BY origin_file, origin_line ORDER BY pos) = 1) r "
        f"USING (origin_file, origin_line) LEFT JOIN ({_ingredient_map(con)}) i "
        "ON i.rxnorm = r.code WHERE m.medication_reference IS NULL"
    )
    unmapped = con.sql(
        "SELECT count(*), count(DISTINCT rxnorm), string_agg(DISTINCT coalesce(rxnorm, "
        "'(no RxNorm coding)'), ', ' ORDER BY coalesce(rxnorm, '(no RxNorm coding)')) "
        "FROM fhir_drugs WHERE ingredient IS NULL"
    ).fetchall()[0]
    if unmapped[0]:
        out.note(
            f"{unmapped[0]} drug records ({unmapped[1]} codes) have no ingredient in the "
            f"RxNorm map: {unmapped[2]}"
        )
    unit = "lower(coalesce(dose_unit_code, dose_unit))"
    mg = " ".join(f"WHEN '{u}' THEN {f}" for u, f in MG_PER_UNIT.items())
    per_day = " ".join(f"WHEN '{u}' THEN {d}" for u, d in PERIOD_DAYS.items())
    # A dose in mass units is the dose (split over ingredients it cannot be); a dose in
    # units of the product (tablets) times the ingredient's strength; none: the strength.
    dose = (
        f"CASE WHEN TRY_CAST(dose_value AS DOUBLE) IS NULL THEN strength_mg "
        f"WHEN (CASE {unit} {mg} END) IS NOT NULL THEN CASE WHEN ingredients = 1 THEN "
        f"TRY_CAST(dose_value AS DOUBLE) * (CASE {unit} {mg} END) END "
        "ELSE TRY_CAST(dose_value AS DOUBLE) * strength_mg END"
    )
    doses_per_day = (
        "TRY_CAST(frequency AS DOUBLE) / (TRY_CAST(coalesce(period, '1') AS DOUBLE) * "
        f"CASE coalesce(period_unit, 'd') {per_day} END)"
    )
    out.write_table(
        "medications",
        "SELECT CASE WHEN ingredients > 1 THEN id || '-' || replace(ingredient, ' ', '-') "
        "ELSE id END AS medication_id, fhir_ref(subject) AS patient_id, "
        "fhir_ref(encounter) AS encounter_id, ingredient, rxnorm, "
        f"{dose} AS dose_mg, {doses_per_day} AS doses_per_day, "
        "lower(coalesce(route_text, route_display)) AS route, fhir_time(authored) AS start_time, "
        "fhir_time(coalesce(bounds_end, validity_end)) AS end_time, "
        "CASE WHEN status = 'on-hold' THEN 'active' ELSE status END AS status, "
        "origin_file, origin_line FROM fhir_drugs WHERE ingredient IS NOT NULL",
    )


# --- coverage --------------------------------------------------------------------------------


def find_export_manifest(source: Path) -> tuple[Path, dict] | None:
    """The Bulk Data export manifest beside the NDJSON files: the first ``*.json`` file
    (manifest.json first, then by name) that is an object with transactionTime and output."""
    candidates = sorted(source.glob("*.json"), key=lambda p: (p.name != "manifest.json", p.name))
    for path in candidates:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        if isinstance(data, dict) and "transactionTime" in data and "output" in data:
            return path, data
    return None


def _coverage(source: Path, out: AdaptedExtract) -> None:
    found = find_export_manifest(source)
    first = out.con.sql(
        "SELECT min(substr(period_start, 1, 10)) FROM fhir_Encounter "
        "WHERE regexp_matches(period_start, '^[0-9]{4}-[0-9]{2}-[0-9]{2}')"
    ).fetchall()[0][0]
    out.coverage.start = date.fromisoformat(first) if first else None
    how = []
    if found:
        path, data = found
        out.coverage.end = str(data["transactionTime"])
        out.coverage.created = str(data["transactionTime"])
        how.append(
            f"coverage end: the export's transactionTime {data['transactionTime']} ({path.name})"
        )
    else:
        how.append("coverage end: unknown (no Bulk Data export manifest with transactionTime)")
    how.append(f"coverage start: the earliest encounter ({first or 'none'})")
    out.coverage.how = "; ".join(how)
