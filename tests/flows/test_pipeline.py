"""End to end without Prefect: generated extract -> steps -> warehouse, checked against the
generator's answer key (the outcome every case must get)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl
import pytest

from chartaudit.audits.engine import Catalogue, run_measures
from chartaudit.audits.period import AuditPeriod
from chartaudit.flows import steps
from chartaudit.sample_data import DEMO_EXTRACT
from chartaudit.sample_data.generator import generate_extract
from chartaudit.schemas.validation import load_extract
from chartaudit.storage import warehouse
from tests.flows.conftest import KEY_COLUMNS, answer_key, case_rows

# Scenarios the key must hold, so that matching the key proves each edge, not just the bulk.
REQUIRED_SCENARIOS = {
    "ln01_mri_12h00": "met",
    "ln01_mri_12h01": "not_met",
    "ln01_dst_spring_forward": "met",
    "ln01_dst_fall_back": "not_met",
    "ln01_excl_contraindication": "excluded",
    "ln01_excl_left_ama": "excluded",
    "ln01_excl_died": "excluded",
    "ln01_pending_no_mri": "pending",
    "ln05_back_pain_mri_14d00": "met",
    "ln05_back_pain_mri_14d01": "not_met",
    "ln05_excl_red_flag": "excluded",
    "ln05_excl_death_14d": "excluded",
    "ln05_pending_no_mri": "pending",
    "ln07_excl_amputation_q7203": "excluded",
    "ln07_excl_amputation_z89_bilateral": "excluded",
    "ln07_excl_palliative": "excluded",
    "ln07_screen_13mo_ago": "not_met",
}


RULESETS = ("source-2025", "evidence-2026")
AUDITS = [(extract, ruleset) for extract in ("generated_large", "demo") for ruleset in RULESETS]


@pytest.fixture(scope="module", params=AUDITS, ids=[f"{e}-{r}" for e, r in AUDITS])
def audited(request) -> tuple[Path, str, pl.DataFrame]:
    """An extract with every month audited by the engine directly (no warehouse), under one
    rule set: the 5,000-patient generated extract and the committed demo extract."""
    name, ruleset = request.param
    extract = DEMO_EXTRACT if name == "demo" else request.getfixturevalue(name)
    validated = load_extract(extract)
    manifest = validated.manifest
    catalogue = Catalogue.load()
    with steps.canonical_connection(validated, manifest.extract_id) as con:
        for period in sorted(answer_key(extract, ruleset)["period"].unique()):
            audit = AuditPeriod.of(period, manifest.timezone, manifest.coverage_end)
            run_measures(con, catalogue, audit, ruleset, run_id=f"test-{period}")
        return extract, ruleset, con.sql("SELECT * FROM case_results").pl()


def test_the_key_holds_every_edge_case(generated):
    key = answer_key(generated)
    last = key["period"].max()  # LN-07 scenarios are written for the last month's audit
    key = key.filter((pl.col("measure_id") != "LN-07") | (pl.col("period") == last))
    found = {}
    for scenario, measure, outcome in key.select("scenario", "measure_id", "outcome").iter_rows():
        if scenario.startswith(measure.lower().replace("-", "")):  # ln05_… rows of LN-05
            found.setdefault(scenario, set()).add(outcome)
    assert {s: found.get(s) for s in REQUIRED_SCENARIOS} == {
        s: {o} for s, o in REQUIRED_SCENARIOS.items()
    }


def test_every_outcome_equals_the_answer_key(audited):
    """Every case of every measure, in every month, under both rule sets: the engine and the
    generator's independent judge agree case by case, in both directions."""
    extract, ruleset, engine_results = audited
    key = in_effect(answer_key(extract, ruleset), ruleset)
    # LN-07 is keyed only for months whose 12-month look-back lies inside the coverage.
    last = key.filter(pl.col("measure_id") == "LN-07")["period"].unique().to_list()
    got = case_rows(engine_results).filter(
        (pl.col("measure_id") != "LN-07") | pl.col("period").is_in(last)
    )
    missing = key.join(got, on=KEY_COLUMNS, how="anti")
    unexpected = got.join(key.drop("scenario"), on=KEY_COLUMNS, how="anti")
    assert missing.height == 0, f"cases the engine judged differently or missed:\n{missing}"
    assert unexpected.height == 0, f"cases the key does not expect:\n{unexpected}"
    assert got.height == key.height
    assert set(got["measure_id"]) == {m.id for m in Catalogue.load().measures}
    outcomes = set(got.filter(pl.col("measure_id") == "LN-01")["outcome"])
    assert outcomes == {"met", "not_met", "excluded", "pending"}


