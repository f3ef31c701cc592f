"""Synthea's CSV export (the v3 exporter's columns) adapted to the extract contract.

Each Synthea file is scanned once by DuckDB with the column names of its header line and
projection pushdown: only the columns this module maps (``COLUMNS``) are materialised, so a
name, address, SSN, driver's licence, passport, birthplace or coordinate never enters a DuckDB
vector, a table or Python; of BIRTHDATE only the year is kept. The mapping table and its rules
are in docs/sources/synthea.md.
"""

from __future__ import annotations

import csv
from pathlib import Path

from chartaudit.schemas.errors import reject
from chartaudit.sources.code_maps import RXNORM_INGREDIENTS
from chartaudit.sources.output import AdaptedExtract

__all__ = [
    "COLUMNS",
    "OPTIONAL_FILES",
    "REQUIRED_FILES",
    "adapt",
    "read_columns",
    "staging_query",
]

REQUIRED_FILES = (
    "patients.csv",
    "encounters.csv",
    "conditions.csv",
    "observations.csv",
    "procedures.csv",
    "medications.csv",
)
OPTIONAL_FILES = ("providers.csv",)

# The only columns read from each file; every other column of the export is never read.
COLUMNS: dict[str, tuple[str, ...]] = {
    "patients.csv": ("Id", "BIRTHDATE", "DEATHDATE", "GENDER"),
    "encounters.csv": (
        "Id",
        "START",
        "STOP",
        "PATIENT",
        "ORGANIZATION",
        "PROVIDER",
        "ENCOUNTERCLASS",
    ),
    "conditions.csv": ("START", "PATIENT", "ENCOUNTER", "CODE"),
    "observations.csv": (
        "DATE",
        "PATIENT",
        "ENCOUNTER",
        "CATEGORY",
        "CODE",
        "VALUE",
        "UNITS",
        "TYPE",
    ),
    "procedures.csv": ("START", "PATIENT", "ENCOUNTER", "CODE"),
    "medications.csv": ("START", "STOP", "PATIENT", "ENCOUNTER", "CODE", "DESCRIPTION"),
    "providers.csv": ("Id", "ORGANIZATION"),
}
# Read when the file has them: the v3 exporter added SYSTEM to conditions and procedures.
OPTIONAL_COLUMNS: dict[str, tuple[str, ...]] = {
    "conditions.csv": ("SYSTEM",),
    "procedures.csv": ("SYSTEM",),
}
# The system a file's codes are in when it has no SYSTEM column, in Synthea's spelling: the
# site code map's source_system for these codes (observations.csv never names one).
IMPLIED_SYSTEM = {"conditions.csv": "SNOMED-CT", "procedures.csv": "SNOMED-CT"}
OBSERVATION_SYSTEM = "LOINC"

# Spellings of code systems (upper case, letters and digits only) -> the contract's name.
SYSTEM_NAMES = {
    "SNOMEDCT": "SNOMEDCT",
    "SNOMED": "SNOMEDCT",
    "HTTPSNOMEDINFOSCT": "SNOMEDCT",
    "ICD10CM": "ICD10CM",
    "ICD10": "ICD10CM",
    "HTTPHL7ORGFHIRSIDICD10CM": "ICD10CM",
    "CPT": "CPT",
    "CPT4": "CPT",
    "HTTPWWWAMAASSNORGGOCPT": "CPT",
    "HCPCS": "HCPCS",
    "LOINC": "LOINC",
    "HTTPLOINCORG": "LOINC",
    "LOCAL": "LOCAL",
}
SETTINGS = {
    "emergency": "emergency",
    "inpatient": "inpatient",
    "ambulatory": "outpatient",
    "outpatient": "outpatient",
    "wellness": "outpatient",
    "urgentcare": "urgent_care",
    "virtual": "telehealth",
    "telehealth": "telehealth",
}
# CPT sections by code range (AMA): radiology and pathology/laboratory; the rest are procedures.
CPT_SECTIONS = ((70010, 79999, "imaging"), (80047, 89398, "lab"))
UNMAPPED_DRUGS_LISTED = 10


def adapt(source: Path, out: AdaptedExtract) -> None:
    """Write the seven contract tables from the Synthea CSV files in ``source``."""
    source = Path(source)
    for name in REQUIRED_FILES:
        if not (source / name).is_file():
            raise reject(
                f"the Synthea folder has no {name}; export it with Synthea's CSV exporter "
                "(exporter.csv.export = true) beside patients.csv"
            )
    for name in (*REQUIRED_FILES, *OPTIONAL_FILES):
        if (source / name).is_file():
            _stage(out, source / name)
    _lookup_tables(out)
    out.write_table("patients", PATIENTS)
    out.write_table("encounters", _encounters(source))
    out.write_table("diagnoses", _diagnoses(out))
    _observations(out)
    out.write_table("orders", _orders(out))
    _medications(out)
    _coverage(out)


