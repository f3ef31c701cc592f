"""The answer key: every case of all fifteen measures under both rule sets, judged from the files.

After the generator has written an extract, :func:`write_answer_key` runs an independent
reference judge over the written files and writes ``answer_key.csv``: one row per case per rule
set (``source-2025``, ``evidence-2026``), for every month of the coverage (LN-07, a patient
measure, only for months whose 12-month look-back starts at or after the coverage start).

The judge applies measures.md and docs/measure-readings.md in plain Python, one function per measure
(``answer_key_spine``: LN-01 to LN-06; ``answer_key_neuro``: LN-07 to LN-13;
``answer_key_vascular``: LN-14, LN-15). It shares no code with the SQL engine in ``audits/``,
nor with the scenarios that wrote the data, so the engine and the key can be compared case by
case and each checks the other. A scenario's intended outcomes (``chart.Scenario.intent``) are
checked against this key by the tests.
"""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

from chartaudit.sample_data.answer_key_data import RULESETS, Case, Extract
from chartaudit.sample_data.answer_key_neuro import judge_neuro
from chartaudit.sample_data.answer_key_spine import judge_spine
from chartaudit.sample_data.answer_key_vascular import judge_vascular

__all__ = ["KEY_COLUMNS", "MEASURES", "RULESETS", "Case", "judge", "write_answer_key"]

MEASURES = tuple(f"LN-{n:02d}" for n in range(1, 16))
KEY_COLUMNS = (
    "measure_id",
    "ruleset",
    "period",
    "patient_id",
    "encounter_id",
    "index_time",
    "outcome",
    "scenario",
)
BACKGROUND = "background"


def judge(folder: Path) -> list[Case]:
    """Every case of every measure under both rule sets, in the key's order."""
    x = Extract(folder)
    for patient in x.patients.values():
        judge_spine(x, patient)
        judge_neuro(x, patient)
        judge_vascular(x, patient)
    return sorted(x.cases, key=sort_key)


def sort_key(case: Case) -> tuple:
    return (
        case.measure_id,
        RULESETS.index(case.ruleset),
        case.period,
        case.patient_id,
        case.index_time,
        case.encounter_id,
    )


def write_answer_key(folder: Path, scenarios: dict[str, str]) -> tuple[Path, list[Case]]:
    """Judge the extract in ``folder`` and write its ``answer_key.csv``; ``scenarios`` maps a
    patient id to its scenario label (absent: background)."""
    cases = judge(folder)
    path = Path(folder) / "answer_key.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(KEY_COLUMNS)
        for c in cases:
            writer.writerow(
                (
                    c.measure_id,
                    c.ruleset,
                    c.period,
                    c.patient_id,
                    c.encounter_id,
                    c.index_time.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    c.outcome,
                    scenarios.get(c.patient_id, BACKGROUND),
                )
            )
    return path, cases


def outcome_counts(cases: list[Case]) -> dict[str, dict[str, dict[str, int]]]:
    """rule set -> measure -> outcome -> cases."""
    counts: dict[str, dict[str, Counter[str]]] = {}
    for c in cases:
        counts.setdefault(c.ruleset, {}).setdefault(c.measure_id, Counter())[c.outcome] += 1
    return {
        ruleset: {m: dict(sorted(c.items())) for m, c in sorted(per.items())}
        for ruleset, per in counts.items()
    }