def in_effect(key: pl.DataFrame, ruleset: str) -> pl.DataFrame:
    """The key's cases of months in which their measure has a version in effect (from 2025-01):
    the demo extract starts in 2024-09 to hold later months' look-backs, and the engine audits
    no month without a version (the key judges every month of the coverage)."""
    catalogue = Catalogue.load()
    pairs = key.select("measure_id", "period").unique()
    audited = [
        (m, p)
        for m, p in pairs.iter_rows()
        if catalogue.measure(m).version_for(ruleset, date(int(p[:4]), int(p[5:]), 1))
    ]
    frame = pl.DataFrame(audited, schema=["measure_id", "period"], orient="row")
    return key.join(frame, on=["measure_id", "period"], how="semi")


def test_every_case_records_the_rule_set_and_measure_version_that_judged_it(audited):
    _, ruleset, engine_results = audited
    versions = engine_results.select("measure_id", "ruleset", "measure_version").unique()
    changed = {"LN-10", "LN-11", "LN-12", "LN-13"}  # their evidence-2026 versions differ
    expected = {
        (
            f"LN-{n:02d}",
            ruleset,
            "2026.1" if ruleset == "evidence-2026" and f"LN-{n:02d}" in changed else "2025.1",
        )
        for n in range(1, 16)
    }
    assert set(versions.iter_rows()) == expected


@pytest.fixture(scope="module")
def generated_parquet(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("parquet") / "synthetic"
    generate_extract(folder, patients=600, months=13, seed=5, fmt="parquet")
    return folder


def expected_rows(path: Path) -> list[tuple]:
    expected = pl.read_csv(path, schema_overrides={"source_line": pl.Int64})
    return sorted(expected.select("table_name", "source_line", "column_name", "reason").rows())


@pytest.mark.parametrize("extract", ["generated", "generated_parquet"])
def test_dirty_rows_are_quarantined_and_counts_add_up(extract, request):
    generated = request.getfixturevalue(extract)
    validated = load_extract(generated)
    columns = ("table_name", "source_line", "column_name", "rule")
    # Each bad row, with the column and the rule that put it there, and nothing else ...
    want = expected_rows(generated / "expected_quarantine.csv")
    assert sorted(validated.quarantine.select(columns).rows()) == want
    # ... and each row that loads with a warning (a back-dated order, a dose above the label)
    warned = expected_rows(generated / "expected_data_quality.csv")
    assert sorted(validated.data_quality.select(columns).rows()) == warned
    assert set(validated.data_quality["level"]) == {"warning"}
    counts = validated.load_counts
    assert (counts["loaded_rows"] + counts["quarantined_rows"] == counts["input_rows"]).all()
    assert counts["quarantined_rows"].sum() == len({(t, line) for t, line, *_ in want})
    assert counts["warned_rows"].sum() == len({(t, line) for t, line, *_ in warned})
    for table, frame in validated.tables.items():
        row = counts.filter(pl.col("table_name") == table).row(0, named=True)
        assert frame.height == row["loaded_rows"]


def run_pipeline(
    extract: Path,
    warehouse_path: Path,
    work: Path,
    period: str = "2026-10",
    allow_partial_month: bool = False,
):
    """The flow's steps in order, as the Prefect flow runs them."""
    work.mkdir()
    plan = steps.load_step(extract, work, period, allow_partial_month=allow_partial_month)
    with warehouse.run_lock(warehouse_path, plan.record):
        warehouse.begin_run(warehouse_path, plan.record)
        steps.validate_step(work)
        steps.audit_step(work, warehouse_path)
        steps.summarise_step(work)
        steps.publish_step(work, warehouse_path)
    return plan


def latest_cases(warehouse_path: Path) -> list[tuple]:
    with warehouse.connect(warehouse_path, read_only=True) as con:
        return con.execute(
            "SELECT * EXCLUDE (run_id) FROM latest_case_results ORDER BY ALL"
        ).fetchall()


def test_a_run_publishes_the_month_and_a_rerun_does_not_duplicate_it(generated, tmp_path):
    path = tmp_path / "audit.duckdb"
    run_pipeline(generated, path, tmp_path / "w1")
    first = latest_cases(path)
    key = answer_key(generated).filter(pl.col("period") == "2026-10")
    assert len(first) == key.height
    run_pipeline(generated, path, tmp_path / "w2")
    assert latest_cases(path) == first
    with warehouse.connect(path, read_only=True) as con:
        runs = con.execute("SELECT status, count(*) FROM runs GROUP BY ALL").fetchall()
        stored = con.execute("SELECT count(*) FROM case_results").fetchone()[0]
        summary = con.execute(
            "SELECT measure_id, denominator, met, not_met, excluded, pending"
            " FROM latest_measure_summary WHERE stratum_kind = 'all' ORDER BY 1"
        ).fetchall()
    assert runs == [("succeeded", 2)]
    assert stored == 2 * len(first)
    expected = []
    for measure in sorted(m.id for m in Catalogue.load().measures):
        outcomes = key.filter(pl.col("measure_id") == measure)["outcome"].to_list()
        met, not_met = outcomes.count("met"), outcomes.count("not_met")
        counts = (outcomes.count("excluded"), outcomes.count("pending"))
        expected.append((measure, met + not_met, met, not_met, *counts))
    assert summary == expected
