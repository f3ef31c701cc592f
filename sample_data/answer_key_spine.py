"""The judge's reading of the spine measures, LN-01 to LN-06 (see answer_key_data)."""

from __future__ import annotations

from datetime import datetime, timedelta

from chartaudit.sample_data.answer_key_data import (
    DOCUMENTED,
    Extract,
    Patient,
    day,
    episodes,
    within,
)

RED_FLAGS = (
    "saddle_anesthesia",
    "new_bladder_dysfunction",
    "new_bowel_dysfunction",
    "progressive_bilateral_leg_weakness",
    "severe_neuro_deficit",
)
LN02_FLAGS = RED_FLAGS[:4]  # severe_neuro_deficit is not an LN-02 trigger
CAUDA_EQUINA = frozenset({"G834", "G9520", "G9529"})
SPINE_MRI = frozenset({"72148", "72149", "72158", "72146", "72147", "72157"})
LUMBAR_IMAGING = SPINE_MRI | {"72131", "72132", "72133", "72100", "72110", "72114", "72120"}
NUMBNESS_ICD = frozenset(
    {"R200", "R201", "R202", "R208", "R209", "M5416", "M5417", "M48062"}
    | {"M5430", "M5431", "M5432", "M5440", "M5441", "M5442"}
)
NUMBNESS_FINDINGS = ("leg_numbness", "bilateral_leg_numbness")
LOW_BACK_PAIN = frozenset({"M5450", "M5451", "M5459"})
SPINE_REFERRALS = ("neurosurgery", "spine_surgery", "orthopedic_spine")
LN06_EXCLUDING_PREFIXES = ("M462", "M464", "S320", "Z94")
LN06_EXCLUDING_CODES = frozenset({"G061", "B20", "Z21", "Z515"})
# LN-04's five components: any one concept of each, documented in the index encounter.
EXAM_COMPONENTS = {
    "small fibre": {("LOCAL", "pinprick"), ("LOCAL", "temperature_sensation")},
    "large fibre": {
        ("LOCAL", "vibration_128hz"),
        ("LOCAL", "monofilament_10g"),
        ("SNOMEDCT", "134388005"),
    },
    "strength": {("LOCAL", "ankle_dorsiflexion_strength"), ("LOCAL", "plantar_flexion_strength")},
    "reflexes": {("LOCAL", "knee_reflex"), ("LOCAL", "ankle_reflex")},
    "straight leg raise": {("LOCAL", "straight_leg_raise")},
}


def is_numbness_code(code: str) -> bool:
    return code in NUMBNESS_ICD or code.startswith("G57")


def is_malignancy(code: str) -> bool:
    """C00-C96 (any, C4A/C7A/C7B included) or Z85.*."""
    return code.startswith("Z85") or (code[:1] == "C" and "00" <= code[1:3] <= "96")


def red_flag_triggers(p: Patient, flags: tuple[str, ...]) -> list[tuple[datetime, str | None]]:
    """Present red-flag findings and cauda equina diagnoses: (recorded time, encounter)."""
    return [(f.time, f.encounter) for f in p.present(flags)] + [
        (d.time, d.encounter) for d in p.icd(CAUDA_EQUINA.__contains__)
    ]


def numbness_encounters(p: Patient) -> set[str]:
    """Encounters with a leg_numbness_dx diagnosis or a numbness finding present linked."""
    linked = {d.encounter for d in p.icd(is_numbness_code) if d.encounter}
    return linked | {f.encounter for f in p.present(NUMBNESS_FINDINGS) if f.encounter}


def numbness_times(p: Patient) -> list[datetime]:
    """Recorded times of every numbness diagnosis (any source) and numbness finding present."""
    return [d.time for d in p.icd(is_numbness_code)] + [
        f.time for f in p.present(NUMBNESS_FINDINGS)
    ]


def spine_mri_times(p: Patient, codes: frozenset[str] = SPINE_MRI) -> list[datetime]:
    return [o.done for o in p.orders if o.system == "CPT" and o.code in codes and o.done]


def ln05_trigger_encounters(p: Patient) -> set[str]:
    """Encounters with leg numbness AND persistent localised back pain or an atypical
    presentation present, linked (LN-05's trigger without the malignancy path)."""
    featured = {
        f.encounter
        for f in p.present(("persistent_localized_back_pain", "atypical_presentation"))
        if f.encounter
    }
    return numbness_encounters(p) & featured


def ln01_ln03(x: Extract, p: Patient) -> None:
    scans = spine_mri_times(p)
    for index, encounter in episodes(red_flag_triggers(p, RED_FLAGS)):
        visit = x.encounters.get(encounter)
        twelve = index + timedelta(hours=12)
        contraindicated = bool(encounter) and bool(p.present(["mri_contraindication"], encounter))
        leaves = (
            visit is not None
            and visit.disposition in ("died", "left_ama", "transferred")
            and visit.departure is not None
            and visit.departure <= twelve
        )
        met = any(within(s, index - timedelta(hours=24), twelve) for s in scans)
        x.add(
            "LN-01",
            p,
            index,
            encounter,
            x.outcome(excluded=contraindicated or leaves, met=met, closes=twelve),
        )
        # LN-03: the same episodes; both examinations documented in the index encounter.
        examined = {
            f.code
            for f in p.findings
            if encounter
            and f.encounter == encounter
            and f.system == "LOCAL"
            and f.code in ("perianal_sensation", "anal_sphincter_tone")
            and f.result in DOCUMENTED
        }
        still_in = (
            visit is not None and visit.departure is not None and visit.departure > x.coverage_end
        )
        outcome = "met" if len(examined) == 2 else "pending" if still_in else "not_met"
        x.add("LN-03", p, index, encounter, outcome)


