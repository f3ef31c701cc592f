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

from chartaudit.schemas.casting import type_table
from chartaudit.schemas.contract import SOURCE_LINE, TABLE_ORDER, TABLES
from chartaudit.schemas.errors import one_line, reject
from chartaudit.schemas.layout import check_extract
from chartaudit.schemas.manifest import Manifest
from chartaudit.schemas.models import (
    EXTRA_FIELDS,
    MISSING_FIELDS,
    QUARANTINE_SCHEMA,
    empty_quarantine,
)
from chartaudit.schemas.saved import load_stage, save_stage

__all__ = ["OVERFLOW_COLUMN", "RawExtract", "positional_names", "read_csv_text", "read_extract"]

# Fields of a CSV record beyond its header (read_csv_text keeps the first of them, for scans).
OVERFLOW_COLUMN = "__extra_fields__"


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
            faults.append(_field_count_faults(table, path.name, frame, len(headers[table])))
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


# Helper column of a CSV frame: how many fields the record has (the header's count is right).
FIELD_COUNT = "__fields__"


def _read_csv(
    path: Path, header: list[str], keep: tuple[str, ...]
) -> tuple[pl.DataFrame, list[str]]:
    """The ``keep`` columns as text, plus source_line and the record's number of fields.

    Columns are named by position (``__c0``...) because the header may hold names polars would
    rename. polars pads a short record with nulls and cuts a long one, so the number of fields
    of each record, and the physical line where it starts (source_line), are counted from the
    text (``_records``). Rows with no value at all (blank lines) are skipped with a warning.
    """
    positional = positional_names(len(header))
    try:
        frame = read_csv_text(path, len(header)).drop(OVERFLOW_COLUMN, SOURCE_LINE)
    except Exception as exc:
        problem = "is not UTF-8 text" if "utf-8" in str(exc).lower() else "cannot be read as CSV"
        raise reject(
            f"{path.name} {problem} ({one_line(str(exc), 160)}); re-export it as UTF-8 CSV with "
            "a header row"
        ) from None
    records = _records(path)
    if records.height != frame.height:
        raise reject(
            f"{path.name} cannot be read as CSV (its quotes do not pair up); re-export it as "
            "UTF-8 CSV with a header row"
        )
    frame = pl.concat([frame, records], how="horizontal")
    # A blank line is one empty field; a line of commas only has no value either. (A regex test
    # of each field, not stripped copies of every column: \s is the White_Space that strip_chars
    # strips.)
    blank = pl.all_horizontal(
        pl.col(c).is_null() | pl.col(c).str.contains(r"^\s*$") for c in positional
    ) & ((pl.col(FIELD_COUNT) == 1) | (pl.col(FIELD_COUNT) == len(header)))
    warnings = []
    blank_lines = frame.select(pl.col(SOURCE_LINE).filter(blank))[SOURCE_LINE]
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
    return frame.select(*select, FIELD_COUNT, SOURCE_LINE), warnings


def _records(path: Path) -> pl.DataFrame:
    """Each record after the header, as polars reads them: the physical line it starts on
    (``SOURCE_LINE``, the header is line 1) and its number of fields (``FIELD_COUNT``).

    Counted from the text, per physical line: whether it starts inside a quoted field (an odd
    number of quote characters before it; an escaped quote counts twice), and so which record
    it belongs to, and the commas outside its quoted parts (a regex, run only on lines with
    quotes); a record has one field more than its commas.
    """
    quotes = pl.col("line").str.count_matches('"', literal=True)
    lines = (
        _physical_lines(path)
        .with_row_index("n")
        .with_columns(pl.col("line").fill_null(""))  # a blank line
        .with_columns(quotes.alias("quotes"))
        .with_columns(((pl.col("quotes").cum_sum() - pl.col("quotes")) % 2 == 1).alias("inside"))
    )
    quoted = pl.col("inside") | (pl.col("quotes") > 0)
    opened = pl.when(pl.col("inside")).then(pl.lit('"') + pl.col("line")).otherwise("line")
    outside_quotes = opened.str.replace_all(r'"[^"]*"|"[^"]*$', "")
    commas = pl.concat(
        [
            lines.filter(~quoted).select("n", "inside", pl.col("line").alias("text")),
            lines.filter(quoted).select("n", "inside", outside_quotes.alias("text")),
        ]
    ).select("n", "inside", pl.col("text").str.count_matches(",", literal=True).alias("commas"))
    commas = commas.sort("n")
    if commas["inside"].any():  # a record spans lines: add its lines up
        commas = commas.group_by((~pl.col("inside")).cum_sum(), maintain_order=True).agg(
            pl.col("n").first(), pl.col("commas").sum()
        )
    return commas.slice(1).select(  # not the header
        (pl.col("n") + 1).cast(pl.Int64).alias(SOURCE_LINE),
        (pl.col("commas") + 1).cast(pl.Int64).alias(FIELD_COUNT),
    )


def _physical_lines(path: Path) -> pl.DataFrame:
    """The file's lines as text, one row each (blank lines too), header first."""
    frame = pl.read_csv(
        path,
        has_header=False,
        separator="\x00",  # no text holds it: each line is one field
        quote_char=None,
        schema={"line": pl.String, "__after_nul": pl.String},
        missing_columns="insert",
        extra_columns="ignore",
        truncate_ragged_lines=True,
        infer_schema=False,
        raise_if_empty=False,
        encoding="utf8",
    )
    if frame["__after_nul"].is_not_null().any():
        raise reject(f"{path.name} holds NUL bytes; re-export it as UTF-8 CSV with a header row")
    return frame.select("line")


def _field_count_faults(table: str, file_name: str, frame: pl.DataFrame, expected: int):
    """A record with more or fewer fields than the header: quarantined, whatever it holds."""
    wrong = frame.filter(pl.col(FIELD_COUNT) != expected)
    return wrong.select(
        pl.lit(table).alias("table_name"),
        pl.lit(file_name).alias("source_file"),
        SOURCE_LINE,
        pl.lit(None, pl.String).alias("column_name"),
        pl.when(pl.col(FIELD_COUNT) > expected)
        .then(pl.lit(EXTRA_FIELDS))
        .otherwise(pl.lit(MISSING_FIELDS))
        .alias("rule"),
        pl.format("{} fields, the header has {}", pl.col(FIELD_COUNT), pl.lit(expected)).alias(
            "value"
        ),
    ).cast(QUARANTINE_SCHEMA)


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
