"""The judge's reading of the neuropathy and restless-legs measures, LN-07 to LN-13."""

from __future__ import annotations

from datetime import datetime

from chartaudit.sample_data.answer_key_data import (
    DOCUMENTED,
    RULESETS,
    Extract,
    Patient,
    day,
    episodes,
    within,
)

DIABETES_ICD_PREFIXES = ("E10", "E11", "E13")
DIABETES_SNOMED = frozenset(
    {"44054006", "46635009", "73211009", "127013003", "422034002", "1501000119109"}
    | {"1551000119108", "157141000119108", "368581000119106", "60951000119105"}
    | {"90781000119102", "97331000119101", "427089005"}
)
NEUROPATHY_SNOMED = "368581000119106"
AMPUTATION_BILATERAL = frozenset({"Q7203", "Q7223"})
AMPUTATION_RIGHT = frozenset({"Z89511", "Z89611"})
AMPUTATION_LEFT = frozenset({"Z89512", "Z89612"})
MONOFILAMENT_FINDINGS = {("LOCAL", "monofilament_10g"), ("SNOMEDCT", "134388005")}
MONOFILAMENT_ORDERS = {("HCPCS", "G9226"), ("CPT", "2028F"), ("SNOMEDCT", "134388005")}
B12, TSH, RENAL = ("2132-9", "13964-2"), ("3016-3", "11580-8"), ("2160-0", "98979-8", "33914-3")
GLYCAEMIC = ("4548-4", "17856-6", "1558-6")
FERRITIN, TSAT = "2276-4", "2502-3"
AGENTS = (
    "pregabalin",
    "gabapentin",
    "duloxetine",
    "venlafaxine",
    "amitriptyline",
    "nortriptyline",
    "tramadol",
    "oxycodone",
)
SOURCE_FIRST_LINE = ("pregabalin", "duloxetine")
OPIOIDS = ("tramadol", "oxycodone")
IRON = (
    "ferrous sulfate",
    "ferrous gluconate",
    "ferrous fumarate",
    "ferric carboxymaltose",
    "ferumoxytol",
    "iron sucrose",
    "iron dextran",
)
AGONIST_LIMITS = {"ropinirole": (0.25, 4.0), "pramipexole": (0.125, 0.5)}  # (start, maximum) mg
RLS_DRUGS = ("ropinirole", "pramipexole", "rotigotine", "gabapentin", "gabapentin enacarbil")
RLS_DRUGS += ("pregabalin",)
DOPAMINE_AGONISTS = ("ropinirole", "pramipexole", "rotigotine")


def is_diabetes(system: str, code: str) -> bool:
    if system == "SNOMEDCT":
        return code in DIABETES_SNOMED
    return system == "ICD10CM" and code.startswith(DIABETES_ICD_PREFIXES)


def is_neuropathy(system: str, code: str) -> bool:
    """diabetic_neuropathy (E08-E13 .40-.44/.49, SNOMED) or polyneuropathy (G60*, G61.9, G62*,
    G63, G64)."""
    return is_diabetic_neuropathy(system, code) or (
        system == "ICD10CM" and (code.startswith(("G60", "G62")) or code in ("G619", "G63", "G64"))
    )


def is_diabetic_neuropathy(system: str, code: str) -> bool:
    if system == "SNOMEDCT":
        return code == NEUROPATHY_SNOMED
    return (
        system == "ICD10CM"
        and len(code) == 5
        and "E08" <= code[:3] <= "E13"
        and code[3:] in ("40", "41", "42", "43", "44", "49")
    )


def lab_times(p: Patient, loincs: tuple[str, ...]) -> list[datetime]:
    return [lab.time for lab in p.labs if lab.loinc in loincs]


