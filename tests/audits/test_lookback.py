"""Look-backs derived from the measure files, and whether a month is computable on an extract.

The table below is what the files say (checked by hand against each file): where it differs from
issue 8's summary the file wins. LN-06's exclusions look back 365 days (the issue says 180, the
index look-back); LN-14's no-earlier-ABI look-back of 365 days adds one 30-day episode, because an
encounter up to 30 days before the index can start the episode the index would join, and whether
it is a candidate needs its own 365 days (LN-08/LN-09/LN-11/LN-04/LN-06 forbid any earlier
candidate inside the episode length, so their chains add nothing).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime

import pytest

from chartaudit.audits.engine import Catalogue
from chartaudit.audits.lookback import (
    COMPUTED,
    NOT_COMPUTABLE,
    computability,
    first_computable_month,
    look_back,
)
from chartaudit.audits.measure_parser import load_measures
from chartaudit.audits.period import AuditPeriod

DAY = 24 * 60
CALENDAR = frozenset({"lookback_start"})
NONE = frozenset()
CHICAGO = "America/Chicago"
COVERAGE_END = datetime(2026, 11, 1, 5, tzinfo=UTC)  # local midnight after 2026-10-31

# measure, version -> (elapsed minutes, anchors, criteria judged "at any time")
EXPECTED = {
    ("LN-01", "2025.1"): (30 * DAY, NONE, ()),
    ("LN-02", "2025.1"): (30 * DAY, NONE, ()),
    ("LN-03", "2025.1"): (30 * DAY, NONE, ()),
    ("LN-04", "2025.1"): (180 * DAY, NONE, ()),
    ("LN-05", "2025.1"): (30 * DAY, NONE, ("malignancy history",)),
    ("LN-06", "2025.1"): (365 * DAY, NONE, ("malignancy",)),
    (
        "LN-07",
        "2025.1",
    ): (
        0,
        CALENDAR,
        ("diabetes", "bilateral amputation", "left leg amputation", "right leg amputation"),
    ),
    ("LN-08", "2025.1"): (365 * DAY, NONE, ()),
    ("LN-09", "2025.1"): (365 * DAY, NONE, ("diabetes already recorded",)),
    ("LN-10", "2025.1"): (
        0,
        NONE,
        ("the patient's first qualifying event (episodes: first)", "diabetic neuropathy"),
    ),
    ("LN-10", "2026.1"): (
        0,
        NONE,
        ("the patient's first qualifying event (episodes: first)", "diabetic neuropathy"),
    ),
    ("LN-11", "2025.1"): (365 * DAY, NONE, ()),
    ("LN-11", "2026.1"): (365 * DAY, NONE, ()),
    ("LN-12", "2025.1"): (30 * DAY, NONE, ("restless legs diagnosis",)),
    ("LN-12", "2026.1"): (30 * DAY, NONE, ("restless legs diagnosis",)),
    ("LN-13", "2025.1"): (90 * DAY, NONE, LN13 := (
        "restless legs diagnosis",
        "Parkinson's disease",
        "first ropinirole order above 0.25 mg a day",
        "first pramipexole order above 0.125 mg a day",
        "first order of this agent",
    )),
    ("LN-13", "2026.1"): (90 * DAY, NONE, (*LN13, "dopamine agonist first")),
    ("LN-14", "2025.1"): (395 * DAY, NONE, ()),
    ("LN-15", "2025.1"): (30 * DAY, NONE, ()),
}  # fmt: skip


def _derived() -> dict[tuple[str, str], tuple]:
    derived = {}
    for measure in Catalogue.load().measures:
        for version in measure.versions:
            lb = look_back(measure.definition(version))
            derived[(measure.id, version.version)] = (lb.minutes, lb.anchors, lb.at_any_time)
    return derived


def test_every_built_in_measure_has_the_look_back_its_file_gives() -> None:
    assert _derived() == EXPECTED


@pytest.mark.parametrize(
    ("measure_id", "words"),
    [
        ("LN-07", "the 12 calendar months ending with the audit month"),
        ("LN-04", "180 days"),
        ("LN-14", "395 days"),
        ("LN-10", "none"),
    ],
)
def test_look_backs_in_words(measure_id: str, words: str) -> None:
    measure = Catalogue.load().measure(measure_id)
    assert look_back(measure.base).words() == words


def _period(period: str, coverage_start: date | None) -> AuditPeriod:
    return AuditPeriod.of(period, CHICAGO, COVERAGE_END, coverage_start)


def _judged(measure_id: str, period: str, coverage_start: date | None):
    measure = Catalogue.load().measure(measure_id)
    return computability(look_back(measure.base), _period(period, coverage_start))


def test_ln07_in_march_needs_april_of_the_year_before() -> None:
    judged = _judged("LN-07", "2026-03", date(2025, 10, 1))
    assert judged.status == NOT_COMPUTABLE
    assert judged.reason == (
        "not computable for this period: needs data from 2025-04-01, the extract starts 2025-10-01"
    )
    assert _judged("LN-07", "2026-09", date(2025, 10, 1)).status == COMPUTED
    assert _judged("LN-07", "2026-08", date(2025, 10, 1)).reason == (
        "not computable for this period: needs data from 2025-09-01, the extract starts 2025-10-01"
    )


@pytest.mark.parametrize(
    ("measure_id", "needs"),
    [
        ("LN-01", "2026-01-30"),
        ("LN-04", "2025-09-02"),
        ("LN-06", "2025-03-01"),
        ("LN-13", "2025-12-01"),
        ("LN-14", "2025-01-30"),
    ],
)
def test_the_first_day_needed_is_the_month_start_less_the_look_back(measure_id, needs) -> None:
    # 2026-03-01 00:00 CST less whole days of elapsed time: the same clock time (no DST between).
    first = date.fromisoformat(needs)
    assert _judged(measure_id, "2026-03", first) == _judged(measure_id, "2026-03", date(2020, 1, 1))
    later = _judged(measure_id, "2026-03", date(first.year, first.month, first.day + 1))
    assert later.reason == (
        f"not computable for this period: needs data from {needs}, the extract starts "
        f"{first.year:04d}-{first.month:02d}-{first.day + 1:02d}"
    )


def test_elapsed_days_across_a_clock_change_land_on_the_day_before() -> None:
    # 2026-04-01 00:00 CDT less 30 x 24 h is 2026-03-01 23:00 CST (the clocks went forward on
    # 8 March): that day's data is needed, so an extract starting on 2 March is one day short.
    assert _judged("LN-01", "2026-04", date(2026, 3, 1)).status == COMPUTED
    assert _judged("LN-01", "2026-04", date(2026, 3, 2)).reason == (
        "not computable for this period: needs data from 2026-03-01, the extract starts 2026-03-02"
    )


def test_unknown_coverage_start_judges_and_says_the_look_back_was_not_checked() -> None:
    judged = _judged("LN-08", "2026-03", None)
    assert judged.status == COMPUTED
    assert judged.reason == (
        "look-back not checked: needs data from 2025-03-01, the extract's manifest gives no"
        " coverage_start"
    )
    # A measure whose cases need nothing before the month has nothing to check.
    assert _judged("LN-10", "2026-03", None).reason is None


def test_episode_chains_add_to_a_look_back_over_other_rows_only(tmp_path) -> None:
    """LN-14 with its no-earlier-ABI look-back shortened to 100 days: 100 + 30. LN-08 with its
    none-of windows shortened to 20 days (less than an episode): an earlier candidate 25 days
    before is no longer ruled out, so the chain adds its 30 days: 20 + 30."""
    measure = Catalogue.load().measure("LN-14")
    text = measure.path.read_text().replace("start: -365d", "start: -100d")
    folder = tmp_path / "measures"
    folder.mkdir()
    (folder / "LN-14.yaml").write_text(text)
    ln08 = (
        Catalogue.load()
        .measure("LN-08")
        .path.read_text()
        .replace("start: -365d, before", "start: -20d, before")
    )
    (folder / "LN-08.yaml").write_text(ln08)
    value_sets = set(Catalogue.load().value_sets)
    shortened = {m.id: m for m in load_measures(value_sets, (folder,))}
    assert look_back(shortened["LN-14"].base).minutes == 130 * DAY
    assert look_back(shortened["LN-08"].base).minutes == 365 * DAY  # its components still do
    without_components = replace(
        shortened["LN-08"].base,
        components=(),
        numerator=replace(shortened["LN-08"].base.numerator, criterion=None),
    )
    assert look_back(without_components).minutes == 50 * DAY


def test_the_first_month_in_which_every_measure_is_computable() -> None:
    months = [f"2024-{m:02d}" for m in range(9, 13)] + [f"2025-{m:02d}" for m in range(1, 13)]
    catalogue = Catalogue.load()
    found = first_computable_month(
        catalogue, "source-2025", months, CHICAGO, date(2024, 9, 1), COVERAGE_END
    )
    assert found == "2025-10"  # LN-14: 2025-10-01 less 395 days is 2024-09-01
    later = first_computable_month(
        catalogue, "source-2025", months, CHICAGO, date(2024, 9, 2), COVERAGE_END
    )
    assert later == "2025-11"
    # Before 2025 no measure has a version in effect: such months are never chosen.
    assert (
        first_computable_month(
            catalogue, "source-2025", months[:4], CHICAGO, date(2020, 1, 1), COVERAGE_END
        )
        is None
    )
