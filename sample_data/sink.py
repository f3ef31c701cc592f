"""Where generated rows go: one buffered writer per contract table, plus the expected quarantine
and the expected data-quality warnings.
Rows are flushed in chunks, so memory stays flat however many patients. The generator works in
batches of patients: :meth:`ExtractSink.end_batch` flushes every table and hands back the batch's
rows exactly as the files hold them (CSV: the written bytes, read back; Parquet: the written
frames as text, as the judge reads a Parquet file), so the answer key is judged batch by batch
(see ``answer_key``) without reading the whole extract again."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import IO, Any

import polars as pl
import pyarrow.parquet as pq

from chartaudit.sample_data import GeneratorArgumentError
from chartaudit.schemas.contract import TABLE_ORDER, TABLES, TableSpec

CHUNK_ROWS = 50_000
FORMATS = ("csv", "parquet")

# Timestamps and dates stay text in both formats: the contract's text form (naive local time,
# optional offset) is what the loader parses, and dirty rows must survive as written.
_POLARS_TYPES = {
    "str": pl.String,
    "int": pl.Int64,
    "float": pl.Float64,
    "date": pl.String,
    "timestamp": pl.String,
}

QUARANTINE_COLUMNS = ("table_name", "source_line", "column_name", "reason")


class TableSink:
    """Rows of one contract table, in the contract's column order, written in chunks."""

    def __init__(self, spec: TableSpec, out_dir: Path, fmt: str) -> None:
        self.spec = spec
        self.columns = spec.column_names
        self._allowed_keys = frozenset(self.columns)
        self.schema = {c.name: _POLARS_TYPES[c.type] for c in spec.columns}
        self.path = out_dir / f"{spec.name}.{fmt}"
        self.fmt = fmt
        self.count = 0
        self._rows: list[tuple[Any, ...]] = []
        self._csv: IO[bytes] | None = None
        self._parquet: pq.ParquetWriter | None = None
        self._batch: list[pl.DataFrame | bytes] = []  # what this batch wrote, for end_batch
        self._batch_start = 0  # rows written before this batch

    def add(self, **values: Any) -> int:
        """Append one row; returns its source line (CSV physical line, header = 1)."""
        if not self._allowed_keys.issuperset(values):
            unknown = sorted(set(values) - self._allowed_keys)
            raise KeyError(f"{self.spec.name} has no column(s) {unknown}")
        self._rows.append(tuple(values.get(column) for column in self.columns))
        self.count += 1
        if len(self._rows) >= CHUNK_ROWS:
            self.flush()
        return self.count + 1

    def flush(self) -> None:
        frame = pl.DataFrame(self._rows, schema=self.schema, orient="row")
        self._rows = []
        if self.fmt == "csv":
            first = self._csv is None
            if self._csv is None:
                self._csv = self.path.open("wb")
            written = frame.write_csv(include_header=first).encode()
            self._csv.write(written)
            self._batch.append(written.split(b"\n", 1)[1] if first else written)
        else:
            table = frame.to_arrow(compat_level=pl.CompatLevel.oldest())
            if self._parquet is None:
                self._parquet = pq.ParquetWriter(self.path, table.schema)
            self._parquet.write_table(table)
            self._batch.append(frame)

    def end_batch(self) -> tuple[pl.DataFrame, int]:
        """Flush, and return this batch's rows as text columns (as the judge reads the file),
        with the loader's line number of the first (CSV: header = line 1; Parquet: from 1)."""
        if self._rows:
            self.flush()
        if self.fmt == "csv":
            header = ",".join(self.columns).encode() + b"\n"
            data = io.BytesIO(header + b"".join(self._batch))
            frame = pl.read_csv(data, infer_schema=False)
            first_line = self._batch_start + 2
        else:
            frame = pl.concat(self._batch) if self._batch else pl.DataFrame(schema=self.schema)
            frame = frame.select(pl.all().cast(pl.String))
            first_line = self._batch_start + 1
        self._batch, self._batch_start = [], self.count
        return frame, first_line

    def close(self) -> None:
        if self._rows or (self._csv is None and self._parquet is None):
            self.flush()
        if self._csv is not None:
            self._csv.close()
        if self._parquet is not None:
            self._parquet.close()


class ExtractSink:
    """All outputs of one generation run."""

    def __init__(self, out_dir: Path, fmt: str) -> None:
        if fmt not in FORMATS:
            raise GeneratorArgumentError(f"fmt must be one of {FORMATS}, not {fmt!r}")
        out_dir.mkdir(parents=True, exist_ok=True)
        for name in TABLE_ORDER:  # a stale table of the other format would confuse the loader
            for other in FORMATS:
                (out_dir / f"{name}.{other}").unlink(missing_ok=True)
        self.out_dir = out_dir
        self.fmt = fmt
        self.tables = {name: TableSink(TABLES[name], out_dir, fmt) for name in TABLE_ORDER}
        self.quarantine: list[tuple[str, int, str, str]] = []
        self.warnings: list[tuple[str, int, str, str]] = []

    def add(self, table: str, **values: Any) -> int:
        return self.tables[table].add(**values)

    def end_batch(self) -> dict[str, tuple[pl.DataFrame, int]]:
        """Every table's rows of this batch (see :meth:`TableSink.end_batch`)."""
        return {name: table.end_batch() for name, table in self.tables.items()}

    def quarantined_lines(self) -> dict[str, set[int]]:
        """Table -> the loader's line numbers of every row expected in quarantine so far."""
        lines: dict[str, set[int]] = {name: set() for name in self.tables}
        for table, line, _, _ in self._in_line_order(self.quarantine):
            lines[table].add(line)
        return lines

    def expect_quarantine(self, table: str, line: int, column: str, reason: str) -> None:
        self.quarantine.append((table, line, column, reason))

    def expect_warning(self, table: str, line: int, column: str, reason: str) -> None:
        """A row that loads with a data-quality warning (the loader's data_quality table)."""
        self.warnings.append((table, line, column, reason))

    def close(self) -> tuple[Path, Path]:
        """Write out every table, ``expected_quarantine.csv`` and ``expected_data_quality.csv``;
        returns the paths of the latter two."""
        for sink in self.tables.values():
            sink.close()
        paths = []
        for name, expected in (("quarantine", self.quarantine), ("data_quality", self.warnings)):
            path = self.out_dir / f"expected_{name}.csv"
            _write_csv(path, QUARANTINE_COLUMNS, self._in_line_order(expected))
            paths.append(path)
        return paths[0], paths[1]

    def _in_line_order(self, rows: list[tuple[str, int, str, str]]) -> list[tuple]:
        order = {name: i for i, name in enumerate(TABLE_ORDER)}
        # Lines are counted as in the CSV (header = line 1); the loader numbers Parquet rows
        # from 1, so a Parquet extract's expected lines are one lower.
        shift = 1 if self.fmt == "parquet" else 0
        return sorted(
            ((t, line - shift, c, r) for t, line, c, r in rows),
            key=lambda q: (order[q[0]], q[1], q[2]),
        )


def _write_csv(path: Path, header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
