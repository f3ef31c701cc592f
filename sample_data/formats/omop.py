"""Write a contract extract as an OMOP CDM v5.4 folder (upper-case CSV tables, as OHDSI's
public samples ship them), for tests and benchmarks: ``write_omop(contract_dir, out_dir)``.

Every table follows the CDM v5.4 field list (OHDSI/CommonDataModel,
``inst/csv/OMOP_CDMv5.4_Field_Level.csv``): all its columns, in order, required ones filled.
Ids become integers (the digits of the contract's ids when those are unique in their table,
else their rank); ``omop-id-map.csv`` records each (kind, contract_id, omop_id). Codes become
concepts in a CONCEPT table written beside: the standard Gender, Visit, Type and unit concepts
by their real ids, every clinical code as a local concept (``concept_id`` from 2000000001, the
CDM's range for site concepts) under its real vocabulary_id. LOCAL finding and order codes are
written as the CDM writes an unmapped source code: concept_id 0 with the code in
``observation_source_value`` / ``procedure_source_value``, and ``site-code-map.csv`` maps them
back (source systems ``OMOP:observation_source_value``, ``OMOP:procedure_source_value``).
Referrals are procedures whose concept (vocabulary ``SiteReferral``) is named for the specialty,
e.g. "Referral to neurosurgery". What OMOP cannot carry is listed in docs/sources/omop.md.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb

from chartaudit.schemas.contract import TABLE_ORDER

__all__ = ["ID_MAP_FILE", "SITE_CODE_MAP_FILE", "write_omop"]

SITE_CODE_MAP_FILE = "site-code-map.csv"
ID_MAP_FILE = "omop-id-map.csv"
FIRST_LOCAL_CONCEPT = 2000000001
EHR, EHR_ORDER = 32817, 32833  # Type Concept: "EHR"; "EHR order" (ordered, not performed)
MILLIGRAM = 8576
CDM_V54 = 756265  # cdm_version_concept_id of CDM v5.4
REFERRAL_VOCABULARY = "SiteReferral"
DRUG_VOCABULARY = "SiteDrug"  # ingredient concepts, and drugs with no RxNorm code
GENDERS = {"M": 8507, "F": 8532}
SETTINGS = {
    "inpatient": 9201,
    "emergency": 9203,
    "outpatient": 9202,
    "urgent_care": 8782,
    "telehealth": 5083,
}
DISPOSITIONS = {"died": 4216643, "discharged": 8536, "admitted": 8717, "transferred": 8863}
VOCABULARIES = {
    "SNOMEDCT": "SNOMED",
    "ICD10CM": "ICD10CM",
    "CPT": "CPT4",
    "HCPCS": "HCPCS",
    "LOINC": "LOINC",
}
# The standard concepts the tables use, as in the OMOP vocabulary (id, name, domain,
# vocabulary, class, code).
STANDARD_CONCEPTS = [
    (8507, "MALE", "Gender", "Gender", "Gender", "M"),
    (8532, "FEMALE", "Gender", "Gender", "Gender", "F"),
    (9201, "Inpatient Visit", "Visit", "Visit", "Visit", "IP"),
    (9202, "Outpatient Visit", "Visit", "Visit", "Visit", "OP"),
    (9203, "Emergency Room Visit", "Visit", "Visit", "Visit", "ER"),
    (5083, "Telehealth", "Visit", "Visit", "Visit", "TELE"),
    (8782, "Urgent Care Facility", "Visit", "CMS Place of Service", "Visit", "20"),
    (8536, "Home", "Visit", "CMS Place of Service", "Visit", "12"),
    (8717, "Inpatient Hospital", "Visit", "CMS Place of Service", "Visit", "21"),
    (8863, "Skilled Nursing Facility", "Visit", "CMS Place of Service", "Visit", "31"),
    (4216643, "Patient died", "Observation", "SNOMED", "Clinical Finding", "419099009"),
    (32817, "EHR", "Type Concept", "Type Concept", "Type Concept", "OMOP4976890"),
    (32833, "EHR order", "Type Concept", "Type Concept", "Type Concept", "OMOP4976906"),
    (8576, "milligram", "Unit", "UCUM", "Unit", "mg"),
]
TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"


def write_omop(contract_dir: Path, out_dir: Path) -> None:
    """The contract extract in ``contract_dir`` as an OMOP CDM v5.4 folder ``out_dir``."""
    contract_dir, out_dir = Path(contract_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = _manifest(contract_dir)
    con = duckdb.connect()
    try:
        _read_contract(con, contract_dir, manifest.get("timezone", "UTC"))
        _ids(con)
        _concepts(con)
        _write_tables(con, out_dir, manifest)
        _write_vocabulary(con, out_dir)
        _write_site_code_map(con, out_dir)
        _copy(con, out_dir / ID_MAP_FILE, "SELECT * FROM ids ORDER BY kind, omop_id")
    finally:
        con.close()
    kept = ("timezone", "coverage_start", "coverage_end", "created")
    (out_dir / "manifest.json").write_text(
        json.dumps({k: manifest[k] for k in kept if k in manifest}, indent=2)
    )


def _manifest(contract_dir: Path) -> dict:
    path = contract_dir / "manifest.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _read_contract(con: duckdb.DuckDBPyConnection, folder: Path, timezone: str) -> None:
    """Tables ``c_<table>`` as text, naive timestamps in ``timezone`` as OMOP writes them."""
    for table in TABLE_ORDER:
        csv, parquet = folder / f"{table}.csv", folder / f"{table}.parquet"
        scan = (
            f"read_csv('{csv}', header = true, all_varchar = true)"
            if csv.is_file()
            else f"(SELECT COLUMNS(*)::VARCHAR FROM read_parquet('{parquet}'))"
        )
        # _row: the file's order, for the ids of rows the contract gives none
        con.execute(f"CREATE TABLE c_{table} AS SELECT row_number() OVER () AS _row, * FROM {scan}")
    con.execute(
        "CREATE MACRO local_ts(x) AS CASE WHEN x IS NULL OR trim(x) = '' THEN NULL "
        r"WHEN regexp_matches(x, '\d:\d\d(:\d\d(\.\d+)?)?\s*(Z|[+-]\d\d(:?\d\d)?)$') THEN "
        f"strftime(timezone('{timezone}', CAST(x AS TIMESTAMPTZ)), '{TIMESTAMP_FORMAT}') "
        f"ELSE strftime(CAST(replace(x, 'T', ' ') AS TIMESTAMP), '{TIMESTAMP_FORMAT}') END"
    )


def _ids(con: duckdb.DuckDBPyConnection) -> None:
    """``ids(kind, contract_id, omop_id)``: the digits of the contract's ids when they are
    unique within the kind (PT000012 -> 12), else the ids' rank."""
    sources = {
        "person": "SELECT patient_id FROM c_patients",
        "visit": "SELECT encounter_id FROM c_encounters",
        "procedure": "SELECT order_id FROM c_orders",
        "drug_exposure": "SELECT medication_id FROM c_medications",
        "care_site": "SELECT site_id FROM c_encounters",
        "provider": "SELECT clinician_id FROM c_encounters",
    }
    union = " UNION ".join(
        f"SELECT '{k}' AS kind, x AS contract_id FROM ({q}) t(x)" for k, q in sources.items()
    )
    con.execute(
        "CREATE TABLE ids AS WITH raw AS (SELECT kind, contract_id, "
        "TRY_CAST(nullif(regexp_replace(contract_id, '\\D', '', 'g'), '') AS BIGINT) AS digits "
        f"FROM ({union}) WHERE contract_id IS NOT NULL), "
        "usable AS (SELECT kind FROM raw GROUP BY kind "
        "HAVING count(DISTINCT digits) = count(*) AND min(digits) > 0) "
        "SELECT kind, contract_id, CASE WHEN kind IN (SELECT kind FROM usable) THEN digits "
        "ELSE dense_rank() OVER (PARTITION BY kind ORDER BY contract_id) END AS omop_id FROM raw"
    )


