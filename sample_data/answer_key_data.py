"""What the answer-key judge reads: the loadable rows of a written extract, as instants.

The judge (``answer_key``) is a reference reading of measures.md and docs/measure-readings.md
in plain Python. It shares no code with the SQL engine (``audits/``) nor with the generator's
scenarios: it reads the extract folder the way a loader must (CSV or Parquet, minus the rows
listed in ``expected_quarantine.csv``), turns every timestamp into a UTC instant, and groups rows
by patient. Codes are compared as the contract spells them: ICD-10-CM without the dot and in upper
case, CPT/HCPCS in upper case, LOCAL concepts in lower case, ingredients in lower case.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import polars as pl

RULESETS = ("source-2025", "evidence-2026")
EPISODE = timedelta(days=30)
TABLE_NAMES = ("patients", "encounters", "diagnoses", "findings", "orders", "labs", "medications")
DOCUMENTED = ("normal", "abnormal")


def day(n: float) -> timedelta:
    return timedelta(days=n)


def code_of(system: str, code: str) -> str:
    code = code.strip()
    if system == "ICD10CM":
        return code.replace(".", "").upper()
    if system in ("CPT", "HCPCS"):
        return code.upper()
    if system == "LOCAL":
        return code.lower()
    return code


@dataclass(slots=True)
class Encounter:
    id: str
    patient: str
    setting: str
    arrival: datetime
    departure: datetime | None
    disposition: str | None


@dataclass(slots=True)
class Dx:
    encounter: str | None
    system: str
    code: str
    time: datetime


@dataclass(slots=True)
class Finding:
    encounter: str | None
    system: str
    code: str
    result: str
    value: float | None
    time: datetime


@dataclass(slots=True)
class Order:
    encounter: str | None
    system: str
    code: str
    category: str
    specialty: str | None
    status: str
    ordered: datetime
    performed: datetime | None

    @property
    def done(self) -> datetime | None:
        """performed_time of a completed order (imaging, ABI, monofilament), else None."""
        return self.performed if self.status == "completed" else None


@dataclass(slots=True)
class Lab:
    encounter: str | None
    loinc: str
    value: float | None
    time: datetime


@dataclass(slots=True)
class Med:
    encounter: str | None
    ingredient: str
    dose: float | None
    per_day: float | None
    time: datetime


@dataclass(slots=True)
class Patient:
    id: str
    birth_year: int
    death_date: date | None
    encounters: list[Encounter] = field(default_factory=list)
    dx: list[Dx] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    orders: list[Order] = field(default_factory=list)
    labs: list[Lab] = field(default_factory=list)
    meds: list[Med] = field(default_factory=list)  # cancelled orders are left out

    def icd(self, match) -> list[Dx]:
        return [d for d in self.dx if d.system == "ICD10CM" and match(d.code)]

    def present(self, concepts: Iterable[str], encounter: str | None = None) -> list[Finding]:
        wanted = set(concepts)
        return [
            f
            for f in self.findings
            if f.system == "LOCAL"
            and f.code in wanted
            and f.result == "present"
            and (encounter is None or f.encounter == encounter)
        ]

    def referrals(self, specialties: Iterable[str]) -> list[Order]:
        wanted = set(specialties)
        return [
            o
            for o in self.orders
            if o.category == "referral" and o.specialty in wanted and o.status != "cancelled"
        ]


@dataclass(frozen=True, slots=True)
class Case:
    measure_id: str
    ruleset: str
    period: str
    patient_id: str
    encounter_id: str
    index_time: datetime
    outcome: str
    detail: str = field(default="", compare=False)  # why, in words (not written to the key)


def within(moment: datetime | None, start: datetime, end: datetime) -> bool:
    """Closed interval: both ends count."""
    return moment is not None and start <= moment <= end


def episodes(candidates: Iterable[tuple[datetime, str | None]]) -> list[tuple[datetime, str]]:
    """(index, encounter id or "") of each episode: the first candidate starts one, the next
    candidate more than 30 days after that index starts the next. Candidates at one instant are
    one case, with the smallest non-null encounter id among them."""
    at: dict[datetime, str | None] = {}
    for moment, encounter in candidates:
        known = at.get(moment)
        at[moment] = min(e for e in (known, encounter) if e) if known or encounter else None
    starts: list[tuple[datetime, str]] = []
    for moment in sorted(at):
        if not starts or moment > starts[-1][0] + EPISODE:
            starts.append((moment, at[moment] or ""))
    return starts


class Extract:
    """One extract folder, as the loader would load it."""

    def __init__(
        self,
        folder: Path,
        tables: dict[str, tuple[pl.DataFrame, int]] | None = None,
        quarantined: dict[str, set[int]] | None = None,
    ) -> None:
        """``tables`` and ``quarantined``: instead of the folder's table files and
        ``expected_quarantine.csv``, these rows (table -> text columns and the loader's line
        number of the first row) and lines (table -> line numbers), e.g. one batch of the
        generator's. The manifest is read from ``folder`` either way."""
        folder = Path(folder)
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        self.zone = ZoneInfo(manifest.get("timezone") or "UTC")
        first = date.fromisoformat(manifest["coverage_start"])
        last = date.fromisoformat(manifest["coverage_end"])
        self.coverage_start = self.midnight(first)
        self.coverage_end = self.midnight(last + timedelta(days=1))
        self.months: list[str] = []
        year, month = first.year, first.month
        while (year, month) <= (last.year, last.month):
            self.months.append(f"{year:04d}-{month:02d}")
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        self._month_set = frozenset(self.months)
        self._instants: dict[str, datetime] = {}
        bad: dict[str, set[int]] = defaultdict(set, quarantined or {})
        if quarantined is None:
            for row in pl.read_csv(folder / "expected_quarantine.csv", infer_schema=False).rows():
                bad[row[0]].add(int(row[1]))
        if tables is None:
            tables = {name: self._read(folder, name) for name in TABLE_NAMES}
        rows = {name: self._loaded(*tables[name], bad[name]) for name in TABLE_NAMES}
        self.patients: dict[str, Patient] = {}
        for r in rows["patients"]:
            death = date.fromisoformat(r["death_date"]) if r["death_date"] else None
            self.patients.setdefault(
                r["patient_id"], Patient(r["patient_id"], int(r["birth_year"]), death)
            )
        self.encounters: dict[str, Encounter] = {}
        for r in rows["encounters"]:
            if r["encounter_id"] in self.encounters:
                continue
            e = Encounter(
                r["encounter_id"],
                r["patient_id"],
                r["setting"],
                self.instant(r["arrival_time"]),
                self.instant(r["departure_time"]) if r["departure_time"] else None,
                r["disposition"],
            )
            self.encounters[e.id] = e
            self.patients[e.patient].encounters.append(e)
        for r in rows["diagnoses"]:
            self.patients[r["patient_id"]].dx.append(
                Dx(
                    r["encounter_id"],
                    r["code_system"],
                    code_of(r["code_system"], r["code"]),
                    self.instant(r["recorded_time"]),
                )
            )
        for r in rows["findings"]:
            self.patients[r["patient_id"]].findings.append(
                Finding(
                    r["encounter_id"],
                    r["code_system"],
                    code_of(r["code_system"], r["code"]),
                    r["result"],
                    float(r["value_num"]) if r["value_num"] else None,
                    self.instant(r["recorded_time"]),
                )
            )
        for r in rows["orders"]:
            self.patients[r["patient_id"]].orders.append(
                Order(
                    r["encounter_id"],
                    r["code_system"],
                    code_of(r["code_system"], r["code"]),
                    r["category"],
                    r["specialty"],
                    r["status"],
                    self.instant(r["ordered_time"]),
                    self.instant(r["performed_time"]) if r["performed_time"] else None,
                )
            )
        for r in rows["labs"]:
            self.patients[r["patient_id"]].labs.append(
                Lab(
                    r["encounter_id"],
                    r["loinc"].strip(),
                    float(r["value_num"]) if r["value_num"] else None,
                    self.instant(r["collected_time"]),
                )
            )
        for r in rows["medications"]:
            if r["status"] == "cancelled":
                continue
            self.patients[r["patient_id"]].meds.append(
                Med(
                    r["encounter_id"],
                    r["ingredient"].strip().lower(),
                    float(r["dose_mg"]) if r["dose_mg"] else None,
                    float(r["doses_per_day"]) if r["doses_per_day"] else None,
                    self.instant(r["start_time"]),
                )
            )
        self.cases: list[Case] = []

    @staticmethod
    def _read(folder: Path, name: str) -> tuple[pl.DataFrame, int]:
        """A table file as text columns, and the line number of its first row (CSV: header =
        line 1; Parquet: rows from 1)."""
        if (folder / f"{name}.csv").exists():
            return pl.read_csv(folder / f"{name}.csv", infer_schema=False), 2
        frame = pl.read_parquet(folder / f"{name}.parquet")
        return frame.select(pl.all().cast(pl.String)), 1

    @staticmethod
    def _loaded(frame: pl.DataFrame, first_line: int, bad: set[int]) -> list[dict[str, str | None]]:
        """Rows minus the quarantined lines."""
        return [
            row
            for line, row in enumerate(frame.iter_rows(named=True), start=first_line)
            if line not in bad
        ]

    # --- time ---------------------------------------------------------------------------------
    def midnight(self, day_: date) -> datetime:
        return datetime(day_.year, day_.month, day_.day, tzinfo=self.zone).astimezone(UTC)

    def instant(self, text: str) -> datetime:
        """A written timestamp as a UTC instant (naive = local; a repeated hour = the first)."""
        known = self._instants.get(text)
        if known is None:
            moment = datetime.fromisoformat(text)
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=self.zone)
            known = self._instants[text] = moment.astimezone(UTC)
        return known

    def local_date(self, moment: datetime) -> date:
        return moment.astimezone(self.zone).date()

    def period(self, moment: datetime) -> str:
        return moment.astimezone(self.zone).strftime("%Y-%m")

    def month_start(self, period: str, shift: int = 0) -> datetime:
        index = int(period[:4]) * 12 + int(period[5:7]) - 1 + shift
        return self.midnight(date(index // 12, index % 12 + 1, 1))

    def month_end(self, period: str) -> datetime:
        """The instant the month ends: local midnight starting the next month."""
        return self.month_start(period, 1)

    # --- outcomes and cases -------------------------------------------------------------------
    def outcome(self, *, excluded: bool, met: bool, closes: datetime | None) -> str:
        """excluded; met; pending (the window closes after the coverage end); not_met.
        ``closes=None``: the measure is never pending."""
        if excluded:
            return "excluded"
        if met:
            return "met"
        if closes is not None and closes > self.coverage_end:
            return "pending"
        return "not_met"

    def add(
        self,
        measure: str,
        patient: Patient,
        index: datetime,
        encounter: str | None,
        outcome: str,
        *,
        rulesets: Iterable[str] = RULESETS,
        period: str | None = None,
        detail: str = "",
    ) -> None:
        """Record a case under each rule set, if its month is one of the coverage months."""
        period = period or self.period(index)
        if period not in self._month_set:
            return
        for ruleset in rulesets:
            self.cases.append(
                Case(measure, ruleset, period, patient.id, encounter or "", index, outcome, detail)
            )
