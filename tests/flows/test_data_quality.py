"""Warnings are not quarantine, end to end through the steps; and the data-quality limits of a
run (settings [thresholds]) stop it before the audit with one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from chartaudit.flows import steps
from chartaudit.flows.settings import SettingsError, TableLimits, ThresholdSettings, thresholds
from chartaudit.storage import warehouse
from tests.schemas.builders import clean_rows, write_extract


def back_dated_mri(folder: Path) -> Path:
    """P1's saddle anaesthesia at 03:20; the spine MRI was acquired at 05:00 and its order
    signed at 05:15 (performed_time 15 minutes before ordered_time)."""
    rows = clean_rows()
    rows["findings"].append(
        {
            "patient_id": "P1",
            "encounter_id": "E1",
            "code_system": "LOCAL",
            "code": "saddle_anesthesia",
            "result": "present",
            "value_num": "",
            "recorded_time": "2026-03-08 03:20",
        }
    )
    rows["orders"][0].update(ordered_time="2026-03-08 05:15", performed_time="2026-03-08 05:00")
    return write_extract(folder, rows)


def run_steps(extract: Path, path: Path, work: Path, period: str, limits=None):
    work.mkdir()
    plan = steps.load_step(extract, work, period)
    with warehouse.run_lock(path, plan.record):
        warehouse.begin_run(path, plan.record)
        steps.validate_step(work, limits)
        steps.audit_step(work, path)
        steps.summarise_step(work)
        steps.publish_step(work, path)
    return plan


def test_a_red_flag_mri_signed_after_the_scan_meets_ln01_and_is_a_warning(tmp_path):
    path = tmp_path / "audit.duckdb"
    extract = back_dated_mri(tmp_path / "x")
    # one order of two has a warning: a share no real extract has, so the limit is lifted
    plan = run_steps(
        extract, path, tmp_path / "work", "2026-03", ThresholdSettings(warning_share=1)
    )
    with warehouse.connect(path, read_only=True) as con:
        cases = con.execute(
            "SELECT patient_id, encounter_id, outcome, hours_to_event FROM latest_case_results"
            " WHERE measure_id = 'LN-01'"
        ).fetchall()
        quarantine = con.execute("SELECT count(*) FROM quarantine").fetchone()[0]
        warnings = con.execute(
            "SELECT run_id, period, table_name, source_file, source_line, column_name, rule,"
            " value, level FROM latest_data_quality"
        ).fetchall()
        counts = con.execute(
            "SELECT input_rows, loaded_rows, quarantined_rows, warned_rows FROM load_counts"
            " WHERE table_name = 'orders'"
        ).fetchall()
        loaded = con.execute("SELECT order_id FROM orders ORDER BY 1").fetchall()
    # the red flag at 03:20 CDT (08:20Z), the scan at 05:00 CDT (10:00Z): 1 h 40 min, met
    assert cases == [("P1", "E1", "met", pytest.approx(100 / 60))]
    assert quarantine == 0
    assert warnings == [
        (
            plan.run_id,
            "2026-03",
            "orders",
            "orders.csv",
            2,
            "performed_time",
            "time_order",
            "2026-03-08 10:00:00Z before ordered_time 2026-03-08 10:15:00Z",
            "warning",
        )
    ]
    assert counts == [(2, 2, 0, 1)]
    assert loaded == [("O1",), ("O2",)]


def validated_with(tmp_path: Path, rows: dict) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    steps.load_step(write_extract(tmp_path / "x", rows), work, "2026-03")
    return work


def three_bad_orders() -> dict:
    """orders: 5 rows; line 3 unparseable, lines 4 and 5 have unknown statuses; lines 2 and 6
    load, each with a warning."""
    rows = clean_rows()
    first = rows["orders"][0]
    first["performed_time"] = "2026-03-08 03:00"  # before ordered: a warning
    rows["orders"] += [
        dict(first, order_id="O3", ordered_time="2026-13-01 10:00"),
        dict(first, order_id="O4", status="done"),
        dict(first, order_id="O5", status="on hold"),
        dict(first, order_id="O6"),
    ]
    del rows["orders"][1]  # the referral: 5 orders in all
    return rows


@pytest.mark.parametrize(
    ("limits", "error", "message"),
    [
        (
            ThresholdSettings(),
            steps.QuarantineLimitExceeded,
            'orders: 60.0% of rows quarantined (mostly "not_allowed"), over the limit of 5.0%',
        ),
        (
            ThresholdSettings(tables={"orders": TableLimits(quarantine_share=0.6)}),
            steps.WarningLimitExceeded,
            'orders: 40.0% of rows have data-quality warnings (mostly "time_order"), over the'
            " limit of 10.0%",
        ),
        (
            ThresholdSettings(quarantine_share=1, quarantine_rows=2, warning_share=1),
            steps.QuarantineLimitExceeded,
            'orders: 3 rows quarantined (mostly "not_allowed"), over the limit of 2 rows',
        ),
        (
            ThresholdSettings(quarantine_share=1, warning_share=1, warning_rows=1),
            steps.WarningLimitExceeded,
            'orders: 2 rows with data-quality warnings (mostly "time_order"), over the limit of'
            " 1 row",
        ),
    ],
    ids=["quarantine-share", "warning-share", "quarantine-rows", "warning-rows"],
)
def test_a_table_past_a_limit_stops_the_run_with_one_line(tmp_path, limits, error, message):
    work = validated_with(tmp_path, three_bad_orders())
    with pytest.raises(error) as caught:
        steps.validate_step(work, limits)
    assert str(caught.value) == message


def test_limits_that_are_not_passed_let_the_run_go_on(tmp_path):
    work = validated_with(tmp_path, three_bad_orders())
    limits = ThresholdSettings(
        quarantine_share=0.6, quarantine_rows=3, warning_share=0.4, warning_rows=2
    )
    validated = steps.validate_step(work, limits)  # exactly at every limit: accepted
    assert validated.load_counts.filter(table_name="orders").row(0)[2:] == (5, 2, 3, 2)


def test_the_quarantine_limit_names_the_tables_most_frequent_rule(tmp_path):
    rows = three_bad_orders()
    rows["orders"][3]["status"] = "completed"  # O5 loads: one not_allowed row left (O4) ...
    rows["orders"][1]["code_system"] = "ICD9"  # ... and O3 is unparseable AND not_allowed
    work = validated_with(tmp_path, rows)
    with pytest.raises(steps.QuarantineLimitExceeded) as caught:
        steps.validate_step(work)
    assert str(caught.value) == (
        'orders: 40.0% of rows quarantined (mostly "not_allowed"), over the limit of 5.0%'
    )


def write_settings(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "chartaudit.toml").write_text(text, encoding="utf-8")
    return folder


def test_limits_come_from_the_settings_file_and_the_environment(tmp_path, monkeypatch):
    monkeypatch.chdir(
        write_settings(
            tmp_path,
            "[thresholds]\nquarantine_share = 0.02\nwarning_rows = 50\n"
            "[thresholds.tables.orders]\nwarning_share = 0.3\nquarantine_rows = 10\n",
        )
    )
    monkeypatch.setenv("CHARTAUDIT_THRESHOLDS__WARNING_SHARE", "0.2")
    monkeypatch.setenv("CHARTAUDIT_THRESHOLDS__TABLES__LABS__QUARANTINE_SHARE", "0.5")
    limits = thresholds()
    assert limits.for_table("orders") == TableLimits(
        quarantine_share=0.02, quarantine_rows=10, warning_share=0.3, warning_rows=50
    )
    assert limits.for_table("labs") == TableLimits(
        quarantine_share=0.5, quarantine_rows=None, warning_share=0.2, warning_rows=50
    )
    assert limits.for_table("patients") == TableLimits(
        quarantine_share=0.02, quarantine_rows=None, warning_share=0.2, warning_rows=50
    )
    # --max-quarantine-share overrides the quarantined share of every table
    overridden = thresholds(0.3)
    assert [overridden.for_table(t).quarantine_share for t in ("orders", "labs")] == [0.3, 0.3]
    assert overridden.for_table("orders").quarantine_rows == 10


def test_the_defaults_are_5_percent_quarantined_and_10_percent_warned(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert thresholds().for_table("orders") == TableLimits(
        quarantine_share=0.05, quarantine_rows=None, warning_share=0.10, warning_rows=None
    )


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("[thresholds]\nquarantine_share = 1.5\n", "thresholds.quarantine_share"),
        ("[thresholds.tables.order]\nwarning_share = 0.1\n", "no table 'order'"),
        ("[thresholds]\nwarning_rows = -1\n", "thresholds.warning_rows"),
        ("[thresholds]\nwarnings_share = 0.1\n", "thresholds.warnings_share"),
    ],
)
def test_a_malformed_threshold_is_a_one_line_settings_error(tmp_path, monkeypatch, text, words):
    monkeypatch.chdir(write_settings(tmp_path, text))
    with pytest.raises(SettingsError) as caught:
        thresholds()
    assert words in str(caught.value) and "\n" not in str(caught.value)


def test_max_quarantine_share_must_be_a_share(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SettingsError, match=r"^--max-quarantine-share 5.0 is not a share"):
        thresholds(5.0)


def test_the_demo_extract_passes_the_default_limits(tmp_path, monkeypatch):
    from chartaudit.sample_data import DEMO_EXTRACT

    monkeypatch.chdir(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    steps.load_step(DEMO_EXTRACT, work, None)
    validated = steps.validate_step(work, thresholds())
    assert validated.data_quality.height == 16  # expected_data_quality.csv


def test_a_warehouse_from_before_data_quality_gains_it_when_opened_for_writing(tmp_path):
    path = tmp_path / "audit.duckdb"
    with warehouse.connect(path) as con:  # then made to look like an older chartaudit's
        con.execute("DROP VIEW latest_data_quality")
        con.execute("DROP TABLE data_quality")
        con.execute("ALTER TABLE load_counts DROP COLUMN warned_rows")
    with warehouse.connect(path) as con:
        columns = [r[0] for r in con.execute("DESCRIBE load_counts").fetchall()]
        assert columns[-2:] == ["quarantined_rows", "warned_rows"]
        assert con.execute("SELECT count(*) FROM latest_data_quality").fetchone() == (0,)
