"""Work folders: a run's is removed when it ends; one a killed run left behind is removed by the
next run, and one whose run is alive is kept."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from chartaudit.flows.workfolder import work_folder

HOLD = """
import sys, time
from chartaudit.flows.workfolder import work_folder
with work_folder() as folder:
    (folder / "raw.parquet").write_text("a copy of the extract")
    print(folder, flush=True)
    time.sleep(60)
"""


@pytest.fixture
def temporary(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def holder() -> tuple[subprocess.Popen, Path]:
    process = subprocess.Popen([sys.executable, "-c", HOLD], stdout=subprocess.PIPE, text=True)
    return process, Path(process.stdout.readline().strip())


def test_a_killed_runs_folder_goes_and_a_live_runs_stays(temporary):
    killed, abandoned = holder()
    alive, kept = holder()
    try:
        killed.kill()  # SIGKILL: its own clean-up never runs
        killed.wait()
        assert abandoned.exists() and kept.exists()
        with work_folder() as mine:
            assert sorted(temporary.iterdir()) == sorted([kept, mine])
            assert (kept / "raw.parquet").read_text() == "a copy of the extract"
        assert list(temporary.iterdir()) == [kept]
    finally:
        alive.kill()
        alive.wait()
