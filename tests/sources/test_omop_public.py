"""The OMOP adapter on data someone else wrote: OHDSI's Synthea27Nj OMOP CDM 5.4 sample
(../shared/datasets, unzipped into a temporary folder; none of it is copied into the project).
Row counts, what is left out, the coverage and the LN-07 denominator are checked against SQL
over the OMOP tables written here, independently of the adapter."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import duckdb
import pytest
import yaml

from chartaudit.audits.engine import BUILT_IN
from chartaudit.schemas.validation import load_extract
from chartaudit.sources.adapt import adapt_source
from chartaudit.sources.code_maps import RXNORM_MAP_FILE
from chartaudit.storage import warehouse
from tests.flows.test_cli import chartaudit
from tests.public_data import OMOP_ZIP, needs_omop_sample

pytestmark = needs_omop_sample
# A month the sample covers (OBSERVATION_PERIOD ends 2022-10-10) with a diabetic patient seen
# in the 12 months before its end.
PERIOD, LOOKBACK_START, PERIOD_END = "2022-06", "2021-07-01", "2022-07-01"
TABLES = (
    "PERSON",
    "VISIT_OCCURRENCE",
    "CONDITION_OCCURRENCE",
    "PROCEDURE_OCCURRENCE",
    "MEASUREMENT",
    "OBSERVATION",
    "DRUG_EXPOSURE",
    "DEATH",
    "CONCEPT",
    "OBSERVATION_PERIOD",
)


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("omop") / "Synthea27Nj"
    with zipfile.ZipFile(OMOP_ZIP) as archive:
        for member in archive.namelist():
            if member.endswith(".csv") and "/" not in member:
                archive.extract(member, folder)
    return folder


@pytest.fixture(scope="module")
def omop(sample) -> duckdb.DuckDBPyConnection:
    """The OMOP tables as views, for the independent counts."""
    con = duckdb.connect()
    for table in TABLES:
        con.execute(
            f"CREATE VIEW {table} AS SELECT * FROM read_csv('{sample / f'{table}.csv'}', "
            "header = true, all_varchar = true)"
        )
    con.execute(
        "CREATE VIEW RXNORM_MAP AS SELECT * FROM "
        f"read_csv('{RXNORM_MAP_FILE}', header = true, all_varchar = true)"
    )
    yield con
    con.close()


@pytest.fixture(scope="module")
def adapted(sample, tmp_path_factory):
    folder, report = adapt_source(sample, "auto", tmp_path_factory.mktemp("adapted") / "x")
    return folder, report, load_extract(folder)


def count(con: duckdb.DuckDBPyConnection, query: str) -> int:
    return con.sql(f"SELECT count(*) FROM ({query})").fetchall()[0][0]


def in_vocabulary(column: str, vocabulary: str) -> str:
    return f"{column} IN (SELECT concept_id FROM CONCEPT WHERE vocabulary_id = '{vocabulary}')"


def test_the_sample_loads_whole_with_every_table_counted_as_sql_counts_it(adapted, omop):
    _, report, validated = adapted
    loinc_obs_with_value = (
        f"SELECT * FROM OBSERVATION WHERE {in_vocabulary('observation_concept_id', 'LOINC')} "
        "AND coalesce(value_as_number, value_as_string, nullif(value_as_concept_id, '0')) "
        "IS NOT NULL"
    )
    mapped_drugs = (
        "SELECT * FROM DRUG_EXPOSURE d JOIN CONCEPT c ON c.concept_id = d.drug_concept_id "
        "JOIN RXNORM_MAP m ON m.rxnorm = c.concept_code"
    )
    expected = {
        "patients": count(omop, "SELECT * FROM PERSON"),
        "encounters": count(omop, "SELECT * FROM VISIT_OCCURRENCE"),
        "diagnoses": count(omop, "SELECT * FROM CONDITION_OCCURRENCE"),
        "findings": count(
            omop,
            "SELECT * FROM OBSERVATION WHERE " + in_vocabulary("observation_concept_id", "SNOMED"),
        ),
        "orders": count(omop, "SELECT * FROM PROCEDURE_OCCURRENCE"),
        "labs": count(
            omop,
            f"SELECT * FROM MEASUREMENT WHERE {in_vocabulary('measurement_concept_id', 'LOINC')}",
        )
        + count(omop, loinc_obs_with_value),
        "medications": count(omop, mapped_drugs),
    }
    counts = {r["table_name"]: r for r in validated.load_counts.iter_rows(named=True)}
    assert {t: r["input_rows"] for t, r in counts.items()} == expected
    assert {t: r["loaded_rows"] for t, r in counts.items()} == expected
    assert validated.quarantine.height == 0
    assert report.rows == expected
    assert expected["medications"] == 43 and expected["labs"] > 9000  # the sample's own sizes


def test_what_is_left_out_is_counted_in_the_run_log(adapted, omop):
    _, report, _ = adapted
    other_measurements = count(
        omop,
        "SELECT * FROM MEASUREMENT WHERE NOT " + in_vocabulary("measurement_concept_id", "LOINC"),
    )
    empty_loinc = count(
        omop,
        f"SELECT * FROM OBSERVATION WHERE {in_vocabulary('observation_concept_id', 'LOINC')} "
        "AND value_as_number IS NULL AND value_as_string IS NULL "
        "AND coalesce(value_as_concept_id, '0') = '0'",
    )
    unmapped = omop.sql(
        "SELECT count(*), count(DISTINCT c.concept_code) FROM DRUG_EXPOSURE d JOIN CONCEPT c "
        "ON c.concept_id = d.drug_concept_id WHERE c.concept_code NOT IN "
        "(SELECT rxnorm FROM RXNORM_MAP)"
    ).fetchall()[0]
    visits = count(omop, "SELECT * FROM VISIT_OCCURRENCE WHERE care_site_id IS NULL")
    notes = report.notes
    assert notes[0] == (
        f"{visits} VISIT_OCCURRENCE rows have no care_site_id: their site is the CDM source 'NJ'"
    )
    assert notes[1] == (
        f"{other_measurements} MEASUREMENT rows are neither LOINC labs nor exam findings "
        "(screening scores, cultures, ...): left out"
    )
    assert notes[2] == f"{empty_loinc} LOINC OBSERVATION rows carry no value: left out"
    assert notes[3].startswith(
        f"{unmapped[0]} drug records ({unmapped[1]} codes) have no ingredient in "
        "CONCEPT_ANCESTOR, CONCEPT_RELATIONSHIP or the RxNorm map: left out (1000126, "
    )
    assert (other_measurements, empty_loinc, unmapped[0]) == (885, 7649, 852)


def test_the_coverage_is_the_observation_periods_and_created_the_cdm_source_release(adapted, omop):
    folder, report, _ = adapted
    first, last = omop.sql(
        "SELECT min(observation_period_start_date), max(observation_period_end_date) "
        "FROM OBSERVATION_PERIOD"
    ).fetchall()[0]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert (manifest["coverage_start"], manifest["coverage_end"]) == (first, last)
    assert (first, last) == ("1955-03-07", "2022-10-10")
    assert manifest["created"] == "2022-10-10"
    assert "timezone" not in manifest  # naive OMOP times: the contract's default, UTC
    assert report.notes[-1].startswith("coverage 1955-03-07 to 2022-10-10 from OBSERVATION_PERIOD")


def value_set_match(value_set: str, system: str, code: str) -> str:
    """SQL: (system, code) is in the value set (ICD-10-CM compared without the dot, * = any)."""
    path = BUILT_IN / "value_sets" / f"{value_set}.csv"
    return (
        f"EXISTS (SELECT 1 FROM read_csv('{path}', header = true, all_varchar = true) v "
        f"WHERE v.code_system = {system} AND replace({code}, '.', '') LIKE "
        "replace(replace(v.code, '.', ''), '*', '%'))"
    )


def ln07_denominator(omop: duckdb.DuckDBPyConnection) -> tuple[int, int]:
    """(denominator, excluded) of LN-07 at the end of PERIOD, over the OMOP tables: adults
    (period year - year_of_birth >= 18) with diabetes recorded before the month's end and a
    visit starting in the 12 months ending with it; excluded: a bilateral amputation before the
    end, or palliative care in the 12 months. Naive times are UTC (no manifest)."""
    omop.execute(
        "CREATE OR REPLACE TEMP VIEW dx AS SELECT o.person_id, CAST(coalesce("
        "o.condition_start_datetime, o.condition_start_date) AS TIMESTAMP) AS t, "
        "CASE WHEN s.vocabulary_id = 'ICD10CM' THEN 'ICD10CM' ELSE replace(c.vocabulary_id, "
        "'SNOMED', 'SNOMEDCT') END AS system, CASE WHEN s.vocabulary_id = 'ICD10CM' THEN "
        "s.concept_code ELSE c.concept_code END AS code FROM CONDITION_OCCURRENCE o "
        "LEFT JOIN CONCEPT c ON c.concept_id = o.condition_concept_id "
        "LEFT JOIN CONCEPT s ON s.concept_id = o.condition_source_concept_id"
    )
    before_end = f"t < TIMESTAMP '{PERIOD_END}'"
    in_year = f"t >= TIMESTAMP '{LOOKBACK_START}' AND {before_end}"

    def having(value_set: str, window: str) -> str:
        match = value_set_match(value_set, "dx.system", "dx.code")
        return f"SELECT person_id FROM dx WHERE {match} AND {window}"

    eligible = (
        f"SELECT person_id FROM PERSON WHERE {PERIOD[:4]} - CAST(year_of_birth AS INT) >= 18 "
        f"AND person_id IN ({having('diabetes', before_end)}) AND person_id IN (SELECT "
        "person_id FROM VISIT_OCCURRENCE WHERE CAST(coalesce(visit_start_datetime, "
        f"visit_start_date) AS TIMESTAMP) >= TIMESTAMP '{LOOKBACK_START}' AND "
        f"CAST(coalesce(visit_start_datetime, visit_start_date) AS TIMESTAMP) < "
        f"TIMESTAMP '{PERIOD_END}')"
    )
    excluded = (
        f"SELECT person_id FROM ({eligible}) WHERE person_id IN "
        f"({having('bilateral_amputation', before_end)}) OR (person_id IN "
        f"({having('amputation_left_leg', before_end)}) AND person_id IN "
        f"({having('amputation_right_leg', before_end)})) OR person_id IN "
        f"({having('palliative_or_hospice', in_year)})"
    )
    total, out = count(omop, eligible), count(omop, excluded)
    return total - out, out


def test_chartaudit_run_on_the_sample_audits_ln07_as_sql_counts_it(sample, omop, tmp_path):
    """LN-07's versions take effect in 2025; the sample ends in 2022. The run audits it with a
    copy of LN-07.yaml whose only change is its id and an earlier effective_from, so the
    measure's definition is the catalogue's own."""
    measure = yaml.safe_load((BUILT_IN / "measures" / "LN-07.yaml").read_text())
    measure["id"] = "OMOP-LN-07"
    for version in measure["versions"]:
        version["effective_from"] = "2000-01-01"
    (tmp_path / "sample-measures" / "measures").mkdir(parents=True)
    (tmp_path / "sample-measures" / "measures" / "OMOP-LN-07.yaml").write_text(
        yaml.safe_dump(measure, sort_keys=False)
    )
    path = tmp_path / "audit.duckdb"
    done = chartaudit(
        "run", sample, "--format", "omop", "--period", PERIOD, "--warehouse", path,
        "--out", tmp_path / "out", "--measures", tmp_path / "sample-measures",
        prefect_home=tmp_path / "prefect",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "extract format: omop (given with --format)" in done.stdout
    with warehouse.connect(path, read_only=True) as con:
        summary = con.execute(
            "SELECT measure_id, denominator, excluded, pending, status FROM "
            "latest_measure_summary WHERE stratum_kind = 'all' ORDER BY measure_id"
        ).fetchall()
    denominator, excluded = ln07_denominator(omop)
    assert summary == [("OMOP-LN-07", denominator, excluded, 0, "computed")]
    assert denominator > 0
