"""Public data written by others, read in place from ../shared/datasets (never copied into the
project): tests that need it are skipped, with the reason, when it is absent."""

from __future__ import annotations

from pathlib import Path

import pytest

OMOP_ZIP = (
    Path(__file__).resolve().parents[2]
    / "shared"
    / "datasets"
    / "omop-synthea27nj"
    / "Synthea27Nj_5.4.zip"
)
# OHDSI's Synthea27Nj OMOP CDM 5.4 sample (Apache-2.0): mark a module with it.
needs_omop_sample = pytest.mark.skipif(
    not OMOP_ZIP.exists(), reason=f"public OMOP sample not found at {OMOP_ZIP} (../shared)"
)
