"""Pandera models (polars backend) of the canonical extract tables, built from ``contract.py``.

One ``DataFrameModel`` per table and extract year (``table_model``). The fields, their dtypes
and which of them may be null come from ``contract.TABLES``; the value rules are named checks
whose names are the quarantine rule names, so a ``SchemaErrors.failure_cases`` row maps straight
to a quarantine row (``validation.py``). Every check lets nulls through: a missing value is only
ever the ``missing_required`` fault of a required column.

Rules that need more than one row (duplicate keys, foreign keys) or must not echo the value
(identifier-looking text) are set-based polars code in ``validation.py``; faults found while
reading and casting text to the column types come from ``reader.py`` and ``casting.py``; the
bound on times after the extract was made is in ``quality.py``. All quarantine rule names are
listed in ``RULES``; the warning rules (the row loads, the finding goes to ``data_quality``) in
``WARNING_RULES``, with their thresholds in ``quality.py``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Annotated

import pandera.polars as pa
import polars as pl

from chartaudit.schemas.contract import SOURCE_LINE, TABLES, ColumnSpec, ColumnType, TableSpec

# --- canonical frames ---------------------------------------------------------------------------

UTC_DATETIME = pl.Datetime("us", "UTC")
CANONICAL_DTYPES: dict[ColumnType, pl.DataType] = {
    "str": pl.String(),
    "int": pl.Int64(),
    "float": pl.Float64(),
    "date": pl.Date(),
    "timestamp": UTC_DATETIME,
}

# One row per (input row, broken rule). column_name is null for a rule over the whole row.
QUARANTINE_SCHEMA: dict[str, pl.DataType] = {
    "table_name": pl.String(),
    "source_file": pl.String(),
    "source_line": pl.Int64(),
    "column_name": pl.String(),
    "rule": pl.String(),
    "value": pl.String(),
}

# One row per (loaded row, warning rule); level is "warning" (the row loaded all the same).
DATA_QUALITY_SCHEMA: dict[str, pl.DataType] = {**QUARANTINE_SCHEMA, "level": pl.String()}

LOAD_COUNTS_SCHEMA: dict[str, pl.DataType] = {
    "table_name": pl.String(),
    "source_file": pl.String(),
    "input_rows": pl.Int64(),
    "loaded_rows": pl.Int64(),
    "quarantined_rows": pl.Int64(),
    "warned_rows": pl.Int64(),  # loaded rows with at least one data-quality warning
}


def canonical_schema(table: str) -> pl.Schema:
    """The contract's columns in contract order with their canonical dtypes, then source_line."""
    spec = TABLES[table]
    return pl.Schema(
        [(c.name, CANONICAL_DTYPES[c.type]) for c in spec.columns] + [(SOURCE_LINE, pl.Int64())]
    )


def empty_quarantine() -> pl.DataFrame:
    return pl.DataFrame(schema=QUARANTINE_SCHEMA)


def empty_data_quality() -> pl.DataFrame:
    return pl.DataFrame(schema=DATA_QUALITY_SCHEMA)


# --- rule names ---------------------------------------------------------------------------------

# Found while reading and casting (casting.py)
UNPARSEABLE = {
    "int": "unparseable_int",
    "float": "unparseable_float",
    "date": "unparseable_date",
    "timestamp": "unparseable_timestamp",
}
TIMESTAMP_NOT_IN_TIMEZONE = "timestamp_not_in_timezone"
EXTRA_FIELDS = "extra_fields"
MISSING_FIELDS = "missing_fields"
# Per-value rules (the Pandera checks below)
MISSING_REQUIRED = "missing_required"
NOT_ALLOWED = "not_allowed"
OUT_OF_RANGE = "out_of_range"
DEATH_BEFORE_BIRTH = "death_before_birth"
NOT_POSITIVE = "not_positive"
MALFORMED_CODE = "malformed_code"
MALFORMED_LOINC = "malformed_loinc"
# Set-based rules (validation.py, quality.py)
DUPLICATE_KEY = "duplicate_key"
FOREIGN_KEY = "foreign_key"
ENCOUNTER_OF_OTHER_PATIENT = "encounter_of_other_patient"
LOOKS_LIKE_IDENTIFIER = "looks_like_identifier"
FAR_AFTER_CREATED = "far_after_extract_created"
# Warning rules (quality.py): the row loads and the finding is recorded in data_quality
TIME_ORDER = "time_order"
AFTER_CREATED = "after_extract_created"
DOSE_ABOVE_LABEL_MAX = "dose_above_label_max"
WARNING = "warning"  # the level of every data_quality row

