"""The bad-input matrix: each kind of bad input gets exactly what the extract contract promises
("Bad input: what each kind gets"), and never a traceback.

- LOADS: every row loads, nothing is quarantined or flagged (the values are checked);
- WARNS: the row loads, and data_quality holds exactly the listed findings;
- QUARANTINES: exactly the listed rows go to quarantine, with column, rule and value;
- REJECTS: the extract is rejected with one line naming the file and the fix, and the real
  ``chartaudit validate`` prints that line as ``error: …`` and exits 1.

Each case starts from the builders' clean extract (America/Chicago, created 2026-11-02 08:00Z)
and breaks one thing.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from chartaudit.schemas.errors import ExtractRejected
from chartaudit.schemas.validation import ValidatedExtract, load_extract
from tests.flows.test_cli import chartaudit

from .builders import MANIFEST, assert_counts_add_up, clean_rows, csv_text, write_extract

Rows = dict[str, list[dict[str, str]]]
LAB_HEADER = list(clean_rows()["labs"][0])


@dataclass(frozen=True)
class Loads:
    check: Callable[[ValidatedExtract], None] = lambda validated: None
    warnings: tuple[str, ...] = ()  # about the files (extra files, blank lines)


@dataclass(frozen=True)
class Warns:
    rows: tuple[tuple, ...]  # (table, line, column, rule, value)


@dataclass(frozen=True)
class Quarantines:
    rows: tuple[tuple, ...]  # (table, line, column, rule, value)


@dataclass(frozen=True)
class Rejects:
    message: str  # "{folder}" stands for the extract folder
    library_reason: bool = False  # "(...)" holds the reading library's own words

    def matches(self, message: str, folder: Path) -> bool:
        expected = re.escape(self.message.format(folder=folder))
        if self.library_reason:
            expected = expected.replace(re.escape("(...)"), r"\([^\n]+\)")
        return re.fullmatch(expected, message) is not None


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[Path], Path]  # writes the broken extract into the folder given
    expect: Loads | Warns | Quarantines | Rejects


# --- builders ------------------------------------------------------------------------------------


def changed(table: str, index: int, **changes: str) -> Callable[[Path], Path]:
    """The clean extract with one row's values changed."""

    def build(folder: Path) -> Path:
        rows = clean_rows()
        rows[table][index].update(changes)
        return write_extract(folder, rows)

    return build


def rows_of(edit: Callable[[Rows], None]) -> Callable[[Path], Path]:
    def build(folder: Path) -> Path:
        rows = clean_rows()
        edit(rows)
        return write_extract(folder, rows)

    return build


def file_written(name: str, content: bytes | str) -> Callable[[Path], Path]:
    """The clean extract with one file's bytes replaced (or an extra file added)."""

    def build(folder: Path) -> Path:
        write_extract(folder)
        data = content.encode("utf-8") if isinstance(content, str) else content
        (folder / name).write_bytes(data)
        return folder

    return build


def manifest_of(**fields) -> Callable[[Path], Path]:
    def build(folder: Path) -> Path:
        manifest = {k: v for k, v in {**MANIFEST, **fields}.items() if v is not None}
        return write_extract(folder, manifest=manifest)

    return build


def no_manifest(folder: Path) -> Path:
    return write_extract(folder, manifest=None)


def labs_csv(*lines: str) -> str:
    return ",".join(LAB_HEADER) + "\n" + "".join(f"{line}\n" for line in lines)


def parquet_table(table: str, frame: pl.DataFrame) -> Callable[[Path], Path]:
    def build(folder: Path) -> Path:
        write_extract(folder)
        (folder / f"{table}.csv").unlink()
        frame.write_parquet(folder / f"{table}.parquet")
        return folder

    return build


def not_parquet(folder: Path) -> Path:
    write_extract(folder)
    (folder / "labs.csv").unlink()
    (folder / "labs.parquet").write_bytes(b"PAR1 this is not parquet")
    return folder


