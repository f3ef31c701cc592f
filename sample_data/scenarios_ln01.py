"""LN-01 scenarios: a cauda equina red flag and whether a spine MRI followed within 12 h.

Index = the red-flag finding's (or cauda equina diagnosis's) recorded time. Met: a completed
spine MRI performed in [index - 24 h, index + 12 h]. Excluded: an MRI contraindication in the
index encounter, or a died / left_ama / transferred departure at or before index + 12 h.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from chartaudit.sample_data.chart import Chart, episode_starts
from chartaudit.sample_data.clock import Unplaceable, days, hours, minutes

RED_FLAGS = (
    "saddle_anesthesia",
    "new_bladder_dysfunction",
    "new_bowel_dysfunction",
    "progressive_bilateral_leg_weakness",
    "severe_neuro_deficit",
)
PRESENTING_DX = ("R32", "R15.9", "M54.89", "R29.898")
EXCLUDING_DISPOSITIONS = ("died", "left_ama", "transferred")
WINDOW = hours(12)
LOOKBACK = hours(24)
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


def ln01_case(chart: Chart, visit: RedFlagVisit) -> str:
    index, flag = visit.index, visit.flag
    leaves_early = flag.disposition in EXCLUDING_DISPOSITIONS and visit.departure <= index + WINDOW
    return chart.case(
        "LN-01",
        index,
        visit.encounter_id,
        excluded=flag.contraindication or leaves_early,
        met=chart.spine_mri_within(index - LOOKBACK, index + WINDOW),
        closes=index + WINDOW,
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
    ln01_case(chart, red_flag_visit(chart, index, flag))


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
    ln01_case(chart, red_flag_visit(chart, index, RedFlag(mri=mri_at - index)))


def red_flag_on_last_evening(chart: Chart, *, mri: timedelta | None) -> None:
    """Red flag at 20:00 on the last day of coverage: no MRI yet is pending; +2 h is met."""
    index = chart.clock.exact(chart.clock.last_day, 20)
    ln01_case(chart, red_flag_visit(chart, index, RedFlag(mri=mri, departure=hours(3))))


def repeated_red_flags(chart: Chart, *, gaps: tuple[timedelta, ...], mris: tuple) -> None:
    """Red flags at index + each gap, each in its own ED visit; episodes chain per 30 days."""
    offsets = (timedelta(0), *gaps)
    index = chart.place_episode("LN-01", before=hours(27), after=offsets[-1] + hours(16))
    visits = [
        red_flag_visit(chart, index + offset, RedFlag(mri=mri, disposition="discharged"))
        for offset, mri in zip(offsets, mris, strict=True)
    ]
    starts = set(episode_starts([visit.index for visit in visits]))
    for visit in visits:
        if visit.index in starts:
            ln01_case(chart, visit)


Builder = Callable[[Chart], None]

SCENARIOS: dict[str, tuple[float, Builder]] = {
    # label: (patients per 1000, builder)
    "ln01_mri_1h": (3, partial(single_red_flag, mri=hours(1))),
    "ln01_mri_3h30": (3, partial(single_red_flag, mri=hours(3.5), offset=True)),
    "ln01_mri_11h": (2, partial(single_red_flag, mri=hours(11))),
    "ln01_mri_12h00": (1, partial(single_red_flag, mri=hours(12))),
    "ln01_mri_12h01": (1, partial(single_red_flag, mri=hours(12) + minutes(1))),
    "ln01_mri_minus20h": (1, partial(single_red_flag, mri=-hours(20), setting="inpatient")),
    "ln01_mri_30h": (1.5, partial(single_red_flag, mri=hours(30))),
    "ln01_no_mri": (3, partial(single_red_flag)),
    "ln01_mri_cancelled": (1, partial(single_red_flag, mri=hours(2), mri_status="cancelled")),
    "ln01_cervical_mri_only": (1, partial(single_red_flag, mri=hours(3), mri_code=CERVICAL_MRI)),
    "ln01_cauda_dx_dot": (1.5, partial(single_red_flag, trigger="G83.4", mri=hours(4))),
    "ln01_cauda_dx_nodot": (1, partial(single_red_flag, trigger="G834", mri=hours(6))),
    "ln01_dst_spring_forward": (0.4, partial(red_flag_across_dst, direction="forward")),
    "ln01_dst_fall_back": (0.4, partial(red_flag_across_dst, direction="back")),
    "ln01_excl_contraindication": (1, partial(single_red_flag, contraindication=True)),
    "ln01_excl_left_ama": (
        1,
        partial(single_red_flag, disposition="left_ama", departure=hours(3)),
    ),
    "ln01_transferred_20h": (
        1,
        partial(single_red_flag, disposition="transferred", departure=hours(20)),
    ),
    "ln01_excl_died": (0.7, partial(single_red_flag, disposition="died", departure=hours(6))),
    "ln01_pending_no_mri": (0.4, partial(red_flag_on_last_evening, mri=None)),
    "ln01_end_day_mri_2h": (0.4, partial(red_flag_on_last_evening, mri=hours(2))),
    "ln01_repeat_10d_45d": (
        1,
        partial(repeated_red_flags, gaps=(days(10), days(45)), mris=(hours(2), None, hours(4))),
    ),
    "ln01_repeat_20d_35d": (
        0.7,
        partial(repeated_red_flags, gaps=(days(20), days(35)), mris=(hours(3), None, None)),
    ),
}
