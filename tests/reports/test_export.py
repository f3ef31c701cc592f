"""`chartaudit export` on a warehouse the real pipeline wrote: the files, their rows against the
warehouse's, hostile names written inert, suppression, file modes and the error lines."""

from __future__ import annotations

import csv
import os
import re
import stat
from datetime import datetime
from pathlib import Path

import duckdb
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from chartaudit.reports.export import csv_safe, write_export
from chartaudit.reports.render import ReportError
from chartaudit.sample_data.generator import generate_extract
from chartaudit.storage import warehouse
from tests.flows.test_cli import chartaudit
from tests.flows.test_pipeline import run_pipeline

PERIOD = "2026-10"
FOLDER = f"chartaudit-{PERIOD}-export"
# Written into encounters.csv as site_id and department of not-met cases' index encounters.
HOSTILE_SITES = ["<script>alert(1)</script>", '=HYPERLINK("x")', "+1", "-2", "@SUM(A1)"]
# The loader strips white space round a value, so these go into the warehouse's encounters
# table after the run, as departments (the export must not trust what the warehouse holds).
HOSTILE_DEPARTMENTS = ["\tfoo", "\rbar"]
INERT = {
    "<script>alert(1)</script>": "<script>alert(1)</script>",  # not a formula; CSV is not HTML
    '=HYPERLINK("x")': '\'=HYPERLINK("x")',
    "+1": "'+1",
    "-2": "'-2",
    "@SUM(A1)": "'@SUM(A1)",
    "\tfoo": "'\tfoo",
    "\rbar": "'\rbar",
}
CSV_COLUMNS = ["measure_id", "period", "patient_id", "encounter_id", "site_id", "department",
               "setting", "index_time", "reason", "evidence_text"]  # fmt: skip
# What a spreadsheet would run: =, +, -, @ first (after spaces or quotes), or a tab, CR or LF;
# a cell that begins with the single quote is text.
RUNNABLE = re.compile(r"(?!')(?:[\t\r\n]|[\s\"']*[=+\-@])")


