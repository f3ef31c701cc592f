"""Timestamp text parsing and time-zone localisation, as polars expressions.

Timestamps: ``YYYY-MM-DD HH:MM[:SS[.fff]]`` with a space or ``T``, optionally followed by a UTC
offset (``Z``, ``+02:00``, ``-0500``, ``+02``). A value with an offset is that instant; a naive
value is local time in ``manifest.timezone`` and is converted to UTC (``localise``).

Parsing a text column ``name`` takes two stages of helper columns, each computed once (an
expression used several times in one select is evaluated several times): ``timestamp_parts``,
then ``wall_time_and_offset``, which adds ``naive_column(name)`` and ``offset_column(name)``.
"""

from __future__ import annotations

import polars as pl

__all__ = [
    "localise",
    "naive_column",
    "offset_column",
    "timestamp_parts",
    "wall_time_and_offset",
]

# date, hour, minute, second, fraction, Z, offset sign, offset hours, offset minutes
_TIMESTAMP_TEXT = (
    r"^([0-9]{4}-[0-9]{2}-[0-9]{2})[T ]([01][0-9]|2[0-3]):([0-5][0-9])"
    r"(?::([0-5][0-9])(?:[.,]([0-9]{1,9}))?)?"
    r" ?(?:([Zz])|([+-])([01][0-9]|2[0-3])(?::?([0-5][0-9]))?)?$"
)


# Names of the helper columns of a timestamp given as text.
def _parts(name: str) -> str:
    return f"__parts_{name}"


def naive_column(name: str) -> str:
    """The helper column holding the naive wall time of text column ``name``."""
    return f"__naive_{name}"


def offset_column(name: str) -> str:
    """The helper column holding the UTC offset in minutes (null: none given) of ``name``."""
    return f"__offset_{name}"


def timestamp_parts(name: str) -> pl.Expr:
    """Stage 1: the regex groups of text column ``name`` (null struct fields: no match)."""
    return pl.col(name).str.extract_groups(_TIMESTAMP_TEXT).alias(_parts(name))


def wall_time_and_offset(name: str) -> list[pl.Expr]:
    """Stage 2: the naive wall time and the UTC offset in minutes (null: none) of the text."""
    parts = pl.col(_parts(name))
    date, hour, minute, second, fraction, zulu, sign, off_h, off_m = (
        parts.struct.field(str(i)) for i in range(1, 10)
    )
    wall = pl.concat_str(
        date,
        pl.lit(" "),
        hour,
        pl.lit(":"),
        minute,
        pl.lit(":"),
        second.fill_null("00"),
        pl.when(fraction.is_not_null()).then(pl.lit(".") + fraction).otherwise(pl.lit("")),
    )
    # strict=False: an impossible calendar date (2026-02-30) becomes null -> unparseable
    naive = wall.str.strptime(pl.Datetime("us"), "%Y-%m-%d %H:%M:%S%.f", strict=False)
    offset_minutes = (
        pl.when(zulu.is_not_null())
        .then(pl.lit(0, dtype=pl.Int64))
        .when(sign.is_not_null())
        .then(
            pl.when(sign == "-").then(-1).otherwise(1)
            * (off_h.cast(pl.Int64) * 60 + off_m.cast(pl.Int64).fill_null(0))
        )
    )
    return [naive.alias(naive_column(name)), offset_minutes.alias(offset_column(name))]


def localise(naive: pl.Expr, zone: str) -> pl.Expr:
    """Naive local wall time in ``zone`` -> UTC instant.

    A wall time that occurs twice (the repeated hour when clocks go back) takes the EARLIER
    instant, i.e. the first time the clock showed it. A wall time that never occurs (the hour
    skipped when clocks go forward) becomes null, which the caller reports as the row-level
    fault ``timestamp_not_in_timezone``; it is never shifted.
    """
    return naive.dt.replace_time_zone(
        zone, ambiguous="earliest", non_existent="null"
    ).dt.convert_time_zone("UTC")
