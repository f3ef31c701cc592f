"""`chartaudit backfill` as a person or a scheduler runs it: real processes, one Prefect flow with
a subflow per month, resumable, going on past a failed month, and nothing left running."""

from __future__ import annotations

import fcntl
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from chartaudit.flows.checkpoints import HALT_AT, HALT_FILE
from chartaudit.flows.months import complete_months, month_range
from chartaudit.flows.supervisor import STOPPED
from chartaudit.sample_data import DEMO_EXTRACT
from chartaudit.schemas.layout import check_extract
from chartaudit.storage import warehouse
from tests.flows.processes import (
    HALT_WAIT_SECONDS,
    command_line,
    descendants,
    group_members,
    wait_until_gone,
)
from tests.flows.test_cli import CHARTAUDIT, chartaudit
from tests.flows.test_pipeline import run_pipeline

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/stat").exists(), reason="reads the process table from /proc (Linux)"
)

MONTHS = ["2026-08", "2026-09", "2026-10"]
# A row of the summary table: month, outcome, cases, run id or error.
ROW = re.compile(r"^│ (\d{4}-\d{2}) │ (\w+) +│ +([\d,]*) │ (.*?) +│$", re.MULTILINE)


def backfill(extract: Path, tmp_path: Path, *options: str, env: dict | None = None):
    return chartaudit(
        "backfill",
        extract,
        "--from",
        MONTHS[0],
        "--to",
        MONTHS[-1],
        "--warehouse",
        tmp_path / "audit.duckdb",
        "--out",
        tmp_path / "out",
        *options,
        prefect_home=tmp_path / "prefect",
        env=env,
    )


def summary_rows(stdout: str) -> list[tuple[str, str, str, str]]:
    return ROW.findall(stdout)


def runs(path: Path) -> list[tuple]:
    with warehouse.connect(path, read_only=True) as con:
        return con.execute(
            "SELECT run_id, period, status, kind, error FROM runs ORDER BY started_at, run_id"
        ).fetchall()


def cases_by_period(path: Path) -> dict[str, list[tuple]]:
    """Each period's latest cases, without run ids (which differ from run to run)."""
    with warehouse.connect(path, read_only=True) as con:
        rows = con.execute(
            "SELECT * EXCLUDE (run_id) FROM latest_case_results ORDER BY ALL"
        ).fetchall()
        columns = [c[0] for c in con.execute("DESCRIBE latest_case_results").fetchall()]
    period = [c for c in columns if c != "run_id"].index("period")
    by_period: dict[str, list[tuple]] = {}
    for row in rows:
        by_period.setdefault(row[period], []).append(row)
    return by_period


def processes_of(prefect_home: Path) -> list[str]:
    """Command lines of the processes still running with this PREFECT_HOME (every process a
    run starts inherits it, Prefect's temporary server included)."""
    marker = f"PREFECT_HOME={prefect_home}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if marker in environ and wait_until_gone([int(entry.name)], 5):
            found.append(command_line(int(entry.name)))
    return found


