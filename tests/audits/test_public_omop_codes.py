"""Codes from real public data (OHDSI's Synthea27Nj OMOP CDM sample in ../shared/datasets):
our code checks must accept every real SNOMED CT and LOINC code, and the diabetes value set
must hold every diabetes condition that Synthea records. The data are read from the zip in
place; none of them is copied into the project."""

from __future__ import annotations

import io
import re
import zipfile

import polars as pl
import pytest

from chartaudit.audits.valuesets import load_value_sets
from chartaudit.schemas.models import DIAGNOSIS_CODE_PATTERNS, LOINC_PATTERN
from tests.public_data import OMOP_ZIP, needs_omop_sample

pytestmark = needs_omop_sample


def omop_table(name: str) -> pl.DataFrame:
    with zipfile.ZipFile(OMOP_ZIP) as archive:
        return pl.read_csv(io.BytesIO(archive.read(f"{name}.csv")), infer_schema=False)


@pytest.fixture(scope="module")
def concepts() -> pl.DataFrame:
    return omop_table("CONCEPT")


def test_every_real_snomed_and_loinc_code_is_well_formed(concepts):
    for vocabulary, pattern in (
        ("SNOMED", DIAGNOSIS_CODE_PATTERNS["SNOMEDCT"]),
        ("LOINC", LOINC_PATTERN),
    ):
        codes = concepts.filter(pl.col("vocabulary_id") == vocabulary)["concept_code"]
        assert codes.len() > 100
        malformed = [c for c in codes if not re.match(pattern, c)]
        assert malformed == [], f"{vocabulary} codes our loader would quarantine: {malformed[:10]}"


def test_the_diabetes_value_set_holds_every_diabetes_condition_synthea_records(concepts):
    conditions = omop_table("CONDITION_OCCURRENCE").select("condition_source_value").unique()
    named = conditions.join(
        concepts.filter(pl.col("vocabulary_id") == "SNOMED"),
        left_on="condition_source_value",
        right_on="concept_code",
    )
    diabetic = named.filter(
        pl.col("concept_name").str.to_lowercase().str.contains("diabetes mellitus")
        & ~pl.col("concept_name").str.to_lowercase().str.contains("prediabetes")
    )
    assert diabetic.height >= 3  # type 2 diabetes, and kidney and eye disease due to it
    diabetes = load_value_sets()["diabetes"]
    missing = [
        (code, name)
        for code, name in diabetic.select("condition_source_value", "concept_name").iter_rows()
        if not diabetes.matches("SNOMEDCT", code)
    ]
    assert missing == []
    prediabetes = concepts.filter(pl.col("concept_name") == "Prediabetes")["concept_code"]
    assert prediabetes.to_list() == ["15777000"]
    assert not diabetes.matches("SNOMEDCT", prediabetes[0])
