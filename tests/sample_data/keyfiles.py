"""Reading a generated extract's files, and checking its scenarios' intents against its key."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

from chartaudit.sample_data.answer_key import RULESETS
from chartaudit.sample_data.chart import intended
from chartaudit.sample_data.generator import CASE_SCENARIOS, GeneratedExtract


def read_csv(path: Path) -> list[dict[str, str]]:
    with Path(path).open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def intent_violations(result: GeneratedExtract, key_rows: list[dict[str, str]]) -> list[str]:
    """Every placed scenario's intent, per patient and rule set: a set holds every case's
    outcome (an empty set: no case); a tuple is the exact outcomes in index-time order. LN-07
    intents are about the last coverage month."""
    last = max(row["period"] for row in key_rows) if key_rows else ""
    cases = defaultdict(list)
    for row in key_rows:
        if row["measure_id"] != "LN-07" or row["period"] == last:
            cases[(row["patient_id"], row["measure_id"], row["ruleset"])].append(row)
    problems = []
    for label, patients in result.scenario_patients.items():
        scenario = CASE_SCENARIOS.get(label)
        for measure in scenario.intent if scenario else ():
            for ruleset in RULESETS:
                want = intended(scenario.intent, measure, ruleset)
                for patient in patients:
                    rows = sorted(cases[(patient, measure, ruleset)], key=lambda r: r["index_time"])
                    got = tuple(row["outcome"] for row in rows)
                    if isinstance(want, tuple):
                        holds = got == want
                    else:
                        holds = set(got) <= want and bool(got) == bool(want)
                    if not holds:
                        problems.append(f"{label} {patient} {measure} {ruleset}: {got} not {want}")
    return problems
