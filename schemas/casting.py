"""Typing one table's columns into the contract types, recording every value that does not cast.

Text (CSV, or Parquet text columns) and native Parquet columns are cast to the contract type
of each column. Nothing is coerced: a value either casts exactly or becomes null and is a
row-level fault (``QUARANTINE_SCHEMA``) that ``validation.validate_extract`` quarantines. Codes
and ingredients are normalised after casting (``codes.py``), once their text as read has been
checked for identifier-looking values. ``cast_problem`` says, before any
data is read, which Parquet column types cannot be cast at all (a table-level fault).
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from chartaudit.schemas.codes import normalise_code_expr, normalise_ingredient_expr
from chartaudit.schemas.contract import SOURCE_LINE, TABLES, ColumnSpec
from chartaudit.schemas.deidentification import IDENTIFIER_VALUE_PATTERNS, identifier_placeholder
from chartaudit.schemas.models import (
    CANONICAL_DTYPES,
    LOOKS_LIKE_IDENTIFIER,
    QUARANTINE_SCHEMA,
    TIMESTAMP_NOT_IN_TIMEZONE,
    UNPARSEABLE,
    UTC_DATETIME,
    canonical_schema,
    empty_quarantine,
)
from chartaudit.schemas.timestamps import (
    localise,
    naive_column,
    offset_column,
    timestamp_parts,
    wall_time_and_offset,
)

__all__ = [
    "ANY_IDENTIFIER_PATTERN",
    "CODE_COLUMNS",
    "INGREDIENT_COLUMNS",
    "cast_problem",
    "normalised_columns",
    "type_table",
]

# Columns normalised after casting (codes.py), so value sets and checks compare like with like.
CODE_COLUMNS = {"diagnoses": "code", "findings": "code", "orders": "code"}
INGREDIENT_COLUMNS = {"medications": "ingredient"}

# A value matches this when it matches any identifier pattern: one regex pass over a column
# finds the few rows worth asking which kind (identifier_placeholder) they look like.
ANY_IDENTIFIER_PATTERN = "|".join(f"(?:{pattern})" for _, pattern in IDENTIFIER_VALUE_PATTERNS)

_INT_TEXT = r"^[+-]?[0-9]+$"
_FLOAT_TEXT = r"^[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$"
_DATE_TEXT = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"


def _is_text(dtype: pl.DataType) -> bool:
    return isinstance(dtype, pl.String | pl.Categorical | pl.Enum)


def cast_problem(file_name: str, column: ColumnSpec, dtype: pl.DataType) -> str | None:
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


def _cast_text(column: ColumnSpec, zone: str) -> _Cast:
    """Cast a text column (already stripped, empty = null) to the contract type."""
    text = pl.col(column.name)
    kind = column.type
    if kind == "str":
        return _no_fault(text)
    if kind == "timestamp":
        # A value with an offset is that instant; a naive value is local time in `zone`.
        naive, offset = pl.col(naive_column(column.name)), pl.col(offset_column(column.name))
        with_offset = (naive - pl.duration(minutes=offset)).dt.replace_time_zone("UTC")
        value = pl.when(offset.is_not_null()).then(with_offset).otherwise(localise(naive, zone))
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
    if kind == "str":  # only integers get here (cast_problem)
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
    assert isinstance(dtype, pl.Datetime)  # timestamp (cast_problem)
    if dtype.time_zone is None:
        value = localise(src.cast(pl.Datetime("us")), zone)
    else:
        value = src.dt.convert_time_zone("UTC")
    return _Cast(value.cast(UTC_DATETIME), src.is_not_null(), pl.lit(TIMESTAMP_NOT_IN_TIMEZONE))


# The form nearly every extract writes (no fraction, no offset): parsed by one strptime, the rows
# in any other form by the full grammar of timestamps.py; both give the same wall time.
_PLAIN_TIMESTAMP = r"^[0-9]{4}-[0-9]{2}-[0-9]{2} (?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]$"
_PLAIN_FORMAT = "%Y-%m-%d %H:%M:%S"


def _parse_timestamps(frame: pl.DataFrame, stamps: list[str]) -> pl.DataFrame:
    """Adds ``naive_column`` and ``offset_column`` of each timestamp text column.

    The full grammar's regex with capture groups is the costly part of reading a table, so it
    runs only on the rows not in the plain form (the others are null to it, which costs little).
    """
    plain, fast, slow = ({n: f"__{kind}_{n}" for n in stamps} for kind in ("plain", "fast", "slow"))
    frame = frame.with_columns(
        pl.col(n).str.contains(_PLAIN_TIMESTAMP).alias(plain[n]) for n in stamps
    )
    frame = frame.with_columns(
        e
        for n in stamps
        for e in (
            pl.when(pl.col(plain[n]))
            .then(pl.col(n).str.strptime(pl.Datetime("us"), _PLAIN_FORMAT, strict=False))
            .alias(fast[n]),
            pl.when(~pl.col(plain[n])).then(pl.col(n)).alias(slow[n]),
        )
    )
    frame = frame.with_columns(timestamp_parts(slow[n]) for n in stamps)
    frame = frame.with_columns(e for n in stamps for e in wall_time_and_offset(slow[n]))
    return frame.with_columns(
        e
        for n in stamps
        for e in (
            pl.when(pl.col(plain[n]))
            .then(pl.col(fast[n]))
            .otherwise(pl.col(naive_column(slow[n])))
            .alias(naive_column(n)),
            pl.col(offset_column(slow[n])).alias(offset_column(n)),
        )
    )


def _value(name: str) -> str:
    return f"__value_{name}"


def type_table(
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
    frame = _parse_timestamps(frame, stamps)
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
    fault_parts += _identifiers_as_read(table, frame, where)
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


def normalised_columns(table: str) -> tuple[str, ...]:
    """The columns whose text ``_normalise`` changes (case, dots) after casting."""
    return tuple(c[table] for c in (CODE_COLUMNS, INGREDIENT_COLUMNS) if table in c)


def _identifiers_as_read(table: str, frame: pl.DataFrame, where: list[pl.Expr]):
    """Identifier-looking values of the columns normalisation changes, checked on the text as
    read: lower-casing a LOCAL code would turn "Dr. Roe" into "dr. roe", which no longer looks
    like a name. (validation.py checks every other text column.)"""
    parts = []
    for name in normalised_columns(table):
        if _value(name) not in frame.columns:
            continue
        placeholder = identifier_placeholder(pl.col(_value(name)))
        parts.append(
            frame.filter(pl.col(_value(name)).str.contains(ANY_IDENTIFIER_PATTERN))
            .select(
                *where,
                SOURCE_LINE,
                pl.lit(name, pl.String).alias("column_name"),
                pl.lit(LOOKS_LIKE_IDENTIFIER).alias("rule"),
                placeholder.alias("value"),
            )
            .cast(QUARANTINE_SCHEMA)
        )
    return parts


def _normalise(table: str) -> list[pl.Expr]:
    exprs = []
    if table in CODE_COLUMNS:
        code = CODE_COLUMNS[table]
        exprs.append(normalise_code_expr(pl.col("code_system"), pl.col(code)).alias(code))
    if table in INGREDIENT_COLUMNS:
        name = INGREDIENT_COLUMNS[table]
        exprs.append(normalise_ingredient_expr(pl.col(name)).alias(name))
    return exprs
