"""The committed demo extract is current, complete and small, and its last month shows every
measure's outcomes."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest

from chartaudit.sample_data.answer_key import MEASURES, RULESETS
from chartaudit.sample_data.generator import DEMO_DIR, DEMO_PATIENTS, write_demo_extract
from chartaudit.schemas.contract import TABLE_ORDER
from tests.sample_data.keyfiles import read_csv

MAX_BYTES = 6 * 1024 * 1024
NEVER_PENDING = {"LN-07", "LN-10", "LN-13"}
WITH_EXCLUSIONS = {"LN-01", "LN-02", "LN-04", "LN-05", "LN-06", "LN-07"}
# A case is not_met only once its window has closed inside the coverage. These measures'
# windows run 90 days past the index, so no case indexed in the last month can have closed:
# there it is met or pending, never not_met.
NOT_MET_IMPOSSIBLE_IN_LAST_MONTH = {"LN-08", "LN-12", "LN-14", "LN-15"}


def test_demo_extract_holds_the_tables_manifest_and_keys() -> None:
    names = {path.name for path in DEMO_DIR.iterdir()}
    tables = {f"{table}.csv" for table in TABLE_ORDER}
    assert names == tables | {
        "manifest.json",
        "answer_key.csv",
        "expected_quarantine.csv",
        "expected_data_quality.csv",
    }
    manifest = json.loads((DEMO_DIR / "manifest.json").read_text())
    assert manifest["extract_id"] == "synthetic-2026-10-s7"
    # 2024-09-01: LN-14's look-back (365 days and one 30-day episode) from 2025-10-01, the
    # first month the demo audits, so every measure is computable in the 13 months it shows.
    assert (manifest["coverage_start"], manifest["coverage_end"]) == ("2024-09-01", "2026-10-31")


def test_demo_extract_is_small() -> None:
    assert sum(path.stat().st_size for path in DEMO_DIR.iterdir()) <= MAX_BYTES


@pytest.mark.parametrize("ruleset", RULESETS)
def test_the_demo_month_shows_every_outcome_of_every_measure(ruleset: str) -> None:
    mix: dict[str, set[str]] = defaultdict(set)
    for row in read_csv(DEMO_DIR / "answer_key.csv"):
        if row["period"] == "2026-10" and row["ruleset"] == ruleset:
            mix[row["measure_id"]].add(row["outcome"])
    for measure in MEASURES:
        expected = {"met"}
        expected |= set() if measure in NOT_MET_IMPOSSIBLE_IN_LAST_MONTH else {"not_met"}
        expected |= set() if measure in NEVER_PENDING else {"pending"}
        expected |= {"excluded"} if measure in WITH_EXCLUSIONS else set()
        assert mix[measure] == expected, (measure, sorted(mix[measure]))


def test_committed_demo_extract_is_what_the_generator_writes(tmp_path: Path) -> None:
    """Fails when the generator changed and the demo was not regenerated (see generator.py)."""
    result = write_demo_extract(tmp_path)
    assert result.row_counts["patients"] == DEMO_PATIENTS
    for path in sorted(tmp_path.iterdir()):
        assert path.read_bytes() == (DEMO_DIR / path.name).read_bytes(), path.name
