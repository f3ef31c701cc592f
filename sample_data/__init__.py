"""Synthetic extracts: the generator and the small demo extract committed beside it."""

from pathlib import Path

DEMO_EXTRACT = Path(__file__).parent / "demo_extract"


class GeneratorArgumentError(ValueError):
    """An argument the generator cannot honour (too few patients, a malformed month…)."""
