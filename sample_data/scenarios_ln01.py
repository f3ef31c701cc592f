"""LN-01 scenarios: a cauda equina red flag and whether a spine MRI followed within 12 h.

Index = the red-flag finding's (or cauda equina diagnosis's) recorded time. Met: a completed
spine MRI performed in [index - 24 h, index + 12 h]. Excluded: an MRI contraindication in the
index encounter, or a died / left_ama / transferred departure at or before index + 12 h.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from chartaudit.sample_data.chart import Chart, Scenario
from chartaudit.sample_data.clock import Unplaceable, days, hours, minutes

RED_FLAGS = (
    "saddle_anesthesia",
    "new_bladder_dysfunction",
    "new_bowel_dysfunction",
    "progressive_bilateral_leg_weakness",
    "severe_neuro_deficit",
)
PRESENTING_DX = ("R32", "R15.9", "M54.89", "R29.898")
CERVICAL_MRI = "72141"
LUMBAR_CT = "72131"


@dataclass(frozen=True)
class RedFlag:
    """One red-flag presentation; times are relative to the index."""

    mri: timedelta | None = None  # when a spine MRI (or ``mri_code``) was performed
    mri_code: str | None = None
    mri_status: str = "completed"
    trigger: str = "finding"  # or an ICD-10-CM code written as-is, e.g. G83.4 or G834
    setting: str = "emergency"
    disposition: str = "admitted"
    departure: timedelta | None = None  # None: some hours after the last event
    contraindication: bool = False
    offset: bool = False  # write the MRI's performed_time with its explicit UTC offset


@dataclass(frozen=True)
class RedFlagVisit:
    encounter_id: str
    index: datetime
    departure: datetime
    flag: RedFlag


def red_flag_visit(chart: Chart, index: datetime, flag: RedFlag) -> RedFlagVisit:
    """The encounter in which the red flag is documented, with its exam, orders and MRI."""
    rng = chart.rng
    first = index if flag.mri is None else min(index, index + flag.mri)
    arrival = first - minutes(rng.randint(20, 150))
    last = index + hours(2) if flag.mri is None else max(index, index + flag.mri)
    departure = index + flag.departure if flag.departure else last + minutes(rng.randint(60, 240))
    encounter_id, _ = chart.encounter(
        arrival, setting=flag.setting, departure=departure, disposition=flag.disposition
    )
    chart.diagnosis(rng.choice(PRESENTING_DX), arrival + minutes(10), encounter_id)
    if flag.trigger == "finding":
        chart.finding(encounter_id, rng.choice(RED_FLAGS), "present", index)
    else:
        chart.diagnosis(flag.trigger, index, encounter_id)
    red_flag_exam(chart, encounter_id, index)
    if flag.contraindication:
        chart.finding(encounter_id, "mri_contraindication", "present", index + minutes(15))
        chart.order(
            encounter_id, LUMBAR_CT, ordered=index + minutes(30), performed=index + hours(2)
        )
    if flag.mri is not None:
        chart.spine_mri(
            encounter_id,
            index + flag.mri,
            earliest_order=arrival,
            code=flag.mri_code,
            status=flag.mri_status,
            offset=flag.offset,
        )
    if flag.disposition == "died":
        chart.death_date = chart.clock.local_date(departure)
    return RedFlagVisit(encounter_id, index, departure, flag)


def red_flag_exam(chart: Chart, encounter_id: str, index: datetime) -> None:
    rng = chart.rng
    at = index + minutes(rng.randint(5, 20))
    chart.finding(encounter_id, "perianal_sensation", rng.choice(("normal", "abnormal")), at)
    chart.finding(encounter_id, "anal_sphincter_tone", rng.choice(("normal", "abnormal")), at)
    if rng.random() < 0.6:
        chart.order(
            encounter_id,
            "spine_surgery_referral",
            ordered=at + minutes(10),
            system="LOCAL",
            category="referral",
            specialty=rng.choice(("neurosurgery", "spine_surgery", "orthopedic_spine")),
            status="ordered",
        )


# --- scenarios -------------------------------------------------------------------------------
def single_red_flag(chart: Chart, **flag_fields) -> None:
    """One red flag at a round-robin month; the span keeps every event inside coverage."""
    flag = RedFlag(**flag_fields)
    mri = flag.mri or timedelta(0)
    stay = flag.departure or timedelta(0)
    before = max(hours(27), hours(3) - mri)
    after = max(hours(16), mri + hours(6), stay + hours(1))
    index = chart.place_episode("LN-01", before=before, after=after)
    red_flag_visit(chart, index, flag)


def red_flag_across_dst(chart: Chart, *, direction: str) -> None:
    """Spring: 21:00 -> 10:00 is 13 h on the wall, 12 h real (met). Fall: 22:00 -> 10:00 is
    12 h on the wall, 13 h real (not met)."""
    forward, back = chart.clock.dst_changes()
    changes = forward if direction == "forward" else back
    if not changes:
        raise Unplaceable(f"no clock change ({direction}) inside the coverage")
    day = changes[0]
    index = chart.clock.exact(day - timedelta(days=1), 21 if direction == "forward" else 22)
    mri_at = chart.clock.exact(day, 10)
    if index - hours(27) < chart.clock.start or mri_at + hours(6) >= chart.clock.end:
        raise Unplaceable("the clock change is too close to the edge of coverage")
    red_flag_visit(chart, index, RedFlag(mri=mri_at - index))


def red_flag_on_last_evening(chart: Chart, *, mri: timedelta | None) -> None:
    """Red flag at 20:00 on the last day of coverage: no MRI yet is pending; +2 h is met."""
    index = chart.clock.exact(chart.clock.last_day, 20)
    red_flag_visit(chart, index, RedFlag(mri=mri, departure=hours(3)))


def repeated_red_flags(chart: Chart, *, gaps: tuple[timedelta, ...], mris: tuple) -> None:
    """Red flags at index + each gap, each in its own ED visit; episodes chain per 30 days."""
    offsets = (timedelta(0), *gaps)
    index = chart.place_episode("LN-01", before=hours(27), after=offsets[-1] + hours(16))
    for offset, mri in zip(offsets, mris, strict=True):
        red_flag_visit(chart, index + offset, RedFlag(mri=mri, disposition="discharged"))


def _s(weight: float, build, outcomes) -> Scenario:
    return Scenario(weight, build, {"LN-01": outcomes})


MET, NOT_MET = {"met"}, {"not_met"}
SCENARIOS: dict[str, Scenario] = {
    # label: (patients per 1000, builder, intended LN-01 outcomes)
    "ln01_mri_1h": _s(3, partial(single_red_flag, mri=hours(1)), MET),
    "ln01_mri_3h30": _s(3, partial(single_red_flag, mri=hours(3.5), offset=True), MET),
    "ln01_mri_11h": _s(2, partial(single_red_flag, mri=hours(11)), MET),
    "ln01_mri_12h00": _s(1, partial(single_red_flag, mri=hours(12)), MET),
    "ln01_mri_12h01": _s(1, partial(single_red_flag, mri=hours(12) + minutes(1)), NOT_MET),
    "ln01_mri_minus20h": _s(1, partial(single_red_flag, mri=-hours(20), setting="inpatient"), MET),
    "ln01_mri_minus24h00": _s(
        0.5, partial(single_red_flag, mri=-hours(24), setting="inpatient"), MET
    ),
    "ln01_mri_minus24h01": _s(
        0.5, partial(single_red_flag, mri=-hours(24) - minutes(1), setting="inpatient"), NOT_MET
    ),
    "ln01_mri_30h": _s(1.5, partial(single_red_flag, mri=hours(30)), NOT_MET),
    "ln01_no_mri": _s(3, partial(single_red_flag), NOT_MET),
    "ln01_mri_cancelled": _s(
        1, partial(single_red_flag, mri=hours(2), mri_status="cancelled"), NOT_MET
    ),
    "ln01_cervical_mri_only": _s(
        1, partial(single_red_flag, mri=hours(3), mri_code=CERVICAL_MRI), NOT_MET
    ),
    "ln01_cauda_dx_dot": _s(1.5, partial(single_red_flag, trigger="G83.4", mri=hours(4)), MET),
    "ln01_cauda_dx_nodot": _s(1, partial(single_red_flag, trigger="G834", mri=hours(6)), MET),
    "ln01_dst_spring_forward": _s(0.4, partial(red_flag_across_dst, direction="forward"), MET),
    "ln01_dst_fall_back": _s(0.4, partial(red_flag_across_dst, direction="back"), NOT_MET),
    "ln01_excl_contraindication": _s(
        1, partial(single_red_flag, contraindication=True), {"excluded"}
    ),
    "ln01_excl_left_ama": _s(
        1, partial(single_red_flag, disposition="left_ama", departure=hours(3)), {"excluded"}
    ),
    "ln01_transferred_20h": _s(
        1, partial(single_red_flag, disposition="transferred", departure=hours(20)), NOT_MET
    ),
    "ln01_excl_died": _s(
        0.7, partial(single_red_flag, disposition="died", departure=hours(6)), {"excluded"}
    ),
    "ln01_pending_no_mri": _s(0.4, partial(red_flag_on_last_evening, mri=None), {"pending"}),
    "ln01_end_day_mri_2h": _s(0.4, partial(red_flag_on_last_evening, mri=hours(2)), MET),
    # episodes chain per 30 days: the 10-day flag joins the first episode, the 35/45-day one not
    "ln01_repeat_10d_45d": _s(
        1,
        partial(repeated_red_flags, gaps=(days(10), days(45)), mris=(hours(2), None, hours(4))),
        ("met", "met"),
    ),
    "ln01_repeat_20d_35d": _s(
        0.7,
        partial(repeated_red_flags, gaps=(days(20), days(35)), mris=(hours(3), None, None)),
        ("met", "not_met"),
    ),
}
# The scenario that gives every coverage month an LN-01 case (see generator.FILLERS).
FILLER = {"LN-01": "ln01_mri_1h"}
