"""A site really named `unknown` (or named like the page's label for a missing one) and the cases
with no site recorded stay apart: in measure_summary, on the page, in the export, and under
suppression.

The extract is the bundled demo one with SITE-A renamed `unknown` and SITE-B renamed
`(not recorded)`. Its cases with no site are real ones: the generator's `ln03_problem_list_dx`
patients have a red flag recorded on the problem list, outside any encounter, so their LN-01 case
has no encounter and no site. The expected counts come from the answer key and the encounters
file, not from the code under test.
"""

from __future__ import annotations

import csv
import re
import shutil
from pathlib import Path

import polars as pl
import pytest

from chartaudit.reports.export import write_export
from chartaudit.reports.formatting import NOT_RECORDED
from chartaudit.reports.render import render_report
from chartaudit.sample_data import DEMO_EXTRACT
from chartaudit.storage import warehouse
from tests.flows.test_pipeline import run_pipeline

MEASURE = "LN-01"
RENAMED = {"SITE-A": "unknown", "SITE-B": NOT_RECORDED}
OUTCOMES = ("met", "not_met", "excluded", "pending")


def _period_with_a_case_without_site(key: pl.DataFrame) -> str:
    """The latest month in which an LN-01 case has no encounter (so no site)."""
    periods = key.filter(
        (pl.col("measure_id") == MEASURE)
        & (pl.col("ruleset") == "source-2025")
        & pl.col("encounter_id").is_null()
    )["period"]
    assert periods.len() > 0, "the demo extract has no LN-01 case without an encounter"
    return periods.max()


def _expected_strata(extract: Path, period: str) -> dict[str | None, tuple[int, ...]]:
    """LN-01's site strata from the answer key: site -> (denominator, met, not met, excluded,
    pending); None for the cases with no encounter."""
    key = pl.read_csv(extract / "answer_key.csv", infer_schema=False)
    encounters = pl.read_csv(extract / "encounters.csv", infer_schema=False)
    cases = key.filter(
        (pl.col("measure_id") == MEASURE)
        & (pl.col("ruleset") == "source-2025")
        & (pl.col("period") == period)
    ).join(encounters.select("encounter_id", "site_id"), on="encounter_id", how="left")
    counted = cases.group_by("site_id").agg(
        pl.col("outcome").is_in(["met", "not_met"]).sum().alias("denominator"),
        *(pl.col("outcome").eq(o).sum().alias(o) for o in OUTCOMES),
    )
    return {r[0]: tuple(r[1:]) for r in counted.rows()}


@pytest.fixture(scope="module")
def audited(tmp_path_factory) -> tuple[Path, Path, str, dict[str | None, tuple[int, ...]]]:
    root = tmp_path_factory.mktemp("strata")
    extract = root / "extract"
    shutil.copytree(DEMO_EXTRACT, extract)
    table = pl.read_csv(extract / "encounters.csv", infer_schema=False)
    table.with_columns(pl.col("site_id").replace(RENAMED)).write_csv(extract / "encounters.csv")
    period = _period_with_a_case_without_site(
        pl.read_csv(extract / "answer_key.csv", infer_schema=False)
    )
    path = root / "audit.duckdb"
    run_pipeline(extract, path, root / "work", period)
    return path, root, period, _expected_strata(extract, period)


def _site_rows(path: Path, period: str, sql_from: str) -> dict[str | None, tuple[int, ...]]:
    with warehouse.connect(path, read_only=True) as con:
        rows = con.execute(
            "SELECT stratum, denominator, met, not_met, excluded, pending FROM " + sql_from,
            [period, MEASURE],
        ).fetchall()
    assert len({r[0] for r in rows}) == len(rows)
    return {r[0]: tuple(r[1:]) for r in rows}


def test_measure_summary_has_two_strata(audited) -> None:
    path, _, period, expected = audited
    sites = _site_rows(
        path,
        period,
        "latest_measure_summary WHERE period = ? AND measure_id = ? AND stratum_kind = 'site'",
    )
    assert None in expected and "unknown" in expected and NOT_RECORDED in expected
    assert expected[None][0] >= 1
    assert sites == expected


