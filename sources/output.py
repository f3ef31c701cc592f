"""``AdaptedExtract``: where a source adapter writes the canonical tables.

An adapter maps its source with SQL on ``AdaptedExtract.con`` (an in-memory DuckDB that spills
to disk past ``MEMORY_LIMIT``, so a large export is streamed, never held in Python) and hands
each contract table to ``write_table`` as a query. The result is an ordinary contract folder
(``<table>.parquet`` for the seven tables, ``manifest.json``) that the reader, the rules and
the audit take as they take any extract, plus ``_provenance.parquet``: for each written row,
the source file and line it came from, so a quarantined row is reported where the user can
find it (``provenance.py``).

Every query returns the contract columns it can fill (every required one; optional ones it
leaves out are written empty) and ``origin_file`` / ``origin_line``. Timestamps are contract
text (``YYYY-MM-DD HH:MM[:SS]`` with an optional UTC offset; naive = the manifest's time zone)
or DuckDB timestamps; values the contract refuses are NOT filtered here: the reader and the
rules quarantine them like any other extract's, so nothing is lost silently.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import duckdb

from chartaudit.schemas.contract import TABLE_ORDER, TABLES
from chartaudit.schemas.folder import MANIFEST_FILE, PROVENANCE_FILE
from chartaudit.schemas.manifest import MANIFEST_KEYS, read_manifest
from chartaudit.sources.code_maps import LOCAL_CODE_MAP, load_code_maps

__all__ = [
    "MEMORY_LIMIT",
    "ORIGIN_FILE",
    "ORIGIN_LINE",
    "PROVENANCE_FILE",
    "AdaptReport",
    "AdaptedExtract",
]

ORIGIN_FILE, ORIGIN_LINE = "origin_file", "origin_line"
# DuckDB's working memory while adapting; past it, sorts and joins spill to the work folder.
MEMORY_LIMIT = "1GB"


@dataclass
class AdaptReport:
    """What an adapter did, for the run log: the format, why, rows per table, notes."""

    format: str
    reason: str
    rows: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        counts = ", ".join(f"{t} {n}" for t, n in self.rows.items())
        return [f"extract format: {self.format} ({self.reason})", f"adapted rows: {counts}"] + [
            f"adapter: {note}" for note in self.notes
        ]


@dataclass
class Coverage:
    """What the source says it covers (each None: unknown); manifest.json beside it wins."""

    start: date | None = None
    end: date | str | None = None  # a date (its whole local day) or an ISO instant
    timezone: str | None = None
    created: str | None = None
    how: str = ""  # for the run log: where the dates came from


class AdaptedExtract:
    """A contract folder being written from a source. Use as a context manager."""

    def __init__(
        self, folder: Path, source: Path, fmt: str, reason: str, code_map: Path | None = None
    ) -> None:
        self.folder, self.source = Path(folder), Path(source)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.report = AdaptReport(fmt, reason)
        self.coverage = Coverage()
        self.con = duckdb.connect(
            config={
                "memory_limit": MEMORY_LIMIT,
                "temp_directory": str(self.folder.parent / "adapt-spill"),
                "python_enable_replacements": False,
            }
        )
        self.con.execute(
            "CREATE TEMP TABLE provenance (table_name VARCHAR, source_line BIGINT, "
            f"{ORIGIN_FILE} VARCHAR, {ORIGIN_LINE} BIGINT)"
        )
        load_code_maps(self.con, code_map)

    def __enter__(self) -> AdaptedExtract:
        return self

    def __exit__(self, *exc) -> None:
        self.con.close()

    def note(self, text: str) -> None:
        """A line for the run log (say what was skipped or could not be mapped, with counts)."""
        self.report.notes.append(text)

    def map_codes(self, query: str) -> str:
        """``query`` (with columns code_system, code) with the site's own codes replaced by
        the concepts the site's code map gives them (``code_maps.py``); other columns as they
        are. Unmapped codes keep their system and code."""
        return (
            "SELECT q.* REPLACE (coalesce(m.code_system, q.code_system) AS code_system, "
            "coalesce(m.code, q.code) AS code) "
            f"FROM ({query}) q LEFT JOIN {LOCAL_CODE_MAP} m "
            "ON m.source_system = q.code_system AND m.source_code = q.code"
        )

    def write_table(self, table: str, query: str) -> int:
        """Write one contract table from ``query``; returns its row count.

        Rows are numbered in (origin_file, origin_line, columns) order, so the same source
        gives byte-identical files and the same extract digest on every run."""
        spec = TABLES[table]
        columns = [d[0] for d in self.con.sql(f"SELECT * FROM ({query}) LIMIT 0").description]
        unknown = set(columns) - set(spec.column_names) - {ORIGIN_FILE, ORIGIN_LINE}
        missing = [
            c for c in (*spec.required_columns, ORIGIN_FILE, ORIGIN_LINE) if c not in columns
        ]
        if unknown or missing:
            raise ValueError(
                f"adapter query for {table}: unknown {sorted(unknown)}, missing {missing}"
            )
        order = ", ".join(
            [ORIGIN_FILE, ORIGIN_LINE, *(c for c in spec.column_names if c in columns)]
        )
        staged = f"adapted_{table}"
        self.con.execute(
            f"CREATE OR REPLACE TEMP TABLE {staged} AS SELECT row_number() OVER "
            f"(ORDER BY {order}) AS source_line, * FROM ({query})"
        )
        select = ", ".join(
            f'"{c.name}"' if c.name in columns else f'NULL::VARCHAR AS "{c.name}"'
            for c in spec.columns
        )
        target = self.folder / f"{table}.parquet"
        self.con.execute(
            f"COPY (SELECT {select} FROM {staged} ORDER BY source_line) TO '{target}' "
            "(FORMAT parquet)"
        )
        self.con.execute(
            f"INSERT INTO provenance SELECT '{table}', source_line, {ORIGIN_FILE}, {ORIGIN_LINE}"
            f" FROM {staged}"
        )
        rows = self.con.sql(f"SELECT count(*) FROM {staged}").fetchall()[0][0]
        self.con.execute(f"DROP TABLE {staged}")
        self.report.rows[table] = rows
        return rows

    def finish(self) -> AdaptReport:
        """Write the provenance and manifest.json; every table must have been written."""
        missing = [t for t in TABLE_ORDER if t not in self.report.rows]
        if missing:
            raise ValueError(f"adapter wrote no {', '.join(missing)} table")
        self.con.execute(
            f"COPY (SELECT * FROM provenance ORDER BY table_name, source_line) TO "
            f"'{self.folder / PROVENANCE_FILE}' (FORMAT parquet)"
        )
        manifest = {
            "extract_id": f"{self.source.resolve().name}-{self.report.format}-{self._digest()[:8]}",
            **self._derived_manifest(),
            **self._source_manifest(),
        }
        (self.folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))
        if self.coverage.how:
            self.note(self.coverage.how)
        return self.report

    def _digest(self) -> str:
        digest = hashlib.sha256()
        for table in TABLE_ORDER:
            digest.update((self.folder / f"{table}.parquet").read_bytes())
        return digest.hexdigest()

    def _derived_manifest(self) -> dict[str, str]:
        c = self.coverage
        derived = {
            "source": f"{self.report.format}: {self.source.resolve().name}",
            "timezone": c.timezone,
            "coverage_start": None if c.start is None else c.start.isoformat(),
            "coverage_end": c.end.isoformat() if isinstance(c.end, date) else c.end,
            "created": c.created,
        }
        return {k: v for k, v in derived.items() if v is not None}

    def _source_manifest(self) -> dict[str, str]:
        """The contract keys of a manifest.json beside the source files: they override what
        the adapter derived (a FHIR export's own keys, e.g. transactionTime, are left out)."""
        path = self.source / MANIFEST_FILE
        if not path.is_file():
            return {}
        read_manifest(self.source, digest="0" * 8)  # a malformed value is rejected here
        data = json.loads(path.read_text(encoding="utf-8"))
        given = {k: v for k, v in data.items() if k in MANIFEST_KEYS}
        if given:
            self.note(f"{MANIFEST_FILE} beside the source gives {', '.join(sorted(given))}")
        return given
