"""The answer key: every scenario, the decided outcomes, and agreement with the data itself."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chartaudit.sample_data.generator import GeneratedExtract, generate_extract
from tests.sample_data.generator_reference import answer_key_cases, read_csv, reference_cases

CHICAGO = ZoneInfo("America/Chicago")

# Case-producing scenarios and the outcome each must get (a set when it depends on placement).
EXPECTED_OUTCOMES = {
    "ln01_mri_1h": {"met"},
    "ln01_mri_3h30": {"met"},
    "ln01_mri_11h": {"met"},
    "ln01_mri_12h00": {"met"},
    "ln01_mri_12h01": {"not_met"},
    "ln01_mri_minus20h": {"met"},
    "ln01_mri_30h": {"not_met"},
    "ln01_no_mri": {"not_met"},
    "ln01_mri_cancelled": {"not_met"},
    "ln01_cervical_mri_only": {"not_met"},
    "ln01_cauda_dx_dot": {"met"},
    "ln01_cauda_dx_nodot": {"met"},
    "ln01_dst_spring_forward": {"met"},
    "ln01_dst_fall_back": {"not_met"},
    "ln01_excl_contraindication": {"excluded"},
    "ln01_excl_left_ama": {"excluded"},
    "ln01_transferred_20h": {"not_met"},
    "ln01_excl_died": {"excluded"},
    "ln01_pending_no_mri": {"pending"},
    "ln01_end_day_mri_2h": {"met"},
    "ln01_repeat_10d_45d": {"met"},
    "ln01_repeat_20d_35d": {"met", "not_met"},
    "ln05_back_pain_mri_3d": {"met"},
    "ln05_back_pain_mri_14d00": {"met"},
    "ln05_back_pain_mri_14d01": {"not_met"},
    "ln05_back_pain_no_mri": {"not_met"},
    "ln05_back_pain_mri_minus5d": {"met"},
    "ln05_malignancy_mri": {"met"},
    "ln05_malignancy_no_mri": {"not_met"},
    "ln05_atypical_mri": {"met"},
    "ln05_atypical_no_mri": {"not_met"},
    "ln05_excl_red_flag": {"excluded", "met"},  # LN-05 excluded, LN-01 met
    "ln05_excl_death_14d": {"excluded"},
    "ln05_death_day_15": {"not_met"},
    "ln05_pending_no_mri": {"pending"},
    "ln05_repeat_7d": {"met"},
    "ln07_e119_local_normal": {"met"},
    "ln07_e1142_local_abnormal": {"met"},
    "ln07_e109_snomed_exam": {"met"},
    "ln07_snomed_dx_order_g9226": {"met"},
    "ln07_e139_order_2028f": {"met"},
    "ln07_age_18": {"met"},
    "ln07_screen_at_window_start": {"met"},
    "ln07_screen_13mo_ago": {"not_met"},
    "ln07_screen_1min_before_window": {"not_met"},
    "ln07_monofilament_not_done": {"not_met"},
    "ln07_no_screen": {"not_met"},
    "ln07_order_not_completed": {"not_met"},
    "ln07_excl_amputation_q7203": {"excluded"},
    "ln07_excl_amputation_z89_bilateral": {"excluded"},
    "ln07_one_side_amputation": {"met"},
    "ln07_excl_palliative": {"excluded"},
    "ln07_palliative_before_window": {"not_met"},
}
NO_CASE_SCENARIOS = {
    "ln05_no_risk_feature",
    "ln05_malignancy_after_index",
    "ln07_no_encounter_12mo",
    "ln07_age_17",
    "ln07_prediabetes_only",
    "ln07_dx_after_period",
}


def instant(utc_text: str) -> datetime:
    return datetime.strptime(utc_text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def local(utc_text: str) -> datetime:
    return instant(utc_text).astimezone(CHICAGO)


def by_scenario(key_rows: list[dict[str, str]]) -> dict[str, list[dict[str, str]]]:
    grouped = defaultdict(list)
    for row in key_rows:
        grouped[row["scenario"]].append(row)
    return grouped


def test_every_scenario_appears_with_its_decided_outcome(key_rows: list[dict[str, str]]) -> None:
    grouped = by_scenario(key_rows)
    assert set(grouped) == set(EXPECTED_OUTCOMES)
    for scenario, rows in grouped.items():
        assert {r["outcome"] for r in rows} <= EXPECTED_OUTCOMES[scenario], scenario


def test_outcome_mix_per_measure(key_rows: list[dict[str, str]]) -> None:
    mix = defaultdict(Counter)
    for row in key_rows:
        mix[row["measure_id"]][row["outcome"]] += 1
    assert set(mix) == {"LN-01", "LN-05", "LN-07"}
    assert set(mix["LN-01"]) == set(mix["LN-05"]) == {"met", "not_met", "excluded", "pending"}
    assert set(mix["LN-07"]) == {"met", "not_met", "excluded"}
    for measure in mix.values():  # mostly judged cases, not exclusions or pending ones
        assert measure["met"] + measure["not_met"] > measure["excluded"] + measure["pending"]


def test_no_case_scenarios_exist_but_produce_no_case(
    extract300: GeneratedExtract, key_rows: list[dict[str, str]]
) -> None:
    keyed = {row["patient_id"] for row in key_rows}
    for scenario in NO_CASE_SCENARIOS:
        patients = extract300.scenario_patients[scenario]
        assert patients, scenario
        assert not keyed & set(patients), scenario
    background = extract300.scenario_counts["background"]
    assert background > sum(extract300.scenario_counts.values()) / 2


def test_every_coverage_month_has_ln01_and_ln05_cases_and_ln07_only_the_last(
    key_rows: list[dict[str, str]],
) -> None:
    months = {f"{2025 + (9 + k) // 12}-{(9 + k) % 12 + 1:02d}" for k in range(13)}
    assert min(months) == "2025-10" and max(months) == "2026-10"
    for measure in ("LN-01", "LN-05"):
        assert {r["period"] for r in key_rows if r["measure_id"] == measure} == months
    ln07 = [r for r in key_rows if r["measure_id"] == "LN-07"]
    assert {r["period"] for r in ln07} == {"2026-10"}
    assert {r["index_time"] for r in ln07} == {"2026-11-01T05:00:00Z"}  # local midnight, CDT


def test_periods_encounters_and_index_times_are_consistent(
    extract300: GeneratedExtract, key_rows: list[dict[str, str]]
) -> None:
    encounters = {r["encounter_id"]: r for r in read_csv(extract300.tables["encounters"])}
    for row in key_rows:
        if row["measure_id"] == "LN-07":
            assert row["encounter_id"] == ""
            continue
        assert local(row["index_time"]).strftime("%Y-%m") == row["period"]
        assert encounters[row["encounter_id"]]["patient_id"] == row["patient_id"]


def test_no_answer_key_patient_has_a_dirty_row(
    extract300: GeneratedExtract,
    key_rows: list[dict[str, str]],
    quarantine_rows: list[dict[str, str]],
) -> None:
    tables = {name: read_csv(path) for name, path in extract300.tables.items()}
    dirty_patients = {
        tables[q["table_name"]][int(q["source_line"]) - 2]["patient_id"] for q in quarantine_rows
    }
    assert len(dirty_patients) == len(quarantine_rows)
    assert not dirty_patients & {row["patient_id"] for row in key_rows}


def test_episode_chaining_scenarios(key_rows: list[dict[str, str]]) -> None:
    grouped = by_scenario(key_rows)
    for scenario, gap in (("ln01_repeat_10d_45d", 45), ("ln01_repeat_20d_35d", 35)):
        per_patient = defaultdict(list)
        for row in grouped[scenario]:
            per_patient[row["patient_id"]].append(instant(row["index_time"]))
        for times in per_patient.values():
            assert len(times) == 2
            assert max(times) - min(times) == timedelta(days=gap)
    assert Counter(r["patient_id"] for r in grouped["ln05_repeat_7d"]).most_common(1)[0][1] == 1
    red_flag = Counter((r["patient_id"], r["measure_id"]) for r in grouped["ln05_excl_red_flag"])
    assert {measure for _, measure in red_flag} == {"LN-01", "LN-05"}


def test_dst_scenarios_are_on_the_decided_wall_clock_times(
    extract300: GeneratedExtract, key_rows: list[dict[str, str]]
) -> None:
    orders = read_csv(extract300.tables["orders"])
    expected = {
        "ln01_dst_spring_forward": ("2026-03-07 21:00", "2026-03-08 10:00:00", 12),
        "ln01_dst_fall_back": ("2025-11-01 22:00", "2025-11-02 10:00:00", 13),
    }
    for row in key_rows:
        if row["scenario"] not in expected:
            continue
        flag_local, mri_text, real_hours = expected[row["scenario"]]
        index = local(row["index_time"])
        assert index.strftime("%Y-%m-%d %H:%M") == flag_local
        mri = next(
            o for o in orders if o["encounter_id"] == row["encounter_id"] and o["performed_time"]
        )
        assert mri["performed_time"] == mri_text
        performed = datetime.fromisoformat(mri_text).replace(tzinfo=CHICAGO)
        # aware datetimes in one zone subtract as wall clocks: compare real instants
        assert performed.astimezone(UTC) - index.astimezone(UTC) == timedelta(hours=real_hours)


def test_answer_key_matches_an_independent_reading_of_the_data(
    extract300: GeneratedExtract,
) -> None:
    assert answer_key_cases(extract300.out_dir) == reference_cases(extract300.out_dir)


@pytest.mark.parametrize(
    ("timezone", "end_month", "months"),
    [("Europe/Berlin", "2025-04", 14), ("UTC", "2026-01", 6), ("Australia/Sydney", "2026-04", 13)],
)
def test_other_zones_and_coverages_agree_too(
    tmp_path: Path, timezone: str, end_month: str, months: int
) -> None:
    result = generate_extract(
        tmp_path, patients=400, timezone=timezone, end_month=end_month, months=months
    )
    assert answer_key_cases(tmp_path) == reference_cases(tmp_path)
    assert result.case_counts["LN-01"]["met"] > 0


@settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seed=st.integers(min_value=0, max_value=2**31))
def test_answer_key_matches_the_data_for_any_seed(tmp_path: Path, seed: int) -> None:
    generate_extract(tmp_path, patients=300, seed=seed)
    assert answer_key_cases(tmp_path) == reference_cases(tmp_path)
