from __future__ import annotations

import json
import random
from pathlib import Path

from chartaudit.sample_data.generator import generate_extract


def file_bytes(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def test_same_seed_gives_identical_bytes(tmp_path: Path) -> None:
    random.seed(1)  # the generator must not depend on the global generator's state
    generate_extract(tmp_path / "a", patients=600)
    random.seed(2)
    generate_extract(tmp_path / "b", patients=600)
    first, second = file_bytes(tmp_path / "a"), file_bytes(tmp_path / "b")
    assert first.keys() == second.keys()
    assert first == second


def test_parquet_output_is_deterministic_too(tmp_path: Path) -> None:
    generate_extract(tmp_path / "a", patients=600, fmt="parquet")
    generate_extract(tmp_path / "b", patients=600, fmt="parquet")
    assert file_bytes(tmp_path / "a") == file_bytes(tmp_path / "b")


def test_a_different_seed_gives_different_data(tmp_path: Path) -> None:
    generate_extract(tmp_path / "a", patients=600, seed=7)
    generate_extract(tmp_path / "b", patients=600, seed=8)
    first, second = file_bytes(tmp_path / "a"), file_bytes(tmp_path / "b")
    for name in ("patients.csv", "encounters.csv", "findings.csv", "answer_key.csv"):
        assert first[name] != second[name], name
    manifests = [json.loads(d["manifest.json"]) for d in (first, second)]
    assert [m.pop("extract_id") for m in manifests] == [
        "synthetic-2026-10-s7",
        "synthetic-2026-10-s8",
    ]
    assert manifests[0] == manifests[1]


def test_manifest_is_derived_from_the_arguments(tmp_path: Path) -> None:
    result = generate_extract(
        tmp_path, patients=600, months=13, seed=3, end_month="2026-12", timezone="Europe/Berlin"
    )
    assert json.loads(result.manifest.read_text()) == {
        "extract_id": "synthetic-2026-12-s3",
        "source": "chartaudit synthetic generator",
        "timezone": "Europe/Berlin",
        "coverage_start": "2025-12-01",
        "coverage_end": "2026-12-31",
        "created": "2027-01-07T23:00:00Z",  # a week after coverage ends (Berlin midnight)
    }


def test_regenerating_in_the_other_format_replaces_stale_tables(tmp_path: Path) -> None:
    generate_extract(tmp_path, patients=600, fmt="csv")
    result = generate_extract(tmp_path, patients=600, fmt="parquet")
    assert not list(tmp_path.glob("patients.csv"))
    assert sorted(p.name for p in result.tables.values()) == sorted(
        p.name for p in tmp_path.glob("*.parquet")
    )
