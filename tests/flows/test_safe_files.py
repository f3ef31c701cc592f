"""Safe files: no path built from input leaves its folder; what a run creates is the owner's
only (0600 files, 0700 folders); the work folder never outlives a run, failed or not."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import duckdb
import pytest

from chartaudit.audits.engine import Catalogue
from chartaudit.audits.measure import MeasureError
from chartaudit.audits.period import PeriodError, parse_period
from chartaudit.flows import steps
from chartaudit.flows.files import owner_only_files
from chartaudit.flows.workfolder import work_folder
from chartaudit.reports.render import ReportError, report_path
from chartaudit.storage import warehouse
from tests.flows.test_cli import chartaudit
from tests.flows.test_measure_folder import TOY_MEASURE, TOY_VALUE_SET
from tests.flows.test_pipeline import run_pipeline


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# --- paths built from input ---------------------------------------------------------------------


@pytest.mark.parametrize("period", ["../../x", "2026-10/../../x", "2026-10\n", "..", "/tmp/x"])
def test_a_hostile_period_is_refused_before_any_path_is_built(period, tmp_path):
    with pytest.raises(PeriodError):
        parse_period(period)
    with pytest.raises(ReportError, match="period must look like YYYY-MM"):
        report_path(tmp_path / "out", period)
    assert report_path(tmp_path / "out", "2026-10") == tmp_path / "out" / "chartaudit-2026-10.html"


def test_run_and_report_refuse_a_hostile_period_and_write_nothing(generated, tmp_path):
    work = tmp_path / "cwd"
    work.mkdir()
    done = chartaudit(
        "run",
        generated,
        "--period",
        "../../x",
        "--warehouse",
        "w.duckdb",
        "--out",
        "out",
        cwd=work,
    )
    assert (done.returncode, done.stderr) == (
        1,
        "error: period '../../x' is not a month like 2026-10\n",
    )
    published = tmp_path / "audit.duckdb"
    run_pipeline(generated, published, tmp_path / "w")
    done = chartaudit(
        "report", "--period", "../../x", "--warehouse", published, "--out", "out", cwd=work
    )
    assert (done.returncode, done.stderr) == (
        1,
        "error: period '../../x' is not a month like 2026-10\n",
    )
    assert tree(work) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "audit.duckdb",
        "audit.duckdb.lock",  # the run lock's file, beside the warehouse (storage/warehouse.py)
        "cwd",
        "w",
    ]


@pytest.mark.parametrize("measure_id", ["../x", "a/b", "..", "x.", "LN 01", ""])
def test_a_measure_id_that_could_name_a_path_is_refused(measure_id, tmp_path):
    folder = tmp_path / "site"
    (folder / "measures").mkdir(parents=True)
    (folder / "value_sets").mkdir()
    (folder / "value_sets" / "site_foot_inspection.csv").write_text(TOY_VALUE_SET)
    text = TOY_MEASURE.replace("id: TOY-01", f"id: {measure_id!r}")
    (folder / "measures" / "TOY-01.yaml").write_text(text)
    with pytest.raises(MeasureError) as caught:
        Catalogue.load([folder])
    assert str(caught.value) == (
        f"TOY-01.yaml: id: {measure_id!r} is not letters and digits joined by - _ or . (e.g. XX-01)"
    )
    done = chartaudit("measures", "--measures", folder, "list")
    assert done.returncode == 1
    assert done.stderr.startswith("error: TOY-01.yaml: id: ")


def test_measure_ids_like_the_built_in_ones_pass(tmp_path):
    for good in ("LN-01", "XX-01", "site.foot_2", "A1"):
        folder = tmp_path / good / "site"
        (folder / "measures").mkdir(parents=True)
        (folder / "value_sets").mkdir()
        (folder / "value_sets" / "site_foot_inspection.csv").write_text(TOY_VALUE_SET)
        text = TOY_MEASURE.replace("id: TOY-01", f"id: {good}")
        (folder / "measures" / "m.yaml").write_text(text)
        if good == "LN-01":
            with pytest.raises(MeasureError, match="already defined"):
                Catalogue.load([folder])
        else:
            assert good in {m.id for m in Catalogue.load([folder]).measures}


# --- file modes ---------------------------------------------------------------------------------


def test_without_the_guard_duckdb_creates_a_world_readable_warehouse(tmp_path):
    """Why the guard exists: under a common umask (022) DuckDB's file is readable by all."""
    previous = os.umask(0o022)
    try:
        with warehouse.connect(tmp_path / "open.duckdb"):
            pass
    finally:
        os.umask(previous)
    assert mode(tmp_path / "open.duckdb") == 0o644


