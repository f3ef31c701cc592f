"""Known conditions and unexpected faults: what each prints, and where.

A known condition is something a person acts on: a rejected extract, a threshold passed, a busy
warehouse, a bad argument or setting, a period the extract does not cover (whole), a run stopped
on request. It prints one line, ``error: …``, on standard error (exit status 1), and the run log
(standard output) carries the same line: no traceback anywhere. Anything else is a bug or an
environment fault: its full traceback goes to the run log, and standard error gets one
``error: unexpected …`` line (exit status 2).

Inside a flow run the run log is Prefect's: its engines log a failed task or flow with
``exc_info``, a traceback. ``KnownConditionLogFilter`` turns the flow's record of a known
condition into the one line and drops the task's (the flow's line follows it), and leaves every
other record alone.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import traceback
from collections.abc import Callable

from chartaudit.audits.engine import NoMeasureInEffect, UnknownRuleset
from chartaudit.audits.measure import MeasureError
from chartaudit.audits.period import CoverageError, PeriodError
from chartaudit.audits.valuesets import ValueSetError
from chartaudit.flows.deck_report import DeckFailures
from chartaudit.flows.settings import SettingsError
from chartaudit.flows.steps import RunError
from chartaudit.flows.supervisor import RunInterrupted
from chartaudit.reports.render import ReportError
from chartaudit.sample_data import GeneratorArgumentError
from chartaudit.schemas.errors import ExtractRejected
from chartaudit.schemas.phi_scan import IdentifiersFound
from chartaudit.storage.warehouse import WarehouseBusy, WarehouseUnreadable

KNOWN_CONDITIONS: tuple[type[Exception], ...] = (
    ExtractRejected,
    RunError,
    WarehouseBusy,
    WarehouseUnreadable,
    UnknownRuleset,
    NoMeasureInEffect,
    PeriodError,
    CoverageError,
    ReportError,
    MeasureError,
    ValueSetError,
    SettingsError,
    DeckFailures,
    RunInterrupted,
    GeneratorArgumentError,
    IdentifiersFound,
)

FLOW_RUN_LOGGER = "prefect.flow_runs"
TASK_RUN_LOGGER = "prefect.task_runs"
_LOGGED_MARK = "_chartaudit_traceback_logged"


def error_line(exc: BaseException) -> str:
    """``error: …`` in one line (a DuckDB error, say, spans several; the run log has them all)."""
    lines = str(exc).strip().splitlines()
    message = lines[0] if lines else ""
    if isinstance(exc, KNOWN_CONDITIONS):
        return f"error: {message}"
    return f"error: unexpected {type(exc).__name__}: {message}"


def traceback_logged(exc: BaseException) -> bool:
    """Whether a run-log record already carries this exception's traceback."""
    return getattr(exc, _LOGGED_MARK, False)


class KnownConditionLogFilter(logging.Filter):
    """On Prefect's flow-run and task-run loggers: a known condition logs one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None:
            return True
        if not isinstance(exc, KNOWN_CONDITIONS):
            with contextlib.suppress(AttributeError):  # a type that takes no attributes
                setattr(exc, _LOGGED_MARK, True)
            return True
        if record.name == TASK_RUN_LOGGER:
            return False  # the flow logs it once, as it leaves the flow
        record.msg, record.args = "%s", (error_line(exc),)
        record.exc_info, record.exc_text = None, None
        return True


_FILTER = KnownConditionLogFilter()


def install_log_filter() -> None:
    """Attach the filter (once) to the loggers Prefect's engines log run failures on."""
    for name in (FLOW_RUN_LOGGER, TASK_RUN_LOGGER):
        logging.getLogger(name).addFilter(_FILTER)  # adding the same filter twice is a no-op


def guarded(action: Callable[[], int | None]) -> int:
    """Run ``action``; return the exit status: its own (0 when it returns None), 1 for a known
    condition, 2 for anything else (after printing its traceback to the run log, unless
    Prefect's log already holds it)."""
    try:
        return action() or 0
    except KNOWN_CONDITIONS as exc:
        _print_error(error_line(exc))
        return 1
    except Exception as exc:
        if not traceback_logged(exc):
            traceback.print_exception(exc, file=sys.stdout)
            sys.stdout.flush()
        _print_error(error_line(exc))
        return 2


def _print_error(line: str) -> None:
    sys.stdout.flush()  # the run log first, then the line a scheduler or a person acts on
    print(line, file=sys.stderr, flush=True)