def ln02(x: Extract, p: Patient) -> None:
    referrals = p.referrals(SPINE_REFERRALS)
    for index, encounter in episodes(red_flag_triggers(p, LN02_FLAGS)):
        visit = x.encounters.get(encounter)
        twelve = index + timedelta(hours=12)
        leaves = (
            visit is not None
            and visit.disposition in ("died", "left_ama")
            and visit.departure is not None
            and visit.departure <= twelve
        )
        admitted = visit is not None and visit.disposition == "admitted"
        met = any(within(o.ordered, index, twelve) for o in referrals) or (
            admitted and any(o.encounter == encounter for o in referrals)
        )
        x.add("LN-02", p, index, encounter, x.outcome(excluded=leaves, met=met, closes=twelve))


def ln04(x: Extract, p: Patient) -> None:
    linked = numbness_encounters(p)
    prior = numbness_times(p)
    candidates = [
        (e.arrival, e.id)
        for e in p.encounters
        if e.id in linked and not any(e.arrival - day(180) <= t < e.arrival for t in prior)
    ]
    for index, encounter in episodes(candidates):
        visit = x.encounters[encounter]
        documented = {
            (f.system, f.code)
            for f in p.findings
            if f.encounter == encounter and f.result in DOCUMENTED
        }
        missing = [name for name, concepts in EXAM_COMPONENTS.items() if not concepts & documented]
        still_in = visit.departure is not None and visit.departure > x.coverage_end
        if visit.setting == "telehealth":
            outcome = "excluded"
        elif not missing:
            outcome = "met"
        else:
            outcome = "pending" if still_in else "not_met"
        x.add("LN-04", p, index, encounter, outcome, detail=", ".join(missing))


def ln05(x: Extract, p: Patient) -> None:
    linked = numbness_encounters(p)
    featured = ln05_trigger_encounters(p)
    malignancy = [d.time for d in p.icd(is_malignancy)]
    candidates = [
        (e.arrival, e.id)
        for e in p.encounters
        if e.id in featured or (e.id in linked and any(t <= e.arrival for t in malignancy))
    ]
    scans = spine_mri_times(p)
    for index, encounter in episodes(candidates):
        flagged = bool(p.present(RED_FLAGS, encounter)) or any(
            d.encounter == encounter for d in p.icd(CAUDA_EQUINA.__contains__)
        )
        dies = p.death_date is not None and (
            x.local_date(index) <= p.death_date <= x.local_date(index + day(14))
        )
        met = any(within(s, index - day(7), index + day(14)) for s in scans)
        outcome = x.outcome(excluded=flagged or dies, met=met, closes=index + day(14))
        x.add("LN-05", p, index, encounter, outcome)


def ln06(x: Extract, p: Patient) -> None:
    back_pain = p.icd(LOW_BACK_PAIN.__contains__)
    linked = numbness_encounters(p) | {d.encounter for d in back_pain if d.encounter}
    prior = numbness_times(p) + [d.time for d in back_pain]
    candidates = [
        (e.arrival, e.id)
        for e in p.encounters
        if e.id in linked
        and 18 <= int(x.period(e.arrival)[:4]) - p.birth_year <= 75
        and not any(e.arrival - day(180) <= t < e.arrival for t in prior)
    ]
    if not candidates:
        return
    malignancy = [d.time for d in p.icd(is_malignancy)]
    conditions = [
        d.time
        for d in p.icd(lambda c: c in LN06_EXCLUDING_CODES or c.startswith(LN06_EXCLUDING_PREFIXES))
    ]
    red_flags = [t for t, _ in red_flag_triggers(p, RED_FLAGS)]
    ln05_triggers = [x.encounters[e].arrival for e in ln05_trigger_encounters(p)]
    imaging = spine_mri_times(p, LUMBAR_IMAGING)
    for index, encounter in episodes(candidates):
        start, end = index - day(365), index + day(28)
        excluded = any(t <= end for t in malignancy) or any(
            within(t, start, end) for t in conditions + red_flags + ln05_triggers
        )
        scanned = any(within(t, index, end) for t in imaging)
        if excluded:
            outcome = "excluded"
        elif scanned:
            outcome = "not_met"
        else:
            outcome = "pending" if end > x.coverage_end else "met"
        x.add("LN-06", p, index, encounter, outcome)


def judge_spine(x: Extract, p: Patient) -> None:
    ln01_ln03(x, p)
    ln02(x, p)
    ln04(x, p)
    ln05(x, p)
    ln06(x, p)