def _id(kind: str, column: str) -> str:
    return f"(SELECT omop_id FROM ids WHERE kind = '{kind}' AND contract_id = {column})"


def _concepts(con: duckdb.DuckDBPyConnection) -> None:
    """``local_concepts``: one concept per clinical code, referral, drug and ingredient."""
    vocab = ", ".join(f"('{c}', '{v}')" for c, v in VOCABULARIES.items())
    con.execute(
        f"CREATE TABLE vocab(code_system VARCHAR, vocabulary_id VARCHAR); "
        f"INSERT INTO vocab VALUES {vocab}"
    )
    coded = (
        "SELECT code_system, code, 'Condition' AS domain FROM c_diagnoses UNION "
        "SELECT code_system, code, 'Observation' FROM c_findings UNION "
        "SELECT code_system, code, 'Procedure' FROM c_orders WHERE category <> 'referral' UNION "
        "SELECT 'LOINC', loinc, 'Measurement' FROM c_labs"
    )
    drugs = (
        f"SELECT DISTINCT CASE WHEN rxnorm IS NULL THEN '{DRUG_VOCABULARY}' ELSE 'RxNorm' END "
        "AS vocabulary_id, coalesce(rxnorm, lower(ingredient)) AS code, lower(ingredient) || "
        "coalesce(' ' || dose_mg || ' MG', '') AS name, 'Drug' AS domain, 'Clinical Drug' AS "
        "class FROM c_medications"
    )
    concepts = (
        "SELECT v.vocabulary_id, c.code, c.code_system || ' ' || c.code AS name, c.domain, "
        f"c.domain AS class FROM ({coded}) c JOIN vocab v USING (code_system) UNION "
        f"SELECT '{REFERRAL_VOCABULARY}', code || ':' || coalesce(specialty, 'other'), "
        "'Referral to ' || replace(coalesce(specialty, 'other'), '_', ' '), 'Procedure', "
        "'Procedure' FROM c_orders WHERE category = 'referral' UNION "
        f"{drugs} UNION SELECT DISTINCT '{DRUG_VOCABULARY}', lower(ingredient), "
        "lower(ingredient), 'Drug', 'Ingredient' FROM c_medications"
    )
    con.execute(
        f"CREATE TABLE local_concepts AS SELECT {FIRST_LOCAL_CONCEPT - 1} + row_number() OVER "
        f"(ORDER BY vocabulary_id, code, name) AS concept_id, * FROM ({concepts})"
    )


