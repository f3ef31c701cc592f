"""Read an extract folder into typed polars frames (extract contract v1).

``read_extract`` does every table-level check first (folder layout, manifest, headers, direct
identifier columns, required columns, Parquet column types) and raises ``ExtractRejected`` with
one line before any data is cast, so a rejected extract never reaches the warehouse. It then
reads every table as text (CSV) or native Parquet, casts each contract column itself, and records
every value it cannot cast as a row-level fault (``RawExtract.faults``, ``QUARANTINE_SCHEMA``);
the cell becomes null and ``validation.validate_extract`` quarantines the row.

Timestamps: ``YYYY-MM-DD HH:MM[:SS[.fff]]`` with a space or ``T``, optionally followed by a UTC
offset (``Z``, ``+02:00``, ``-0500``, ``+02``). A value with an offset is that instant; a naive
value is local time in ``manifest.timezone`` and is converted to UTC.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from chartaudit.schemas.codes import normalise_code_expr, normalise_ingredient_expr
from chartaudit.schemas.contract import SOURCE_LINE, TABLE_ORDER, TABLES, ColumnSpec
from chartaudit.schemas.deidentification import identifier_columns
from chartaudit.schemas.manifest import (
    MANIFEST_FILE,
    TABLE_FILE_SUFFIXES,
    ExtractRejected,
    Manifest,
    extract_digest,
    one_line,
    read_manifest,
    unknown_manifest_keys,
)
from chartaudit.schemas.models import (
    CANONICAL_DTYPES,
    EXTRA_FIELDS,
    QUARANTINE_SCHEMA,
    TIMESTAMP_NOT_IN_TIMEZONE,
    UNPARSEABLE,
    UTC_DATETIME,
    canonical_schema,
    empty_quarantine,
)
from chartaudit.schemas.saved import load_stage, save_stage

__all__ = ["ExtractRejected", "RawExtract", "read_extract"]

# Columns normalised after casting (codes.py), so value sets and checks compare like with like.
CODE_COLUMNS = {"diagnoses": "code", "findings": "code", "orders": "code"}
INGREDIENT_COLUMNS = {"medications": "ingredient"}

_OVERFLOW = "__extra_fields__"
_INT_TEXT = r"^[+-]?[0-9]+$"
_FLOAT_TEXT = r"^[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$"
_DATE_TEXT = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
# date, hour, minute, second, fraction, Z, offset sign, offset hours, offset minutes
_TIMESTAMP_TEXT = (
    r"^([0-9]{4}-[0-9]{2}-[0-9]{2})[T ]([01][0-9]|2[0-3]):([0-5][0-9])"
    r"(?::([0-5][0-9])(?:[.,]([0-9]{1,9}))?)?"
    r" ?(?:([Zz])|([+-])([01][0-9]|2[0-3])(?::?([0-5][0-9]))?)?$"
)


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


# --- folder layout ------------------------------------------------------------------------------


def _reject(text: str) -> ExtractRejected:
    return ExtractRejected(f"extract rejected: {text}")


def _locate_tables(extract_dir: Path) -> tuple[dict[str, Path], list[str]]:
    """table -> its file; warnings for extra files. Missing or doubled tables are rejected."""
    entries = sorted(extract_dir.iterdir(), key=lambda p: p.name)
    table_names = {f"{t}{s}" for t in TABLE_ORDER for s in TABLE_FILE_SUFFIXES}
    warnings = []
    for entry in entries:
        if entry.name == MANIFEST_FILE or (entry.name in table_names and entry.is_file()):
            continue
        kind = "folder" if entry.is_dir() else "file"
        warnings.append(f"ignored extra {kind} {entry.name}")

    files: dict[str, Path] = {}
    missing = []
    for table in TABLE_ORDER:
        present = [extract_dir / f"{table}{s}" for s in TABLE_FILE_SUFFIXES]
        present = [p for p in present if p.is_file()]
        if len(present) > 1:
            raise _reject(
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
        raise _reject(
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
        raise _reject(
            f"{path.name} is not UTF-8 text; re-export it as UTF-8 CSV with a header row"
        ) from None
    except (OSError, csv.Error) as exc:
        raise _reject(
            f"{path.name} cannot be read ({exc}); re-export it as UTF-8 CSV with a header row"
        ) from None
    if not header:
        raise _reject(f"{path.name} has no header row; export it with the column names first")
    return [name.strip() for name in header]


def _parquet_schema(path: Path) -> dict[str, pl.DataType]:
    try:
        return dict(pl.read_parquet_schema(path))
    except Exception as exc:
        raise _reject(
            f"{path.name} cannot be read as Parquet ({one_line(str(exc), 160)}); re-export it "
            "as Parquet or CSV"
        ) from None


def _check_header(table: str, file_name: str, columns: list[str]) -> list[str]:
    """Table-level column checks; returns warnings (ignored extra columns)."""
    found = identifier_columns(columns)
    if found:
        name, kind = found[0]
        raise _reject(
            f"{file_name} has column {name!r}, which looks like a direct identifier ({kind}); "
            "remove it from the export (only de-identified data is accepted)"
        )
    spec = TABLES[table]
    for name in spec.column_names:
        if columns.count(name) > 1:
            raise _reject(f"{file_name} has column {name} more than once; keep only one")
    for name in spec.required_columns:
        if name in columns:
            continue
        near = [c for c in columns if c.lower().replace(" ", "_") == name]
        if near:
            raise _reject(
                f"{file_name} has no column {name} (found {near[0]!r}); rename that column to "
                f"{name}"
            )
        raise _reject(f"{file_name} has no required column {name}; add it to the export")
    extra = [c for c in columns if c and c not in spec.column_names]
    return [f"{file_name}: ignored extra column(s) {', '.join(extra)}"] if extra else []


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
    positional = [f"__c{i}" for i in range(len(header))]
    try:
        frame = pl.read_csv(
            path,
            has_header=False,
            skip_rows=1,
            schema={name: pl.String for name in [*positional, _OVERFLOW]},
            missing_columns="insert",
            truncate_ragged_lines=True,
            infer_schema=False,
            raise_if_empty=False,
            encoding="utf8",
        )
    except Exception as exc:
        problem = "is not UTF-8 text" if "utf-8" in str(exc).lower() else "cannot be read as CSV"
        raise _reject(
            f"{path.name} {problem} ({one_line(str(exc), 160)}); re-export it as UTF-8 CSV with "
            "a header row"
        ) from None
    line_breaks = pl.sum_horizontal(
        pl.col(c).str.count_matches("\n", literal=True).fill_null(0) for c in frame.columns
    )
    frame = frame.with_columns(
        (pl.int_range(pl.len(), dtype=pl.Int64) + 2 + line_breaks.cum_sum() - line_breaks)
        .cast(pl.Int64)
        .alias(SOURCE_LINE)
    )
    blank = pl.all_horizontal(
        pl.col(c).str.strip_chars().replace("", None).is_null() for c in [*positional, _OVERFLOW]
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
    # Only the contract's columns go on (each appears once: _check_header); extra ones are dropped.
    select = [
        pl.col(p).alias(name) for p, name in zip(positional, header, strict=True) if name in keep
    ]
    return frame.select(*select, _OVERFLOW, SOURCE_LINE), warnings


def _read_parquet(path: Path, keep: tuple[str, ...], columns: list[str]) -> pl.DataFrame:
    try:
        frame = pl.read_parquet(path, columns=[c for c in columns if c in keep])
    except Exception as exc:
        raise _reject(
            f"{path.name} cannot be read as Parquet ({one_line(str(exc), 160)}); re-export it "
            "as Parquet or CSV"
        ) from None
    return frame.with_columns(
        (pl.int_range(pl.len(), dtype=pl.Int64) + 1).cast(pl.Int64).alias(SOURCE_LINE)
    )


# --- casting ------------------------------------------------------------------------------------


def _is_text(dtype: pl.DataType) -> bool:
    return isinstance(dtype, pl.String | pl.Categorical | pl.Enum)


def _cast_problem(file_name: str, column: ColumnSpec, dtype: pl.DataType) -> str | None:
    """Why a Parquet column of this dtype cannot be read as the contract type, or None."""
    if _is_text(dtype) or isinstance(dtype, pl.Null):
        return None
    ok = {
        "str": dtype.is_integer(),
        "int": dtype.is_integer() or dtype.is_float() or isinstance(dtype, pl.Decimal),
        "float": dtype.is_numeric(),
        "date": isinstance(dtype, pl.Date | pl.Datetime),
        "timestamp": isinstance(dtype, pl.Datetime),
    }[column.type]
    if ok:
        return None
    wanted = {
        "str": "text",
        "int": "integers",
        "float": "numbers",
        "date": "dates or YYYY-MM-DD text",
        "timestamp": "timestamps or ISO 8601 text",
    }[column.type]
    return (
        f"{file_name} column {column.name} has type {dtype}, which cannot be read as "
        f"{column.type}; export it as {wanted}"
    )


def _clean_text(expr: pl.Expr) -> pl.Expr:
    """Text stripped of surrounding white space; an empty string is a missing value."""
    stripped = expr.cast(pl.String).str.strip_chars()
    return pl.when(stripped == "").then(None).otherwise(stripped)


@dataclass(frozen=True)
class _Cast:
    """How one input column becomes its canonical column.

    ``value`` is the typed value, null where the input has none or where it cannot be cast;
    where ``present`` (the input has a value) and the value is null, the row gets the fault
    ``rule``. Nothing is coerced: a value either casts exactly or is a fault.
    """

    value: pl.Expr
    present: pl.Expr
    rule: pl.Expr


def _no_fault(value: pl.Expr) -> _Cast:
    return _Cast(value, pl.lit(False), pl.lit(None, pl.String))


# Helper columns of a timestamp given as text, computed once each (an expression used several
# times in one select is evaluated several times).
def _parts(name: str) -> str:
    return f"__parts_{name}"


def _naive(name: str) -> str:
    return f"__naive_{name}"


def _offset(name: str) -> str:
    return f"__offset_{name}"


def _timestamp_parts(name: str) -> pl.Expr:
    return pl.col(name).str.extract_groups(_TIMESTAMP_TEXT).alias(_parts(name))


def _wall_time_and_offset(name: str) -> list[pl.Expr]:
    """The naive wall time and the UTC offset in minutes (null: none given) of ISO 8601 text."""
    parts = pl.col(_parts(name))
    date, hour, minute, second, fraction, zulu, sign, off_h, off_m = (
        parts.struct.field(str(i)) for i in range(1, 10)
    )
    wall = pl.concat_str(
        date,
        pl.lit(" "),
        hour,
        pl.lit(":"),
        minute,
        pl.lit(":"),
        second.fill_null("00"),
        pl.when(fraction.is_not_null()).then(pl.lit(".") + fraction).otherwise(pl.lit("")),
    )
    # strict=False: an impossible calendar date (2026-02-30) becomes null -> unparseable
    naive = wall.str.strptime(pl.Datetime("us"), "%Y-%m-%d %H:%M:%S%.f", strict=False)
    offset_minutes = (
        pl.when(zulu.is_not_null())
        .then(pl.lit(0, dtype=pl.Int64))
        .when(sign.is_not_null())
        .then(
            pl.when(sign == "-").then(-1).otherwise(1)
            * (off_h.cast(pl.Int64) * 60 + off_m.cast(pl.Int64).fill_null(0))
        )
    )
    return [naive.alias(_naive(name)), offset_minutes.alias(_offset(name))]


def _localise(naive: pl.Expr, zone: str) -> pl.Expr:
    """Naive local wall time in ``zone`` -> UTC instant.

    A wall time that occurs twice (the repeated hour when clocks go back) takes the EARLIER
    instant, i.e. the first time the clock showed it. A wall time that never occurs (the hour
    skipped when clocks go forward) becomes null, which the caller reports as the row-level
    fault ``timestamp_not_in_timezone``; it is never shifted.
    """
    return naive.dt.replace_time_zone(
        zone, ambiguous="earliest", non_existent="null"
    ).dt.convert_time_zone("UTC")


def _cast_text(column: ColumnSpec, zone: str) -> _Cast:
    """Cast a text column (already stripped, empty = null) to the contract type."""
    text = pl.col(column.name)
    kind = column.type
    if kind == "str":
        return _no_fault(text)
    if kind == "timestamp":
        # A value with an offset is that instant; a naive value is local time in `zone`.
        naive, offset = pl.col(_naive(column.name)), pl.col(_offset(column.name))
        with_offset = (naive - pl.duration(minutes=offset)).dt.replace_time_zone("UTC")
        value = pl.when(offset.is_not_null()).then(with_offset).otherwise(_localise(naive, zone))
        rule = (
            pl.when(naive.is_null())
            .then(pl.lit(UNPARSEABLE["timestamp"]))
            .otherwise(pl.lit(TIMESTAMP_NOT_IN_TIMEZONE))
        )
        return _Cast(value.cast(UTC_DATETIME), text.is_not_null(), rule)
    if kind == "int":
        value = pl.when(text.str.contains(_INT_TEXT)).then(text.cast(pl.Int64, strict=False))
    elif kind == "float":
        value = pl.when(text.str.contains(_FLOAT_TEXT)).then(text.cast(pl.Float64, strict=False))
    else:  # date
        value = pl.when(text.str.contains(_DATE_TEXT)).then(
            text.str.strptime(pl.Date, "%Y-%m-%d", strict=False)
        )
    return _Cast(value, text.is_not_null(), pl.lit(UNPARSEABLE[kind]))


def _cast_native(column: ColumnSpec, dtype: pl.DataType, zone: str) -> _Cast:
    """Cast a native (Parquet) column. Float NaN is pandas' missing value and reads as null."""
    src = pl.col(column.name)
    kind = column.type
    target = CANONICAL_DTYPES[kind]
    if isinstance(dtype, pl.Null):
        return _no_fault(pl.lit(None).cast(target))
    if kind == "str":  # only integers get here (_cast_problem)
        return _no_fault(src.cast(pl.String))
    if kind in ("int", "float") and dtype.is_integer():
        # strict=False: a UInt64 beyond Int64 becomes null and is reported
        value = src.cast(target, strict=False)
        return _Cast(value, src.is_not_null(), pl.lit(UNPARSEABLE[kind]))
    if kind in ("int", "float"):  # float or decimal
        number = src.cast(pl.Float64)
        present = number.is_not_null() & ~number.is_nan()
        if kind == "int":  # whole numbers only: 1950.0 is 1950, 1950.5 is a fault
            whole = number.is_finite() & (number == number.floor())
            value = pl.when(whole).then(number.cast(pl.Int64, strict=False))
        else:
            value = pl.when(number.is_finite()).then(number)
        return _Cast(value, present, pl.lit(UNPARSEABLE[kind]))
    if kind == "date":
        if isinstance(dtype, pl.Date):
            return _no_fault(src)
        # A Datetime is accepted as a date only at midnight (pandas writes dates so).
        value = pl.when(src.dt.time() == pl.time(0)).then(src.dt.date())
        return _Cast(value, src.is_not_null(), pl.lit(UNPARSEABLE["date"]))
    assert isinstance(dtype, pl.Datetime)  # timestamp (_cast_problem)
    if dtype.time_zone is None:
        value = _localise(src.cast(pl.Datetime("us")), zone)
    else:
        value = src.dt.convert_time_zone("UTC")
    return _Cast(value.cast(UTC_DATETIME), src.is_not_null(), pl.lit(TIMESTAMP_NOT_IN_TIMEZONE))


