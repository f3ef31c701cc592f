"""The OMOP CDM v5.4 adapter (sources/omop.py) on hand-written CDM folders (tests/sources/
omop_cdm.py: every column of each table, in CDM order), and the round trip contract -> OMOP
(sample_data/formats/omop.py) -> contract."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import polars as pl
import pytest

from chartaudit.sample_data.formats.omop import ID_MAP_FILE, SITE_CODE_MAP_FILE, write_omop
from chartaudit.schemas.errors import ExtractRejected
from chartaudit.schemas.validation import load_extract
from chartaudit.sources.adapt import adapt_source
from chartaudit.sources.provenance import read_provenance, to_source_lines
from tests.sources.omop_cdm import write_cdm

SNOMED, ICD, LOINC, CPT, RXNORM, SITE = "SNOMED", "ICD10CM", "LOINC", "CPT4", "RxNorm", "Site"


def concept(concept_id: int, vocabulary: str, code: str, name: str = "", cls: str = "") -> dict:
    return {
        "concept_id": concept_id,
        "concept_name": name or f"{vocabulary} {code}",
        "domain_id": "Condition",
        "vocabulary_id": vocabulary,
        "concept_class_id": cls or "Clinical Finding",
        "standard_concept": "S",
        "concept_code": code,
        "valid_start_date": "1970-01-01",
        "valid_end_date": "2099-12-31",
    }


CONCEPTS = [
    concept(201826, SNOMED, "44054006", "Type 2 diabetes mellitus"),
    concept(45576876, ICD, "E11.9", "Type 2 diabetes mellitus without complications"),
    concept(3004410, LOINC, "4548-4", "Hemoglobin A1c"),
    concept(3000963, LOINC, "2276-4", "Ferritin"),
    concept(2211361, CPT, "72148", "MRI lumbar spine without contrast"),
    concept(2313865, CPT, "93922", "Limited bilateral noninvasive physiologic studies"),
    concept(4146536, SNOMED, "183546007", "Neurosurgical referral", "Procedure"),
    concept(2000000001, SITE, "vasc", "Referral to vascular surgery service", "Procedure"),
    concept(4181306, SNOMED, "134388005", "Monofilament foot sensation test", "Procedure"),
    concept(4012345, SNOMED, "160903007", "Full-time employment"),
    concept(40163924, RXNORM, "483438", "pregabalin 100 MG Oral Capsule", "Clinical Drug"),
    concept(1589505, RXNORM, "187832", "pregabalin", "Ingredient"),
    concept(40000001, RXNORM, "900001", "ropinirole 0.25 MG Oral Tablet", "Clinical Drug"),
    concept(40000002, RXNORM, "72302", "ropinirole", "Ingredient"),
    concept(40000003, RXNORM, "900002", "pramipexole 0.125 MG Oral Tablet", "Clinical Drug"),
    concept(40000004, RXNORM, "746741", "pramipexole", "Ingredient"),
    concept(40000005, RXNORM, "900003", "acetaminophen 325 MG / oxycodone 5 MG", "Clinical Drug"),
    concept(40000006, RXNORM, "161", "acetaminophen", "Ingredient"),
    concept(40000007, RXNORM, "7804", "oxycodone", "Ingredient"),
    concept(40000008, RXNORM, "999999", "unknown drug", "Clinical Drug"),
    concept(8576, "UCUM", "mg", "milligram", "Unit"),
]


def person(pid: int, gender: int, year: int) -> dict:
    return {"person_id": pid, "gender_concept_id": gender, "year_of_birth": year,
            "race_concept_id": 0, "ethnicity_concept_id": 0}  # fmt: skip


def visit(vid: int, pid: int, concept_id: int, start: str, **more) -> dict:
    return {"visit_occurrence_id": vid, "person_id": pid, "visit_concept_id": concept_id,
            "visit_start_date": start[:10], "visit_start_datetime": start,
            "visit_end_date": start[:10], "visit_type_concept_id": 32817, **more}  # fmt: skip


def base_tables() -> dict[str, list[dict]]:
    """One woman seen once in the ED: the tables a CDM export always has."""
    return {
        "PERSON": [person(1, 8532, 1960)],
        "VISIT_OCCURRENCE": [visit(10, 1, 9203, "2026-10-05 08:00:00")],
        "CONDITION_OCCURRENCE": [],
        "PROCEDURE_OCCURRENCE": [],
        "MEASUREMENT": [],
        "OBSERVATION": [],
        "DRUG_EXPOSURE": [],
        "DEATH": [],
        "CONCEPT": CONCEPTS,
        "CDM_SOURCE": [{"cdm_source_abbreviation": "HOSP", "source_release_date": "2026-11-01"}],
    }


def adapt(tmp_path: Path, tables: dict, code_map: list[str] | None = None):
    source = write_cdm(tmp_path / "omop", tables)
    map_file = None
    if code_map is not None:
        map_file = tmp_path / "codes.csv"
        map_file.write_text("\n".join(["source_system,source_code,code_system,code", *code_map]))
    folder, report = adapt_source(source, "omop", tmp_path / "adapted", map_file)
    return folder, report


def rows(folder: Path, table: str, *columns: str) -> list[tuple]:
    frame = pl.read_parquet(folder / f"{table}.parquet")
    return sorted(frame.select(columns).rows(), key=str)


def test_gender_visit_concept_and_discharge_map_to_sex_setting_and_disposition(tmp_path):
    tables = base_tables()
    tables["PERSON"] = [person(1, 8532, 1960), person(2, 8507, 1955), person(3, 0, 1950)]
    tables["DEATH"] = [{"person_id": 2, "death_date": "2026-10-20"}]
    tables["VISIT_OCCURRENCE"] = [
        visit(1, 1, 9201, "2026-10-01 08:00:00", discharged_to_concept_id=8536),
        visit(2, 1, 9203, "2026-10-02 08:00:00", discharged_to_concept_id=8717),
        visit(3, 1, 262, "2026-10-03 08:00:00", discharged_to_concept_id=8863),
        visit(4, 1, 9202, "2026-10-04 08:00:00", discharged_to_concept_id=0),
        visit(5, 1, 581477, "2026-10-05 08:00:00"),
        visit(6, 1, 8782, "2026-10-06 08:00:00", care_site_id=7),
        visit(7, 1, 5083, "2026-10-07 08:00:00", provider_id=33),
        visit(8, 2, 581476, "2026-10-08 08:00:00", discharged_to_concept_id=4216643),
        # date only: arrival at midnight; an end date after the start is the departure
        {
            **visit(9, 2, 9201, "2026-10-09"),
            "visit_start_datetime": "",
            "visit_end_date": "2026-10-11",
        },
    ]
    folder, report = adapt(tmp_path, tables)
    assert rows(folder, "patients", "patient_id", "birth_year", "sex", "death_date") == [
        ("1", "1960", "F", None),
        ("2", "1955", "M", "2026-10-20"),
        ("3", "1950", "U", None),
    ]
    columns = ("encounter_id", "site_id", "clinician_id", "setting", "arrival_time",
               "departure_time", "disposition")  # fmt: skip
    assert rows(folder, "encounters", *columns) == [
        ("1", "HOSP", None, "inpatient", "2026-10-01 08:00:00", None, "discharged"),
        ("2", "HOSP", None, "emergency", "2026-10-02 08:00:00", None, "admitted"),
        ("3", "HOSP", None, "emergency", "2026-10-03 08:00:00", None, "transferred"),
        ("4", "HOSP", None, "outpatient", "2026-10-04 08:00:00", None, None),
        ("5", "HOSP", None, "outpatient", "2026-10-05 08:00:00", None, None),
        ("6", "7", None, "urgent_care", "2026-10-06 08:00:00", None, None),
        ("7", "HOSP", "33", "telehealth", "2026-10-07 08:00:00", None, None),
        ("8", "HOSP", None, "other", "2026-10-08 08:00:00", None, "died"),
        ("9", "HOSP", None, "inpatient", "2026-10-09 00:00:00", "2026-10-11 00:00:00", None),
    ]
    assert report.notes[0] == (
        "8 VISIT_OCCURRENCE rows have no care_site_id: their site is the CDM source 'HOSP'"
    )


def test_a_diagnosis_is_its_icd10cm_source_code_else_its_standard_concept(tmp_path):
    tables = base_tables()

    def condition(cid: int, standard: int, source: int, value: str, visit_id="10") -> dict:
        return {"condition_occurrence_id": cid, "person_id": 1, "condition_concept_id": standard,
                "condition_start_date": "2026-10-05", "condition_start_datetime":
                "2026-10-05 08:10:00", "condition_type_concept_id": 32817,
                "visit_occurrence_id": visit_id, "condition_source_value": value,
                "condition_source_concept_id": source}  # fmt: skip

    tables["CONDITION_OCCURRENCE"] = [
        condition(1, 201826, 45576876, "E11.9"),  # SNOMED standard, ICD-10-CM source
        condition(2, 201826, 201826, "44054006"),  # SNOMED both
        condition(3, 201826, 0, "", visit_id=""),  # standard only, no visit: problem list
        condition(4, 0, 0, "DM2-LOCAL"),  # unmapped: through the site code map
        condition(5, 0, 0, "NOT-MAPPED"),
    ]
    folder, _ = adapt(tmp_path, tables, ["OMOP:condition_source_value,DM2-LOCAL,ICD10CM,E11.9"])
    assert rows(folder, "diagnoses", "code_system", "code", "encounter_id", "source") == [
        ("ICD10CM", "E11.9", "10", "encounter"),
        ("ICD10CM", "E11.9", "10", "encounter"),
        ("OMOP:condition_source_value", "NOT-MAPPED", "10", "encounter"),
        ("SNOMEDCT", "44054006", "10", "encounter"),
        ("SNOMEDCT", "44054006", None, "problem_list"),
    ]


def procedure(pid: int, concept_id: int, when: str, type_id: int = 32817, value: str = ""):
    return {"procedure_occurrence_id": pid, "person_id": 1, "procedure_concept_id": concept_id,
            "procedure_date": when[:10], "procedure_datetime": when,
            "procedure_type_concept_id": type_id, "visit_occurrence_id": 10,
            "procedure_source_value": value, "procedure_source_concept_id": concept_id}  # fmt: skip


def test_procedures_become_orders_with_a_category_status_and_referral_specialty(tmp_path):
    tables = base_tables()
    tables["PROCEDURE_OCCURRENCE"] = [
        procedure(1, 2211361, "2026-10-05 09:00:00"),  # CPT 72148: imaging, done
        procedure(2, 2211361, "2026-10-05 09:30:00", type_id=32833),  # an EHR order
        procedure(3, 2313865, "2026-10-05 10:00:00"),  # CPT 93922: a procedure
        procedure(4, 4146536, "2026-10-05 10:30:00"),  # SNOMED neurosurgical referral
        procedure(5, 2000000001, "2026-10-05 11:00:00"),  # site concept: vascular surgery
        procedure(6, 0, "2026-10-05 11:30:00", value="FOOTEXAM"),  # site code, mapped
    ]
    folder, _ = adapt(tmp_path, tables, ["OMOP:procedure_source_value,FOOTEXAM,HCPCS,G9226"])
    columns = ("order_id", "code_system", "code", "category", "specialty", "ordered_time",
               "performed_time", "status")  # fmt: skip
    t = "2026-10-05 "
    assert rows(folder, "orders", *columns) == [
        ("1", "CPT", "72148", "imaging", None, t + "09:00:00", t + "09:00:00", "completed"),
        ("2", "CPT", "72148", "imaging", None, t + "09:30:00", None, "ordered"),
        ("3", "CPT", "93922", "procedure", None, t + "10:00:00", t + "10:00:00", "completed"),
        ("4", "SNOMEDCT", "183546007", "referral", "neurosurgery", t + "10:30:00",
         t + "10:30:00", "completed"),
        ("5", "Site", "vasc", "referral", "vascular_surgery", t + "11:00:00", t + "11:00:00",
         "completed"),
        ("6", "HCPCS", "G9226", "procedure", None, t + "11:30:00", t + "11:30:00", "completed"),
    ]  # fmt: skip


def observation(oid: int, concept_id: int, source_value: str = "", **value) -> dict:
    return {"observation_id": oid, "person_id": 1, "observation_concept_id": concept_id,
            "observation_date": "2026-10-05", "observation_datetime": "2026-10-05 08:20:00",
            "observation_type_concept_id": 32817, "visit_occurrence_id": 10,
            "observation_source_value": source_value, **value}  # fmt: skip


def test_observations_and_measurements_become_findings_and_labs_and_the_rest_is_counted(
    tmp_path,
):
    tables = base_tables()
    tables["OBSERVATION"] = [
        observation(1, 0, "FS-SADDLE"),  # a site flowsheet row, no value: present
        observation(2, 0, "FS-MONO", value_as_string="abnormal"),
        observation(3, 0, "FS-MONO", value_as_string="not done"),
        observation(4, 0, "FS-UNKNOWN", value_as_string="yes"),  # not in the map: left out
        observation(5, 4012345),  # SNOMED: a finding, present
        observation(6, 4181306, value_as_string="Negative"),  # SNOMED: absent
        observation(7, 3004410, value_as_number=7.9),  # LOINC with a value: a lab
        observation(8, 3004410),  # LOINC, no value: left out
    ]

    def measurement(mid: int, concept_id: int, **value) -> dict:
        return {"measurement_id": mid, "person_id": 1, "measurement_concept_id": concept_id,
                "measurement_date": "2026-10-05", "measurement_datetime": "2026-10-05 08:30:00",
                "measurement_type_concept_id": 32817, "visit_occurrence_id": 10,
                **value}  # fmt: skip

    tables["MEASUREMENT"] = [
        measurement(1, 3000963, value_as_number=30, unit_source_value="ng/mL"),
        measurement(2, 4181306, value_as_concept_id=0),  # SNOMED exam, no value: present
        measurement(3, 4012345),  # SNOMED, not an exam concept: left out
    ]
    code_map = [
        "OMOP:observation_source_value,FS-SADDLE,LOCAL,saddle_anesthesia",
        "OMOP:observation_source_value,FS-MONO,LOCAL,monofilament_10g",
    ]
    folder, report = adapt(tmp_path, tables, code_map)
    assert rows(folder, "findings", "code_system", "code", "result", "recorded_time") == [
        ("LOCAL", "monofilament_10g", "abnormal", "2026-10-05 08:20:00"),
        ("LOCAL", "monofilament_10g", "not_done", "2026-10-05 08:20:00"),
        ("LOCAL", "saddle_anesthesia", "present", "2026-10-05 08:20:00"),
        ("SNOMEDCT", "134388005", "absent", "2026-10-05 08:20:00"),
        ("SNOMEDCT", "134388005", "present", "2026-10-05 08:30:00"),
        ("SNOMEDCT", "160903007", "present", "2026-10-05 08:20:00"),
    ]
    assert rows(folder, "labs", "loinc", "value_num", "unit", "collected_time") == [
        ("2276-4", "30", "ng/mL", "2026-10-05 08:30:00"),
        ("4548-4", "7.9", None, "2026-10-05 08:20:00"),
    ]
    assert report.notes[1:4] == [
        "1 MEASUREMENT rows are neither LOINC labs nor exam findings (screening scores, "
        "cultures, ...): left out",
        "1 LOINC OBSERVATION rows carry no value: left out",
        "1 OBSERVATION rows are neither SNOMED CT nor mapped by the site code map (source "
        "system OMOP:observation_source_value) nor LOINC: left out",
    ]


def drug(did: int, concept_id: int, source_value: str, **more) -> dict:
    return {"drug_exposure_id": did, "person_id": 1, "drug_concept_id": concept_id,
            "drug_exposure_start_date": "2026-10-05",
            "drug_exposure_start_datetime": "2026-10-05 09:00:00",
            "drug_exposure_end_date": "2026-10-05", "drug_type_concept_id": 32817,
            "visit_occurrence_id": 10, "drug_source_value": source_value, **more}  # fmt: skip


def test_ingredients_come_from_concept_ancestor_then_concept_relationship_then_the_map(tmp_path):
    tables = base_tables()
    tables["DRUG_EXPOSURE"] = [
        # ropinirole: an ancestor AND a (contradicting) relation: the ancestor wins
        drug(1, 40000001, "900001", quantity=21, days_supply=7, stop_reason="side effects",
             drug_exposure_end_date="2026-10-12", drug_exposure_end_datetime=""),
        drug(2, 40000003, "900002"),  # pramipexole: relation only
        drug(3, 40163924, "483438"),  # pregabalin: the RxNorm map only (code and dose)
        drug(4, 0, "483438"),  # no concept: the map on drug_source_value
        drug(5, 40000005, "900003"),  # two ingredient ancestors: two rows
        drug(6, 40000008, "999999"),  # nowhere: counted
    ]  # fmt: skip
    tables["CONCEPT_ANCESTOR"] = [
        {"ancestor_concept_id": a, "descendant_concept_id": d, "min_levels_of_separation": 1,
         "max_levels_of_separation": 1}
        for a, d in ((40000002, 40000001), (40000006, 40000005), (40000007, 40000005))
    ]  # fmt: skip
    tables["CONCEPT_RELATIONSHIP"] = [
        {"concept_id_1": d, "concept_id_2": i, "relationship_id": "RxNorm has ing",
         "valid_start_date": "1970-01-01", "valid_end_date": "2099-12-31"}
        for d, i in ((40000001, 40000004), (40000003, 40000004))
    ]  # fmt: skip
    tables["DRUG_STRENGTH"] = [
        {"drug_concept_id": d, "ingredient_concept_id": i, "amount_value": v,
         "amount_unit_concept_id": 8576, "valid_start_date": "1970-01-01",
         "valid_end_date": "2099-12-31"}
        for d, i, v in ((40000001, 40000002, 0.25), (40000005, 40000006, 325),
                        (40000005, 40000007, 5))
    ]  # fmt: skip
    folder, report = adapt(tmp_path, tables)
    columns = ("medication_id", "ingredient", "rxnorm", "dose_mg", "doses_per_day", "end_time",
               "status")  # fmt: skip
    assert rows(folder, "medications", *columns) == [
        ("1", "ropinirole", "900001", 0.25, 3.0, "2026-10-12 00:00:00", "stopped"),
        ("2", "pramipexole", "900002", None, None, None, "completed"),
        ("3", "pregabalin", "483438", 100.0, None, None, "completed"),
        ("4", "pregabalin", None, 100.0, None, None, "completed"),
        ("5-acetaminophen", "acetaminophen", "900003", 325.0, None, None, "completed"),
        ("5-oxycodone", "oxycodone", "900003", 5.0, None, None, "completed"),
    ]
    assert report.notes[-2] == (
        "1 drug records (1 codes) have no ingredient in CONCEPT_ANCESTOR, CONCEPT_RELATIONSHIP "
        "or the RxNorm map: left out (999999)"
    )


def test_a_missing_required_table_is_one_line_naming_it_and_the_fix(tmp_path):
    tables = base_tables()
    del tables["CONCEPT"]
    with pytest.raises(ExtractRejected) as raised:
        adapt(tmp_path, tables)
    assert str(raised.value) == (
        "extract rejected: the OMOP folder has no CONCEPT table: export CONCEPT.csv (or "
        "concept.parquet) from the CDM beside the other tables"
    )


def test_a_missing_required_column_is_one_line_naming_file_and_column(tmp_path):
    source = write_cdm(tmp_path / "omop", base_tables())
    person_csv = source / "PERSON.csv"
    lines = person_csv.read_text().splitlines()
    person_csv.write_text("\n".join(line.replace("year_of_birth", "yob") for line in lines))
    with pytest.raises(ExtractRejected) as raised:
        adapt_source(source, "omop", tmp_path / "adapted")
    assert str(raised.value) == (
        "extract rejected: PERSON.csv has no column year_of_birth, which OMOP CDM v5.4 "
        "requires in PERSON; export the table with its CDM columns"
    )


def test_a_quarantined_row_names_the_omop_file_and_line(tmp_path):
    tables = base_tables()
    tables["VISIT_OCCURRENCE"].append(visit(11, 1, 9202, "2026-10-06 09:00:00"))
    tables["VISIT_OCCURRENCE"].append(visit(12, 1, 9202, "2026-13-45 09:00:00"))
    folder, _ = adapt(tmp_path, tables)
    validated = load_extract(folder)
    quarantine = to_source_lines(validated.quarantine, read_provenance(folder))
    assert quarantine.select("table_name", "source_file", "source_line", "column_name").rows() == [
        ("encounters", "VISIT_OCCURRENCE.csv", 4, "arrival_time")
    ]


def test_parquet_tables_named_in_lower_case_give_the_same_extract(tmp_path):
    tables = base_tables()
    tables["CONDITION_OCCURRENCE"] = [
        {
            "condition_occurrence_id": 1,
            "person_id": 1,
            "condition_concept_id": 201826,
            "condition_start_date": "2026-10-05",
            "condition_type_concept_id": 32817,
            "visit_occurrence_id": 10,
        }
    ]
    csv_folder, _ = adapt(tmp_path / "csv", tables)
    parquet = tmp_path / "parquet"
    parquet.mkdir()
    with duckdb.connect() as con:
        for path in (tmp_path / "csv" / "omop").iterdir():
            con.execute(
                f"COPY (SELECT * FROM read_csv('{path}', header = true)) TO "
                f"'{parquet / (path.stem.lower() + '.parquet')}' (FORMAT parquet)"
            )
    parquet_folder, report = adapt_source(parquet, "auto", tmp_path / "adapted-parquet")
    assert report.format == "omop"
    for table in ("patients", "encounters", "diagnoses"):
        a = pl.read_parquet(csv_folder / f"{table}.parquet")
        b = pl.read_parquet(parquet_folder / f"{table}.parquet")
        assert a.rows() == b.rows()
    lines = pl.read_parquet(parquet_folder / "_provenance.parquet")
    assert lines.filter(pl.col("table_name") == "diagnoses").select(
        "origin_file", "origin_line"
    ).rows() == [("condition_occurrence.parquet", 1)]


# ---------------------------------------------------------------------------------------------
# Round trip: a contract extract written as OMOP and adapted back gives the same rows.

ROUND_TRIP = {
    "patients": [
        "patient_id,birth_year,sex,death_date",
        "PT01,1950,F,",
        "PT02,1944,M,2026-10-20",
    ],
    "encounters": [
        "encounter_id,patient_id,site_id,department,clinician_id,setting,arrival_time,"
        "departure_time,disposition",
        "EN01,PT01,SITE-A,,CL1,emergency,2026-10-03 22:15,2026-10-04 03:00,admitted",
        "EN02,PT01,SITE-A,,CL2,inpatient,2026-10-04 03:10,2026-10-08 11:00,discharged",
        "EN03,PT02,SITE-B,,CL2,outpatient,2026-09-01 10:00,2026-09-01 10:30,",
        "EN04,PT02,SITE-B,,CL3,telehealth,2026-10-02 15:00,,",
        "EN05,PT02,SITE-B,,CL3,urgent_care,2026-10-18 07:00,2026-10-18 09:00,died",
        "EN06,PT02,SITE-A,,,other,2026-10-10 12:00,,transferred",
    ],
    "diagnoses": [
        "patient_id,encounter_id,code_system,code,recorded_time,source",
        "PT01,EN01,ICD10CM,G83.4,2026-10-03 22:40,encounter",
        "PT01,,SNOMEDCT,44054006,2020-01-15 00:00,problem_list",
        "PT02,EN03,ICD10CM,E11.42,2026-09-01 10:05,encounter",
    ],
    "findings": [
        "patient_id,encounter_id,code_system,code,result,value_num,recorded_time",
        "PT01,EN01,LOCAL,saddle_anesthesia,present,,2026-10-03 22:30",
        "PT01,EN01,LOCAL,perianal_sensation,abnormal,,2026-10-03 22:35",
        "PT02,EN03,LOCAL,monofilament_10g,not_done,,2026-09-01 10:10",
        "PT02,EN03,SNOMEDCT,134388005,normal,,2026-09-01 10:12",
        "PT02,EN04,LOCAL,vascular_claudication,absent,,2026-10-02 15:10",
        "PT02,EN05,SNOMEDCT,401221002,abnormal,0.72,2026-10-18 07:30",
    ],
    "orders": [
        "order_id,patient_id,encounter_id,code_system,code,category,specialty,ordered_time,"
        "performed_time,status",
        "OR01,PT01,EN01,CPT,72148,imaging,,2026-10-04 01:00,2026-10-04 01:00,completed",
        "OR02,PT01,EN01,LOCAL,spine_referral,referral,neurosurgery,2026-10-03 23:00,,ordered",
        "OR03,PT01,EN02,LOCAL,spine_referral,referral,orthopedic_spine,2026-10-05 09:00,"
        "2026-10-05 09:00,completed",
        "OR04,PT02,EN05,CPT,93922,procedure,,2026-10-18 08:00,2026-10-18 08:00,completed",
        "OR05,PT02,EN05,LOCAL,vascular_referral,referral,vascular_surgery,2026-10-18 08:30,,"
        "ordered",
        "OR06,PT02,EN03,HCPCS,G9226,procedure,,2026-09-01 10:20,2026-09-01 10:20,completed",
        "OR07,PT02,EN04,CPT,72148,imaging,,2026-10-02 15:20,,ordered",
        "OR08,PT02,EN04,LOCAL,gait_study,procedure,,2026-10-02 15:25,2026-10-02 15:25,completed",
    ],
    "labs": [
        "patient_id,encounter_id,loinc,value_num,value_text,unit,collected_time,resulted_time",
        "PT02,EN03,4548-4,7.9,,%,2026-09-01 10:15,",
        "PT02,EN03,56888-1,,negative,,2026-09-01 10:15,",
        "PT01,,2276-4,30,,ng/mL,2026-10-06 06:00,",
    ],
    "medications": [
        "medication_id,patient_id,encounter_id,ingredient,rxnorm,dose_mg,doses_per_day,route,"
        "start_time,end_time,status",
        "RX01,PT02,EN03,pregabalin,483438,100,2,oral,2026-09-01 10:25,2026-09-29 10:25,completed",
        "RX02,PT02,EN05,ropinirole,,0.25,,oral,2026-10-18 08:40,,completed",
        "RX03,PT01,EN02,oxycodone,1049683,10,4,,2026-10-05 12:00,2026-10-08 12:00,stopped",
    ],
}
ROUND_TRIP_MANIFEST = {
    "extract_id": "omop-round-trip",
    "timezone": "America/Chicago",
    "coverage_start": "2025-10-01",
    "coverage_end": "2026-10-31",
    "created": "2026-11-02T06:00:00Z",
}
# Contract id -> the OMOP id kind the writer gave it.
ID_COLUMNS = {
    "patient_id": "person",
    "encounter_id": "visit",
    "order_id": "procedure",
    "medication_id": "drug_exposure",
    "site_id": "care_site",
    "clinician_id": "provider",
}


def write_contract(folder: Path, tables: dict[str, list[str]], manifest: dict) -> Path:
    folder.mkdir(parents=True)
    for table, lines in tables.items():
        (folder / f"{table}.csv").write_text("\n".join(lines) + "\n")
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def canonical(folder: Path, id_map: pl.DataFrame | None = None) -> dict[str, set[tuple]]:
    """Each loaded table as a set of rows (typed, time zone applied), ids as the OMOP ones."""
    validated = load_extract(folder)
    assert validated.quarantine.height == 0, validated.quarantine
    tables = {}
    for table, frame in validated.tables.items():
        frame = frame.drop("source_line")
        for column, kind in ID_COLUMNS.items():
            if id_map is not None and column in frame.columns:
                ids = id_map.filter(pl.col("kind") == kind).select(
                    pl.col("contract_id").alias(column), pl.col("omop_id").cast(pl.Utf8)
                )
                frame = (
                    frame.join(ids, on=column, how="left")
                    .with_columns(pl.col("omop_id").alias(column))
                    .drop("omop_id")
                )
        tables[table] = set(frame.select(sorted(frame.columns)).rows())
    return tables


def test_a_contract_extract_written_as_omop_adapts_back_to_the_same_rows(tmp_path):
    contract = write_contract(tmp_path / "contract", ROUND_TRIP, ROUND_TRIP_MANIFEST)
    write_omop(contract, tmp_path / "omop")
    id_map = pl.read_csv(tmp_path / "omop" / ID_MAP_FILE, infer_schema=False)
    folder, report = adapt_source(
        tmp_path / "omop", "auto", tmp_path / "adapted", tmp_path / "omop" / SITE_CODE_MAP_FILE
    )
    assert report.format == "omop"
    adapted, original = canonical(folder), canonical(contract, id_map)
    assert adapted == original
    assert {t: len(r) for t, r in adapted.items()} == {
        "patients": 2,
        "encounters": 6,
        "diagnoses": 3,
        "findings": 6,
        "orders": 8,
        "labs": 3,
        "medications": 3,
    }
    manifest = json.loads((folder / "manifest.json").read_text())
    assert {k: manifest[k] for k in ("timezone", "coverage_start", "coverage_end")} == {
        "timezone": "America/Chicago",
        "coverage_start": "2025-10-01",
        "coverage_end": "2026-10-31",
    }


def test_what_omop_cannot_carry_comes_back_as_the_docs_say(tmp_path):
    """docs/sources/omop.md, "What OMOP does not carry"."""
    tables = {t: lines[:1] for t, lines in ROUND_TRIP.items()}
    tables["patients"] += ["PT01,1950,X,"]
    tables["encounters"] += [
        "EN01,PT01,SITE-A,Emergency Medicine,CL1,emergency,2026-10-03 22:15,"
        "2026-10-04 03:00,left_ama"
    ]
    tables["diagnoses"] += ["PT01,EN01,ICD10CM,G83.4,2026-10-03 22:40,history"]
    tables["orders"] += [
        "OR01,PT01,EN01,CPT,72148,imaging,,2026-10-04 01:00,2026-10-04 02:30,completed",
        "OR02,PT01,EN01,CPT,72148,imaging,,2026-10-04 01:05,,cancelled",
    ]
    tables["labs"] += ["PT01,EN01,2276-4,30,low,ng/mL,2026-10-04 01:00,2026-10-04 02:00"]
    tables["medications"] += [
        "RX01,PT01,EN01,pregabalin,483438,100,2,,2026-10-04 01:00,,active",
        "RX02,PT01,EN01,pregabalin,483438,100,,,2026-10-04 01:10,,cancelled",
    ]
    contract = write_contract(tmp_path / "contract", tables, ROUND_TRIP_MANIFEST)
    write_omop(contract, tmp_path / "omop")
    folder, _ = adapt_source(
        tmp_path / "omop", "omop", tmp_path / "adapted", tmp_path / "omop" / SITE_CODE_MAP_FILE
    )
    assert rows(folder, "patients", "sex") == [("U",)]  # X: the CDM's genders are M and F
    assert rows(folder, "encounters", "department", "disposition") == [(None, None)]
    assert rows(folder, "diagnoses", "source") == [("encounter",)]
    # one procedure time: ordered when performed; a cancelled order is not written
    assert rows(folder, "orders", "ordered_time", "performed_time", "status") == [
        ("2026-10-04 02:30:00", "2026-10-04 02:30:00", "completed")
    ]
    assert rows(folder, "labs", "value_num", "value_text", "resulted_time") == [("30", None, None)]
    # no end: no days supplied, so no doses a day; active is not a drug exposure's state
    assert rows(folder, "medications", "doses_per_day", "status") == [(None, "completed")]
