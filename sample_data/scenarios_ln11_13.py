"""LN-11, LN-12 and LN-13 scenarios: restless legs syndrome (RLS).

LN-11: an RLS diagnosis (G25.81) or RLS symptoms finding with none in the prior 365 days.
source-2025: ferritin in [index - 90 d, index + 30 d]; evidence-2026: ferritin AND transferrin
saturation in that window.
LN-12: an RLS patient's low result: ferritin < 50 (source-2025); ferritin <= 75 or transferrin
saturation < 20 % (evidence-2026). Met: an iron preparation started in [result, result + 90 d].
LN-13: each ropinirole or pramipexole order of an RLS patient without Parkinson's disease. Not
met: a daily dose above the maximum (4 mg, 0.5 mg); a first order above the starting dose
(0.25 mg, 0.125 mg); a first order with no ferritin in the 90 days before. Never pending.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from chartaudit.sample_data.chart import Chart, Scenario
from chartaudit.sample_data.clock import days, hours, minutes

FERRITIN, TSAT = "2276-4", "2502-3"
NEXT_DAY, TEN_DAYS, TWENTY_DAYS = days(1), days(10), days(20)
IRON = {  # ingredient -> (dose_mg, doses_per_day, route)
    "ferrous sulfate": (325.0, 1.0, "oral"),
    "ferrous gluconate": (324.0, 2.0, "oral"),
    "ferric carboxymaltose": (750.0, 1.0, "intravenous"),
}
AGONISTS = {"ropinirole": "72302", "pramipexole": "746741"}


@dataclass(frozen=True)
class Restless:
    trigger: str = "dx"  # G25.81 in the index visit, or "symptoms" (an rls_symptoms finding)
    labs: tuple[tuple[str, timedelta], ...] = ((FERRITIN, NEXT_DAY), (TSAT, NEXT_DAY))
    repeat_after: timedelta | None = None  # symptoms documented again this long after
    closed: timedelta = timedelta(0)  # keep this much of the coverage after the index


def restless_visit(chart: Chart, index: datetime, r: Restless) -> None:
    arrival = index - minutes(chart.rng.randint(10, 25))
    department = chart.rng.choice(("Neurology", "Family Medicine", "Internal Medicine"))
    encounter_id = chart.visit(arrival, minutes(40), "outpatient", department=department)
    if r.trigger == "dx":
        chart.diagnosis("G25.81", index, encounter_id)
    else:
        chart.finding(encounter_id, "rls_symptoms", "present", index)
    chart.labs_around(encounter_id, index, r.labs)
    if r.repeat_after is not None:
        again = index + r.repeat_after
        chart.finding(
            chart.side_visit(again, "Neurology", "outpatient"), "rls_symptoms", "present", again
        )


def restless(chart: Chart, **fields) -> None:
    r = Restless(**fields)
    deltas = [delta for _, delta in r.labs] + [timedelta(0)]
    after = max(r.closed, max(deltas), r.repeat_after or timedelta(0)) + hours(6)
    index = chart.place_episode(
        "LN-11", before=hours(1) - min(deltas), after=after, hour_range=(9, 16)
    )
    restless_visit(chart, index, r)


def restless_near_end(chart: Chart, **fields) -> None:
    index = chart.place_near_end(earliest=days(20), latest=days(3), hour_range=(9, 16))
    restless_visit(chart, index, Restless(**fields))


def restless_closing_in_last_month(chart: Chart, **fields) -> None:
    """The 30-day window closes just before the end of coverage."""
    restless_visit(chart, chart.clock.end - days(30) - hours(3), Restless(**fields))


# --- LN-12 ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LowIron:
    results: tuple[tuple[str, float, timedelta], ...] = ((FERRITIN, 30.0, timedelta(0)),)
    iron: tuple[str, timedelta] | None = ("ferrous sulfate", TEN_DAYS)  # started at index + this
    iron_status: str = "active"
    # G25.81 a week before; "symptoms": the finding only; "next_month": the finding, and the
    # diagnosis at the first instant of the next month (not "at or before the end" of this one)
    rls: str = "dx"
    closed: timedelta = timedelta(0)


def low_iron_timeline(chart: Chart, index: datetime, low: LowIron) -> None:
    seen = index - days(7)
    clinic = chart.visit(seen, minutes(40), "outpatient", department="Sleep Medicine")
    if low.rls == "dx":
        chart.diagnosis("G25.81", seen + minutes(10), clinic)
    else:
        chart.finding(clinic, "rls_symptoms", "present", seen + minutes(10))
    if low.rls == "next_month":
        recorded = chart.clock.next_month_start(index)
        chart.diagnosis("G25.81", recorded, chart.side_visit(recorded, "Neurology", "outpatient"))
    for loinc, value, delta in low.results:
        at = index + delta
        chart.result(chart.side_visit(at, "Laboratory"), loinc, at, value=value)
    if low.iron:
        ingredient, delta = low.iron
        dose, per_day, route = IRON[ingredient]
        chart.medication(
            chart.side_visit(index + delta, "Sleep Medicine", "outpatient"),
            ingredient,
            index + delta,
            rxnorm="24947" if ingredient == "ferrous sulfate" else None,
            dose_mg=dose,
            doses_per_day=per_day,
            route=route,
            status=low.iron_status,
        )


def low_iron(chart: Chart, **fields) -> None:
    low = LowIron(**fields)
    later = [low.closed, days(40) if low.rls == "next_month" else timedelta(0)]
    later += [delta for *_, delta in low.results] + ([low.iron[1]] if low.iron else [])
    before = days(7) + hours(1) + max(timedelta(0), -min(later))
    index = chart.place_episode(
        "LN-12", before=before, after=max(later) + hours(6), hour_range=(9, 16)
    )
    low_iron_timeline(chart, index, low)


def low_iron_near_end(chart: Chart, **fields) -> None:
    index = chart.place_near_end(earliest=days(20), latest=days(3), hour_range=(9, 16))
    low_iron_timeline(chart, index, LowIron(**fields))


# --- LN-13 ------------------------------------------------------------------------------------
Order = tuple[str, float | None, float | None, timedelta]  # ingredient, dose_mg, per day, start


@dataclass(frozen=True)
class Agonist:
    orders: tuple[Order, ...] = (("ropinirole", 0.25, 1.0, timedelta(0)),)
    ferritin: timedelta | None = TWENTY_DAYS  # collected this long before the first start
    cancelled_first: bool = False  # a cancelled 1 mg ropinirole order two days before
    # G20 "before" the first order, or "later": at the first instant of the next month
    parkinsons: str | None = None
    rls: str = "dx"  # on the problem list; "symptoms": the finding only
    gabapentin_first: bool = False  # gabapentin for RLS started 30 days before the agonist


def agonist_timeline(chart: Chart, first: datetime, a: Agonist) -> None:
    rng = chart.rng
    if a.rls == "dx":
        chart.diagnosis("G25.81", first - days(rng.randint(60, 400)), None, source="problem_list")
    else:
        seen = first - days(3)
        chart.finding(
            chart.side_visit(seen, "Sleep Medicine", "outpatient"), "rls_symptoms", "present", seen
        )
    if a.parkinsons == "before":
        chart.diagnosis("G20", first - days(rng.randint(100, 500)), None, source="problem_list")
    elif a.parkinsons == "later":
        at = chart.clock.next_month_start(first)
        chart.diagnosis("G20.A1", at, chart.side_visit(at, "Neurology", "outpatient"))
    if a.ferritin is not None:
        at = first - a.ferritin
        chart.result(chart.side_visit(at, "Laboratory"), FERRITIN, at)
    if a.gabapentin_first:
        at = first - days(30)
        chart.medication(
            chart.side_visit(at, "Sleep Medicine", "outpatient"),
            "gabapentin",
            at,
            rxnorm="25480",
            dose_mg=300.0,
            doses_per_day=1.0,
        )
    if a.cancelled_first:
        at = first - days(2)
        chart.medication(
            chart.side_visit(at, "Sleep Medicine", "outpatient"),
            "ropinirole",
            at,
            rxnorm=AGONISTS["ropinirole"],
            dose_mg=1.0,
            doses_per_day=1.0,
            status="cancelled",
        )
    for ingredient, dose, per_day, delta in a.orders:
        at = first + delta
        chart.medication(
            chart.side_visit(at, "Sleep Medicine", "outpatient"),
            ingredient.capitalize() if rng.random() < 0.3 else ingredient,
            at,
            rxnorm=AGONISTS[ingredient],
            dose_mg=dose,
            doses_per_day=per_day,
        )


def agonist(chart: Chart, **fields) -> None:
    a = Agonist(**fields)
    later = max(delta for *_, delta in a.orders)
    if a.parkinsons == "later":
        later = max(later, days(32))
    if a.ferritin is not None:
        later = max(later, -a.ferritin)
    before = max(a.ferritin or timedelta(0), days(31) if a.gabapentin_first else days(3)) + hours(1)
    first = chart.place_episode("LN-13", before=before, after=later + hours(6), hour_range=(9, 16))
    agonist_timeline(chart, first, a)


MET, NOT_MET, NO_CASE = {"met"}, {"not_met"}, set()


def _ln11(weight: float, outcomes, **fields) -> Scenario:
    return Scenario(weight, partial(restless, **fields), {"LN-11": outcomes})


def _ln12(weight: float, outcomes, **fields) -> Scenario:
    return Scenario(weight, partial(low_iron, **fields), {"LN-12": outcomes})


def _ln13(weight: float, outcomes, **fields) -> Scenario:
    return Scenario(weight, partial(agonist, **fields), {"LN-13": outcomes})


def ferritin(value: float, delta: timedelta = timedelta(0)) -> tuple[str, float, timedelta]:
    return FERRITIN, value, delta


def ropinirole(dose: float | None, per_day: float | None, delta: timedelta = timedelta(0)) -> Order:
    return "ropinirole", dose, per_day, delta


def pramipexole(
    dose: float | None, per_day: float | None, delta: timedelta = timedelta(0)
) -> Order:
    return "pramipexole", dose, per_day, delta


FERRITIN_ONLY = ((FERRITIN, NEXT_DAY),)
SOURCE_ONLY = {"source-2025": MET, "evidence-2026": NOT_MET}
EVIDENCE_ONLY_NOT_MET = {"source-2025": NO_CASE, "evidence-2026": NOT_MET}
EVIDENCE_ONLY_MET = {"source-2025": NO_CASE, "evidence-2026": MET}

SCENARIOS: dict[str, Scenario] = {
    "ln11_ferritin_and_tsat": _ln11(3, MET),
    "ln11_ferritin_only": _ln11(1.5, SOURCE_ONLY, labs=FERRITIN_ONLY, closed=days(30)),
    "ln11_tsat_only": _ln11(0.5, NOT_MET, labs=((TSAT, NEXT_DAY),), closed=days(30)),
    "ln11_no_labs": _ln11(1, NOT_MET, labs=(), closed=days(30)),
    "ln11_symptoms_ferritin_tsat": _ln11(1, MET, trigger="symptoms"),
    "ln11_labs_90d00_before": _ln11(0.5, MET, labs=((FERRITIN, -days(90)), (TSAT, -days(90)))),
    "ln11_labs_90d01_before": _ln11(
        0.5,
        NOT_MET,
        labs=((FERRITIN, -days(90) - minutes(1)), (TSAT, -days(90) - minutes(1))),
        closed=days(30),
    ),
    "ln11_labs_30d00_after": _ln11(0.5, MET, labs=((FERRITIN, days(30)), (TSAT, days(30)))),
    "ln11_labs_30d01_after": _ln11(
        0.5, NOT_MET, labs=((FERRITIN, days(30) + minutes(1)), (TSAT, days(30) + minutes(1)))
    ),
    "ln11_repeat_symptoms_100d": _ln11(0.5, ("met",), trigger="symptoms", repeat_after=days(100)),
    "ln11_pending_ferritin_only": Scenario(
        0.5,
        partial(restless_near_end, labs=((FERRITIN, hours(2)),)),
        {"LN-11": {"source-2025": MET, "evidence-2026": {"pending"}}},
    ),
    "ln11_pending_no_labs": Scenario(
        0.5, partial(restless_near_end, labs=()), {"LN-11": {"pending"}}
    ),
    "ln11_no_labs_closing_in_last_month": Scenario(
        0.5, partial(restless_closing_in_last_month, labs=()), {"LN-11": NOT_MET}
    ),
    "ln12_ferritin_30_iron_10d": _ln12(3, MET),
    "ln12_ferritin_30_no_iron": _ln12(1, NOT_MET, iron=None, closed=days(90)),
    "ln12_ferritin_49_iron_90d00": _ln12(
        0.5, MET, results=(ferritin(49.0),), iron=("ferrous gluconate", days(90))
    ),
    "ln12_ferritin_30_iron_90d01": _ln12(
        0.5, NOT_MET, iron=("ferrous sulfate", days(90) + minutes(1))
    ),
    "ln12_ferritin_50_no_iron": _ln12(
        0.7, EVIDENCE_ONLY_NOT_MET, results=(ferritin(50.0),), iron=None, closed=days(90)
    ),
    "ln12_ferritin_75_iron_20d": _ln12(
        0.7, EVIDENCE_ONLY_MET, results=(ferritin(75.0),), iron=("ferrous sulfate", days(20))
    ),
    "ln12_ferritin_76_tsat_20": _ln12(
        0.5, NO_CASE, results=(ferritin(76.0), (TSAT, 20.0, timedelta(0))), iron=None
    ),
    "ln12_tsat_19_iron_5d": _ln12(
        0.5,
        EVIDENCE_ONLY_MET,
        results=(ferritin(120.0), (TSAT, 19.0, timedelta(0))),
        iron=("ferrous sulfate", days(5)),
    ),
    "ln12_iron_at_the_result": _ln12(0.5, MET, iron=("ferrous sulfate", timedelta(0))),
    "ln12_iron_1min_before": _ln12(
        0.5, NOT_MET, iron=("ferrous sulfate", -minutes(1)), closed=days(90)
    ),
    "ln12_iron_cancelled": _ln12(0.5, NOT_MET, iron_status="cancelled", closed=days(90)),
    "ln12_ferric_carboxymaltose": _ln12(0.5, MET, iron=("ferric carboxymaltose", days(30))),
    # "an RLS patient" is the diagnosis, recorded by the end of the month
    "ln12_symptoms_only": _ln12(0.5, NO_CASE, rls="symptoms", iron=None),
    "ln12_rls_dx_at_next_month_start": _ln12(0.5, NO_CASE, rls="next_month", iron=None),
    # a borderline ferritin starts the evidence-2026 episode; source-2025 waits for the low one
    "ln12_borderline_then_low": _ln12(
        0.7,
        {"source-2025": NOT_MET, "evidence-2026": MET},
        results=(ferritin(60.0), ferritin(40.0, days(20))),
        closed=days(111),
    ),
    "ln12_pending_no_iron": Scenario(
        0.5, partial(low_iron_near_end, iron=None), {"LN-12": {"pending"}}
    ),
    "ln13_ropinirole_start_ferritin": _ln13(3, ("met",)),
    "ln13_pramipexole_start_ferritin": _ln13(1, ("met",), orders=(pramipexole(0.125, 1.0),)),
    "ln13_ropinirole_titrated_to_max": _ln13(
        1,
        ("met", "met", "met"),
        orders=(
            ropinirole(0.25, 1.0),
            ropinirole(1.0, 2.0, days(14)),
            ropinirole(2.0, 2.0, days(42)),
        ),
    ),
    "ln13_ropinirole_above_max": _ln13(
        1, ("met", "not_met"), orders=(ropinirole(0.25, 1.0), ropinirole(2.5, 2.0, days(30)))
    ),
    "ln13_pramipexole_above_max": _ln13(
        0.5, ("met", "not_met"), orders=(pramipexole(0.125, 1.0), pramipexole(0.25, 3.0, days(21)))
    ),
    "ln13_pramipexole_max_edge": _ln13(
        0.5, ("met", "met"), orders=(pramipexole(0.125, 1.0), pramipexole(0.25, 2.0, days(21)))
    ),
    "ln13_first_above_start": _ln13(1, ("not_met",), orders=(ropinirole(0.5, 1.0),)),
    "ln13_ropinirole_0125_twice_daily": _ln13(0.5, ("met",), orders=(ropinirole(0.125, 2.0),)),
    "ln13_no_ferritin": _ln13(1, ("not_met",), ferritin=None),
    "ln13_ferritin_90d00_before": _ln13(0.5, ("met",), ferritin=days(90)),
    "ln13_ferritin_90d01_before": _ln13(0.5, ("not_met",), ferritin=days(90) + minutes(1)),
    "ln13_ferritin_after_start": _ln13(0.5, ("not_met",), ferritin=-days(2)),
    "ln13_no_dose": _ln13(0.5, ("met",), orders=(ropinirole(None, None),)),
    "ln13_no_doses_per_day_above_max": _ln13(
        0.5, ("met", "not_met"), orders=(ropinirole(0.25, None), ropinirole(5.0, None, days(30)))
    ),
    "ln13_parkinsons": _ln13(0.5, NO_CASE, parkinsons="before"),
    "ln13_parkinsons_later": _ln13(
        0.5,
        ("met",),
        parkinsons="later",
        orders=(ropinirole(0.25, 1.0), ropinirole(0.5, 1.0, days(50))),
    ),
    "ln13_symptoms_only": _ln13(0.5, NO_CASE, rls="symptoms"),
    "ln13_gabapentin_first": _ln13(0.7, ("met",), gabapentin_first=True),
    "ln13_cancelled_then_start": _ln13(0.5, ("met",), cancelled_first=True),
}
# The reason each not-met LN-13 order should give, and whether the patient's first RLS drug was
# a dopamine agonist (evidence-2026's informational fact): checked against the judge's words.
LN13_REASONS = {
    "ln13_first_above_start": "starting dose",
    "ln13_ropinirole_above_max": "maximum",
    "ln13_pramipexole_above_max": "maximum",
    "ln13_no_doses_per_day_above_max": "maximum",
    "ln13_no_ferritin": "ferritin",
    "ln13_ferritin_90d01_before": "ferritin",
    "ln13_ferritin_after_start": "ferritin",
}
LN13_AGONIST_FIRST = {"ln13_ropinirole_start_ferritin": True, "ln13_gabapentin_first": False}
FILLER = {
    "LN-11": "ln11_ferritin_and_tsat",
    "LN-12": "ln12_ferritin_30_iron_10d",
    "LN-13": "ln13_ropinirole_start_ferritin",
}