def _value(name: str) -> str:
    return f"__value_{name}"


def _type_table(
    table: str, file_name: str, frame: pl.DataFrame, zone: str
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(canonical typed frame, cast faults) of one table's input frame.

    In stages, so that each costly expression (regex, parsing) runs once per column.
    """
    spec = TABLES[table]
    present = [c for c in spec.columns if c.name in frame.columns]
    text = [c for c in present if _is_text(frame.schema[c.name])]
    stamps = [c.name for c in text if c.type == "timestamp"]
    frame = frame.with_columns(_clean_text(pl.col(c.name)).alias(c.name) for c in text)
    frame = frame.with_columns(_timestamp_parts(name) for name in stamps)
    frame = frame.with_columns(e for name in stamps for e in _wall_time_and_offset(name))
    casts = {
        c.name: _cast_text(c, zone) if c in text else _cast_native(c, frame.schema[c.name], zone)
        for c in present
    }
    frame = frame.with_columns(cast.value.alias(_value(name)) for name, cast in casts.items())

    where = [pl.lit(table).alias("table_name"), pl.lit(file_name).alias("source_file")]
    fault_parts = [empty_quarantine()]
    for name, cast in casts.items():
        bad = frame.filter(cast.present & pl.col(_value(name)).is_null())
        fault_parts.append(
            bad.select(
                *where,
                SOURCE_LINE,
                pl.lit(name, pl.String).alias("column_name"),
                cast.rule.alias("rule"),
                pl.col(name).cast(pl.String).alias("value"),
            ).cast(QUARANTINE_SCHEMA)
        )
    if _OVERFLOW in frame.columns:  # CSV fields beyond the header
        extra = frame.filter(pl.col(_OVERFLOW).is_not_null()).select(
            *where,
            SOURCE_LINE,
            pl.lit(None, pl.String).alias("column_name"),
            pl.lit(EXTRA_FIELDS).alias("rule"),
            pl.col(_OVERFLOW).alias("value"),
        )
        fault_parts.append(extra.cast(QUARANTINE_SCHEMA))
    fault_rows = pl.concat(fault_parts).sort(SOURCE_LINE, maintain_order=True)

    typed = frame.select(
        *[
            pl.col(_value(c.name)).alias(c.name)
            if c.name in casts
            else pl.lit(None).cast(CANONICAL_DTYPES[c.type]).alias(c.name)  # absent optional
            for c in spec.columns
        ],
        SOURCE_LINE,
    ).with_columns(_normalise(table))
    return typed.cast(dict(canonical_schema(table))), fault_rows


def _normalise(table: str) -> list[pl.Expr]:
    exprs = []
    if table in CODE_COLUMNS:
        code = CODE_COLUMNS[table]
        exprs.append(normalise_code_expr(pl.col("code_system"), pl.col(code)).alias(code))
    if table in INGREDIENT_COLUMNS:
        name = INGREDIENT_COLUMNS[table]
        exprs.append(normalise_ingredient_expr(pl.col(name)).alias(name))
    return exprs


# --- entry point --------------------------------------------------------------------------------


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
        raise _reject(f"{extract_dir} is not a folder; give the folder holding the table files")
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
                problem = _cast_problem(path.name, column, parquet_types[column.name])
                if problem:
                    raise _reject(problem)
    return ExtractLayout(manifest, digest, files, headers, warnings)


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
            tables[table], table_faults = _type_table(table, path.name, frame, manifest.timezone)
        except pl.exceptions.PolarsError as exc:  # e.g. a Parquet value polars cannot convert
            raise _reject(
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
