"""The judge's reading of the vascular measures, LN-14 and LN-15."""

from __future__ import annotations

from datetime import datetime

from chartaudit.sample_data.answer_key_data import Extract, Patient, day, episodes, within

ABI_ORDERS = {("CPT", "93922"), ("CPT", "93923"), ("CPT", "93924")}
ABI_ORDERS |= {("LOINC", "77194-9"), ("SNOMEDCT", "401221002")}
ABI_LOINC, ABI_SNOMED = "77194-9", "401221002"
PEDAL_PULSES = {("LOCAL", "pedal_pulses"), ("SNOMEDCT", "91161007")}
VASCULAR_REFERRALS = ("vascular_surgery", "vascular_medicine")


def is_pad(code: str) -> bool:
    """pad_dx: I70.211-I70.219, I70.221-I70.229, I73.9 (ICD-10-CM, without the dot)."""
    return code == "I739" or (
        len(code) == 6 and ("I70211" <= code <= "I70219" or "I70221" <= code <= "I70229")
    )


def abi_times(p: Patient) -> list[datetime]:
    """Completed ABI orders (performed), ABI labs (collected), ABI findings not marked not_done."""
    times = [o.done for o in p.orders if (o.system, o.code) in ABI_ORDERS and o.done]
    times += [lab.time for lab in p.labs if lab.loinc == ABI_LOINC]
    times += [
        f.time
        for f in p.findings
        if f.system == "SNOMEDCT" and f.code == ABI_SNOMED and f.result != "not_done"
    ]
    return times


def ln14(x: Extract, p: Patient) -> None:
    signs = {f.encounter for f in p.present(["vascular_claudication"])}
    signs |= {
        f.encounter
        for f in p.findings
        if (f.system, f.code) in PEDAL_PULSES and f.result == "abnormal"
    }
    signs |= {d.encounter for d in p.icd(is_pad)}
    abis = abi_times(p)
    candidates = [
        (e.arrival, e.id)
        for e in p.encounters
        if e.id in signs and not any(e.arrival - day(365) <= t < e.arrival - day(30) for t in abis)
    ]
    for index, encounter in episodes(candidates):
        met = any(within(t, index - day(30), index + day(90)) for t in abis)
        x.add(
            "LN-14", p, index, encounter, x.outcome(excluded=False, met=met, closes=index + day(90))
        )


def ln15(x: Extract, p: Patient) -> None:
    candidates = [
        (lab.time, lab.encounter)
        for lab in p.labs
        if lab.loinc == ABI_LOINC and lab.value is not None and lab.value <= 0.90
    ]
    candidates += [
        (f.time, f.encounter)
        for f in p.findings
        if f.system == "SNOMEDCT"
        and f.code == ABI_SNOMED
        and f.value is not None
        and f.value <= 0.90
    ]
    candidates += [
        (d.time, d.encounter)
        for d in p.icd(lambda c: is_pad(c) and c.startswith(("I7021", "I7022")))
    ]
    referrals = [o.ordered for o in p.referrals(VASCULAR_REFERRALS)]
    for index, encounter in episodes(candidates):
        met = any(within(t, index, index + day(90)) for t in referrals)
        x.add(
            "LN-15", p, index, encounter, x.outcome(excluded=False, met=met, closes=index + day(90))
        )


def judge_vascular(x: Extract, p: Patient) -> None:
    ln14(x, p)
    ln15(x, p)
