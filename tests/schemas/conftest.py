"""Fixtures of the schema tests; the folder builders are in ``builders.py``."""

from __future__ import annotations

from pathlib import Path

import pytest

from .builders import write_extract


@pytest.fixture
def extract_dir(tmp_path: Path) -> Path:
    """The clean extract, written as CSV."""
    return write_extract(tmp_path / "extract-2026-10")
