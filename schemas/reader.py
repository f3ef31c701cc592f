"""Read an extract folder into typed polars frames (extract contract v1).

``read_extract`` does every table-level check first (``layout.check_extract``: folder layout,
manifest, headers, direct identifier columns, required columns, Parquet column types), which
raises ``ExtractRejected`` with one line before any data is cast, so a rejected extract never
reaches the warehouse. It then reads every table as text (CSV) or native Parquet and has
``casting.type_table`` cast each contract column, recording every value it cannot cast as a
row-level fault (``RawExtract.faults``, ``QUARANTINE_SCHEMA``); the cell becomes null and
``validation.validate_extract`` quarantines the row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from chartaudit.schemas.casting import OVERFLOW_COLUMN, type_table
from chartaudit.schemas.contract import SOURCE_LINE, TABLE_ORDER, TABLES
from chartaudit.schemas.errors import one_line, reject
from chartaudit.schemas.layout import check_extract
from chartaudit.schemas.manifest import Manifest
from chartaudit.schemas.models import empty_quarantine
from chartaudit.schemas.saved import load_stage, save_stage

__all__ = ["RawExtract", "read_extract"]


@dataclass
class RawExtract:
    manifest: Manifest
    digest: str
    tables: dict[str, pl.DataFrame]  # per table: the contract's columns, typed, + source_line
    faults: pl.DataFrame  # row-level faults found while reading/casting (QUARANTINE_SCHEMA)
    source_files: dict[str, str]  # table -> file name, e.g. "patients.csv"
    warnings: list[str] = field(default_factory=list)

    def save(self, directory: Path) -> None:
        save_stage(
            directory,
            "raw_extract",
            self.manifest,
            self.digest,
            self.tables,
            {"faults": self.faults},
            {"source_files": self.source_files, "warnings": self.warnings},
        )

    @classmethod
    def load(cls, directory: Path) -> RawExtract:
        saved = load_stage(directory, "raw_extract")
        return cls(
            manifest=saved.manifest,
            digest=saved.digest,
            tables=saved.tables,
            faults=saved.frames["faults"],
            source_files=dict(saved.meta["source_files"]),
            warnings=list(saved.meta["warnings"]),
        )


def read_extract(extract_dir: Path) -> RawExtract:
    """Read and type one extract folder; table-level faults raise ``ExtractRejected``."""
    layout = check_extract(extract_dir)
    manifest, files, headers, warnings = (
        layout.manifest,
        layout.files,
        layout.headers,
        layout.warnings,
    )
    tables, faults = {}, []
    for table in TABLE_ORDER:
        path = files[table]
        keep = TABLES[table].column_names
        if path.suffix == ".csv":
            frame, read_warnings = _read_csv(path, headers[table], keep)
            warnings += read_warnings
        else:
            frame = _read_parquet(path, keep, headers[table])
        try:
            tables[table], table_faults = type_table(table, path.name, frame, manifest.timezone)
        except pl.exceptions.PolarsError as exc:  # e.g. a Parquet value polars cannot convert
            raise reject(
                f"{path.name} cannot be converted ({one_line(str(exc), 200)}); re-export it"
            ) from None
        faults.append(table_faults)
    return RawExtract(
        manifest=manifest,
        digest=layout.digest,
        tables=tables,
        faults=pl.concat(faults) if faults else empty_quarantine(),
        source_files={t: files[t].name for t in TABLE_ORDER},
        warnings=warnings,
    )


# --- reading ------------------------------------------------------------------------------------


def _read_csv(
    path: Path, header: list[str], keep: tuple[str, ...]
) -> tuple[pl.DataFrame, list[str]]:
    """The ``keep`` columns as text, plus source_line and the text of fields beyond the header.

    Columns are named by position (``__c0``...) because the header may hold names polars would
    rename; ``__extra_fields__`` catches fields beyond the header. source_line is the physical
    line where the record starts: 2 + record number + the line breaks inside quoted fields of
    earlier records. Rows with no value at all (blank lines) are skipped with a warning.
    """
    positional = positional_names(len(header))
    try:
        frame = read_csv_text(path, len(header))
    except Exception as exc:
        problem = "is not UTF-8 text" if "utf-8" in str(exc).lower() else "cannot be read as CSV"
        raise reject(
            f"{path.name} {problem} ({one_line(str(exc), 160)}); re-export it as UTF-8 CSV with "
            "a header row"
        ) from None
    blank = pl.all_horizontal(
        pl.col(c).str.strip_chars().replace("", None).is_null()
        for c in [*positional, OVERFLOW_COLUMN]
    )
    warnings = []
    blank_lines = frame.filter(blank)[SOURCE_LINE]
    if blank_lines.len():
        shown = ", ".join(str(n) for n in blank_lines.head(5).to_list())
        more = ", ..." if blank_lines.len() > 5 else ""
        warnings.append(
            f"{path.name}: skipped {blank_lines.len()} empty line(s) (line {shown}{more})"
        )
        frame = frame.filter(~blank)
    # Only the contract's columns go on (each appears once: layout._check_header); extra ones
    # are dropped.
    select = [
        pl.col(p).alias(name) for p, name in zip(positional, header, strict=True) if name in keep
    ]
    return frame.select(*select, OVERFLOW_COLUMN, SOURCE_LINE), warnings


def positional_names(width: int) -> list[str]:
    """``__c0``, ``__c1``, ...: the names ``read_csv_text`` gives a file's header columns."""
    return [f"__c{i}" for i in range(width)]


def read_csv_text(path: Path, width: int, encoding: str = "utf8") -> pl.DataFrame:
    """The records of a CSV file after its header row, every field as text: the ``width``
    header columns by position (``positional_names``), the fields beyond them joined in
    ``OVERFLOW_COLUMN``, and ``SOURCE_LINE``, the physical line where the record starts (2 + the
    record number + the line breaks inside quoted fields of earlier records)."""
    frame = pl.read_csv(
        path,
        has_header=False,
        skip_rows=1,
        schema={name: pl.String for name in [*positional_names(width), OVERFLOW_COLUMN]},
        missing_columns="insert",
        truncate_ragged_lines=True,
        infer_schema=False,
        raise_if_empty=False,
        encoding=encoding,
    )
    line_breaks = pl.sum_horizontal(
        pl.col(c).str.count_matches("\n", literal=True).fill_null(0) for c in frame.columns
    )
    return frame.with_columns(
        (pl.int_range(pl.len(), dtype=pl.Int64) + 2 + line_breaks.cum_sum() - line_breaks)
        .cast(pl.Int64)
        .alias(SOURCE_LINE)
    )


def _read_parquet(path: Path, keep: tuple[str, ...], columns: list[str]) -> pl.DataFrame:
    try:
        frame = pl.read_parquet(path, columns=[c for c in columns if c in keep])
    except Exception as exc:
        raise reject(
            f"{path.name} cannot be read as Parquet ({one_line(str(exc), 160)}); re-export it "
            "as Parquet or CSV"
        ) from None
    return frame.with_columns(
        (pl.int_range(pl.len(), dtype=pl.Int64) + 1).cast(pl.Int64).alias(SOURCE_LINE)
    )
