"""The warehouse: schema, file format, the run ledger, one-transaction publish, latest views."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import polars as pl
import pytest

from chartaudit.schemas.contract import TABLE_ORDER, TABLES
from chartaudit.storage import warehouse

ROOT = Path(__file__).resolve().parents[2]
COMPAT_DUCKDB = ROOT / ".venv" / "compat-duckdb-1.1"
T0 = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)


def empty_tables() -> dict[str, pl.DataFrame]:
    dtypes = {"str": pl.String, "int": pl.Int64, "float": pl.Float64, "date": pl.Date}
    frames = {}
    for name in TABLE_ORDER:
        schema = {
            c.name: dtypes.get(c.type, pl.Datetime("us", "UTC")) for c in TABLES[name].columns
        }
        frames[name] = pl.DataFrame(schema={**schema, "source_line": pl.Int64})
    return frames


def outputs(run_id: str, period: str, outcomes: list[str], tables=None) -> warehouse.RunOutputs:
    cases = pl.DataFrame(
        {
            "run_id": run_id,
            "period": period,
            "measure_id": "LN-01",
            "measure_version": "2025.1",
            "unit": "episode",
            "patient_id": [f"P{i}" for i in range(len(outcomes))],
            "index_time": [T0] * len(outcomes),
            "outcome": outcomes,
            "evidence": [f"{o}: test" for o in outcomes],
        }
    )
    summary = pl.DataFrame(
        {
            "run_id": [run_id],
            "period": [period],
            "measure_id": ["LN-01"],
            "stratum_kind": ["all"],
            "denominator": [len(outcomes)],
            "excluded": [0],
            "met": [outcomes.count("met")],
            "not_met": [outcomes.count("not_met")],
            "pending": [0],
        }
    )
    measures = pl.DataFrame(
        {
            "run_id": [run_id],
            "measure_id": ["LN-01"],
            "measure_version": ["2025.1"],
            "title": ["t"],
            "unit": ["episode"],
            "measure_type": ["timeliness"],
            "source": ["seed"],
        }
    )
    quarantine = pl.DataFrame(
        {
            "table_name": ["patients"],
            "source_file": ["patients.csv"],
            "source_line": [3],
            "column_name": ["sex"],
            "rule": ["allowed_values"],
            "value": ["Q"],
        }
    )
    counts = pl.DataFrame(
        {
            "table_name": ["patients"],
            "source_file": ["patients.csv"],
            "input_rows": [2],
            "loaded_rows": [1],
            "quarantined_rows": [1],
        }
    )
    return warehouse.RunOutputs(
        tables or empty_tables(), quarantine, counts, measures, cases, summary
    )


def record(run_id: str, period: str = "2026-10") -> warehouse.RunRecord:
    return warehouse.RunRecord(run_id, period, "source-2025", "x1", "d1", "0.1", "UTC", T0)


def publish(path: Path, run_id: str, outcomes: list[str], period: str = "2026-10") -> None:
    with warehouse.run_lock(path, record(run_id, period)):
        warehouse.begin_run(path, record(run_id, period))
        warehouse.publish_run(path, run_id, "x1", T0, outputs(run_id, period, outcomes))


def snapshot(path: Path) -> dict[str, list]:
    with warehouse.connect(path, read_only=True) as con:
        tables = [r[0] for r in con.execute("SHOW TABLES").fetchall()]
        return {t: sorted(map(str, con.execute(f"SELECT * FROM {t}").fetchall())) for t in tables}


def test_new_warehouse_has_every_table_and_view(tmp_path):
    with warehouse.connect(tmp_path / "w.duckdb") as con:
        names = {r[0] for r in con.execute("SHOW TABLES").fetchall()}
    expected = set(TABLE_ORDER) | {
        "runs",
        "load_counts",
        "quarantine",
        "measures",
        "case_results",
        "measure_summary",
        "latest_runs",
        "latest_case_results",
        "latest_measure_summary",
    }
    assert expected <= names


def test_file_is_written_in_the_duckdb_1_0_storage_format(tmp_path):
    path = tmp_path / "w.duckdb"
    publish(path, "r1", ["met"])
    header = path.read_bytes()[:32]
    assert header[8:12] == b"DUCK"
    assert int.from_bytes(header[12:20], "little") == warehouse.STORAGE_VERSION_NUMBER


@pytest.mark.skipif(
    not COMPAT_DUCKDB.exists(), reason="`make install` puts DuckDB 1.1.3 in .venv/compat-duckdb-1.1"
)
def test_an_older_duckdb_opens_the_warehouse_read_only(tmp_path):
    path = tmp_path / "w.duckdb"
    publish(path, "r1", ["met", "not_met"])
    script = (
        "import duckdb, sys; assert duckdb.__version__ == '1.1.3', duckdb.__version__;"
        f"con = duckdb.connect({str(path)!r}, read_only=True);"
        "print(con.execute('SELECT count(*) FROM latest_case_results').fetchone()[0])"
    )
    env = {**os.environ, "PYTHONPATH": str(COMPAT_DUCKDB)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "2"


def test_publish_records_a_succeeded_run_and_its_rows(tmp_path):
    path = tmp_path / "w.duckdb"
    publish(path, "r1", ["met", "met", "not_met"])
    with warehouse.connect(path, read_only=True) as con:
        assert con.execute("SELECT status FROM runs").fetchall() == [("succeeded",)]
        assert con.execute("SELECT count(*) FROM latest_case_results").fetchone()[0] == 3
        rows = con.execute("SELECT run_id, extract_id, source_line, rule FROM quarantine")
        assert rows.fetchall() == [("r1", "x1", 3, "allowed_values")]


def test_rows_without_an_id_are_published_with_their_content_name(tmp_path):
    """A warehouse of an older chartaudit has no row_id; opening it for writing adds it, and a
    published lab row carries the name the engine's evidence uses for it."""
    path = tmp_path / "w.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute(
            "CREATE TABLE labs (patient_id VARCHAR, encounter_id VARCHAR, loinc VARCHAR,"
            " value_num DOUBLE, value_text VARCHAR, unit VARCHAR, collected_time TIMESTAMPTZ,"
            " resulted_time TIMESTAMPTZ, source_line BIGINT NOT NULL,"
            " extract_id VARCHAR NOT NULL)"
        )
    tables = empty_tables()
    tables["patients"] = pl.DataFrame(
        {
            "patient_id": ["P0"],
            "birth_year": [1960],
            "sex": ["F"],
            "death_date": [None],
            "source_line": [2],
        },
        schema={**tables["patients"].schema},
    )
    tables["labs"] = pl.DataFrame(
        {
            "patient_id": ["P0"],
            "encounter_id": [None],
            "loinc": ["2276-4"],
            "value_num": [31.5],
            "value_text": [None],
            "unit": ["ng/mL"],
            "collected_time": [T0],
            "resulted_time": [None],
            "source_line": [9],
        },
        schema=tables["labs"].schema,
    )
    with warehouse.run_lock(path, record("r1")):
        warehouse.begin_run(path, record("r1"))
        warehouse.publish_run(path, "r1", "x1", T0, outputs("r1", "2026-10", ["met"], tables))
    with warehouse.connect(path, read_only=True) as con:
        rows = con.execute("SELECT source_line, row_id FROM labs").fetchall()
    content = f'["P0",null,"2276-4",31.5,null,"ng/mL",{int(T0.timestamp() * 1e6)},null]'
    assert rows == [(9, "labs:" + hashlib.md5(content.encode()).hexdigest()[:16])]