def _concept(vocabulary: str, code: str, name: str | None = None) -> str:
    """The local concept id of (vocabulary, code) [and name], else 0."""
    named = f" AND name = {name}" if name else ""
    return (
        f"coalesce((SELECT concept_id FROM local_concepts WHERE vocabulary_id = {vocabulary} "
        f"AND code = {code}{named}), 0)"
    )


def _drug_concept(m: str) -> str:
    return _concept(
        f"CASE WHEN {m}.rxnorm IS NULL THEN '{DRUG_VOCABULARY}' ELSE 'RxNorm' END",
        f"coalesce({m}.rxnorm, lower({m}.ingredient))",
        f"lower({m}.ingredient) || coalesce(' ' || {m}.dose_mg || ' MG', '')",
    )


def _date(ts: str) -> str:
    return f"CAST(CAST(local_ts({ts}) AS TIMESTAMP) AS DATE)"


def _case(column: str, mapping: dict[str, int]) -> str:
    whens = " ".join(f"WHEN '{k}' THEN {v}" for k, v in mapping.items())
    return f"CASE {column} {whens} ELSE 0 END"


def _write_tables(con: duckdb.DuckDBPyConnection, out: Path, manifest: dict) -> None:
    for name, columns, source in _cdm_tables(manifest):
        select = ", ".join(f"{expr} AS {col}" for col, expr in columns)
        _copy(con, out / f"{name}.csv", f"SELECT {select} FROM {source} ORDER BY 1")


SNOMED_CONCEPT = _concept("'SNOMED'", "d.code")


