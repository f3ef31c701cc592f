"""LN-07 scenarios: annual 10-g monofilament screening in diabetes, judged at the end of the
extract's last month (the only LN-07 period in the answer key).

Eligible: diabetes recorded at or before the period end, age >= 18 (period year - birth year),
and an encounter arriving in the 12 calendar months ending with the period. Excluded: bilateral
amputation at or before the period end; palliative care (Z51.5) in the 12 months. Met: a
monofilament exam (finding normal/abnormal, or completed order) in the 12 months.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from functools import partial

from chartaudit.sample_data.chart import Chart
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
VALID_SCREENS = ("local_normal", "local_abnormal", "snomed", "order_g9226", "order_2028f")
AMPUTATION_RIGHT = ("Z89.511", "Z89.611")
AMPUTATION_LEFT = ("Z89.512", "Z89.612")
AMPUTATION_BILATERAL = ("Q72.03", "Q72.23")
DIABETES_MEDICATIONS = (
    ("metformin", "6809", 1000.0, 2.0),
    ("empagliflozin", "1545653", 10.0, 1.0),
    ("glipizide", "4821", 5.0, 1.0),
)


@dataclass(frozen=True)
class Diabetic:
    dx: tuple[str, str] | None = None  # (code_system, code); None: one from DIABETES_POOL
    dx_when: str = "problem_list"  # or "encounter", "after_period"
    screen: str | None = None  # VALID_SCREENS, "not_done", "order_not_completed" or None
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

    def __contains__(self, moment: datetime) -> bool:
        return self.start <= moment <= self.end


def bilateral_amputation(codes: tuple[str, ...]) -> bool:
    return any(c in AMPUTATION_BILATERAL for c in codes) or (
        any(c in AMPUTATION_RIGHT for c in codes) and any(c in AMPUTATION_LEFT for c in codes)
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
    if d.dx_when == "after_period":
        recorded = window.end + days(1) + minutes(chart.rng.randint(480, 900))
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


def record_exclusions(chart: Chart, d: Diabetic, window: Lookback, visits: list) -> bool:
    """Amputation and palliative-care rows; True when the case is excluded."""
    for code in d.amputations:
        chart.diagnosis(
            code, window.start - days(chart.rng.randint(200, 2000)), None, source="history"
        )
    palliative_in_window = False
    if d.palliative == "in_window":
        encounter_id, arrival = visits[-1]
        chart.diagnosis("Z51.5", arrival + minutes(15), encounter_id)
        palliative_in_window = arrival + minutes(15) in window
    elif d.palliative == "before_window":
        chart.diagnosis("Z51.5", window.start - days(chart.rng.randint(20, 60)), None)
    return bilateral_amputation(d.amputations) or palliative_in_window


def diabetic_patient(chart: Chart, d: Diabetic) -> None:
    window = Lookback.of(chart.clock)
    year = int(window.period[:4])
    chart.birth_year = year - d.age if d.age is not None else chart.rng.randint(1935, 1996)
    visits = window_visits(chart, window) if d.visits_in_window else [old_visit(chart, 12)]
    recorded = record_diabetes(chart, d, window, visits)
    screened_at = None
    if d.screen:
        encounter_id, screened_at = screen_visit(chart, d, window, visits)
        record_screen(chart, d, encounter_id, screened_at)
    excluded = record_exclusions(chart, d, window, visits)
    eligible = (
        recorded <= window.end
        and year - chart.birth_year >= 18
        and any(arrival in window for _, arrival in visits)
    )
    if eligible:
        met = d.screen in VALID_SCREENS and screened_at is not None and screened_at in window
        chart.case(
            "LN-07",
            window.end,
            None,
            excluded=excluded,
            met=met,
            closes=window.end,
            period=window.period,
        )


def prediabetic_patient(chart: Chart) -> None:
    """Prediabetes only (R73.03, SNOMED 15777000) with a foot exam: not diabetes, no case."""
    window = Lookback.of(chart.clock)
    visits = window_visits(chart, window)
    encounter_id, arrival = visits[0]
    chart.diagnosis("R73.03", arrival + minutes(15), encounter_id)
    chart.diagnosis("15777000", window.start - days(200), None, system="SNOMEDCT")
    record_screen(chart, Diabetic(screen="local_normal"), encounter_id, arrival + minutes(20))


Builder = Callable[[Chart], None]


def _d(**fields) -> Builder:
    return partial(diabetic_patient, d=Diabetic(**fields))


SCENARIOS: dict[str, tuple[float, Builder]] = {
    "ln07_e119_local_normal": (28, _d(dx=("ICD10CM", "E11.9"), screen="local_normal")),
    "ln07_e1142_local_abnormal": (
        10,
        _d(dx=("ICD10CM", "E11.42"), dx_when="encounter", screen="local_abnormal"),
    ),
    "ln07_e109_snomed_exam": (7, _d(dx=("ICD10CM", "E109"), screen="snomed")),
    "ln07_snomed_dx_order_g9226": (
        7,
        _d(dx=("SNOMEDCT", "44054006"), dx_when="encounter", screen="order_g9226"),
    ),
    "ln07_e139_order_2028f": (2, _d(dx=("ICD10CM", "E13.9"), screen="order_2028f")),
    "ln07_age_18": (1, _d(dx=("ICD10CM", "E10.9"), age=18, screen="local_normal")),
    "ln07_screen_at_window_start": (1, _d(screen="local_normal", screen_when="window_start")),
    "ln07_screen_13mo_ago": (5, _d(screen="local_normal", screen_when="13mo_ago")),
    "ln07_screen_1min_before_window": (
        1,
        _d(screen="local_abnormal", screen_when="window_start_minus_1min"),
    ),
    "ln07_monofilament_not_done": (4, _d(screen="not_done")),
    "ln07_no_screen": (28, _d()),
    "ln07_order_not_completed": (1, _d(screen="order_not_completed")),
    "ln07_excl_amputation_q7203": (1, _d(amputations=("Q72.03",))),
    "ln07_excl_amputation_z89_bilateral": (
        1,
        _d(amputations=("Z89.511", "Z89.512"), screen="local_normal"),
    ),
    "ln07_one_side_amputation": (1, _d(amputations=("Z89.511",), screen="local_normal")),
    "ln07_excl_palliative": (2, _d(palliative="in_window")),
    "ln07_palliative_before_window": (1, _d(palliative="before_window")),
    # no case
    "ln07_no_encounter_12mo": (4, _d(dx_when="encounter", visits_in_window=False)),
    "ln07_age_17": (1, _d(dx=("ICD10CM", "E10.9"), age=17, screen="local_normal")),
    "ln07_prediabetes_only": (10, prediabetic_patient),
    "ln07_dx_after_period": (1, _d(dx=("ICD10CM", "E11.9"), dx_when="after_period")),
}