def read_columns(path: Path) -> list[str]:
    """The column names of a Synthea CSV file: its header line, and nothing else of it."""
    with path.open(newline="", encoding="utf-8-sig") as file:
        return next(csv.reader(file), [])


def _stage(out: AdaptedExtract, path: Path) -> None:
    out.con.execute(f"CREATE TEMP TABLE {_staged(path.name)} AS {staging_query(path)}")


def staging_query(path: Path) -> str:
    """origin_file, origin_line and the file's mapped columns (text, blanks as NULL). The scan
    names every header column (DuckDB needs them to split a line) and selects only the mapped
    ones, so DuckDB materialises no other column (its plan's projections say so)."""
    header = read_columns(path)
    wanted = COLUMNS[path.name]
    missing = [c for c in wanted if c not in header]
    if missing:
        raise reject(
            f"{path.name} has no column {missing[0]}, which Synthea's CSV exporter writes; "
            "export the file with its v3 columns"
        )
    optional = OPTIONAL_COLUMNS.get(path.name, ())
    selected = [*wanted, *(c for c in optional if c in header)]
    columns = ", ".join(f"{_text(c)}: 'VARCHAR'" for c in header)
    values = [f"nullif(trim({_name(c)}), '') AS {_name(c)}" for c in selected]
    absent = [f"NULL::VARCHAR AS {_name(c)}" for c in optional if c not in header]
    return (
        f"SELECT {_text(path.name)} AS origin_file, row_number() OVER () + 1 AS origin_line, "
        f"{', '.join([*values, *absent])} "
        f"FROM read_csv({_text(str(path))}, header = true, auto_detect = false, "
        f"delim = ',', quote = '\"', escape = '\"', columns = {{{columns}}})"
    )


def _staged(name: str) -> str:
    return "s_" + name.removesuffix(".csv")


def _name(column: str) -> str:
    return '"' + column.replace('"', '""') + '"'


def _text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _lookup_tables(out: AdaptedExtract) -> None:
    """The small tables the mapping joins: system spellings, encounter classes, and each
    encounter's first row (a repeated Id must not multiply the rows that point at it)."""
    systems = ", ".join(f"({_text(k)}, {_text(v)})" for k, v in SYSTEM_NAMES.items())
    settings = ", ".join(f"({_text(k)}, {_text(v)})" for k, v in SETTINGS.items())
    out.con.execute(
        f"CREATE TEMP TABLE synthea_systems AS SELECT * FROM (VALUES {systems}) "
        "t(spelling, contract_system)"
    )
    out.con.execute(
        f"CREATE TEMP TABLE synthea_settings AS SELECT * FROM (VALUES {settings}) t(class, setting)"
    )
    out.con.execute(
        'CREATE TEMP TABLE first_encounters AS SELECT "Id", arg_min("PATIENT", origin_line) AS '
        '"PATIENT", arg_min("START", origin_line) AS "START" FROM s_encounters GROUP BY "Id"'
    )


def _contract_system(column: str) -> str:
    """SQL: the contract's name of the system spelled in ``column`` (as written if unknown)."""
    return (
        f"coalesce((SELECT s.contract_system FROM synthea_systems s WHERE s.spelling = "
        f"regexp_replace(upper({column}), '[^A-Z0-9]', '', 'g')), {column})"
    )


PATIENTS = """
SELECT "Id" AS patient_id,
       nullif(regexp_extract("BIRTHDATE", '^([0-9]{4})-[0-9]{2}-[0-9]{2}', 1), '') AS birth_year,
       CASE upper("GENDER") WHEN 'M' THEN 'M' WHEN 'F' THEN 'F' ELSE 'U' END AS sex,
       "DEATHDATE" AS death_date, origin_file, origin_line
FROM s_patients
"""


def _encounters(source: Path) -> str:
    # providers.csv names each clinician's organization: the site of an encounter that
    # names its clinician but no organization.
    site = '"ORGANIZATION"'
    if (source / "providers.csv").is_file():
        site = (
            '"ORGANIZATION", (SELECT arg_min(p."ORGANIZATION", p.origin_line) FROM s_providers p '
            'WHERE p."Id" = e."PROVIDER")'
        )
    return f"""
SELECT e."Id" AS encounter_id, e."PATIENT" AS patient_id, coalesce({site}) AS site_id,
       e."PROVIDER" AS clinician_id, coalesce(s.setting, 'other') AS setting,
       e."START" AS arrival_time, e."STOP" AS departure_time, e.origin_file, e.origin_line
FROM s_encounters e LEFT JOIN synthea_settings s ON s.class = lower(e."ENCOUNTERCLASS")
"""


