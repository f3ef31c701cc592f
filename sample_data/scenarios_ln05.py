"""LN-05 scenarios: intermediate-risk leg numbness and whether a spine MRI followed in 2 weeks.

A candidate encounter has leg numbness (a leg_numbness_dx diagnosis in it, or a leg_numbness /
bilateral_leg_numbness finding present) and one of: persistent localised back pain present,
malignancy history recorded at or before arrival, an atypical presentation present. Index = the
encounter's arrival. Met: a completed spine MRI performed in [index - 7 d, index + 14 d].
Excluded: a red flag or cauda equina diagnosis in the index encounter; death within 14 days.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from chartaudit.sample_data.chart import Chart, Scenario
from chartaudit.sample_data.clock import days, hours, minutes

# Leg-numbness diagnoses as EHRs write them: mostly dotted, a few without the dot.
NUMBNESS_DX = (
    "R20.2",
    "R20.0",
    "R20.1",
    "R20.8",
    "R20.9",
    "M54.16",
    "M54.17",
    "M5441",
    "M54.42",
    "M54.30",
    "M54.31",
    "G57.12",
    "G5792",
    "M48.062",
)
NUMBNESS_FINDINGS = ("leg_numbness", "bilateral_leg_numbness")
SETTINGS = ("outpatient", "urgent_care", "emergency", "telehealth")
SETTING_WEIGHTS = (60, 15, 15, 10)
STAY_MINUTES = {"outpatient": 40, "urgent_care": 90, "emergency": 240, "telehealth": 20}
WINDOW = days(14)


@dataclass(frozen=True)
class Numbness:
    """One leg-numbness presentation; ``mri`` is relative to the arrival (the index)."""

    back_pain: bool = True
    atypical: bool = False
    malignancy: str | None = None  # a history code recorded months before
    malignancy_after: bool = False  # record it after the visit instead (not a risk feature)
    numbness_finding: bool = False  # the numbness is a finding, not a diagnosis
    offset: bool = False  # write the arrival (the index) with its explicit UTC offset
    mri: timedelta | None = None
    red_flag: bool = False
    death_after: int | None = None  # death this many local days after the index date


def numbness_visit(
    chart: Chart, arrival: datetime, case: Numbness
) -> tuple[str, datetime, datetime]:
    """The candidate encounter; returns (encounter id, red-flag time or arrival, departure)."""
    rng = chart.rng
    setting = "emergency" if case.red_flag else rng.choices(SETTINGS, SETTING_WEIGHTS)[0]
    stay = minutes(STAY_MINUTES[setting] + rng.randint(0, 30))
    disposition = "admitted" if case.red_flag else "discharged"
    encounter_id = chart.visit(arrival, stay, setting, disposition=disposition, offset=case.offset)
    noted = arrival + minutes(rng.randint(5, 15))
    if case.numbness_finding:
        chart.finding(encounter_id, rng.choice(NUMBNESS_FINDINGS), "present", noted)
    else:
        chart.diagnosis(rng.choice(NUMBNESS_DX), noted, encounter_id)
    back_pain = "present" if case.back_pain else "absent"
    chart.finding(encounter_id, "persistent_localized_back_pain", back_pain, noted)
    if case.atypical:
        chart.finding(encounter_id, "atypical_presentation", "present", noted)
    chart.finding(encounter_id, "straight_leg_raise", rng.choice(("normal", "abnormal")), noted)
    chart.finding(encounter_id, "ankle_reflex", rng.choice(("normal", "abnormal")), noted)
    flagged = arrival
    if case.red_flag:
        flagged = arrival + minutes(20)
        chart.finding(encounter_id, "saddle_anesthesia", "present", flagged)
    return encounter_id, flagged, arrival + stay


def numbness_mri(chart: Chart, encounter_id: str, arrival: datetime, mri: timedelta) -> None:
    """An MRI ordered at the visit, or (before it) from an earlier radiology visit."""
    performed = arrival + mri
    if mri >= timedelta(0):
        chart.spine_mri(encounter_id, performed, earliest_order=arrival + minutes(15))
        return
    scan_visit = chart.visit(performed - minutes(30), minutes(60), "other", department="Radiology")
    chart.spine_mri(scan_visit, performed, earliest_order=performed - minutes(30))


def malignancy_history(chart: Chart, arrival: datetime, case: Numbness) -> None:
    rng = chart.rng
    assert case.malignancy is not None
    if case.malignancy_after:
        recorded = arrival + days(rng.randint(2, 10))
        oncology = chart.visit(
            recorded - minutes(20), minutes(60), "outpatient", department="Oncology"
        )
        chart.diagnosis(case.malignancy, recorded, oncology)
    else:
        chart.diagnosis(
            case.malignancy, arrival - days(rng.randint(60, 240)), None, source="history"
        )


def numbness_presentation(chart: Chart, arrival: datetime, case: Numbness) -> str:
    """All rows of one presentation (a red flag in it is an LN-01 case of its own)."""
    if case.malignancy:
        malignancy_history(chart, arrival, case)
    encounter_id, _, _ = numbness_visit(chart, arrival, case)
    if case.mri is not None:
        numbness_mri(chart, encounter_id, arrival, case.mri)
    if case.death_after is not None:
        chart.death_date = chart.clock.local_date(arrival) + timedelta(days=case.death_after)
    return encounter_id


# --- scenarios -------------------------------------------------------------------------------
def single_presentation(chart: Chart, *, case_kind: str = "case", **fields) -> None:
    """One presentation at a round-robin month (``case_kind="none"``: no LN-05 case)."""
    case = Numbness(**fields)
    mri = case.mri or timedelta(0)
    before = max(hours(2), minutes(60) - mri)
    if case.malignancy and not case.malignancy_after:
        before = hours(2)  # history entries may predate the coverage
    after = max(WINDOW + hours(6), mri + hours(6), days(case.death_after or 0) + days(1))
    if case_kind == "none":
        arrival = chart.place_anywhere(before=before, after=after)
    else:
        arrival = chart.place_episode("LN-05", before=before, after=after, hour_range=(8, 17))
    numbness_presentation(chart, arrival, case)


def presentation_then_follow_up(chart: Chart) -> None:
    """A follow-up 7 days later with the same findings: the same episode, one case."""
    first = chart.place_episode(
        "LN-05", before=hours(2), after=WINDOW + days(1), hour_range=(8, 16)
    )
    numbness_presentation(chart, first, Numbness(mri=days(10)))
    follow_up = first + days(7) + hours(chart.rng.randint(-2, 2))
    numbness_presentation(chart, follow_up, Numbness())


def presentation_near_coverage_end(chart: Chart) -> None:
    """Index 3 days before the end of coverage, no MRI yet: pending."""
    arrival = chart.clock.exact(chart.clock.last_day - timedelta(days=3), 10)
    numbness_presentation(chart, arrival, Numbness())


def _s(weight: float, build, outcomes, **others) -> Scenario:
    return Scenario(weight, build, {"LN-05": outcomes, **others})


MET, NOT_MET = {"met"}, {"not_met"}

SCENARIOS: dict[str, Scenario] = {
    "ln05_back_pain_mri_3d": _s(
        5, partial(single_presentation, mri=days(3) + hours(2), offset=True), MET
    ),
    "ln05_back_pain_mri_14d00": _s(1, partial(single_presentation, mri=days(14)), MET),
    "ln05_back_pain_mri_14d01": _s(
        1, partial(single_presentation, mri=days(14) + minutes(1)), NOT_MET
    ),
    "ln05_back_pain_no_mri": _s(4, partial(single_presentation), NOT_MET),
    "ln05_back_pain_mri_minus5d": _s(1, partial(single_presentation, mri=-days(5)), MET),
    "ln05_back_pain_mri_minus7d00": _s(0.5, partial(single_presentation, mri=-days(7)), MET),
    "ln05_back_pain_mri_minus7d01": _s(
        0.5, partial(single_presentation, mri=-days(7) - minutes(1)), NOT_MET
    ),
    "ln05_malignancy_mri": _s(
        1,
        partial(
            single_presentation,
            back_pain=False,
            malignancy="C50.911",
            numbness_finding=True,
            mri=days(6),
        ),
        MET,
    ),
    "ln05_malignancy_no_mri": _s(
        1,
        partial(single_presentation, back_pain=False, malignancy="Z85.3", numbness_finding=True),
        NOT_MET,
    ),
    "ln05_atypical_mri": _s(
        1.5, partial(single_presentation, back_pain=False, atypical=True, mri=days(9)), MET
    ),
    "ln05_atypical_no_mri": _s(
        1,
        partial(single_presentation, back_pain=False, atypical=True, numbness_finding=True),
        NOT_MET,
    ),
    # the red flag takes LN-01's 12 h path: LN-05 excluded, LN-01 met by the MRI 2 h after arrival
    "ln05_excl_red_flag": _s(
        1, partial(single_presentation, red_flag=True, mri=hours(2)), {"excluded"}, **{"LN-01": MET}
    ),
    "ln05_excl_death_14d": _s(0.7, partial(single_presentation, death_after=14), {"excluded"}),
    "ln05_death_day_15": _s(0.5, partial(single_presentation, death_after=15), NOT_MET),
    "ln05_pending_no_mri": _s(0.5, presentation_near_coverage_end, {"pending"}),
    "ln05_repeat_7d": _s(1, presentation_then_follow_up, ("met",)),  # one episode
    # no case: numbness without an intermediate-risk feature; malignancy recorded only later
    "ln05_no_risk_feature": _s(
        3, partial(single_presentation, case_kind="none", back_pain=False), set()
    ),
    "ln05_malignancy_after_index": _s(
        0.5,
        partial(
            single_presentation,
            case_kind="none",
            back_pain=False,
            malignancy="C50.911",
            malignancy_after=True,
            numbness_finding=True,
        ),
        set(),
    ),
}
FILLER = {"LN-05": "ln05_back_pain_mri_3d"}
