"""Batches bound the generator's memory and change nothing it writes (sample_data/generator.py)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from chartaudit.sample_data import GeneratorArgumentError
from chartaudit.sample_data.generator import KEY_PARTS, generate_extract
from chartaudit.schemas.contract import TABLE_ORDER
from tests.sample_data.keyfiles import intent_violations, read_csv

PATIENTS = 1000


def file_bytes(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def one_batch(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("one_batch")
    return generate_extract(folder, patients=PATIENTS, batch_patients=PATIENTS)


def test_bounded_batches_write_the_same_bytes_as_one_batch(tmp_path: Path, one_batch) -> None:
    batched = generate_extract(tmp_path, patients=PATIENTS, batch_patients=137)
    assert file_bytes(tmp_path) == file_bytes(one_batch.out_dir)
    assert not (tmp_path / KEY_PARTS).exists()  # the key's scratch parts are gone
    assert batched.case_counts == one_batch.case_counts
    assert batched.scenario_counts == one_batch.scenario_counts
    assert batched.scenario_patients == one_batch.scenario_patients
    assert batched.row_counts == one_batch.row_counts
    assert intent_violations(batched, read_csv(batched.answer_key)) == []


def test_the_progress_callback_hears_of_every_batch(tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    generate_extract(
        tmp_path, patients=PATIENTS, batch_patients=300, progress=lambda *a: calls.append(a)
    )
    assert calls == [(300, 1000), (600, 1000), (900, 1000), (1000, 1000)]


def test_batched_csv_and_parquet_hold_the_same_content(tmp_path: Path, one_batch) -> None:
    parquet = generate_extract(tmp_path, patients=PATIENTS, fmt="parquet", batch_patients=250)
    for table in TABLE_ORDER:
        frame = pl.read_parquet(parquet.tables[table])
        assert frame.height == one_batch.row_counts[table] > 0
        assert frame.equals(pl.read_csv(one_batch.tables[table], schema=frame.schema)), table
    assert parquet.answer_key.read_bytes() == one_batch.answer_key.read_bytes()
    # The loader numbers Parquet rows from 1 and CSV lines from the header: one lower.
    for expected in ("expected_quarantine", "expected_data_quality"):
        as_csv = read_csv(one_batch.out_dir / f"{expected}.csv")
        as_parquet = read_csv(parquet.out_dir / f"{expected}.csv")
        assert as_csv, expected
        assert as_parquet == [{**r, "source_line": str(int(r["source_line"]) - 1)} for r in as_csv]


def test_a_batch_size_below_one_is_refused(tmp_path: Path) -> None:
    with pytest.raises(GeneratorArgumentError, match="batch_patients must be at least 1, not 0"):
        generate_extract(tmp_path, patients=PATIENTS, batch_patients=0)
