from __future__ import annotations

import pytest

from chartaudit.sample_data.generator import GeneratedExtract, generate_extract
from tests.sample_data.keyfiles import read_csv

# Enough patients for every scenario (each at least once) with the default 13 months.
PATIENTS = 1000


@pytest.fixture(scope="session")
def extract1000(tmp_path_factory: pytest.TempPathFactory) -> GeneratedExtract:
    """A small population that holds every scenario, with the default settings."""
    return generate_extract(tmp_path_factory.mktemp("extract1000"), patients=PATIENTS)


@pytest.fixture(scope="session")
def key_rows(extract1000: GeneratedExtract) -> list[dict[str, str]]:
    return read_csv(extract1000.answer_key)


@pytest.fixture(scope="session")
def quarantine_rows(extract1000: GeneratedExtract) -> list[dict[str, str]]:
    return read_csv(extract1000.expected_quarantine)