RULES: dict[str, str] = {
    UNPARSEABLE["int"]: "not a whole number",
    UNPARSEABLE["float"]: "not a number",
    UNPARSEABLE["date"]: "not a date (YYYY-MM-DD)",
    UNPARSEABLE["timestamp"]: "not an ISO 8601 timestamp (YYYY-MM-DD HH:MM[:SS][offset])",
    TIMESTAMP_NOT_IN_TIMEZONE: "local time skipped by a clock change in the extract's time zone",
    EXTRA_FIELDS: "the CSV row has more fields than the header",
    MISSING_FIELDS: "the CSV row has fewer fields than the header",
    MISSING_REQUIRED: "required value missing",
    NOT_ALLOWED: "value not in the contract's allowed set",
    OUT_OF_RANGE: "birth_year outside 1900..extract year",
    DEATH_BEFORE_BIRTH: "death_date before birth_year",
    NOT_POSITIVE: "value must be greater than 0",
    MALFORMED_CODE: "code not well-formed for its code_system",
    MALFORMED_LOINC: "not a well-formed LOINC code (NNNNN-N)",
    DUPLICATE_KEY: "primary key already used by an earlier row (the first one is kept)",
    FOREIGN_KEY: "refers to a row that is not in the loaded parent table",
    ENCOUNTER_OF_OTHER_PATIENT: "encounter_id names an encounter of another patient",
    LOOKS_LIKE_IDENTIFIER: "value looks like an SSN, phone number, e-mail address or name",
    FAR_AFTER_CREATED: "a time more than 24 h after the manifest's created: it cannot have "
    "happened when the extract was made",
}

WARNING_RULES: dict[str, str] = {
    TIME_ORDER: "a later time of the event precedes the earlier time it follows (back-dated "
    "entry); the row loads",
    AFTER_CREATED: "a time up to 24 h after the manifest's created (clock or time-zone skew); "
    "the row loads",
    DOSE_ABOVE_LABEL_MAX: "daily dose above the highest labelled daily dose of the ingredient "
    "(often a unit slip); the row loads",
}

# Pandera's built-in nullability check, renamed for quarantine.
PANDERA_CHECK_RULES = {"not_nullable": MISSING_REQUIRED}

# --- rules beyond contract.py's types and allowed sets ------------------------------------------

MIN_BIRTH_YEAR = 1900
POSITIVE_COLUMNS: dict[str, tuple[str, ...]] = {"medications": ("dose_mg", "doses_per_day")}
# Well-formed codes per code system, checked after normalisation (codes.normalise_code_expr),
# which drops an ICD-10-CM dot only after the three-character category: a dot anywhere else
# (E1.142) stays and fails the pattern.
DIAGNOSIS_CODE_PATTERNS: dict[str, str] = {
    "ICD10CM": r"^[A-Z][0-9][0-9A-Z]{1,5}$",
    "SNOMEDCT": r"^[0-9]{6,18}$",
}
LOINC_PATTERN = r"^[0-9]{1,7}-[0-9]$"

# A column rule: (rule name, builder of the boolean "value passes" expression from the column's
# own expression). A null result (a null on either side) passes: see _check_fn.
ColumnRule = tuple[str, Callable[[pl.Expr], pl.Expr]]


