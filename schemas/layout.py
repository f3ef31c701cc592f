"""The table-level checks of an extract folder: its files, headers and Parquet column types.

``check_extract`` runs every check that needs no data: the folder holds one file per contract
table (extra files are ignored with a warning), the manifest reads, no column looks like a
direct identifier, every required column is there (once), and every Parquet column has a type
the contract type can be cast from. Any fault raises ``ExtractRejected`` with one line, before
any data is read, so a rejected extract never reaches the warehouse.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from chartaudit.schemas.casting import cast_problem
from chartaudit.schemas.contract import TABLE_ORDER, TABLES
from chartaudit.schemas.deidentification import identifier_columns
from chartaudit.schemas.errors import one_line, reject
from chartaudit.schemas.folder import (
    MANIFEST_FILE,
    PROVENANCE_FILE,
    TABLE_FILE_SUFFIXES,
    extract_digest,
)
from chartaudit.schemas.manifest import Manifest, read_manifest, unknown_manifest_keys

__all__ = ["ExtractLayout", "check_extract"]


@dataclass
class ExtractLayout:
    """An extract that passed every table-level check: its files, headers and manifest."""

    manifest: Manifest
    digest: str
    files: dict[str, Path]
    headers: dict[str, list[str]]
    warnings: list[str]


def check_extract(extract_dir: Path) -> ExtractLayout:
    """Every table-level check of every table, reading only headers and Parquet schemas.

    Cheap enough to run before a flow starts, so a rejected extract fails in a second."""
    extract_dir = Path(extract_dir)
    if not extract_dir.is_dir():
        raise reject(f"{extract_dir} is not a folder; give the folder holding the table files")
    digest = extract_digest(extract_dir)
    manifest = read_manifest(extract_dir, digest)
    files, warnings = _locate_tables(extract_dir)
    for key in unknown_manifest_keys(extract_dir):
        warnings.append(f"{MANIFEST_FILE}: ignored unknown key {key}")
    headers: dict[str, list[str]] = {}
    for table in TABLE_ORDER:
        path = files[table]
        parquet_types = _parquet_schema(path) if path.suffix == ".parquet" else {}
        headers[table] = _csv_header(path) if path.suffix == ".csv" else list(parquet_types)
        warnings += _check_header(table, path.name, headers[table])
        for column in TABLES[table].columns:
            if column.name in parquet_types:
                problem = cast_problem(path.name, column, parquet_types[column.name])
                if problem:
                    raise reject(problem)
    return ExtractLayout(manifest, digest, files, headers, warnings)


# --- folder layout ------------------------------------------------------------------------------


def _locate_tables(extract_dir: Path) -> tuple[dict[str, Path], list[str]]:
    """table -> its file; warnings for extra files. Missing or doubled tables are rejected."""
    entries = sorted(extract_dir.iterdir(), key=lambda p: p.name)
    table_names = {f"{t}{s}" for t in TABLE_ORDER for s in TABLE_FILE_SUFFIXES}
    warnings = []
    for entry in entries:
        if entry.name in (MANIFEST_FILE, PROVENANCE_FILE) or (
            entry.name in table_names and entry.is_file()
        ):
            continue
        kind = "folder" if entry.is_dir() else "file"
        warnings.append(f"ignored extra {kind} {entry.name}")

    files: dict[str, Path] = {}
    missing = []
    for table in TABLE_ORDER:
        present = [extract_dir / f"{table}{s}" for s in TABLE_FILE_SUFFIXES]
        present = [p for p in present if p.is_file()]
        if len(present) > 1:
            raise reject(
                f"both {present[0].name} and {present[1].name} are in {extract_dir}; "
                "keep only one of them"
            )
        if present:
            files[table] = present[0]
            continue
        wanted = {f"{table}{s}" for s in TABLE_FILE_SUFFIXES}
        near = [e.name for e in entries if e.name.lower() in wanted]
        hint = f" (found {near[0]}: rename it in lower case)" if near else ""
        missing.append(f"{table} ({table}.csv or {table}.parquet){hint}")
    if missing:
        verb, fix = ("is", "export it") if len(missing) == 1 else ("are", "export them")
        raise reject(
            f"{', '.join(missing)} {verb} missing from {extract_dir}; {fix} "
            "(a header row is enough for an empty table)"
        )
    return files, warnings


# --- headers ------------------------------------------------------------------------------------


def _csv_header(path: Path) -> list[str]:
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            header = next(csv.reader(handle), None)
    except UnicodeDecodeError:
        raise reject(
            f"{path.name} is not UTF-8 text; re-export it as UTF-8 CSV with a header row"
        ) from None
    except (OSError, csv.Error) as exc:
        raise reject(
            f"{path.name} cannot be read ({exc}); re-export it as UTF-8 CSV with a header row"
        ) from None
    if not header:
        raise reject(f"{path.name} has no header row; export it with the column names first")
    return [name.strip() for name in header]


def _parquet_schema(path: Path) -> dict[str, pl.DataType]:
    try:
        return dict(pl.read_parquet_schema(path))
    except Exception as exc:
        raise reject(
            f"{path.name} cannot be read as Parquet ({one_line(str(exc), 160)}); re-export it "
            "as Parquet or CSV"
        ) from None


def _check_header(table: str, file_name: str, columns: list[str]) -> list[str]:
    """Table-level column checks; returns warnings (ignored extra columns)."""
    found = identifier_columns(columns)
    if found:
        name, kind = found[0]
        raise reject(
            f"{file_name} has column {name!r}, which looks like a direct identifier ({kind}); "
            "remove it from the export (only de-identified data is accepted)"
        )
    spec = TABLES[table]
    for name in spec.column_names:
        if columns.count(name) > 1:
            raise reject(f"{file_name} has column {name} more than once; keep only one")
    for name in spec.required_columns:
        if name in columns:
            continue
        near = [c for c in columns if c.lower().replace(" ", "_") == name]
        if near:
            raise reject(
                f"{file_name} has no column {name} (found {near[0]!r}); rename that column to "
                f"{name}"
            )
        raise reject(f"{file_name} has no required column {name}; add it to the export")
    extra = [c for c in columns if c and c not in spec.column_names]
    return [f"{file_name}: ignored extra column(s) {', '.join(extra)}"] if extra else []