def both_csv_and_parquet(folder: Path) -> Path:
    write_extract(folder)
    write_extract(folder, {"orders": clean_rows()["orders"]}, parquet=("orders",), manifest=None)
    return folder


def with_column(table: str, column: str, value: str) -> Callable[[Path], Path]:
    def build(folder: Path) -> Path:
        rows = clean_rows()
        for row in rows[table]:
            row[column] = value
        return write_extract(folder, rows)

    return build


def without_column(table: str, column: str) -> Callable[[Path], Path]:
    def build(folder: Path) -> Path:
        header = [c for c in clean_rows()[table][0] if c != column]
        return write_extract(folder, columns={table: header})

    return build


def latin1_encounters(folder: Path) -> Path:
    rows = clean_rows()
    rows["encounters"][0]["department"] = "Médecine"
    write_extract(folder, rows)
    (folder / "encounters.csv").write_bytes(csv_text(rows["encounters"]).encode("latin-1"))
    return folder


# --- checks of loaded values ---------------------------------------------------------------------


def _utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def bom_read(validated: ValidatedExtract) -> None:
    assert validated.tables["patients"]["patient_id"].to_list() == ["P1", "P2", "P3"]


def header_only(validated: ValidatedExtract) -> None:
    assert validated.tables["labs"].height == 0
    assert validated.load_counts.filter(table_name="labs").row(0)[2:] == (0, 0, 0, 0)


def quoted_newlines(validated: ValidatedExtract) -> None:
    labs = validated.tables["labs"]
    assert labs["value_text"].to_list() == ['line one\nline "two"', None]
    assert labs["source_line"].to_list() == [2, 4]  # the first record spans lines 2-3


def big_field(validated: ValidatedExtract) -> None:
    assert validated.tables["labs"]["value_text"].str.len_chars().to_list() == [100_000]


def mixed_offsets(validated: ValidatedExtract) -> None:
    assert validated.tables["encounters"]["departure_time"].to_list() == [
        _utc(2026, 3, 8, 9, 0),  # naive 04:00 CDT
        _utc(2026, 11, 1, 7, 0),  # 02:00-05:00
        _utc(2026, 4, 1, 10, 0),  # 10:00Z
    ]


def utc_default(validated: ValidatedExtract) -> None:
    assert (validated.manifest.timezone, validated.manifest.timezone_defaulted) == ("UTC", True)
    assert validated.tables["encounters"]["arrival_time"][0] == _utc(2026, 3, 8, 1, 30)


def shared_patient_row(rows: Rows) -> None:
    rows["findings"][1]["patient_id"] = "P2"  # E1 is P1's encounter


def duplicate_order(rows: Rows) -> None:
    rows["orders"].append(dict(rows["orders"][0]))  # line 4


def two_labs_with_quoted_newline(rows: Rows) -> None:
    rows["labs"][0]["value_text"] = 'line one\nline "two"'
    rows["labs"].append(dict(rows["labs"][0], value_text="", loinc="2345-7"))


def no_labs(rows: Rows) -> None:
    rows["labs"] = []


FAR = "2099-01-01 06:00:00Z, more than 24 h after created 2026-11-02 08:00:00Z"