def _diagnosis_code_ok(code: pl.Expr) -> pl.Expr:
    system = pl.col("code_system")
    # An unknown or missing system is the not_allowed / missing_required fault of code_system.
    ok = pl.lit(True)
    for name, pattern in DIAGNOSIS_CODE_PATTERNS.items():
        ok = pl.when(system == name).then(code.str.contains(pattern)).otherwise(ok)
    return ok


def column_rules(spec: TableSpec, column: ColumnSpec, extract_year: int) -> list[ColumnRule]:
    """The named value rules of one column (besides nullability)."""
    rules: list[ColumnRule] = []
    if column.allowed is not None:
        allowed = list(column.allowed)
        rules.append((NOT_ALLOWED, lambda c: c.is_in(allowed)))
    if spec.name == "patients" and column.name == "birth_year":
        rules.append((OUT_OF_RANGE, lambda c: c.is_between(MIN_BIRTH_YEAR, extract_year)))
    if spec.name == "patients" and column.name == "death_date":
        rules.append((DEATH_BEFORE_BIRTH, lambda c: c.dt.year() >= pl.col("birth_year")))
    if column.name in POSITIVE_COLUMNS.get(spec.name, ()):
        rules.append((NOT_POSITIVE, lambda c: c > 0))
    if spec.name == "diagnoses" and column.name == "code":
        rules.append((MALFORMED_CODE, _diagnosis_code_ok))
    if spec.name == "labs" and column.name == "loinc":
        rules.append((MALFORMED_LOINC, lambda c: c.str.contains(LOINC_PATTERN)))
    return rules


def compared_columns(table: str) -> list[tuple[str, str, str]]:
    """(column, rule, other column) of the cross-column rules of a table.

    Quarantine shows both sides of such a fault ("1959-12-31 before birth_year 1960") instead
    of the judged value alone. (The time-order rules are warnings: quality.py.)
    """
    return [("death_date", DEATH_BEFORE_BIRTH, "birth_year")] if table == "patients" else []


def _check_fn(build: Callable[[pl.Expr], pl.Expr]):
    """A Pandera column check: passes where the rule holds or cannot be judged (a null).

    Cross-column rules (death vs birth, code vs code_system) are column checks of the column they
    judge, so the failure case is that column's value; a null on either side passes.
    """

    def check(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(build(pl.col(data.key)).fill_null(True))

    return check


_ANNOTATIONS = {
    "str": pl.String,
    "int": pl.Int64,
    "float": pl.Float64,
    "date": pl.Date,
    "timestamp": Annotated[pl.Datetime, "us", "UTC"],
}


def _class_name(table: str) -> str:
    return "".join(part.capitalize() for part in table.split("_")) + "Model"


@functools.cache
def table_model(table: str, extract_year: int) -> type[pa.DataFrameModel]:
    """The DataFrameModel of one canonical table (contract columns + source_line).

    ``extract_year`` bounds birth_year. Strict and ordered: the frame must be exactly the
    canonical frame (``canonical_schema``), nothing is coerced.
    """
    spec = TABLES[table]
    annotations: dict[str, object] = {}
    namespace: dict[str, object] = {"__module__": __name__, "__annotations__": annotations}
    for column in spec.columns:
        annotations[column.name] = _ANNOTATIONS[column.type]
        namespace[column.name] = pa.Field(nullable=not column.required)
        for rule, build in column_rules(spec, column, extract_year):
            namespace[f"_check_{column.name}_{rule}"] = pa.check(column.name, name=rule)(
                _check_fn(build)
            )
    annotations[SOURCE_LINE] = pl.Int64
    namespace[SOURCE_LINE] = pa.Field(nullable=False, unique=True)

    class Config:
        strict = True
        ordered = True
        coerce = False
        name = table

    namespace["Config"] = Config
    model = type(_class_name(table), (pa.DataFrameModel,), namespace)
    model.__doc__ = f"Canonical ``{table}`` rows that pass every per-value rule of the contract."
    return model
