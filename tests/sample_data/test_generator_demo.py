"""The committed demo extract is current, complete and small."""

from __future__ import annotations

import json
from pathlib import Path

from chartaudit.sample_data.generator import DEMO_DIR, write_demo_extract
from chartaudit.schemas.contract import TABLE_ORDER

MAX_BYTES = 5 * 1024 * 1024


def test_demo_extract_holds_the_tables_manifest_and_keys() -> None:
    names = {path.name for path in DEMO_DIR.iterdir()}
    tables = {f"{table}.csv" for table in TABLE_ORDER}
    assert names == tables | {"manifest.json", "answer_key.csv", "expected_quarantine.csv"}
    manifest = json.loads((DEMO_DIR / "manifest.json").read_text())
    assert manifest["extract_id"] == "synthetic-2026-10-s7"
    assert (manifest["coverage_start"], manifest["coverage_end"]) == ("2025-10-01", "2026-10-31")


def test_demo_extract_is_small() -> None:
    assert sum(path.stat().st_size for path in DEMO_DIR.iterdir()) <= MAX_BYTES


def test_committed_demo_extract_is_what_the_generator_writes(tmp_path: Path) -> None:
    """Fails when the generator changed and the demo was not regenerated (see generator.py)."""
    result = write_demo_extract(tmp_path)
    assert result.row_counts["patients"] == 3000
    for path in sorted(tmp_path.iterdir()):
        assert path.read_bytes() == (DEMO_DIR / path.name).read_bytes(), path.name
