"""LN-06 scenarios: no lumbar imaging without an indication (overuse, HEDIS-style).

A candidate is an encounter with a leg-numbness or low-back-pain (M54.50, M54.51, M54.59)
diagnosis, age 18-75, with none of them in the prior 180 days. Excluded: malignancy history up
to index + 28 d; from 365 d before to 28 d after the index an LN-01 trigger, an LN-05 trigger
(numbness with persistent back pain or an atypical presentation), spinal infection, fracture,
HIV, transplant or palliative care. A completed lumbar image in [index, index + 28 d] is not met
at once; none while the window is open is pending; none in a closed window is met.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from chartaudit.sample_data.chart import Chart, Scenario
from chartaudit.sample_data.clock import days, hours, minutes
from chartaudit.sample_data.scenarios_ln05 import NUMBNESS_DX

LOW_BACK_PAIN = ("M54.50", "M54.51", "M54.59", "M5450")
WINDOW = days(28)


@dataclass(frozen=True)
class Complaint:
    """One new back-pain or numbness visit; times relative to its arrival (the index)."""

    kind: str = "lbp"  # or "numbness"
    imaging: tuple[str, timedelta] | None = None  # (CPT, performed at index + this)
    imaging_status: str = "completed"
    age: int | None = None  # audit-year age; None: 25-70
    condition: tuple[str, timedelta] | None = None  # an ICD-10-CM diagnosis at index + this
    back_pain_present: bool = False  # persistent localised back pain: an LN-05 trigger itself
    ln05_trigger: timedelta | None = None  # a numbness + atypical presentation visit at + this
    prior: timedelta | None = None  # a problem-list low-back-pain diagnosis this long before


def complaint_visit(chart: Chart, arrival: datetime, c: Complaint) -> None:
    rng = chart.rng
    age = c.age if c.age is not None else rng.randint(25, 70)
    chart.birth_year = int(chart.clock.period_of(arrival)[:4]) - age
    if c.prior is not None:
        code = rng.choice(LOW_BACK_PAIN)
        chart.diagnosis(code, arrival - c.prior, None, source="problem_list")
    setting = rng.choice(("outpatient", "outpatient", "urgent_care", "emergency"))
    encounter_id = chart.visit(arrival, minutes(rng.randint(30, 150)), setting)
    noted = arrival + minutes(rng.randint(5, 15))
    code = rng.choice(LOW_BACK_PAIN if c.kind == "lbp" else NUMBNESS_DX)
    chart.diagnosis(code, noted, encounter_id)
    pain = "present" if c.back_pain_present else "absent"
    chart.finding(encounter_id, "persistent_localized_back_pain", pain, noted)
    chart.finding(encounter_id, "straight_leg_raise", rng.choice(("normal", "abnormal")), noted)
    if c.imaging:
        image(chart, encounter_id, arrival, c)
    if c.condition:
        code, delta = c.condition
        if delta < timedelta(0):
            chart.diagnosis(code, arrival + delta, None, source="history")
        else:
            chart.diagnosis(code, arrival + delta, chart.side_visit(arrival + delta, "Clinic"))
    if c.ln05_trigger is not None:
        at = arrival + c.ln05_trigger
        later = chart.visit(at, minutes(40), "outpatient", department="Spine Clinic")
        chart.diagnosis(rng.choice(NUMBNESS_DX), at + minutes(10), later)
        chart.finding(later, "atypical_presentation", "present", at + minutes(10))


def image(chart: Chart, encounter_id: str, arrival: datetime, c: Complaint) -> None:
    assert c.imaging is not None
    code, delta = c.imaging
    performed = arrival + delta
    if delta < hours(1):  # before the visit: an earlier radiology visit of its own
        encounter_id = chart.side_visit(performed, "Radiology")
        ordered = performed - minutes(20)
    else:
        ordered = arrival + minutes(20)
    completed = c.imaging_status == "completed"
    chart.order(
        encounter_id,
        code,
        ordered=ordered,
        performed=performed if completed else None,
        status=c.imaging_status,
    )


def new_complaint(chart: Chart, **fields) -> None:
    c = Complaint(**fields)
    spans = [WINDOW + hours(2)]
    spans += [c.imaging[1] + hours(2)] if c.imaging else []
    spans += [c.condition[1] + hours(2)] if c.condition else []
    spans += [c.ln05_trigger + hours(2)] if c.ln05_trigger else []
    before = hours(2) if c.imaging is None or c.imaging[1] > timedelta(0) else hours(3)
    arrival = chart.place_episode("LN-06", before=before, after=max(spans), hour_range=(8, 16))
    complaint_visit(chart, arrival, c)


def new_complaint_near_end(chart: Chart, **fields) -> None:
    """In the last three weeks: index + 28 d is after the end of coverage."""
    arrival = chart.place_near_end(earliest=days(20), latest=days(3))
    complaint_visit(chart, arrival, Complaint(**fields))


MET, NOT_MET, EXCLUDED, NO_CASE = {"met"}, {"not_met"}, {"excluded"}, set()


def _s(weight: float, outcomes, **fields) -> Scenario:
    return Scenario(weight, partial(new_complaint, **fields), {"LN-06": outcomes})


def _excluded_by(code: str, delta: timedelta, weight: float = 0.4) -> Scenario:
    return _s(weight, EXCLUDED, condition=(code, delta))


SCENARIOS: dict[str, Scenario] = {
    "ln06_lbp_no_imaging": _s(3, MET),
    "ln06_numbness_no_imaging": _s(1.5, MET, kind="numbness"),
    "ln06_lbp_xray_3d": _s(2, NOT_MET, imaging=("72100", days(3))),
    "ln06_lbp_ct_1d": _s(1, NOT_MET, imaging=("72131", days(1))),
    "ln06_numbness_mri_5d": _s(1, NOT_MET, kind="numbness", imaging=("72148", days(5))),
    "ln06_thoracic_mri_2d": _s(0.5, NOT_MET, imaging=("72146", days(2))),
    "ln06_imaging_28d00": _s(1, NOT_MET, imaging=("72110", WINDOW)),
    "ln06_imaging_28d01": _s(1, MET, imaging=("72110", WINDOW + minutes(1))),
    "ln06_imaging_1h_before": _s(0.5, MET, imaging=("72100", -hours(1))),
    "ln06_imaging_not_performed": _s(
        0.5, MET, imaging=("72148", days(2)), imaging_status="ordered"
    ),
    "ln06_cervical_mri": _s(0.5, MET, imaging=("72141", days(2))),
    "ln06_age_18": _s(0.5, MET, age=18),
    "ln06_age_75": _s(0.5, MET, age=75),
    "ln06_age_17": _s(0.5, NO_CASE, age=17),
    "ln06_age_76": _s(0.5, NO_CASE, age=76),
    "ln06_prior_lbp_180d00": _s(0.5, NO_CASE, prior=days(180)),
    "ln06_prior_lbp_180d01": _s(0.5, MET, prior=days(180) + minutes(1)),
    "ln06_excl_malignancy_history": _excluded_by("Z85.3", -days(300)),
    "ln06_excl_malignancy_28d00": _excluded_by("C61", WINDOW),
    "ln06_malignancy_28d01": _s(0.4, MET, condition=("C61", WINDOW + minutes(1))),
    "ln06_excl_cauda_equina_365d00": _excluded_by("G83.4", -days(365)),
    "ln06_cauda_equina_365d01": _s(0.4, MET, condition=("G83.4", -days(365) - minutes(1))),
    "ln06_excl_ln05_trigger": _s(0.7, EXCLUDED, kind="numbness", back_pain_present=True),
    "ln06_excl_ln05_trigger_10d_after": _s(0.5, EXCLUDED, ln05_trigger=days(10)),
    "ln06_excl_vertebral_osteomyelitis": _excluded_by("M46.26", -days(30)),
    "ln06_excl_discitis": _excluded_by("M46.46", days(5)),
    "ln06_excl_spinal_infection": _excluded_by("G06.1", -days(100)),
    "ln06_excl_fracture": _excluded_by("S32.010A", -days(60)),
    "ln06_excl_hiv": _excluded_by("B20", -days(200)),
    "ln06_excl_hiv_z21": _excluded_by("Z21", -days(150)),
    "ln06_excl_transplant": _excluded_by("Z94.0", -days(250)),
    "ln06_excl_palliative": _excluded_by("Z51.5", days(7)),
    "ln06_palliative_366d_before": _s(0.4, MET, condition=("Z51.5", -days(366))),
    "ln06_pending_no_imaging": Scenario(0.7, new_complaint_near_end, {"LN-06": {"pending"}}),
    "ln06_pending_imaged_1d": Scenario(
        0.5, partial(new_complaint_near_end, imaging=("72100", days(1))), {"LN-06": NOT_MET}
    ),
}
FILLER = {"LN-06": "ln06_lbp_xray_3d"}
