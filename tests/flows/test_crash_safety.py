"""Crash and concurrency safety with real `chartaudit run` processes.

A run killed with SIGKILL at any point of load, validate, audit or publish leaves the warehouse
readable with the previous results exactly as they were, and no process behind (its worker and
Prefect's temporary server die with it); the next run records it failed and succeeds. A second
run while one is writing is refused at once, naming the first, and writes nothing. The kill
points are reached deterministically through the test hook in flows/checkpoints.py.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from chartaudit.storage import warehouse
from tests.flows.processes import (
    command_line,
    descendants,
    group_members,
    start_run,
    wait_until_gone,
    work_folders,
)
from tests.flows.test_cli import chartaudit, published  # noqa: F401  (a fixture)

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/stat").exists(), reason="reads the process table from /proc (Linux)"
)

INTERRUPTED = "interrupted: the process died before the run finished"


def results(path: Path) -> dict[str, list]:
    """Every table and view but the run ledger, row by row."""
    with warehouse.connect(path, read_only=True) as con:
        names = [r[0] for r in con.execute("SHOW TABLES").fetchall() if r[0] != "runs"]
        return {t: sorted(map(str, con.execute(f"SELECT * FROM {t}").fetchall())) for t in names}


def ledger(path: Path) -> dict[str, tuple]:
    with warehouse.connect(path, read_only=True) as con:
        rows = con.execute("SELECT * FROM runs ORDER BY started_at").fetchall()
    return {row[0]: row for row in rows}


def error_lines(output: str) -> list[str]:
    """The lines on standard error (in the interleaved output, the run log's lines start with
    a time)."""
    return [line for line in output.splitlines() if line.startswith("error: ")]


def latest_cases(path: Path) -> list[tuple]:
    with warehouse.connect(path, read_only=True) as con:
        return con.execute(
            "SELECT * EXCLUDE (run_id) FROM latest_case_results ORDER BY ALL"
        ).fetchall()


def status_of(path: Path) -> dict[str, tuple[str, str | None]]:
    return {run_id: (row[3], row[11]) for run_id, row in ledger(path).items()}


# (point, process killed): the command line a scheduler started, or the worker under it, as
# the kernel's out-of-memory killer would pick the process holding the data.
KILLS = [
    ("load", "cli"),
    ("validate", "cli"),
    ("audit", "cli"),
    ("publish", "cli"),
    ("publish", "worker"),
]


def test_a_run_killed_at_any_point_leaves_the_warehouse_and_no_process_behind(
    published,  # noqa: F811
    generated,
    tmp_path,
):
    before, first = results(published), ledger(published)
    cases_before = latest_cases(published)
    killed: list[str] = []
    for number, (point, target) in enumerate(KILLS):
        run = start_run(generated, published, tmp_path, point, name=f"kill-{number}")
        worker = run.wait_until_halted()
        tree = descendants(run.process.pid)
        assert worker in tree and os.getpgid(worker) == worker  # the worker leads its group
        assert any("uvicorn" in command_line(p) for p in tree), [command_line(p) for p in tree]
        os.kill(run.process.pid if target == "cli" else worker, signal.SIGKILL)
        status, output = run.finish()
        assert wait_until_gone(tree) == [], [command_line(p) for p in tree]
        assert group_members(worker) == []
        if target == "cli":
            assert status == -signal.SIGKILL
        else:
            assert status == 2
            assert error_lines(output) == [
                f"error: unexpected: the run's process {worker} was killed by SIGKILL"
            ]
        # Its work folder stays (nothing ran to remove it); the earlier ones were removed.
        assert len(work_folders(tmp_path)) == 1
        # The warehouse opens, and every result is as it was before the run began.
        assert results(published) == before, f"killed at {point}"
        now = ledger(published)
        assert {r: now[r] for r in first} == first
        new = [r for r in now if r not in first and r not in killed]
        if point == "load":
            assert new == []  # nothing was written yet: not even a `runs` row
        else:
            assert [now[r][3] for r in new] == ["running"]
            killed += new
        # Each killed run that had begun was found by the next one and recorded failed.
        for earlier in killed[:-1]:
            assert status_of(published)[earlier][0] == "failed"

    status, output = start_run(generated, published, tmp_path, None, name="next").finish()
    assert status == 0, output[-3000:]
    assert f"run {killed[-1]} (period 2026-10, started " in output
    assert "was interrupted: its process died before it finished; recorded as failed" in output
    statuses = status_of(published)
    assert [statuses[r][0] for r in killed] == ["failed"] * 4
    for run_id in killed:
        assert statuses[run_id][1].startswith(f"{INTERRUPTED} (found by run ")
    assert [s for r, s in statuses.items() if r not in killed] == [
        ("succeeded", None),
        ("succeeded", None),
    ]
    assert latest_cases(published) == cases_before
    assert work_folders(tmp_path) == []  # the killed runs' copies of the extract are gone


def test_a_second_run_while_one_is_writing_is_refused_at_once_and_writes_nothing(
    published,  # noqa: F811
    generated,
    tmp_path,
):
    first = start_run(generated, published, tmp_path, "audit", name="first")
    worker = first.wait_until_halted()
    [(run_id, started)] = [
        (r, row[4]) for r, row in ledger(published).items() if row[3] == "running"
    ]
    everything = {**results(published), "runs": sorted(map(str, ledger(published).values()))}
    lock = warehouse.lock_path(published).read_bytes()
    began = time.monotonic()
    second = chartaudit(
        "run",
        generated,
        "--period",
        "2026-10",
        "--warehouse",
        published,
        "--out",
        tmp_path / "out2",
        prefect_home=tmp_path / "second-prefect",
    )
    took = time.monotonic() - began
    assert second.returncode == 1
    assert second.stderr.splitlines() == [
        f"error: warehouse is busy: run {run_id} (period 2026-10, started"
        f" {started:%Y-%m-%d %H:%M:%S} UTC, process {worker}) is writing {published}; try again"
        " when it has finished"
    ]
    assert "Traceback" not in second.stdout + second.stderr
    assert "Starting temporary server" not in second.stdout  # refused before Prefect started
    assert took < 30, took
    assert {**results(published), "runs": sorted(map(str, ledger(published).values()))} == (
        everything
    )
    assert warehouse.lock_path(published).read_bytes() == lock
    assert not (tmp_path / "out2").exists()
    first.resume()
    status, output = first.finish()
    assert status == 0, output[-3000:]
    assert status_of(published)[run_id] == ("succeeded", None)


def test_of_two_runs_racing_for_the_warehouse_the_loser_writes_nothing(
    published,  # noqa: F811
    generated,
    tmp_path,
):
    """The command line's check passes for both (neither holds the lock yet); the run lock,
    taken inside the flow, lets one through and refuses the other with one line."""
    loser = start_run(generated, published, tmp_path, "load", name="loser")
    loser.wait_until_halted()
    winner = start_run(generated, published, tmp_path, "audit", "winner", prefect_home="p2")
    winner_pid = winner.wait_until_halted()
    [winner_id] = [r for r, row in ledger(published).items() if row[3] == "running"]
    before = {**results(published), "runs": sorted(map(str, ledger(published).values()))}
    loser.resume()
    status, output = loser.finish()
    assert status == 1, output[-3000:]
    busy = f"error: warehouse is busy: run {winner_id} (period 2026-10, started "
    [line] = error_lines(output)  # standard error's
    assert line.startswith(busy) and f"process {winner_pid}) is writing {published};" in line
    assert "Traceback" not in output
    logged = [x for x in output.splitlines() if f" - {busy}" in x]
    assert len(logged) == 1 and "| ERROR   | Flow run '" in logged[0]
    assert {**results(published), "runs": sorted(map(str, ledger(published).values()))} == before
    winner.resume()
    status, output = winner.finish()
    assert status == 0, output[-3000:]


def test_a_stopped_run_records_itself_failed_and_leaves_nothing_running(
    published,  # noqa: F811
    generated,
    tmp_path,
):
    """SIGTERM (a scheduler's timeout, a service stop) or Ctrl-C: the run stops cleanly."""
    before = results(published)
    run = start_run(generated, published, tmp_path, "audit", name="stopped")
    worker = run.wait_until_halted()
    tree = descendants(run.process.pid)
    run.process.send_signal(signal.SIGTERM)
    status, output = run.finish()
    assert status == 1
    line = "error: interrupted: the run was stopped before it finished"
    assert error_lines(output) == [line]  # standard error's
    logged = [x for x in output.splitlines() if x.endswith(f" - {line}")]
    assert len(logged) == 1 and "| ERROR   | Flow run '" in logged[0]  # the run log's
    assert "Traceback" not in output
    assert wait_until_gone(tree) == [] and group_members(worker) == []
    assert results(published) == before
    [stopped] = [s for s in status_of(published).values() if s[0] == "failed"]
    assert stopped == (
        "failed",
        "RunInterrupted: interrupted: the run was stopped before it finished",
    )
