"""The audit in partitions of patients on Dask gives what one process gives: this month's cases,
the summaries over their union, and the earlier months' pending cases judged again."""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path

import duckdb
import polars as pl
import pytest

from chartaudit.flows import partitions, steps
from chartaudit.flows.settings import ScaleSettings
from chartaudit.sample_data import DEMO_EXTRACT
from chartaudit.schemas.contract import TABLE_ORDER
from chartaudit.storage import warehouse
from tests.flows.test_pipeline import run_pipeline
from tests.flows.test_rejudge import _extracts

PARTITIONS = 4


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory):
    import os

    os.environ["PREFECT_HOME"] = str(tmp_path_factory.mktemp("prefect-home"))
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="module")
def september_warehouse(generated, tmp_path_factory) -> Path:
    """A warehouse holding 2026-09 audited on the extract cut at 30 September: some of its
    cases are pending, for the October runs to judge again."""
    base = tmp_path_factory.mktemp("september")
    extract = Path(shutil.copytree(generated, base / "extract"))
    manifest = json.loads((extract / "manifest.json").read_text())
    (extract / "manifest.json").write_text(json.dumps({**manifest, "coverage_end": "2026-09-30"}))
    path = base / "audit.duckdb"
    run_pipeline(extract, path, base / "work", period="2026-09")
    return path


def _table(path: Path, query: str) -> pl.DataFrame:
    with warehouse.connect(path, read_only=True) as con:
        return con.sql(query).pl()


# Every column but the run ids (and the timestamps of the runs, which are not in these tables),
# in one total order: the rows compared one by one.
CASES = "SELECT * EXCLUDE (run_id) FROM case_results ORDER BY ALL"
SUMMARY = "SELECT * EXCLUDE (run_id) FROM measure_summary ORDER BY ALL"
COMPONENTS = "SELECT * EXCLUDE (run_id) FROM component_summary ORDER BY ALL"
TIMING = "SELECT * EXCLUDE (run_id) FROM timing_summary ORDER BY ALL"
REJUDGED = "SELECT * EXCLUDE (run_id, rejudge_run_id) FROM rejudged_cases ORDER BY ALL"
MEASURES = "SELECT * EXCLUDE (run_id) FROM measures ORDER BY ALL"
RUNS = "SELECT period, kind, status FROM latest_runs ORDER BY ALL"


@pytest.fixture(scope="module")
def one_and_four(prefect_server, generated, september_warehouse, tmp_path_factory):
    """October audited by the flow twice on copies of the September warehouse: in one process,
    and in four partitions on a local Dask cluster the flow starts (two threads)."""
    from distributed import LocalCluster

    from chartaudit.flows.monthly_audit import monthly_audit

    started = []

    class Recorded(LocalCluster):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            started.append(self)

    base = tmp_path_factory.mktemp("october")
    runs = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(partitions, "LocalCluster", Recorded)
        for count in (1, PARTITIONS):
            path = base / f"audit-{count}.duckdb"
            shutil.copy(september_warehouse, path)
            runs[count] = monthly_audit(
                str(generated), "2026-10", str(path), str(base / f"out-{count}"), partitions=count
            )
    return runs, started


def test_four_partitions_on_dask_give_the_results_of_one_process(one_and_four):
    runs, _ = one_and_four
    one, four = runs[1], runs[PARTITIONS]
    assert four.cases == one.cases > 0
    for query in (CASES, SUMMARY, COMPONENTS, TIMING, REJUDGED, MEASURES, RUNS):
        expected = _table(Path(one.warehouse), query)
        got = _table(Path(four.warehouse), query)
        assert got.equals(expected), query
    # The runs compared judged again September's pending cases, and published one run each.
    assert _table(Path(four.warehouse), RUNS).rows() == [
        ("2026-09", "rejudge", "succeeded"),
        ("2026-10", "audit", "succeeded"),
    ]
    assert _table(Path(four.warehouse), "SELECT count(*) AS n FROM rejudged_cases")["n"][0] > 0


def test_the_run_leaves_no_dask_cluster_behind(one_and_four):
    import psutil

    _, started = one_and_four
    assert len(started) == 1  # the partitioned run's own; the run of one process starts none
    assert started[0].status.name == "closed"
    assert not [t.name for t in threading.enumerate() if "Dask-Default-Threads" in t.name]
    others = [
        p.cmdline()
        for p in psutil.Process().children(recursive=True)
        if not any("prefect.server" in part for part in p.cmdline())  # the test's own server
    ]
    assert others == []


