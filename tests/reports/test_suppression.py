"""Small-cell suppression: exact frames in, exact frames out."""

from __future__ import annotations

import polars as pl
from polars.testing import assert_frame_equal

from chartaudit.reports.suppression import (
    SUPPRESSED_TEXT,
    drop_suppressed_cases,
    suppress_summary,
    suppressed_strata,
)

COLUMNS = ("measure_id", "period", "stratum_kind", "stratum", "denominator", "met", "not_met",
           "excluded", "pending", "rate", "ci_low", "ci_high")  # fmt: skip
SCHEMA = dict(zip(COLUMNS, (pl.String,) * 4 + (pl.Int64,) * 5 + (pl.Float64,) * 3, strict=True))


def _row(kind: str, stratum: str | None, den: int, met: int, *, measure: str = "LN-01",
         excluded: int = 1, pending: int = 0) -> tuple:  # fmt: skip
    rate = met / den if den else None
    ci = (rate / 2, (rate + 1) / 2) if den else (None, None)
    return (measure, "2026-10", kind, stratum, den, met, den - met, excluded, pending, rate, *ci)


def _frame(rows: list[tuple]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=SCHEMA, orient="row")


def _hidden(row: tuple) -> tuple:
    return (*row[:4], *(None,) * 8)


def _expected(rows: list[tuple], suppressed: set[int]) -> pl.DataFrame:
    """The rows, those at the indexes in ``suppressed`` hidden, with the flag column."""
    shown = [_hidden(r) if i in suppressed else r for i, r in enumerate(rows)]
    return _frame(shown).with_columns(
        suppressed=pl.Series([i in suppressed for i in range(len(rows))])
    )


def test_suppressed_text():
    assert SUPPRESSED_TEXT(11) == "<11"
    assert SUPPRESSED_TEXT(5) == "<5"


def test_primary_suppression_hides_every_value_of_a_small_stratum():
    rows = [
        _row("all", None, 30, 20),
        _row("site", "A", 20, 15),
        _row("site", "B", 5, 3),  # primary
        _row("site", "C", 5, 2),  # primary: two hidden, so no secondary
        _row("setting", "ed", 30, 20),
    ]
    assert_frame_equal(suppress_summary(_frame(rows), 11), _expected(rows, {2, 3}))


def test_ten_is_suppressed_below_eleven_and_eleven_is_not():
    rows = [
        _row("all", None, 21, 10),
        _row("site", "A", 11, 5),
        _row("site", "B", 10, 5),  # primary
        _row("setting", "ed", 21, 10),
    ]
    # B alone is hidden, so A (the only other non-zero site) goes with it.
    assert_frame_equal(suppress_summary(_frame(rows), 11), _expected(rows, {1, 2}))
    # Below 10, 10 is shown.
    assert_frame_equal(suppress_summary(_frame(rows), 10), _expected(rows, set()))


def test_a_zero_denominator_is_shown():
    rows = [
        _row("all", None, 40, 30),
        _row("site", "A", 20, 15),
        _row("site", "B", 20, 15),
        _row("site", "D", 0, 0, excluded=3, pending=2),  # nothing to protect
        _row("setting", "ed", 40, 30),
    ]
    result = suppress_summary(_frame(rows), 11)
    assert_frame_equal(result, _expected(rows, set()))
    assert result.row(3) == ("LN-01", "2026-10", "site", "D", 0, 0, 0, 3, 2, None, None, None,
                             False)  # fmt: skip


def test_secondary_suppression_hides_the_next_smallest_non_zero_stratum_of_the_kind():
    rows = [
        _row("all", None, 50, 30),
        _row("site", "A", 3, 1),  # primary
        _row("site", "B", 12, 6),  # the next smallest non-zero: secondary
        _row("site", "C", 12, 7),  # as small as B, later by name: shown
        _row("site", "D", 0, 0),  # zero: never the secondary one
        _row("site", "E", 23, 16),
        _row("setting", "ed", 45, 28),  # the only other setting: secondary
        _row("setting", "inpatient", 5, 2),  # primary
        _row("setting", "outpatient", 0, 0),
    ]
    assert_frame_equal(suppress_summary(_frame(rows), 11), _expected(rows, {1, 2, 6, 7}))


