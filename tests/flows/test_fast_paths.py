"""The shortcuts taken for speed (docs/decisions.md, "Speed: what the profiler found") give
exactly what the longer way gives, and the settings taken from the machine are what it has."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import polars as pl
import pytest

from chartaudit.audits.engine import BUILT_IN, Catalogue
from chartaudit.flows import steps
from chartaudit.sample_data import DEMO_EXTRACT
from chartaudit.schemas.casting import type_table
from chartaudit.schemas.contract import TABLE_ORDER
from chartaudit.schemas.validation import ValidatedExtract, load_extract
from chartaudit.storage import warehouse

ZONE = "America/Chicago"


def test_duckdb_gets_the_cpus_and_a_share_of_the_memory_of_this_process():
    settings = warehouse.machine_settings()
    assert settings["threads"] == len(os.sched_getaffinity(0))
    available = next(
        int(line.split()[1]) * 1024
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemAvailable:")
    )
    limit_mb = int(str(settings["memory_limit"]).removesuffix("MB"))
    assert 256 <= limit_mb <= available // 2**20
    with steps.scratch_connection() as con:
        (threads,) = con.sql("SELECT current_setting('threads')").fetchall()[0]
    assert threads == settings["threads"]


def test_the_audit_reads_the_saved_tables_as_the_frames_hold_them(tmp_path):
    validated = load_extract(DEMO_EXTRACT)
    validated.save(tmp_path / "validated")
    eid = validated.manifest.extract_id
    with (
        steps.canonical_connection(validated, eid) as from_frames,
        steps.saved_canonical_connection(tmp_path / "validated", eid) as from_files,
    ):
        for table in TABLE_ORDER:
            query = f"SELECT * FROM {table} ORDER BY source_line"
            expected = from_frames.sql(query).pl()
            assert expected.height == validated.tables[table].height > 0
            assert from_files.sql(query).pl().equals(expected), table


def test_a_catalogue_is_read_once_and_again_when_a_file_changes(tmp_path):
    folder = tmp_path / "extra"
    (folder / "measures").mkdir(parents=True)
    (folder / "value_sets").mkdir()
    source = (BUILT_IN / "measures" / "LN-01.yaml").read_text()
    measure = folder / "measures" / "XX-01.yaml"
    measure.write_text(source.replace("id: LN-01", "id: XX-01", 1))
    first = Catalogue.load([folder])
    assert Catalogue.load([folder]) is first
    title = first.measure("XX-01").title
    # At once, and to the same size: a change a file's modification time may not show.
    renamed = "R" * len(title)
    measure.write_text(measure.read_text().replace(title, renamed, 1))
    assert Catalogue.load([folder]).measure("XX-01").title == renamed


# Each pair: the plain form (one strptime) and the same wall time written in a form only the
# full grammar reads ("T", a fraction of zero).
PAIRS = [
    ("2026-10-15 11:05:00", "2026-10-15T11:05:00.0"),  # an ordinary time
    ("2026-03-08 02:30:00", "2026-03-08T02:30:00.0"),  # skipped by the spring change
    ("2026-11-01 01:30:00", "2026-11-01T01:30:00.0"),  # repeated by the autumn change
    ("2026-02-30 10:00:00", "2026-02-30T10:00:00.0"),  # no such day
    ("2026-10-15 24:00:00", "2026-10-15T24:00:00.0"),  # no such hour
]


@pytest.mark.parametrize(("plain", "other"), PAIRS)
def test_plain_timestamps_read_as_the_full_grammar_reads_them(plain, other):
    def typed(text: str) -> tuple[pl.DataFrame, pl.DataFrame]:
        frame = pl.DataFrame(
            {
                "encounter_id": ["EN1"],
                "patient_id": ["PT1"],
                "site_id": ["S"],
                "setting": ["outpatient"],
                "arrival_time": [text],
                "source_line": [2],
            }
        )
        rows, faults = type_table("encounters", "encounters.csv", frame, ZONE)
        return rows, faults.drop("value")

    (plain_rows, plain_faults), (other_rows, other_faults) = typed(plain), typed(other)
    assert plain_rows.equals(other_rows)
    assert plain_faults.equals(other_faults)


def test_publish_takes_the_tables_from_parquet_files_as_from_frames(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    plan = steps.load_step(DEMO_EXTRACT, work, None)
    published = {}
    for name in ("files", "frames"):
        path = tmp_path / f"{name}.duckdb"
        with warehouse.run_lock(path, plan.record):
            warehouse.begin_run(path, plan.record)
            if name == "files":  # the publish step names the validated Parquet files
                steps.validate_step(work)
                steps.audit_step(work, path)
                steps.summarise_step(work)
                steps.publish_step(work, path)
            else:
                _publish_frames(work, path)
        with warehouse.connect(path, read_only=True) as con:
            published[name] = {
                t: con.sql(f"SELECT * FROM {t} ORDER BY source_line").pl() for t in TABLE_ORDER
            }
            published[name]["case_results"] = con.sql("SELECT * FROM case_results").pl()
    validated = ValidatedExtract.load(work / "validated")
    for table in TABLE_ORDER:
        assert published["files"][table].height == validated.tables[table].height > 0
        assert published["files"][table].equals(published["frames"][table]), table
    assert published["files"]["case_results"].height > 0


def _publish_frames(work: Path, path: Path) -> None:
    """What the publish step did before: the validated tables as polars frames."""
    plan = steps.RunPlan.load(work)
    validated = ValidatedExtract.load(work / "validated")
    results = work / "results"
    read = {n: pl.read_parquet(results / f"{n}.parquet") for n in RESULT_FILES}
    outputs = warehouse.RunOutputs(
        tables=validated.tables,
        quarantine=validated.quarantine,
        data_quality=validated.data_quality,
        load_counts=validated.load_counts,
        **read,
    )
    coverage_end = datetime.fromisoformat(plan.coverage_end)
    warehouse.publish_run(path, plan.run_id, plan.extract_id, coverage_end, outputs)


RESULT_FILES = (
    "measures",
    "case_results",
    "measure_summary",
    "component_summary",
    "timing_summary",
    "rejudge_runs",
)
