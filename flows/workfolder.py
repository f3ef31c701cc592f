"""A run's work folder (the extract as read, validated rows, results; see steps.py), and the
work folders that killed runs left behind.

A run removes its folder when it ends, but a run killed with SIGKILL cannot: its copy of the
extract would stay in the temporary folder, one more per crash. So each run holds an flock on
``.owner`` inside its folder while it lives (the kernel drops it with the process), and every
run first removes the ``chartaudit-run-*`` folders whose lock nobody holds.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PREFIX = "chartaudit-run-"
OWNER = ".owner"


@contextmanager
def work_folder(parent: Path | None = None) -> Iterator[Path]:
    """A fresh work folder for one run under ``parent`` (default: the temporary folder; a
    partitioned run's workers on other machines need a shared one), removed at the end; first,
    the abandoned ones go."""
    parent = Path(tempfile.gettempdir()) if parent is None else Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    remove_abandoned(parent)
    folder = Path(tempfile.mkdtemp(prefix=PREFIX, dir=parent))
    # Locked before it has its name: another run never finds `.owner` unlocked while we live.
    owner = os.open(folder / f"{OWNER}.new", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(owner, fcntl.LOCK_EX)
        os.rename(folder / f"{OWNER}.new", folder / OWNER)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        os.close(owner)


def remove_abandoned(parent: Path) -> list[Path]:
    """Remove the work folders under ``parent`` whose run is gone; return them."""
    removed = []
    for folder in parent.glob(f"{PREFIX}*"):
        try:
            owner = os.open(folder / OWNER, os.O_RDONLY)
        except OSError:  # being created this instant, or not ours to judge
            continue
        try:
            fcntl.flock(owner, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # its run is alive
        else:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
        finally:
            os.close(owner)
    return removed
