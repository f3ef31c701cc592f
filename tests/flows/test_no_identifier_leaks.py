"""Reports, exports and logs print pseudonymous ids only.

A generated extract gets fake identifiers seeded into free-text and other columns; the real
`chartaudit run` command then audits it (a Prefect flow with its temporary server, as a
scheduler runs it) and every output of the run is searched for every seeded value: standard
output and error, every file Prefect keeps (its database holds the run log and the summary
artifact), the HTML report, every table and view of the warehouse exported to text, and the
temp folder. `chartaudit validate --phi-scan` finds the seeded identifiers it is meant to find,
without printing them."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest

from chartaudit.sample_data.generator import generate_extract
from chartaudit.storage import warehouse
from tests.flows.test_cli import CHARTAUDIT


@dataclass(frozen=True)
class Seed:
    table: str
    column: str
    row: int  # 0-based data row, among the rows `where` selects
    value: str
    token: str  # the part that must never be printed
    line: int = 0  # its CSV line, once seeded
    where: tuple[str, str] | None = None  # (column, value) the row must have


# Identifiers that look like one (a cue, a pattern): quarantined, and masked in quarantine.
QUARANTINED = (
    Seed("labs", "value_text", 3, "result phoned to Dr. Hazel Quartermaine", "Quartermaine"),
    Seed("labs", "value_text", 4, "call back on (555) 201-7788", "201-7788"),
    Seed("labs", "value_text", 5, "copy to h.quartermaine@example.net", "quartermaine@"),
    Seed("encounters", "department", 6, "Ward of Dr. Alban Fenwick", "Fenwick"),
    Seed("orders", "code", 2, "Mrs. Odile Pemberton", "Pemberton", where=("code_system", "LOCAL")),
    Seed("medications", "route", 2, "ssn 219-09-9999", "219-09-9999"),
)
# Bare names, no cue: found by no pattern. In a column with allowed values or a type they are a
# faulty value, quarantined for that reason and masked as name-shaped.
MASKED = (
    Seed("encounters", "setting", 8, "Ione Brackenridge", "Brackenridge"),
    Seed("patients", "birth_year", 9, "Wilhelmina Ashcombe", "Ashcombe"),
)
# A bare name in a free-text column loads (docs/decisions.md, "Names in free text"): it is
# stored in the warehouse's copy of that table, and printed nowhere.
LOADED = Seed("labs", "value_text", 7, "Cordelia Blackwood", "Blackwood")
SEEDS = (*QUARANTINED, *MASKED, LOADED)


def seed(extract: Path, seeds: tuple[Seed, ...]) -> list[Seed]:
    """Write each seed's value into its row; returns the seeds with their CSV lines."""
    placed = []
    for table in dict.fromkeys(s.table for s in seeds):
        path = extract / f"{table}.csv"
        frame = pl.read_csv(path, infer_schema=False).with_row_index("__row")
        for s in (s for s in seeds if s.table == table):
            rows = frame if s.where is None else frame.filter(pl.col(s.where[0]) == s.where[1])
            row = rows["__row"][s.row]
            frame = frame.with_columns(
                pl.when(pl.col("__row") == row)
                .then(pl.lit(s.value))
                .otherwise(pl.col(s.column))
                .alias(s.column)
            )
            placed.append(Seed(**{**s.__dict__, "line": row + 2}))
        frame.drop("__row").write_csv(path)
    return placed


@pytest.fixture(scope="module")
def seeded(tmp_path_factory) -> tuple[Path, list[Seed]]:
    extract = tmp_path_factory.mktemp("seeded") / "extract"
    generate_extract(extract, patients=480, seed=17)
    return extract, seed(extract, SEEDS)


