"""LN-08, LN-09 and LN-10 scenarios: work-up and treatment of neuropathy.

LN-08: a polyneuropathy or diabetic-neuropathy diagnosis with none in the prior 365 days. Met:
vitamin B12 (or methylmalonic acid), TSH and renal function all collected in [index - 365 d,
index + 90 d].
LN-09: the same candidates, for patients with no diabetes recorded before them (the index
diagnosis itself does not count). Met: HbA1c or fasting glucose in [index - 90 d, index + 30 d].
LN-10: the first start of a neuropathic-pain agent in a patient with diabetic neuropathy
recorded by the end of that month. source-2025: met when it is pregabalin or duloxetine;
evidence-2026: met unless it is an opioid (tramadol, oxycodone). Never pending.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from chartaudit.sample_data.chart import Chart, Scenario
from chartaudit.sample_data.clock import days, hours, minutes

B12, MMA, TSH, TSH_FREE, CREATININE, EGFR, EGFR_2021, HIV = (
    "2132-9",
    "13964-2",
    "3016-3",
    "11580-8",
    "2160-0",
    "33914-3",
    "98979-8",
    "56888-1",
)
HBA1C, HBA1C_IFCC, FASTING_GLUCOSE, RANDOM_GLUCOSE = "4548-4", "17856-6", "1558-6", "2345-7"
NEXT_DAY = days(1)
WORKUP = ((B12, NEXT_DAY), (TSH, NEXT_DAY), (CREATININE, NEXT_DAY))


@dataclass(frozen=True)
class Neuropathy:
    """A neuropathy diagnosis (the index, recorded in a clinic visit) and the labs around it."""

    dx: str = "G62.9"
    labs: tuple[tuple[str, timedelta], ...] = WORKUP  # (LOINC, collected at index + this)
    prior_diabetes: bool = False  # E11.9 on the problem list, about two years before
    diabetes_after: timedelta | None = None  # E11.9 recorded this long after the index
    prediabetes: bool = False  # R73.03 a year before (not diabetes)
    repeat_after: timedelta | None = None  # the same diagnosis again, this long after
    closed: timedelta = timedelta(0)  # keep this much of the coverage after the index


def neuropathy_visit(chart: Chart, index: datetime, n: Neuropathy) -> None:
    rng = chart.rng
    arrival = index - minutes(rng.randint(10, 30))
    encounter_id = chart.visit(arrival, minutes(45), "outpatient", department="Neurology")
    chart.diagnosis(n.dx, index, encounter_id)
    chart.finding(encounter_id, "vibration_128hz", "abnormal", index + minutes(5))
    if n.prior_diabetes:
        chart.diagnosis("E11.9", index - days(rng.randint(600, 800)), None, source="problem_list")
    if n.prediabetes:
        chart.diagnosis("R73.03", index - days(rng.randint(300, 400)), None, source="problem_list")
    if n.diabetes_after is not None:
        chart.diagnosis("E11.9", index + n.diabetes_after, encounter_id)
    chart.labs_around(encounter_id, index, n.labs)
    if n.repeat_after is not None:
        again = index + n.repeat_after
        chart.diagnosis(n.dx, again, chart.side_visit(again, "Neurology", "outpatient"))


def neuropathy(chart: Chart, measure: str, **fields) -> None:
    n = Neuropathy(**fields)
    deltas = [delta for _, delta in n.labs] + [timedelta(0)]
    later = [n.closed, max(deltas), n.repeat_after or timedelta(0), n.diabetes_after or hours(0)]
    index = chart.place_episode(
        measure, before=hours(1) - min(deltas), after=max(later) + hours(6), hour_range=(9, 16)
    )
    neuropathy_visit(chart, index, n)


def neuropathy_near_end(chart: Chart, **fields) -> None:
    index = chart.place_near_end(earliest=days(20), latest=days(3), hour_range=(9, 16))
    neuropathy_visit(chart, index, Neuropathy(**fields))


def neuropathy_closing_in_last_month(chart: Chart, **fields) -> None:
    """Indexed so that LN-09's 30-day window closes just before the end of coverage (in the last
    month when it has 31 days)."""
    index = chart.clock.end - days(30) - hours(3)
    neuropathy_visit(chart, index, Neuropathy(**fields))


# --- LN-10 ------------------------------------------------------------------------------------
DOSES = {  # ingredient -> (rxnorm, dose_mg, doses_per_day)
    "pregabalin": ("187832", 75.0, 2.0),
    "gabapentin": ("25480", 300.0, 3.0),
    "duloxetine": ("72625", 60.0, 1.0),
    "venlafaxine": ("39786", 75.0, 1.0),
    "amitriptyline": ("704", 10.0, 1.0),
    "nortriptyline": ("7531", 10.0, 1.0),
    "tramadol": ("10689", 50.0, 3.0),
    "oxycodone": ("7804", 5.0, 2.0),
    "gabapentin enacarbil": (None, 600.0, 1.0),
}


@dataclass(frozen=True)
class PainfulNeuropathy:
    agents: tuple[tuple[str, timedelta], ...] = (("pregabalin", timedelta(0)),)
    cancelled: str | None = None  # this agent ordered two days before, then cancelled
    dn: tuple[str, str] = ("ICD10CM", "E11.42")  # the diabetic neuropathy diagnosis
    # "before" (problem list), "same_day_after", "next_month" (at the first instant of the month
    # after the start's: not "at or before the end" of the start's month), "none"
    dn_when: str = "before"


def agent_start(
    chart: Chart, encounter_id: str, ingredient: str, at: datetime, status: str
) -> None:
    rxnorm, dose, per_day = DOSES[ingredient]
    if chart.rng.random() < 0.3:
        ingredient = ingredient.capitalize()
    chart.medication(
        encounter_id,
        ingredient,
        at,
        rxnorm=rxnorm,
        dose_mg=dose,
        doses_per_day=per_day,
        status=status,
    )


def painful_neuropathy(chart: Chart, **fields) -> None:
    p = PainfulNeuropathy(**fields)
    rng = chart.rng
    last_agent = max(delta for _, delta in p.agents)
    after = max(last_agent + hours(6), days(40) if p.dn_when == "next_month" else hours(6))
    start = chart.place_episode("LN-10", before=days(3), after=after, hour_range=(9, 15))
    system, code = p.dn
    if p.dn_when == "before":
        recorded = start - days(rng.randint(30, 400))
        chart.diagnosis(code, recorded, None, system=system, source="problem_list")
    elif p.dn_when == "none":
        chart.diagnosis("E11.9", start - days(rng.randint(30, 400)), None, source="problem_list")
    encounter_id = chart.visit(start - minutes(30), minutes(50), "outpatient")
    if p.dn_when == "same_day_after":
        chart.diagnosis(code, start + hours(1), encounter_id, system=system)
    elif p.dn_when == "next_month":
        recorded = chart.clock.next_month_start(start)
        chart.diagnosis(code, recorded, chart.side_visit(recorded, "Endocrinology", "outpatient"))
    if p.cancelled:
        agent_start(chart, encounter_id, p.cancelled, start - days(2), "cancelled")
    for ingredient, delta in p.agents:
        where = encounter_id if delta == timedelta(0) else chart.side_visit(start + delta, "Clinic")
        agent_start(chart, where, ingredient, start + delta, "active")


MET, NOT_MET, EXCLUDED, NO_CASE = {"met"}, {"not_met"}, {"excluded"}, set()
SECOND_LINE = {"source-2025": NOT_MET, "evidence-2026": MET}


def _ln08(weight: float, outcomes, **fields) -> Scenario:
    return Scenario(weight, partial(neuropathy, measure="LN-08", **fields), {"LN-08": outcomes})


def _ln09(weight: float, outcomes, **fields) -> Scenario:
    return Scenario(weight, partial(neuropathy, measure="LN-09", **fields), {"LN-09": outcomes})


def _ln10(weight: float, outcomes, **fields) -> Scenario:
    return Scenario(weight, partial(painful_neuropathy, **fields), {"LN-10": outcomes})


def labs_at(delta: timedelta, *loincs: str) -> tuple[tuple[str, timedelta], ...]:
    return tuple((loinc, delta) for loinc in loincs)


SCENARIOS: dict[str, Scenario] = {
    "ln08_full_workup": _ln08(3, MET),
    "ln08_mma_egfr_free_t4": _ln08(1, MET, labs=labs_at(days(3), MMA, TSH_FREE, EGFR)),
    "ln08_egfr_2021_and_hiv": _ln08(
        0.7, MET, labs=labs_at(NEXT_DAY, B12, TSH, EGFR_2021, HIV), dx="G60.9"
    ),
    "ln08_workup_365d00_before": _ln08(0.5, MET, labs=labs_at(-days(365), B12, TSH, CREATININE)),
    # not met; still pending while the 90-day window is open (always, in a 13-month coverage)
    "ln08_b12_365d01_before": _ln08(
        0.5,
        {"not_met", "pending"},
        labs=((B12, -days(365) - minutes(1)), (TSH, NEXT_DAY), (CREATININE, NEXT_DAY)),
    ),
    "ln08_tsh_90d00_after": _ln08(
        0.5, MET, labs=((B12, NEXT_DAY), (CREATININE, NEXT_DAY), (TSH, days(90)))
    ),
    "ln08_tsh_90d01_after": _ln08(
        0.5, NOT_MET, labs=((B12, NEXT_DAY), (CREATININE, NEXT_DAY), (TSH, days(90) + minutes(1)))
    ),
    "ln08_no_tsh": _ln08(1, NOT_MET, labs=labs_at(NEXT_DAY, B12, CREATININE), closed=days(90)),
    "ln08_no_labs": _ln08(1, NOT_MET, labs=(), closed=days(90)),
    "ln08_diabetic_e1142": _ln08(1, MET, dx="E11.42", prior_diabetes=True),
    "ln08_repeat_200d": _ln08(0.5, ("met",), repeat_after=days(200)),
    "ln08_pending_no_tsh": Scenario(
        0.5,
        partial(neuropathy_near_end, labs=labs_at(hours(2), B12, CREATININE)),
        {"LN-08": {"pending"}},
    ),
    "ln09_hba1c_10d": _ln09(2, MET, labs=labs_at(days(10), HBA1C)),
    "ln09_hba1c_ifcc_2d": _ln09(0.5, MET, labs=labs_at(days(2), HBA1C_IFCC)),
    "ln09_fasting_glucose_90d00_before": _ln09(0.5, MET, labs=labs_at(-days(90), FASTING_GLUCOSE)),
    "ln09_fasting_glucose_90d01_before": _ln09(
        0.5, NOT_MET, labs=labs_at(-days(90) - minutes(1), FASTING_GLUCOSE), closed=days(30)
    ),
    "ln09_hba1c_30d00_after": _ln09(0.5, MET, labs=labs_at(days(30), HBA1C)),
    "ln09_hba1c_30d01_after": _ln09(0.5, NOT_MET, labs=labs_at(days(30) + minutes(1), HBA1C)),
    "ln09_no_test": _ln09(1, NOT_MET, closed=days(30)),
    "ln09_random_glucose_only": _ln09(
        0.5, NOT_MET, labs=labs_at(days(1), RANDOM_GLUCOSE), closed=days(30)
    ),
    # the index diagnosis E11.42 is diabetes, but not diabetes recorded before the index
    "ln09_index_e1142_hba1c": _ln09(1, MET, dx="E11.42", labs=labs_at(hours(0), HBA1C)),
    "ln09_prior_diabetes": Scenario(
        1,
        partial(neuropathy, measure="LN-09", prior_diabetes=True),
        {"LN-09": NO_CASE, "LN-08": MET},
    ),
    "ln09_diabetes_after_index": _ln09(
        0.5, MET, labs=labs_at(days(1), HBA1C), diabetes_after=hours(2)
    ),
    "ln09_prediabetes_prior": _ln09(
        0.5, MET, labs=labs_at(days(3), FASTING_GLUCOSE), prediabetes=True
    ),
    "ln09_pending_no_test": Scenario(
        0.5, partial(neuropathy_near_end, labs=()), {"LN-09": {"pending"}}
    ),
    "ln09_no_test_closing_in_last_month": Scenario(
        0.5, partial(neuropathy_closing_in_last_month, labs=()), {"LN-09": NOT_MET}
    ),
    "ln10_pregabalin_first": _ln10(3, MET),
    "ln10_duloxetine_first": _ln10(1, MET, agents=(("duloxetine", timedelta(0)),)),
    "ln10_gabapentin_first": _ln10(1.5, SECOND_LINE, agents=(("gabapentin", timedelta(0)),)),
    "ln10_amitriptyline_first": _ln10(0.5, SECOND_LINE, agents=(("amitriptyline", timedelta(0)),)),
    "ln10_venlafaxine_first": _ln10(0.5, SECOND_LINE, agents=(("venlafaxine", timedelta(0)),)),
    "ln10_nortriptyline_first": _ln10(0.5, SECOND_LINE, agents=(("nortriptyline", timedelta(0)),)),
    "ln10_tramadol_first": _ln10(1, NOT_MET, agents=(("tramadol", timedelta(0)),)),
    "ln10_oxycodone_then_pregabalin": _ln10(
        0.5, NOT_MET, agents=(("oxycodone", timedelta(0)), ("pregabalin", days(14)))
    ),
    # agents started at the same instant
    "ln10_pregabalin_with_tramadol": _ln10(
        0.5,
        {"source-2025": MET, "evidence-2026": NOT_MET},
        agents=(("pregabalin", timedelta(0)), ("tramadol", timedelta(0))),
    ),
    "ln10_gabapentin_with_duloxetine": _ln10(
        0.5, MET, agents=(("gabapentin", timedelta(0)), ("duloxetine", timedelta(0)))
    ),
    "ln10_cancelled_tramadol_then_pregabalin": _ln10(0.5, MET, cancelled="tramadol"),
    # gabapentin enacarbil is not one of the eight agents
    "ln10_enacarbil_then_tramadol": _ln10(
        0.5, NOT_MET, agents=(("gabapentin enacarbil", timedelta(0)), ("tramadol", days(10)))
    ),
    "ln10_dn_snomed_duloxetine": _ln10(
        0.5, MET, agents=(("duloxetine", timedelta(0)),), dn=("SNOMEDCT", "368581000119106")
    ),
    "ln10_dn_same_day_after_start": _ln10(0.5, MET, dn_when="same_day_after"),
    "ln10_dn_at_next_month_start": _ln10(0.5, NO_CASE, dn_when="next_month"),
    "ln10_diabetes_without_neuropathy": _ln10(0.5, NO_CASE, dn_when="none"),
}
FILLER = {"LN-08": "ln08_full_workup", "LN-09": "ln09_hba1c_10d", "LN-10": "ln10_pregabalin_first"}
