"""A large population generates without trouble (timing is measured elsewhere, not asserted)."""

from __future__ import annotations

from pathlib import Path

import pytest

from chartaudit.sample_data.generator import generate_extract, scenario_counts
from tests.sample_data.keyfiles import intent_violations, read_csv


def test_twenty_thousand_patients(tmp_path: Path) -> None:
    result = generate_extract(tmp_path, patients=20_000)
    assert result.row_counts["patients"] == 20_000
    assert result.row_counts["encounters"] > 40_000
    for table, rows in result.row_counts.items():
        assert rows > 0, table
        for expected in (result.expected_quarantine, result.expected_data_quality):
            dirty = sum(
                1 for line in expected.read_text().splitlines() if line.startswith(f"{table},")
            )
            assert dirty / rows < 0.01, (table, expected.name)
    assert intent_violations(result, read_csv(result.answer_key)) == []


def test_scenario_counts_scale_with_the_population() -> None:
    small, large = (
        scenario_counts(600, 13, dirty_rows=True),
        scenario_counts(100_000, 13, dirty_rows=True),
    )
    assert all(count >= 1 for count in small.values())
    assert small.keys() == large.keys()
    assert large["ln07_no_screen"] > 100 * small["ln07_no_screen"]
    assert large["background"] / 100_000 > 0.65
    assert "dirty_sex_q" not in scenario_counts(600, 13, dirty_rows=False)


def test_too_few_patients_for_every_scenario_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"patients=300 is too few for every scenario; use >= \d+"):
        scenario_counts(300, 13, dirty_rows=True)


def test_clean_extract_has_no_dirty_rows(tmp_path: Path) -> None:
    result = generate_extract(tmp_path, patients=600, dirty=False)
    assert result.quarantine_rows == 0
    assert result.expected_quarantine.read_text() == "table_name,source_line,column_name,reason\n"
    assert result.expected_data_quality.read_text() == result.expected_quarantine.read_text()