def ln07(x: Extract, p: Patient) -> None:
    """Judged at the end of each month whose 12-month look-back starts inside the coverage. The
    look-back is [local midnight on the 1st of month M-11, local midnight after M): "at or before
    the month end" is strictly before the next month's first instant."""
    diabetes = [d.time for d in p.dx if is_diabetes(d.system, d.code)]
    if not diabetes:
        return
    for period in x.months:
        start, end = x.month_start(period, -11), x.month_end(period)
        if start < x.coverage_start:
            continue
        eligible = (
            any(t < end for t in diabetes)
            and int(period[:4]) - p.birth_year >= 18
            and any(start <= e.arrival < end for e in p.encounters)
        )
        if not eligible:
            continue
        codes = {d.code for d in p.dx if d.system == "ICD10CM" and d.time < end}
        amputated = bool(codes & AMPUTATION_BILATERAL) or bool(
            codes & AMPUTATION_RIGHT and codes & AMPUTATION_LEFT
        )
        palliative = any(start <= d.time < end for d in p.icd("Z515".__eq__))
        screened = any(
            (f.system, f.code) in MONOFILAMENT_FINDINGS
            and f.result in DOCUMENTED
            and start <= f.time < end
            for f in p.findings
        ) or any(
            (o.system, o.code) in MONOFILAMENT_ORDERS and o.done and start <= o.done < end
            for o in p.orders
        )
        outcome = x.outcome(excluded=amputated or palliative, met=screened, closes=None)
        x.add("LN-07", p, end, None, outcome, period=period)


def neuropathy_candidates(p: Patient) -> list[tuple[datetime, str | None]]:
    """LN-08's candidates: a neuropathy diagnosis with none in the prior 365 days."""
    times = [(d.time, d.encounter) for d in p.dx if is_neuropathy(d.system, d.code)]
    return [
        (t, encounter)
        for t, encounter in times
        if not any(t - day(365) <= other < t for other, _ in times)
    ]


def ln08_ln09(x: Extract, p: Patient) -> None:
    candidates = neuropathy_candidates(p)
    if not candidates:
        return
    components = {name: lab_times(p, codes) for name, codes in (("B12", B12), ("TSH", TSH))}
    components["renal function"] = lab_times(p, RENAL)
    for index, encounter in episodes(candidates):
        window = (index - day(365), index + day(90))
        missing = [n for n, ts in components.items() if not any(within(t, *window) for t in ts)]
        outcome = x.outcome(excluded=False, met=not missing, closes=window[1])
        x.add("LN-08", p, index, encounter, outcome, detail=", ".join(missing))
    # LN-09: candidates without diabetes recorded strictly before them.
    diabetes = [d.time for d in p.dx if is_diabetes(d.system, d.code)]
    tests = lab_times(p, GLYCAEMIC)
    undiagnosed = [(t, e) for t, e in candidates if not any(d < t for d in diabetes)]
    for index, encounter in episodes(undiagnosed):
        met = any(within(t, index - day(90), index + day(30)) for t in tests)
        outcome = x.outcome(excluded=False, met=met, closes=index + day(30))
        x.add("LN-09", p, index, encounter, outcome)


def ln10(x: Extract, p: Patient) -> None:
    starts = [m for m in p.meds if m.ingredient in AGENTS]
    if not starts:
        return
    first = min(m.time for m in starts)
    period = x.period(first)
    if not any(
        is_diabetic_neuropathy(d.system, d.code) and d.time < x.month_end(period) for d in p.dx
    ):
        return
    together = [m for m in starts if m.time == first]
    agents = {m.ingredient for m in together}
    encounter = min((m.encounter for m in together if m.encounter), default=None)
    detail = "first: " + ", ".join(sorted(agents))
    source = "met" if agents & set(SOURCE_FIRST_LINE) else "not_met"
    x.add("LN-10", p, first, encounter, source, rulesets=RULESETS[:1], detail=detail)
    evidence = "not_met" if agents & set(OPIOIDS) else "met"
    x.add("LN-10", p, first, encounter, evidence, rulesets=RULESETS[1:], detail=detail)


def rls_diagnoses(p: Patient) -> list[datetime]:
    return [d.time for d in p.icd("G2581".__eq__)]