def test_secondary_suppression_is_per_measure_and_period():
    rows = [
        _row("all", None, 30, 20),
        _row("site", "A", 4, 2),  # primary
        _row("site", "B", 26, 18),  # secondary
        _row("all", None, 30, 20, measure="LN-04"),
        _row("site", "A", 15, 10, measure="LN-04"),
        _row("site", "B", 15, 10, measure="LN-04"),
    ]
    assert_frame_equal(suppress_summary(_frame(rows), 11), _expected(rows, {1, 2}))


def test_a_small_all_row_is_suppressed_with_all_its_strata():
    rows = [
        _row("all", None, 8, 5),
        _row("site", "A", 5, 3),
        _row("site", "B", 3, 2),
        _row("setting", "ed", 8, 5),
    ]
    result = suppress_summary(_frame(rows), 11)
    assert_frame_equal(result, _expected(rows, {0, 1, 2, 3}))
    assert suppressed_strata(result).rows() == [
        ("LN-01", "2026-10", "all", None),
        ("LN-01", "2026-10", "site", "A"),
        ("LN-01", "2026-10", "site", "B"),
        ("LN-01", "2026-10", "setting", "ed"),
    ]


def test_below_none_changes_nothing():
    rows = [_row("all", None, 3, 1), _row("site", "A", 3, 1)]
    assert_frame_equal(suppress_summary(_frame(rows), None), _expected(rows, set()))


def test_below_one_suppresses_nothing():
    rows = [_row("all", None, 1, 1), _row("site", "A", 1, 1), _row("site", "B", 0, 0)]
    assert_frame_equal(suppress_summary(_frame(rows), 1), _expected(rows, set()))


def test_suppressed_strata_lists_the_flagged_rows_only():
    rows = [
        _row("all", None, 30, 20),
        _row("site", "A", 4, 2),
        _row("site", "B", 26, 18),
        _row("setting", "ed", 30, 20),
    ]
    strata = suppressed_strata(suppress_summary(_frame(rows), 11))
    assert strata.columns == ["measure_id", "period", "stratum_kind", "stratum"]
    assert strata.rows() == [
        ("LN-01", "2026-10", "site", "A"),
        ("LN-01", "2026-10", "site", "B"),
    ]
    assert suppressed_strata(suppress_summary(_frame(rows), None)).height == 0


CASES = pl.DataFrame(
    [
        ("LN-01", "2026-10", "p1", "A", "ed"),
        ("LN-01", "2026-10", "p2", "B", "ed"),
        ("LN-01", "2026-10", "p3", None, "ed"),  # no site recorded
        ("LN-01", "2026-10", "p4", "C", "inpatient"),
        ("LN-01", "2026-10", "p5", "C", None),  # no setting recorded
        ("LN-01", "2026-10", "p9", "unknown", "unknown"),  # a site and setting named so: shown
        ("LN-01", "2026-09", "p6", "B", "ed"),  # another period: B shown there
        ("LN-04", "2026-10", "p7", "B", "ed"),  # another measure
        ("LN-05", "2026-10", "p8", "A", "ed"),  # its `all` row is suppressed
    ],
    schema=["measure_id", "period", "patient_id", "site_id", "setting"],
    orient="row",
)