def run_command(*args, env_extra: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200", **env_extra}
    return subprocess.run(
        [str(CHARTAUDIT), *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=600,
    )


@dataclass
class Run:
    folder: Path
    done: subprocess.CompletedProcess

    @property
    def warehouse(self) -> Path:
        return self.folder / "audit.duckdb"

    @property
    def report(self) -> Path:
        return self.folder / "out" / "chartaudit-2026-10.html"

    @property
    def prefect_home(self) -> Path:
        return self.folder / "prefect"

    @property
    def tmp(self) -> Path:
        return self.folder / "tmp"


@pytest.fixture(scope="module")
def run(seeded, tmp_path_factory) -> Run:
    extract, _ = seeded
    folder = tmp_path_factory.mktemp("run")
    (folder / "tmp").mkdir()
    done = run_command(
        "run",
        extract,
        "--period",
        "2026-10",
        "--warehouse",
        folder / "audit.duckdb",
        "--out",
        folder / "out",
        cwd=folder,
        env_extra={"PREFECT_HOME": str(folder / "prefect"), "TMPDIR": str(folder / "tmp")},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    return Run(folder, done)


def warehouse_text(path: Path) -> dict[str, str]:
    """Every table and view of the warehouse, as text."""
    with warehouse.connect(path, read_only=True) as con:
        names = [r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()]
        names += [
            r[0]
            for r in con.execute(
                "SELECT view_name FROM duckdb_views() WHERE NOT internal"
            ).fetchall()
        ]
        return {n: "\n".join(map(str, con.execute(f"SELECT * FROM {n}").fetchall())) for n in names}


def files_under(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_the_seeded_rows_are_quarantined_with_their_values_masked(seeded, run):
    _, seeds = seeded
    with warehouse.connect(run.warehouse, read_only=True) as con:
        quarantine = con.execute(
            "SELECT table_name, source_line, column_name, rule, value FROM quarantine"
        ).fetchall()
    found = {(t, line, c): (rule, value) for t, line, c, rule, value in quarantine}
    rules = {
        "Quartermaine": ("looks_like_identifier", "<redacted name-like value>"),
        "201-7788": ("looks_like_identifier", "<redacted phone-like value>"),
        "quartermaine@": ("looks_like_identifier", "<redacted email-like value>"),
        "Fenwick": ("looks_like_identifier", "<redacted name-like value>"),
        "Pemberton": ("looks_like_identifier", "<redacted name-like value>"),
        "219-09-9999": ("looks_like_identifier", "<redacted ssn-like value>"),
        "Brackenridge": ("not_allowed", "<redacted name-like value>"),
        "Ashcombe": ("unparseable_int", "<redacted name-like value>"),
    }
    placed = {s.token: s for s in seeds}
    expected = {(placed[t].table, placed[t].line, placed[t].column): v for t, v in rules.items()}
    assert {k: found.get(k) for k in expected} == expected


def test_no_seeded_identifier_is_printed_stored_or_logged(run):
    outputs = {
        "stdout": run.done.stdout.encode(),
        "stderr": run.done.stderr.encode(),
        "report": run.report.read_bytes(),
        **{f"prefect/{k}": v for k, v in files_under(run.prefect_home).items()},
        **{f"warehouse/{k}": v.encode() for k, v in warehouse_text(run.warehouse).items()},
        **{f"tmp/{k}": v for k, v in files_under(run.tmp).items()},
    }
    # In any case: codes are stored lower- or upper-cased.
    outputs = {name: text.lower() for name, text in outputs.items()}
    leaks = {
        (s.token, name)
        for s in (*QUARANTINED, *MASKED)
        for name, text in outputs.items()
        if s.token.lower().encode() in text
    }
    assert leaks == set()
    # The bare name in a free-text column is stored where the contract keeps loaded rows, the
    # warehouse's labs table, and nowhere else.
    where = {name for name, text in outputs.items() if LOADED.token.lower().encode() in text}
    assert where == {"warehouse/labs"}


def test_the_searched_outputs_hold_what_a_leak_would_be_in(run):
    """So that finding nothing means something: the run log and the summary artifact are in
    Prefect's database, the report lists not-met cases, the warehouse holds the loaded rows."""
    database = run.prefect_home / "prefect.db"
    with sqlite3.connect(database) as db:
        logs = "\n".join(m for (m,) in db.execute("SELECT message FROM log"))
        (artifact,) = db.execute(
            "SELECT data FROM artifact WHERE key = 'chartaudit-summary-2026-10'"
        ).fetchone()
    assert "cases judged" in logs and "quarantined" in logs
    assert "| LN-01 " in artifact
    assert "cases judged" in run.done.stdout
    assert "not met" in run.report.read_text(encoding="utf-8")
    tables = warehouse_text(run.warehouse)
    assert "Hospital Medicine" in tables["encounters"]


def test_the_run_leaves_no_work_folder_and_creates_owner_only_files(run):
    assert list(run.tmp.glob("chartaudit-run-*")) == []
    for path in (run.warehouse, run.report):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE((run.folder / "out").stat().st_mode) == 0o700


def csv_lines(path: Path, column: str, contains: str) -> list[int]:
    frame = pl.read_csv(path, infer_schema=False).with_row_index("line", offset=2)
    return frame.filter(pl.col(column).str.contains(contains, literal=True))["line"].to_list()


def test_the_phi_scan_finds_the_cued_identifiers_without_printing_them(seeded, tmp_path):
    extract, seeds = seeded
    done = run_command("validate", "--phi-scan", extract, env_extra={}, cwd=tmp_path)
    assert done.returncode == 1
    line = {s.token: s.line for s in seeds}
    # The generator's own dirty rows: e-mail and SSN in labs.value_text.
    emails = sorted(
        [*csv_lines(extract / "labs.csv", "value_text", "@example.org"), line["quartermaine@"]]
    )
    ssns = csv_lines(extract / "labs.csv", "value_text", "123-45-6789")
    assert emails and ssns

    # The example is the first one, masked to its shape: the generator's or the seeded one.
    email_shape = (
        "xxx.xxx@xxxxxxx.xxx"
        if emails[0] != line["quartermaine@"]
        else ("x.xxxxxxxxxxxx@xxxxxxx.xxx")
    )

    def counted(numbers: list[int], words: str) -> str:
        if len(numbers) == 1:
            return f"1 {words} value (line {numbers[0]})"
        return f"{len(numbers)} {words} values (lines {', '.join(map(str, numbers))})"

    assert done.stdout.strip().splitlines() == [
        f"encounters.csv: column 'department': 1 name-like value (line {line['Fenwick']}),"
        " e.g. xx. xxxxx",
        f"labs.csv: column 'value_text': 1 name-like value (line {line['Quartermaine']}),"
        " e.g. xx. xxxxx",
        f"labs.csv: column 'value_text': 1 phone-number-like value (line {line['201-7788']}),"
        " e.g. (999) 999-9999",
        f"labs.csv: column 'value_text': {counted(emails, 'e-mail-like')}, e.g. {email_shape}",
        f"labs.csv: column 'value_text': {counted(ssns, 'SSN-like')}, e.g. 999-99-9999",
        f"medications.csv: column 'route': 1 SSN-like value (line {line['219-09-9999']}),"
        " e.g. 999-99-9999",
        f"orders.csv: column 'code': 1 name-like value (line {line['Pemberton']}), e.g. xxx. xxxxx",
    ]
    assert done.stderr.strip().splitlines() == [
        f"error: PHI scan of {extract}: 7 finding(s) in {files(extract)} file(s),"
        f" {rows(extract)} row(s):"
        " identifier-like columns or values (listed above, values masked); remove them from"
        " the export"
    ]
    for s in seeds:
        assert s.token not in done.stdout + done.stderr
    assert list(tmp_path.iterdir()) == []


def files(extract: Path) -> int:
    """Every CSV file of the folder: the tables and the generator's key files."""
    return len(list(extract.glob("*.csv")))


def rows(extract: Path) -> int:
    return sum(pl.read_csv(p, infer_schema=False).height for p in extract.glob("*.csv"))