CASES = [
    # --- files and encodings
    Case(
        "latin-1 bytes",
        latin1_encounters,
        Rejects(
            "extract rejected: encounters.csv is not UTF-8 text; re-export it as UTF-8 CSV with"
            " a header row"
        ),
    ),
    Case(
        "latin-1 bytes far from the header",
        file_written(
            "labs.csv",
            labs_csv(*["P1,E1,4548-4,7.9,,%,2026-03-08 03:40,"] * 20_000).encode()
            + b"P1,E1,4548-4,7.9,M\xe9decine,%,2026-03-08 03:40,\n",
        ),
        Rejects(
            "extract rejected: labs.csv is not UTF-8 text (invalid utf-8 sequence); re-export it"
            " as UTF-8 CSV with a header row"
        ),
    ),
    Case(
        "UTF-8 byte-order mark",
        file_written("patients.csv", "\ufeff" + csv_text(clean_rows()["patients"])),
        Loads(bom_read),
    ),
    Case(
        "empty file",
        file_written("labs.csv", b""),
        Rejects(
            "extract rejected: labs.csv has no header row; export it with the column names first"
        ),
    ),
    Case("header only", rows_of(no_labs), Loads(header_only)),
    Case(
        "quoted newlines inside a field",
        rows_of(two_labs_with_quoted_newline),
        Loads(quoted_newlines),
    ),
    Case("a 100 kB field", changed("labs", 0, value_text="x" * 100_000), Loads(big_field)),
    Case(
        "a short CSV row",
        file_written("labs.csv", labs_csv("P1,E1,4548-4,7.9")),
        Quarantines((("labs", 2, None, "missing_fields", "4 fields, the header has 8"),)),
    ),
    Case(
        "a long CSV row",
        file_written("labs.csv", labs_csv("P1,E1,4548-4,7.9,,%,2026-03-08 03:40,,fasting")),
        Quarantines((("labs", 2, None, "extra_fields", "9 fields, the header has 8"),)),
    ),
    Case(
        "an extra unknown file",
        file_written("notes.txt", "exported by J."),
        Loads(warnings=("ignored extra file notes.txt",)),
    ),
    Case(
        "a CSV and a Parquet file for the same table",
        both_csv_and_parquet,
        Rejects(
            "extract rejected: both orders.csv and orders.parquet are in {folder}; keep only one"
            " of them"
        ),
    ),
    Case(
        "a Parquet column of the wrong type",
        parquet_table(
            "patients",
            pl.DataFrame({"patient_id": ["P1", "P2", "P3"], "birth_year": [True] * 3, "sex": "F"}),
        ),
        Rejects(
            "extract rejected: patients.parquet column birth_year has type Boolean, which cannot"
            " be read as int; export it as integers"
        ),
    ),
    Case(
        "a Parquet value of the wrong kind",
        parquet_table(  # P4, a fourth patient with no rows of their own
            "patients",
            pl.DataFrame(
                {"patient_id": ["P1", "P2", "P3", "P4"], "birth_year": [1950.0, 1980, 1935, 1960.5]}
            ).with_columns(sex=pl.lit("F")),
        ),
        Quarantines((("patients", 4, "birth_year", "unparseable_int", "1960.5"),)),
    ),
    Case(
        "a file that is not Parquet",
        not_parquet,
        Rejects(
            "extract rejected: labs.parquet cannot be read as Parquet (...); re-export it as"
            " Parquet or CSV",
            library_reason=True,
        ),
    ),
    # --- the manifest
    Case("a missing manifest", no_manifest, Loads(utc_default)),
    Case(
        "a manifest with an unknown time zone",
        manifest_of(timezone="Mars/Olympus"),
        Rejects(
            "extract rejected: manifest.json field timezone 'Mars/Olympus' is not a known IANA"
            " time zone; use an IANA zone name such as 'America/Chicago'"
        ),
    ),
    Case(
        "coverage_end before coverage_start",
        manifest_of(coverage_start="2025-11-01", coverage_end="2025-10-31"),
        Rejects(
            "extract rejected: manifest.json field coverage_end '2025-10-31' is before"
            " coverage_start '2025-11-01'; give the last day the extract covers, on or after"
            " coverage_start"
        ),
    ),
    Case(
        "invalid JSON in the manifest",
        file_written("manifest.json", '{"timezone": "America/Chicago"'),
        Rejects(
            "extract rejected: manifest.json in {folder} is not valid JSON (Expecting ','"
            " delimiter at line 1 column 31); fix it or remove the file"
        ),
    ),
    Case(
        "a created that is not a time",
        manifest_of(created="last Tuesday"),
        Rejects(
            "extract rejected: manifest.json field created 'last Tuesday' is not a date or"
            " timestamp; write it as YYYY-MM-DD or an ISO 8601 timestamp"
        ),
    ),
    # --- columns
    Case(
        "an identifier column (patient_name)",
        with_column("patients", "patient_name", "Jane Doe"),
        Rejects(
            "extract rejected: patients.csv has column 'patient_name', which looks like a direct"
            " identifier (person name); remove it from the export (only de-identified data is"
            " accepted)"
        ),
    ),
    Case(
        "a missing required column",
        without_column("labs", "loinc"),
        Rejects("extract rejected: labs.csv has no required column loinc; add it to the export"),
    ),
    Case(
        "a column twice",
        file_written("patients.csv", "patient_id,birth_year,sex,sex\nP1,1950,F,F\n"),
        Rejects("extract rejected: patients.csv has column sex more than once; keep only one"),
    ),
    # --- values: times
    Case(
        "an unparseable timestamp",
        changed("labs", 0, collected_time="yesterday"),
        Quarantines((("labs", 2, "collected_time", "unparseable_timestamp", "yesterday"),)),
    ),
    Case(
        "an impossible date (2026-02-30)",
        changed("encounters", 2, arrival_time="2026-02-30 10:00"),
        Quarantines(
            (("encounters", 4, "arrival_time", "unparseable_timestamp", "2026-02-30 10:00"),)
        ),
    ),
    Case(
        "an impossible hour (25:00)",
        changed("encounters", 2, arrival_time="2026-06-01 25:00"),
        Quarantines(
            (("encounters", 4, "arrival_time", "unparseable_timestamp", "2026-06-01 25:00"),)
        ),
    ),
    Case(
        "a time inside the spring-forward gap",
        changed("encounters", 2, arrival_time="2026-03-08 02:30"),
        Quarantines(
            (("encounters", 4, "arrival_time", "timestamp_not_in_timezone", "2026-03-08 02:30"),)
        ),
    ),
    Case(
        "offsets mixed with naive times in one column",
        rows_of(
            lambda rows: [
                rows["encounters"][i].update(departure_time=t)
                for i, t in enumerate(
                    ("2026-03-08 04:00", "2026-11-01 02:00-05:00", "2026-04-01T10:00:00Z")
                )
            ]
        ),
        Loads(mixed_offsets),
    ),
    Case(
        "a date far in the future",
        changed("diagnoses", 1, recorded_time="2099-01-01 00:00"),
        Quarantines((("diagnoses", 3, "recorded_time", "far_after_extract_created", FAR),)),
    ),
    Case(
        "a time within a day after created",
        changed("labs", 0, resulted_time="2026-11-02 10:00"),
        Warns(
            (
                (
                    "labs",
                    2,
                    "resulted_time",
                    "after_extract_created",
                    "2026-11-02 16:00:00Z after created 2026-11-02 08:00:00Z",
                ),
            )
        ),
    ),
    Case(
        "an order performed before it was ordered",
        changed("orders", 0, performed_time="2026-03-08 03:15"),
        Warns(
            (
                (
                    "orders",
                    2,
                    "performed_time",
                    "time_order",
                    "2026-03-08 08:15:00Z before ordered_time 2026-03-08 08:30:00Z",
                ),
            )
        ),
    ),
    # --- values: numbers, codes, allowed sets
    Case(
        "a negative dose",
        changed("medications", 0, dose_mg="-5"),
        Quarantines((("medications", 2, "dose_mg", "not_positive", "-5.0"),)),
    ),
    Case(
        "a non-numeric dose",
        changed("medications", 0, dose_mg="two"),
        Quarantines((("medications", 2, "dose_mg", "unparseable_float", "two"),)),
    ),
    Case(
        "a daily dose above the label",
        changed("medications", 0, dose_mg="5", doses_per_day="6"),
        Warns(
            (
                (
                    "medications",
                    2,
                    "dose_mg",
                    "dose_above_label_max",
                    "ropinirole 30.0 mg a day, above the label's 24.0 mg",
                ),
            )
        ),
    ),
    Case(
        "an unknown enum value",
        changed("encounters", 1, setting="ER"),
        Quarantines((("encounters", 3, "setting", "not_allowed", "ER"),)),
    ),
    Case(
        "a missing required value",
        changed("findings", 0, result=""),
        Quarantines((("findings", 2, "result", "missing_required", None),)),
    ),
    Case(
        "an ICD-10 code with the dot in the wrong place (E1.142)",
        changed("diagnoses", 0, code="E1.142"),
        Quarantines((("diagnoses", 2, "code", "malformed_code", "E1.142"),)),
    ),
    Case(
        "a malformed LOINC code",
        changed("labs", 0, loinc="45484"),
        Quarantines((("labs", 2, "loinc", "malformed_loinc", "45484"),)),
    ),
    # --- keys
    Case(
        "an orphan id",
        changed("diagnoses", 1, patient_id="P9"),
        Quarantines((("diagnoses", 3, "patient_id", "foreign_key", "P9"),)),
    ),
    Case(
        "a duplicate id",
        rows_of(duplicate_order),
        Quarantines((("orders", 4, "order_id", "duplicate_key", "O1"),)),
    ),
    Case(
        "an encounter_id of another patient",
        rows_of(shared_patient_row),
        Quarantines(
            (
                (
                    "findings",
                    3,
                    "encounter_id",
                    "encounter_of_other_patient",
                    "E1 belongs to patient P1",
                ),
            )
        ),
    ),
    # --- identifiers in free text
    Case(
        "a phone number in free text",
        changed("labs", 0, value_text="call 555-123-4567"),
        Quarantines(
            (("labs", 2, "value_text", "looks_like_identifier", "<redacted phone-like value>"),)
        ),
    ),
    Case(
        "an e-mail address in free text",
        changed("encounters", 2, department="ask jane.doe@example.org"),
        Quarantines(
            (
                (
                    "encounters",
                    4,
                    "department",
                    "looks_like_identifier",
                    "<redacted email-like value>",
                ),
            )
        ),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_each_kind_of_bad_input_gets_what_the_contract_promises(case: Case, tmp_path: Path):
    folder = case.build(tmp_path / "extract")
    expect = case.expect
    if isinstance(expect, Rejects):
        with pytest.raises(ExtractRejected) as caught:
            load_extract(folder)
        assert expect.matches(str(caught.value), folder), str(caught.value)
        return
    validated = load_extract(folder)
    assert_counts_add_up(validated)
    quarantine = validated.quarantine.drop("source_file").rows()
    warnings = validated.data_quality.drop("source_file", "level").rows()
    if isinstance(expect, Quarantines):
        assert (quarantine, warnings) == (list(expect.rows), [])
        bad = {(table, line) for table, line, *_ in expect.rows}
        for table, line in bad:  # the row is not loaded; every other row is
            assert line not in validated.tables[table]["source_line"].to_list()
        assert validated.load_counts["quarantined_rows"].sum() == len(bad)
    elif isinstance(expect, Warns):
        assert (quarantine, warnings) == ([], list(expect.rows))
        for table, line, *_ in expect.rows:  # the row loaded all the same
            assert line in validated.tables[table]["source_line"].to_list()
    else:
        assert (quarantine, warnings) == ([], [])
        expect.check(validated)
        assert tuple(validated.warnings) == expect.warnings


REJECTS = [c for c in CASES if isinstance(c.expect, Rejects)]


@pytest.mark.parametrize("case", REJECTS, ids=[c.name for c in REJECTS])
def test_chartaudit_validate_rejects_in_one_line(case: Case, tmp_path: Path):
    folder = case.build(tmp_path / "extract")
    done = chartaudit("validate", folder, cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert case.expect.matches(lines[0].removeprefix("error: "), folder), lines[0]


def test_the_matrix_covers_every_outcome_and_thirty_kinds():
    kinds = {type(c.expect) for c in CASES}
    assert kinds == {Loads, Warns, Quarantines, Rejects}
    assert len(CASES) >= 30
    assert len({c.name for c in CASES}) == len(CASES)