@pytest.fixture(scope="module")
def validated_demo(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("demo-work")
    steps.load_step(DEMO_EXTRACT, work, None)
    steps.validate_step(work)
    return work


def _patients(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    return [p for (p,) in con.execute(f"SELECT patient_id FROM {table}").fetchall()]


def test_every_patient_and_row_lands_in_exactly_one_partition(validated_demo):
    plan = steps.RunPlan.load(validated_demo)
    everyone = partitions.partition_connection(validated_demo, plan.extract_id, 0, 1)
    seen: dict[str, list[str]] = {table: [] for table in TABLE_ORDER}
    slices = []
    for k in range(PARTITIONS):
        with partitions.partition_connection(validated_demo, plan.extract_id, k, PARTITIONS) as con:
            mine = set(_patients(con, "patients"))
            for table in TABLE_ORDER:
                rows = _patients(con, table)
                assert set(rows) <= mine, table  # a patient's rows go with the patient
                seen[table] += rows
        assert mine  # the demo's patients fill every partition
        slices.append(mine)
    assert sum(len(s) for s in slices) == len(set().union(*slices))  # disjoint
    for table in TABLE_ORDER:
        assert sorted(seen[table]) == sorted(_patients(everyone, table)), table
    everyone.close()


def test_the_partition_is_duckdbs_hash_of_the_patient_id():
    ids = ["PT000001", "PT000002", "R1", "R2", "R3"]
    got = duckdb.sql(
        f"SELECT patient_id, {partitions.partition_sql(PARTITIONS)} AS k"
        f" FROM unnest({ids}) t(patient_id)"
    ).fetchall()
    want = duckdb.sql(
        "SELECT patient_id, hash(patient_id) % 4 FROM unnest(?) t(patient_id)", params=[ids]
    ).fetchall()
    assert got == want
    assert {k for _, k in got} <= set(range(PARTITIONS))


def _run_partitioned(extract: Path, path: Path, work: Path, period: str, count: int) -> None:
    """The flow's steps with the audit in ``count`` partitions, one after another here."""
    work.mkdir()
    plan = steps.load_step(extract, work, period)
    with warehouse.run_lock(path, plan.record):
        warehouse.begin_run(path, plan.record)
        steps.validate_step(work)
        partitions.prepare_partitions_step(work, path)
        for k in range(count):
            partitions.audit_partition_step(work, k, count)
        partitions.merge_partitions_step(work, count)
        steps.summarise_step(work)
        steps.publish_step(work, path)


def test_a_month_is_judged_again_whole_when_only_one_partition_changed(tmp_path):
    """R1 and R2's September cases leave pending in October; R3's stay as they were, in a
    partition where nothing changed: the rejudge run still holds them (tests/flows/
    test_rejudge.py, in one process)."""
    september, october = _extracts(tmp_path)
    count = 3
    where = dict(
        duckdb.sql(
            f"SELECT patient_id, {partitions.partition_sql(count)}"
            " FROM unnest(['R1', 'R2', 'R3']) t(patient_id)"
        ).fetchall()
    )
    assert where["R3"] not in {where["R1"], where["R2"]}  # what this test needs of the hash
    one, split = tmp_path / "one.duckdb", tmp_path / "split.duckdb"
    run_pipeline(september, one, tmp_path / "w0", period="2026-09")
    shutil.copy(one, split)
    run_pipeline(october, one, tmp_path / "w1", period="2026-10")
    _run_partitioned(october, split, tmp_path / "w2", "2026-10", count)
    latest = "SELECT * EXCLUDE (run_id) FROM latest_case_results ORDER BY ALL"
    for query in (latest, CASES, SUMMARY, REJUDGED, MEASURES, RUNS):
        assert _table(split, query).equals(_table(one, query)), query
    r3 = _table(
        split,
        "SELECT c.measure_id, c.outcome FROM latest_case_results c JOIN latest_runs r"
        " USING (run_id) WHERE r.kind = 'rejudge' AND c.patient_id = 'R3'"
        " AND c.measure_id IN ('LN-01', 'LN-02') ORDER BY ALL",
    )
    assert r3.rows() == [("LN-01", "met"), ("LN-02", "not_met")]


def _listening() -> set[tuple[str, int]]:
    import psutil

    return {
        (c.laddr.ip, c.laddr.port)
        for c in psutil.Process().net_connections()
        if c.status == psutil.CONN_LISTEN
    }


def test_without_an_address_the_runs_own_cluster_is_local_and_closed_after_it():
    before = _listening()
    with partitions.dask_task_runner(ScaleSettings(partitions=PARTITIONS)) as runner:
        from distributed import Client

        opened = _listening() - before
        assert opened and {ip for ip, _ in opened} == {"127.0.0.1"}  # nothing on the network
        with Client(runner.address) as client:
            workers = min(PARTITIONS, os.cpu_count() or 1)  # one a core, at most one a partition
            assert len(client.scheduler_info()["workers"]) == workers
            assert client.submit(sum, [1, 2]).result() == 3
    with pytest.raises(OSError):
        Client(runner.address, timeout=2)
    assert _listening() - before == set()


def test_with_an_address_the_runner_joins_that_cluster_and_starts_none():
    address = "tcp://scheduler.example:8786"
    with partitions.dask_task_runner(ScaleSettings(partitions=4, dask_address=address)) as runner:
        assert runner.address == address


def test_scale_comes_from_the_settings_and_the_command_line_overrides(tmp_path, monkeypatch):
    from chartaudit.flows.settings import SettingsError, scale

    (tmp_path / "chartaudit.toml").write_text(
        '[scale]\npartitions = 3\ndask_address = "tcp://s:8786"\nwork_dir = "shared"\n'
    )
    monkeypatch.setenv("CHARTAUDIT_SETTINGS", str(tmp_path / "chartaudit.toml"))
    assert scale() == ScaleSettings(
        partitions=3, dask_address="tcp://s:8786", work_dir=tmp_path / "shared"
    )
    assert scale(partitions=8).partitions == 8
    assert scale(dask_address="tcp://t:8786").dask_address == "tcp://t:8786"
    with pytest.raises(SettingsError, match="--partitions 0"):
        scale(partitions=0)
    (tmp_path / "chartaudit.toml").write_text("[scale]\npartitions = 0\n")
    with pytest.raises(SettingsError, match=r"scale\.partitions"):
        scale()


def test_the_work_folder_goes_under_the_scale_work_dir_and_is_removed(tmp_path):
    from chartaudit.flows.workfolder import PREFIX, work_folder

    shared = tmp_path / "shared" / "work"  # made when missing
    with work_folder(shared) as folder:
        assert folder.parent == shared and folder.name.startswith(PREFIX)
    assert list(shared.iterdir()) == []
