"""Statistical process control for the trend charts: a p-chart of a measure's monthly rates.

``p_chart(months)`` takes one row per month shown (columns ``period``, ``denominator``, ``met``;
in time order) and adds the chart's numbers:

- ``rate`` = met / denominator; a month with denominator 0 or null (no run, or hidden by
  suppression) has no point, no limits, and takes no part in the centre line; runs skip it (a
  run continues across a month without a point, as the points are what is compared);
- ``centre`` p̄ = Σ met / Σ denominator over the months with a point;
- ``lower`` / ``upper`` = p̄ ∓ 3·sqrt(p̄(1 - p̄) / n_i) with n_i the month's denominator, clipped to
  [0, 1] (so they vary with each month's denominator);
- ``beyond``: the point lies strictly outside its limits;
- ``in_run``: the point belongs to a run of ``RUN_LENGTH`` (8) or more consecutive points strictly
  on one side of the centre line. Every point of such a run is flagged, from the first, because
  the run as a whole is the signal; a point on the centre line ends a run (and starts none).

Fewer than ``MIN_POINTS`` (2) months with a point give no centre line and no limits: a centre
drawn through one point would be that point. The months are a handful (at most 24) of rows, so
this is polars expressions over the whole frame, no loop.
"""

from __future__ import annotations

import polars as pl

SIGMAS = 3
RUN_LENGTH = 8
MIN_POINTS = 2

CHART_COLUMNS = ("rate", "centre", "lower", "upper", "beyond", "in_run", "run_side", "run_length")


def p_chart(months: pl.DataFrame) -> pl.DataFrame:
    """``months`` with the p-chart columns added (see the module's docstring)."""
    frame = months.with_columns(
        has_point=pl.col("denominator").fill_null(0) > 0,
    ).with_columns(
        rate=pl.when("has_point").then(pl.col("met") / pl.col("denominator")),
    )
    points = frame.filter("has_point")
    enough = points.height >= MIN_POINTS
    total = points["denominator"].sum()
    centre = points["met"].sum() / total if enough and total else None
    frame = frame.with_columns(
        centre=pl.when("has_point").then(pl.lit(centre, dtype=pl.Float64)),
    )
    sigma = (pl.col("centre") * (1 - pl.col("centre")) / pl.col("denominator")).sqrt()
    frame = frame.with_columns(
        lower=(pl.col("centre") - SIGMAS * sigma).clip(0.0, 1.0),
        upper=(pl.col("centre") + SIGMAS * sigma).clip(0.0, 1.0),
    ).with_columns(
        beyond=((pl.col("rate") > pl.col("upper")) | (pl.col("rate") < pl.col("lower"))).fill_null(
            False
        )
    )
    return (
        frame.join(_runs(frame), on="period", how="left", maintain_order="left")
        .with_columns(
            in_run=pl.col("in_run").fill_null(False),
        )
        .drop("has_point")
    )


def _runs(frame: pl.DataFrame) -> pl.DataFrame:
    """Per point: the side of the centre it lies on (1 above, -1 below, 0 on it), the length of
    the run of same-side consecutive points it belongs to, and whether that run is a signal."""
    points = frame.filter(pl.col("rate").is_not_null() & pl.col("centre").is_not_null())
    side = (pl.col("rate") - pl.col("centre")).sign().cast(pl.Int8)
    return (
        points.select("period", run_side=side)
        .with_columns(
            run_id=(pl.col("run_side") != pl.col("run_side").shift()).fill_null(True).cum_sum()
        )
        .with_columns(run_length=pl.len().over("run_id").cast(pl.Int64))
        .with_columns(in_run=(pl.col("run_side") != 0) & (pl.col("run_length") >= RUN_LENGTH))
        .drop("run_id")
    )


def signal_words(row: dict) -> str:
    """A month's signals in words, "" for none: 'above the upper limit', 'run of 9 below the
    centre'."""
    words = []
    if row.get("beyond"):
        words.append(
            "above the upper limit" if row["rate"] > row["upper"] else "below the lower limit"
        )
    if row.get("in_run"):
        where = "above" if row["run_side"] > 0 else "below"
        words.append(f"run of {row['run_length']} {where} the centre")
    return "; ".join(words)
