"""A scan of an extract folder for direct identifiers, before anything is loaded anywhere.

``chartaudit validate --phi-scan EXTRACT_DIR`` runs it: every CSV and Parquet file of the folder
(the contract's tables and any other), and the string values of ``manifest.json``, are read
into memory only, and reported per file and column:

* a column whose name marks a direct identifier (``deidentification.identifier_kind``);
* values that look like an SSN, a phone number, an e-mail address or a name with a cue
  (``deidentification.IDENTIFIER_VALUE_PATTERNS``): how many, on which lines, and the first one
  masked to its shape (``999-99-9999``), never the value itself;
* a header cell that itself looks like such a value (a file exported without its header row):
  its column is then shown by position, not by name.

Lines are those of quarantine: the CSV line where the record starts (the header is line 1), the
row number counted from 1 in Parquet.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from chartaudit.schemas.contract import SOURCE_LINE
from chartaudit.schemas.deidentification import (
    IDENTIFIER_VALUE_PATTERNS,
    identifier_kind,
    identifier_value_kind,
    masked_shape,
)
from chartaudit.schemas.errors import ExtractRejected
from chartaudit.schemas.folder import MANIFEST_FILE
from chartaudit.schemas.reader import OVERFLOW_COLUMN, positional_names, read_csv_text

__all__ = ["PhiFinding", "PhiScan", "scan_extract"]

SCANNED_SUFFIXES = (".csv", ".parquet")
LINES_SHOWN = 10
VALUE_WORDS = {
    "ssn": "SSN-like",
    "phone": "phone-number-like",
    "email": "e-mail-like",
    "name": "name-like",
}
BEYOND_HEADER = "fields beyond the header"
HEADER_VALUE = "header value"


class IdentifiersFound(RuntimeError):
    """The PHI scan found identifier-like columns or values (a known condition: exit 1)."""


@dataclass(frozen=True)
class PhiFinding:
    """One identifier-like column name, or the identifier-like values of one kind in a column."""

    file: str
    column: str  # as shown: the name, or "column 3" when the header cell looks like a value
    kind: str  # a column-name kind ("person name") or a value kind ("ssn", "phone", ...)
    rows: int = 0  # values found (0 for a column name)
    lines: tuple[int, ...] = ()  # the first LINES_SHOWN of their lines
    example: str | None = None  # the first one's identifier-like part, masked to its shape

    def describe(self) -> str:
        if self.kind == HEADER_VALUE:
            return (
                f"{self.file}: {self.column}: the header cell looks like an identifier value"
                " (is the header row missing?)"
            )
        if not self.rows:
            return f"{self.file}: {self.column} is named like a direct identifier ({self.kind})"
        shown = ", ".join(str(n) for n in self.lines)
        more = ", ..." if self.rows > len(self.lines) else ""
        plural = "value" if self.rows == 1 else "values"
        where = "line" if self.rows == 1 else "lines"
        return (
            f"{self.file}: {self.column}: {self.rows} {VALUE_WORDS[self.kind]} {plural}"
            f" ({where} {shown}{more}), e.g. {self.example}"
        )


@dataclass(frozen=True)
class PhiScan:
    folder: Path
    files: tuple[str, ...]
    rows: int  # data rows read, over every file
    findings: tuple[PhiFinding, ...]

    @property
    def clean(self) -> bool:
        return not self.findings


def scan_extract(extract_dir: Path) -> PhiScan:
    """Scan every CSV and Parquet file of the folder and its manifest; nothing is written."""
    folder = Path(extract_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder; give the extract folder to scan")
    paths = sorted(
        (p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in SCANNED_SUFFIXES),
        key=lambda p: p.name,
    )
    findings: list[PhiFinding] = []
    rows = 0
    for path in paths:
        try:
            columns, frame = _read(path)
        except Exception as exc:  # a file that cannot be read cannot be called clean
            raise ExtractRejected(
                f"PHI scan: {path.name} cannot be read ({type(exc).__name__}), so it was not"
                " scanned; re-export it as UTF-8 CSV or Parquet"
            ) from None
        rows += frame.height
        findings += _column_name_findings(path.name, columns)
        findings += _value_findings(path.name, columns, frame)
    if (folder / MANIFEST_FILE).is_file():
        findings += _manifest_findings(folder / MANIFEST_FILE)
    names = tuple(p.name for p in paths)
    return PhiScan(folder, names, rows, tuple(findings))


# --- reading ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Column:
    name: str  # as in the header or the Parquet schema
    shown: str  # as findings print it
    field: str | None  # the frame column holding its text, None when it holds no text
    header_is_value: bool = False


def _read(path: Path) -> tuple[list[_Column], pl.DataFrame]:
    """The file's columns, and a frame of their text (plus SOURCE_LINE)."""
    if path.suffix.lower() == ".csv":
        header = _csv_header(path)
        frame = read_csv_text(path, len(header), encoding="utf8-lossy")
        columns = _columns(header, positional_names(len(header)))
        return [*columns, _Column("", BEYOND_HEADER, OVERFLOW_COLUMN)], frame
    schema = pl.read_parquet_schema(path)
    text = [name for name, dtype in schema.items() if dtype in (pl.String, pl.Categorical)]
    frame = pl.read_parquet(path, columns=text).with_columns(
        *(pl.col(c).cast(pl.String) for c in text),
        (pl.int_range(pl.len(), dtype=pl.Int64) + 1).alias(SOURCE_LINE),
    )
    fields = [name if name in text else None for name in schema]
    return _columns(list(schema), fields), frame


