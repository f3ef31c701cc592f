"""One synthetic patient's chart: the row builders every scenario uses.

A scenario builder gets a :class:`Chart`, places its timeline with :meth:`Chart.place_episode`
(or explicit instants), adds encounters, diagnoses, findings, orders, labs and medications, and
declares each audit case it creates with :meth:`Chart.case`; the outcome follows the decided
order excluded -> met -> pending -> not_met.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from chartaudit.sample_data.clock import Clock, minutes, utc_text
from chartaudit.sample_data.sink import ExtractSink, KeyRow

SITES = ("SITE-A", "SITE-B", "SITE-C", "SITE-D", "SITE-E")
SITE_WEIGHTS = (30, 25, 20, 15, 10)
CLINICIANS_PER_SITE = 24

DEPARTMENTS = {
    "emergency": ("Emergency Department",),
    "inpatient": ("Hospital Medicine", "Neurosurgery", "Orthopaedics Ward"),
    "outpatient": (
        "Family Medicine",
        "Internal Medicine",
        "Spine Clinic",
        "Neurology",
        "Endocrinology",
        "Podiatry",
    ),
    "urgent_care": ("Urgent Care",),
    "telehealth": ("Virtual Care",),
    "other": ("Radiology", "Laboratory"),
}

SEXES = ("F", "M", "X", "U")
SEX_WEIGHTS = (510, 478, 6, 6)

SPINE_MRI = ("72148", "72149", "72158", "72146", "72147", "72157")

Value = str | datetime | None


def decide_outcome(*, excluded: bool, met: bool, closes: datetime, coverage_end: datetime) -> str:
    """The decided outcome order: excluded; met; pending (window closes after coverage); not_met."""
    if excluded:
        return "excluded"
    if met:
        return "met"
    if closes > coverage_end:
        return "pending"
    return "not_met"


def within(moment: datetime | None, start: datetime, end: datetime) -> bool:
    """Closed interval: both ends count."""
    return moment is not None and start <= moment <= end


def episode_starts(times: list[datetime], length: timedelta = timedelta(days=30)) -> list[datetime]:
    """Index times of the episodes: the first event starts one, events at or within ``length``
    of that start belong to it, the next later event starts another (chained per patient)."""
    starts: list[datetime] = []
    for moment in sorted(times):
        if not starts or moment > starts[-1] + length:
            starts.append(moment)
    return starts


@dataclass
class Context:
    """Shared state of one generation run."""

    rng: random.Random
    clock: Clock
    sink: ExtractSink
    counters: dict[str, int] = field(default_factory=dict)

    def next_id(self, prefix: str, width: int = 7) -> str:
        number = self.counters.get(prefix, 0) + 1
        self.counters[prefix] = number
        return f"{prefix}{number:0{width}d}"

    def next_month_slot(self, measure: str) -> int:
        """Round-robin month index, so every coverage month gets cases of each measure."""
        slot = self.counters.get(f"month:{measure}", 0)
        self.counters[f"month:{measure}"] = slot + 1
        return slot % len(self.clock.months)


class Chart:
    """Row builders for one patient."""

    def __init__(self, ctx: Context, patient_id: str, scenario: str) -> None:
        rng = ctx.rng
        self.ctx = ctx
        self.rng = rng
        self.clock = ctx.clock
        self.sink = ctx.sink
        self.patient_id = patient_id
        self.scenario = scenario
        self.birth_year: int = rng.randint(1930, 2006)
        self.sex: str = rng.choices(SEXES, SEX_WEIGHTS)[0]
        self.death_date: date | None = None
        self.site: str = rng.choices(SITES, SITE_WEIGHTS)[0]
        self.patient_issue: tuple[str, str] | None = None  # (column, reason) of a dirty row
        self.cases = 0
        self.spine_mri_times: list[datetime] = []  # completed spine MRIs, for deciding cases

    # --- text -----------------------------------------------------------------------------
    def ts(self, value: Value, *, offset: bool = False) -> str | None:
        if value is None or isinstance(value, str):
            return value
        return self.clock.text(value, offset=offset)

    # --- placing --------------------------------------------------------------------------
    def place_episode(
        self,
        measure: str,
        *,
        before: timedelta,
        after: timedelta,
        hour_range: tuple[int, int] = (0, 23),
    ) -> datetime:
        """An index instant in this measure's next round-robin month."""
        slot = self.ctx.next_month_slot(measure)
        return self.clock.place(self.rng, slot, before=before, after=after, hour_range=hour_range)

    def place_anywhere(
        self, *, before: timedelta, after: timedelta, hour_range: tuple[int, int] = (8, 17)
    ) -> datetime:
        slot = self.rng.randrange(len(self.clock.months))
        return self.clock.place(self.rng, slot, before=before, after=after, hour_range=hour_range)

    # --- rows -----------------------------------------------------------------------------
    def write_patient(self) -> None:
        line = self.sink.add(
            "patients",
            patient_id=self.patient_id,
            birth_year=self.birth_year,
            sex=self.sex,
            death_date=self.death_date.isoformat() if self.death_date else None,
        )
        if self.patient_issue:
            self.sink.expect_quarantine("patients", line, *self.patient_issue)

    def clinician(self, site: str) -> str:
        return f"CL{site[-1]}{self.rng.randrange(CLINICIANS_PER_SITE):03d}"

    def encounter(
        self,
        arrival: Value,
        *,
        setting: str,
        departure: Value = None,
        disposition: str | None = "discharged",
        department: str | None = None,
        encounter_id: str | None = None,
        offset: bool = False,
    ) -> tuple[str, int]:
        """Add an encounter; returns (encounter_id, source line)."""
        encounter_id = encounter_id or self.ctx.next_id("EN")
        line = self.sink.add(
            "encounters",
            encounter_id=encounter_id,
            patient_id=self.patient_id,
            site_id=self.site,
            department=department or self.rng.choice(DEPARTMENTS.get(setting, ("General",))),
            clinician_id=self.clinician(self.site),
            setting=setting,
            arrival_time=self.ts(arrival, offset=offset),
            departure_time=self.ts(departure, offset=offset),
            disposition=disposition,
        )
        return encounter_id, line

    def visit(self, arrival: datetime, stay: timedelta, setting: str, **kwargs) -> str:
        """An ordinary encounter; returns its id."""
        return self.encounter(arrival, setting=setting, departure=arrival + stay, **kwargs)[0]

    def diagnosis(
        self,
        code: str,
        recorded: Value,
        encounter_id: str | None = None,
        *,
        system: str = "ICD10CM",
        source: str | None = None,
        patient_id: str | None = None,
    ) -> int:
        return self.sink.add(
            "diagnoses",
            patient_id=patient_id or self.patient_id,
            encounter_id=encounter_id,
            code_system=system,
            code=code,
            recorded_time=self.ts(recorded),
            source=source or ("encounter" if encounter_id else "problem_list"),
        )

    def finding(
        self,
        encounter_id: str,
        code: str,
        result: str,
        recorded: Value,
        *,
        system: str = "LOCAL",
        value: float | None = None,
        offset: bool = False,
    ) -> int:
        return self.sink.add(
            "findings",
            patient_id=self.patient_id,
            encounter_id=encounter_id,
            code_system=system,
            code=code,
            result=result,
            value_num=value,
            recorded_time=self.ts(recorded, offset=offset),
        )

    def order(
        self,
        encounter_id: str | None,
        code: str,
        *,
        ordered: datetime,
        performed: datetime | None = None,
        status: str = "completed",
        system: str = "CPT",
        category: str = "imaging",
        specialty: str | None = None,
        offset: bool = False,
    ) -> int:
        return self.sink.add(
            "orders",
            order_id=self.ctx.next_id("OR"),
            patient_id=self.patient_id,
            encounter_id=encounter_id,
            code_system=system,
            code=code,
            category=category,
            specialty=specialty,
            ordered_time=self.ts(ordered),
            performed_time=self.ts(performed, offset=offset),
            status=status,
        )

    def spine_mri(
        self,
        encounter_id: str,
        performed: datetime,
        *,
        earliest_order: datetime,
        code: str | None = None,
        status: str = "completed",
        offset: bool = False,
    ) -> int:
        """An MRI order performed at ``performed``, ordered up to an hour before it."""
        ordered = max(earliest_order, performed - minutes(self.rng.randint(20, 60)))
        ordered = min(ordered, performed)
        code = code or self.rng.choice(SPINE_MRI[:3] * 3 + SPINE_MRI[3:])
        if status == "completed" and code in SPINE_MRI:
            self.spine_mri_times.append(performed)
        return self.order(
            encounter_id,
            code,
            ordered=ordered,
            performed=performed if status == "completed" else None,
            status=status,
            offset=offset,
        )

    def lab(
        self,
        encounter_id: str | None,
        loinc: str,
        collected: Value,
        *,
        value: float | None = None,
        text: str | None = None,
        unit: str | None = None,
        resulted: Value = None,
    ) -> int:
        return self.sink.add(
            "labs",
            patient_id=self.patient_id,
            encounter_id=encounter_id,
            loinc=loinc,
            value_num=value,
            value_text=text,
            unit=unit,
            collected_time=self.ts(collected),
            resulted_time=self.ts(resulted),
        )

    def medication(
        self,
        encounter_id: str | None,
        ingredient: str,
        start: datetime,
        *,
        rxnorm: str | None,
        dose_mg: float,
        doses_per_day: float,
        route: str = "oral",
        end: datetime | None = None,
        status: str = "active",
    ) -> int:
        return self.sink.add(
            "medications",
            medication_id=self.ctx.next_id("RX"),
            patient_id=self.patient_id,
            encounter_id=encounter_id,
            ingredient=ingredient,
            rxnorm=rxnorm,
            dose_mg=dose_mg,
            doses_per_day=doses_per_day,
            route=route,
            start_time=self.ts(start),
            end_time=self.ts(end),
            status=status,
        )

    def spine_mri_within(self, start: datetime, end: datetime) -> bool:
        return any(within(moment, start, end) for moment in self.spine_mri_times)

    # --- answer key -----------------------------------------------------------------------
    def case(
        self,
        measure: str,
        index: datetime,
        encounter_id: str | None,
        *,
        excluded: bool,
        met: bool,
        closes: datetime,
        period: str | None = None,
    ) -> str:
        outcome = decide_outcome(
            excluded=excluded, met=met, closes=closes, coverage_end=self.clock.end
        )
        self.sink.key.append(
            KeyRow(
                measure_id=measure,
                period=period or self.clock.period_of(index),
                patient_id=self.patient_id,
                encounter_id=encounter_id or "",
                index_time=utc_text(index),
                outcome=outcome,
                scenario=self.scenario,
            )
        )
        self.cases += 1
        return outcome
