"""LN-07 scenarios: annual 10-g monofilament screening in diabetes, written for the audit of the
extract's last month (the key also judges earlier months whose 12-month look-back starts inside
the coverage; the intents are about the last month).

Eligible: diabetes recorded at or before the period end, age >= 18 (period year - birth year),
and an encounter arriving in the 12 calendar months ending with the period. Excluded: bilateral
amputation at or before the period end; palliative care (Z51.5) in the 12 months. Met: a
monofilament exam (finding normal/abnormal, or completed order) in the 12 months.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from functools import partial

from chartaudit.sample_data.chart import Chart, Scenario
from chartaudit.sample_data.clock import Clock, Unplaceable, days, minutes, shift_month

DIABETES_POOL = (
    ("ICD10CM", "E11.9"),
    ("ICD10CM", "E11.65"),
    ("ICD10CM", "E119"),
    ("ICD10CM", "E10.9"),
    ("SNOMEDCT", "44054006"),
    ("SNOMEDCT", "73211009"),
    ("SNOMEDCT", "46635009"),
)
DIABETES_MEDICATIONS = (
    ("metformin", "6809", 1000.0, 2.0),
    ("empagliflozin", "1545653", 10.0, 1.0),
    ("glipizide", "4821", 5.0, 1.0),
)


@dataclass(frozen=True)
class Diabetic:
    dx: tuple[str, str] | None = None  # (code_system, code); None: one from DIABETES_POOL
    dx_when: str = "problem_list"  # or "encounter", "after_period" (at the period's end instant)
    # local_normal, local_abnormal, snomed, order_g9226, order_2028f (valid screens);
    # not_done, order_not_completed; None: no screen
    screen: str | None = None
    screen_when: str = "visit"  # or "13mo_ago", "window_start", "window_start_minus_1min"
    visits_in_window: bool = True
    age: int | None = None
    amputations: tuple[str, ...] = ()
    palliative: str | None = None  # "in_window" or "before_window"


@dataclass(frozen=True)
class Lookback:
    start: datetime  # local midnight on the 1st of period - 11 months
    end: datetime  # local midnight starting the month after the period
    period: str

    @classmethod
    def of(cls, clock: Clock) -> Lookback:
        year, month = clock.months[-1]
        return cls(
            clock.month_start(*shift_month(year, month, -11)), clock.end, f"{year}-{month:02d}"
        )


def window_visits(chart: Chart, window: Lookback) -> list[tuple[str, datetime]]:
    rng = chart.rng
    arrivals = sorted(
        chart.clock.between(rng, window.start + days(1), window.end - days(1))
        for _ in range(rng.choice((1, 1, 2, 3)))
    )
    return [(diabetes_visit(chart, arrival), arrival) for arrival in arrivals]


def diabetes_visit(chart: Chart, arrival: datetime) -> str:
    rng = chart.rng
    setting = rng.choices(("outpatient", "telehealth"), (85, 15))[0]
    department = rng.choice(("Endocrinology", "Family Medicine", "Internal Medicine"))
    encounter_id = chart.visit(
        arrival, minutes(rng.randint(20, 45)), setting, department=department
    )
    if setting == "outpatient" and rng.random() < 0.6:
        collected = arrival + minutes(10)
        chart.lab(
            encounter_id,
            "4548-4",
            collected,
            value=round(rng.uniform(5.9, 10.5), 1),
            unit="%",
            resulted=collected + minutes(rng.randint(60, 300)),
        )
    if rng.random() < 0.3:
        chart.diagnosis("I10", arrival + minutes(15), encounter_id)
    if setting == "outpatient" and rng.random() < 0.4:  # feet inspected, not always tested
        result = rng.choice(("normal", "normal", "abnormal"))
        chart.finding(encounter_id, "foot_inspection", result, arrival + minutes(20))
    return encounter_id


def old_visit(chart: Chart, months_back: int) -> tuple[str, datetime]:
    """A visit in the month ``months_back`` before the period (outside the 12-month window)."""
    year, month = shift_month(*chart.clock.months[-1], -months_back)
    for _ in range(50):
        arrival = chart.clock.at(date(year, month, chart.rng.randint(3, 26)), 10)
        if arrival:
            return diabetes_visit(chart, arrival), arrival
    raise Unplaceable("no old visit")


def record_diabetes(chart: Chart, d: Diabetic, window: Lookback, visits: list) -> datetime:
    system, code = d.dx or chart.rng.choice(DIABETES_POOL)
    if d.dx_when == "after_period":  # local midnight starting the next month: not "at or before"
        recorded = window.end
        chart.diagnosis(code, recorded, None, system=system)
    elif d.dx_when == "encounter":
        encounter_id, arrival = visits[0]
        recorded = arrival + minutes(15)
        chart.diagnosis(code, recorded, encounter_id, system=system)
    else:
        recorded = window.start - days(chart.rng.randint(30, 1500)) + minutes(540)
        chart.diagnosis(code, recorded, None, system=system)
    if chart.rng.random() < 0.7:
        name, rxnorm, dose, per_day = chart.rng.choice(DIABETES_MEDICATIONS)
        encounter_id, arrival = visits[-1]
        chart.medication(
            encounter_id,
            name,
            arrival + minutes(20),
            rxnorm=rxnorm,
            dose_mg=dose,
            doses_per_day=per_day,
        )
    return recorded


def screen_visit(chart: Chart, d: Diabetic, window: Lookback, visits: list) -> tuple[str, datetime]:
    """The encounter and instant of the monofilament exam."""
    if d.screen_when == "visit":
        encounter_id, arrival = chart.rng.choice(visits)
        return encounter_id, arrival + minutes(20)
    if d.screen_when == "13mo_ago":
        encounter_id, arrival = old_visit(chart, 12)
        return encounter_id, arrival + minutes(20)
    at = window.start - (minutes(1) if d.screen_when == "window_start_minus_1min" else minutes(0))
    encounter_id = chart.visit(at - minutes(30), minutes(60), "outpatient", department="Podiatry")
    return encounter_id, at


def record_screen(chart: Chart, d: Diabetic, encounter_id: str, at: datetime) -> None:
    rng = chart.rng
    kind = d.screen
    if kind in ("local_normal", "local_abnormal", "not_done"):
        result = {"local_normal": "normal", "local_abnormal": "abnormal"}.get(kind, "not_done")
        chart.finding(encounter_id, "monofilament_10g", result, at)
    elif kind == "snomed":
        result = rng.choice(("normal", "abnormal"))
        chart.finding(encounter_id, "134388005", result, at, system="SNOMEDCT")
    else:
        system, code = ("CPT", "2028F") if kind == "order_2028f" else ("HCPCS", "G9226")
        completed = kind != "order_not_completed"
        chart.order(
            encounter_id,
            code,
            ordered=at - minutes(5),
            performed=at if completed else None,
            status="completed" if completed else "ordered",
            system=system,
            category="procedure",
        )
    chart.finding(encounter_id, "foot_inspection", rng.choice(("normal", "abnormal")), at)


def record_exclusions(chart: Chart, d: Diabetic, window: Lookback, visits: list) -> None:
    """Amputation and palliative-care rows."""
    for code in d.amputations:
        chart.diagnosis(
            code, window.start - days(chart.rng.randint(200, 2000)), None, source="history"
        )
    if d.palliative == "in_window":
        encounter_id, arrival = visits[-1]
        chart.diagnosis("Z51.5", arrival + minutes(15), encounter_id)
    elif d.palliative == "before_window":
        chart.diagnosis("Z51.5", window.start - days(chart.rng.randint(20, 60)), None)


def keyed_window(chart: Chart) -> Lookback:
    """The last month's look-back; LN-07 is keyed only when it starts inside the coverage."""
    window = Lookback.of(chart.clock)
    if window.start < chart.clock.start:
        raise Unplaceable("the coverage is shorter than LN-07's 12-month look-back")
    return window


