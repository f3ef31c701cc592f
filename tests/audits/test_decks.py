"""Every measure's test deck: each tiny timeline gets exactly the outcome it expects, under each
rule set, and the decks reach every criterion of every measure."""

from __future__ import annotations

import pytest

from chartaudit.audits.decks import (
    by_measure,
    reached_unreachable,
    read_deck,
    run_deck,
    unreached,
    untested_edges,
    unused_reasons,
)
from chartaudit.audits.engine import Catalogue

CATALOGUE = Catalogue.load()
DECKS = CATALOGUE.deck_files()
RUNS = [(p, r) for p in DECKS for r in read_deck(p).rulesets]


@pytest.mark.parametrize(("path", "ruleset"), RUNS, ids=[f"{p.stem}-{r}" for p, r in RUNS])
def test_deck_outcomes(path, ruleset):
    run = run_deck(read_deck(path), CATALOGUE, ruleset)
    failures = [f"{c.case.name}: {p}" for c in run.cases for p in c.problems]
    assert not failures, "\n".join(failures)


def test_every_measure_has_a_deck_of_at_least_six_cases():
    sizes = {}
    for path in DECKS:
        deck = read_deck(path)
        sizes[deck.measure] = sizes.get(deck.measure, 0) + len(deck.cases)
    assert set(sizes) == {m.id for m in CATALOGUE.measures}
    assert min(sizes.values()) >= 6, sizes


@pytest.fixture(scope="module")
def deck_groups():
    runs = [run_deck(read_deck(p), CATALOGUE, r) for p, r in RUNS]
    return by_measure(runs)


def test_the_decks_reach_every_criterion_of_every_measure(deck_groups):
    """A criterion no deck case makes true is a branch nobody has checked."""
    missing = {key: unreached(group) for key, group in deck_groups.items() if unreached(group)}
    assert not missing, missing


def test_the_decks_put_a_row_on_and_just_past_both_edges_of_every_window(deck_groups):
    """Every window bound of every criterion: some deck case has a row exactly on it, and one a
    minute (a day, for dates) past it, so an off-by-one in any window is caught."""
    missing = {k: untested_edges(g) for k, g in deck_groups.items() if untested_edges(g)}
    assert not missing, missing


def test_edges_declared_unreachable_are_really_unreached(deck_groups):
    measures = {}
    for (measure, _), group in deck_groups.items():  # all rule sets of a measure together
        measures.setdefault(measure, []).extend(group)
    wrong = {m: reached_unreachable(g) for m, g in measures.items() if reached_unreachable(g)}
    assert not wrong, wrong


def test_every_exclusion_and_failure_reason_decides_some_deck_case(deck_groups):
    missing = {k: unused_reasons(g) for k, g in deck_groups.items() if unused_reasons(g)}
    assert not missing, missing
