"""The same extract, period and rule set publish the same case_results and measure_summary
(apart from run ids): run again, with the rows of every file in another order, as Parquet
instead of CSV, and under another machine time zone. Each run is a process of its own, with its
own TZ and hash seed, so set iteration order and the local zone both get their chance to leak."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from chartaudit.sample_data.generator import generate_extract
from chartaudit.schemas.contract import TABLES

ROOT = Path(__file__).resolve().parents[2]
PATIENTS, SEED = 500, 21  # 14 months need 491 patients for every scenario
MONTHS = 14  # from 2025-09: every measure's look-back from 2026-10 lies inside the extract


def shuffled_copy(extract: Path, target: Path) -> Path:
    """The extract with the rows of every CSV in a random order. Rows that share a primary key
    keep their order: the first of them loads (extract contract), which is meant to depend on
    the file's order."""
    shutil.copytree(extract, target)
    for seed, (table, spec) in enumerate(TABLES.items()):
        path = target / f"{table}.csv"
        frame = pl.read_csv(path, infer_schema=False)
        order = pl.Series("__order", range(frame.height)).shuffle(seed=seed)
        frame = frame.with_columns(order)
        if spec.primary_key:  # a key's rows take its group's positions, in their own order
            frame = frame.with_columns(pl.col("__order").sort().over(spec.primary_key))
        frame.sort("__order").drop("__order").write_csv(path)
    return target


@pytest.fixture(scope="module")
def extracts(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("determinism")
    csv = base / "csv"
    generate_extract(csv, patients=PATIENTS, months=MONTHS, seed=SEED, fmt="csv")
    parquet = base / "parquet"
    generate_extract(parquet, patients=PATIENTS, months=MONTHS, seed=SEED, fmt="parquet")
    return {"csv": csv, "parquet": parquet, "shuffled": shuffled_copy(csv, base / "shuffled")}


# (name, extract, TZ, PYTHONHASHSEED)
RUNS = (
    ("first", "csv", "UTC", "1"),
    ("again", "csv", "UTC", "2"),
    ("auckland", "csv", "Pacific/Auckland", "3"),
    ("parquet", "parquet", "UTC", "4"),
    ("shuffled", "shuffled", "Pacific/Auckland", "5"),
)


@pytest.fixture(scope="module")
def published(extracts, tmp_path_factory) -> dict[str, Path]:
    """Every run of RUNS, two processes at a time."""
    base = tmp_path_factory.mktemp("runs")
    outputs, running = {}, []
    for name, extract, zone, hash_seed in RUNS:
        env = {**os.environ, "TZ": zone, "PYTHONHASHSEED": hash_seed}
        outputs[name] = base / name
        command = [sys.executable, "-m", "tests.flows.pipeline_child"]
        running.append(
            subprocess.Popen(
                [*command, str(extracts[extract]), str(outputs[name])],
                cwd=ROOT,
                env=env,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
        if len(running) == 2 or name == RUNS[-1][0]:
            for process in running:
                _, stderr = process.communicate(timeout=600)
                assert process.returncode == 0, stderr
            running = []
    return outputs


def test_each_run_saw_the_time_zone_it_was_given(published):
    seen = {n: json.loads((published[n] / "environment.json").read_text()) for n, *_ in RUNS}
    assert seen["first"] == {"duckdb_timezone": "UTC", "python_utc_offset": 0}
    assert seen["auckland"]["duckdb_timezone"] == "Pacific/Auckland"
    assert seen["auckland"]["python_utc_offset"] in (12 * 3600, 13 * 3600)


def test_the_runs_are_not_trivially_equal(published):
    cases = pl.read_ndjson(published["first"] / "case_results.json")
    assert cases.height > 300
    assert cases["measure_id"].n_unique() == 15
    assert set(cases["outcome"]) == {"met", "not_met", "excluded", "pending"}
    assert cases["index_event_id"].str.starts_with("findings:").sum() > 0
    assert cases["evidence_id"].str.starts_with("labs:").sum() > 0


@pytest.mark.parametrize("table", ["case_results", "measure_summary"])
@pytest.mark.parametrize("run", [name for name, *_ in RUNS[1:]])
def test_a_run_publishes_what_the_first_run_published(published, run, table):
    first = (published["first"] / f"{table}.json").read_text()
    assert (published[run] / f"{table}.json").read_text() == first
