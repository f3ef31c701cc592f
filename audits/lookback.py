"""How far back a measure's criteria look, derived from its parsed definition (never a table).

A measure judges the cases indexed in the audit month, but its criteria reach before them:
``none_of`` look-backs (LN-08: no neuropathy diagnosis in [t - 365 d, t)), exclusion and
numerator windows that start before the index (LN-06: 365 d; LN-09: 90 d), and the calendar
anchors of patient measures (LN-07: ``lookback_start``, the 12 calendar months ending with the
month). When the extract starts after the earliest instant a month's cases need, the measure
cannot be judged for that month: it would count missing history as absent care.

What counts:

- every leaf's window start before the index (``start``/``after``, in elapsed time) or at an
  anchor (``lookback_start``, ``period_start``); the earliest index instant of a month is its
  first instant (episode measures) or its end (patient measures, judged at the month's end);
- episode chaining (``episodes: 30d``): an event up to 30 d before the index can start the
  episode that the index would join, and whether that earlier event is a candidate takes the
  index conditions' own look-back, so the two add up (LN-14: 365 d + 30 d). They do not when the
  index conditions forbid any earlier candidate within the episode length (LN-08: "none of
  these diagnoses in the prior 365 days" rules out a candidate 30 d before), so the chain
  cannot reach back (docs/decisions.md, "Look-backs");
- criteria with no start bound ("at any time": a history of malignancy, an amputation, the
  patient's first order of a drug, ``episodes: first``) do not make a month not computable:
  they are judged on what the extract holds, and are listed in ``at_any_time``. Rows of the
  index encounter (``scope: index_encounter``/``index_event``, ``in_same_encounter``) are the
  case's own and look back nowhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from chartaudit.audits.measure import Criterion, Definition, Group, IndexSpec, Leaf, leaves
from chartaudit.audits.period import AuditPeriod

if TYPE_CHECKING:  # engine.py imports this module
    from chartaudit.audits.engine import Catalogue

COMPUTED = "computed"
NOT_COMPUTABLE = "not_computable"
# Anchors a window can start at: where each lies for a month (AuditPeriod's attribute).
ANCHOR_INSTANTS = {"lookback_start": "lookback_start", "period_start": "start", "period_end": "end"}
_OWN_ROWS = ("index_encounter", "index_event")


@dataclass(frozen=True)
class LookBack:
    """How far before its earliest index instant a measure's criteria reach: ``minutes`` of
    elapsed time, or back to the month's ``anchors``; ``at_any_time`` names the criteria with
    no start bound (judged on what the extract holds)."""

    minutes: int
    anchors: frozenset[str]
    at_any_time: tuple[str, ...]
    patient_measure: bool  # judged at the month's end, not at instants inside it

    @property
    def days(self) -> float:
        return self.minutes / (24 * 60)

    def earliest_needed(self, period: AuditPeriod) -> datetime:
        """The first instant whose data the month's cases need (UTC)."""
        index = period.end if self.patient_measure else period.start
        instants = [index - timedelta(minutes=self.minutes)]
        instants += [getattr(period, ANCHOR_INSTANTS[a]) for a in self.anchors]
        return min(instants)

    def words(self) -> str:
        """'395 days', '12 calendar months', 'none' — for logs, docs and tests."""
        parts = []
        if "lookback_start" in self.anchors:
            parts.append("the 12 calendar months ending with the audit month")
        if self.minutes:
            days = self.days
            parts.append(f"{days:g} days" if days >= 1 else f"{self.minutes / 60:g} hours")
        return " and ".join(parts) or "none"


def look_back(definition: Definition) -> LookBack:
    """The look-back of one version's populations (see the module's docstring)."""
    index = definition.index
    index_leaves = leaves(index.events) + leaves(index.require)
    other = [
        *(leaf for named in definition.exclusions for leaf in leaves(named.criterion)),
        *leaves(definition.numerator.criterion),
        *(leaf for named in definition.numerator.fails_if for leaf in leaves(named.criterion)),
        *(leaf for named in definition.components for leaf in leaves(named.criterion)),
        *(leaf for named in definition.also_report for leaf in leaves(named.criterion)),
    ]
    index_minutes = max((_minutes(leaf) for leaf in index_leaves), default=0)
    index_minutes += _chain_minutes(index)
    minutes = max([index_minutes, *(_minutes(leaf) for leaf in other)])
    anchors = {a for leaf in index_leaves + other if (a := _start_anchor(leaf)) is not None}
    at_any_time = [_label(leaf) for leaf in index_leaves + other if _at_any_time(leaf, index)]
    if index.trigger != "patient" and index.episodes == "first":
        at_any_time.insert(0, "the patient's first qualifying event (episodes: first)")
    return LookBack(
        minutes=minutes,
        anchors=frozenset(anchors),
        at_any_time=tuple(dict.fromkeys(at_any_time)),  # in file order, once each
        patient_measure=index.trigger == "patient",
    )


def _minutes(leaf: Leaf) -> int:
    """Elapsed minutes the leaf's window starts before the index (0 when it does not)."""
    start = leaf.window.start if leaf.window else None
    if start is None or start.minutes is None or leaf.scope in _OWN_ROWS:
        return 0
    return max(0, -start.minutes)


