from __future__ import annotations

import pytest

from chartaudit.sample_data.generator import GeneratedExtract, generate_extract
from tests.sample_data.generator_reference import read_csv


@pytest.fixture(scope="session")
def extract300(tmp_path_factory: pytest.TempPathFactory) -> GeneratedExtract:
    """The smallest population that still holds every scenario, with the default settings."""
    return generate_extract(tmp_path_factory.mktemp("extract300"), patients=300)


@pytest.fixture(scope="session")
def key_rows(extract300: GeneratedExtract) -> list[dict[str, str]]:
    return read_csv(extract300.answer_key)


@pytest.fixture(scope="session")
def quarantine_rows(extract300: GeneratedExtract) -> list[dict[str, str]]:
    return read_csv(extract300.expected_quarantine)
