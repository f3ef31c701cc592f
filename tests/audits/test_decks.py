"""Every measure's test deck: each tiny timeline gets exactly the outcome it expects."""

from __future__ import annotations

import pytest

from chartaudit.audits.engine import Catalogue, run_measures
from chartaudit.audits.period import AuditPeriod
from chartaudit.schemas.results import RESULT_TABLES_DDL
from tests.audits.decks import DECK_DIR, build_database, read_deck

CATALOGUE = Catalogue.load()
DECKS = sorted(DECK_DIR.glob("*.yaml"))


def audit_deck(deck, ruleset="source-2025"):
    con = build_database(deck.rows)
    con.execute(RESULT_TABLES_DDL)
    period = AuditPeriod.of(deck.period, deck.timezone, deck.coverage_end)
    only = Catalogue((CATALOGUE.measure(deck.measure),), CATALOGUE.value_sets)
    run_measures(con, only, period, ruleset, run_id="deck")
    return con


RUNS = [(p, r) for p in DECKS for r in read_deck(p).rulesets]


@pytest.mark.parametrize(("path", "ruleset"), RUNS, ids=[f"{p.stem}-{r}" for p, r in RUNS])
def test_deck_outcomes(path, ruleset):
    deck = read_deck(path)
    con = audit_deck(deck, ruleset)
    rows = con.execute(
        "SELECT patient_id, outcome, hours_to_event, evidence, flags FROM case_results"
        " ORDER BY patient_id, index_time"
    ).fetchall()
    failures = []
    for case in deck.cases:
        got = [r for r in rows if r[0] == case.patient_id]
        expect = case.expect[ruleset]
        if [r[1] for r in got] != expect:
            failures.append(f"{case.name}: expected {expect}, got {[(r[1], r[3]) for r in got]}")
        if case.hours is not None:
            hours = [None if r[2] is None else round(r[2], 4) for r in got]
            if hours != case.hours:
                failures.append(f"{case.name}: expected hours {case.hours}, got {hours}")
        if case.flags is not None and [r[4] for r in got] != case.flags:
            failures.append(f"{case.name}: expected flags {case.flags}, got {[r[4] for r in got]}")
    assert not failures, "\n".join(failures)


def test_every_measure_has_a_deck():
    covered = {read_deck(p).measure for p in DECKS}
    assert covered == {m.id for m in CATALOGUE.measures}
