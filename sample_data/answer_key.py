"""The answer key: every case of all fifteen measures under both rule sets, judged from the files.

As the generator writes an extract, batch by batch of patients, :func:`judge` runs an
independent reference judge over each batch's rows as written (:func:`write_key_part`), and
:func:`merge_key_parts` writes ``answer_key.csv`` from them: one row per case per rule
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
import heapq
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

import polars as pl

from chartaudit.sample_data.answer_key_data import RULESETS, Case, Extract
from chartaudit.sample_data.answer_key_neuro import judge_neuro
from chartaudit.sample_data.answer_key_spine import judge_spine
from chartaudit.sample_data.answer_key_vascular import judge_vascular

__all__ = [
    "KEY_COLUMNS",
    "MEASURES",
    "RULESETS",
    "Case",
    "judge",
    "merge_key_parts",
    "write_key_part",
]

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


def judge(
    folder: Path,
    tables: dict[str, tuple[pl.DataFrame, int]] | None = None,
    quarantined: dict[str, set[int]] | None = None,
) -> list[Case]:
    """Every case of every measure under both rule sets, in the key's order (of the folder's
    files, or of ``tables`` minus ``quarantined``: see ``answer_key_data.Extract``)."""
    x = Extract(folder, tables, quarantined)
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


def _row_sort_key(row: list[str]) -> tuple:
    """:func:`sort_key` of a written key row (index times are whole seconds in UTC, so their
    text sorts as the instants do)."""
    return (row[0], RULESETS.index(row[1]), row[2], row[3], row[5], row[4])


def write_key_part(path: Path, cases: list[Case], scenarios: dict[str, str]) -> None:
    """One batch's cases (sorted, as :func:`judge` returns them) as key rows without a header;
    ``scenarios`` maps a patient id to its scenario label (absent: background)."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
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


def merge_key_parts(parts: list[Path], path: Path) -> dict[str, dict[str, dict[str, int]]]:
    """Write ``answer_key.csv`` at ``path`` from the batches' parts, in patient order, and
    return rule set -> measure -> outcome -> cases. A stable merge of sorted runs: the rows come
    out exactly as sorting every batch's cases at once would put them, one row in memory per
    part."""
    counts: dict[str, dict[str, Counter[str]]] = {}
    with ExitStack() as stack:
        readers = [csv.reader(stack.enter_context(part.open(newline=""))) for part in parts]
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(KEY_COLUMNS)
            for row in heapq.merge(*readers, key=_row_sort_key):
                writer.writerow(row)
                counts.setdefault(row[1], {}).setdefault(row[0], Counter())[row[6]] += 1
    return {
        ruleset: {m: dict(sorted(c.items())) for m, c in sorted(per.items())}
        for ruleset, per in counts.items()
    }
