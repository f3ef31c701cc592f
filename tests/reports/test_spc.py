"""The p-chart's numbers against a hand computation, and its two signals."""

from __future__ import annotations

import polars as pl
import pytest

from chartaudit.reports.spc import p_chart, signal_words


def _months(denominators: list[int | None], mets: list[int | None]) -> pl.DataFrame:
    periods = [f"2026-{m:02d}" for m in range(1, len(denominators) + 1)]
    return pl.DataFrame(
        {"period": periods, "denominator": denominators, "met": mets},
        schema={"period": pl.String, "denominator": pl.Int64, "met": pl.Int64},
    )


def test_limits_equal_a_hand_computation() -> None:
    # Three months 10/20, 15/30, 40/50: p̄ = 65/100 = 0.65, p̄(1 - p̄) = 0.2275.
    #   n = 20: sqrt(0.2275 / 20) = sqrt(0.011375)   = 0.10665365, x3 = 0.31996094
    #   n = 30: sqrt(0.2275 / 30) = sqrt(0.00758333) = 0.08708234, x3 = 0.26124701
    #   n = 50: sqrt(0.2275 / 50) = sqrt(0.00455)    = 0.06745369, x3 = 0.20236106
    chart = p_chart(_months([20, 30, 50], [10, 15, 40]))
    assert chart["rate"].to_list() == [0.5, 0.5, 0.8]
    assert chart["centre"].to_list() == [0.65, 0.65, 0.65]
    assert chart["lower"].to_list() == pytest.approx([0.33003906, 0.38875299, 0.44763894], abs=1e-8)
    assert chart["upper"].to_list() == pytest.approx([0.96996094, 0.91124701, 0.85236106], abs=1e-8)
    assert chart["beyond"].to_list() == [False, False, False]
    assert chart["in_run"].to_list() == [False, False, False]


def test_limits_are_clipped_to_zero_and_one() -> None:
    # p̄ = 12/20 = 0.6; n = 2: 3 sqrt(0.24 / 2) = 1.03923 -> both limits clip: [0, 1].
    chart = p_chart(_months([2, 18], [2, 10]))
    assert chart["lower"].to_list() == pytest.approx([0.0, 0.6 - 3 * (0.24 / 18) ** 0.5])
    assert chart["upper"][0] == 1.0


def test_a_point_beyond_a_limit() -> None:
    # 4 months of 50/100 and one of 20/100: p̄ = 220/500 = 0.44; n = 100:
    # 3 sqrt(0.44 * 0.56 / 100) = 3 * 0.04963869 = 0.14891608 -> [0.29108392, 0.58891608].
    chart = p_chart(_months([100] * 5, [50] * 4 + [20]))
    assert chart["lower"][4] == pytest.approx(0.29108392, abs=1e-8)
    assert chart["upper"][4] == pytest.approx(0.58891608, abs=1e-8)
    assert chart["beyond"].to_list() == [False] * 4 + [True]
    assert signal_words(chart.row(4, named=True)) == "below the lower limit"
    assert signal_words(chart.row(0, named=True)) == ""


def test_a_run_of_eight_flags_every_point_of_it() -> None:
    # p̄ = (8 * 6 + 3 * 2 + 5) / 120 = 59/120 = 0.4917: months 2-9 (6/10) lie above it, a run of 8;
    # month 1 (5/10) is above too, so the run is 9 long. The two 2/10 months below break it.
    chart = p_chart(_months([10] * 12, [5, 6, 6, 6, 6, 6, 6, 6, 6, 2, 2, 2]))
    assert chart["centre"][0] == pytest.approx(59 / 120)
    assert chart["in_run"].to_list() == [True] * 9 + [False] * 3
    assert chart["run_length"].to_list() == [9] * 9 + [3] * 3
    assert signal_words(chart.row(0, named=True)) == "run of 9 above the centre"


def test_seven_in_a_row_is_no_signal_and_a_point_on_the_centre_ends_a_run() -> None:
    # 7 at 0.7, one at 0.5, 7 at 0.7, 7 at 0.1: p̄ = 110/220 = 0.5, so the one at 0.5 lies on the
    # centre and splits 14 points above into two runs of 7: no signal.
    mets = [7] * 7 + [5] + [7] * 7 + [1] * 7
    chart = p_chart(_months([10] * len(mets), mets))
    assert chart["centre"][0] == 0.5
    assert not chart["in_run"].any()
    assert chart["run_side"][7] == 0


def test_months_without_a_point_are_skipped() -> None:
    # Denominator 0 (no case) and null (no run, or suppressed): no point, no limits; the run of 8
    # above the centre continues across them, and they count nowhere in p̄ = 76/100.
    chart = p_chart(
        _months(
            [10, 0, 10, 10, None, 10, 10, 10, 10, 10, 20], [8, 0, 8, 8, None, 8, 8, 8, 8, 8, 12]
        )
    )
    assert chart["centre"][0] == pytest.approx(76 / 100)
    assert chart["rate"][1] is None and chart["lower"][1] is None and chart["centre"][4] is None
    assert chart["in_run"].to_list() == [True, False, True, True, False] + [True] * 5 + [False]


def test_one_month_with_cases_has_no_limits() -> None:
    chart = p_chart(_months([0, 12], [0, 9]))
    assert chart["rate"].to_list() == [None, 0.75]
    assert chart["centre"].to_list() == [None, None]
    assert chart["upper"].to_list() == [None, None]
    assert chart["beyond"].to_list() == [False, False]
