"""A measure in words, for ``chartaudit measures show``: what a QI lead reads to check that the
file says what the guideline says."""

from __future__ import annotations

from chartaudit.audits.measure import (
    Age,
    Bound,
    Criterion,
    Definition,
    Group,
    Leaf,
    Measure,
    Named,
    Numerator,
    Version,
    Window,
    leaves,
)

_ANCHOR_WORDS = {
    "period_start": "the start of the audit month",
    "period_end": "the end of the audit month",
    "lookback_start": "the start of the 12-month look-back",
}
_GROUP_WORDS = {"any_of": "any of:", "all_of": "all of:", "none_of": "none of:"}
_SCOPE_WORDS = {"index_encounter": "in the index encounter", "index_event": "the index row itself"}
EXCLUSIONS_TITLE = "Excluded when (the first that holds is the reason):"
_EPISODE_WORDS = {
    "first": "the patient's first qualifying event only",
    "each": "every qualifying event is its own case",
}


def duration(minutes: int) -> str:
    minutes = abs(minutes)
    if minutes % (24 * 60) == 0 and minutes >= 48 * 60:
        return f"{minutes // (24 * 60)} d"
    if minutes % 60 == 0:
        return f"{minutes // 60} h"
    return f"{minutes} min"


def bound_words(bound: Bound) -> str:
    if bound.anchor:
        return _ANCHOR_WORDS[bound.anchor]
    if bound.minutes == 0:
        return "the index"
    side = "before" if bound.minutes < 0 else "after"
    return f"{duration(bound.minutes)} {side} the index"


def window_words(window: Window) -> str:
    start, end = window.start, window.end
    if start and end and start == end and start.minutes == 0 and not start.strict:
        return "at the index instant"
    if start and end:
        text = f"from {bound_words(start)} to {bound_words(end)}"
        strict = [name for name, b in (("start", start), ("end", end)) if b.strict]
        return text + (f" ({' and '.join(strict)} excluded)" if strict else "")
    if end:
        return f"{'before' if end.strict else 'at or before'} {bound_words(end)}"
    return f"{'after' if start.strict else 'at or after'} {bound_words(start)}"


def leaf_words(leaf: Leaf) -> str:
    parts = [leaf.table]
    if leaf.value_set:
        parts.append(f"coded in {leaf.value_set}")
    parts += [f"{column} {' or '.join(values)}" for column, values in leaf.where]
    parts += [f"{c.column} {c.op} {c.value:g}" for c in leaf.compare]
    if leaf.scope in _SCOPE_WORDS:
        parts.append(_SCOPE_WORDS[leaf.scope])
    if leaf.window:
        time = leaf.time or "time"
        parts.append(f"{time} {window_words(leaf.window)}")
    if leaf.earliest_per:
        among = f" among {leaf.earliest_among}" if leaf.earliest_among else ""
        parts.append(f"the earliest{among} per {', '.join(leaf.earliest_per)}")
    if leaf.sql:
        parts.append(f"and SQL: {leaf.sql}")
    return f"{leaf.label}: {', '.join(parts)}"


def criterion_lines(criterion: Criterion | None, depth: int = 1) -> list[str]:
    pad = "  " * depth
    if criterion is None:
        return []
    if isinstance(criterion, Age):
        low, high = criterion.minimum, criterion.maximum
        words = (
            f"aged {low} to {high}"
            if low is not None and high is not None
            else (f"aged {low} or over" if low is not None else f"aged {high} or under")
        )
        return [f"{pad}{words} (audit year - birth year)"]
    if isinstance(criterion, Group):
        lines = [f"{pad}{_GROUP_WORDS[criterion.kind]}"]
        for child in criterion.children:
            lines += criterion_lines(child, depth + 1)
        return lines
    lines = [f"{pad}{leaf_words(criterion)}"]
    if criterion.in_same_encounter is not None:
        lines.append(f"{pad}  with, in the same encounter:")
        lines += criterion_lines(criterion.in_same_encounter, depth + 2)
    return lines


def named_lines(title: str, items: tuple[Named, ...], numbered: bool = False) -> list[str]:
    if not items:
        return []
    lines = [title]
    for i, item in enumerate(items, start=1):
        lines.append(f"  {f'{i}. ' if numbered else '- '}{item.name}")
        lines += criterion_lines(item.criterion, 3)
    return lines


