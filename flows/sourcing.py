"""The extract a run reads, in contract form: a contract folder as it lies, any other format
(``--format omop|synthea|fhir|auto``) adapted into a temporary folder first (sources/).

The adapted folder lives in a work folder of its own (flows/workfolder.py: owner-only, removed
when the command ends, and by the next run when a killed command could not), so a backfill
adapts its source once for all its months.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console

from chartaudit.flows.files import owner_only_files
from chartaudit.flows.settings import load_settings
from chartaudit.flows.workfolder import work_folder
from chartaudit.sources.adapt import adapt_source
from chartaudit.sources.formats import CONTRACT, resolve_format
from chartaudit.sources.output import AdaptReport

__all__ = ["extract_in_contract_form"]


@contextmanager
def extract_in_contract_form(
    source: Path, requested: str, console: Console | None = None
) -> Iterator[tuple[Path, AdaptReport]]:
    """(the contract extract folder, what was detected and adapted) for as long as it lives."""
    if source.is_dir() and resolve_format(source, requested).format == CONTRACT:
        yield adapt_source(source, requested, source)  # read where it lies
        return
    code_map = load_settings().sources.code_map
    with owner_only_files(), work_folder() as folder:
        if console is None:
            yield adapt_source(source, requested, folder / "extract", code_map)
            return
        with console.status(f"adapting {source} to the extract contract"):
            adapted = adapt_source(source, requested, folder / "extract", code_map)
        for line in adapted[1].lines():
            console.print(line, markup=False, highlight=False, soft_wrap=True)
        yield adapted
