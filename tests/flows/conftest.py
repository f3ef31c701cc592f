"""Shared fixtures for the end-to-end tests: one generated extract per test session."""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import pytest

from chartaudit.audits.engine import Catalogue
from chartaudit.sample_data.generator import generate_extract

KEY_COLUMNS = ["measure_id", "period", "patient_id", "encounter_id", "index_time", "outcome"]


@pytest.fixture(scope="session")
def generated(tmp_path_factory) -> Path:
    """A 600-patient, 14-month synthetic extract with its answer key (seeded): 2025-09 to
    2026-10, so that every measure's look-back from 2026-10 lies inside it (LN-14 needs data
    from 2025-09-01; audits/lookback.py)."""
    folder = tmp_path_factory.mktemp("extract") / "synthetic"
    generate_extract(folder, patients=600, months=14, seed=11)
    return folder


@pytest.fixture(scope="session")
def short_extract(tmp_path_factory) -> Path:
    """A 600-patient extract starting 2025-10-01 (13 months to 2026-10), for the months whose
    look-backs reach before it."""
    folder = tmp_path_factory.mktemp("short") / "synthetic"
    generate_extract(folder, patients=600, months=13, seed=11)
    return folder


@pytest.fixture(scope="session")
def generated_large(tmp_path_factory) -> Path:
    """A 5,000-patient, 13-month synthetic extract: every scenario of every measure, many
    times over, for the engine-equals-answer-key test under both rule sets."""
    folder = tmp_path_factory.mktemp("large") / "synthetic"
    generate_extract(folder, patients=5000, months=13, seed=13)
    return folder


@pytest.fixture
def extract_copy(generated, tmp_path) -> Path:
    """A private copy of the generated extract, for tests that break it."""
    return Path(shutil.copytree(generated, tmp_path / "extract"))


def answer_key(extract: Path, ruleset: str = "source-2025") -> pl.DataFrame:
    """The key's cases of the measures the engine's catalogue has, under one rule set (the key
    holds all fifteen measures under both; the comparison grows as measures land)."""
    measures = [m.id for m in Catalogue.load().measures]
    key = pl.read_csv(extract / "answer_key.csv", infer_schema=False)
    return key.filter(pl.col("measure_id").is_in(measures) & (pl.col("ruleset") == ruleset)).select(
        pl.exclude("ruleset").fill_null("")
    )


def case_rows(frame: pl.DataFrame) -> pl.DataFrame:
    """case_results rows in the answer key's shape (index time as a UTC ISO string)."""
    return frame.select(
        "measure_id",
        "period",
        "patient_id",
        pl.col("encounter_id").fill_null(""),
        pl.col("index_time").dt.convert_time_zone("UTC").dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "outcome",
    )
