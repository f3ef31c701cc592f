"""Adapt a source folder to a contract extract folder: the one entry point for flows/.

``adapt_source`` resolves ``--format`` (``auto`` detects by file names, formats.py), runs the
format's adapter into ``folder`` and returns where the contract extract now is with what was
done, for the run log. A contract extract is read where it lies; nothing is copied.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from chartaudit.schemas.errors import reject
from chartaudit.sources.formats import CONTRACT, resolve_format
from chartaudit.sources.output import AdaptedExtract, AdaptReport

__all__ = ["adapt_source"]


def adapt_source(
    source: Path, requested: str, folder: Path, code_map: Path | None = None
) -> tuple[Path, AdaptReport]:
    """(the contract extract folder, the report). ``folder`` receives an adapted extract."""
    source = Path(source)
    if not source.is_dir():
        raise reject(f"{source} is not a folder; give the folder holding the table files")
    detected = resolve_format(source, requested)
    if detected.format == CONTRACT:
        return source, AdaptReport(CONTRACT, detected.reason)
    adapter = importlib.import_module(f"chartaudit.sources.{detected.format}")
    with AdaptedExtract(folder, source, detected.format, detected.reason, code_map) as out:
        adapter.adapt(source, out)
        return Path(folder), out.finish()
