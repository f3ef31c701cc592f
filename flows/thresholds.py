"""The data-quality limits of a run (after OHDSI's Data Quality Dashboard): per table, the
largest share and count of quarantined rows and of rows with a warning that a run accepts.

A plain function over the validated extract's counts, called by ``steps.validate_step``: a run
past a limit stops there, before the audit, so nothing is published and the last good run's
results and report stay as they were.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from chartaudit.flows.settings import ThresholdSettings
from chartaudit.schemas.validation import ValidatedExtract

QUARANTINE = "quarantine"
WARNING = "warning"
# How each level is said in the one-line message, for a share and for a count of rows.
_SAID = {QUARANTINE: "of rows quarantined", WARNING: "of rows have data-quality warnings"}
_SAID_ROWS = {QUARANTINE: "quarantined", WARNING: "with data-quality warnings"}


@dataclass(frozen=True)
class Breach:
    """One table past one limit."""

    table: str
    level: str  # quarantine | warning
    rows: int  # quarantined (or warned) rows of the table
    input_rows: int
    rule: str  # the table's most frequent rule at that level
    share_limit: float | None  # the limit passed: a share ...
    rows_limit: int | None  # ... or a count of rows

    @property
    def share(self) -> float:
        return self.rows / self.input_rows if self.input_rows else 0.0

    def message(self) -> str:
        """e.g. 'orders: 7.3% of rows quarantined (mostly "unparseable_timestamp"), over the
        limit of 5.0%'."""
        mostly = f'(mostly "{self.rule}")'
        if self.share_limit is not None:
            return (
                f"{self.table}: {self.share:.1%} {_SAID[self.level]} {mostly}, over the limit of"
                f" {self.share_limit:.1%}"
            )
        return (
            f"{self.table}: {_rows(self.rows)} {_SAID_ROWS[self.level]} {mostly}, over the limit"
            f" of {_rows(self.rows_limit)}"
        )


def _rows(n: int | None) -> str:
    return f"{n} row" if n == 1 else f"{n} rows"


def _most_frequent_rule(findings: pl.DataFrame) -> dict[str, str]:
    """table -> the rule that put aside (or flagged) most of its rows; ties by name."""
    ranked = (
        findings.group_by("table_name", "rule")
        .agg(pl.col("source_line").n_unique().alias("rows"))
        .sort("table_name", "rows", "rule", descending=[False, True, False])
        .unique("table_name", keep="first", maintain_order=True)
    )
    return dict(ranked.select("table_name", "rule").iter_rows())


def breaches(validated: ValidatedExtract, limits: ThresholdSettings) -> list[Breach]:
    """Every limit some table passes: quarantine before warnings, the largest share first."""
    rules = {
        QUARANTINE: _most_frequent_rule(validated.quarantine),
        WARNING: _most_frequent_rule(validated.data_quality),
    }
    found = []
    for row in validated.load_counts.iter_rows(named=True):
        table, input_rows = row["table_name"], row["input_rows"]
        own = limits.for_table(table)
        for level, rows, share_limit, rows_limit in (
            (QUARANTINE, row["quarantined_rows"], own.quarantine_share, own.quarantine_rows),
            (WARNING, row["warned_rows"], own.warning_share, own.warning_rows),
        ):
            share = rows / input_rows if input_rows else 0.0
            rule = rules[level].get(table, "")
            if share_limit is not None and share > share_limit:
                found.append(Breach(table, level, rows, input_rows, rule, share_limit, None))
            elif rows_limit is not None and rows > rows_limit:
                found.append(Breach(table, level, rows, input_rows, rule, None, rows_limit))
    return sorted(found, key=lambda b: (b.level != QUARANTINE, -b.share, b.table))