def test_drop_suppressed_cases_drops_suppressed_sites_settings_and_measures():
    strata = pl.DataFrame(
        [
            ("LN-01", "2026-10", "site", "B"),
            ("LN-01", "2026-10", "site", None),  # the cases with no site recorded
            ("LN-01", "2026-10", "setting", "inpatient"),
            ("LN-01", "2026-10", "setting", None),
            ("LN-05", "2026-10", "all", None),
            ("LN-05", "2026-10", "site", "A"),
        ],
        schema=["measure_id", "period", "stratum_kind", "stratum"],
        orient="row",
    )
    kept = drop_suppressed_cases(CASES, strata)
    assert kept.columns == CASES.columns
    assert kept["patient_id"].to_list() == ["p1", "p9", "p6", "p7"]


def test_a_suppressed_site_named_unknown_keeps_the_cases_with_no_site():
    strata = pl.DataFrame(
        [("LN-01", "2026-10", "site", "unknown"), ("LN-01", "2026-10", "setting", "unknown")],
        schema=["measure_id", "period", "stratum_kind", "stratum"],
        orient="row",
    )
    kept = drop_suppressed_cases(CASES, strata)
    assert kept["patient_id"].to_list() == ["p1", "p2", "p3", "p4", "p5", "p6", "p7", "p8"]


def test_a_site_named_unknown_and_the_unrecorded_sites_are_suppressed_apart():
    rows = [
        _row("all", None, 40, 30),
        _row("site", "A", 24, 20),
        _row("site", "unknown", 12, 8),  # a real site: shown
        _row("site", None, 4, 2),  # no site recorded: primary
        _row("setting", "ed", 40, 30),
    ]
    # The lone primary takes the next smallest, the real `unknown`, with it.
    assert_frame_equal(suppress_summary(_frame(rows), 11), _expected(rows, {2, 3}))
    assert suppressed_strata(suppress_summary(_frame(rows), 11)).rows() == [
        ("LN-01", "2026-10", "site", "unknown"),
        ("LN-01", "2026-10", "site", None),
    ]
    # Below 5 as well, with A as small as `unknown`: the first by name, A, goes with it.
    rows[1] = _row("site", "A", 12, 10)
    assert_frame_equal(suppress_summary(_frame(rows), 5), _expected(rows, {1, 3}))


def test_the_unrecorded_stratum_can_be_the_secondary_one():
    rows = [
        _row("all", None, 40, 30),
        _row("site", "unknown", 4, 2),  # a real site: primary
        _row("site", None, 12, 8),  # no site recorded: the next smallest, secondary
        _row("site", "Z", 24, 20),
        _row("setting", "ed", 40, 30),
    ]
    assert_frame_equal(suppress_summary(_frame(rows), 11), _expected(rows, {1, 2}))


def test_a_named_stratum_goes_before_the_unrecorded_one_of_the_same_size():
    rows = [
        _row("all", None, 40, 30),
        _row("site", None, 12, 8),  # as small as Z, but after every name: shown
        _row("site", "A", 4, 2),  # primary
        _row("site", "Z", 12, 10),  # secondary
        _row("site", "unknown", 12, 10),  # as small, after "Z" by name: shown
        _row("setting", "ed", 40, 30),
    ]
    assert_frame_equal(suppress_summary(_frame(rows), 11), _expected(rows, {2, 3}))


def test_drop_suppressed_cases_with_nothing_suppressed_keeps_every_case():
    rows = [_row("all", None, 3, 1), _row("site", "A", 3, 1)]
    strata = suppressed_strata(suppress_summary(_frame(rows), None))
    assert_frame_equal(drop_suppressed_cases(CASES, strata), CASES)


def test_a_suppressed_all_row_drops_the_measures_cases_end_to_end():
    rows = [
        _row("all", None, 8, 5, measure="LN-05"),
        _row("site", "A", 8, 5, measure="LN-05"),
        _row("all", None, 30, 20, measure="LN-04"),
        _row("site", "B", 30, 20, measure="LN-04"),
    ]
    strata = suppressed_strata(suppress_summary(_frame(rows), 11))
    kept = drop_suppressed_cases(CASES.filter(pl.col("measure_id") != "LN-01"), strata)
    assert kept["patient_id"].to_list() == ["p7"]