def numerator_lines(numerator: Numerator) -> list[str]:
    closes = (
        "the index encounter ends (departure time)"
        if numerator.closes == "index_departure"
        else "its window has closed"
    )
    if numerator.inverted:
        lines = [f"Met when, once {closes}, none of these happened ({numerator.label}):"]
        for i, item in enumerate(numerator.fails_if, start=1):
            lines.append(f"  {i}. not met: {item.name}")
            lines += criterion_lines(item.criterion, 3)
    else:
        lines = [f"Met when: {numerator.label}"]
        lines += criterion_lines(numerator.criterion, 1)
    if _decided_at_index(numerator):
        lines.append("Never pending: everything it looks at is known at the index.")
    else:
        lines.append(f"Pending: not decided yet at coverage end; decided once {closes}.")
    return lines


def _decided_at_index(numerator: Numerator) -> bool:
    """No window reaching past the index, and not kept open by the index encounter."""
    if numerator.closes != "window":
        return False
    criteria = [x.criterion for x in numerator.fails_if] or [numerator.criterion]
    ends = [
        leaf.window.end
        for criterion in criteria
        for leaf in leaves(criterion)
        if leaf.window and leaf.window.end
    ]
    return all(end.anchor is None and end.minutes <= 0 for end in ends)


def index_lines(definition: Definition) -> list[str]:
    index = definition.index
    if index.trigger == "patient":
        lines = ["Cases: each patient, judged at the end of the audit month, who has"]
        return lines + criterion_lines(index.require, 1)
    length = duration(index.episode_minutes) if index.episode_minutes else ""
    episodes = _EPISODE_WORDS.get(
        index.episodes, f"the first qualifying event per patient within {length}"
    )
    if index.trigger == "event":
        lines = [f"Index: an event (its time is the index time); episodes: {episodes}"]
        lines += criterion_lines(index.events, 1)
    else:
        lines = [f"Index: an encounter (index time = arrival); episodes: {episodes}"]
    if index.require is not None:
        lines.append("  which must have:")
        lines += criterion_lines(index.require, 2)
    return lines


def definition_lines(definition: Definition) -> list[str]:
    return [
        *index_lines(definition),
        *named_lines(
            "Excluded when (the first that holds is the reason):", definition.exclusions, True
        ),
        *numerator_lines(definition.numerator),
        *named_lines("Components (each reported as its own rate):", definition.components),
        *named_lines("Also reported:", definition.also_report),
    ]


def version_lines(measure: Measure, version: Version) -> list[str]:
    effective = f"from {version.effective_from}" + (
        f" until {version.effective_to}" if version.effective_to else ""
    )
    head = f"Version {version.version} — rule sets {', '.join(version.rulesets)}, {effective}"
    if not version.overrides:
        return [head + ": judges by the definition above."]
    lines = [head + f": {version.changes}"]
    changed = measure.definition(version)
    for part in version.overrides:
        lines.append(f"  replaces the {part.replace('_', ' ')}:")
        replacement = Definition(index=changed.index, numerator=changed.numerator, **{})
        if part == "index":
            lines += ["    " + line for line in index_lines(replacement)]
        elif part == "numerator":
            lines += ["    " + line for line in numerator_lines(changed.numerator)]
        else:
            title = part.replace("_", " ").capitalize() + ":"
            lines += ["    " + line for line in named_lines(title, getattr(changed, part))]
    return lines


def measure_lines(measure: Measure) -> list[str]:
    lines = [
        f"{measure.id} {measure.title}",
        f"Unit: {measure.unit}; type: {measure.type}; file: {measure.path}",
        f"Source: {measure.source}",
    ]
    if measure.reference_hours is not None:
        lines.append(f"Reference line (reported, not the pass mark): {measure.reference_hours:g} h")
    if measure.target is not None:
        lines.append(f"Target: {100 * measure.target:g} % ({measure.target_source})")
    lines += ["", *definition_lines(measure.base), "", "Rule sets:"]
    for version in measure.versions:
        lines += ["  " + line for line in version_lines(measure, version)]
    return lines
