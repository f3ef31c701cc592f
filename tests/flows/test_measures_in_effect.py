"""A month in which no measure of the rule set is in effect is refused in one line, before
anything starts: its report would otherwise be empty with no word why (an OMOP sample from 2022
against measures that take effect in 2025, say)."""

from __future__ import annotations

import pytest

from chartaudit.audits.engine import Catalogue, NoMeasureInEffect
from chartaudit.flows import steps
from chartaudit.sample_data import DEMO_EXTRACT
from tests.flows.test_cli import chartaudit

REFUSAL = (
    "period 2024-12: no measure of rule set source-2025 is in effect; the earliest takes effect"
    " 2025-01-01. Audit a later month, or give --measures a folder whose measure versions take"
    " effect earlier"
)


def test_the_catalogue_refuses_a_month_before_its_measures_take_effect():
    catalogue = Catalogue.load()
    with pytest.raises(NoMeasureInEffect) as raised:
        catalogue.require_in_effect("source-2025", "2024-12")
    assert str(raised.value) == REFUSAL
    catalogue.require_in_effect("source-2025", "2025-01")  # the first month in effect


def test_run_refuses_it_before_anything_is_written(tmp_path):
    result = chartaudit(
        "run", DEMO_EXTRACT, "--period", "2024-12", "--warehouse", tmp_path / "audit.duckdb"
    )
    assert result.returncode == 1
    assert result.stderr == f"error: {REFUSAL}\n"
    assert not (tmp_path / "audit.duckdb").exists()


def test_the_load_step_refuses_it_too(tmp_path):
    """The flow's own check, for runs that do not come through the command line (a
    deployment, a backfill's month)."""
    with pytest.raises(NoMeasureInEffect, match="period 2024-12: no measure"):
        steps.load_step(DEMO_EXTRACT, tmp_path, "2024-12")
    assert list(tmp_path.iterdir()) == []