def _start_anchor(leaf: Leaf) -> str | None:
    start = leaf.window.start if leaf.window else None
    return start.anchor if start is not None and start.anchor in ANCHOR_INSTANTS else None


def _at_any_time(leaf: Leaf, index: IndexSpec) -> bool:
    """A criterion over the patient's whole history: no start bound, or "the earliest row"."""
    if leaf.earliest_per:
        return True
    if leaf.scope in _OWN_ROWS or _is_index_event(leaf, index):
        return False
    return leaf.window is None or leaf.window.start is None


def _is_index_event(leaf: Leaf, index: IndexSpec) -> bool:
    return index.trigger == "event" and any(leaf is e for e in leaves(index.events))


def _label(leaf: Leaf) -> str:
    return leaf.label or leaf.value_set or leaf.table


def _chain_minutes(index: IndexSpec) -> int:
    """How much further back episode chaining reaches (see the module's docstring)."""
    gap = index.episode_minutes
    if index.trigger == "patient" or gap is None:
        return 0
    forbidden = [leaf for leaf in _none_of_leaves(index.require) if _covers(leaf, gap)]
    for group in _candidate_groups(index):
        if group and all(any(_same_rows(c, f) for f in forbidden) for c in group):
            return 0  # no candidate can precede another within the episode length
    return gap


def _candidate_groups(index: IndexSpec) -> list[list[Leaf]]:
    """Groups of leaves one of which every candidate has: the index events (event trigger) and
    each required condition on the index encounter (encounter trigger)."""
    if index.trigger == "event":
        return [leaves(index.events)]
    required = _all_of_children(index.require)
    groups = []
    for child in required:
        group = [child] if isinstance(child, Leaf) else _any_of_leaves(child)
        if group and all(leaf.scope == "index_encounter" for leaf in group):
            groups.append(group)
    return groups


def _all_of_children(criterion: Criterion | None) -> list[Criterion]:
    if isinstance(criterion, Group) and criterion.kind == "all_of":
        return [c for child in criterion.children for c in _all_of_children(child)]
    return [] if criterion is None else [criterion]


def _any_of_leaves(criterion: Criterion) -> list[Leaf]:
    is_any_of = isinstance(criterion, Group) and criterion.kind == "any_of"
    if is_any_of and all(isinstance(child, Leaf) for child in criterion.children):
        return list(criterion.children)
    return []


def _none_of_leaves(criterion: Criterion | None) -> list[Leaf]:
    return [
        child
        for group in _all_of_children(criterion)
        if isinstance(group, Group) and group.kind == "none_of"
        for child in group.children
        if isinstance(child, Leaf)
    ]


def _covers(leaf: Leaf, gap: int) -> bool:
    """The leaf forbids rows from at least ``gap`` minutes before the index up to it."""
    window = leaf.window
    if window is None or window.start is None or window.start.minutes is None:
        return False
    end = window.end
    reaches_index = end is None or (end.minutes is not None and end.minutes >= 0)
    return window.start.minutes <= -gap and reaches_index


def _same_rows(candidate: Leaf, forbidden: Leaf) -> bool:
    return (
        candidate.table == forbidden.table
        and candidate.value_set == forbidden.value_set
        and candidate.where == forbidden.where
        and candidate.compare == forbidden.compare
        and candidate.sql is None
        and forbidden.sql is None
    )


def local_date(instant: datetime, timezone: str) -> date:
    return instant.astimezone(ZoneInfo(timezone)).date()


@dataclass(frozen=True)
class Computability:
    status: str  # computed | not_computable
    reason: str | None  # the sentence the summary, the run log and the report show

    def columns(self) -> dict[str, str | None]:
        """As the `measures` and `measure_summary` columns name them."""
        return {"status": self.status, "status_reason": self.reason}


def computability(lookback: LookBack, period: AuditPeriod) -> Computability:
    """Whether the extract (``period.coverage_start``) reaches back as far as the month's
    cases need. Unknown coverage: judged, with a note that the look-back was not checked."""
    needed = lookback.earliest_needed(period)
    needed_day = local_date(needed, period.timezone)
    if period.coverage_start is None:
        if needed >= period.start:
            return Computability(COMPUTED, None)
        return Computability(
            COMPUTED,
            f"look-back not checked: needs data from {needed_day.isoformat()}, the extract's"
            " manifest gives no coverage_start",
        )
    if needed >= period.coverage_start:
        return Computability(COMPUTED, None)
    starts = local_date(period.coverage_start, period.timezone)
    return Computability(
        NOT_COMPUTABLE,
        f"not computable for this period: needs data from {needed_day.isoformat()}, the"
        f" extract starts {starts.isoformat()}",
    )


def first_computable_month(
    catalogue: Catalogue,
    ruleset: str,
    months: list[str],
    timezone: str,
    coverage_start: date,
    coverage_end: datetime,
) -> str | None:
    """The first of ``months`` (oldest first) in which every measure of the catalogue has a
    version in effect and is computable on an extract starting ``coverage_start``; None when
    there is none. A handful of months by fifteen measures: plain Python, no case data."""
    for month in months:
        period = AuditPeriod.of(month, timezone, coverage_end, coverage_start)
        versions = [(m, m.version_for(ruleset, period.first_day)) for m in catalogue.measures]
        if all(
            v is not None and computability(look_back(m.definition(v)), period).status == COMPUTED
            for m, v in versions
        ):
            return month
    return None
