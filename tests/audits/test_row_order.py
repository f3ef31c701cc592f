"""The engine's results never depend on the order of the rows it reads.

Every deck is judged twice, its rows inserted as written and in reverse order (so every row
gets another source_line, and every tie at one instant is met in the other order first); the
case rows must be identical, evidence and row ids included. The decks hold the ties that matter:
a red-flag finding and a diagnosis at one instant, two agents started together, an event as
far before the index as another after it."""

from __future__ import annotations

import pytest

from chartaudit.audits.decks import build_database, read_deck
from chartaudit.audits.engine import Catalogue, run_measures
from chartaudit.audits.period import AuditPeriod
from chartaudit.schemas.results import RESULT_TABLES_DDL

CATALOGUE = Catalogue.load()
RUNS = [(p, r) for p in CATALOGUE.deck_files() for r in read_deck(p).rulesets]


def judged(rows: dict[str, list[dict]], deck, ruleset: str, columns: str = "*") -> list[tuple]:
    period = AuditPeriod.of(deck.period, deck.timezone, deck.coverage_end)
    with build_database(rows) as con:
        con.execute(RESULT_TABLES_DDL)
        run_measures(con, CATALOGUE.only(deck.measure), period, ruleset, run_id="deck")
        return con.execute(f"SELECT {columns} FROM case_results ORDER BY ALL").fetchall()


@pytest.mark.parametrize(("path", "ruleset"), RUNS, ids=[f"{p.stem}-{r}" for p, r in RUNS])
def test_reversed_rows_give_the_same_cases(path, ruleset):
    deck = read_deck(path)
    as_written = judged(deck.rows, deck, ruleset)
    reversed_rows = {table: rows[::-1] for table, rows in deck.rows.items()}
    assert as_written, "the deck makes no case"
    assert judged(reversed_rows, deck, ruleset) == as_written


def test_rows_without_an_id_are_named_by_their_content():
    deck = read_deck(next(p for p, _ in RUNS if p.stem == "LN-01"))
    with build_database(deck.rows) as con:
        ids = con.execute("SELECT row_id FROM findings ORDER BY source_line").fetchall()
    names = [i for (i,) in ids]
    assert all(n.startswith("findings:") and len(n) == len("findings:") + 16 for n in names)
    # Rows of the deck that differ in a contract column differ in name.
    with build_database(deck.rows) as con:
        (distinct_rows,) = con.execute(
            "SELECT count(*) FROM (SELECT DISTINCT * EXCLUDE (source_line, row_id) FROM findings)"
        ).fetchone()
    assert len(set(names)) == distinct_rows


def test_a_patient_case_takes_site_and_setting_from_one_latest_encounter_in_any_order():
    """LN-07 shows a patient under the latest encounter's site and setting. Two encounters at
    that same instant (A1 at SITE-A outpatient, A2 at SITE-B telehealth): the larger id, A2,
    stands for both columns, whichever row the file lists first."""
    deck = read_deck(next(p for p, _ in RUNS if p.stem == "LN-07"))
    first = next(r for r in deck.rows["encounters"] if r["encounter_id"] == "A1")
    twin = {**first, "encounter_id": "A2", "site_id": "SITE-B", "setting": "telehealth"}
    for encounters in ([*deck.rows["encounters"], twin], [twin, *deck.rows["encounters"]]):
        rows = {**deck.rows, "encounters": encounters}
        cases = judged(rows, deck, "source-2025", "patient_id, site_id, setting")
        assert [c for c in cases if c[0] == first["patient_id"]] == [
            (first["patient_id"], "SITE-B", "telehealth")
        ]