def _hostile_encounters(extract: Path) -> list[str]:
    """Index encounters of distinct not-met cases of the period (from the answer key)."""
    key = pl.read_csv(extract / "answer_key.csv", infer_schema=False)
    chosen = (
        key.filter(
            (pl.col("period") == PERIOD)
            & (pl.col("outcome") == "not_met")
            & (pl.col("ruleset") == "source-2025")
            & pl.col("measure_id").is_in(["LN-01", "LN-04"])
            & pl.col("encounter_id").is_not_null()
        )
        .unique("encounter_id", maintain_order=True)
        .sort("measure_id", "encounter_id")
    )
    return chosen["encounter_id"].head(len(HOSTILE_SITES) + len(HOSTILE_DEPARTMENTS)).to_list()


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A warehouse with one succeeded run of 2026-10 whose not-met cases include encounters at
    hostile sites and departments; returns it and {encounter_id: hostile value}."""
    root = tmp_path_factory.mktemp("export")
    extract = root / "extract"
    generate_extract(extract, patients=600, months=13, seed=11)
    encounters = _hostile_encounters(extract)
    sites = dict(zip(encounters, HOSTILE_SITES, strict=False))
    departments = dict(zip(encounters[len(HOSTILE_SITES) :], HOSTILE_DEPARTMENTS, strict=True))
    table = pl.read_csv(extract / "encounters.csv", infer_schema=False)
    table.with_columns(
        site_id=pl.col("encounter_id").replace_strict(sites, default=pl.col("site_id")),
        department=pl.col("encounter_id").replace_strict(sites, default=pl.col("department")),
    ).write_csv(extract / "encounters.csv")
    path = root / "audit.duckdb"
    run_pipeline(extract, path, root / "work", PERIOD)
    with warehouse.connect(path) as con:
        for encounter_id, department in departments.items():
            con.execute(
                "UPDATE encounters SET department = ? WHERE encounter_id = ?",
                [department, encounter_id],
            )
    return path, {**sites, **departments}


def _export(path: Path, out: Path, below: int | None = None) -> Path:
    with warehouse.connect(path, read_only=True) as con:
        return write_export(con, PERIOD, out, suppress_below=below, warehouse_name=str(path))


def _latest(path: Path, sql: str) -> pl.DataFrame:
    with warehouse.connect(path, read_only=True) as con:
        return con.sql(sql, params={"period": PERIOD}).pl()


def _read_csv(file: Path) -> list[list[str]]:
    with file.open(newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def _measures(path: Path) -> list[str]:
    frame = _latest(
        path, "SELECT DISTINCT measure_id FROM latest_measure_summary WHERE period = $period"
    )
    return sorted(frame["measure_id"])


def test_the_folder_holds_a_csv_per_measure_two_parquet_files_and_a_readme(published, tmp_path):
    path, _ = published
    folder = _export(path, tmp_path / "out")
    assert folder == tmp_path / "out" / FOLDER
    measures = _measures(path)
    assert measures == [f"LN-{i:02d}" for i in range(1, 16)]
    expected = {"README.txt", "case_results.parquet", "measure_summary.parquet"}
    assert {p.name for p in folder.iterdir()} == expected | {f"{m}-not-met.csv" for m in measures}
    # Nothing else beside it: the folder it was built in was renamed, not copied.
    assert [p.name for p in (tmp_path / "out").iterdir()] == [FOLDER]


def test_each_csv_holds_exactly_the_measures_not_met_cases(published, tmp_path):
    path, _ = published
    folder = _export(path, tmp_path / "out")
    cases = _latest(
        path,
        "SELECT measure_id, patient_id, encounter_id, site_id, setting, index_time"
        " FROM latest_case_results WHERE period = $period AND outcome = 'not_met'",
    )
    zone = _latest(path, "SELECT timezone FROM latest_runs WHERE period = $period").item()
    empty = 0
    for measure_id in _measures(path):
        header, *rows = _read_csv(folder / f"{measure_id}-not-met.csv")
        assert header == CSV_COLUMNS
        want = cases.filter(pl.col("measure_id") == measure_id)
        empty += want.height == 0
        assert len(rows) == want.height
        got = {(r[0], r[2], r[3] or None, datetime.fromisoformat(r[7])) for r in rows}
        assert got == set(want.select(pl.exclude("site_id", "setting")).iter_rows())
        assert {r[1] for r in rows} <= {PERIOD}
        # Local times of the run's zone, with their offset.
        offsets = {datetime.fromisoformat(r[7]).utcoffset() for r in rows}
        local = want["index_time"].dt.convert_time_zone(zone)
        assert offsets == {t.utcoffset() for t in local}
    assert 0 < empty < 15  # some measures have none: their file is a header only


def test_the_parquet_files_hold_the_latest_runs_rows_with_their_types(published, tmp_path):
    path, _ = published
    folder = _export(path, tmp_path / "out")
    order = ["measure_id", "patient_id", "encounter_id", "index_time"]
    cases = _latest(path, "SELECT * FROM latest_case_results WHERE period = $period")
    exported = pl.read_parquet(folder / "case_results.parquet")
    assert exported.height > 100
    assert_frame_equal(exported.sort(order, nulls_last=True), cases.sort(order, nulls_last=True))
    summary = _latest(path, "SELECT * FROM latest_measure_summary WHERE period = $period")
    key = ["measure_id", "stratum_kind", "stratum"]
    assert_frame_equal(
        pl.read_parquet(folder / "measure_summary.parquet").sort(key, nulls_last=True),
        summary.with_columns(suppressed=pl.lit(False)).sort(key, nulls_last=True),
    )
    # Read by DuckDB, the instants are still instants.
    types = dict(
        duckdb.sql(f"DESCRIBE SELECT * FROM '{folder / 'case_results.parquet'}'")
        .pl()
        .select("column_name", "column_type")
        .iter_rows()
    )
    assert types["index_time"] == types["window_end"] == "TIMESTAMP WITH TIME ZONE"
    assert types["flags"] == "VARCHAR[]"


def test_hostile_sites_and_departments_are_written_inert(published, tmp_path):
    path, hostile = published
    folder = _export(path, tmp_path / "out")
    rows = [
        row
        for file in sorted(folder.glob("*-not-met.csv"))
        for row in _read_csv(file)[1:]  # csv.reader keeps \r and \t inside quoted cells
    ]
    by_encounter = {}
    for row in rows:
        by_encounter.setdefault(row[3], set()).add((row[4], row[5]))
    for encounter_id, value in hostile.items():
        cells = by_encounter[encounter_id]
        if value in HOSTILE_SITES:
            assert cells == {(INERT[value], INERT[value])}, encounter_id
        else:
            assert {department for _, department in cells} == {INERT[value]}, encounter_id
    # As text: the formula is quoted, its quotes doubled, behind the single quote.
    text = (folder / "LN-01-not-met.csv").read_text() + (folder / "LN-04-not-met.csv").read_text()
    assert '"\'=HYPERLINK(""x"")"' in text
    # No cell of any CSV would run.
    assert not [cell for row in rows for cell in row if RUNNABLE.match(cell)]


def test_csv_safe_neutralises_every_text_cell_and_leaves_numbers_and_nulls(tmp_path):
    values = ["=1+2", " =1+2", '"=1+2', "'=1+2", "\uff1dHYPERLINK()", "\nx", "a-b", "ok", None]
    frame = pl.DataFrame(
        {
            "text": values,
            "number": [-2, 0, 3, None, -1, 5, 6, 7, 8],
            "time": [datetime.fromisoformat("2026-10-25T00:30:00+00:00")] * 9,
        }
    )
    file = tmp_path / "x.csv"
    csv_safe(frame, "Europe/London").write_csv(file, quote_style="non_numeric")
    assert file.read_text().splitlines()[:2] == [
        '"text","number","time"',
        '"\'=1+2",-2,"2026-10-25T01:30:00+01:00"',
    ]
    _header, *rows = _read_csv(file)
    assert [r[0] for r in rows] == [
        "'=1+2",
        "' =1+2",
        "'\"=1+2",
        "''=1+2",
        "'\uff1dHYPERLINK()",
        "'\nx",
        "a-b",
        "ok",
        "",  # null: an empty, unquoted cell
    ]
    assert [r[1] for r in rows] == ["-2", "0", "3", "", "-1", "5", "6", "7", "8"]
    assert file.read_text().splitlines()[-1] == ',8,"2026-10-25T01:30:00+01:00"'


def _suppressed_cases(summary: pl.DataFrame, cases: pl.DataFrame) -> pl.DataFrame:
    """Cases that lie in a suppressed stratum, computed here without the module under test. A
    case with no site (setting) lies in the site (setting) stratum whose stratum is null."""
    hidden = summary.filter(pl.col("suppressed"))
    in_all = cases.join(
        hidden.filter(pl.col("stratum_kind") == "all").select("measure_id"), on="measure_id"
    )
    in_site = cases.join(
        hidden.filter(pl.col("stratum_kind") == "site").select("measure_id", site_id="stratum"),
        on=["measure_id", "site_id"],
        nulls_equal=True,
    )
    in_setting = cases.join(
        hidden.filter(pl.col("stratum_kind") == "setting").select("measure_id", setting="stratum"),
        on=["measure_id", "setting"],
        nulls_equal=True,
    )
    return pl.concat([f.select("measure_id", "patient_id") for f in (in_all, in_site, in_setting)])


def test_suppression_hides_small_strata_in_every_file(published, tmp_path):
    path, _ = published
    done = chartaudit(
        "export", "--period", PERIOD, "--warehouse", path, "--out", tmp_path / "out",
        "--suppress-below", "11",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    folder = tmp_path / "out" / FOLDER
    values = ["denominator", "met", "not_met", "excluded", "pending", "rate", "ci_low", "ci_high"]
    warehouse_summary = _latest(path, "SELECT * FROM latest_measure_summary WHERE period = $period")
    key = ["measure_id", "stratum_kind", "stratum"]
    summary = pl.read_parquet(folder / "measure_summary.parquet").sort(key, nulls_last=True)
    small = warehouse_summary.sort(key, nulls_last=True)["denominator"].is_between(1, 10)
    # Every small stratum is hidden; some are hidden only to protect another (secondary).
    assert (summary["suppressed"] | ~small).all()
    assert summary["suppressed"].sum() > small.sum() > 0
    hidden = summary.filter("suppressed")
    assert hidden.select(pl.all_horizontal(pl.col(values).is_null())).to_series().all()
    shown = summary.filter(~pl.col("suppressed")).drop("suppressed")
    assert_frame_equal(
        shown,
        warehouse_summary.join(shown.select(key), on=key, nulls_equal=True).sort(
            key, nulls_last=True
        ),
    )
    # Zero denominators are shown.
    zero = warehouse_summary.filter(pl.col("denominator") == 0)
    assert zero.height > 0
    assert zero.join(hidden.select(key), on=key, nulls_equal=True).height == 0
    # Never exactly one hidden stratum of a kind beside a shown `all` row.
    shown_all = summary.filter((pl.col("stratum_kind") == "all") & ~pl.col("suppressed"))
    lone = (
        hidden.filter(pl.col("stratum_kind") != "all")
        .group_by("measure_id", "stratum_kind")
        .len()
        .filter(pl.col("len") == 1)
        .join(shown_all.select("measure_id"), on="measure_id")
    )
    assert lone.height == 0
    # No case of a hidden stratum in the Parquet or in any CSV.
    all_cases = _latest(path, "SELECT * FROM latest_case_results WHERE period = $period")
    withheld = _suppressed_cases(summary, all_cases).unique()
    assert withheld.height > 0
    exported = pl.read_parquet(folder / "case_results.parquet")
    assert exported.join(withheld, on=["measure_id", "patient_id"]).height == 0
    assert exported.height + all_cases.join(withheld, on=["measure_id", "patient_id"]).height == (
        all_cases.height
    )
    csv_cases = {
        (row[0], row[2]) for file in folder.glob("*-not-met.csv") for row in _read_csv(file)[1:]
    }
    assert csv_cases
    assert not csv_cases & set(withheld.iter_rows())
    readme = (folder / "README.txt").read_text()
    assert "Suppression: applied, N = 11: strata with a denominator of 1 to 10" in readme


def test_without_suppression_the_readme_says_so(published, tmp_path):
    path, _ = published
    folder = _export(path, tmp_path / "out")
    readme = (folder / "README.txt").read_text()
    run_id = _latest(path, "SELECT run_id FROM latest_runs WHERE period = $period").item()
    assert readme.startswith("chartaudit export\n\nPeriod:      2026-10\n")
    assert f"Run:         {run_id} (finished " in readme
    assert "Rule set:    source-2025\n" in readme
    assert re.search(r"^Generated:   \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00$", readme, re.M)
    assert "Suppression: not applied: every count and every case of the run is included." in readme
    for name in ("LN-01-not-met.csv … LN-15-not-met.csv", "case_results.parquet",
                 "measure_summary.parquet", "README.txt"):  # fmt: skip
        assert f"- {name}: " in readme


def test_a_new_export_replaces_the_old_one_whole(published, tmp_path):
    path, _ = published
    folder = _export(path, tmp_path / "out", below=11)
    (folder / "stale.txt").write_text("from before")
    _export(path, tmp_path / "out")
    assert not (folder / "stale.txt").exists()
    assert "not applied" in (folder / "README.txt").read_text()
    assert [p.name for p in (tmp_path / "out").iterdir()] == [FOLDER]


def test_files_are_the_owners_only(published, tmp_path):
    path, _ = published
    previous = os.umask(0o022)  # a permissive shell: the export must not depend on it
    try:
        folder = _export(path, tmp_path / "out")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert {stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()} == {0o600}


def test_the_command_writes_owner_only_files_and_says_where(published, tmp_path):
    path, _ = published
    out = tmp_path / "out"
    done = chartaudit("export", "--period", PERIOD, "--warehouse", path, "--out", out)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"export: {(out / FOLDER).resolve()}"
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    assert stat.S_IMODE((out / FOLDER).stat().st_mode) == 0o700
    assert {stat.S_IMODE(p.stat().st_mode) for p in (out / FOLDER).iterdir()} == {0o600}


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["--period", "2026-03"],
            "error: no succeeded run for period 2026-03 in {warehouse}; run chartaudit run first",
        ),
        (["--period", "../x"], "error: period '../x' is not a month like 2026-10"),
    ],
    ids=["no-run", "bad-period"],
)
def test_errors_are_one_line_and_write_nothing(published, tmp_path, args, line):
    path, _ = published
    out = tmp_path / "out"
    done = chartaudit("export", *args, "--warehouse", path, "--out", out)
    assert done.returncode == 1
    assert done.stderr == line.format(warehouse=path) + "\n"
    assert not out.exists()
    assert not (tmp_path / "x").exists()


def test_a_missing_warehouse_is_one_line(tmp_path):
    done = chartaudit("export", "--period", PERIOD, cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr == "error: no warehouse at audit.duckdb; run chartaudit run first\n"
    assert list(tmp_path.iterdir()) == []


def test_a_failed_export_leaves_the_older_one(published, tmp_path):
    path, _ = published
    folder = _export(path, tmp_path / "out")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    with (
        pytest.raises(ReportError, match="no succeeded run for period 2026-11"),
        warehouse.connect(path, read_only=True) as con,
    ):
        write_export(con, "2026-11", tmp_path / "out", warehouse_name=str(path))
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert [p.name for p in (tmp_path / "out").iterdir()] == [FOLDER]
