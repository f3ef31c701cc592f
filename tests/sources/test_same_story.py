"""The same clinical story written as contract CSV, OMOP CDM, Synthea CSV and FHIR NDJSON gives
identical case outcomes: each format's writer (sample_data/formats/) writes it, each adapter
(sources/) reads it back, and the pipeline's steps judge it."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from chartaudit.sources.adapt import adapt_source
from chartaudit.storage import warehouse
from tests.flows.test_pipeline import run_pipeline
from tests.sources.story import EXPECTED, PERIOD, write_story

# What every case is judged by, beside its outcome: the index instant, hours to the deciding
# event, when the window closes, and the reason (all but ids, which each format writes its own).
CASE_FACTS = """
SELECT c.measure_id, p.birth_year, c.outcome, c.index_time, round(c.hours_to_event, 4),
       c.window_end, c.reason
FROM latest_case_results c JOIN patients p USING (patient_id)
ORDER BY ALL
"""


def judged(extract: Path, tmp_path: Path, name: str) -> list[tuple]:
    path = tmp_path / f"{name}.duckdb"
    run_pipeline(extract, path, tmp_path / f"work-{name}", PERIOD)
    with warehouse.connect(path, read_only=True) as con:
        return con.execute(CASE_FACTS).fetchall()


@pytest.fixture(scope="module")
def contract_cases(tmp_path_factory) -> list[tuple]:
    tmp_path = tmp_path_factory.mktemp("contract")
    return judged(write_story(tmp_path / "story"), tmp_path, "contract")


def test_the_story_in_contract_form_gives_the_catalogue_outcomes(contract_cases):
    assert [(m, year, outcome) for m, year, outcome, *_ in contract_cases] == EXPECTED


@pytest.mark.parametrize("fmt", ["omop", "synthea", "fhir"])
def test_the_story_in_another_format_gives_identical_cases(fmt, contract_cases, tmp_path):
    writers = importlib.import_module(f"chartaudit.sample_data.formats.{fmt}")
    source = tmp_path / fmt
    getattr(writers, f"write_{fmt}")(write_story(tmp_path / "story"), source)
    extract, report = adapt_source(
        source, "auto", tmp_path / "adapted", source / "site-code-map.csv"
    )
    assert report.format == fmt
    assert judged(extract, tmp_path, fmt) == contract_cases
