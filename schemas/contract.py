"""The extract contract (v1) as data: tables, columns, types and allowed values.

This module is the one place that lists the columns of the seven input tables; the Pandera
models, the reader, the warehouse DDL and the synthetic generator all derive from it.
See ``shared/spec/extract-contract.md`` and the README's "Extract contract" section.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ColumnType = Literal["str", "int", "float", "date", "timestamp"]


@dataclass(frozen=True)
class ColumnSpec:
    name: str
    type: ColumnType
    required: bool = False
    allowed: tuple[str, ...] | None = None


@dataclass(frozen=True)
class TableSpec:
    name: str
    columns: tuple[ColumnSpec, ...]
    primary_key: str | None = None
    # (column, parent table, parent column): a non-null value must exist in the loaded parent.
    foreign_keys: tuple[tuple[str, str, str], ...] = ()
    # (later column, earlier column): the later timestamp/date must not precede the earlier one.
    ordered_times: tuple[tuple[str, str], ...] = ()

    @property
    def required_columns(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.required)

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def column(self, name: str) -> ColumnSpec:
        return next(c for c in self.columns if c.name == name)


def _c(name: str, type_: ColumnType, required: bool = False, allowed=None) -> ColumnSpec:
    return ColumnSpec(name, type_, required, tuple(allowed) if allowed else None)


SEXES = ("F", "M", "X", "U")
SETTINGS = ("emergency", "inpatient", "outpatient", "urgent_care", "telehealth", "other")
DISPOSITIONS = ("discharged", "admitted", "transferred", "left_ama", "died", "other")
DIAGNOSIS_CODE_SYSTEMS = ("ICD10CM", "SNOMEDCT")
DIAGNOSIS_SOURCES = ("encounter", "problem_list", "history")
FINDING_CODE_SYSTEMS = ("LOCAL", "SNOMEDCT")
FINDING_RESULTS = ("present", "absent", "normal", "abnormal", "not_done")
ORDER_CODE_SYSTEMS = ("CPT", "HCPCS", "LOINC", "SNOMEDCT", "LOCAL")
ORDER_CATEGORIES = ("imaging", "referral", "procedure", "lab", "other")
SPECIALTIES = (
    "neurosurgery",
    "spine_surgery",
    "orthopedic_spine",
    "vascular_surgery",
    "vascular_medicine",
    "neurology",
    "podiatry",
    "other",
)
ORDER_STATUSES = ("ordered", "completed", "cancelled")
MEDICATION_STATUSES = ("active", "completed", "stopped", "cancelled")

# The LOCAL finding concepts of the contract. Sites map their own flowsheet rows to these.
LOCAL_FINDING_CONCEPTS = (
    "saddle_anesthesia",
    "new_bladder_dysfunction",
    "new_bowel_dysfunction",
    "progressive_bilateral_leg_weakness",
    "severe_neuro_deficit",
    "leg_numbness",
    "bilateral_leg_numbness",
    "persistent_localized_back_pain",
    "night_pain",
    "atypical_presentation",
    "vascular_claudication",
    "neurogenic_claudication",
    "rls_symptoms",
    "monofilament_10g",
    "vibration_128hz",
    "pinprick",
    "temperature_sensation",
    "ankle_dorsiflexion_strength",
    "plantar_flexion_strength",
    "knee_reflex",
    "ankle_reflex",
    "straight_leg_raise",
    "perianal_sensation",
    "anal_sphincter_tone",
    "foot_inspection",
    "pedal_pulses",
    "femoral_bruit",
    "mri_contraindication",
)

TABLES: dict[str, TableSpec] = {
    t.name: t
    for t in (
        TableSpec(
            "patients",
            (
                _c("patient_id", "str", True),
                _c("birth_year", "int", True),
                _c("sex", "str", True, SEXES),
                _c("death_date", "date"),
            ),
            primary_key="patient_id",
        ),
        TableSpec(
            "encounters",
            (
                _c("encounter_id", "str", True),
                _c("patient_id", "str", True),
                _c("site_id", "str", True),
                _c("department", "str"),
                _c("clinician_id", "str"),
                _c("setting", "str", True, SETTINGS),
                _c("arrival_time", "timestamp", True),
                _c("departure_time", "timestamp"),
                _c("disposition", "str", False, DISPOSITIONS),
            ),
            primary_key="encounter_id",
            foreign_keys=(("patient_id", "patients", "patient_id"),),
            ordered_times=(("departure_time", "arrival_time"),),
        ),
        TableSpec(
            "diagnoses",
            (
                _c("patient_id", "str", True),
                _c("encounter_id", "str"),
                _c("code_system", "str", True, DIAGNOSIS_CODE_SYSTEMS),
                _c("code", "str", True),
                _c("recorded_time", "timestamp", True),
                _c("source", "str", False, DIAGNOSIS_SOURCES),
            ),
            foreign_keys=(
                ("patient_id", "patients", "patient_id"),
                ("encounter_id", "encounters", "encounter_id"),
            ),
        ),
        TableSpec(
            "findings",
            (
                _c("patient_id", "str", True),
                _c("encounter_id", "str", True),
                _c("code_system", "str", True, FINDING_CODE_SYSTEMS),
                _c("code", "str", True),
                _c("result", "str", True, FINDING_RESULTS),
                _c("value_num", "float"),
                _c("recorded_time", "timestamp", True),
            ),
            foreign_keys=(
                ("patient_id", "patients", "patient_id"),
                ("encounter_id", "encounters", "encounter_id"),
            ),
        ),
        TableSpec(
            "orders",
            (
                _c("order_id", "str", True),
                _c("patient_id", "str", True),
                _c("encounter_id", "str"),
                _c("code_system", "str", True, ORDER_CODE_SYSTEMS),
                _c("code", "str", True),
                _c("category", "str", True, ORDER_CATEGORIES),
                _c("specialty", "str", False, SPECIALTIES),
                _c("ordered_time", "timestamp", True),
                _c("performed_time", "timestamp"),
                _c("status", "str", True, ORDER_STATUSES),
            ),
            primary_key="order_id",
            foreign_keys=(
                ("patient_id", "patients", "patient_id"),
                ("encounter_id", "encounters", "encounter_id"),
            ),
            ordered_times=(("performed_time", "ordered_time"),),
        ),
        TableSpec(
            "labs",
            (
                _c("patient_id", "str", True),
                _c("encounter_id", "str"),
                _c("loinc", "str", True),
                _c("value_num", "float"),
                _c("value_text", "str"),
                _c("unit", "str"),
                _c("collected_time", "timestamp", True),
                _c("resulted_time", "timestamp"),
            ),
            # The contract gives labs.encounter_id no existence rule (results may come from
            # outside labs), so only the patient must exist.
            foreign_keys=(("patient_id", "patients", "patient_id"),),
            ordered_times=(("resulted_time", "collected_time"),),
        ),
        TableSpec(
            "medications",
            (
                _c("medication_id", "str", True),
                _c("patient_id", "str", True),
                _c("encounter_id", "str"),
                _c("ingredient", "str", True),
                _c("rxnorm", "str"),
                _c("dose_mg", "float"),
                _c("doses_per_day", "float"),
                _c("route", "str"),
                _c("start_time", "timestamp", True),
                _c("end_time", "timestamp"),
                _c("status", "str", True, MEDICATION_STATUSES),
            ),
            primary_key="medication_id",
            foreign_keys=(("patient_id", "patients", "patient_id"),),
            ordered_times=(("end_time", "start_time"),),
        ),
    )
}

# Load order: parents before children, so foreign keys are checked against loaded parents.
TABLE_ORDER: tuple[str, ...] = tuple(TABLES)

# Columns every canonical (loaded) table carries besides the contract's own.
SOURCE_LINE = (
    "source_line"  # 1-based line in the CSV file (header = line 1); row number + 1 in Parquet
)
