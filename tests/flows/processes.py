"""Real `chartaudit run` processes for the crash and concurrency tests: start one that halts at
a named point (flows/checkpoints.py), see its process tree, and wait for processes to be gone.
Linux: the process table is read from /proc."""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from chartaudit.flows.checkpoints import HALT_AT, HALT_FILE
from tests.flows.test_cli import CHARTAUDIT

HALT_WAIT_SECONDS = 300  # a temporary Prefect server can take 20 s or more on a loaded machine


@dataclass
class Run:
    process: subprocess.Popen
    halt_file: Path
    log: Path

    def wait_until_halted(self) -> int:
        """Wait for the run to reach its halt point; return the pid of the process halted."""
        deadline = time.monotonic() + HALT_WAIT_SECONDS
        while not self.halt_file.exists():
            if self.process.poll() is not None:
                raise AssertionError(f"the run ended before its halt point:\n{self.output()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"the run did not reach its halt point:\n{self.output()}")
            time.sleep(0.05)
        return int(self.halt_file.read_text())

    def resume(self) -> None:
        self.halt_file.unlink()

    def finish(self, timeout: float = 300) -> tuple[int, str]:
        """Wait for the run to end; its exit status and its standard output and error."""
        self.process.wait(timeout=timeout)
        return self.process.returncode, self.output()

    def output(self) -> str:
        return self.log.read_text()


def start_run(
    extract: Path,
    warehouse: Path,
    tmp_path: Path,
    halt_at: str | None,
    name: str = "run",
    options: tuple[str, ...] = (),
    prefect_home: str = "prefect",
) -> Run:
    """`chartaudit run EXTRACT --period 2026-10`, halting at ``halt_at``; standard output and
    error go, interleaved, to a file. Runs one after another share a Prefect home (its
    database is set up once); runs at the same time need one each."""
    work_parent(tmp_path).mkdir(exist_ok=True)
    halt_file = tmp_path / f"{name}.halted"
    log = tmp_path / f"{name}.log"
    env = {
        **os.environ,
        "NO_COLOR": "1",
        "COLUMNS": "200",
        "PREFECT_HOME": str(tmp_path / prefect_home),
        "TMPDIR": str(work_parent(tmp_path)),  # where its work folder goes
        HALT_FILE: str(halt_file),
    }
    env.pop(HALT_AT, None)
    if halt_at is not None:
        env[HALT_AT] = halt_at
    with log.open("w") as sink:
        command = [str(CHARTAUDIT), "run", str(extract), "--period", "2026-10"]
        command += ["--warehouse", str(warehouse), "--out", str(tmp_path / "out"), *options]
        process = subprocess.Popen(
            command,
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=env,
        )
    return Run(process, halt_file, log)


def work_parent(tmp_path: Path) -> Path:
    return tmp_path / "tmp"


def work_folders(tmp_path: Path) -> list[Path]:
    """The runs' work folders (flows/workfolder.py) in the test's temporary folder."""
    return sorted(work_parent(tmp_path).glob("chartaudit-run-*"))


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name: state, ppid, pgrp, ...; None when the
    process is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return text.rsplit(")", 1)[1].split()


def descendants(root: int) -> list[int]:
    """``root`` and every process below it."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))):
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ").strip()
    except (FileNotFoundError, ProcessLookupError):
        return ""


def _running(pid: int) -> bool:
    """Whether any thread of the process is still running. A zombie (dead, not yet reaped)
    counts as gone, but only once all its threads are: the main thread of a killed process can
    be a zombie while other threads still hold its files, and its locks."""
    try:
        threads = list(Path(f"/proc/{pid}/task").iterdir())
    except (FileNotFoundError, ProcessLookupError):
        return False
    states = []
    for thread in threads:
        try:
            states.append((thread / "stat").read_text().rsplit(")", 1)[1].split()[0])
        except (FileNotFoundError, ProcessLookupError):
            continue
    return any(state != "Z" for state in states)


def alive(pids: list[int]) -> list[int]:
    """Those still running."""
    return [p for p in pids if _running(p)]


def group_members(pgid: int) -> list[int]:
    return [
        int(e.name)
        for e in Path("/proc").iterdir()
        if e.name.isdigit()
        and (f := _stat(int(e.name)))
        and f[2] == str(pgid)
        and _running(int(e.name))
    ]


def wait_until_gone(pids: list[int], seconds: float = 15) -> list[int]:
    """Wait for the processes to end; those still alive after ``seconds``."""
    deadline = time.monotonic() + seconds
    while (left := alive(pids)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left
