"""LN-02, LN-03 and LN-04 scenarios: referral and examination after a red flag, and the focused
neurological examination of new leg numbness.

LN-02: a present saddle anaesthesia, new bladder or bowel dysfunction or progressive bilateral
leg weakness finding, or a cauda equina diagnosis (not severe_neuro_deficit). Met: a spine
referral (neurosurgery, spine surgery, orthopaedic spine; not cancelled) ordered in [index,
index + 12 h], or admission with such a referral in the index encounter. Excluded: died or left
against advice with departure at or before index + 12 h.
LN-03: every LN-01 episode. Met: perianal sensation and anal sphincter tone both documented
(normal/abnormal) in the index encounter; pending while that encounter departs after the end of
coverage; a trigger with no encounter is not met.
LN-04: an encounter with leg numbness and none in the prior 180 days. Met: all five components
documented in it; telehealth excluded; pending as LN-03.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from chartaudit.sample_data.chart import Chart, Scenario
from chartaudit.sample_data.clock import days, hours, minutes
from chartaudit.sample_data.scenarios_ln01 import PRESENTING_DX
from chartaudit.sample_data.scenarios_ln05 import NUMBNESS_DX, NUMBNESS_FINDINGS

EXAMS = ("perianal_sensation", "anal_sphincter_tone")
SIX_HOURS, TWO_HOURS = hours(6), hours(2)
FLAG_CONCEPTS = (
    "saddle_anesthesia",
    "new_bladder_dysfunction",
    "new_bowel_dysfunction",
    "progressive_bilateral_leg_weakness",
    "severe_neuro_deficit",
)


@dataclass(frozen=True)
class Flag:
    """One red-flag presentation; times relative to the index (the flag's recorded time)."""

    trigger: str = "saddle_anesthesia"  # a red-flag concept, or a cauda equina ICD-10-CM code
    referral: timedelta | None = None  # a spine referral ordered at index + this
    specialty: str = "neurosurgery"
    referral_status: str = "ordered"
    referral_elsewhere: bool = False  # ordered in another (clinic) encounter
    setting: str = "emergency"
    disposition: str = "discharged"
    stay: timedelta | None = SIX_HOURS  # departure = index + stay; None: no departure_time
    exams: tuple[str, ...] = EXAMS
    not_done: tuple[str, ...] = ()  # exams documented as not_done
    exams_elsewhere: bool = False  # documented at a clinic visit two days later
    contraindication: bool = False
    problem_list: bool = False  # the trigger is a problem-list diagnosis with no encounter
    mri: timedelta | None = TWO_HOURS


def flagged(chart: Chart, index: datetime, f: Flag) -> None:
    rng = chart.rng
    encounter_id = None
    if not f.problem_list:
        arrival = index - minutes(rng.randint(20, 90))
        departure = None if f.stay is None else index + f.stay
        encounter_id, _ = chart.encounter(
            arrival, setting=f.setting, departure=departure, disposition=f.disposition
        )
        chart.diagnosis(rng.choice(PRESENTING_DX), arrival + minutes(10), encounter_id)
    if f.trigger in FLAG_CONCEPTS:
        assert encounter_id is not None, "a finding needs an encounter"
        chart.finding(encounter_id, f.trigger, "present", index)
    else:
        chart.diagnosis(
            f.trigger, index, encounter_id, source="problem_list" if f.problem_list else None
        )
    if f.contraindication:
        assert encounter_id is not None
        chart.finding(encounter_id, "mri_contraindication", "present", index + minutes(10))
    if f.exams:
        exam_visit = (
            chart.side_visit(index + days(2), "Spine Clinic", "outpatient")
            if f.exams_elsewhere
            else encounter_id
        )
        at = index + (days(2) if f.exams_elsewhere else minutes(rng.randint(5, 25)))
        for exam in f.exams:
            result = "not_done" if exam in f.not_done else rng.choice(("normal", "abnormal"))
            chart.finding(exam_visit, exam, result, at)
    if f.referral is not None:
        ordered = index + f.referral
        where = (
            chart.side_visit(ordered, "Spine Clinic", "outpatient")
            if f.referral_elsewhere
            else encounter_id
        )
        chart.referral(where, f.specialty, ordered, status=f.referral_status)
    if f.mri is not None:
        chart.spine_mri(encounter_id, index + f.mri, earliest_order=index)
    if f.disposition == "died" and f.stay is not None:
        chart.death_date = chart.clock.local_date(index + f.stay)


def red_flag(chart: Chart, measure: str, **fields) -> None:
    """One presentation at this measure's next month; every event stays inside the coverage."""
    f = Flag(**fields)
    later = [f.stay or hours(0), f.referral or hours(0), f.mri or hours(0), days(2) + hours(1)]
    index = chart.place_episode(measure, before=hours(2), after=max(later) + hours(2))
    flagged(chart, index, f)


def red_flag_on_last_evening(chart: Chart, **fields) -> None:
    """At 20:00 on the last day: index + 12 h is after the end of coverage."""
    index = chart.clock.exact(chart.clock.last_day, 20)
    flagged(chart, index, Flag(stay=hours(3), mri=None, **fields))


def red_flag_still_admitted(chart: Chart, **fields) -> None:
    """Admitted in the last week; the stay ends two days after the end of coverage."""
    index = chart.place_near_end(earliest=days(6), latest=days(1))
    stay = chart.clock.end + days(2) - index
    flagged(chart, index, Flag(disposition="admitted", stay=stay, referral=hours(1), **fields))


def red_flag_without_departure(chart: Chart, **fields) -> None:
    """On the last days, with no departure_time: counts as departed."""
    index = chart.place_near_end(earliest=days(3), latest=days(1))
    flagged(chart, index, Flag(stay=None, **fields))


# --- LN-04 ------------------------------------------------------------------------------------
COMPONENTS = {
    "small": (("LOCAL", "pinprick"), ("LOCAL", "temperature_sensation")),
    "large": (
        ("LOCAL", "vibration_128hz"),
        ("LOCAL", "monofilament_10g"),
        ("SNOMEDCT", "134388005"),
    ),
    "strength": (("LOCAL", "ankle_dorsiflexion_strength"), ("LOCAL", "plantar_flexion_strength")),
    "reflexes": (("LOCAL", "knee_reflex"), ("LOCAL", "ankle_reflex")),
    "slr": (("LOCAL", "straight_leg_raise"),),
}
STAY = {"outpatient": minutes(40), "urgent_care": hours(2), "telehealth": minutes(20)}


@dataclass(frozen=True)
class NewNumbness:
    components: tuple[str, ...] = tuple(COMPONENTS)
    not_done: str | None = None  # this component documented as not_done instead
    later: tuple[str, ...] = ()  # these components at a follow-up visit five days later
    setting: str = "outpatient"
    as_finding: bool = False  # the numbness is a finding, not a diagnosis
    prior: timedelta | None = None  # a problem-list numbness diagnosis this long before arrival
    stay: timedelta | None = None


def numbness_exam_visit(chart: Chart, arrival: datetime, n: NewNumbness) -> None:
    rng = chart.rng
    if n.prior is not None:
        chart.diagnosis(rng.choice(NUMBNESS_DX), arrival - n.prior, None, source="problem_list")
    stay = n.stay or STAY.get(n.setting, hours(3))
    encounter_id = chart.visit(arrival, stay, n.setting)
    noted = arrival + minutes(rng.randint(5, 15))
    if n.as_finding:
        chart.finding(encounter_id, rng.choice(NUMBNESS_FINDINGS), "present", noted)
    else:
        chart.diagnosis(rng.choice(NUMBNESS_DX), noted, encounter_id)
    back_pain = "present" if rng.random() < 0.2 else "absent"
    chart.finding(encounter_id, "persistent_localized_back_pain", back_pain, noted)
    follow_up = None
    if n.later:
        follow_up = chart.visit(arrival + days(5), minutes(30), "outpatient")
    for name in n.components:
        system, concept = rng.choice(COMPONENTS[name])
        result = "not_done" if name == n.not_done else rng.choice(("normal", "abnormal"))
        if name in n.later:
            where, at = follow_up, arrival + days(5) + minutes(10)
        else:
            where, at = encounter_id, arrival + minutes(rng.randint(15, 30))
        chart.finding(where, concept, result, at, system=system)


def new_numbness(chart: Chart, **fields) -> None:
    n = NewNumbness(**fields)
    after = days(5) + hours(2) if n.later else hours(4)
    arrival = chart.place_episode("LN-04", before=hours(1), after=after, hour_range=(8, 17))
    numbness_exam_visit(chart, arrival, n)


def new_numbness_still_admitted(chart: Chart, **fields) -> None:
    arrival = chart.place_near_end(earliest=days(6), latest=days(1))
    stay = chart.clock.end + days(3) - arrival
    numbness_exam_visit(chart, arrival, NewNumbness(setting="inpatient", stay=stay, **fields))


MET, NOT_MET, EXCLUDED, NO_CASE = {"met"}, {"not_met"}, {"excluded"}, set()


def _s(weight: float, measure: str, build, outcomes, **others) -> Scenario:
    return Scenario(weight, build, {measure: outcomes, **others})


def _ln02(weight: float, outcomes, **fields) -> Scenario:
    return _s(weight, "LN-02", partial(red_flag, measure="LN-02", **fields), outcomes)


def _ln03(weight: float, outcomes, **fields) -> Scenario:
    return _s(weight, "LN-03", partial(red_flag, measure="LN-03", **fields), outcomes)


def _ln04(weight: float, outcomes, **fields) -> Scenario:
    return _s(weight, "LN-04", partial(new_numbness, **fields), outcomes)


SCENARIOS: dict[str, Scenario] = {
    "ln02_referral_1h": _ln02(3, MET, referral=hours(1)),
    "ln02_referral_12h00": _ln02(1, MET, referral=hours(12), stay=hours(14)),
    "ln02_referral_12h01": _ln02(1, NOT_MET, referral=hours(12) + minutes(1), stay=hours(14)),
    "ln02_referral_1min_before": _ln02(1, NOT_MET, referral=-minutes(1)),
    "ln02_admitted_referral_30h": _ln02(
        1, MET, referral=hours(30), disposition="admitted", stay=days(3)
    ),
    "ln02_admitted_referral_elsewhere": _ln02(
        1,
        NOT_MET,
        referral=hours(30),
        referral_elsewhere=True,
        disposition="admitted",
        stay=days(3),
    ),
    "ln02_no_referral": _ln02(2, NOT_MET),
    "ln02_referral_cancelled": _ln02(1, NOT_MET, referral=hours(2), referral_status="cancelled"),
    "ln02_referral_neurology": _ln02(1, NOT_MET, referral=hours(2), specialty="neurology"),
    "ln02_cauda_dx_referral": _ln02(
        1, MET, trigger="G95.29", referral=hours(3), specialty="spine_surgery"
    ),
    "ln02_bowel_orthopedic_spine": _ln02(
        1, MET, trigger="new_bowel_dysfunction", referral=hours(5), specialty="orthopedic_spine"
    ),
    # severe_neuro_deficit is an LN-01 trigger only
    "ln02_severe_deficit_only": _s(
        1,
        "LN-02",
        partial(red_flag, measure="LN-02", trigger="severe_neuro_deficit", referral=hours(1)),
        NO_CASE,
        **{"LN-01": MET},
    ),
    "ln02_excl_died": _ln02(0.7, EXCLUDED, disposition="died", stay=hours(6)),
    "ln02_excl_left_ama_12h00": _ln02(1, EXCLUDED, disposition="left_ama", stay=hours(12)),
    "ln02_left_ama_12h01": _ln02(1, NOT_MET, disposition="left_ama", stay=hours(12) + minutes(1)),
    # LN-01 excludes a transfer or an MRI contraindication; LN-02 does not
    "ln02_transferred_3h": _s(
        1,
        "LN-02",
        partial(red_flag, measure="LN-02", disposition="transferred", stay=hours(3)),
        NOT_MET,
        **{"LN-01": EXCLUDED},
    ),
    "ln02_contraindication_referral": _s(
        1,
        "LN-02",
        partial(red_flag, measure="LN-02", contraindication=True, referral=hours(1), mri=None),
        MET,
        **{"LN-01": EXCLUDED},
    ),
    "ln02_pending_last_evening": _s(0.5, "LN-02", red_flag_on_last_evening, {"pending"}),
    "ln03_both_exams": _ln03(3, MET),
    "ln03_perianal_only": _ln03(1, NOT_MET, exams=EXAMS[:1]),
    "ln03_tone_not_done": _ln03(1, NOT_MET, not_done=EXAMS[1:]),
    "ln03_exams_next_visit": _ln03(1, NOT_MET, exams_elsewhere=True),
    "ln03_severe_deficit_examined": _ln03(1, MET, trigger="severe_neuro_deficit"),
    # LN-01's exclusions do not apply to LN-03
    "ln03_left_ama_examined": _s(
        1,
        "LN-03",
        partial(red_flag, measure="LN-03", disposition="left_ama", stay=hours(2)),
        MET,
        **{"LN-01": EXCLUDED},
    ),
    "ln03_problem_list_dx": _ln03(
        1, NOT_MET, trigger="G95.20", problem_list=True, exams=(), referral=hours(2), mri=None
    ),
    "ln03_pending_still_admitted": _s(
        0.5, "LN-03", partial(red_flag_still_admitted, exams=()), {"pending"}
    ),
    "ln03_still_admitted_examined": _s(0.5, "LN-03", red_flag_still_admitted, MET),
    "ln03_no_departure_not_examined": _s(
        0.5, "LN-03", partial(red_flag_without_departure, exams=()), NOT_MET
    ),
    "ln04_full_exam": _ln04(3, MET),
    "ln04_full_exam_finding": _ln04(1, MET, as_finding=True),
    "ln04_no_reflexes": _ln04(1, NOT_MET, components=("small", "large", "strength", "slr")),
    "ln04_slr_not_done": _ln04(1, NOT_MET, not_done="slr"),
    "ln04_no_exam": _ln04(1, NOT_MET, components=()),
    "ln04_exam_split_visits": _ln04(1, NOT_MET, later=("reflexes", "slr")),
    "ln04_excl_telehealth": _ln04(1, EXCLUDED, setting="telehealth", components=()),
    "ln04_prior_numbness_180d00": _ln04(1, NO_CASE, prior=days(180)),
    "ln04_prior_numbness_180d01": _ln04(1, MET, prior=days(180) + minutes(1)),
    "ln04_pending_still_admitted": _s(
        0.5,
        "LN-04",
        partial(new_numbness_still_admitted, components=("small", "large")),
        {"pending"},
    ),
}
FILLER = {"LN-02": "ln02_referral_1h", "LN-03": "ln03_both_exams", "LN-04": "ln04_full_exam"}
