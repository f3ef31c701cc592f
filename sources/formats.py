"""The extract formats ``--format`` accepts, and how ``auto`` tells them apart by file names.

Detection reads names only (no data): an OMOP CDM folder has PERSON and VISIT_OCCURRENCE
tables, a FHIR Bulk Data export has ``.ndjson`` files, a Synthea CSV export has
``conditions.csv`` and ``observations.csv`` beside ``patients.csv``. Anything else is read as
the contract, whose reader then says precisely which table is missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from chartaudit.schemas.errors import reject

__all__ = ["FORMATS", "Detected", "detect_format", "resolve_format"]

CONTRACT, OMOP, SYNTHEA, FHIR, AUTO = "contract", "omop", "synthea", "fhir", "auto"
FORMATS = (CONTRACT, OMOP, SYNTHEA, FHIR)


@dataclass(frozen=True)
class Detected:
    format: str
    reason: str  # for the run log: what was found, or "given with --format"


def _names(folder: Path) -> dict[str, str]:
    """lower-case file name -> the name as found (OMOP exports write either case)."""
    return {p.name.lower(): p.name for p in folder.iterdir() if p.is_file()}


def _table(names: dict[str, str], table: str) -> str | None:
    for suffix in (".csv", ".parquet"):
        if f"{table}{suffix}" in names:
            return names[f"{table}{suffix}"]
    return None


def detect_format(folder: Path) -> Detected:
    """The folder's format, judged by its file names."""
    names = _names(folder)
    person, visits = _table(names, "person"), _table(names, "visit_occurrence")
    if person and visits:
        return Detected(OMOP, f"OMOP CDM tables {person} and {visits} found")
    ndjson = sorted(original for lower, original in names.items() if lower.endswith(".ndjson"))
    if ndjson:
        shown = ", ".join(ndjson[:3]) + (", ..." if len(ndjson) > 3 else "")
        return Detected(FHIR, f"FHIR NDJSON files found ({shown})")
    synthea = ("patients.csv", "conditions.csv", "observations.csv")
    if all(n in names for n in synthea) and not _table(names, "diagnoses"):
        return Detected(
            SYNTHEA, "Synthea CSV files patients.csv, conditions.csv and observations.csv found"
        )
    return Detected(CONTRACT, "no OMOP, FHIR or Synthea files found: read as the extract contract")


def resolve_format(folder: Path, requested: str) -> Detected:
    """``requested`` as given, or the detected format when it is ``auto``."""
    requested = requested.lower()
    if requested not in (*FORMATS, AUTO):
        raise reject(
            f"--format {requested} is not a format; choose one of {', '.join((*FORMATS, AUTO))}"
        )
    if requested == AUTO:
        return detect_format(folder)
    return Detected(requested, "given with --format")