def _csv_header(path: Path) -> list[str]:
    with path.open(encoding="utf-8-sig", errors="replace", newline="") as handle:
        return [name.strip() for name in next(csv.reader(handle), [])]


def _columns(names: list[str], fields: list[str | None]) -> list[_Column]:
    """Each column as findings name it: ``column 'name'``, or by position when the header cell
    itself looks like an identifier value (a value is never printed)."""
    kinds = (
        pl.Series(names, dtype=pl.String)
        .to_frame("name")
        .select(identifier_value_kind(pl.col("name")))
    )
    columns = []
    for i, (name, field, kind) in enumerate(zip(names, fields, kinds.to_series(), strict=True)):
        if kind is None:
            columns.append(_Column(name, f"column {name!r}", field))
        else:
            columns.append(_Column(name, f"column {i + 1}", field, header_is_value=True))
    return columns


# --- findings -----------------------------------------------------------------------------------


def _column_name_findings(file: str, columns: list[_Column]) -> list[PhiFinding]:
    findings = []
    for column in columns:
        if column.header_is_value:
            findings.append(PhiFinding(file, column.shown, HEADER_VALUE))
        elif column.name and (kind := identifier_kind(column.name)) is not None:
            findings.append(PhiFinding(file, column.shown, kind))
    return findings


def _matched_part(value: pl.Expr, kind: pl.Expr) -> pl.Expr:
    """The part of the value that matched its kind's pattern."""
    part = pl.lit(None, dtype=pl.String)
    for name, pattern in IDENTIFIER_VALUE_PATTERNS:
        part = pl.when(kind == name).then(value.str.extract(f"({pattern})", 1)).otherwise(part)
    return part


def _value_findings(file: str, columns: list[_Column], frame: pl.DataFrame) -> list[PhiFinding]:
    findings = []
    for column in columns:
        if column.field is None:
            continue
        hits = (
            frame.select(pl.col(SOURCE_LINE), pl.col(column.field).alias("value"))
            .with_columns(identifier_value_kind(pl.col("value")).alias("kind"))
            .filter(pl.col("kind").is_not_null())
            .sort(SOURCE_LINE)
        )
        groups = hits.group_by("kind", maintain_order=True).agg(
            pl.len().alias("rows"),
            pl.col(SOURCE_LINE).head(LINES_SHOWN).alias("lines"),
            masked_shape(_matched_part(pl.col("value"), pl.col("kind"))).first().alias("example"),
        )
        for kind, count, lines, example in groups.iter_rows():
            findings.append(PhiFinding(file, column.shown, kind, count, tuple(lines), example))
    return findings


def _manifest_findings(path: Path) -> list[PhiFinding]:
    """String values of manifest.json (``source``, ``extract_id``, ...), by key."""
    try:
        data = json.loads(path.read_text(encoding="utf-8", errors="replace"))
    except json.JSONDecodeError:
        return []  # `chartaudit validate` names what is wrong with it
    texts = {k: v for k, v in data.items() if isinstance(v, str)} if isinstance(data, dict) else {}
    frame = pl.DataFrame(
        {SOURCE_LINE: [1], **{f"k{i}": [v] for i, v in enumerate(texts.values())}},
        schema={SOURCE_LINE: pl.Int64, **{f"k{i}": pl.String for i in range(len(texts))}},
    )
    columns = [_Column(k, f"key {k!r}", f"k{i}") for i, k in enumerate(texts)]
    return _value_findings(path.name, columns, frame)
