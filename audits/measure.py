"""Measures as data: the YAML measure files and the criteria they are written in.

A measure file (``measures/LN-01.yaml``) holds metadata, rule-set versions and the eCQM
populations:

- ``index``: who is a case, and when. ``trigger: event`` takes ``events`` (rows whose own time
  is the index time), ``trigger: encounter`` takes encounters (index time = arrival) and
  ``trigger: patient`` judges each patient at the end of the audit month. ``require`` adds
  conditions relative to the candidate index (its patient, encounter and time), including
  look-backs (``none_of`` … ``window: {start: -365d, before: 0m}``). ``episodes``: ``30d`` (the
  first qualifying event per patient within 30 days), ``first`` (the patient's earliest only) or
  ``each`` (every qualifying event is a case).
- ``exclusions``: in order; the first that matches is the reason.
- ``numerator``: what care meets the guideline. Either a criterion (met when it holds) or
  ``fails_if``: reasons that make the case not met (overuse and safety measures: met only once the
  window has closed without any of them). ``closes: index_departure`` keeps an encounter-scoped
  numerator pending while the index encounter is still open at coverage end.
- ``components`` (named parts whose rates are reported; ``{component: NAME}`` refers to one) and
  ``also_report`` (facts counted beside the rate; each case lists those that hold in ``flags``).

Optional ``target`` (a rate from 0 to 1, e.g. ``0.9``) with ``target_source`` (words: the seed
statement or named guideline that sets it) draws a target line on the measure's trend chart; one
without the other is an error. Set a target only where a source gives one: no measure of the
catalogue has one today, since neither the seed nor the guidelines it cites state a number.

A version may replace ``index``, ``exclusions``, ``numerator``, ``components`` or
``also_report`` for its rule sets, with a ``changes`` sentence saying why.

Criteria:

- a leaf: ``{table, value_set?, where?, time?, window?, scope?, label?, sql?, earliest_per?,
  in_same_encounter?}`` — "a row of ``table`` exists for the case's patient (``scope:
  index_encounter``: in the index encounter; ``scope: index_event``: the index row itself) whose
  code is in ``value_set``, whose columns hold one of the ``where`` values (or pass a comparison
  such as ``"<= 0.90"``), and whose ``time`` lies in ``window``". ``earliest_per: [patient_id,
  ingredient]`` keeps only rows with no earlier row of the same patient and ingredient with the
  same code and ``where`` values (``earliest_among: SET``: with a code in that value set instead);
  ``in_same_encounter`` is a criterion over the rows of the matched row's encounter;
- ``{min_age: N}`` / ``{max_age: N}`` — age (audit year - birth_year) at least / at most N;
- ``{any_of: [...]}``, ``{all_of: [...]}``, ``{none_of: [...]}`` — groups of criteria;
- ``{component: NAME}`` — the component of that name.

Windows are intervals relative to the index time in real elapsed time (``-24h``, ``12h``,
``14d``, ``30m``) or the anchors ``period_start``, ``period_end`` and ``lookback_start`` (the 12
calendar months ending with the audit month): ``start``/``end`` are closed bounds,
``after``/``before`` open ones. A missing bound is open-ended. ``sql`` is the escape hatch: an
extra predicate over the row ``e`` and the case ``c``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path

MEASURE_DIR = Path(__file__).parent / "measures"
DURATION = re.compile(r"^(-?\d+)([mhd])$")
MINUTES = {"m": 1, "h": 60, "d": 24 * 60}


class MeasureError(ValueError):
    """A measure file breaks its format; the message names the file and the place."""


@dataclass(frozen=True)
class Bound:
    """One end of a window: minutes after the index time, or a named anchor of the period.
    ``strict`` bounds exclude their own instant (``after``/``before``)."""

    minutes: int | None = None
    anchor: str | None = None
    strict: bool = False


@dataclass(frozen=True)
class Window:
    start: Bound | None = None
    end: Bound | None = None


@dataclass(frozen=True)
class Comparison:
    """A numeric test on a column, e.g. ``value_num <= 0.90``."""

    column: str
    op: str
    value: float


@dataclass(frozen=True)
class Leaf:
    table: str
    value_set: str | None = None
    where: tuple[tuple[str, tuple[str, ...]], ...] = ()
    compare: tuple[Comparison, ...] = ()
    time: str | None = None
    window: Window | None = None
    scope: str = "patient"
    label: str = ""
    sql: str | None = None
    earliest_per: tuple[str, ...] = ()
    earliest_among: str | None = None  # the value set "earlier" rows are taken from
    in_same_encounter: Criterion | None = None
    path: str = field(default="", compare=False)  # where in the file, for traces and errors


@dataclass(frozen=True)
class Age:
    minimum: int | None = None
    maximum: int | None = None
    path: str = field(default="", compare=False)


@dataclass(frozen=True)
class Group:
    kind: str  # any_of | all_of | none_of
    children: tuple[Criterion, ...]


Criterion = Leaf | Age | Group


@dataclass(frozen=True)
class Named:
    """A criterion with a name: an exclusion's reason, a component, an also-report fact, or a
    reason a fails-if numerator is not met."""

    name: str
    criterion: Criterion


@dataclass(frozen=True)
class Numerator:
    label: str
    criterion: Criterion | None = None  # met when it holds
    fails_if: tuple[Named, ...] = ()  # or: not met when any holds
    closes: str = "window"

    @property
    def inverted(self) -> bool:
        return bool(self.fails_if)


@dataclass(frozen=True)
class IndexSpec:
    trigger: str
    events: Criterion | None = None  # event trigger: the rows that can be an index event
    require: Criterion | None = None
    episodes: str = "30d"  # <N>d | first | each (episode units); ignored for patient triggers

    @property
    def episode_minutes(self) -> int | None:
        match = DURATION.match(self.episodes)
        return int(match.group(1)) * MINUTES[match.group(2)] if match else None


@dataclass(frozen=True)
class Definition:
    """What one version of a measure judges by: populations, components and facts."""

    index: IndexSpec
    numerator: Numerator
    exclusions: tuple[Named, ...] = ()
    components: tuple[Named, ...] = ()
    also_report: tuple[Named, ...] = ()


@dataclass(frozen=True)
class Version:
    version: str
    rulesets: tuple[str, ...]
    effective_from: date
    effective_to: date | None = None
    changes: str = ""
    overrides: dict = field(default_factory=dict, compare=False)  # part name -> replacement

    def applies(self, ruleset: str, period_start: date) -> bool:
        in_effect = self.effective_from <= period_start and (
            self.effective_to is None or period_start < self.effective_to
        )
        return ruleset in self.rulesets and in_effect


@dataclass(frozen=True)
class Measure:
    id: str
    title: str
    unit: str
    type: str
    source: str
    base: Definition
    versions: tuple[Version, ...]
    reference_hours: float | None = None
    target: float | None = None  # a rate 0..1, drawn on the trend chart
    target_source: str = ""  # the statement or guideline that sets the target
    path: Path | None = field(default=None, compare=False)

    def version_for(self, ruleset: str, period_start: date) -> Version | None:
        return next((v for v in self.versions if v.applies(ruleset, period_start)), None)

    def definition(self, version: Version) -> Definition:
        """The populations this version judges by: the file's, with the version's overrides."""
        return replace(self.base, **version.overrides)

    @property
    def rulesets(self) -> tuple[str, ...]:
        return tuple(sorted({r for v in self.versions for r in v.rulesets}))

    # Shortcuts to the file's own (base) populations.
    @property
    def index(self) -> IndexSpec:
        return self.base.index

    @property
    def numerator(self) -> Numerator:
        return self.base.numerator

    @property
    def exclusions(self) -> tuple[Named, ...]:
        return self.base.exclusions


def leaves(criterion: Criterion | None) -> list[Leaf]:
    """Every leaf of a criterion, in file order."""
    if criterion is None or isinstance(criterion, Age):
        return []
    if isinstance(criterion, Leaf):
        return [criterion]
    return [leaf for child in criterion.children for leaf in leaves(child)]
