"""OMOP CDM v5.4 -> the extract contract (docs/sources/omop.md has the mapping table).

The source is a folder of CDM tables as CSV or Parquet, named in either case (``PERSON.csv``,
``person.parquet``). Each table the adapter maps is staged once on ``out.con`` with only the
columns it maps, as text, with the source file and line of every row; the canonical tables are
then written by set-based SQL over the staged tables. Concept ids become (vocabulary, code) pairs
through the CONCEPT table, which every OMOP export carries (the vocabulary tables are part of
the CDM). Values the contract refuses are passed on as they are, so the reader quarantines them
naming this file and line; rows the canonical model has no place for are left out and counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb

from chartaudit.schemas.errors import reject
from chartaudit.sources.code_maps import RXNORM_INGREDIENTS
from chartaudit.sources.output import AdaptedExtract

__all__ = ["CONDITION_SOURCE", "OBSERVATION_SOURCE", "PROCEDURE_SOURCE", "adapt"]

# The code system under which an unmapped source value (concept_id 0) is looked up in the
# site code map (columns source_system, source_code): the CDM field that holds it.
OBSERVATION_SOURCE = "OMOP:observation_source_value"
MEASUREMENT_SOURCE = "OMOP:measurement_source_value"
PROCEDURE_SOURCE = "OMOP:procedure_source_value"
CONDITION_SOURCE = "OMOP:condition_source_value"

# OMOP vocabulary_id -> the contract's code system; other vocabularies keep their own name
# (a custom vocabulary of a site reaches the code map under it).
VOCABULARIES = {
    "SNOMED": "SNOMEDCT",
    "ICD10CM": "ICD10CM",
    "CPT4": "CPT",
    "HCPCS": "HCPCS",
    "LOINC": "LOINC",
    "RxNorm": "RXNORM",
}
MALE, FEMALE = 8507, 8532  # Gender vocabulary
# Visit vocabulary (and the CMS Place of Service concepts of the Visit domain) -> setting.
SETTINGS = {
    9201: "inpatient",  # Inpatient Visit
    9203: "emergency",  # Emergency Room Visit
    262: "emergency",  # Emergency Room and Inpatient Visit: it starts in the ER
    8870: "emergency",  # Emergency Room - Hospital
    9202: "outpatient",  # Outpatient Visit
    581477: "outpatient",  # Office Visit
    8782: "urgent_care",  # Urgent Care Facility
    5083: "telehealth",  # Telehealth Visit
}
OTHER_SETTING = "'other'"  # any other visit concept (SQL literal)
# discharged_to_concept_id -> disposition. 0 ("discharged home, or not recorded" by the CDM
# convention) is NULL: the two cannot be told apart.
DISPOSITIONS = {
    4216643: "died",  # Patient died (SNOMED)
    8536: "discharged",  # Home
    8717: "admitted",  # Inpatient Hospital
    8863: "transferred",  # Skilled Nursing Facility
}
MILLIGRAM = 8576  # UCUM mg: drug_strength amounts in mg are doses; other units are not read
EHR_ORDER = 32833  # Type Concept "EHR order": ordered, not (yet) performed
# SNOMED CT exam concepts the contract takes as findings (extract-contract.md, LOCAL concepts'
# SNOMED equivalents, and the ABI finding of LN-14/LN-15) when they arrive as measurements.
SNOMED_EXAM_FINDINGS = ("134388005", "401191002", "91161007", "401221002")


@dataclass(frozen=True)
class TableSpec:
    name: str
    required: tuple[str, ...]  # columns the CDM requires and the adapter maps
    optional: tuple[str, ...] = ()  # columns the CDM allows to be absent: NULL when missing


TABLES = {
    t.name: t
    for t in (
        TableSpec("person", ("person_id", "gender_concept_id", "year_of_birth")),
        TableSpec(
            "visit_occurrence",
            ("visit_occurrence_id", "person_id", "visit_concept_id", "visit_start_date"),
            (
                "visit_start_datetime",
                "visit_end_date",
                "visit_end_datetime",
                "provider_id",
                "care_site_id",
                "discharged_to_concept_id",
            ),
        ),
        TableSpec(
            "condition_occurrence",
            ("condition_occurrence_id", "person_id", "condition_concept_id"),
            (
                "condition_start_date",
                "condition_start_datetime",
                "visit_occurrence_id",
                "condition_source_value",
                "condition_source_concept_id",
            ),
        ),
        TableSpec(
            "procedure_occurrence",
            ("procedure_occurrence_id", "person_id", "procedure_concept_id", "procedure_date"),
            (
                "procedure_datetime",
                "procedure_type_concept_id",
                "visit_occurrence_id",
                "procedure_source_value",
                "procedure_source_concept_id",
            ),
        ),
        TableSpec(
            "measurement",
            ("measurement_id", "person_id", "measurement_concept_id", "measurement_date"),
            (
                "measurement_datetime",
                "value_as_number",
                "value_as_concept_id",
                "visit_occurrence_id",
                "measurement_source_value",
                "measurement_source_concept_id",
                "unit_source_value",
                "value_source_value",
            ),
        ),
        TableSpec(
            "observation",
            ("observation_id", "person_id", "observation_concept_id", "observation_date"),
            (
                "observation_datetime",
                "value_as_number",
                "value_as_string",
                "value_as_concept_id",
                "visit_occurrence_id",
                "observation_source_value",
                "unit_source_value",
            ),
        ),
        TableSpec(
            "drug_exposure",
            ("drug_exposure_id", "person_id", "drug_concept_id", "drug_exposure_start_date"),
            (
                "drug_exposure_start_datetime",
                "drug_exposure_end_date",
                "drug_exposure_end_datetime",
                "stop_reason",
                "quantity",
                "days_supply",
                "visit_occurrence_id",
                "drug_source_value",
                "route_source_value",
            ),
        ),
        TableSpec("death", ("person_id", "death_date")),
        TableSpec(
            "concept",
            ("concept_id", "vocabulary_id", "concept_code"),
            ("concept_name", "concept_class_id"),
        ),
        TableSpec("concept_ancestor", ("ancestor_concept_id", "descendant_concept_id")),
        TableSpec("concept_relationship", ("concept_id_1", "concept_id_2", "relationship_id")),
        TableSpec(
            "drug_strength",
            ("drug_concept_id", "ingredient_concept_id"),
            ("amount_value", "amount_unit_concept_id"),
        ),
        TableSpec(
            "observation_period",
            ("person_id", "observation_period_start_date", "observation_period_end_date"),
        ),
        TableSpec("cdm_source", ("cdm_source_abbreviation", "source_release_date")),
    )
}
REQUIRED_TABLES = (
    "person",
    "visit_occurrence",
    "condition_occurrence",
    "procedure_occurrence",
    "measurement",
    "observation",
    "drug_exposure",
    "death",
    "concept",
)


def adapt(source: Path, out: AdaptedExtract) -> None:
    """Write the seven contract tables from the OMOP CDM folder ``source``."""
    files = _table_files(Path(source))
    for name, spec in TABLES.items():
        _stage(out.con, spec, files.get(name), required=name in REQUIRED_TABLES)
    _concept_views(out.con)
    _patients(out)
    _encounters(out)
    _diagnoses(out)
    _orders(out)
    _measurements(out)
    _observations(out)
    _medications(out)
    _coverage(out, files)


# ---------------------------------------------------------------------------------------------
# Staging: each table once, its mapped columns as text, with file and line.


def _table_files(source: Path) -> dict[str, Path]:
    """table name (lower case) -> its file; CSV and Parquet, any case."""
    found: dict[str, Path] = {}
    for path in sorted(source.iterdir()):
        stem, suffix = path.stem.lower(), path.suffix.lower()
        if path.is_file() and suffix in (".csv", ".parquet") and stem in TABLES:
            if stem in found:
                raise reject(
                    f"{source} holds the OMOP table {stem} twice ({found[stem].name} and "
                    f"{path.name}); keep one"
                )
            found[stem] = path
    return found


def _stage(
    con: duckdb.DuckDBPyConnection, spec: TableSpec, path: Path | None, required: bool
) -> None:
    """Temp table ``omop_<name>`` (origin_file, origin_line, the spec's columns as VARCHAR);
    an absent optional table is staged empty."""
    columns = (*spec.required, *spec.optional)
    if path is None:
        if required:
            raise reject(
                f"the OMOP folder has no {spec.name.upper()} table: export {spec.name.upper()}"
                f".csv (or {spec.name}.parquet) from the CDM beside the other tables"
            )
        typed = ", ".join(f"NULL::VARCHAR AS {c}" for c in columns)
        con.execute(
            f"CREATE TEMP TABLE omop_{spec.name} AS SELECT NULL::VARCHAR AS origin_file, "
            f"NULL::BIGINT AS origin_line, {typed} LIMIT 0"
        )
        return
    scan, line = _scan(path)
    try:
        header = {d[0].lower(): d[0] for d in con.sql(f"SELECT * FROM {scan} LIMIT 0").description}
    except duckdb.Error as exc:
        raise reject(f"{path.name} cannot be read as an OMOP table ({exc})") from None
    missing = [c for c in spec.required if c not in header]
    if missing:
        raise reject(
            f"{path.name} has no column {missing[0]}, which OMOP CDM v5.4 requires in "
            f"{spec.name.upper()}; export the table with its CDM columns"
        )
    selected = ", ".join(
        f"nullif(trim(CAST(\"{header[c]}\" AS VARCHAR)), '') AS {c}"
        if c in header
        else f"NULL::VARCHAR AS {c}"
        for c in columns
    )
    con.execute(
        f"CREATE TEMP TABLE omop_{spec.name} AS SELECT '{path.name}' AS origin_file, "
        f"{line} AS origin_line, {selected} FROM {scan}"
    )


def _scan(path: Path) -> tuple[str, str]:
    """(the table function reading ``path``, the expression of each row's line): a CSV
    record's line is its number + 1 (the header is line 1), a Parquet row's its number + 1."""
    quoted = str(path).replace("'", "''")
    if path.suffix.lower() == ".parquet":
        return f"read_parquet('{quoted}', file_row_number = true)", "file_row_number + 1"
    # File order is kept by DuckDB's scan (insertion order is preserved), so row_number()
    # over it is the record number.
    return (
        f"read_csv('{quoted}', header = true, all_varchar = true)",
        "row_number() OVER () + 1",
    )


def _concept_views(con: duckdb.DuckDBPyConnection) -> None:
    """``concepts``: concept_id (BIGINT) -> code_system, code, class, lower-case name."""
    vocab = ", ".join(f"('{v}', '{s}')" for v, s in VOCABULARIES.items())
    con.execute(
        "CREATE TEMP TABLE concepts AS SELECT TRY_CAST(c.concept_id AS BIGINT) AS concept_id, "
        "coalesce(v.code_system, c.vocabulary_id) AS code_system, c.concept_code AS code, "
        "c.concept_class_id AS concept_class, lower(c.concept_name) AS name "
        f"FROM omop_concept c LEFT JOIN (VALUES {vocab}) v(vocabulary_id, code_system) "
        "USING (vocabulary_id)"
    )


def _id(column: str) -> str:
    """An OMOP integer id as canonical text (``12``, not ``12.0``); 0 and empty are NULL."""
    return f"nullif(coalesce(CAST(TRY_CAST({column} AS BIGINT) AS VARCHAR), {column}), '0')"


def _concept_id(column: str) -> str:
    return f"coalesce(TRY_CAST({column} AS BIGINT), 0)"


def _time(datetime_column: str, date_column: str) -> str:
    """The datetime as given, else the date at midnight (both naive: the manifest's zone)."""
    return f"coalesce({datetime_column}, {date_column} || ' 00:00:00')"


def _end(datetime_column: str, date_column: str, start_date_column: str) -> str:
    """The end datetime, else the end date when it is after the start date. The CDM requires
    an end date (visits, drug exposures) and a record with no known end carries its start date
    there, so an end date on the start day without an end datetime says nothing."""
    after = f"TRY_CAST({date_column} AS DATE) > TRY_CAST({start_date_column} AS DATE)"
    return f"coalesce({datetime_column}, CASE WHEN {after} THEN {date_column} || ' 00:00:00' END)"


def _case(column: str, mapping: dict[int, str], default: str) -> str:
    whens = " ".join(f"WHEN {k} THEN '{v}'" for k, v in mapping.items())
    return f"CASE {_concept_id(column)} {whens} ELSE {default} END"


def _count(con: duckdb.DuckDBPyConnection, query: str) -> int:
    return con.sql(f"SELECT count(*) FROM ({query})").fetchall()[0][0]


# ---------------------------------------------------------------------------------------------
# The canonical tables.


def _patients(out: AdaptedExtract) -> None:
    sex = f"CASE {_concept_id('p.gender_concept_id')} WHEN {MALE} THEN 'M' "
    sex += f"WHEN {FEMALE} THEN 'F' ELSE 'U' END"
    out.write_table(
        "patients",
        f"SELECT {_id('p.person_id')} AS patient_id, p.year_of_birth AS birth_year, "
        f"{sex} AS sex, d.death_date, p.origin_file, p.origin_line FROM omop_person p "
        "LEFT JOIN (SELECT person_id, min(death_date) AS death_date FROM omop_death "
        "GROUP BY person_id) d USING (person_id)",
    )


def _encounters(out: AdaptedExtract) -> None:
    """A visit with no care_site_id is placed at the CDM's source (CDM_SOURCE
    cdm_source_abbreviation: one database, one site), since the contract requires a site."""
    end = _end("v.visit_end_datetime", "v.visit_end_date", "v.visit_start_date")
    source_site = "(SELECT min(cdm_source_abbreviation) FROM omop_cdm_source)"
    out.write_table(
        "encounters",
        f"SELECT {_id('v.visit_occurrence_id')} AS encounter_id, "
        f"{_id('v.person_id')} AS patient_id, "
        f"coalesce({_id('v.care_site_id')}, {source_site}) AS site_id, "
        f"{_id('v.provider_id')} AS clinician_id, "
        f"{_case('v.visit_concept_id', SETTINGS, OTHER_SETTING)} AS setting, "
        f"{_time('v.visit_start_datetime', 'v.visit_start_date')} AS arrival_time, "
        f"{end} AS departure_time, "
        f"{_case('v.discharged_to_concept_id', DISPOSITIONS, 'NULL')} AS disposition, "
        "v.origin_file, v.origin_line FROM omop_visit_occurrence v",
    )
    no_site = _count(out.con, "SELECT * FROM omop_visit_occurrence WHERE care_site_id IS NULL")
    if no_site:
        site = out.con.sql(f"SELECT {source_site}").fetchall()[0][0]
        out.note(
            f"{no_site} VISIT_OCCURRENCE rows have no care_site_id: their site is "
            + (f"the CDM source {site!r}" if site else "missing (no CDM_SOURCE)")
        )


def _diagnoses(out: AdaptedExtract) -> None:
    """The source concept when it is ICD-10-CM (what the site coded), else the standard
    concept; a row with neither is looked up in the site code map by its source value."""
    coded = (
        "SELECT c.*, s.code_system AS s_system, s.code AS s_code, "
        "t.code_system AS t_system, t.code AS t_code FROM omop_condition_occurrence c "
        f"LEFT JOIN concepts s ON s.concept_id = {_concept_id('c.condition_source_concept_id')} "
        f"AND s.concept_id <> 0 LEFT JOIN concepts t ON t.concept_id = "
        f"{_concept_id('c.condition_concept_id')} AND t.concept_id <> 0"
    )
    query = (
        f"SELECT {_id('person_id')} AS patient_id, {_id('visit_occurrence_id')} AS encounter_id,"
        " CASE WHEN s_system = 'ICD10CM' THEN s_system WHEN t_system IS NOT NULL THEN t_system"
        f" WHEN s_system IS NOT NULL THEN s_system ELSE '{CONDITION_SOURCE}' END AS code_system,"
        " CASE WHEN s_system = 'ICD10CM' THEN s_code WHEN t_system IS NOT NULL THEN t_code"
        " WHEN s_system IS NOT NULL THEN s_code ELSE condition_source_value END AS code, "
        f"{_time('condition_start_datetime', 'condition_start_date')} AS recorded_time, "
        "CASE WHEN visit_occurrence_id IS NULL THEN 'problem_list' ELSE 'encounter' END "
        f"AS source, origin_file, origin_line FROM ({coded})"
    )
    out.write_table("diagnoses", out.map_codes(query))


def _orders(out: AdaptedExtract) -> None:
    """Procedures are orders. Category: a concept named as a referral is a referral (its
    specialty read from the name); CPT 70010-79999 imaging; LOINC and CPT 80047-89398 lab;
    anything else a procedure. An 'EHR order' record is ordered, not yet performed; every
    other record is a procedure done, at procedure_datetime."""
    coded = (
        "SELECT p.*, coalesce(CASE WHEN s.code_system IN ('CPT', 'HCPCS') THEN s.code_system "
        f"END, t.code_system, s.code_system, '{PROCEDURE_SOURCE}') AS code_system, "
        "coalesce(CASE WHEN s.code_system IN ('CPT', 'HCPCS') THEN s.code END, t.code, s.code, "
        "p.procedure_source_value) AS code, coalesce(t.name, s.name, '') AS name "
        "FROM omop_procedure_occurrence p "
        f"LEFT JOIN concepts s ON s.concept_id = {_concept_id('p.procedure_source_concept_id')} "
        f"AND s.concept_id <> 0 LEFT JOIN concepts t ON t.concept_id = "
        f"{_concept_id('p.procedure_concept_id')} AND t.concept_id <> 0"
    )
    performed = _time("procedure_datetime", "procedure_date")
    is_order = f"{_concept_id('procedure_type_concept_id')} = {EHR_ORDER}"
    query = (
        f"SELECT {_id('procedure_occurrence_id')} AS order_id, {_id('person_id')} AS patient_id,"
        f" {_id('visit_occurrence_id')} AS encounter_id, code_system, code, name, "
        f"{performed} AS ordered_time, CASE WHEN {is_order} THEN NULL ELSE {performed} END "
        f"AS performed_time, CASE WHEN {is_order} THEN 'ordered' ELSE 'completed' END AS status,"
        f" origin_file, origin_line FROM ({coded})"
    )
    out.write_table(
        "orders",
        f"SELECT * EXCLUDE (name), {_category()} AS category, "
        f"CASE WHEN name LIKE '%referral%' THEN {_specialty()} END AS specialty "
        f"FROM ({out.map_codes(query)})",
    )


def _category() -> str:
    numeric = "TRY_CAST(code AS INTEGER)"
    return (
        "CASE WHEN name LIKE '%referral%' THEN 'referral' "
        f"WHEN code_system = 'CPT' AND {numeric} BETWEEN 70010 AND 79999 THEN 'imaging' "
        f"WHEN code_system = 'LOINC' OR (code_system = 'CPT' AND {numeric} BETWEEN 80047 AND "
        "89398) THEN 'lab' ELSE 'procedure' END"
    )


def _specialty() -> str:
    """A referral's specialty from its concept's name ('Neurosurgical referral', 'Referral to
    vascular surgery service'); names that say none of these are 'other'."""
    return (
        "CASE WHEN name LIKE '%neurosurg%' THEN 'neurosurgery' "
        "WHEN name LIKE '%orthop%' AND name LIKE '%spin%' THEN 'orthopedic_spine' "
        "WHEN name LIKE '%spin%surg%' THEN 'spine_surgery' "
        "WHEN name LIKE '%vascular surg%' THEN 'vascular_surgery' "
        "WHEN name LIKE '%vascular%' THEN 'vascular_medicine' "
        "WHEN name LIKE '%neurolog%' THEN 'neurology' "
        "WHEN name LIKE '%podiatr%' THEN 'podiatry' ELSE 'other' END"
    )


def _finding_result(value_name: str, value_text: str) -> str:
    """A finding's result: the value concept's name or the value text when it says one of
    the contract's results ('not done' = not_done, 'positive'/'yes' = present,
    'negative'/'no' = absent); no value at all = present (a symptom recorded is a symptom
    had). Any other value is passed on, and quarantined by the reader."""
    said = f"replace(lower(coalesce({value_name}, {value_text})), ' ', '_')"
    return (
        f"CASE WHEN {value_name} IS NULL AND {value_text} IS NULL THEN 'present' "
        f"WHEN {said} IN ('positive', 'yes') THEN 'present' "
        f"WHEN {said} IN ('negative', 'no') THEN 'absent' "
        f"WHEN {said} = 'not_performed' THEN 'not_done' ELSE {said} END"
    )


def _measurements(out: AdaptedExtract) -> None:
    """LOINC measurements are labs. Other measurements are findings when their code is one
    of the contract's SNOMED exam concepts or the site code map makes it a LOCAL finding;
    the rest (screening scores, cultures, ...) are left out and counted."""
    coded = (
        "SELECT m.*, coalesce(t.code_system, s.code_system, "
        f"'{MEASUREMENT_SOURCE}') AS code_system, coalesce(t.code, s.code, "
        "m.measurement_source_value) AS code, val.name AS value_name "
        "FROM omop_measurement m "
        f"LEFT JOIN concepts t ON t.concept_id = {_concept_id('m.measurement_concept_id')} "
        "AND t.concept_id <> 0 LEFT JOIN concepts s ON s.concept_id = "
        f"{_concept_id('m.measurement_source_concept_id')} AND s.concept_id <> 0 "
        f"LEFT JOIN concepts val ON val.concept_id = {_concept_id('m.value_as_concept_id')} "
        "AND val.concept_id <> 0"
    )
    out.con.execute(f"CREATE TEMP TABLE coded_measurement AS {out.map_codes(coded)}")
    labs = (
        f"SELECT {_id('person_id')} AS patient_id, {_id('visit_occurrence_id')} AS encounter_id,"
        " code AS loinc, value_as_number AS value_num, CASE WHEN value_as_number IS NULL THEN "
        "coalesce(value_name, value_source_value) END AS value_text, unit_source_value AS unit,"
        f" {_time('measurement_datetime', 'measurement_date')} AS collected_time, origin_file,"
        " origin_line FROM coded_measurement WHERE code_system = 'LOINC'"
    )
    exams = ", ".join(f"'{c}'" for c in SNOMED_EXAM_FINDINGS)
    findings = (
        f"SELECT {_id('person_id')} AS patient_id, {_id('visit_occurrence_id')} AS encounter_id,"
        f" code_system, code, {_finding_result('value_name', 'NULL')} AS result, "
        "value_as_number AS value_num, "
        f"{_time('measurement_datetime', 'measurement_date')} AS recorded_time, origin_file, "
        "origin_line FROM coded_measurement WHERE code_system = 'LOCAL' OR "
        f"(code_system = 'SNOMEDCT' AND code IN ({exams}))"
    )
    out.con.execute(f"CREATE TEMP TABLE measurement_labs AS {labs}")
    out.con.execute(f"CREATE TEMP TABLE measurement_findings AS {findings}")
    total = _count(out.con, "SELECT * FROM coded_measurement")
    kept = _count(out.con, "SELECT * FROM measurement_labs")
    kept += _count(out.con, "SELECT * FROM measurement_findings")
    if total > kept:
        out.note(
            f"{total - kept} MEASUREMENT rows are neither LOINC labs nor exam findings "
            "(screening scores, cultures, ...): left out"
        )


def _observations(out: AdaptedExtract) -> None:
    """SNOMED observations are findings, and so are unmapped ones (concept 0) whose
    observation_source_value the site code map maps; LOINC observations with a value are
    labs. The rest are left out and counted."""
    coded = (
        "SELECT o.*, coalesce(t.code_system, "
        f"'{OBSERVATION_SOURCE}') AS code_system, coalesce(t.code, o.observation_source_value)"
        " AS code, val.name AS value_name FROM omop_observation o "
        f"LEFT JOIN concepts t ON t.concept_id = {_concept_id('o.observation_concept_id')} "
        "AND t.concept_id <> 0 "
        f"LEFT JOIN concepts val ON val.concept_id = {_concept_id('o.value_as_concept_id')} "
        "AND val.concept_id <> 0"
    )
    out.con.execute(f"CREATE TEMP TABLE coded_observation AS {out.map_codes(coded)}")
    time = _time("observation_datetime", "observation_date")
    findings = (
        f"SELECT {_id('person_id')} AS patient_id, {_id('visit_occurrence_id')} AS encounter_id,"
        f" code_system, code, {_finding_result('value_name', 'value_as_string')} AS result, "
        f"value_as_number AS value_num, {time} AS recorded_time, origin_file, origin_line "
        "FROM coded_observation WHERE code_system IN ('SNOMEDCT', 'LOCAL')"
    )
    has_value = "coalesce(value_as_number, value_as_string, value_name) IS NOT NULL"
    labs = (
        f"SELECT {_id('person_id')} AS patient_id, {_id('visit_occurrence_id')} AS encounter_id,"
        " code AS loinc, value_as_number AS value_num, CASE WHEN value_as_number IS NULL THEN "
        "coalesce(value_as_string, value_name) END AS value_text, unit_source_value AS unit, "
        f"{time} AS collected_time, origin_file, origin_line FROM coded_observation "
        f"WHERE code_system = 'LOINC' AND {has_value}"
    )
    out.write_table("findings", f"SELECT * FROM measurement_findings UNION ALL BY NAME {findings}")
    out.write_table("labs", f"SELECT * FROM measurement_labs UNION ALL BY NAME {labs}")
    empty_loinc = _count(
        out.con,
        f"SELECT * FROM coded_observation WHERE code_system = 'LOINC' AND NOT ({has_value})",
    )
    other = _count(
        out.con,
        "SELECT * FROM coded_observation WHERE code_system NOT IN ('SNOMEDCT', 'LOCAL', 'LOINC')",
    )
    if empty_loinc:
        out.note(f"{empty_loinc} LOINC OBSERVATION rows carry no value: left out")
    if other:
        out.note(
            f"{other} OBSERVATION rows are neither SNOMED CT nor mapped by the site code map "
            f"(source system {OBSERVATION_SOURCE}) nor LOINC: left out"
        )


# ---------------------------------------------------------------------------------------------
# Medications: one row per (drug record, ingredient).


def _medications(out: AdaptedExtract) -> None:
    con = out.con
    con.execute(
        "CREATE TEMP TABLE drugs AS SELECT d.*, "
        f"{_concept_id('d.drug_concept_id')} AS drug_id, "
        "CASE WHEN c.code_system = 'RXNORM' THEN c.code END AS rxnorm FROM omop_drug_exposure d "
        f"LEFT JOIN concepts c ON c.concept_id = {_concept_id('d.drug_concept_id')} "
        "AND c.concept_id <> 0"
    )
    con.execute(f"CREATE TEMP TABLE drug_ingredients AS {_ingredient_lookup()}")
    ingredients = (
        "SELECT i.*, count(*) OVER (PARTITION BY i.drug_exposure_id) AS n FROM drug_ingredients i"
    )
    per_day = (
        "CASE WHEN TRY_CAST(d.quantity AS DOUBLE) > 0 AND TRY_CAST(d.days_supply AS DOUBLE) > 0 "
        "THEN round(TRY_CAST(d.quantity AS DOUBLE) / TRY_CAST(d.days_supply AS DOUBLE), 6) END"
    )
    end = _end(
        "d.drug_exposure_end_datetime", "d.drug_exposure_end_date", "d.drug_exposure_start_date"
    )
    out.write_table(
        "medications",
        f"SELECT {_id('d.drug_exposure_id')} || CASE WHEN i.n > 1 THEN '-' || "
        "replace(i.ingredient, ' ', '_') ELSE '' END AS medication_id, "
        f"{_id('d.person_id')} AS patient_id, {_id('d.visit_occurrence_id')} AS encounter_id, "
        "i.ingredient, d.rxnorm, i.dose_mg, "
        f"{per_day} AS doses_per_day, d.route_source_value AS route, "
        f"{_time('d.drug_exposure_start_datetime', 'd.drug_exposure_start_date')} AS start_time,"
        f" {end} AS end_time, CASE WHEN d.stop_reason IS NOT NULL THEN 'stopped' ELSE "
        "'completed' END AS status, d.origin_file, d.origin_line FROM drugs d "
        f"JOIN ({ingredients}) i USING (drug_exposure_id)",
    )
    _note_unmapped_drugs(out)


def _ingredient_lookup() -> str:
    """(drug_exposure_id, ingredient, dose_mg, how): the first of these that names any
    ingredient — the drug concept itself when it is an Ingredient; its Ingredient ancestors
    (CONCEPT_ANCESTOR); its 'RxNorm has ing' relations (CONCEPT_RELATIONSHIP); the shared
    RxNorm map on its RxNorm code or, failing that, on drug_source_value. Doses: DRUG_STRENGTH's
    amount in mg, else the map's strength for that drug and ingredient."""
    by_vocabulary = (
        "SELECT d.drug_exposure_id, d.drug_id, d.rxnorm AS map_code, i.concept_id AS "
        "ingredient_id, i.name AS ingredient, {rank} AS rank FROM drugs d {join} "
        "JOIN concepts i ON i.concept_id = {ingredient} AND i.concept_class = 'Ingredient'"
    )
    itself = by_vocabulary.format(rank=1, join="", ingredient="d.drug_id")
    ancestors = by_vocabulary.format(
        rank=2,
        join="JOIN omop_concept_ancestor a ON TRY_CAST(a.descendant_concept_id AS BIGINT) = "
        "d.drug_id",
        ingredient="TRY_CAST(a.ancestor_concept_id AS BIGINT)",
    )
    relations = by_vocabulary.format(
        rank=3,
        join="JOIN omop_concept_relationship r ON TRY_CAST(r.concept_id_1 AS BIGINT) = "
        "d.drug_id AND r.relationship_id = 'RxNorm has ing'",
        ingredient="TRY_CAST(r.concept_id_2 AS BIGINT)",
    )
    mapped = (
        "SELECT d.drug_exposure_id, d.drug_id, m.rxnorm AS map_code, NULL::BIGINT AS "
        f"ingredient_id, m.ingredient, {{rank}} AS rank FROM drugs d JOIN {RXNORM_INGREDIENTS} m "
        "ON m.rxnorm = d.{column}"
    )
    on_code = mapped.format(rank=4, column="rxnorm")
    on_source = mapped.format(rank=5, column="drug_source_value")
    found = " UNION ALL ".join((itself, ancestors, relations, on_code, on_source))
    first = (
        f"SELECT DISTINCT * FROM ({found}) "
        "QUALIFY rank = min(rank) OVER (PARTITION BY drug_exposure_id)"
    )
    strength = (
        "SELECT TRY_CAST(drug_concept_id AS BIGINT) AS drug_id, TRY_CAST(ingredient_concept_id "
        "AS BIGINT) AS ingredient_id, min(TRY_CAST(amount_value AS DOUBLE)) AS amount_mg "
        f"FROM omop_drug_strength WHERE {_concept_id('amount_unit_concept_id')} = {MILLIGRAM} "
        "GROUP BY ALL"
    )
    return (
        "SELECT f.drug_exposure_id, f.ingredient, coalesce(s.amount_mg, m.strength_mg) AS "
        f"dose_mg FROM ({first}) f LEFT JOIN ({strength}) s ON s.drug_id = f.drug_id AND "
        f"s.ingredient_id = f.ingredient_id LEFT JOIN {RXNORM_INGREDIENTS} m "
        "ON m.rxnorm = f.map_code AND m.ingredient = f.ingredient"
    )


def _note_unmapped_drugs(out: AdaptedExtract) -> None:
    unmapped = (
        "SELECT coalesce(rxnorm, drug_source_value, CAST(drug_id AS VARCHAR)) AS code "
        "FROM drugs WHERE drug_exposure_id NOT IN (SELECT drug_exposure_id FROM "
        "drug_ingredients)"
    )
    rows = out.con.sql(
        f"SELECT count(*), count(DISTINCT code), list(DISTINCT code ORDER BY code)[:10] "
        f"FROM ({unmapped})"
    ).fetchall()[0]
    if rows[0]:
        shown = ", ".join(rows[2]) + (", ..." if rows[1] > 10 else "")
        out.note(
            f"{rows[0]} drug records ({rows[1]} codes) have no ingredient in CONCEPT_ANCESTOR, "
            f"CONCEPT_RELATIONSHIP or the RxNorm map: left out ({shown})"
        )


# ---------------------------------------------------------------------------------------------
# Coverage.


def _coverage(out: AdaptedExtract, files: dict[str, Path]) -> None:
    """OBSERVATION_PERIOD's first start and last end; CDM_SOURCE's source_release_date as the
    extract's creation. OMOP datetimes are naive: the time zone is the contract's default
    (UTC) unless a manifest.json beside the tables names one."""
    start, end = out.con.sql(
        "SELECT min(TRY_CAST(observation_period_start_date AS DATE)), "
        "max(TRY_CAST(observation_period_end_date AS DATE)) FROM omop_observation_period"
    ).fetchall()[0]
    released = out.con.sql(
        "SELECT max(TRY_CAST(source_release_date AS DATE)) FROM omop_cdm_source"
    ).fetchall()[0][0]
    how = []
    if start is not None and end is not None:
        out.coverage.start, out.coverage.end = start, end
        how.append(
            f"coverage {start} to {end} from {files['observation_period'].name} (first "
            "observation_period_start_date, last observation_period_end_date)"
        )
    else:
        how.append("no OBSERVATION_PERIOD rows: coverage is taken from the encounters")
    if isinstance(released, date):
        out.coverage.created = released.isoformat()
        how.append(f"created {released} from {files['cdm_source'].name} source_release_date")
    how.append("OMOP datetimes are naive: read in the manifest's time zone (UTC when none)")
    out.coverage.how = "; ".join(how)
