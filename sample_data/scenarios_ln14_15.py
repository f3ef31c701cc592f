"""LN-14 and LN-15 scenarios: peripheral arterial disease (PAD).

LN-14: an encounter with vascular claudication present, a PAD diagnosis (I70.21x, I70.22x,
I73.9) or abnormal pedal pulses, and no ankle-brachial index (ABI) in [arrival - 365 d,
arrival - 30 d). Met: an ABI (completed CPT 93922-93924 / LOINC / SNOMED order, a 77194-9 lab,
or a 401221002 finding not marked not_done) in [index - 30 d, index + 90 d].
LN-15: an ABI value <= 0.90 (lab or finding) or a PAD diagnosis I70.21x/I70.22x. Met: a
vascular surgery or vascular medicine referral ordered in [index, index + 90 d].
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from chartaudit.sample_data.chart import Chart, Scenario
from chartaudit.sample_data.clock import days, hours, minutes

ABI_LOINC, ABI_SNOMED = "77194-9", "401221002"
PAD_DX = ("I70.213", "I70.212", "I70.221", "I70.219")
SEVEN_DAYS, TWENTY_DAYS = days(7), days(20)


@dataclass(frozen=True)
class Claudication:
    # the sign in the index visit: claudication, pad_dx, pad_i739, pulses, pulses_snomed,
    # pulses_normal (no sign)
    sign: str = "claudication"
    # (kind, at index + this): cpt, lab, finding, loinc_order, finding_not_done, not_performed
    abi: tuple[str, timedelta] | None = ("cpt", SEVEN_DAYS)
    closed: timedelta = timedelta(0)


def claudication_visit(chart: Chart, arrival: datetime, c: Claudication) -> None:
    rng = chart.rng
    encounter_id = chart.visit(arrival, minutes(40), "outpatient")
    noted = arrival + minutes(10)
    if c.sign == "claudication":
        chart.finding(encounter_id, "vascular_claudication", "present", noted)
    elif c.sign in ("pad_dx", "pad_i739"):
        code = rng.choice(PAD_DX) if c.sign == "pad_dx" else "I73.9"
        chart.diagnosis(code, noted, encounter_id)
    elif c.sign == "pulses_snomed":
        chart.finding(encounter_id, "91161007", "abnormal", noted, system="SNOMEDCT")
    else:
        result = "normal" if c.sign == "pulses_normal" else "abnormal"
        chart.finding(encounter_id, "pedal_pulses", result, noted)
    chart.finding(encounter_id, "neurogenic_claudication", "absent", noted)
    if c.abi:
        kind, delta = c.abi
        abi(chart, kind, arrival + delta)


def abi(chart: Chart, kind: str, at: datetime, value: float | None = None) -> None:
    """One ABI of the given kind at ``at``, in a vascular-lab visit."""
    visit = chart.side_visit(at, "Vascular Lab")
    if kind == "lab":
        chart.result(visit, ABI_LOINC, at, value=value)
    elif kind in ("finding", "finding_not_done"):
        value = value if value is not None else round(chart.rng.uniform(0.55, 1.25), 2)
        done = kind == "finding"
        result = ("abnormal" if value <= 0.9 else "normal") if done else "not_done"
        chart.finding(
            visit, ABI_SNOMED, result, at, system="SNOMEDCT", value=value if done else None
        )
    else:
        system, code = ("LOINC", ABI_LOINC) if kind == "loinc_order" else ("CPT", "93922")
        done = kind != "not_performed"
        chart.order(
            visit,
            code,
            ordered=at - minutes(10),
            performed=at if done else None,
            status="completed" if done else "ordered",
            system=system,
            category="procedure",
        )


def claudication(chart: Chart, **fields) -> None:
    c = Claudication(**fields)
    delta = c.abi[1] if c.abi else timedelta(0)
    after = max(c.closed, delta) + hours(6)
    before = max(hours(1), hours(1) - delta)
    arrival = chart.place_episode("LN-14", before=before, after=after, hour_range=(9, 16))
    claudication_visit(chart, arrival, c)


def claudication_near_end(chart: Chart, **fields) -> None:
    arrival = chart.place_near_end(earliest=days(20), latest=days(3), hour_range=(9, 16))
    claudication_visit(chart, arrival, Claudication(**fields))


# --- LN-15 ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Abnormal:
    trigger: str = "lab"  # lab (77194-9), finding (401221002), pad_dx (I70.21x/22x), i739
    value: float = 0.7
    referral: timedelta | None = TWENTY_DAYS
    specialty: str = "vascular_surgery"
    referral_status: str = "ordered"
    closed: timedelta = timedelta(0)


def abnormal_timeline(chart: Chart, index: datetime, a: Abnormal) -> None:
    if a.trigger in ("lab", "finding"):
        abi(chart, a.trigger, index, a.value)
    else:
        code = chart.rng.choice(PAD_DX) if a.trigger == "pad_dx" else "I73.9"
        clinic = chart.visit(index - minutes(15), minutes(40), "outpatient")
        chart.diagnosis(code, index, clinic)
    if a.referral is not None:
        at = index + a.referral
        clinic = chart.side_visit(at, "Family Medicine", "outpatient")
        chart.referral(clinic, a.specialty, at, status=a.referral_status)


def abnormal_abi(chart: Chart, **fields) -> None:
    a = Abnormal(**fields)
    delta = a.referral or timedelta(0)
    before = max(hours(1), hours(1) - delta)
    after = max(a.closed, delta) + hours(6)
    index = chart.place_episode("LN-15", before=before, after=after, hour_range=(9, 16))
    abnormal_timeline(chart, index, a)


def abnormal_abi_near_end(chart: Chart, **fields) -> None:
    index = chart.place_near_end(earliest=days(20), latest=days(3), hour_range=(9, 16))
    abnormal_timeline(chart, index, Abnormal(**fields))


MET, NOT_MET, NO_CASE = {"met"}, {"not_met"}, set()


def _ln14(weight: float, outcomes, **fields) -> Scenario:
    return Scenario(weight, partial(claudication, **fields), {"LN-14": outcomes})


def _ln15(weight: float, outcomes, **fields) -> Scenario:
    return Scenario(weight, partial(abnormal_abi, **fields), {"LN-15": outcomes})


SCENARIOS: dict[str, Scenario] = {
    "ln14_claudication_abi_cpt_7d": _ln14(3, MET),
    "ln14_pad_dx_abi_lab_20d": _ln14(1, MET, sign="pad_dx", abi=("lab", days(20))),
    "ln14_pulses_snomed_abi_finding_3d": _ln14(
        1, MET, sign="pulses_snomed", abi=("finding", days(3))
    ),
    "ln14_i739_loinc_order_1d": _ln14(0.7, MET, sign="pad_i739", abi=("loinc_order", days(1))),
    "ln14_abi_30d00_before": _ln14(0.5, MET, sign="pulses", abi=("cpt", -days(30))),
    # an ABI in [arrival - 365 d, arrival - 30 d): the visit is not a candidate
    "ln14_abi_30d01_before": _ln14(0.5, NO_CASE, abi=("cpt", -days(30) - minutes(1))),
    "ln14_abi_90d00_after": _ln14(0.5, MET, abi=("lab", days(90))),
    "ln14_abi_90d01_after": _ln14(0.5, NOT_MET, abi=("lab", days(90) + minutes(1))),
    "ln14_no_abi": _ln14(1, NOT_MET, abi=None, closed=days(90)),
    "ln14_abi_not_done": _ln14(0.5, NOT_MET, abi=("finding_not_done", days(2)), closed=days(90)),
    "ln14_abi_not_performed": _ln14(0.5, NOT_MET, abi=("not_performed", days(2)), closed=days(90)),
    "ln14_pulses_normal": _ln14(0.5, NO_CASE, sign="pulses_normal", abi=None),
    "ln14_pending_no_abi": Scenario(
        0.5, partial(claudication_near_end, abi=None), {"LN-14": {"pending"}}
    ),
    "ln15_abi_090_referral_20d": _ln15(3, MET, value=0.90),
    "ln15_abi_091": _ln15(0.7, NO_CASE, value=0.91, referral=None),
    "ln15_finding_090_referral_2d": _ln15(
        0.7, MET, trigger="finding", value=0.90, referral=days(2), specialty="vascular_medicine"
    ),
    "ln15_finding_085_no_referral": _ln15(
        0.7, NOT_MET, trigger="finding", value=0.85, referral=None, closed=days(90)
    ),
    "ln15_pad_dx_referral_90d00": _ln15(0.5, MET, trigger="pad_dx", referral=days(90)),
    "ln15_pad_dx_referral_90d01": _ln15(
        0.5, NOT_MET, trigger="pad_dx", referral=days(90) + minutes(1)
    ),
    "ln15_referral_at_the_index": _ln15(0.5, MET, referral=timedelta(0)),
    "ln15_referral_1min_before": _ln15(0.5, NOT_MET, referral=-minutes(1), closed=days(90)),
    "ln15_referral_cancelled": _ln15(0.5, NOT_MET, referral_status="cancelled", closed=days(90)),
    "ln15_referral_podiatry": _ln15(0.5, NOT_MET, specialty="podiatry", closed=days(90)),
    "ln15_i739_only": _ln15(0.5, NO_CASE, trigger="i739"),
    "ln15_pending_no_referral": Scenario(
        0.5, partial(abnormal_abi_near_end, referral=None), {"LN-15": {"pending"}}
    ),
}
FILLER = {"LN-14": "ln14_claudication_abi_cpt_7d", "LN-15": "ln15_abi_090_referral_20d"}
