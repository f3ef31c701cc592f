"""A test hook: halt a run at a named point so a crash-safety test can kill it exactly there.

Only the tests set these variables. With ``CHARTAUDIT_TEST_HALT_AT=publish`` and
``CHARTAUDIT_TEST_HALT_FILE=/tmp/x``, a run reaching the ``publish`` point writes its process id
to ``/tmp/x`` and waits while the file exists: the test kills the run (or removes the file to let
it go on). Points: ``load`` (extract read, nothing written), ``validate`` and ``audit`` (the run
is recorded ``running``), ``publish`` (inside the publish transaction, before its commit).
Everywhere else this is one dictionary lookup.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

HALT_AT = "CHARTAUDIT_TEST_HALT_AT"
HALT_FILE = "CHARTAUDIT_TEST_HALT_FILE"
POINTS = ("load", "validate", "audit", "publish")
HALT_LIMIT_SECONDS = 120  # a test that forgets the run must not leave it waiting for ever


def checkpoint(point: str) -> None:
    if os.environ.get(HALT_AT) != point:
        return
    marker = Path(os.environ[HALT_FILE])
    written = marker.with_name(marker.name + ".tmp")
    written.write_text(f"{os.getpid()}\n")
    written.replace(marker)  # the test sees the whole pid or nothing
    deadline = time.monotonic() + HALT_LIMIT_SECONDS
    while marker.exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"test hook: halted at {point} for {HALT_LIMIT_SECONDS} s")
        time.sleep(0.05)
