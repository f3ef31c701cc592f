"""Files a run creates are the owner's alone (its work folder: flows/workfolder.py).

The warehouse (and DuckDB's .wal and spill files beside it), the work folder's Parquet files and
the reports hold case data: a run creates them with the umask 077 (files 0600, folders 0700),
whoever starts it and whatever umask the shell had. Files that already exist keep the mode an
operator gave them (a warehouse shared with a group of analysts stays shared).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

OWNER_ONLY_UMASK = 0o077


@contextmanager
def owner_only_files() -> Iterator[None]:
    """Files and folders created inside are readable by their owner only (the umask is the
    process's: everything it creates meanwhile, DuckDB's files and Prefect's included)."""
    previous = os.umask(OWNER_ONLY_UMASK)
    try:
        yield
    finally:
        os.umask(previous)