def test_a_backfill_audits_each_month_as_one_by_one_and_a_second_one_skips_them(
    generated, tmp_path
):
    done = backfill(generated, tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    assert done.stderr == ""
    assert processes_of(tmp_path / "prefect") == []
    path = tmp_path / "audit.duckdb"
    ledger = runs(path)
    audits = [(period, status) for _, period, status, kind, _ in ledger if kind == "audit"]
    assert audits == [(m, "succeeded") for m in MONTHS]

    # The same months run one by one (the flow's steps, oldest first) give the same cases.
    by_hand = tmp_path / "by-hand.duckdb"
    for month in MONTHS:
        run_pipeline(generated, by_hand, tmp_path / f"work-{month}", period=month)
    backfilled, expected = cases_by_period(path), cases_by_period(by_hand)
    assert sorted(backfilled) == MONTHS
    assert backfilled == expected
    # The summary: one row per month, with its case count and the run that judged it.
    audit_ids = {period: run_id for run_id, period, _, kind, _ in ledger if kind == "audit"}
    assert summary_rows(done.stdout) == [
        (m, "succeeded", f"{len(expected[m]):,}", audit_ids[m]) for m in MONTHS
    ]
    assert "3 succeeded, 0 skipped (already succeeded), 0 failed" in done.stdout
    assert f"report:    {(tmp_path / 'out' / 'chartaudit-2026-10.html').resolve()}" in done.stdout
    assert [p.name for p in sorted((tmp_path / "out").iterdir())] == [
        f"chartaudit-{m}.html" for m in MONTHS
    ]

    newest = tmp_path / "out" / "chartaudit-2026-10.html"
    newest.unlink()  # a skipped newest month whose report is gone gets it again
    again = backfill(generated, tmp_path)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr
    assert runs(path) == ledger  # nothing ran: not even a `runs` row
    assert newest.exists() and f"report:    {newest.resolve()}" in again.stdout
    latest = {period: run_id for run_id, period, status, _, _ in ledger if status == "succeeded"}
    for month in MONTHS:
        assert f"{month}: skipped: already succeeded in run {latest[month]}" in again.stdout
    assert summary_rows(again.stdout) == [
        (m, "skipped", f"{len(expected[m]):,}", latest[m]) for m in MONTHS
    ]
    assert "monthly-audit" not in again.stdout  # no subflow started
    assert processes_of(tmp_path / "prefect") == []

    # Suppression asked of a skipped range renders the newest report again, suppressed.
    assert "Counts under" not in newest.read_text(encoding="utf-8")
    hidden = backfill(generated, tmp_path, "--suppress-below", "11")
    assert hidden.returncode == 0, hidden.stdout[-3000:] + hidden.stderr
    assert runs(path) == ledger
    assert "Counts under 11 are suppressed" in newest.read_text(encoding="utf-8")

    # --redo runs every month again.
    redone = backfill(generated, tmp_path, "--redo")
    assert redone.returncode == 0, redone.stdout[-3000:] + redone.stderr
    assert [row[1] for row in summary_rows(redone.stdout)] == ["succeeded"] * 3
    new_audits = [(p, s) for _, p, s, kind, _ in runs(path)[len(ledger) :] if kind == "audit"]
    assert new_audits == [(m, "succeeded") for m in MONTHS]
    assert cases_by_period(path) == expected


def test_a_failed_month_does_not_stop_the_others_and_the_next_backfill_resumes_it(
    generated, tmp_path
):
    """Another writer holds the warehouse while 2026-09 starts (the scheduled monthly run, say):
    that month fails with one line, 2026-08 and 2026-10 succeed, the backfill exits 1 naming
    2026-09, nothing is left running, and the next backfill runs only 2026-09."""
    path = tmp_path / "audit.duckdb"
    process, halt_file, stdout, stderr = start_backfill(generated, tmp_path, "load")
    other_writer = None
    try:
        for month in MONTHS:
            worker = wait_for_halt(halt_file, process, stdout)
            if month == "2026-08":
                tree = descendants(process.pid)
                assert any("uvicorn" in command_line(p) for p in tree)
            if month == "2026-09":
                other_writer = os.open(warehouse.lock_path(path), os.O_RDWR)
                fcntl.flock(other_writer, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if month == "2026-10":  # 2026-09 has ended: the other writer finishes
                os.close(other_writer)
                other_writer = None
            halt_file.unlink()
        process.wait(timeout=300)
    finally:
        if other_writer is not None:
            os.close(other_writer)
        if process.poll() is None:
            process.kill()
    log, errors = stdout.read_text(), stderr.read_text()
    assert process.returncode == 1, log[-3000:] + errors
    assert errors.splitlines() == ["error: 1 of 3 months failed: 2026-09"]
    busy = f"warehouse is busy: another run is writing {path}; try again when it has finished"
    assert f"2026-09: failed: {busy}" in log
    assert "Traceback" not in log
    rows = summary_rows(log)
    assert [(m, outcome) for m, outcome, _, _ in rows] == [
        ("2026-08", "succeeded"),
        ("2026-09", "failed"),
        ("2026-10", "succeeded"),
    ]
    assert rows[1][2:] == ("", busy)
    assert "2 succeeded, 0 skipped (already succeeded), 1 failed" in log
    assert wait_until_gone(tree) == [] and group_members(worker) == []
    assert [(p, s) for _, p, s, kind, _ in runs(path) if kind == "audit"] == [
        ("2026-08", "succeeded"),
        ("2026-10", "succeeded"),
    ]

    resumed = backfill(generated, tmp_path)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr
    assert [(m, outcome) for m, outcome, _, _ in summary_rows(resumed.stdout)] == [
        ("2026-08", "skipped"),
        ("2026-09", "succeeded"),
        ("2026-10", "skipped"),
    ]


def start_backfill(extract: Path, tmp_path: Path, halt_at: str):
    """`chartaudit backfill` of MONTHS in the background, each month halting at ``halt_at``
    (flows/checkpoints.py); its process, the halt file, and where its output goes."""
    halt_file, stdout, stderr = tmp_path / "halted", tmp_path / "stdout", tmp_path / "stderr"
    command = [str(CHARTAUDIT), "backfill", str(extract), "--from", MONTHS[0], "--to"]
    command += [MONTHS[-1], "--warehouse", str(tmp_path / "audit.duckdb")]
    command += ["--out", str(tmp_path / "out")]
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
    env |= {"PREFECT_HOME": str(tmp_path / "prefect"), HALT_AT: halt_at, HALT_FILE: str(halt_file)}
    with stdout.open("w") as out, stderr.open("w") as err:
        process = subprocess.Popen(command, stdout=out, stderr=err, env=env)
    return process, halt_file, stdout, stderr


def test_a_stop_signal_stops_the_whole_backfill_not_only_its_month(generated, tmp_path):
    path = tmp_path / "audit.duckdb"
    process, halt_file, stdout, stderr = start_backfill(generated, tmp_path, "validate")
    try:
        wait_for_halt(halt_file, process, stdout)
        halt_file.unlink()  # 2026-08 goes on
        worker = wait_for_halt(halt_file, process, stdout)  # 2026-09 is recorded running
        tree = descendants(process.pid)
        process.send_signal(signal.SIGINT)  # Ctrl-C
        process.wait(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    log, errors = stdout.read_text(), stderr.read_text()
    assert process.returncode == 1, log[-3000:] + errors
    assert errors.splitlines() == [f"error: {STOPPED}"]
    assert "Traceback" not in log and "2026-10: auditing" not in log  # never started
    assert [(p, s, e) for _, p, s, _, e in runs(path)] == [
        ("2026-08", "succeeded", None),
        ("2026-09", "failed", f"RunInterrupted: {STOPPED}"),
    ]
    assert wait_until_gone(tree) == [] and group_members(worker) == []


def wait_for_halt(halt_file: Path, process: subprocess.Popen, log: Path) -> int:
    """Wait for a month's run to halt at its checkpoint; the pid that halted (the worker)."""
    deadline = time.monotonic() + HALT_WAIT_SECONDS
    while not halt_file.exists():
        if process.poll() is not None:
            raise AssertionError(f"the backfill ended before the halt:\n{log.read_text()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"the backfill did not halt:\n{log.read_text()}")
        time.sleep(0.05)
    return int(halt_file.read_text())


@pytest.mark.parametrize(
    ("first", "last", "line"),
    [
        ("2026-13", "2026-10", "error: --from '2026-13' is not a month like 2026-10"),
        ("2026-01", "26-10", "error: --to '26-10' is not a month like 2026-10"),
        ("2026-10", "2026-08", "error: --from 2026-10 is after --to 2026-08"),
        (
            "2016-01",
            "2026-10",
            "error: 2016-01 to 2026-10 is 130 months; a backfill runs at most 120",
        ),
    ],
    ids=["bad-month", "bad-to", "backwards", "too-long"],
)
def test_a_bad_range_is_refused_in_one_line_before_anything_starts(
    generated, tmp_path, first, last, line
):
    done = chartaudit(
        "backfill", generated, "--from", first, "--to", last,
        "--warehouse", tmp_path / "audit.duckdb", prefect_home=tmp_path / "prefect",
    )  # fmt: skip
    assert (done.returncode, done.stderr.splitlines(), done.stdout) == (1, [line], "")
    assert not (tmp_path / "audit.duckdb").exists() and not (tmp_path / "prefect").exists()


def test_a_rejected_extract_is_refused_once_for_every_month(extract_copy, tmp_path):
    (extract_copy / "orders.csv").unlink()
    done = backfill(extract_copy, tmp_path)
    assert done.returncode == 1
    assert len(done.stderr.splitlines()) == 1
    assert done.stderr.startswith("error: extract rejected: ") and "orders" in done.stderr
    assert "Starting temporary server" not in done.stdout  # refused before Prefect started
    assert not (tmp_path / "audit.duckdb").exists()


def test_month_ranges():
    assert month_range("2025-11", "2026-02") == ["2025-11", "2025-12", "2026-01", "2026-02"]
    assert month_range("2026-10", "2026-10") == ["2026-10"]
    assert len(month_range("2017-01", "2026-12")) == 120
    manifest = check_extract(DEMO_EXTRACT).manifest
    first, last = complete_months(manifest.coverage_start, manifest.coverage_end, manifest.timezone)
    assert (first, last) == ("2024-09", "2026-10")
    later_start = manifest.coverage_start.replace(day=2)
    assert complete_months(later_start, manifest.coverage_end, manifest.timezone)[0] == "2024-10"
