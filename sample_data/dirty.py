"""Dirty rows: one rule broken per row, each listed in ``expected_quarantine.csv``, or one
warning rule per row (the row loads), listed in ``expected_data_quality.csv``.

Every dirty row belongs to a background patient (no measure case), and no other row depends on
it: a quarantined patient has no encounters, a quarantined encounter has no diagnoses, findings
or orders, so quarantine never cascades and the expected list is exact.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from chartaudit.sample_data.background import background_patient
from chartaudit.sample_data.chart import Chart, Scenario
from chartaudit.sample_data.clock import Unplaceable, days, hours, minutes

UNPARSEABLE_TIMESTAMP = "2026-13-45 25:00"

# Reasons are the loader's quarantine rule names (chartaudit.schemas.models), so the expected
# list compares directly with the warehouse's quarantine table.
NOT_ALLOWED = "not_allowed"
OUT_OF_RANGE = "out_of_range"
TIME_ORDER = "time_order"
UNPARSEABLE = "unparseable_timestamp"
NOT_IN_TIMEZONE = "timestamp_not_in_timezone"
DUPLICATE_KEY = "duplicate_key"
FOREIGN_KEY = "foreign_key"
MALFORMED_CODE = "malformed_code"
MALFORMED_LOINC = "malformed_loinc"
NOT_POSITIVE = "not_positive"
IDENTIFIER = "looks_like_identifier"
FAR_AFTER_CREATED = "far_after_extract_created"
# Warning rules: the row loads and is listed in data_quality.
AFTER_CREATED = "after_extract_created"
DOSE_ABOVE_LABEL_MAX = "dose_above_label_max"


def expect(chart: Chart, table: str, line: int, column: str, reason: str) -> None:
    chart.sink.expect_quarantine(table, line, column, reason)


def expect_warning(chart: Chart, table: str, line: int, column: str, reason: str) -> None:
    chart.sink.expect_warning(table, line, column, reason)


def sex_not_allowed(chart: Chart) -> None:
    chart.sex = "Q"
    chart.patient_issue = ("sex", NOT_ALLOWED)


def birth_year_out_of_range(chart: Chart) -> None:
    chart.birth_year = 1850
    chart.patient_issue = ("birth_year", OUT_OF_RANGE)


def setting_not_allowed(chart: Chart) -> None:
    background_patient(chart)
    arrival = chart.place_anywhere(before=days(0), after=days(2))
    _, line = chart.encounter(arrival, setting="home_visit", departure=arrival + hours(1))
    expect(chart, "encounters", line, "setting", NOT_ALLOWED)


def departure_before_arrival(chart: Chart) -> None:
    background_patient(chart)
    arrival = chart.place_anywhere(before=days(1), after=days(1))
    _, line = chart.encounter(arrival, setting="outpatient", departure=arrival - hours(2))
    expect_warning(chart, "encounters", line, "departure_time", TIME_ORDER)


def order_signed_after_the_scan(chart: Chart) -> None:
    """A back-dated order: performed 15 minutes before it was signed (loads, with a warning)."""
    encounter_id = background_patient(chart)[-1]
    ordered = chart.place_anywhere(before=hours(1), after=days(1))
    line = chart.order(encounter_id, "73562", ordered=ordered, performed=ordered - minutes(15))
    expect_warning(chart, "orders", line, "performed_time", TIME_ORDER)


def dose_above_label(chart: Chart) -> None:
    """Ropinirole 10 mg three times a day (30 mg; the label's maximum is 24 mg): most likely a
    unit slip. The patient has no restless legs diagnosis, so no LN-13 case."""
    encounter_id = background_patient(chart)[-1]
    start = chart.place_anywhere(before=days(0), after=days(1))
    line = chart.medication(
        encounter_id, "ropinirole", start, rxnorm="72302", dose_mg=10.0, doses_per_day=3.0
    )
    expect_warning(chart, "medications", line, "dose_mg", DOSE_ABOVE_LABEL_MAX)


def resulted_soon_after_created(chart: Chart) -> None:
    """A lab resulted 6 h after the extract was made (clock skew): loads, with a warning."""
    encounter_id = background_patient(chart)[-1]
    collected = chart.place_anywhere(before=days(0), after=days(1))
    resulted = chart.clock.created + hours(6)
    line = chart.lab(encounter_id, "2345-7", collected, value=5.4, unit="mmol/L", resulted=resulted)
    expect_warning(chart, "labs", line, "resulted_time", AFTER_CREATED)


def recorded_long_after_created(chart: Chart) -> None:
    """A diagnosis dated a month after the extract was made: it cannot be true."""
    background_patient(chart)
    recorded = chart.clock.created + days(30)
    line = chart.diagnosis("J06.9", recorded, None, source="problem_list")
    expect(chart, "diagnoses", line, "recorded_time", FAR_AFTER_CREATED)


def icd10_dot_misplaced(chart: Chart) -> None:
    """E1.142: the dot belongs after the category (E11.42); the code cannot be trusted."""
    background_patient(chart)
    recorded = chart.place_anywhere(before=days(0), after=days(1))
    line = chart.diagnosis("E1.142", recorded, None, source="problem_list")
    expect(chart, "diagnoses", line, "code", MALFORMED_CODE)


def unparseable_timestamp(chart: Chart) -> None:
    background_patient(chart)
    _, line = chart.encounter(UNPARSEABLE_TIMESTAMP, setting="urgent_care", departure=None)
    expect(chart, "encounters", line, "arrival_time", UNPARSEABLE)


def nonexistent_local_time(chart: Chart) -> None:
    """A finding written at a wall-clock time the zone skips (inside the spring-forward gap)."""
    forward, _ = chart.clock.dst_changes()
    gap = chart.clock.skipped_wall_time(forward[0]) if forward else None
    if gap is None or gap[0] < 1:
        raise Unplaceable("no spring-forward gap inside the coverage")
    day, (hour, minute) = forward[0], gap
    arrival = chart.clock.exact(day, hour - 1, 10)
    background_patient(chart)
    encounter_id = chart.visit(arrival, hours(3), "emergency")
    chart.diagnosis("R51.9", arrival + minutes(10), encounter_id)
    line = chart.finding(encounter_id, "night_pain", "absent", f"{day} {hour:02d}:{minute:02d}:00")
    expect(chart, "findings", line, "recorded_time", NOT_IN_TIMEZONE)


def duplicate_encounter_id(chart: Chart) -> None:
    """The second row with an encounter_id is the bad one; children point at the first."""
    encounter_ids = background_patient(chart)
    arrival = chart.place_anywhere(before=days(0), after=days(2))
    _, line = chart.encounter(
        arrival,
        setting="outpatient",
        departure=arrival + minutes(30),
        encounter_id=encounter_ids[0],
    )
    expect(chart, "encounters", line, "encounter_id", DUPLICATE_KEY)


def diagnosis_for_unknown_patient(chart: Chart) -> None:
    background_patient(chart)
    recorded = chart.place_anywhere(before=days(0), after=days(1))
    unknown = chart.ctx.next_id("PT9", 8)  # longer than any real patient id
    line = chart.diagnosis("J06.9", recorded, None, patient_id=unknown, source="problem_list")
    expect(chart, "diagnoses", line, "patient_id", FOREIGN_KEY)


def order_status_not_allowed(chart: Chart) -> None:
    encounter_id = background_patient(chart)[-1]
    ordered = chart.place_anywhere(before=days(0), after=days(2))
    line = chart.order(
        encounter_id, "71046", ordered=ordered, performed=ordered + hours(1), status="done"
    )
    expect(chart, "orders", line, "status", NOT_ALLOWED)


def malformed_loinc(chart: Chart) -> None:
    encounter_id = background_patient(chart)[-1]
    collected = chart.place_anywhere(before=days(0), after=days(1))
    line = chart.lab(
        encounter_id, "ABC", collected, value=5.4, unit="mmol/L", resulted=collected + hours(1)
    )
    expect(chart, "labs", line, "loinc", MALFORMED_LOINC)


def zero_dose(chart: Chart) -> None:
    encounter_id = background_patient(chart)[-1]
    start = chart.place_anywhere(before=days(0), after=days(1))
    line = chart.medication(
        encounter_id, "ibuprofen", start, rxnorm="5640", dose_mg=0.0, doses_per_day=3.0
    )
    expect(chart, "medications", line, "dose_mg", NOT_POSITIVE)


def identifier_in_lab_text(text: str) -> Callable[[Chart], None]:
    def build(chart: Chart) -> None:
        encounter_id = background_patient(chart)[-1]
        collected = chart.place_anywhere(before=days(0), after=days(1))
        line = chart.lab(
            encounter_id, "5778-6", collected, text=text, resulted=collected + timedelta(hours=2)
        )
        expect(chart, "labs", line, "value_text", IDENTIFIER)

    return build


WEIGHT = 1.2  # patients per 1000 for each kind of dirty row
SCENARIOS: dict[str, Scenario] = {
    "dirty_sex_q": Scenario(WEIGHT, sex_not_allowed, {}),
    "dirty_birth_year_1850": Scenario(WEIGHT, birth_year_out_of_range, {}),
    "dirty_unknown_setting": Scenario(WEIGHT, setting_not_allowed, {}),
    "dirty_departure_before_arrival": Scenario(WEIGHT, departure_before_arrival, {}),
    "dirty_unparseable_timestamp": Scenario(WEIGHT, unparseable_timestamp, {}),
    "dirty_nonexistent_local_time": Scenario(WEIGHT, nonexistent_local_time, {}),
    "dirty_duplicate_encounter_id": Scenario(WEIGHT, duplicate_encounter_id, {}),
    "dirty_dx_unknown_patient": Scenario(WEIGHT, diagnosis_for_unknown_patient, {}),
    "dirty_order_status_done": Scenario(WEIGHT, order_status_not_allowed, {}),
    "dirty_lab_loinc_abc": Scenario(WEIGHT, malformed_loinc, {}),
    "dirty_med_dose_zero": Scenario(WEIGHT, zero_dose, {}),
    "dirty_lab_text_email": Scenario(
        WEIGHT, identifier_in_lab_text("see result letter sent to pat.doe@example.org"), {}
    ),
    "dirty_lab_text_ssn": Scenario(WEIGHT, identifier_in_lab_text("ref 123-45-6789"), {}),
    "dirty_dx_long_after_created": Scenario(WEIGHT, recorded_long_after_created, {}),
    "dirty_dx_icd10_dot_misplaced": Scenario(WEIGHT, icd10_dot_misplaced, {}),
    "warn_order_signed_after_scan": Scenario(WEIGHT, order_signed_after_the_scan, {}),
    "warn_ropinirole_above_label": Scenario(WEIGHT, dose_above_label, {}),
    "warn_lab_resulted_after_created": Scenario(WEIGHT, resulted_soon_after_created, {}),
}
