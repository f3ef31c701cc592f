"""Value sets: the code lists measures refer to by name, kept as editable CSV files.

Each ``value_sets/<name>.csv`` has columns ``code_system, code, description, note``. A ``code``
is one of:

- an exact code (``G83.4``; ICD-10-CM may be written with or without the dot);
- a prefix ending in ``*`` (``E11*`` = every code that starts with E11);
- an inclusive range ``low..high`` compared on the leading characters (``C00..C96``).

``note`` says why a code is uncertain (``verify: …``); uncertain codes stay in the list so the
audit is reproducible, and the note travels with them.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

from chartaudit.schemas.codes import normalise_code

VALUE_SET_DIR = Path(__file__).parent / "value_sets"
# Letters, digits, _ . - and single inner spaces (ingredient names: "ferrous sulfate").
_SAFE_CODE = re.compile(r"^[A-Za-z0-9_.\-]+(?: [A-Za-z0-9_.\-]+)*$")
COLUMNS = ["code_system", "code", "description", "note"]


class ValueSetError(ValueError):
    """A value-set file breaks its format; the message names file and line."""


@dataclass(frozen=True)
class CodeRule:
    code_system: str
    kind: str  # exact | prefix | range
    low: str
    high: str | None = None
    description: str = ""
    note: str = ""


@dataclass(frozen=True)
class ValueSet:
    name: str
    rules: tuple[CodeRule, ...]

    @property
    def code_systems(self) -> tuple[str, ...]:
        return tuple(sorted({r.code_system for r in self.rules}))

    def matches(self, code_system: str, code: str) -> bool:
        """Python twin of the SQL predicate, for tests and for ``measures show``."""
        code = normalise_code(code_system, code)
        return any(_rule_matches(r, code_system, code) for r in self.rules)


def _rule_matches(rule: CodeRule, code_system: str, code: str) -> bool:
    if rule.code_system != code_system:
        return False
    if rule.kind == "exact":
        return code == rule.low
    if rule.kind == "prefix":
        return code.startswith(rule.low)
    return rule.low <= code[: len(rule.low)] <= rule.high


def _parse_rule(path: Path, line: int, row: dict[str, str]) -> CodeRule:
    system, code = (row.get("code_system") or "").strip(), (row.get("code") or "").strip()
    if not system or not code:
        raise ValueSetError(f"{path}:{line}: code_system and code are required")
    kind, high = "exact", None
    if code.endswith("*"):
        kind, code = "prefix", code[:-1]
    elif ".." in code:
        kind, (code, high) = "range", code.split("..", 1)
        high = normalise_code(system, high)
    for part in (code, high):
        if part is not None and not _SAFE_CODE.match(part):
            raise ValueSetError(f"{path}:{line}: code {part!r} has characters a code cannot have")
    low = normalise_code(system, code)
    if kind == "range" and (len(low) != len(high) or low > high):
        raise ValueSetError(
            f"{path}:{line}: range {code}..{high} needs equal-length bounds, low first"
        )
    note = (row.get("note") or "").strip()
    return CodeRule(system, kind, low, high, (row.get("description") or "").strip(), note)


def read_value_set(path: Path) -> ValueSet:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames != COLUMNS:
            raise ValueSetError(f"{path}: header must be {','.join(COLUMNS)}")
        rules = tuple(_parse_rule(path, n, row) for n, row in enumerate(reader, start=2))
    if not rules:
        raise ValueSetError(f"{path}: the value set has no codes")
    return ValueSet(path.stem, rules)


def load_value_sets(directories: tuple[Path, ...] = (VALUE_SET_DIR,)) -> dict[str, ValueSet]:
    """Every value set of the folders; a name defined twice is an error naming both files."""
    found: dict[str, ValueSet] = {}
    paths: dict[str, Path] = {}
    for directory in directories:
        for path in sorted(directory.glob("*.csv")):
            if path.stem in found:
                raise ValueSetError(
                    f"{path}: value set {path.stem!r} is already defined in {paths[path.stem]};"
                    " give yours another name"
                )
            found[path.stem], paths[path.stem] = read_value_set(path), path
    return found


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def value_set_sql(value_set: ValueSet, system_sql: str, code_sql: str) -> str:
    """A SQL predicate: the (system, code) columns hold a code of the value set.

    Codes are inlined as literals (they are few), so DuckDB filters with IN lists and prefix
    tests instead of joining against a code table.
    """
    by_system: dict[str, list[str]] = {}
    for system in value_set.code_systems:
        rules = [r for r in value_set.rules if r.code_system == system]
        tests = []
        exact = [r.low for r in rules if r.kind == "exact"]
        if exact:
            tests.append(f"{code_sql} IN ({', '.join(_quote(c) for c in exact)})")
        tests += [f"starts_with({code_sql}, {_quote(r.low)})" for r in rules if r.kind == "prefix"]
        tests += [
            f"left({code_sql}, {len(r.low)}) BETWEEN {_quote(r.low)} AND {_quote(r.high)}"
            for r in rules
            if r.kind == "range"
        ]
        by_system[system] = tests
    clauses = [
        f"({system_sql} = {_quote(system)} AND ({' OR '.join(tests)}))"
        for system, tests in by_system.items()
    ]
    return "(" + " OR ".join(clauses) + ")"