def _diagnoses(out: AdaptedExtract) -> str:
    """Conditions are dated, not timed: one recorded at an encounter that began within a day
    of its date takes the encounter's start; any other, midnight of its date."""
    coded = out.map_codes(
        f"""SELECT coalesce("SYSTEM", '{IMPLIED_SYSTEM["conditions.csv"]}') AS code_system,
               "CODE" AS code, "PATIENT", "ENCOUNTER", "START", origin_file, origin_line
            FROM s_conditions"""
    )
    return f"""
SELECT c."PATIENT" AS patient_id, c."ENCOUNTER" AS encounter_id,
       {_contract_system("c.code_system")} AS code_system, c.code,
       CASE WHEN abs(date_diff('day', TRY_CAST(c."START" AS DATE),
                                TRY_CAST(substr(e."START", 1, 10) AS DATE))) <= 1
            THEN e."START" ELSE c."START" || ' 00:00' END AS recorded_time,
       CASE WHEN c."ENCOUNTER" IS NOT NULL THEN 'encounter' END AS source,
       c.origin_file, c.origin_line
FROM ({coded}) c
LEFT JOIN first_encounters e ON e."Id" = c."ENCOUNTER" AND e."PATIENT" = c."PATIENT"
"""


def _observations(out: AdaptedExtract) -> None:
    """Findings: observations the site code map maps to a LOCAL or SNOMED CT concept.
    Labs: numeric laboratory observations (and numeric ones the map gives a LOINC code).
    Every other observation (vital signs, surveys, text results, ...) is counted and left."""
    coded = out.map_codes(
        f"""SELECT '{OBSERVATION_SYSTEM}' AS code_system, "CODE" AS code, "CODE" AS source_code,
               "DATE", "PATIENT", "ENCOUNTER", "CATEGORY", "VALUE", "UNITS",
               lower("TYPE") = 'numeric' AS numeric, origin_file, origin_line
            FROM s_observations"""
    )
    out.con.execute(
        f"""CREATE TEMP TABLE coded_observations AS
        SELECT *, CASE WHEN code_system IN ('LOCAL', 'SNOMEDCT') THEN 'finding'
                       WHEN code_system = 'LOINC' AND coalesce(numeric, false)
                            AND (lower("CATEGORY") = 'laboratory' OR code <> source_code)
                       THEN 'lab' END AS kind
        FROM ({coded})"""
    )
    out.write_table(
        "findings",
        """SELECT "PATIENT" AS patient_id, "ENCOUNTER" AS encounter_id, code_system, code,
                  CASE WHEN NOT coalesce(numeric, false) THEN lower("VALUE") END AS result,
                  CASE WHEN numeric THEN "VALUE" END AS value_num, "DATE" AS recorded_time,
                  origin_file, origin_line
           FROM coded_observations WHERE kind = 'finding'""",
    )
    out.write_table(
        "labs",
        """SELECT "PATIENT" AS patient_id, "ENCOUNTER" AS encounter_id, code AS loinc,
                  "VALUE" AS value_num, "UNITS" AS unit, "DATE" AS collected_time,
                  origin_file, origin_line
           FROM coded_observations WHERE kind = 'lab'""",
    )
    left = out.con.sql(
        """SELECT coalesce(lower("CATEGORY"), '(no category)')
                  || CASE WHEN lower("CATEGORY") = 'laboratory' THEN ' (not numeric)' ELSE '' END,
                  count(*) AS n
           FROM coded_observations WHERE kind IS NULL GROUP BY 1 ORDER BY n DESC, 1"""
    ).fetchall()
    if left:
        total = sum(n for _, n in left)
        kinds = ", ".join(f"{category} {n}" for category, n in left)
        out.note(
            f"{total} observations.csv rows left out (neither a numeric laboratory result nor "
            f"a finding the site code map names): {kinds}"
        )


def _orders(out: AdaptedExtract) -> str:
    """Procedures are performed, so completed, ordered when performed. Synthea gives them no
    id: order_id is a hash of the row's facts (stable across exports), -2, -3 for repeats."""
    coded = out.map_codes(
        f"""SELECT coalesce("SYSTEM", '{IMPLIED_SYSTEM["procedures.csv"]}') AS code_system,
               "CODE" AS code, "PATIENT", "ENCOUNTER", "START", origin_file, origin_line,
               substr(md5(concat_ws('|', "PATIENT", "ENCOUNTER", "START", "SYSTEM", "CODE")),
                      1, 16) AS digest
            FROM s_procedures"""
    )
    sections = " ".join(
        f"WHEN TRY_CAST(p.code AS INTEGER) BETWEEN {low} AND {high} THEN '{category}'"
        for low, high, category in CPT_SECTIONS
    )
    return f"""
WITH p AS (
    SELECT * REPLACE ({_contract_system("code_system")} AS code_system),
           row_number() OVER (PARTITION BY digest ORDER BY origin_line) AS repeat
    FROM ({coded}))
SELECT p.digest || CASE WHEN p.repeat > 1 THEN '-' || p.repeat ELSE '' END AS order_id,
       p."PATIENT" AS patient_id, p."ENCOUNTER" AS encounter_id, p.code_system, p.code,
       CASE WHEN p.code_system = 'CPT' THEN CASE {sections} ELSE 'procedure' END
            WHEN p.code_system = 'LOINC' THEN 'lab' ELSE 'procedure' END AS category,
       p."START" AS ordered_time, p."START" AS performed_time, 'completed' AS status,
       p.origin_file, p.origin_line
FROM p
"""