def test_rerun_of_a_period_replaces_it_in_the_latest_views(tmp_path):
    path = tmp_path / "w.duckdb"
    publish(path, "r1", ["met", "not_met"])
    publish(path, "r2", ["met", "met", "met"])
    publish(path, "r3", ["not_met"], period="2026-09")
    with warehouse.connect(path, read_only=True) as con:
        latest = con.execute(
            "SELECT period, run_id, count(*) FROM latest_case_results GROUP BY ALL ORDER BY 1"
        ).fetchall()
        assert latest == [("2026-09", "r3", 1), ("2026-10", "r2", 3)]
        assert con.execute("SELECT count(*) FROM case_results").fetchone()[0] == 6


def test_a_failing_publish_leaves_the_warehouse_as_it_was(tmp_path):
    path = tmp_path / "w.duckdb"
    publish(path, "r1", ["met", "not_met"])
    before = snapshot(path)
    bad = outputs("r2", "2026-10", ["met"])
    broken_cases = bad.case_results.with_columns(evidence=pl.lit(None, pl.String))  # NOT NULL
    bad = warehouse.RunOutputs(
        bad.tables, bad.quarantine, bad.load_counts, bad.measures, broken_cases, bad.measure_summary
    )
    with warehouse.run_lock(path, record("r2")):
        warehouse.begin_run(path, record("r2"))
        with pytest.raises(duckdb.ConstraintException):
            warehouse.publish_run(path, "r2", "x1", T0, bad)
        warehouse.fail_run(path, "r2", "ConstraintException: evidence is NULL\nsecond line")
    after = snapshot(path)
    runs_after = after.pop("runs")
    before.pop("runs")
    assert after == before
    with warehouse.connect(path, read_only=True) as con:
        status = con.execute("SELECT run_id, status, error FROM runs ORDER BY run_id").fetchall()
    assert status == [
        ("r1", "succeeded", None),
        ("r2", "failed", "ConstraintException: evidence is NULL"),
    ]
    assert len(runs_after) == 2


