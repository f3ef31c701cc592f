"""One synthetic patient's chart: the row builders every scenario uses.

A scenario builder gets a :class:`Chart`, places its timeline with :meth:`Chart.place_episode`
(or explicit instants), and adds encounters, diagnoses, findings, orders, labs and medications.
It does not decide outcomes: the answer key is judged afterwards from the written files
(``answer_key``). What a scenario is FOR is its :class:`Scenario` intent, checked by the tests.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import NamedTuple

from chartaudit.sample_data.clock import Clock, minutes
from chartaudit.sample_data.sink import ExtractSink

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

# Typical results of the labs the measures look at: LOINC -> (unit, low, high) or text.
LAB_RESULTS: dict[str, tuple[str | None, float, float] | str] = {
    "2132-9": ("pg/mL", 180, 900),  # vitamin B12
    "13964-2": ("umol/L", 0.1, 0.4),  # methylmalonic acid
    "3016-3": ("mIU/L", 0.4, 4.5),  # TSH
    "11580-8": ("mIU/L", 0.4, 4.5),
    "2160-0": ("mg/dL", 0.6, 1.3),  # creatinine
    "98979-8": ("mL/min/1.73m2", 60, 110),  # eGFR
    "33914-3": ("mL/min/1.73m2", 60, 110),
    "56888-1": "non-reactive",  # HIV 1/2 Ag/Ab
    "4548-4": ("%", 5.0, 9.5),  # HbA1c
    "17856-6": ("%", 5.0, 9.5),
    "1558-6": ("mg/dL", 75, 180),  # fasting glucose
    "2345-7": ("mg/dL", 72, 160),  # glucose, random (not a glycaemic test here)
    "2276-4": ("ng/mL", 30, 250),  # ferritin
    "2502-3": ("%", 15, 45),  # transferrin saturation
    "77194-9": (None, 0.55, 1.25),  # ankle-brachial index
}

Value = str | datetime | None


# What a scenario intends for the measure(s) it was written for (its focus), per patient:
# a set = every case of that measure has one of these outcomes (an empty set: no case at all);
# a tuple = exactly these outcomes, in index-time order. A dict keyed by rule set when the two
# rule sets differ. LN-07 (a patient measure) intents are about the last coverage month.
Outcomes = set[str] | tuple[str, ...]
Intent = dict[str, Outcomes | dict[str, Outcomes]]


class Scenario(NamedTuple):
    weight: float  # patients per 1000
    build: Callable[[Chart], None]
    intent: Intent


def intended(intent: Intent, measure: str, ruleset: str) -> Outcomes:
    outcomes = intent[measure]
    return outcomes[ruleset] if isinstance(outcomes, dict) else outcomes


@dataclass
class Context:
    """Shared state of one generation run."""

    rng: random.Random
    clock: Clock
    sink: ExtractSink
    counters: dict[str, int] = field(default_factory=dict)
    anchored: set[str] = field(default_factory=set)  # scenarios already placed in the last month
    fillers: frozenset[str] = frozenset()  # scenarios that give every month a case of a measure

    def next_id(self, prefix: str, width: int = 7) -> str:
        number = self.counters.get(prefix, 0) + 1
        self.counters[prefix] = number
        return f"{prefix}{number:0{width}d}"

    def month_slot(self, measure: str) -> int:
        """This measure's round-robin month index (see :meth:`Chart.place_episode`)."""
        return self.counters.get(f"month:{measure}", 0) % len(self.clock.months)

    def next_month(self, measure: str) -> None:
        self.counters[f"month:{measure}"] = self.counters.get(f"month:{measure}", 0) + 1


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
        """An index instant: the scenario's first patient in the last month (so the newest
        month shows every scenario that fits there), the others in this measure's next
        round-robin month; a span that does not fit in a month moves to an earlier one (see
        :meth:`Clock.place`). A filler scenario (short spans, as many patients as months) keeps
        a round robin of its own, so every month has cases of its measure."""
        if self.scenario not in self.ctx.anchored:
            self.ctx.anchored.add(self.scenario)
            slot = len(self.clock.months) - 1
            return self.clock.place(
                self.rng, slot, before=before, after=after, hour_range=hour_range
            )
        robin = f"{measure}:filler" if self.scenario in self.ctx.fillers else measure
        slot = self.ctx.month_slot(robin)
        index = self.clock.place(self.rng, slot, before=before, after=after, hour_range=hour_range)
        year, month = self.clock.months[slot]
        if self.clock.period_of(index) == f"{year:04d}-{month:02d}":
            self.ctx.next_month(robin)  # a span that did not fit leaves the month to the next
        return index

    def place_anywhere(
        self, *, before: timedelta, after: timedelta, hour_range: tuple[int, int] = (8, 17)
    ) -> datetime:
        slot = self.rng.randrange(len(self.clock.months))
        return self.clock.place(self.rng, slot, before=before, after=after, hour_range=hour_range)

    def place_near_end(
        self, *, earliest: timedelta, latest: timedelta, hour_range: tuple[int, int] = (8, 17)
    ) -> datetime:
        """A local time between ``earliest`` and ``latest`` before the end of coverage."""
        end = self.clock.end
        return self.clock.between(self.rng, end - earliest, end - latest, hour_range)

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

    def result(
        self,
        encounter_id: str | None,
        loinc: str,
        collected: datetime,
        value: float | None = None,
    ) -> int:
        """A lab with a typical value (or ``value``), resulted an hour or a few later."""
        typical = LAB_RESULTS[loinc]
        resulted = collected + minutes(self.rng.randint(45, 240))
        if isinstance(typical, str):
            return self.lab(encounter_id, loinc, collected, text=typical, resulted=resulted)
        unit, low, high = typical
        if value is None:
            value = round(self.rng.uniform(low, high), 2 if high < 2 else 1)
        return self.lab(encounter_id, loinc, collected, value=value, unit=unit, resulted=resulted)

    def labs_around(
        self, encounter_id: str, index: datetime, labs: tuple[tuple[str, timedelta], ...]
    ) -> None:
        """Each (LOINC, delta) collected at index + delta, with a typical value: in
        ``encounter_id`` within its first half hour, else at a lab visit (one per instant)."""
        draws: dict[timedelta, str] = {}
        for loinc, delta in labs:
            if delta not in draws:
                same_visit = timedelta(0) <= delta < minutes(30)
                draws[delta] = (
                    encounter_id if same_visit else self.side_visit(index + delta, "Laboratory")
                )
            self.result(draws[delta], loinc, index + delta)

    def side_visit(self, at: datetime, department: str, setting: str = "other") -> str:
        """A short encounter around ``at`` (a lab draw, a scan, a clinic review)."""
        return self.visit(at - minutes(15), minutes(45), setting, department=department)

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
        dose_mg: float | None,
        doses_per_day: float | None,
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

    def referral(
        self,
        encounter_id: str | None,
        specialty: str,
        ordered: datetime,
        *,
        status: str = "ordered",
        code: str = "referral",
    ) -> int:
        return self.order(
            encounter_id,
            code,
            ordered=ordered,
            system="LOCAL",
            category="referral",
            specialty=specialty,
            status=status,
        )