def _medications(out: AdaptedExtract) -> None:
    """One row per (medication record, ingredient of its RxNorm drug); a record whose drug the
    RxNorm map does not know is counted in the run log, not written."""
    out.con.execute(
        """CREATE TEMP TABLE synthea_drugs AS
        SELECT *, substr(md5(concat_ws('|', "PATIENT", "ENCOUNTER", "START", "CODE")), 1, 16)
                  AS digest FROM s_medications"""
    )
    out.write_table(
        "medications",
        f"""WITH d AS (
            SELECT *, row_number() OVER (PARTITION BY digest ORDER BY origin_line) AS repeat
            FROM synthea_drugs),
        i AS (
            SELECT d.*, r.ingredient, r.strength_mg,
                   count(*) OVER (PARTITION BY d.origin_line) AS ingredients
            FROM d JOIN {RXNORM_INGREDIENTS} r ON r.rxnorm = d."CODE")
        SELECT i.digest || CASE WHEN i.repeat > 1 THEN '-' || i.repeat ELSE '' END
                 || CASE WHEN i.ingredients > 1 THEN '-' || i.ingredient ELSE '' END
                 AS medication_id,
               i."PATIENT" AS patient_id, i."ENCOUNTER" AS encounter_id, i.ingredient,
               i."CODE" AS rxnorm, i.strength_mg AS dose_mg, i."START" AS start_time,
               i."STOP" AS end_time,
               CASE WHEN i."STOP" IS NULL THEN 'active' ELSE 'completed' END AS status,
               i.origin_file, i.origin_line
        FROM i""",
    )
    _note_unmapped_drugs(out)


def _note_unmapped_drugs(out: AdaptedExtract) -> None:
    unmapped = out.con.sql(
        f"""SELECT coalesce("CODE", '(no code)') AS code,
                   arg_min("DESCRIPTION", origin_line) AS description, count(*) AS n
            FROM synthea_drugs d
            WHERE NOT EXISTS (SELECT 1 FROM {RXNORM_INGREDIENTS} r WHERE r.rxnorm = d."CODE")
            GROUP BY 1 ORDER BY n DESC, code"""
    ).fetchall()
    if not unmapped:
        return
    records = sum(n for *_, n in unmapped)
    shown = [
        f"{code} {description}" if description else code
        for code, description, _ in unmapped[:UNMAPPED_DRUGS_LISTED]
    ]
    more = ", ..." if len(unmapped) > UNMAPPED_DRUGS_LISTED else ""
    out.note(
        f"{records} medication records ({len(unmapped)} codes) have no ingredient in the "
        f"RxNorm map: {', '.join(shown)}{more}"
    )


# Every dated column of the files read: the latest of them is where the export ends.
DATED = (
    ("s_encounters", '"START"'),
    ("s_encounters", '"STOP"'),
    ("s_conditions", '"START"'),
    ("s_observations", '"DATE"'),
    ("s_procedures", '"START"'),
    ("s_medications", '"START"'),
    ("s_medications", '"STOP"'),
    ("s_patients", '"DEATHDATE"'),
)


def _coverage(out: AdaptedExtract) -> None:
    """Synthea writes no export date: coverage runs from the earliest encounter to the latest
    date in the files. Its times are UTC; a manifest.json beside the files overrides both."""
    dates = " UNION ALL ".join(
        f"SELECT max(TRY_CAST(substr({column}, 1, 10) AS DATE)) AS d FROM {table}"
        for table, column in DATED
    )
    start, end = out.con.sql(
        'SELECT (SELECT min(TRY_CAST(substr("START", 1, 10) AS DATE)) FROM s_encounters), '
        f"(SELECT max(d) FROM ({dates}))"
    ).fetchall()[0]
    out.coverage.start, out.coverage.end, out.coverage.timezone = start, end, "UTC"
    out.coverage.how = (
        f"coverage {start} (the earliest encounter) to {end} (the latest date in the Synthea "
        "files, which carry no export date); times are UTC as Synthea writes them"
    )
