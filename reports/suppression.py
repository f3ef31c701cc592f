"""Small-cell suppression (`--suppress-below N`) for everything that leaves the machine.

A count of 3 patients at one site in one month can point at those patients: whoever knows the site
knows who they were. So a stratum (measure x period x stratum_kind x stratum of `measure_summary`)
whose denominator is 1..N-1 is suppressed: its counts, rate and interval are hidden (null in the
exports, "<N" in the page). A denominator of 0 is shown: there is nobody to identify.

Hiding one stratum alone is not enough: the `all` row minus the shown strata of that kind gives it
back by subtraction. So when exactly one stratum of a kind is suppressed while the `all` row is
shown, the next-smallest non-zero stratum of that kind is suppressed too (complementary, or
secondary, suppression); two hidden strata only give their sum.

Case-level outputs (drill-down rows, the exported CSVs, case_results.parquet) list patients one by
one, so they drop the cases of every suppressed site or setting stratum, and every case of a measure
whose `all` row is suppressed.

A site (setting) stratum whose `stratum` is null holds the cases with no site (setting) recorded:
a stratum like any other, matched to the cases whose site_id (setting) is null, and never to a
real site named `unknown`. The `all` row, null too, is told apart by its stratum_kind.

Everything here is set-based polars: no loop over rows.
"""

from __future__ import annotations

import polars as pl

# The values a suppressed stratum hides (those of them present in the frame given).
HIDDEN_COLUMNS = (
    "denominator",
    "met",
    "not_met",
    "excluded",
    "pending",
    "rate",
    "ci_low",
    "ci_high",
)

# One stratum of one measure's summary; `stratum` is null for the `all` row and for the stratum
# of cases with no site (setting) recorded.
STRATUM_KEY = ("measure_id", "period", "stratum_kind", "stratum")
# The strata of one kind that add up to the `all` row.
KIND_KEY = ("measure_id", "period", "stratum_kind")


# Upper case: the name the report and the exports share (docs/decisions.md).
def SUPPRESSED_TEXT(below: int) -> str:
    """What the page prints in place of a hidden value: "<11" for ``below`` 11."""
    return f"<{below}"


def suppress_summary(summary: pl.DataFrame, below: int | None) -> pl.DataFrame:
    """``summary`` (measure_summary rows) with a boolean ``suppressed`` column, the hidden values of
    suppressed strata set to null. ``below`` None leaves every value as it is (nothing suppressed);
    ``below`` 1 suppresses nothing either (no denominator is 1..0)."""
    if below is None:
        return summary.with_columns(suppressed=pl.lit(False))
    primary = pl.col("denominator").is_between(1, below - 1).fill_null(False)
    flagged = summary.with_columns(suppressed=primary | _secondary(primary))
    hidden = [c for c in HIDDEN_COLUMNS if c in flagged.columns]
    return flagged.with_columns(
        pl.when(pl.col("suppressed")).then(None).otherwise(pl.col(c)).alias(c) for c in hidden
    )


def _secondary(primary: pl.Expr) -> pl.Expr:
    """True for the stratum hidden so that a lone suppressed one cannot be found by subtraction:
    in a measure x period x kind (not `all`) with exactly one primary-suppressed stratum, the
    shown stratum with the smallest non-zero denominator (ties: the first by name, the stratum of
    cases with no site or setting recorded after every named one).

    The rule asks this only while the `all` row is shown; no test of it is needed, as a suppressed
    `all` row (denominator 1..N-1) leaves every non-zero stratum under N, so none is left shown."""
    is_stratum = pl.col("stratum_kind") != "all"
    lone = (primary & is_stratum).sum().over(KIND_KEY) == 1
    candidate = is_stratum & ~primary & (pl.col("denominator") > 0)
    smallest = pl.col("denominator") == (
        pl.when(candidate).then(pl.col("denominator")).min().over(KIND_KEY)
    )
    # min() skips nulls: the first named candidate, or none when the only one is not recorded.
    first_name = pl.when(candidate & smallest).then(pl.col("stratum")).min().over(KIND_KEY)
    first = (
        pl.when(first_name.is_null())
        .then(pl.col("stratum").is_null())
        .otherwise(pl.col("stratum") == first_name)
    )
    # `candidate` leaves out the `all` row, whose stratum is null too.
    return (lone & candidate & smallest & first).fill_null(False)


def suppressed_strata(summary: pl.DataFrame) -> pl.DataFrame:
    """The suppressed strata of a ``suppress_summary`` result: measure_id, period, stratum_kind,
    stratum (null for `all`), one row each."""
    return (
        summary.filter(pl.col("suppressed"))
        .select(STRATUM_KEY)
        .cast(dict.fromkeys(STRATUM_KEY, pl.String))
    )


def drop_suppressed_cases(cases: pl.DataFrame, strata: pl.DataFrame) -> pl.DataFrame:
    """``cases`` (with measure_id, period, site_id, setting) without those of a suppressed site or
    setting stratum, nor any of a measure and period whose `all` row is suppressed. A case with no
    site_id (setting) belongs to the null stratum of that kind, as in the summary: the joins match
    null to null."""
    strata = strata.cast(dict.fromkeys(STRATUM_KEY, pl.String))
    keyed = cases.with_columns(
        _site=pl.col("site_id").cast(pl.String),
        _setting=pl.col("setting").cast(pl.String),
        _period=pl.col("period").cast(pl.String),
        _measure=pl.col("measure_id").cast(pl.String),
    )
    for kind, column in (("all", None), ("site", "_site"), ("setting", "_setting")):
        hidden = strata.filter(pl.col("stratum_kind") == kind)
        left_on = ["_measure", "_period"] + ([column] if column else [])
        right_on = ["measure_id", "period"] + (["stratum"] if column else [])
        keyed = keyed.join(hidden, left_on=left_on, right_on=right_on, how="anti", nulls_equal=True)
    return keyed.drop("_site", "_setting", "_period", "_measure")