def test_readers_open_the_file_read_only_between_runs(tmp_path):
    path = tmp_path / "w.duckdb"
    publish(path, "r1", ["met"])
    script = (
        "import duckdb;"
        f"con = duckdb.connect({str(path)!r}, read_only=True);"
        "print(con.execute('SELECT count(*) FROM latest_case_results').fetchone()[0])"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1"


def test_a_busy_warehouse_gives_one_clear_error(tmp_path):
    path = tmp_path / "w.duckdb"
    publish(path, "r1", ["met"])
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb, time; c = duckdb.connect({str(path)!r}); print('ok', flush=True);"
            " time.sleep(30)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ok"
        with pytest.raises(warehouse.WarehouseBusy, match=r"cannot open warehouse .*w\.duckdb"):
            warehouse.connect(path)
    finally:
        holder.kill()
        holder.wait()


# --- the run lock ---------------------------------------------------------------------------

HOLD_LOCK = """
import sys, time
from datetime import datetime, UTC
from pathlib import Path
from chartaudit.storage import warehouse
run = warehouse.RunRecord("held", "2026-09", "source-2025", "x1", "d1", "0.1", "UTC",
                          datetime(2026, 11, 2, 12, 0, tzinfo=UTC))
with warehouse.run_lock(Path(sys.argv[1]), run):
    print("locked", flush=True)
    time.sleep(60)
"""


@pytest.fixture
def lock_holder(tmp_path):
    """Another process holding the run lock of w.duckdb (run 'held', period 2026-09)."""
    path = tmp_path / "w.duckdb"
    publish(path, "r1", ["met"])
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "locked"
    yield path, holder
    holder.kill()
    holder.wait()


def test_a_run_holding_the_lock_makes_another_busy_naming_it(lock_holder):
    path, holder = lock_holder
    before = snapshot(path)
    expected = (
        f"warehouse is busy: run held (period 2026-09, started 2026-11-02 12:00:00 UTC, process"
        f" {holder.pid}) is writing {path}; try again when it has finished"
    )
    with pytest.raises(warehouse.WarehouseBusy) as probed:
        warehouse.check_can_start_run(path)
    assert str(probed.value) == expected
    with pytest.raises(warehouse.WarehouseBusy) as taken, warehouse.run_lock(path, record("r2")):
        pytest.fail("two runs held the lock at once")
    assert str(taken.value) == expected
    assert snapshot(path) == before


def test_readers_open_the_warehouse_while_a_run_holds_the_lock(lock_holder):
    path, _ = lock_holder
    with warehouse.connect(path, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM latest_case_results").fetchone()[0] == 1


def test_the_lock_dies_with_its_holder(lock_holder):
    path, holder = lock_holder
    holder.kill()  # SIGKILL: no cleanup code runs
    holder.wait()
    warehouse.check_can_start_run(path)
    with warehouse.run_lock(path, record("r2")):
        assert json.loads(warehouse.lock_path(path).read_text())["run_id"] == "r2"
    assert warehouse.lock_path(path).read_text() == ""  # between runs the file stays, empty


def test_checking_an_unlocked_warehouse_writes_nothing(tmp_path):
    warehouse.check_can_start_run(tmp_path / "w.duckdb")
    assert list(tmp_path.iterdir()) == []


def test_a_warehouse_in_a_missing_folder_is_refused_before_anything_is_written(tmp_path):
    path = tmp_path / "nowhere" / "w.duckdb"
    message = f"cannot open warehouse {path}: no folder {tmp_path / 'nowhere'}"
    with pytest.raises(warehouse.WarehouseUnreadable) as checked:
        warehouse.check_can_start_run(path)
    assert str(checked.value) == message
    with (
        pytest.raises(warehouse.WarehouseUnreadable, match="no folder"),
        warehouse.run_lock(path, record("r1")),
    ):
        pytest.fail("a run began without its warehouse folder")
    assert list(tmp_path.iterdir()) == []


def test_begin_run_needs_the_run_lock(tmp_path):
    with pytest.raises(RuntimeError, match=r"begin_run on .*w\.duckdb without its run lock"):
        warehouse.begin_run(tmp_path / "w.duckdb", record("r1"))


def test_the_next_run_records_an_interrupted_one_as_failed(tmp_path):
    """A `running` row found while holding the lock belongs to a process that died."""
    path = tmp_path / "w.duckdb"
    publish(path, "r1", ["met"])
    with warehouse.run_lock(path, record("r2")):
        assert warehouse.begin_run(path, record("r2")) == []
    # r2's process died here: nothing marked it failed, and the lock went with it.
    with warehouse.run_lock(path, record("r3")):
        interrupted = warehouse.begin_run(path, record("r3"))
        warehouse.publish_run(path, "r3", "x1", T0, outputs("r3", "2026-10", ["not_met"]))
    assert interrupted == [warehouse.InterruptedRun("r2", "2026-10", T0)]
    with warehouse.connect(path, read_only=True) as con:
        ledger = con.execute(
            "SELECT run_id, status, finished_at IS NULL, error FROM runs ORDER BY run_id"
        ).fetchall()
    assert ledger == [
        ("r1", "succeeded", False, None),
        (
            "r2",
            "failed",
            True,
            "interrupted: the process died before the run finished (found by run r3)",
        ),
        ("r3", "succeeded", False, None),
    ]


V1_MEASURE_SUMMARY = """
CREATE TABLE measure_summary (
  run_id VARCHAR NOT NULL, period VARCHAR NOT NULL, measure_id VARCHAR NOT NULL,
  stratum_kind VARCHAR NOT NULL, stratum VARCHAR, denominator BIGINT NOT NULL,
  excluded BIGINT NOT NULL, met BIGINT NOT NULL, not_met BIGINT NOT NULL,
  pending BIGINT NOT NULL, rate DOUBLE, ci_low DOUBLE, ci_high DOUBLE
);
INSERT INTO measure_summary VALUES ('r1', '2026-09', 'LN-01', 'all', NULL, 4, 0, 3, 1, 0,
  0.75, NULL, NULL);
"""


def test_an_older_measure_summary_gains_the_status_columns_and_nullable_counts(tmp_path):
    """A v1 warehouse's measure_summary (counts NOT NULL, no status): opened for writing, it
    takes a not-computable row with NULL counts, and its old rows read as status NULL."""
    path = tmp_path / "old.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute(V1_MEASURE_SUMMARY)
    with warehouse.connect(path) as con:
        con.execute(
            "INSERT INTO measure_summary BY NAME SELECT 'r2' AS run_id, '2026-10' AS period,"
            " 'LN-07' AS measure_id, 'all' AS stratum_kind, 'not_computable' AS status,"
            " 'not computable for this period: needs data from 2025-11-01, the extract starts"
            " 2025-12-01' AS status_reason"
        )
        rows = con.execute(
            "SELECT run_id, denominator, met, status FROM measure_summary ORDER BY run_id"
        ).fetchall()
    assert rows == [("r1", 4, 3, None), ("r2", None, None, "not_computable")]