def _strata_table_rows(html: str) -> list[tuple[str, str, str]]:
    """(data-stratum, the value cell's markup, the denominator) of LN-01's site strata table."""
    section = html[html.index(f'id="measure-{MEASURE}"') :]
    section = section[section.index('<table class="strata">') :]
    section = section[: section.index("</table>")]
    return re.findall(
        r'data-stratum-kind="site" data-stratum="([^"]*)">\s*<td>Site</td>\s*<td>(.*?)</td>'
        r'.*?data-field="denominator">([^<]*)<',
        section,
        flags=re.S,
    )


def test_the_page_shows_them_apart(audited) -> None:
    path, root, period, expected = audited
    with warehouse.connect(path, read_only=True) as con:
        html = render_report(con, period, root / "out").read_text(encoding="utf-8")
    rows = {stratum: (cell, den) for stratum, cell, den in _strata_table_rows(html)}
    missing = '<em class="not-recorded">(not recorded)</em>'
    assert rows[""] == (missing, f"{expected[None][0]:,}")
    assert rows["unknown"] == ("unknown", f"{expected['unknown'][0]:,}")
    # A site named like the label is printed as written, upright, with its own stratum.
    assert rows["(not recorded)"] == ("(not recorded)", f"{expected[NOT_RECORDED][0]:,}")
    assert len(rows) == len(expected)


def _csv_rows(folder: Path) -> list[dict[str, str]]:
    with (folder / f"{MEASURE}-not-met.csv").open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _csv_sites(folder: Path) -> list[str]:
    return [row["site_id"] for row in _csv_rows(folder)]


def test_the_export_keeps_them_apart(audited) -> None:
    path, root, period, expected = audited
    with warehouse.connect(path, read_only=True) as con:
        folder = write_export(con, period, root / "export")
    sites = _csv_sites(folder)
    # A case with no site is an empty cell; a real value is its text.
    assert sites.count("") == expected[None][2]
    assert sites.count("unknown") == expected["unknown"][2]
    assert sites.count(NOT_RECORDED) == expected[NOT_RECORDED][2]
    summary = pl.read_parquet(folder / "measure_summary.parquet").filter(
        (pl.col("measure_id") == MEASURE) & (pl.col("stratum_kind") == "site")
    )
    by_site = {r[0]: r[1] for r in summary.select("stratum", "denominator").rows()}
    assert by_site == {site: counts[0] for site, counts in expected.items()}
    readme = " ".join((folder / "README.txt").read_text().split())
    assert "setting (an empty cell: not recorded in the extract; a value is its text" in readme
    assert "with an empty (null) stratum counts the cases with none recorded" in readme


def test_suppression_treats_them_apart(audited) -> None:
    path, root, period, expected = audited
    below = expected[None][0] + 1  # the cases with no site are under it ...
    assert min(expected["unknown"][0], expected[NOT_RECORDED][0]) >= below  # ... the others not
    with warehouse.connect(path, read_only=True) as con:
        folder = write_export(con, period, root / "suppressed", suppress_below=below)
    summary = pl.read_parquet(folder / "measure_summary.parquet").filter(
        (pl.col("measure_id") == MEASURE) & (pl.col("stratum_kind") == "site")
    )
    hidden = {r[0]: r[1] for r in summary.select("stratum", "suppressed").rows()}
    assert hidden[None] is True
    assert hidden["unknown"] is False and hidden[NOT_RECORDED] is False
    # Every not-met case stays but those of a hidden site or setting stratum: the hidden site
    # strata are the one with no site and the smallest other (so it cannot be subtracted out).
    with warehouse.connect(path, read_only=True) as con:
        folder_all = write_export(con, period, root / "unsuppressed")
    strata = pl.read_parquet(folder / "measure_summary.parquet").filter(
        (pl.col("measure_id") == MEASURE) & pl.col("suppressed")
    )
    hidden_sites, hidden_settings = (
        set(strata.filter(pl.col("stratum_kind") == kind)["stratum"].fill_null(""))
        for kind in ("site", "setting")
    )
    named = [(c[0], site) for site, c in expected.items() if site is not None and c[0] > 0]
    smallest_named = min(named)[1]
    assert hidden_sites == {"", smallest_named}
    kept = [
        row["patient_id"]
        for row in _csv_rows(folder_all)
        if row["site_id"] not in hidden_sites and row["setting"] not in hidden_settings
    ]
    assert [row["patient_id"] for row in _csv_rows(folder)] == kept
    sites = _csv_sites(folder)
    assert "" not in sites
    assert {"unknown", NOT_RECORDED} <= set(sites)