def diabetic_patient(chart: Chart, d: Diabetic) -> None:
    window = keyed_window(chart)
    year = int(window.period[:4])
    chart.birth_year = year - d.age if d.age is not None else chart.rng.randint(1935, 1996)
    visits = window_visits(chart, window) if d.visits_in_window else [old_visit(chart, 12)]
    record_diabetes(chart, d, window, visits)
    if d.screen:
        encounter_id, screened_at = screen_visit(chart, d, window, visits)
        record_screen(chart, d, encounter_id, screened_at)
    record_exclusions(chart, d, window, visits)


def prediabetic_patient(chart: Chart) -> None:
    """Prediabetes only (R73.03, SNOMED 15777000) with a foot exam: not diabetes, no case."""
    window = keyed_window(chart)
    visits = window_visits(chart, window)
    encounter_id, arrival = visits[0]
    chart.diagnosis("R73.03", arrival + minutes(15), encounter_id)
    chart.diagnosis("15777000", window.start - days(200), None, system="SNOMEDCT")
    record_screen(chart, Diabetic(screen="local_normal"), encounter_id, arrival + minutes(20))


MET, NOT_MET, EXCLUDED = {"met"}, {"not_met"}, {"excluded"}


def _d(weight: float, outcomes: set[str], **fields) -> Scenario:
    return Scenario(weight, partial(diabetic_patient, d=Diabetic(**fields)), {"LN-07": outcomes})


