"""A run's processes: ``chartaudit run`` (and ``backfill``, ``demo``) supervises a worker that runs
the flow in a process group of its own, so nothing the run started outlives it. The job says
which flow (flows/worker.py); a backfill's months all run in the one worker, so a stop signal
ends the backfill, not only the month it reached.

Prefect starts a temporary API server for a flow run as a child process (``python -m uvicorn
… prefect.server.api.server:create_app``, ``SubprocessASGIServer`` in Prefect 3) and stops it
only from an ``atexit`` hook, so a run killed with SIGKILL used to leave its server running.
Here the command line (the supervisor) starts the worker as the leader of a new process group;
the server and anything else the flow starts join that group. The group is killed

- by the worker itself, when the supervisor dies however it dies: the worker's standard input
  is a pipe from the supervisor, and a thread waiting on it sees end-of-file;
- by the supervisor, once the worker has exited (a worker killed by the OOM killer, say).

A stop signal to the supervisor (Ctrl-C, SIGTERM, SIGHUP) reaches the worker as SIGINT, which
fails the run cleanly (recorded ``failed``, lock released, server stopped); a worker that has
not stopped after STOP_GRACE_SECONDS is killed with its group. Prefect's own worker forwards
signals the same way (SIGTERM becomes SIGINT, then SIGKILL).

The worker's side is flows/worker.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
STOP_GRACE_SECONDS = 30.0


class RunInterrupted(RuntimeError):
    """The run was asked to stop (a signal to ``chartaudit run``) before it finished."""


STOPPED = "interrupted: the run was stopped before it finished"

# Set in the worker when a stop signal arrives. RunInterrupted raised inside a library (DuckDB
# wraps an exception raised while it calls back into Python) may reach the flow as another
# error; a backfill asks this, not the exception's type, whether to go on to the next month.
_stop_requested = threading.Event()


def request_stop() -> None:
    _stop_requested.set()


def stop_requested() -> bool:
    return _stop_requested.is_set()


# --- the supervisor: the `chartaudit run` process ------------------------------------------------


def supervise(job: dict) -> int:
    """Run ``job`` (which flow, and its arguments) in a worker process group; return its exit
    status."""
    worker = subprocess.Popen(
        [sys.executable, "-m", "chartaudit.flows.worker", json.dumps(job)],
        stdin=subprocess.PIPE,  # the lifeline: never written, closed when this process dies
        process_group=0,
    )
    timers: list[threading.Timer] = []

    def stop(signum, frame) -> None:
        _signal(worker.pid, signal.SIGINT)
        timer = threading.Timer(STOP_GRACE_SECONDS, _kill_group, [worker.pid])
        timer.daemon = True
        timer.start()
        timers.append(timer)

    previous = {s: signal.signal(s, stop) for s in STOP_SIGNALS}
    try:
        # Wait without reaping: while the worker is a zombie its pid, the group's id, cannot be
        # reused, so killing the group afterwards cannot hit an unrelated process. (macOS has
        # os.waitid from Python 3.13; before, the group is killed just after reaping.)
        if hasattr(os, "waitid"):
            os.waitid(os.P_PID, worker.pid, os.WEXITED | os.WNOWAIT)
        else:
            worker.wait()
        _kill_group(worker.pid)
        for timer in timers:
            timer.cancel()
        status = worker.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        worker.stdin.close()
    if status >= 0:
        return status
    name = signal.Signals(-status).name
    if timers:
        _error(f"interrupted: the run did not stop within {STOP_GRACE_SECONDS:.0f} s; killed")
        return 1
    _error(f"unexpected: the run's process {worker.pid} was killed by {name}")
    return 2


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # it has just exited
        os.kill(pid, signum)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # nothing left in the group
        os.killpg(pgid, signal.SIGKILL)


def _error(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)
