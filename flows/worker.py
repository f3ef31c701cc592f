"""The worker a ``chartaudit run``, ``backfill`` or ``demo`` supervises (flows/supervisor.py):
``python -m chartaudit.flows.worker JOB`` runs the flow JOB names (its key ``flow``: a key of
``cli.FLOWS``, the monthly audit when absent) with JOB's other keys as arguments, as the leader of
its own process group.

Only the standard library loads before the lifeline is up: a supervisor killed while the worker
is still importing Prefect still takes the worker down with it.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading

from chartaudit.flows.supervisor import STOPPED, RunInterrupted, request_stop


def die_with_supervisor() -> None:
    """Kill this process group (the worker, Prefect's server, anything else the run started)
    when standard input, the supervisor's pipe, reaches end-of-file: the supervisor is gone."""

    def watch() -> None:
        while os.read(0, 4096):
            pass
        os.killpg(0, signal.SIGKILL)

    threading.Thread(target=watch, name="die-with-supervisor", daemon=True).start()


def interrupt_on_stop() -> None:
    """SIGINT (what the supervisor forwards) raises RunInterrupted once: the flow records the
    run failed and stops; a second one is ignored (the supervisor's grace period covers it)."""

    def interrupt(signum, frame) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        request_stop()
        raise RunInterrupted(STOPPED)

    signal.signal(signal.SIGINT, interrupt)


def main() -> None:
    die_with_supervisor()
    interrupt_on_stop()
    job = json.loads(sys.argv[1])
    try:
        from chartaudit.flows.cli import run_in_this_process  # Prefect and the rest load now
    except RunInterrupted as exc:  # stopped while importing: nothing began
        print(f"error: {exc}", file=sys.stderr, flush=True)
        sys.exit(1)
    sys.exit(run_in_this_process(job))


if __name__ == "__main__":
    main()
