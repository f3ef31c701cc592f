"""Name the source's own file and line in quarantine and data-quality rows of an adapted
extract.

The reader numbers the rows of the adapted ``<table>.parquet`` files; ``_provenance.parquet``
(written by ``output.AdaptedExtract``) says which source file and line each came from, so the
person on call is pointed at ``CONDITION_OCCURRENCE.csv line 12`` or ``Observation.ndjson line
5``, not at a temporary file that no longer exists. Canonical rows keep their adapted row
number in ``source_line``.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from chartaudit.sources.output import ORIGIN_FILE, ORIGIN_LINE, PROVENANCE_FILE

__all__ = ["PROVENANCE_FILE", "read_provenance", "to_source_files", "to_source_lines"]


def read_provenance(extract_dir: Path) -> pl.DataFrame | None:
    """The folder's provenance (table_name, source_line, origin_file, origin_line), or None
    for an extract that was not adapted."""
    path = Path(extract_dir) / PROVENANCE_FILE
    return pl.read_parquet(path) if path.is_file() else None


def to_source_lines(findings: pl.DataFrame, provenance: pl.DataFrame) -> pl.DataFrame:
    """Quarantine or data-quality rows (table_name, source_file, source_line, ...) with the
    source's file and line in place of the adapted table's; same columns, same order."""
    joined = findings.join(provenance, on=["table_name", "source_line"], how="left")
    return joined.with_columns(
        pl.coalesce(ORIGIN_FILE, "source_file").alias("source_file"),
        pl.coalesce(ORIGIN_LINE, "source_line").alias("source_line"),
    ).select(findings.columns)


def to_source_files(load_counts: pl.DataFrame, provenance: pl.DataFrame) -> pl.DataFrame:
    """Load counts whose source_file lists the source files each table came from."""
    files = provenance.group_by("table_name").agg(
        pl.col(ORIGIN_FILE).unique().sort().str.join(", ").alias("__files")
    )
    return (
        load_counts.join(files, on="table_name", how="left")
        .with_columns(pl.coalesce("__files", "source_file").alias("source_file"))
        .select(load_counts.columns)
    )
