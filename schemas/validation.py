"""Row-level validation: split each typed table into loaded rows and quarantine.

Tables are validated in ``TABLE_ORDER`` (parents first). For each table the faults are

1. the faults found while reading and casting (``RawExtract.faults``); a CSV row with the wrong
   number of fields has that fault only;
2. the per-value rules of the Pandera model (``models.table_model``): required values, allowed
   sets, ranges, code patterns, time order. A ``missing_required`` fault on a cell whose text
   could not be cast is dropped: the cast fault already says what is wrong with it;
3. identifier-looking string values (SSN, phone, e-mail, a name with a cue), reported with a
   placeholder only;
4. duplicate primary keys: the first occurrence in the file is kept, every later row with the
   same key is quarantined (even when the first row is itself quarantined for another reason,
   so which of two conflicting rows loads never depends on the other rules);
5. foreign keys: a non-null value must be a key of the LOADED rows of the parent table, so a
   child of a quarantined parent is quarantined too; an encounter_id must name an encounter of
   the row's own patient (in every table; labs and medications may name an encounter that is
   not in the extract at all, e.g. an outside lab, but not a quarantined one);
6. times more than a day after the manifest's ``created`` (``quality.far_future_faults``).

A row with any fault is not loaded; quarantine holds one row per (input row, column, rule).
For every table ``loaded_rows + quarantined_rows == input_rows`` and ``quarantined_rows`` is the
number of distinct source lines of that table in quarantine.

Then the warning rules (``quality.warning_findings``) run over the LOADED rows: the rows stay
loaded and ``data_quality`` holds one row per (loaded row, column, rule) with level "warning";
``warned_rows`` is the number of distinct source lines of that table in ``data_quality``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
from pandera.errors import SchemaErrors

from chartaudit.schemas.casting import ANY_IDENTIFIER_PATTERN, normalised_columns
from chartaudit.schemas.contract import SOURCE_LINE, TABLE_ORDER, TABLES
from chartaudit.schemas.deidentification import identifier_placeholder, mask_quarantine_value
from chartaudit.schemas.manifest import Manifest
from chartaudit.schemas.models import (
    DATA_QUALITY_SCHEMA,
    DUPLICATE_KEY,
    ENCOUNTER_OF_OTHER_PATIENT,
    EXTRA_FIELDS,
    FOREIGN_KEY,
    LOAD_COUNTS_SCHEMA,
    LOOKS_LIKE_IDENTIFIER,
    MISSING_FIELDS,
    MISSING_REQUIRED,
    PANDERA_CHECK_RULES,
    QUARANTINE_SCHEMA,
    WARNING,
    canonical_schema,
    compared_columns,
    empty_data_quality,
    empty_quarantine,
    table_model,
)
from chartaudit.schemas.quality import far_future_faults, shown, warning_findings
from chartaudit.schemas.reader import RawExtract, read_extract
from chartaudit.schemas.saved import load_stage, save_stage, stage_table_files

__all__ = [
    "DATA_QUALITY_SCHEMA",
    "QUARANTINE_SCHEMA",
    "ValidatedExtract",
    "load_extract",
    "validate_extract",
]


@dataclass
class ValidatedExtract:
    manifest: Manifest
    digest: str
    tables: dict[str, pl.DataFrame]  # canonical: only rows that passed every rule
    quarantine: pl.DataFrame  # QUARANTINE_SCHEMA; one row per (input row, broken rule)
    # table_name, source_file, input/loaded/quarantined/warned_rows (Int64)
    load_counts: pl.DataFrame
    warnings: list[str] = field(default_factory=list)  # about the files (the run log's)
    # DATA_QUALITY_SCHEMA; one row per (loaded row, warning rule)
    data_quality: pl.DataFrame = field(default_factory=empty_data_quality)

    def save(self, directory: Path) -> None:
        save_stage(
            directory,
            "validated_extract",
            self.manifest,
            self.digest,
            self.tables,
            {
                "quarantine": self.quarantine,
                "load_counts": self.load_counts,
                "data_quality": self.data_quality,
            },
            {"warnings": self.warnings},
        )

    @classmethod
    def load(cls, directory: Path, tables: bool = True) -> ValidatedExtract:
        """The saved extract; with ``tables`` False, only its quarantine, counts and warnings
        (``table_files`` names the tables' Parquet files, which DuckDB reads itself)."""
        saved = load_stage(directory, "validated_extract", tables)
        return cls(
            manifest=saved.manifest,
            digest=saved.digest,
            tables=saved.tables,
            quarantine=saved.frames["quarantine"],
            load_counts=saved.frames["load_counts"],
            warnings=list(saved.meta["warnings"]),
            data_quality=saved.frames["data_quality"],
        )

    @staticmethod
    def table_files(directory: Path) -> dict[str, Path]:
        """table -> the Parquet file of its loaded rows in a saved ValidatedExtract."""
        return stage_table_files(directory, "validated_extract")

    def quarantined_share(self) -> dict[str, float]:
        """table -> quarantined_rows / input_rows (0.0 for an empty table)."""
        return self._share("quarantined_rows")

    def warned_share(self) -> dict[str, float]:
        """table -> warned_rows / input_rows (0.0 for an empty table)."""
        return self._share("warned_rows")

    def _share(self, column: str) -> dict[str, float]:
        return {
            row["table_name"]: row[column] / row["input_rows"] if row["input_rows"] else 0.0
            for row in self.load_counts.iter_rows(named=True)
        }


# --- the rules ----------------------------------------------------------------------------------


def _fault_frame(frame: pl.DataFrame, column: str | None, rule: str, value: pl.Expr):
    """Quarantine-shaped rows (without table_name/source_file) for every row of ``frame``."""
    return frame.select(
        pl.col(SOURCE_LINE),
        pl.lit(column, dtype=pl.String).alias("column_name"),
        pl.lit(rule).alias("rule"),
        value.cast(pl.String).alias("value"),
    )


# A fault before its table and file are filled in.
_ROW_FAULT_SCHEMA = {
    k: v for k, v in QUARANTINE_SCHEMA.items() if k not in ("table_name", "source_file")
}


def _model_faults(table: str, frame: pl.DataFrame, extract_year: int) -> pl.DataFrame:
    """Failures of the table's Pandera model, as (source_line, column_name, rule, value)."""
    model = table_model(table, extract_year)
    try:
        model.validate(frame, lazy=True)  # an eager frame: a LazyFrame would only check the schema
    except SchemaErrors as errors:
        cases = errors.failure_cases
    else:
        return pl.DataFrame(schema=_ROW_FAULT_SCHEMA)
    schema_level = cases.filter(pl.col("index").is_null())
    if schema_level.height:  # wrong columns or dtypes: the frame is not a reader output
        problem = schema_level.row(0, named=True)
        raise ValueError(
            f"{table} is not a canonical frame: column {problem['column']} failed "
            f"{problem['check']} ({problem['failure_case']}); build it with read_extract"
        )
    lines = frame.select(pl.col(SOURCE_LINE)).with_row_index("index")
    faults = (
        cases.with_columns(pl.col("index").cast(pl.UInt32))
        .join(lines, on="index", how="left")
        .select(
            pl.col(SOURCE_LINE),
            pl.col("column").alias("column_name"),
            pl.col("check").replace(PANDERA_CHECK_RULES).alias("rule"),
            pl.col("failure_case").alias("value"),
        )
        .cast(_ROW_FAULT_SCHEMA)
    )
    return _describe_comparisons(table, frame, faults)


def _describe_comparisons(table: str, frame: pl.DataFrame, faults: pl.DataFrame):
    """Value of a cross-column fault: both sides, e.g. "1959-12-31 before birth_year 1960"."""
    for column, rule, other in compared_columns(table):
        hit = (pl.col("column_name") == column) & (pl.col("rule") == rule)
        both = frame.select(
            SOURCE_LINE,
            pl.concat_str(
                shown(frame, column), pl.lit(f" before {other} "), shown(frame, other)
            ).alias("__described"),
        )
        faults = (
            faults.join(both, on=SOURCE_LINE, how="left", maintain_order="left")
            .with_columns(
                pl.when(hit).then(pl.col("__described")).otherwise(pl.col("value")).alias("value")
            )
            .drop("__described")
        )
    return faults


def _identifier_faults(table: str, frame: pl.DataFrame) -> pl.DataFrame:
    """String values that look like an SSN, phone number, e-mail or cued name; masked."""
    parts = []
    for column in TABLES[table].columns:
        if column.type != "str" or column.name in normalised_columns(table):
            continue  # normalised columns were checked as read (casting.py)
        # One regex pass finds the few rows that look like any identifier; which one, only there.
        hits = frame.filter(pl.col(column.name).str.contains(ANY_IDENTIFIER_PATTERN))
        placeholder = identifier_placeholder(pl.col(column.name))
        parts.append(_fault_frame(hits, column.name, LOOKS_LIKE_IDENTIFIER, placeholder))
    return pl.concat(parts) if parts else pl.DataFrame(schema=_ROW_FAULT_SCHEMA)


def _duplicate_key_faults(table: str, frame: pl.DataFrame) -> pl.DataFrame:
    key = TABLES[table].primary_key
    if key is None:
        return pl.DataFrame(schema=_ROW_FAULT_SCHEMA)
    later = (
        frame.select(SOURCE_LINE, key)
        .sort(SOURCE_LINE)
        .filter(pl.col(key).is_not_null() & ~pl.col(key).is_first_distinct())
    )
    return _fault_frame(later, key, DUPLICATE_KEY, pl.col(key))


class _ParentKeys:
    """The key sets of the loaded parent tables that the foreign-key rules join against, each
    built once per extract (every child table of patients or encounters used to build its own)."""

    def __init__(self, loaded: dict[str, pl.DataFrame], raw: RawExtract):
        self.loaded = loaded
        self.raw = raw
        self._built: dict[tuple, pl.DataFrame] = {}

    def _cached(self, key: tuple, build) -> pl.DataFrame:
        if key not in self._built:
            self._built[key] = build()
        return self._built[key]

    def keys(self, parent: str, parent_column: str) -> pl.DataFrame:
        """The distinct non-null keys of a loaded parent table, one column named parent_column."""
        return self._cached(
            ("keys", parent, parent_column),
            lambda: self.loaded[parent].select(pl.col(parent_column).drop_nulls().unique()),
        )

    def owners(self) -> pl.DataFrame:
        """Each loaded encounter's patient (the first row of a duplicated id)."""
        return self._cached(
            ("owners",),
            lambda: (
                self.loaded["encounters"]
                .select("encounter_id", pl.col("patient_id").alias("__owner"))
                .unique("encounter_id")
            ),
        )

    def quarantined_encounters(self) -> pl.DataFrame:
        """Encounter ids in encounters.csv none of whose rows loaded."""
        return self._cached(
            ("quarantined_encounters",),
            lambda: (
                self.raw.tables["encounters"]
                .select("encounter_id")
                .drop_nulls()
                .unique()
                .join(self.owners(), on="encounter_id", how="anti")
            ),
        )


def _foreign_key_faults(table: str, frame: pl.DataFrame, parents: _ParentKeys) -> pl.DataFrame:
    parts = []
    checked = set()
    for column, parent, parent_column in TABLES[table].foreign_keys:
        keys = parents.keys(parent, parent_column).rename({parent_column: column})
        named = frame.select(SOURCE_LINE, column).filter(pl.col(column).is_not_null())
        orphans = named.join(keys, on=column, how="anti")
        parts.append(_fault_frame(orphans, column, FOREIGN_KEY, pl.col(column)))
        checked.add(column)
    if table != "encounters" and "encounter_id" in TABLES[table].column_names:
        parts += _encounter_faults(frame, parents, "encounter_id" in checked)
    return pl.concat(parts) if parts else pl.DataFrame(schema=_ROW_FAULT_SCHEMA)


def _encounter_faults(
    frame: pl.DataFrame, parents: _ParentKeys, must_exist: bool
) -> list[pl.DataFrame]:
    """An encounter_id must name an encounter of the row's own patient. Where the contract does
    not require the encounter to exist (labs, medications: it may be an outside encounter), an
    id that IS in encounters.csv but was quarantined is still an orphan."""
    named = frame.select(SOURCE_LINE, "encounter_id", "patient_id").filter(
        pl.col("encounter_id").is_not_null()
    )
    other = named.join(parents.owners(), on="encounter_id", how="inner").filter(
        pl.col("__owner") != pl.col("patient_id")
    )
    parts = [
        _fault_frame(
            other,
            "encounter_id",
            ENCOUNTER_OF_OTHER_PATIENT,
            pl.format("{} belongs to patient {}", pl.col("encounter_id"), pl.col("__owner")),
        )
    ]
    if not must_exist:
        dangling = named.join(parents.quarantined_encounters(), on="encounter_id", how="semi")
        parts.append(_fault_frame(dangling, "encounter_id", FOREIGN_KEY, pl.col("encounter_id")))
    return parts


def _table_faults(raw: RawExtract, table: str, parents: _ParentKeys) -> pl.DataFrame:
    frame = raw.tables[table]
    cast_faults = raw.faults.filter(pl.col("table_name") == table).drop("table_name", "source_file")
    # A required cell whose text could not be cast is null now; its cast fault says why.
    model_faults = _model_faults(table, frame, raw.manifest.extract_year).join(
        cast_faults.select(SOURCE_LINE, "column_name", pl.lit(MISSING_REQUIRED).alias("rule")),
        on=[SOURCE_LINE, "column_name", "rule"],
        how="anti",
        nulls_equal=True,
    )
    faults = pl.concat(
        [
            cast_faults,
            model_faults,
            _identifier_faults(table, frame),
            _duplicate_key_faults(table, frame),
            _foreign_key_faults(table, frame, parents),
            far_future_faults(table, frame, raw.manifest),
        ]
    )
    # A CSV row with the wrong number of fields has its values in the wrong columns (or none):
    # that is its one fault, not what its misplaced values would break.
    shape = [EXTRA_FIELDS, MISSING_FIELDS]
    misshapen = faults.filter(pl.col("rule").is_in(shape))[SOURCE_LINE].implode()
    faults = faults.filter(~pl.col(SOURCE_LINE).is_in(misshapen) | pl.col("rule").is_in(shape))
    return _located(faults, table, raw.source_files[table], QUARANTINE_SCHEMA)


def _located(findings: pl.DataFrame, table: str, source_file: str, schema: dict) -> pl.DataFrame:
    """Row findings with their table and file, in line, column (contract order), rule order."""
    column_order = {name: i for i, name in enumerate(TABLES[table].column_names)}
    return (
        findings.unique(maintain_order=True)
        .with_columns(
            pl.lit(table).alias("table_name"),
            pl.lit(source_file).alias("source_file"),
            pl.lit(WARNING).alias("level"),
            pl.col("column_name")
            .replace_strict(column_order, default=None, return_dtype=pl.Int64)
            .alias("__column_order"),
        )
        .sort(SOURCE_LINE, "__column_order", "rule", nulls_last=True)
        .select(list(schema))
        .cast(schema)
    )


def validate_extract(raw: RawExtract) -> ValidatedExtract:
    """Apply every row-level rule; rows with a fault go to quarantine, the rest load, and the
    loaded rows' warnings go to data_quality."""
    loaded: dict[str, pl.DataFrame] = {}
    quarantine_parts, warning_parts = [], []
    counts = []
    parents = _ParentKeys(loaded, raw)
    for table in TABLE_ORDER:
        frame = raw.tables[table]
        faults = _table_faults(raw, table, parents)
        bad_lines = faults.select(pl.col(SOURCE_LINE).unique())
        loaded[table] = frame.join(bad_lines, on=SOURCE_LINE, how="anti", maintain_order="left")
        found = warning_findings(table, loaded[table], raw.manifest)
        warnings = _located(found, table, raw.source_files[table], DATA_QUALITY_SCHEMA)
        quarantine_parts.append(faults)
        warning_parts.append(warnings)
        counts.append(
            {
                "table_name": table,
                "source_file": raw.source_files[table],
                "input_rows": frame.height,
                "loaded_rows": loaded[table].height,
                "quarantined_rows": bad_lines.height,
                "warned_rows": warnings[SOURCE_LINE].n_unique(),
            }
        )
    quarantine = pl.concat(quarantine_parts) if quarantine_parts else empty_quarantine()
    data_quality = pl.concat(warning_parts) if warning_parts else empty_data_quality()
    # Both are stored and shown: never echo anything that looks like an identifier.
    quarantine = quarantine.with_columns(mask_quarantine_value(pl.col("value")).alias("value"))
    data_quality = data_quality.with_columns(mask_quarantine_value(pl.col("value")).alias("value"))
    for table, frame in loaded.items():
        assert frame.schema == canonical_schema(table), table
    return ValidatedExtract(
        manifest=raw.manifest,
        digest=raw.digest,
        tables=loaded,
        quarantine=quarantine,
        load_counts=pl.DataFrame(counts, schema=LOAD_COUNTS_SCHEMA),
        warnings=list(raw.warnings),
        data_quality=data_quality,
    )


def load_extract(extract_dir: Path) -> ValidatedExtract:
    """``read_extract`` + ``validate_extract``, for tests and ``chartaudit validate``."""
    return validate_extract(read_extract(extract_dir))
