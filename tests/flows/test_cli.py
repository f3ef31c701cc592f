"""The `chartaudit` command line as a scheduler or a person runs it: real processes, exit
status, one-line errors on standard error, and the warehouse left as it was."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from chartaudit.storage import warehouse
from tests.flows.conftest import answer_key
from tests.flows.test_pipeline import run_pipeline

CHARTAUDIT = Path(sys.executable).parent / "chartaudit"


def chartaudit(
    *args: str,
    cwd: Path | None = None,
    prefect_home: Path | None = None,
    env: dict[str, str] | None = None,
):
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200", **(env or {})}
    if prefect_home is not None:
        env["PREFECT_HOME"] = str(prefect_home)
    return subprocess.run(
        [str(CHARTAUDIT), *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=600,
    )


def snapshot(path: Path) -> dict[str, list]:
    with warehouse.connect(path, read_only=True) as con:
        tables = [r[0] for r in con.execute("SHOW TABLES").fetchall()]
        return {t: sorted(map(str, con.execute(f"SELECT * FROM {t}").fetchall())) for t in tables}


@pytest.fixture
def published(generated, tmp_path) -> Path:
    """A warehouse holding one succeeded run of 2026-10."""
    path = tmp_path / "audit.duckdb"
    run_pipeline(generated, path, tmp_path / "work")
    return path


def drop_column(csv: Path, column: str) -> None:
    rows = [line.split(",") for line in csv.read_text().splitlines()]
    index = rows[0].index(column)
    csv.write_text("\n".join(",".join(r[:index] + r[index + 1 :]) for r in rows) + "\n")


def add_column(csv: Path, column: str, value: str) -> None:
    lines = csv.read_text().splitlines()
    body = [f"{line},{value}" for line in lines[1:]]
    csv.write_text("\n".join([f"{lines[0]},{column}", *body]) + "\n")


@pytest.mark.parametrize(
    ("break_it", "words"),
    [
        (
            lambda d: drop_column(d / "encounters.csv", "arrival_time"),
            ["encounters.csv", "arrival_time"],
        ),
        (
            lambda d: add_column(d / "patients.csv", "patient_name", "Jane Doe"),
            ["patients.csv", "patient_name"],
        ),
        (lambda d: (d / "orders.csv").unlink(), ["orders"]),
    ],
    ids=["missing-required-column", "identifier-column", "missing-table"],
)
def test_a_rejected_extract_is_one_line_and_leaves_the_warehouse_as_it_was(
    extract_copy, published, break_it, words
):
    break_it(extract_copy)
    before = snapshot(published)
    done = chartaudit("run", extract_copy, "--period", "2026-10", "--warehouse", published)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: extract rejected")
    for word in words:
        assert word in lines[0]
    assert snapshot(published) == before


def test_bad_arguments_fail_before_anything_runs(generated, tmp_path):
    path = tmp_path / "audit.duckdb"
    done = chartaudit("run", generated, "--period", "2026-13", "--warehouse", path)
    assert (done.returncode, done.stderr.strip()) == (
        1,
        "error: period '2026-13' is not a month like 2026-10",
    )
    done = chartaudit(
        "run", generated, "--period", "2026-10", "--ruleset", "x", "--warehouse", path
    )
    assert done.returncode == 1
    assert done.stderr.strip() == ("error: unknown rule set 'x'; known: evidence-2026, source-2025")
    assert not path.exists()


def test_validate_reports_counts_and_writes_nothing(generated, tmp_path):
    done = chartaudit("validate", generated, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    encounters = len((generated / "encounters.csv").read_text().splitlines()) - 1
    assert "encounters" in done.stdout and str(encounters) in done.stdout
    assert "not_allowed" in done.stdout
    assert "ignored extra file answer_key.csv" in done.stdout
    assert list(tmp_path.iterdir()) == []  # nothing written
    # the warnings by rule, beside the quarantine: rows that loaded
    warnings = done.stdout[done.stdout.index("Data-quality warnings by rule") :]
    assert "│ orders " in warnings and "performed_time" in warnings and "time_order" in warnings
    assert "dose_above_label_max" in warnings and "after_extract_created" in warnings
    assert "over a limit" not in done.stdout
    (tmp_path / "chartaudit.toml").write_text("[thresholds]\nquarantine_share = 0.001\n")
    strict = chartaudit("validate", generated, cwd=tmp_path)
    assert strict.returncode == 0, strict.stderr
    assert (
        'over a limit: labs: 0.6% of rows quarantined (mostly "looks_like_identifier"), over'
        in (strict.stdout)
    )


def test_a_run_past_a_configured_limit_prints_one_line_and_keeps_the_warehouse(
    generated, published, tmp_path
):
    (tmp_path / "chartaudit.toml").write_text("[thresholds.tables.orders]\nwarning_rows = 0\n")
    before = snapshot(published)
    done = chartaudit(
        "run",
        generated,
        "--period",
        "2026-10",
        "--warehouse",
        published,
        "--out",
        tmp_path / "out",
        cwd=tmp_path,
        prefect_home=tmp_path / ".prefect",
    )
    assert done.returncode == 1, done.stdout[-2000:]
    assert done.stderr.strip().splitlines() == [
        'error: orders: 1 row with data-quality warnings (mostly "time_order"), over the limit'
        " of 0 rows"
    ]
    after = snapshot(published)
    assert after.pop("runs") != before.pop("runs")  # the failed run is recorded ...
    assert after == before  # ... and nothing else changed
    assert not (tmp_path / "out").exists()


def test_measures_list_and_show(tmp_path):
    listed = chartaudit("measures", "list")
    assert listed.returncode == 0
    for number in range(1, 16):
        assert f"LN-{number:02d}" in listed.stdout
    shown = chartaudit("measures", "show", "LN-01")
    assert shown.returncode == 0
    assert (
        "completed spine MRI: orders, coded in spine_mri, status completed,"
        " performed_time from 24 h before the index to 12 h after the index"
    ) in shown.stdout
    assert "Reference line (reported, not the pass mark): 4 h" in shown.stdout
    assert "WITH RECURSIVE" in shown.stdout
    differing = chartaudit("measures", "show", "LN-11", "--ruleset", "evidence-2026")
    assert differing.returncode == 0, differing.stderr
    assert (
        "Version 2026.1 — rule sets evidence-2026, from 2025-01-01: AASM 2024: iron studies are"
        " ferritin AND transferrin saturation, both in the same window."
    ) in differing.stdout
    assert "Compiled SQL (evidence-2026, 2026-10, UTC):" in differing.stdout
    assert "'2502-3'" in differing.stdout  # the evidence-2026 numerator is the one compiled
    never = chartaudit("measures", "show", "LN-13")
    assert "Never pending: everything it looks at is known at the index." in never.stdout
    missing = chartaudit("measures", "show", "LN-99")
    assert missing.returncode == 1
    known = ", ".join(f"LN-{n:02d}" for n in range(1, 16))
    assert missing.stderr.strip() == f"error: no measure 'LN-99'; known: {known}"


def test_measures_test_runs_every_deck_and_fails_on_a_wrong_expectation(tmp_path):
    done = chartaudit("measures", "test")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr
    assert "no deck case reaches" not in done.stdout
    last = done.stdout.strip().splitlines()[-1]
    runs, cases = int(last.split()[0]), int(last.split("(")[1].split()[0])
    assert last.startswith(f"{runs} of {runs} deck case runs passed")
    assert cases >= 15 * 6 and runs == 2 * cases


def test_report_renders_a_published_period_and_refuses_a_missing_one(published, tmp_path):
    out = tmp_path / "out"
    done = chartaudit("report", "--period", "2026-10", "--warehouse", published, "--out", out)
    assert done.returncode == 0, done.stderr
    assert (out / "chartaudit-2026-10.html").exists()
    missing = chartaudit("report", "--period", "2026-08", "--warehouse", published, "--out", out)
    assert missing.returncode == 1
    assert len(missing.stderr.strip().splitlines()) == 1
    assert "no succeeded run for period 2026-08" in missing.stderr


def test_report_suppresses_small_counts_when_asked(published, tmp_path):
    out = tmp_path / "out"
    done = chartaudit(
        "report", "--period", "2026-10", "--warehouse", published, "--out", out,
        "--suppress-below", "11",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "counts under 11 suppressed" in done.stdout
    page = (out / "chartaudit-2026-10.html").read_text(encoding="utf-8")
    assert "Counts under 11 are suppressed (shown as \u201c&lt;11\u201d)" in page
    assert '<td class="num suppressed" data-field="denominator">&lt;11</td>' in page
    refused = chartaudit(
        "report", "--period", "2026-10", "--warehouse", published, "--out", out,
        "--suppress-below", "0",
    )  # fmt: skip
    assert refused.returncode != 0


def test_run_suppresses_small_counts_in_the_report_and_the_artifact_table(generated, tmp_path):
    out, path = tmp_path / "out", tmp_path / "audit.duckdb"
    done = chartaudit(
        "run", generated, "--period", "2026-10", "--warehouse", path, "--out", out,
        "--suppress-below", "11",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    page = (out / "chartaudit-2026-10.html").read_text(encoding="utf-8")
    assert "Counts under 11 are suppressed (shown as \u201c&lt;11\u201d)" in page
    # The artifact table: exactly the measures with 1 to 10 cases read "<11" throughout.
    from chartaudit.flows.monthly_audit import measure_summary_table

    with warehouse.connect(path, read_only=True) as con:
        small = {
            m
            for (m,) in con.execute(
                "SELECT measure_id FROM latest_measure_summary WHERE period = '2026-10'"
                " AND stratum_kind = 'all' AND denominator BETWEEN 1 AND 10"
            ).fetchall()
        }
    table = measure_summary_table(path, "2026-10", 11)
    assert small and len(table) > len(small)
    for row in table:
        hidden = row["measure"] in small
        assert (set(list(row.values())[1:]) == {"<11"}) is hidden, row
    assert "<11" not in str(measure_summary_table(path, "2026-10"))


def test_generate_is_deterministic(tmp_path):
    for name in ("a", "b"):
        done = chartaudit("generate", tmp_path / name, "--patients", "600", "--seed", "3")
        assert done.returncode == 0, done.stderr
    for file in (tmp_path / "a").iterdir():
        assert file.read_bytes() == (tmp_path / "b" / file.name).read_bytes()


def test_demo_backfills_every_month_of_the_demo_extract_and_a_second_demo_skips_them(tmp_path):
    """The README's first command, in an empty folder: a real Prefect backfill of the 13
    months of the demo extract in which every measure is computable (2025-10 to 2026-10; the
    extract starts 2024-09-01 to hold their look-backs); run again, it audits nothing and still
    says where the report is."""
    done = chartaudit("demo", cwd=tmp_path, prefect_home=tmp_path / ".prefect")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    report = tmp_path / "reports" / "out" / "chartaudit-2026-10.html"
    assert f"report:    {report.resolve()}" in done.stdout
    assert f"warehouse: {(tmp_path / 'audit.duckdb').resolve()}" in done.stdout
    assert "13 succeeded, 0 skipped (already succeeded), 0 failed" in done.stdout
    months = [f"2025-{m}" for m in (10, 11, 12)] + [f"2026-{m:02d}" for m in range(1, 11)]
    with warehouse.connect(tmp_path / "audit.duckdb", read_only=True) as con:
        audits = con.execute(
            "SELECT period, status FROM runs WHERE kind = 'audit' ORDER BY period"
        ).fetchall()
        assert audits == [(m, "succeeded") for m in months]
        counts = con.execute(
            "SELECT period, measure_id, outcome, count(*) FROM latest_case_results"
            " GROUP BY ALL ORDER BY ALL"
        ).fetchall()
        ledger = con.execute("SELECT * FROM runs ORDER BY run_id").fetchall()
    assert "2025-10 to 2026-10, the 13 complete months in which every measure's look-back" in (
        " ".join(done.stdout.split())
    )
    # Every month's cases have the outcomes the generator's answer key gives them, every
    # measure in every month (the key judges from the extract's first month; the demo audits
    # the months whose look-backs the extract holds).
    key = answer_key(Path(__file__).parents[2] / "sample_data" / "demo_extract")
    key = key.filter(pl.col("period").is_in(months))
    expected = key.group_by("period", "measure_id", "outcome").len().sort(pl.all()).rows()
    assert counts == expected
    assert {(p, m) for p, m, *_ in counts} == {
        (p, f"LN-{n:02d}") for p in months for n in range(1, 16)
    }
    html = report.read_text(encoding="utf-8")
    for number in range(1, 16):  # every measure has its section in the report
        assert f'id="measure-LN-{number:02d}"' in html
    # The trend of every measure has a rate in each of the 13 months, none not computable.
    assert "not computable" not in html
    assert html.count("13 months, 13 with a rate.") == 15

    again = chartaudit("demo", cwd=tmp_path, prefect_home=tmp_path / ".prefect")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr
    assert "0 succeeded, 13 skipped (already succeeded), 0 failed" in again.stdout
    assert f"report:    {report.resolve()}" in again.stdout
    with warehouse.connect(tmp_path / "audit.duckdb", read_only=True) as con:
        assert con.execute("SELECT * FROM runs ORDER BY run_id").fetchall() == ledger
