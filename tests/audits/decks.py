"""Measure test decks: tiny patient timelines with the outcome each must get (eCQM style).

A deck (``decks/LN-01.yaml``) names a measure, an audit month, a time zone and a coverage end,
then lists cases. Each case is one patient: rows per table, written with the contract's column
names, local wall-clock times, and only the columns that matter (the rest take the defaults
below). ``expect`` is the outcome of each of the patient's cases in index-time order (an empty
list: the patient is no case at all); ``hours`` optionally pins hours_to_event.

A deck runs under every rule set in its ``rulesets`` (default: both). Where the rule sets judge a
case differently, ``expect`` is a mapping from rule set to outcome(s), e.g.
``expect: {source-2025: met, evidence-2026: not_met}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb
import yaml

from chartaudit.schemas.codes import normalise_code
from chartaudit.schemas.contract import TABLE_ORDER, TABLES
from chartaudit.schemas.results import canonical_table_ddl

DECK_DIR = Path(__file__).parent / "decks"

DEFAULTS = {
    "patients": {"birth_year": 1960, "sex": "F"},
    "encounters": {"site_id": "SITE-A", "setting": "emergency"},
    "diagnoses": {"code_system": "ICD10CM", "source": "encounter"},
    "findings": {"code_system": "LOCAL", "result": "present"},
    "orders": {"code_system": "CPT", "category": "imaging", "status": "completed"},
    "labs": {},
    "medications": {"status": "active"},
}


RULESETS = ("source-2025", "evidence-2026")


@dataclass
class DeckCase:
    name: str
    patient_id: str
    expect: dict[str, list[str]]  # rule set -> outcomes in index-time order
    hours: list[float | None] | None
    flags: list[list[str]] | None = None


@dataclass
class Deck:
    measure: str
    period: str
    timezone: str
    coverage_end: datetime
    cases: list[DeckCase]
    rows: dict[str, list[dict]]
    rulesets: tuple[str, ...] = RULESETS


def _instant(value, zone: ZoneInfo) -> datetime:
    return datetime.fromisoformat(str(value)).replace(tzinfo=zone)


def _complete(table: str, row: dict, patient_id: str, zone: ZoneInfo, n: int) -> dict:
    row = {**DEFAULTS[table], "patient_id": patient_id, **row}
    if table == "encounters":
        row.setdefault("encounter_id", f"{patient_id}-E{n}")
    if table == "orders":
        row.setdefault("order_id", f"{patient_id}-O{n}")
        row.setdefault("ordered_time", row.get("performed_time"))
    if table == "medications":
        row.setdefault("medication_id", f"{patient_id}-M{n}")
    for column in TABLES[table].columns:
        value = row.get(column.name)
        if value is None:
            continue
        if column.type == "timestamp":
            row[column.name] = _instant(value, zone)
        elif column.name == "code":
            row[column.name] = normalise_code(row["code_system"], str(value))
    return row


def read_deck(path: Path) -> Deck:
    data = yaml.safe_load(path.read_text())
    zone = ZoneInfo(data["timezone"])
    rows: dict[str, list[dict]] = {t: [] for t in TABLE_ORDER}
    rulesets = tuple(data.get("rulesets", RULESETS))
    cases = []
    for i, case in enumerate(data["cases"]):
        patient_id = f"P{i:03d}"
        patient = {"patient_id": patient_id, **DEFAULTS["patients"], **case.get("patient", {})}
        rows["patients"].append(patient)
        for table, table_rows in (case.get("rows") or {}).items():
            for n, row in enumerate(table_rows):
                rows[table].append(_complete(table, row, patient_id, zone, n))
        expect = _expectations(case["expect"], rulesets, case["name"])
        cases.append(
            DeckCase(case["name"], patient_id, expect, case.get("hours"), case.get("flags"))
        )
    return Deck(
        data["measure"],
        data["period"],
        data["timezone"],
        _instant(data["coverage_end"], zone),
        cases,
        rows,
        rulesets,
    )


def _outcomes(value) -> list[str]:
    return list(value) if isinstance(value, list) else [value]


def _expectations(expect, rulesets: tuple[str, ...], name: str) -> dict[str, list[str]]:
    """The outcomes a case must get under each rule set the deck runs."""
    if not isinstance(expect, dict):
        return {ruleset: _outcomes(expect) for ruleset in rulesets}
    if set(expect) != set(rulesets):
        raise ValueError(f"{name}: expect names {sorted(expect)}, the deck runs {list(rulesets)}")
    return {ruleset: _outcomes(expect[ruleset]) for ruleset in rulesets}


def build_database(rows: dict[str, list[dict]]) -> duckdb.DuckDBPyConnection:
    """An in-memory warehouse holding the canonical tables with these rows."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    for table in TABLE_ORDER:
        con.execute(canonical_table_ddl(table))
        columns = TABLES[table].column_names
        for line, row in enumerate(rows.get(table, []), start=2):
            values = [row.get(c) for c in columns] + [line, "deck"]
            placeholders = ", ".join("?" for _ in values)
            con.execute(f"INSERT INTO {table} VALUES ({placeholders})", values)
    return con
