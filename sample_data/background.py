"""Background patients: ordinary care that must produce no case in any measure.

Nothing here comes from a measure's value set: no leg-numbness, red-flag, spine-MRI, diabetes,
malignancy, neuropathy, RLS or PAD codes, and no symptom found ``present`` that a measure keys on.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from chartaudit.sample_data.chart import Chart
from chartaudit.sample_data.clock import days, minutes

SETTINGS = ("outpatient", "telehealth", "emergency", "urgent_care", "inpatient", "other")
SETTING_WEIGHTS = (50, 12, 12, 12, 6, 8)
STAY_MINUTES = {
    "emergency": (120, 480),
    "inpatient": (1440, 7200),
    "outpatient": (20, 60),
    "urgent_care": (45, 180),
    "telehealth": (10, 30),
    "other": (15, 45),
}
VISITS = (1, 2, 3, 4, 5, 6)
VISIT_WEIGHTS = (25, 25, 20, 15, 10, 5)

# (code_system, code, imaging CPT that may follow or None)
DIAGNOSES = (
    ("ICD10CM", "J06.9", "71046"),
    ("ICD10CM", "I10", None),
    ("ICD10CM", "M25.561", "73562"),
    ("ICD10CM", "R51.9", "70450"),
    ("ICD10CM", "R73.03", None),  # prediabetes: not diabetes
    ("ICD10CM", "E78.5", None),
    ("ICD10CM", "K21.9", None),
    ("ICD10CM", "N39.0", None),
    ("ICD10CM", "M54.2", "72141"),  # neck pain: a cervical MRI is not a spine MRI here
    ("ICD10CM", "Z00.00", None),
    ("ICD10CM", "F41.1", None),
    ("ICD10CM", "J45909", None),
    ("ICD10CM", "S93.401A", "73610"),
    ("ICD10CM", "M79.604", None),
    ("SNOMEDCT", "38341003", None),  # hypertensive disorder
    ("SNOMEDCT", "15777000", None),  # prediabetes
)
# (concept, possible results): red flags and numbness only ever absent
FINDINGS = (
    ("saddle_anesthesia", ("absent",)),
    ("new_bladder_dysfunction", ("absent",)),
    ("leg_numbness", ("absent",)),
    ("night_pain", ("present", "absent")),
    ("neurogenic_claudication", ("present", "absent")),
    ("straight_leg_raise", ("normal",)),
    ("knee_reflex", ("normal", "not_done")),
    ("ankle_reflex", ("normal",)),
    ("foot_inspection", ("normal",)),
    ("pedal_pulses", ("normal",)),
    ("temperature_sensation", ("normal",)),
    ("mri_contraindication", ("absent",)),
)
# (loinc, unit, low, high, text)
LABS = (
    ("2345-7", "mg/dL", 72, 139, None),  # glucose, random
    ("718-7", "g/dL", 11.0, 16.5, None),
    ("2823-3", "mmol/L", 3.4, 5.2, None),
    ("6690-2", "10*3/uL", 3.9, 11.5, None),
    ("2093-3", "mg/dL", 140, 260, None),
    ("5778-6", None, None, None, "yellow"),
)
# (ingredient as some EHRs spell it, rxnorm, dose_mg, doses_per_day, route)
MEDICATIONS = (
    ("lisinopril", "29046", 10.0, 1.0, "oral"),
    ("Atorvastatin", "83367", 20.0, 1.0, "oral"),
    ("amoxicillin", "723", 500.0, 3.0, "oral"),
    ("ibuprofen", "5640", 400.0, 3.0, "oral"),
    ("acetaminophen", "161", 500.0, 4.0, "oral"),
    ("omeprazole", "7646", 20.0, 1.0, "oral"),
    ("albuterol", "435", 0.09, 4.0, "inhalation"),
    ("Metformin", "6809", 500.0, 2.0, "oral"),
    ("sertraline", "36437", 50.0, 1.0, "oral"),
)


def step(rng, low: int, high: int) -> timedelta:
    return minutes(rng.randint(low, high))


def background_patient(chart: Chart, *, visits: int | None = None) -> list[str]:
    """A few ordinary visits across the coverage; sometimes a death after the last one."""
    rng = chart.rng
    count = visits or rng.choices(VISITS, VISIT_WEIGHTS)[0]
    arrivals = sorted(chart.place_anywhere(before=days(0), after=days(7)) for _ in range(count))
    encounter_ids = [background_visit(chart, arrival) for arrival in arrivals]
    if rng.random() < 0.008:
        death = chart.clock.local_date(arrivals[-1]) + timedelta(days=rng.randint(8, 90))
        if death <= chart.clock.last_day:
            chart.death_date = death
    return encounter_ids


def background_visit(chart: Chart, arrival: datetime, setting: str | None = None) -> str:
    rng = chart.rng
    setting = setting or rng.choices(SETTINGS, SETTING_WEIGHTS)[0]
    stay = step(rng, *STAY_MINUTES[setting])
    disposition = "discharged"
    if setting == "emergency":
        disposition = rng.choices(("discharged", "admitted", "left_ama"), (85, 13, 2))[0]
    encounter_id = chart.visit(arrival, stay, setting, disposition=disposition)
    for system, code, imaging in rng.sample(DIAGNOSES, rng.choice((1, 1, 2))):
        chart.diagnosis(code, arrival + step(rng, 5, 15), encounter_id, system=system)
        if imaging and setting != "telehealth" and rng.random() < 0.3:
            background_imaging(chart, encounter_id, arrival, imaging)
    for concept, results in rng.sample(FINDINGS, rng.choice((0, 1, 2, 3))):
        chart.finding(encounter_id, concept, rng.choice(results), arrival + step(rng, 5, 20))
    if setting != "telehealth" and rng.random() < 0.45:
        background_labs(chart, encounter_id, arrival)
    if rng.random() < 0.35:
        background_medication(chart, encounter_id, arrival + step(rng, 10, 30))
    if setting == "outpatient" and rng.random() < 0.06:
        chart.order(
            encounter_id,
            "referral",
            ordered=arrival + step(rng, 10, 20),
            system="LOCAL",
            category="referral",
            specialty="other",
            status=rng.choice(("ordered", "completed")),
        )
    return encounter_id


def background_imaging(chart: Chart, encounter_id: str, arrival: datetime, code: str) -> None:
    rng = chart.rng
    ordered = arrival + step(rng, 15, 40)
    status = rng.choices(("completed", "ordered", "cancelled"), (85, 10, 5))[0]
    performed = ordered + step(rng, 30, 2880) if status == "completed" else None
    chart.order(encounter_id, code, ordered=ordered, performed=performed, status=status)


def background_labs(chart: Chart, encounter_id: str, arrival: datetime) -> None:
    rng = chart.rng
    collected = arrival + step(rng, 10, 40)
    for loinc, unit, low, high, text in rng.sample(LABS, rng.choice((1, 2, 3))):
        value = None
        if low is not None:
            value = round(rng.uniform(low, high), 1)
        resulted = collected + step(rng, 30, 240)
        chart.lab(
            encounter_id, loinc, collected, value=value, text=text, unit=unit, resulted=resulted
        )


def background_medication(chart: Chart, encounter_id: str, start: datetime) -> None:
    rng = chart.rng
    ingredient, rxnorm, dose, per_day, route = rng.choice(MEDICATIONS)
    end = start + days(rng.randint(5, 14))
    short = rng.random() < 0.5 and end < chart.clock.end
    chart.medication(
        encounter_id,
        ingredient,
        start,
        rxnorm=rxnorm,
        dose_mg=dose,
        doses_per_day=per_day,
        route=route,
        end=end if short else None,
        status="completed" if short else "active",
    )
