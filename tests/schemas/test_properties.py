"""Property: for any mix of good and bad rows, every input row is loaded or quarantined.

The generator knows which rows it broke, so the test also checks exactly which rows load, and
which loaded rows carry a data-quality warning.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chartaudit.schemas.contract import TABLE_ORDER
from chartaudit.schemas.validation import load_extract

from .builders import assert_counts_add_up, clean_rows, write_extract

# Each kind of row: (changes to a good row, breaks a quarantine rule?)
PATIENT_KINDS = {
    "good": ({}, False),
    "bad_int": ({"birth_year": "19x0"}, True),
    "too_old": ({"birth_year": "1850"}, True),
    "bad_sex": ({"sex": "female"}, True),
    "no_sex": ({"sex": ""}, True),
    "ssn_id": ({"patient_id": "123-45-6789"}, True),
    "died_before_birth": ({"death_date": "1940-01-01"}, True),
    "bad_date": ({"death_date": "2026-02-30"}, True),
    "duplicate": ({"patient_id": "P0"}, True),  # P0 is always on line 2
}
ENCOUNTER_KINDS = {
    "good": ({}, False),
    "skipped_hour": ({"arrival_time": "2026-03-08 02:15"}, True),
    "garbled_time": ({"arrival_time": "8/3/2026"}, True),
    "backwards": ({"departure_time": "2026-03-01 00:00"}, False),  # loads, with a warning
    "orphan": ({"patient_id": "NOBODY"}, True),
    "bad_setting": ({"setting": "home"}, True),
    "phone_department": ({"department": "ext 555-867-5309"}, True),
}


def _patient(i: int, kind: str) -> dict[str, str]:
    row = {"patient_id": f"P{i}", "birth_year": "1960", "sex": "F", "death_date": ""}
    return {**row, **PATIENT_KINDS[kind][0]}


def _encounter(i: int, patient_index: int, kind: str) -> dict[str, str]:
    row = {
        "encounter_id": f"E{i}",
        "patient_id": f"P{patient_index}",
        "site_id": "S1",
        "department": "ED",
        "clinician_id": "C1",
        "setting": "emergency",
        "arrival_time": "2026-03-02 10:00",
        "departure_time": "2026-03-02 12:00",
        "disposition": "discharged",
    }
    return {**row, **ENCOUNTER_KINDS[kind][0]}


@settings(
    max_examples=25,
    database=None,  # no .hypothesis folder in the tree
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    patient_kinds=st.lists(st.sampled_from(sorted(PATIENT_KINDS)), min_size=1, max_size=12),
    encounters=st.lists(
        st.tuples(st.integers(min_value=0, max_value=11), st.sampled_from(sorted(ENCOUNTER_KINDS))),
        max_size=15,
    ),
)
def test_every_input_row_is_loaded_or_quarantined(patient_kinds, encounters) -> None:
    patient_kinds = ["good", *patient_kinds[1:]]  # line 2 holds P0, the duplicates' original
    patients = [_patient(i, kind) for i, kind in enumerate(patient_kinds)]
    good_patients = {f"P{i}" for i, kind in enumerate(patient_kinds) if not PATIENT_KINDS[kind][1]}
    encounter_rows = [
        _encounter(i, p % len(patients), kind) for i, (p, kind) in enumerate(encounters)
    ]
    good_encounters = {
        row["encounter_id"]
        for row, (_, kind) in zip(encounter_rows, encounters, strict=True)
        if not ENCOUNTER_KINDS[kind][1] and row["patient_id"] in good_patients
    }

    rows = {table: [] for table in TABLE_ORDER}
    rows.update(patients=patients, encounters=encounter_rows)
    columns = {t: list(clean_rows()[t][0]) for t in TABLE_ORDER}
    with tempfile.TemporaryDirectory() as folder:
        validated = load_extract(write_extract(Path(folder) / "x", rows, columns=columns))

    assert_counts_add_up(validated)
    assert set(validated.tables["patients"]["patient_id"]) == good_patients
    assert set(validated.tables["encounters"]["encounter_id"]) == good_encounters
    warned = {
        row["encounter_id"]
        for row, (_, kind) in zip(encounter_rows, encounters, strict=True)
        if kind == "backwards" and row["encounter_id"] in good_encounters
    }
    counts = {row[0]: row[2:] for row in validated.load_counts.rows()}
    assert counts["patients"] == (
        len(patients),
        len(good_patients),
        len(patients) - len(good_patients),
        0,
    )
    assert counts["encounters"] == (
        len(encounters),
        len(good_encounters),
        len(encounters) - len(good_encounters),
        len(warned),
    )
    loaded = validated.tables["encounters"].select("encounter_id", "source_line")
    flagged = validated.data_quality.join(loaded, on="source_line")["encounter_id"]
    assert set(flagged) == warned and flagged.len() == len(warned)
    # nothing identifier-like is ever stored in quarantine
    assert not validated.quarantine["value"].str.contains(r"\d{3}-\d{4}").any()