def _cdm_tables(manifest: dict) -> list[tuple[str, list[tuple[str, str]], str]]:
    """(TABLE, [(column, expression)] in CDM order, FROM clause) for each clinical table."""
    null = "NULL"
    start = manifest.get("coverage_start")
    end = manifest.get("coverage_end")
    released = (manifest.get("created") or end or "")[:10] or None
    first_day = (
        "(SELECT min(CAST(CAST(local_ts(arrival_time) AS TIMESTAMP) AS DATE)) FROM c_encounters)"
    )
    last_day = (
        "(SELECT max(CAST(CAST(local_ts(arrival_time) AS TIMESTAMP) AS DATE)) FROM c_encounters)"
    )
    period_start = f"DATE '{start}'" if start else first_day
    period_end = f"DATE '{end}'" if end else last_day
    medication_end = _date("m.end_time")
    days = f"greatest(1, date_diff('day', {_date('m.start_time')}, {medication_end}))"
    performed = (
        "CASE WHEN o.category = 'referral' OR o.status = 'ordered' THEN o.ordered_time "
        "ELSE coalesce(o.performed_time, o.ordered_time) END"
    )
    order_concept = (
        f"CASE WHEN o.category = 'referral' THEN {_concept(repr(REFERRAL_VOCABULARY), _ref('o'))}"
        f" ELSE {_concept('v.vocabulary_id', 'o.code')} END"
    )
    return [
        (
            "PERSON",
            [
                ("person_id", _id("person", "p.patient_id")),
                ("gender_concept_id", _case("p.sex", GENDERS)),
                ("year_of_birth", "p.birth_year"),
                ("month_of_birth", null),
                ("day_of_birth", null),
                ("birth_datetime", null),
                ("race_concept_id", "0"),
                ("ethnicity_concept_id", "0"),
                ("location_id", null),
                ("provider_id", null),
                ("care_site_id", null),
                ("person_source_value", null),
                ("gender_source_value", "p.sex"),
                ("gender_source_concept_id", "0"),
                ("race_source_value", null),
                ("race_source_concept_id", "0"),
                ("ethnicity_source_value", null),
                ("ethnicity_source_concept_id", "0"),
            ],
            "c_patients p",
        ),
        (
            "OBSERVATION_PERIOD",
            [
                ("observation_period_id", _id("person", "p.patient_id")),
                ("person_id", _id("person", "p.patient_id")),
                ("observation_period_start_date", period_start),
                ("observation_period_end_date", period_end),
                ("period_type_concept_id", str(EHR)),
            ],
            "c_patients p",
        ),
        (
            "DEATH",
            [
                ("person_id", _id("person", "p.patient_id")),
                ("death_date", "p.death_date"),
                ("death_datetime", null),
                ("death_type_concept_id", str(EHR)),
                ("cause_concept_id", null),
                ("cause_source_value", null),
                ("cause_source_concept_id", null),
            ],
            "c_patients p WHERE nullif(p.death_date, '') IS NOT NULL",
        ),
        (
            "CARE_SITE",
            [
                ("care_site_id", "omop_id"),
                ("care_site_name", null),
                ("place_of_service_concept_id", "0"),
                ("location_id", null),
                ("care_site_source_value", "contract_id"),
                ("place_of_service_source_value", null),
            ],
            "ids WHERE kind = 'care_site'",
        ),
        (
            "PROVIDER",
            [
                ("provider_id", "omop_id"),
                ("provider_name", null),
                ("npi", null),
                ("dea", null),
                ("specialty_concept_id", "0"),
                ("care_site_id", null),
                ("year_of_birth", null),
                ("gender_concept_id", "0"),
                ("provider_source_value", "contract_id"),
                ("specialty_source_value", null),
                ("specialty_source_concept_id", "0"),
                ("gender_source_value", null),
                ("gender_source_concept_id", "0"),
            ],
            "ids WHERE kind = 'provider'",
        ),
        (
            "VISIT_OCCURRENCE",
            [
                ("visit_occurrence_id", _id("visit", "e.encounter_id")),
                ("person_id", _id("person", "e.patient_id")),
                ("visit_concept_id", _case("e.setting", SETTINGS)),
                ("visit_start_date", _date("e.arrival_time")),
                ("visit_start_datetime", "local_ts(e.arrival_time)"),
                # The CDM requires an end date: a visit with no departure ends the day it starts.
                (
                    "visit_end_date",
                    f"coalesce({_date('e.departure_time')}, {_date('e.arrival_time')})",
                ),
                ("visit_end_datetime", "local_ts(e.departure_time)"),
                ("visit_type_concept_id", str(EHR)),
                ("provider_id", _id("provider", "e.clinician_id")),
                ("care_site_id", _id("care_site", "e.site_id")),
                ("visit_source_value", "e.setting"),
                ("visit_source_concept_id", "0"),
                ("admitted_from_concept_id", "0"),
                ("admitted_from_source_value", null),
                ("discharged_to_concept_id", _case("e.disposition", DISPOSITIONS)),
                ("discharged_to_source_value", "e.disposition"),
                ("preceding_visit_occurrence_id", null),
            ],
            "c_encounters e",
        ),
        (
            "CONDITION_OCCURRENCE",
            [
                ("condition_occurrence_id", "d._row"),
                ("person_id", _id("person", "d.patient_id")),
                (
                    "condition_concept_id",
                    f"CASE WHEN d.code_system = 'SNOMEDCT' THEN {SNOMED_CONCEPT} ELSE 0 END",
                ),
                ("condition_start_date", _date("d.recorded_time")),
                ("condition_start_datetime", "local_ts(d.recorded_time)"),
                ("condition_end_date", null),
                ("condition_end_datetime", null),
                ("condition_type_concept_id", str(EHR)),
                ("condition_status_concept_id", "0"),
                ("stop_reason", null),
                ("provider_id", null),
                ("visit_occurrence_id", _id("visit", "d.encounter_id")),
                ("visit_detail_id", null),
                ("condition_source_value", "d.code"),
                ("condition_source_concept_id", _concept("v.vocabulary_id", "d.code")),
                ("condition_status_source_value", null),
            ],
            "c_diagnoses d LEFT JOIN vocab v USING (code_system)",
        ),
        (
            "PROCEDURE_OCCURRENCE",
            [
                ("procedure_occurrence_id", _id("procedure", "o.order_id")),
                ("person_id", _id("person", "o.patient_id")),
                ("procedure_concept_id", order_concept),
                ("procedure_date", _date(performed)),
                ("procedure_datetime", f"local_ts({performed})"),
                ("procedure_end_date", null),
                ("procedure_end_datetime", null),
                (
                    "procedure_type_concept_id",
                    f"CASE WHEN o.status = 'ordered' THEN {EHR_ORDER} ELSE {EHR} END",
                ),
                ("modifier_concept_id", "0"),
                ("quantity", null),
                ("provider_id", null),
                ("visit_occurrence_id", _id("visit", "o.encounter_id")),
                ("visit_detail_id", null),
                ("procedure_source_value", "o.code"),
                ("procedure_source_concept_id", order_concept),
                ("modifier_source_value", null),
            ],
            # OMOP records what was done or ordered; a cancelled order has no place in it.
            "c_orders o LEFT JOIN vocab v USING (code_system) WHERE o.status <> 'cancelled'",
        ),
        (
            "MEASUREMENT",
            [
                ("measurement_id", "l._row"),
                ("person_id", _id("person", "l.patient_id")),
                ("measurement_concept_id", _concept("'LOINC'", "l.loinc")),
                ("measurement_date", _date("l.collected_time")),
                ("measurement_datetime", "local_ts(l.collected_time)"),
                ("measurement_time", null),
                ("measurement_type_concept_id", str(EHR)),
                ("operator_concept_id", null),
                ("value_as_number", "l.value_num"),
                ("value_as_concept_id", null),
                ("unit_concept_id", "0"),
                ("range_low", null),
                ("range_high", null),
                ("provider_id", null),
                ("visit_occurrence_id", _id("visit", "l.encounter_id")),
                ("visit_detail_id", null),
                ("measurement_source_value", "l.loinc"),
                ("measurement_source_concept_id", _concept("'LOINC'", "l.loinc")),
                ("unit_source_value", "l.unit"),
                ("unit_source_concept_id", null),
                ("value_source_value", "coalesce(l.value_text, l.value_num)"),
                ("measurement_event_id", null),
                ("meas_event_field_concept_id", null),
            ],
            "c_labs l",
        ),
        (
            "OBSERVATION",
            [
                ("observation_id", "f._row"),
                ("person_id", _id("person", "f.patient_id")),
                ("observation_concept_id", _concept("v.vocabulary_id", "f.code")),
                ("observation_date", _date("f.recorded_time")),
                ("observation_datetime", "local_ts(f.recorded_time)"),
                ("observation_type_concept_id", str(EHR)),
                ("value_as_number", "f.value_num"),
                ("value_as_string", "replace(f.result, '_', ' ')"),
                ("value_as_concept_id", null),
                ("qualifier_concept_id", null),
                ("unit_concept_id", null),
                ("provider_id", null),
                ("visit_occurrence_id", _id("visit", "f.encounter_id")),
                ("visit_detail_id", null),
                ("observation_source_value", "f.code"),
                ("observation_source_concept_id", _concept("v.vocabulary_id", "f.code")),
                ("unit_source_value", null),
                ("qualifier_source_value", null),
                ("value_source_value", "f.result"),
                ("observation_event_id", null),
                ("obs_event_field_concept_id", null),
            ],
            "c_findings f LEFT JOIN vocab v USING (code_system)",
        ),
        (
            "DRUG_EXPOSURE",
            [
                ("drug_exposure_id", _id("drug_exposure", "m.medication_id")),
                ("person_id", _id("person", "m.patient_id")),
                ("drug_concept_id", _drug_concept("m")),
                ("drug_exposure_start_date", _date("m.start_time")),
                ("drug_exposure_start_datetime", "local_ts(m.start_time)"),
                # Required by the CDM: with no end, the start date (THEMIS convention).
                ("drug_exposure_end_date", f"coalesce({medication_end}, {_date('m.start_time')})"),
                ("drug_exposure_end_datetime", "local_ts(m.end_time)"),
                ("verbatim_end_date", null),
                ("drug_type_concept_id", str(EHR)),
                ("stop_reason", "CASE WHEN m.status = 'stopped' THEN 'stopped' END"),
                ("refills", null),
                # Units dispensed: one unit a dose, doses_per_day a day over the days supplied.
                (
                    "quantity",
                    f"CASE WHEN {medication_end} IS NOT NULL THEN "
                    f"CAST(m.doses_per_day AS DOUBLE) * {days} END",
                ),
                (
                    "days_supply",
                    f"CASE WHEN {medication_end} IS NOT NULL AND m.doses_per_day "
                    f"IS NOT NULL THEN {days} END",
                ),
                ("sig", null),
                ("route_concept_id", "0"),
                ("lot_number", null),
                ("provider_id", null),
                ("visit_occurrence_id", _id("visit", "m.encounter_id")),
                ("visit_detail_id", null),
                ("drug_source_value", "coalesce(m.rxnorm, lower(m.ingredient))"),
                ("drug_source_concept_id", _drug_concept("m")),
                ("route_source_value", "m.route"),
                ("dose_unit_source_value", null),
            ],
            # An order cancelled before it started was not an exposure.
            "c_medications m WHERE m.status <> 'cancelled'",
        ),
        (
            "CDM_SOURCE",
            [
                ("cdm_source_name", "'chartaudit contract extract'"),
                ("cdm_source_abbreviation", "'contract'"),
                ("cdm_holder", "'chartaudit'"),
                ("source_description", null),
                ("source_documentation_reference", null),
                ("cdm_etl_reference", "'chartaudit.sample_data.formats.omop'"),
                ("source_release_date", f"'{released}'" if released else "current_date"),
                ("cdm_release_date", f"'{released}'" if released else "current_date"),
                ("cdm_version", "'5.4'"),
                ("cdm_version_concept_id", str(CDM_V54)),
                ("vocabulary_version", "'chartaudit local concepts'"),
            ],
            "(SELECT 1)",
        ),
    ]