SCENARIOS: dict[str, Scenario] = {
    "ln07_e119_local_normal": _d(28, MET, dx=("ICD10CM", "E11.9"), screen="local_normal"),
    "ln07_e1142_local_abnormal": _d(
        10, MET, dx=("ICD10CM", "E11.42"), dx_when="encounter", screen="local_abnormal"
    ),
    "ln07_e109_snomed_exam": _d(7, MET, dx=("ICD10CM", "E109"), screen="snomed"),
    "ln07_snomed_dx_order_g9226": _d(
        7, MET, dx=("SNOMEDCT", "44054006"), dx_when="encounter", screen="order_g9226"
    ),
    "ln07_e139_order_2028f": _d(2, MET, dx=("ICD10CM", "E13.9"), screen="order_2028f"),
    "ln07_age_18": _d(1, MET, dx=("ICD10CM", "E10.9"), age=18, screen="local_normal"),
    "ln07_screen_at_window_start": _d(1, MET, screen="local_normal", screen_when="window_start"),
    "ln07_screen_13mo_ago": _d(5, NOT_MET, screen="local_normal", screen_when="13mo_ago"),
    "ln07_screen_1min_before_window": _d(
        1, NOT_MET, screen="local_abnormal", screen_when="window_start_minus_1min"
    ),
    "ln07_monofilament_not_done": _d(4, NOT_MET, screen="not_done"),
    "ln07_no_screen": _d(28, NOT_MET),
    "ln07_order_not_completed": _d(1, NOT_MET, screen="order_not_completed"),
    "ln07_excl_amputation_q7203": _d(1, EXCLUDED, amputations=("Q72.03",)),
    "ln07_excl_amputation_z89_bilateral": _d(
        1, EXCLUDED, amputations=("Z89.511", "Z89.512"), screen="local_normal"
    ),
    "ln07_one_side_amputation": _d(1, MET, amputations=("Z89.511",), screen="local_normal"),
    "ln07_excl_palliative": _d(2, EXCLUDED, palliative="in_window"),
    "ln07_palliative_before_window": _d(1, NOT_MET, palliative="before_window"),
    # no case in the last month
    "ln07_no_encounter_12mo": _d(4, set(), dx_when="encounter", visits_in_window=False),
    "ln07_age_17": _d(1, set(), dx=("ICD10CM", "E10.9"), age=17, screen="local_normal"),
    "ln07_prediabetes_only": Scenario(10, prediabetic_patient, {"LN-07": set()}),
    "ln07_dx_after_period": _d(1, set(), dx=("ICD10CM", "E11.9"), dx_when="after_period"),
}
FILLER: dict[str, str] = {}
