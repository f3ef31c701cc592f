"""A plain, independent re-derivation of the LN-01, LN-05 and LN-07 cases from an extract folder.

It shares no code with the generator: it reads the written files (CSV), drops the rows listed in
``expected_quarantine.csv`` (as the loader must), and applies the decided measure semantics. The
tests compare its cases with ``answer_key.csv``, so the key is checked against the data itself.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

RED_FLAGS = {
    "saddle_anesthesia",
    "new_bladder_dysfunction",
    "new_bowel_dysfunction",
    "progressive_bilateral_leg_weakness",
    "severe_neuro_deficit",
}
CAUDA_EQUINA = {"G834", "G9520", "G9529"}
SPINE_MRI = {"72148", "72149", "72158", "72146", "72147", "72157"}
NUMBNESS_DX = {
    "R200",
    "R201",
    "R202",
    "R208",
    "R209",
    "M5416",
    "M5417",
    "M5430",
    "M5431",
    "M5432",
    "M5440",
    "M5441",
    "M5442",
    "M48062",
}
NUMBNESS_FINDINGS = {"leg_numbness", "bilateral_leg_numbness"}
DIABETES_SNOMED = {"44054006", "46635009", "73211009"}
EXCLUDING_DISPOSITIONS = {"died", "left_ama", "transferred"}


def icd(code: str) -> str:
    return code.replace(".", "").upper()


def is_malignancy(code: str) -> bool:
    code = icd(code)
    return code.startswith("Z85") or (code[:1] == "C" and code[1:3].isdigit() and code[1:3] <= "96")


@dataclass(frozen=True)
class Case:
    measure_id: str
    period: str
    patient_id: str
    encounter_id: str
    index_time: str
    outcome: str


class Extract:
    """The loadable rows of one extract folder, with timestamps as UTC instants."""

    def __init__(self, folder: Path) -> None:
        self.manifest = json.loads((folder / "manifest.json").read_text())
        self.zone = ZoneInfo(self.manifest["timezone"])
        bad = defaultdict(set)
        for row in read_csv(folder / "expected_quarantine.csv"):
            bad[row["table_name"]].add(int(row["source_line"]))
        self.rows = {
            table: [
                row
                for line, row in enumerate(read_csv(folder / f"{table}.csv"), start=2)
                if line not in bad[table]
            ]
            for table in (
                "patients",
                "encounters",
                "diagnoses",
                "findings",
                "orders",
                "labs",
                "medications",
            )
        }
        last = date.fromisoformat(self.manifest["coverage_end"])
        self.coverage_end = self.midnight(last + timedelta(days=1))
        self.patients = {p["patient_id"]: p for p in self.rows["patients"]}
        self.encounters: dict[str, dict] = {}
        for e in self.rows["encounters"]:
            self.encounters.setdefault(e["encounter_id"], e)

    def midnight(self, day: date) -> datetime:
        return datetime(day.year, day.month, day.day, tzinfo=self.zone).astimezone(UTC)

    def instant(self, text: str) -> datetime:
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=self.zone)
        return moment.astimezone(UTC)

    def local_date(self, moment: datetime) -> date:
        return moment.astimezone(self.zone).date()

    def period(self, moment: datetime) -> str:
        return moment.astimezone(self.zone).strftime("%Y-%m")

    def outcome(self, *, excluded: bool, met: bool, closes: datetime) -> str:
        if excluded:
            return "excluded"
        if met:
            return "met"
        return "pending" if closes > self.coverage_end else "not_met"

    def present(self, codes: set[str]) -> list[dict]:
        return [
            f
            for f in self.rows["findings"]
            if f["code_system"] == "LOCAL"
            and f["code"].lower() in codes
            and f["result"] == "present"
        ]

    def spine_mris(self) -> dict[str, list[datetime]]:
        scans = defaultdict(list)
        for o in self.rows["orders"]:
            if (
                o["code_system"] == "CPT"
                and o["code"] in SPINE_MRI
                and o["status"] == "completed"
                and o["performed_time"]
            ):
                scans[o["patient_id"]].append(self.instant(o["performed_time"]))
        return scans


def read_csv(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def chain(events: list[tuple[datetime, str]]) -> list[tuple[datetime, str]]:
    """Episode starts: an event more than 30 days after the current start begins a new one."""
    starts: list[tuple[datetime, str]] = []
    for moment, encounter in sorted(events):
        if not starts or moment > starts[-1][0] + timedelta(days=30):
            starts.append((moment, encounter))
    return starts


def utc_text(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def ln01(x: Extract) -> set[Case]:
    events = defaultdict(list)
    for f in x.present(RED_FLAGS):
        events[f["patient_id"]].append((x.instant(f["recorded_time"]), f["encounter_id"]))
    for d in x.rows["diagnoses"]:
        if d["code_system"] == "ICD10CM" and icd(d["code"]) in CAUDA_EQUINA:
            events[d["patient_id"]].append((x.instant(d["recorded_time"]), d["encounter_id"]))
    contraindicated = {f["encounter_id"] for f in x.present({"mri_contraindication"})}
    scans = x.spine_mris()
    cases = set()
    for patient, patient_events in events.items():
        for index, encounter_id in chain(patient_events):
            encounter = x.encounters[encounter_id]
            departure = encounter["departure_time"]
            leaves = (
                encounter["disposition"] in EXCLUDING_DISPOSITIONS
                and bool(departure)
                and x.instant(departure) <= index + timedelta(hours=12)
            )
            met = any(
                index - timedelta(hours=24) <= s <= index + timedelta(hours=12)
                for s in scans[patient]
            )
            outcome = x.outcome(
                excluded=encounter_id in contraindicated or leaves,
                met=met,
                closes=index + timedelta(hours=12),
            )
            cases.add(
                Case("LN-01", x.period(index), patient, encounter_id, utc_text(index), outcome)
            )
    return cases


def ln05(x: Extract) -> set[Case]:
    numb = {f["encounter_id"] for f in x.present(NUMBNESS_FINDINGS)}
    for d in x.rows["diagnoses"]:
        code = icd(d["code"])
        numbness = code in NUMBNESS_DX or code.startswith("G57")
        if d["code_system"] == "ICD10CM" and d["encounter_id"] and numbness:
            numb.add(d["encounter_id"])
    back_pain = {f["encounter_id"] for f in x.present({"persistent_localized_back_pain"})}
    atypical = {f["encounter_id"] for f in x.present({"atypical_presentation"})}
    flagged = {f["encounter_id"] for f in x.present(RED_FLAGS)} | {
        d["encounter_id"]
        for d in x.rows["diagnoses"]
        if d["code_system"] == "ICD10CM" and icd(d["code"]) in CAUDA_EQUINA
    }
    malignancy = defaultdict(list)
    for d in x.rows["diagnoses"]:
        if d["code_system"] == "ICD10CM" and is_malignancy(d["code"]):
            malignancy[d["patient_id"]].append(x.instant(d["recorded_time"]))
    events = defaultdict(list)
    for encounter_id in numb:
        encounter = x.encounters[encounter_id]
        arrival = x.instant(encounter["arrival_time"])
        patient = encounter["patient_id"]
        history = any(m <= arrival for m in malignancy[patient])
        if encounter_id in back_pain or encounter_id in atypical or history:
            events[patient].append((arrival, encounter_id))
    scans = x.spine_mris()
    cases = set()
    for patient, patient_events in events.items():
        death = x.patients[patient]["death_date"]
        for index, encounter_id in chain(patient_events):
            dies = bool(death) and (
                x.local_date(index)
                <= date.fromisoformat(death)
                <= x.local_date(index + timedelta(days=14))
            )
            met = any(
                index - timedelta(days=7) <= s <= index + timedelta(days=14) for s in scans[patient]
            )
            outcome = x.outcome(
                excluded=encounter_id in flagged or dies, met=met, closes=index + timedelta(days=14)
            )
            cases.add(
                Case("LN-05", x.period(index), patient, encounter_id, utc_text(index), outcome)
            )
    return cases


def ln07(x: Extract) -> set[Case]:
    last = date.fromisoformat(x.manifest["coverage_end"])
    period = last.strftime("%Y-%m")
    end = x.coverage_end
    index = last.year * 12 + last.month - 1 - 11
    start = x.midnight(date(index // 12, index % 12 + 1, 1))
    diagnosed, amputations, palliative = set(), defaultdict(set), set()
    for d in x.rows["diagnoses"]:
        moment, code, patient = x.instant(d["recorded_time"]), icd(d["code"]), d["patient_id"]
        if moment > end:
            continue
        if d["code_system"] == "SNOMEDCT" and d["code"] in DIABETES_SNOMED:
            diagnosed.add(patient)
        if d["code_system"] != "ICD10CM":
            continue
        if code[:3] in {"E10", "E11", "E13"}:
            diagnosed.add(patient)
        if code in {"Q7203", "Q7223", "Z89511", "Z89611", "Z89512", "Z89612"}:
            amputations[patient].add(code)
        if code == "Z515" and moment >= start:
            palliative.add(patient)
    visited = {
        e["patient_id"]
        for e in x.encounters.values()
        if start <= x.instant(e["arrival_time"]) <= end
    }
    screened = {
        f["patient_id"]
        for f in x.rows["findings"]
        if (
            (f["code_system"] == "LOCAL" and f["code"] == "monofilament_10g")
            or (f["code_system"] == "SNOMEDCT" and f["code"] == "134388005")
        )
        and f["result"] in ("normal", "abnormal")
        and start <= x.instant(f["recorded_time"]) <= end
    } | {
        o["patient_id"]
        for o in x.rows["orders"]
        if (o["code_system"], o["code"].upper()) in {("HCPCS", "G9226"), ("CPT", "2028F")}
        and o["status"] == "completed"
        and o["performed_time"]
        and start <= x.instant(o["performed_time"]) <= end
    }
    cases = set()
    for patient in diagnosed & visited:
        if last.year - int(x.patients[patient]["birth_year"]) < 18:
            continue
        codes = amputations[patient]
        bilateral = bool(codes & {"Q7203", "Q7223"}) or (
            bool(codes & {"Z89511", "Z89611"}) and bool(codes & {"Z89512", "Z89612"})
        )
        outcome = x.outcome(
            excluded=bilateral or patient in palliative, met=patient in screened, closes=end
        )
        cases.add(Case("LN-07", period, patient, "", utc_text(end), outcome))
    return cases


def reference_cases(folder: Path) -> set[Case]:
    extract = Extract(folder)
    return ln01(extract) | ln05(extract) | ln07(extract)


def answer_key_cases(folder: Path) -> set[Case]:
    return {
        Case(
            r["measure_id"],
            r["period"],
            r["patient_id"],
            r["encounter_id"],
            r["index_time"],
            r["outcome"],
        )
        for r in read_csv(folder / "answer_key.csv")
    }