def _ref(alias: str) -> str:
    return f"{alias}.code || ':' || coalesce({alias}.specialty, 'other')"


def _write_vocabulary(con: duckdb.DuckDBPyConnection, out: Path) -> None:
    """CONCEPT (standard and local concepts), CONCEPT_ANCESTOR (ingredient above each drug)
    and DRUG_STRENGTH (the drug's mg per unit)."""
    standard = ", ".join(
        f"({i}, '{n}', '{d}', '{v}', '{c}', '{code}')" for i, n, d, v, c, code in STANDARD_CONCEPTS
    )
    _copy(
        con,
        out / "CONCEPT.csv",
        "SELECT concept_id, concept_name, domain_id, vocabulary_id, concept_class_id, "
        "'S' AS standard_concept, concept_code, DATE '1970-01-01' AS valid_start_date, "
        "DATE '2099-12-31' AS valid_end_date, NULL AS invalid_reason FROM ("
        f"SELECT * FROM (VALUES {standard}) s(concept_id, concept_name, domain_id, "
        "vocabulary_id, concept_class_id, concept_code) UNION ALL SELECT concept_id, name, "
        "domain, vocabulary_id, class, code FROM local_concepts) ORDER BY concept_id",
    )
    pairs = (
        "SELECT DISTINCT d.concept_id AS drug_id, i.concept_id AS ingredient_id, "
        "TRY_CAST(m.dose_mg AS DOUBLE) AS dose_mg FROM c_medications m "
        f"JOIN local_concepts d ON d.concept_id = {_drug_concept('m')} "
        f"JOIN local_concepts i ON i.vocabulary_id = '{DRUG_VOCABULARY}' AND i.class = "
        "'Ingredient' AND i.code = lower(m.ingredient)"
    )
    _copy(
        con,
        out / "CONCEPT_ANCESTOR.csv",
        "SELECT ingredient_id AS ancestor_concept_id, drug_id AS descendant_concept_id, "
        f"1 AS min_levels_of_separation, 1 AS max_levels_of_separation FROM ({pairs}) "
        "ORDER BY ALL",
    )
    _copy(
        con,
        out / "DRUG_STRENGTH.csv",
        "SELECT drug_id AS drug_concept_id, ingredient_id AS ingredient_concept_id, "
        f"dose_mg AS amount_value, {MILLIGRAM} AS amount_unit_concept_id, NULL AS "
        "numerator_value, NULL AS numerator_unit_concept_id, NULL AS denominator_value, NULL "
        "AS denominator_unit_concept_id, NULL AS box_size, DATE '1970-01-01' AS "
        "valid_start_date, DATE '2099-12-31' AS valid_end_date, NULL AS invalid_reason "
        f"FROM ({pairs}) WHERE dose_mg IS NOT NULL ORDER BY ALL",
    )


def _write_site_code_map(con: duckdb.DuckDBPyConnection, out: Path) -> None:
    """How the adapter gets the contract's codes back: LOCAL findings and orders from their
    source values, referrals from their SiteReferral concepts."""
    _copy(
        con,
        out / SITE_CODE_MAP_FILE,
        "SELECT DISTINCT 'OMOP:observation_source_value' AS source_system, code AS "
        "source_code, 'LOCAL' AS code_system, code, 'LOCAL finding' AS description "
        "FROM c_findings WHERE code_system = 'LOCAL' UNION SELECT DISTINCT "
        "'OMOP:procedure_source_value', code, 'LOCAL', code, 'LOCAL order' FROM c_orders "
        "WHERE code_system = 'LOCAL' AND category <> 'referral' UNION SELECT DISTINCT "
        f"'{REFERRAL_VOCABULARY}', {_ref('o')}, o.code_system, o.code, 'referral' "
        "FROM c_orders o WHERE category = 'referral' ORDER BY ALL",
    )


def _copy(con: duckdb.DuckDBPyConnection, path: Path, query: str) -> None:
    con.execute(f"COPY ({query}) TO '{path}' (HEADER, DELIMITER ',')")