def ln11(x: Extract, p: Patient) -> None:
    times = [(d.time, d.encounter) for d in p.icd("G2581".__eq__)]
    times += [(f.time, f.encounter) for f in p.present(["rls_symptoms"])]
    candidates = [
        (t, e) for t, e in times if not any(t - day(365) <= other < t for other, _ in times)
    ]
    ferritin, tsat = lab_times(p, (FERRITIN,)), lab_times(p, (TSAT,))
    for index, encounter in episodes(candidates):
        start, end = index - day(90), index + day(30)
        has_ferritin = any(within(t, start, end) for t in ferritin)
        has_tsat = any(within(t, start, end) for t in tsat)
        source = x.outcome(excluded=False, met=has_ferritin, closes=end)
        evidence = x.outcome(excluded=False, met=has_ferritin and has_tsat, closes=end)
        x.add("LN-11", p, index, encounter, source, rulesets=RULESETS[:1])
        x.add("LN-11", p, index, encounter, evidence, rulesets=RULESETS[1:])


def ln12(x: Extract, p: Patient) -> None:
    rls = rls_diagnoses(p)
    if not rls:
        return
    iron = [m.time for m in p.meds if m.ingredient in IRON]
    for ruleset in RULESETS:
        candidates = []
        for lab in p.labs:
            if lab.value is None:
                continue
            if ruleset == "source-2025":
                low = lab.loinc == FERRITIN and lab.value < 50
            else:
                low = (lab.loinc == FERRITIN and lab.value <= 75) or (
                    lab.loinc == TSAT and lab.value < 20
                )
            month_end = x.month_end(x.period(lab.time))
            if low and any(t < month_end for t in rls):
                candidates.append((lab.time, lab.encounter))
        for index, encounter in episodes(candidates):
            met = any(within(t, index, index + day(90)) for t in iron)
            outcome = x.outcome(excluded=False, met=met, closes=index + day(90))
            x.add("LN-12", p, index, encounter, outcome, rulesets=(ruleset,))


def ln13(x: Extract, p: Patient) -> None:
    orders = [m for m in p.meds if m.ingredient in AGONIST_LIMITS]
    if not orders:
        return
    rls = rls_diagnoses(p)
    parkinsons = [d.time for d in p.icd(lambda c: c.startswith("G20"))]
    ferritin = lab_times(p, (FERRITIN,))
    rls_drugs = [m for m in p.meds if m.ingredient in RLS_DRUGS]
    earliest = min(m.time for m in rls_drugs)
    agonist_first = any(m.ingredient in DOPAMINE_AGONISTS for m in rls_drugs if m.time == earliest)
    fact = "first RLS drug: " + (
        "a dopamine agonist" if agonist_first else "not a dopamine agonist"
    )
    for m in sorted(orders, key=lambda o: o.time):  # every order is its own case
        end = x.month_end(x.period(m.time))
        if not any(t < end for t in rls) or any(t < end for t in parkinsons):
            continue
        reason = ln13_reason(m, orders, ferritin)
        outcome = "not_met" if reason else "met"
        detail = reason[1] if reason else ""
        x.add("LN-13", p, m.time, m.encounter, outcome, rulesets=RULESETS[:1], detail=detail)
        detail = f"{detail}; {fact}" if detail else fact
        x.add("LN-13", p, m.time, m.encounter, outcome, rulesets=RULESETS[1:], detail=detail)


def ln13_reason(m, orders: list, ferritin: list[datetime]) -> tuple[int, str] | None:
    """(rank, words) of the first reason this order breaks the schedule, or None."""
    starting, maximum = AGONIST_LIMITS[m.ingredient]
    first = not any(o.ingredient == m.ingredient and o.time < m.time for o in orders)
    if m.dose is not None:
        daily = m.dose * (m.per_day if m.per_day is not None else 1.0)
        if daily > maximum:
            return 1, f"daily dose {daily:g} mg above the maximum {maximum:g} mg"
        if first and daily > starting:
            return 2, f"first order {daily:g} mg/day above the starting dose {starting:g} mg"
    if first and not any(within(t, m.time - day(90), m.time) for t in ferritin):
        return 3, "start with no ferritin in the prior 90 days"
    return None


def judge_neuro(x: Extract, p: Patient) -> None:
    ln07(x, p)
    ln08_ln09(x, p)
    ln10(x, p)
    ln11(x, p)
    ln12(x, p)
    ln13(x, p)
