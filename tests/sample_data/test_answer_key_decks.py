"""The answer-key judge against the measure test decks (audits/decks/): two readings of
measures.md and docs/measure-readings.md, written by different hands, must give every deck case
the same outcome. A deck for a new measure is picked up as soon as it lands."""

from __future__ import annotations

import csv
import json
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from chartaudit.sample_data.answer_key import judge
from chartaudit.schemas.contract import TABLE_ORDER, TABLES

try:  # the decks ship beside the measures (audits/decks/) ...
    from chartaudit.audits import decks as deck_module
except ImportError:  # ... or, in older layouts, beside the tests
    from tests.audits import decks as deck_module

read_deck = deck_module.read_deck
DECK_DIR = Path(deck_module.__file__).parent / "decks"
DECKS = sorted(DECK_DIR.glob("*.yaml"))


def write_folder(deck, folder: Path) -> None:
    """The deck's rows as a contract extract (timestamps with their UTC offset)."""
    for table in TABLE_ORDER:
        columns = TABLES[table].column_names
        with (folder / f"{table}.csv").open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(columns)
            for row in deck.rows[table]:
                writer.writerow([text(row.get(column)) for column in columns])
    # the deck's coverage end is an instant (local midnight); the manifest names the last day
    last_day = deck.coverage_end.astimezone(ZoneInfo(deck.timezone)).date() - timedelta(days=1)
    manifest = {
        "extract_id": "deck",
        "timezone": deck.timezone,
        "coverage_start": "2024-01-01",
        "coverage_end": last_day.isoformat(),
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    (folder / "expected_quarantine.csv").write_text("table_name,source_line,column_name,reason\n")


def text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    return str(value)


@pytest.mark.parametrize("path", DECKS, ids=[p.stem for p in DECKS])
def test_judge_agrees_with_the_deck(path: Path, tmp_path: Path) -> None:
    deck = read_deck(path)
    write_folder(deck, tmp_path)
    cases = [c for c in judge(tmp_path) if c.measure_id == deck.measure and c.period == deck.period]
    failures = []
    for ruleset in deck.rulesets:
        for case in deck.cases:
            got = [
                c.outcome for c in cases if c.patient_id == case.patient_id and c.ruleset == ruleset
            ]
            if got != case.expect[ruleset]:
                failures.append(f"{ruleset} {case.name}: deck {case.expect[ruleset]}, judge {got}")
    assert not failures, "\n".join(failures)