def test_under_the_guard_the_warehouse_its_wal_and_the_work_files_are_the_owners_only(
    generated, tmp_path
):
    previous = os.umask(0o022)  # a shell's usual umask; the guard overrides it
    try:
        with owner_only_files():
            path = tmp_path / "audit.duckdb"
            with warehouse.connect(path) as con:
                con.execute(
                    "INSERT INTO runs (run_id, period, ruleset, status, started_at)"
                    " VALUES ('r', '2026-10', 'source-2025', 'running', now())"
                )
                wal = path.with_name(path.name + ".wal")
                assert wal.exists()  # DuckDB keeps the write-ahead log until it checkpoints
                assert mode(wal) == 0o600
            assert mode(path) == 0o600
            work = tmp_path / "work"
            run_pipeline(generated, tmp_path / "w.duckdb", work)
            out = tmp_path / "reports" / "out"
            report, _ = steps.report_step(tmp_path / "w.duckdb", "2026-10", out)
        assert os.umask(0o022) == 0o022  # the guard put the umask back
    finally:
        os.umask(previous)
    files = [p for p in work.rglob("*") if p.is_file()]
    folders = [p for p in work.rglob("*") if p.is_dir()]
    assert len(files) > 20 and folders
    assert {str(p.relative_to(work)): mode(p) for p in files} == {
        str(p.relative_to(work)): 0o600 for p in files
    }
    assert {mode(p) for p in folders} == {0o700}
    assert mode(tmp_path / "w.duckdb") == 0o600
    assert mode(report) == 0o600
    assert mode(out) == mode(out.parent) == 0o700


def test_a_file_that_exists_keeps_the_mode_its_owner_gave_it(generated, tmp_path):
    """A warehouse an operator shared with a group of analysts (0640) stays shared."""
    path = tmp_path / "audit.duckdb"
    run_pipeline(generated, path, tmp_path / "w1")
    path.chmod(0o640)
    with owner_only_files():
        run_pipeline(generated, path, tmp_path / "w2")
    assert mode(path) == 0o640
    with duckdb.connect(str(path), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM runs").fetchone()[0] == 2


# --- the work folder ----------------------------------------------------------------------------


def test_the_work_folder_is_private_and_removed_after_success_and_failure(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # read TMPDIR again
    with work_folder() as work:
        assert work.parent == tmp_path and work.name.startswith("chartaudit-run-")
        assert mode(work) == 0o700
        (work / "plan.json").write_text("{}")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RuntimeError, match="step failed"), work_folder() as work:
        (work / "raw").mkdir()
        raise RuntimeError("step failed")
    assert list(tmp_path.iterdir()) == []


def test_a_failed_chartaudit_run_leaves_no_work_folder(generated, tmp_path):
    """A run that fails in its validate step, after the work folder was made and filled."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    env_home = tmp_path / "prefect"
    done = chartaudit(
        "run",
        generated,
        "--period",
        "2026-10",
        "--warehouse",
        tmp_path / "audit.duckdb",
        "--out",
        tmp_path / "out",
        "--max-quarantine-share",
        "0.0001",
        prefect_home=env_home,
        env={"TMPDIR": str(temp)},
    )
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr
    assert re.fullmatch(
        r'error: \w+: [\d.]+% of rows quarantined \(mostly "\w+"\), over the limit of 0\.0%\n',
        done.stderr,
    ), done.stderr
    assert list(temp.glob("chartaudit-run-*")) == []
    assert mode(tmp_path / "audit.duckdb") == 0o600
    with duckdb.connect(str(tmp_path / "audit.duckdb"), read_only=True) as con:
        assert con.execute("SELECT status FROM runs").fetchall() == [("failed",)]
