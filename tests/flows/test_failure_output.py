"""What a failed `chartaudit` prints, run as a real process: a known condition is one `error:`
line on standard error, and the same words (never a traceback) in the run log on standard
output, exit status 1; an unexpected fault keeps its full traceback in the run log, exit 2."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from chartaudit.storage import warehouse
from tests.flows.test_cli import chartaudit, drop_column
from tests.flows.test_measure_folder import TOY_MEASURE, toy_folder


def assert_one_error_line(done, line: str) -> None:
    assert done.stderr.splitlines() == [line], done.stdout[-3000:] + done.stderr
    assert "Traceback" not in done.stdout + done.stderr, done.stdout[-3000:]


def runs(path: Path) -> list[tuple]:
    with warehouse.connect(path, read_only=True) as con:
        return con.execute("SELECT status, error FROM runs ORDER BY started_at").fetchall()


@pytest.mark.parametrize(
    ("arguments", "line"),
    [
        (["--period", "2026-13"], "error: period '2026-13' is not a month like 2026-10"),
        (
            ["--period", "2026-10", "--ruleset", "x"],
            "error: unknown rule set 'x'; known: evidence-2026, source-2025",
        ),
    ],
    ids=["bad-period", "unknown-rule-set"],
)
def test_a_bad_argument_is_one_line_and_no_traceback(generated, tmp_path, arguments, line):
    done = chartaudit("run", generated, *arguments, "--warehouse", tmp_path / "w.duckdb")
    assert done.returncode == 1
    assert_one_error_line(done, line)
    assert list(tmp_path.iterdir()) == []


def test_a_missing_extract_folder_is_one_line_and_no_traceback(tmp_path):
    done = chartaudit("run", tmp_path / "nowhere", "--period", "2026-10", cwd=tmp_path)
    assert done.returncode == 1
    assert_one_error_line(
        done,
        f"error: extract rejected: {tmp_path / 'nowhere'} is not a folder; give the folder"
        " holding the table files",
    )
    assert list(tmp_path.iterdir()) == []


def test_a_missing_warehouse_folder_is_one_line_and_no_traceback(generated, tmp_path):
    path = tmp_path / "nowhere" / "audit.duckdb"
    done = chartaudit("run", generated, "--period", "2026-10", "--warehouse", path, cwd=tmp_path)
    assert done.returncode == 1
    assert_one_error_line(done, f"error: cannot open warehouse {path}: no folder {path.parent}")
    assert done.stdout == ""  # refused before Prefect started
    assert list(tmp_path.iterdir()) == []


def test_a_rejected_extract_is_one_line_and_no_traceback(extract_copy, tmp_path):
    drop_column(extract_copy / "encounters.csv", "arrival_time")
    done = chartaudit("run", extract_copy, "--period", "2026-10", cwd=tmp_path)
    assert done.returncode == 1
    assert_one_error_line(
        done,
        "error: extract rejected: encounters.csv has no required column arrival_time; add it to"
        " the export",
    )


def test_a_bad_generator_argument_is_one_line_and_no_traceback(tmp_path):
    done = chartaudit("generate", tmp_path / "x", "--patients", "10")
    assert done.returncode == 1
    assert done.stderr.startswith("error: patients=10 is too few for every scenario; use >= ")
    assert_one_error_line(done, done.stderr.strip())


def test_an_unreadable_warehouse_is_one_line_and_no_traceback(tmp_path):
    junk = tmp_path / "junk.duckdb"
    junk.write_text("not a database\n")
    done = chartaudit("report", "--period", "2026-10", "--warehouse", junk)
    assert done.returncode == 1
    assert_one_error_line(
        done,
        f'error: cannot open warehouse {junk}: IO Error: The file "{junk}" exists, but it is'
        " not a valid DuckDB database file!",
    )


def test_a_passed_threshold_logs_one_line_inside_the_flow_and_no_traceback(generated, tmp_path):
    """The quarantine limit is checked inside the Prefect flow, whose engines would log a
    traceback for it; the run log gets the error line instead, once."""
    path = tmp_path / "audit.duckdb"
    done = chartaudit(
        "run",
        generated,
        "--period",
        "2026-10",
        "--warehouse",
        path,
        "--max-quarantine-share",
        "0.001",
        cwd=tmp_path,
        prefect_home=tmp_path / "prefect",
    )
    assert done.returncode == 1
    line = done.stderr.strip()
    assert re.fullmatch(
        r'error: \w+: [\d.]+% of rows quarantined \(mostly "\w+"\), over the limit of 0\.1%', line
    ), line
    assert_one_error_line(done, line)
    logged = [x for x in done.stdout.splitlines() if x.endswith(f" - {line}")]
    assert len(logged) == 1 and "| ERROR   | Flow run '" in logged[0], done.stdout[-3000:]
    [(status, error)] = runs(path)
    assert (status, error) == ("failed", f"QuarantineLimitExceeded: {line.removeprefix('error: ')}")


def test_an_unexpected_fault_keeps_its_traceback_in_the_run_log(generated, tmp_path):
    """A measure whose `sql:` escape hatch names a column that does not exist compiles, and
    fails inside DuckDB at run time: a fault no check anticipated."""
    broken = TOY_MEASURE + '  sql: "e.no_such_column > 1"\n'
    folder = toy_folder(tmp_path, broken)
    path = tmp_path / "audit.duckdb"
    done = chartaudit(
        "run",
        generated,
        "--period",
        "2026-10",
        "--warehouse",
        path,
        "--measures",
        folder,
        cwd=tmp_path,
        prefect_home=tmp_path / "prefect",
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        'error: unexpected BinderException: Binder Error: Table "e" does not have a column'
        ' named "no_such_column"'
    ]
    assert "Traceback (most recent call last):" in done.stdout
    assert 'in run_measures\n    con.execute(f"INSERT INTO {target} BY NAME' in done.stdout
    assert "Traceback" not in done.stderr
    [(status, error)] = runs(path)
    assert status == "failed" and error.startswith("BinderException: Binder Error: Table")


def test_an_unexpected_fault_outside_the_flow_prints_its_traceback_too(tmp_path):
    """`generate` into a path that is a file: an environment fault, not a known condition."""
    taken = tmp_path / "taken"
    taken.write_text("")
    done = chartaudit("generate", taken)
    assert done.returncode == 2
    assert len(done.stderr.splitlines()) == 1
    assert done.stderr.startswith("error: unexpected FileExistsError: ")
    assert done.stdout.startswith("Traceback (most recent call last):")
    assert done.stdout.rstrip().splitlines()[-1].startswith("FileExistsError: ")
