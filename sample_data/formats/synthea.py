"""Write a contract extract as Synthea's CSV export (the v3 exporter's files and columns).

``write_synthea(contract_dir, out_dir)`` writes patients.csv, encounters.csv, conditions.csv,
observations.csv (labs: category laboratory; findings: category exam, a site flowsheet code),
procedures.csv (completed orders), medications.csv (one row per drug record),
organizations.csv and providers.csv, every file with all of its v3 columns in the exporter's
order, plus:

- ``site-code-map.csv``: the site's own codes mapped to the contract's concepts (LOCAL findings
  as flowsheet codes ``FS-<concept>`` and SNOMED CT findings, both in observations.csv, whose
  codes are LOINC by definition; LOCAL orders in the site's order system ``SITE_ORDER_SYSTEM``),
  for ``[sources] code_map``;
- ``manifest.json``: the contract's timezone and coverage, so coverage matches across formats.

Ids become UUID-shaped hashes of the contract's (``synthea_id``); identifier columns (names,
SSN, licence, passport, address, coordinates) get obviously synthetic placeholders, so a test
can prove the adapter never reads them. Times are written as Synthea writes them: UTC instants
(``2026-10-05T13:00:00Z``), condition dates as local dates. What Synthea cannot carry is listed
in docs/sources/synthea.md; values it could not parse are written as given, so the adapter and
the reader quarantine them as they would the contract's.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import duckdb

from chartaudit.sample_data.formats import contract_manifest, open_contract_tables
from chartaudit.schemas.folder import MANIFEST_FILE

__all__ = [
    "FLOWSHEET_PREFIX",
    "HEADERS",
    "SITE_CODE_MAP_FILE",
    "SITE_ORDER_SYSTEM",
    "synthea_id",
    "write_synthea",
]

SITE_CODE_MAP_FILE = "site-code-map.csv"
FLOWSHEET_PREFIX = "FS-"  # the site's flowsheet code of a LOCAL finding concept
SITE_ORDER_SYSTEM = "HOSPITAL-ORDER"  # procedures.csv SYSTEM of the site's own order codes
PAYER = "b1c428d6-4f07-31e0-90f0-68ffa6ff8c76"  # one synthetic payer for every row

# The v3 exporter's header line of each file (CSVConstants), in its order.
HEADER_LINES = {
    "patients.csv": "Id,BIRTHDATE,DEATHDATE,SSN,DRIVERS,PASSPORT,PREFIX,FIRST,MIDDLE,LAST,SUFFIX,"
    "MAIDEN,MARITAL,RACE,ETHNICITY,GENDER,BIRTHPLACE,ADDRESS,CITY,STATE,COUNTY,FIPS,ZIP,LAT,LON,"
    "HEALTHCARE_EXPENSES,HEALTHCARE_COVERAGE,INCOME",
    "encounters.csv": "Id,START,STOP,PATIENT,ORGANIZATION,PROVIDER,PAYER,ENCOUNTERCLASS,CODE,"
    "DESCRIPTION,BASE_ENCOUNTER_COST,TOTAL_CLAIM_COST,PAYER_COVERAGE,REASONCODE,REASONDESCRIPTION",
    "conditions.csv": "START,STOP,PATIENT,ENCOUNTER,SYSTEM,CODE,DESCRIPTION",
    "observations.csv": "DATE,PATIENT,ENCOUNTER,CATEGORY,CODE,DESCRIPTION,VALUE,UNITS,TYPE",
    "procedures.csv": "START,STOP,PATIENT,ENCOUNTER,SYSTEM,CODE,DESCRIPTION,BASE_COST,REASONCODE,"
    "REASONDESCRIPTION",
    "medications.csv": "START,STOP,PATIENT,PAYER,ENCOUNTER,CODE,DESCRIPTION,BASE_COST,"
    "PAYER_COVERAGE,DISPENSES,TOTALCOST,REASONCODE,REASONDESCRIPTION",
    "organizations.csv": "Id,NAME,ADDRESS,CITY,STATE,ZIP,LAT,LON,PHONE,REVENUE,UTILIZATION,NPI",
    "providers.csv": "Id,ORGANIZATION,NAME,GENDER,SPECIALITY,ADDRESS,CITY,STATE,ZIP,LAT,LON,"
    "ENCOUNTERS,PROCEDURES,NPI",
}
HEADERS = {name: tuple(line.split(",")) for name, line in HEADER_LINES.items()}

# Identifier and other unmapped columns: placeholders no one could take for a person's.
PLACEHOLDERS = {
    "SSN": "999-00-0000",
    "DRIVERS": "S99999999",
    "PASSPORT": "X99999999X",
    "PREFIX": "Mx.",
    "FIRST": "Synthetic",
    "MIDDLE": "Test",
    "LAST": "Patient",
    "MAIDEN": "Placeholder",
    "MARITAL": "S",
    "RACE": "other",
    "ETHNICITY": "nonhispanic",
    "BIRTHPLACE": "Testville  Nowhere  US",
    "ADDRESS": "1 Synthetic Way",
    "CITY": "Testville",
    "STATE": "Nowhere",
    "COUNTY": "Test County",
    "FIPS": "00000",
    "ZIP": "00000",
    "LAT": "0.0",
    "LON": "0.0",
    "PHONE": "000-000-0000",
    "NPI": "9999999999",
}
# Contract setting -> ENCOUNTERCLASS, and a SNOMED CT encounter type code for CODE.
ENCOUNTER_CLASSES = {
    "emergency": ("emergency", "50849002", "Emergency room admission (procedure)"),
    "inpatient": ("inpatient", "32485007", "Hospital admission (procedure)"),
    "outpatient": ("ambulatory", "185345009", "Encounter for symptom (procedure)"),
    "urgent_care": ("urgentcare", "702927004", "Urgent care clinic (environment)"),
    "telehealth": ("virtual", "185316007", "Indirect encounter (procedure)"),
    "other": ("home", "439708006", "Home visit (procedure)"),
}
# Contract code system -> SYSTEM as Synthea spells it (LOCAL orders: the site's own system).
SYSTEMS = {
    "SNOMEDCT": "SNOMED-CT",
    "ICD10CM": "ICD-10-CM",
    "CPT": "CPT",
    "HCPCS": "HCPCS",
    "LOINC": "LOINC",
    "LOCAL": SITE_ORDER_SYSTEM,
}


def synthea_id(kind: str, contract_id: str) -> str:
    """The UUID-shaped id the writer gives a contract id of one kind (patient, encounter,
    organization, provider); the same as the SQL macro ``sid``."""
    h = hashlib.md5(f"{kind}:{contract_id}".encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def write_synthea(contract_dir: Path, out_dir: Path) -> None:
    """Write the contract extract in ``contract_dir`` as Synthea CSV files in ``out_dir``."""
    contract_dir, out_dir = Path(contract_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = contract_manifest(contract_dir)
    con = duckdb.connect(config={"memory_limit": "1GB", "temp_directory": str(out_dir / ".spill")})
    try:
        con.execute(f"SET TimeZone = '{_zone(manifest)}'")
        open_contract_tables(con, contract_dir)
        _macros(con, _zone(manifest))
        for name, query in _files().items():
            _copy(con, _select(con, name, query), out_dir / name)
        _copy(con, SITE_CODE_MAP, out_dir / SITE_CODE_MAP_FILE)
    finally:
        con.close()
    keys = ("timezone", "coverage_start", "coverage_end")
    (out_dir / MANIFEST_FILE).write_text(
        json.dumps({k: manifest[k] for k in keys if k in manifest}, indent=2)
    )


def _zone(manifest: dict) -> str:
    return str(manifest.get("timezone", "UTC")).replace("'", "")


def _macros(con: duckdb.DuckDBPyConnection, zone: str) -> None:
    # Contract time text -> Synthea's UTC instant. A naive time is local in the manifest's
    # zone: in the autumn's repeated hour the first instant (as the contract reads it), in the
    # spring's missing hour none, so it is written as given for the reader to quarantine; a
    # value with an offset is converted; an unparseable one is written as given.
    con.execute(f"CREATE MACRO wall_of(i) AS timezone('{zone}', i)")
    con.execute(
        """CREATE MACRO utc_text(i) AS strftime(timezone('UTC', i), '%Y-%m-%dT%H:%M:%SZ')"""
    )
    con.execute(
        """CREATE MACRO naive_instant(t) AS CASE
            WHEN wall_of(TRY_CAST(t AS TIMESTAMPTZ) - INTERVAL 1 HOUR) = TRY_CAST(t AS TIMESTAMP)
            THEN TRY_CAST(t AS TIMESTAMPTZ) - INTERVAL 1 HOUR
            WHEN wall_of(TRY_CAST(t AS TIMESTAMPTZ)) = TRY_CAST(t AS TIMESTAMP)
            THEN TRY_CAST(t AS TIMESTAMPTZ) END"""
    )
    con.execute(
        """CREATE MACRO instant(t) AS CASE
            WHEN t IS NULL THEN NULL
            WHEN regexp_matches(t, '(Z|z|[+-][0-9]{2}(:?[0-9]{2})?)$')
            THEN coalesce(utc_text(TRY_CAST(t AS TIMESTAMPTZ)), t)
            ELSE coalesce(utc_text(naive_instant(t)), t) END"""
    )
    # Condition dates: the local date of the time recorded.
    con.execute(
        """CREATE MACRO local_date(t) AS coalesce(strftime(CASE
            WHEN regexp_matches(t, '(Z|z|[+-][0-9]{2}(:?[0-9]{2})?)$')
            THEN wall_of(TRY_CAST(t AS TIMESTAMPTZ)) ELSE TRY_CAST(t AS TIMESTAMP) END,
            '%Y-%m-%d'), t)"""
    )
    con.execute(
        """CREATE MACRO sid(kind, id) AS CASE WHEN id IS NOT NULL THEN
            substr(md5(kind || ':' || id), 1, 8) || '-' || substr(md5(kind || ':' || id), 9, 4)
            || '-' || substr(md5(kind || ':' || id), 13, 4) || '-'
            || substr(md5(kind || ':' || id), 17, 4) || '-' || substr(md5(kind || ':' || id), 21)
            END"""
    )
    systems = ", ".join(f"('{k}', '{v}')" for k, v in SYSTEMS.items())
    con.execute(f"CREATE TABLE systems AS SELECT * FROM (VALUES {systems}) t(code_system, name)")
    classes = ", ".join(
        f"('{k}', '{c}', '{code}', '{d}')" for k, (c, code, d) in ENCOUNTER_CLASSES.items()
    )
    con.execute(
        f"CREATE TABLE classes AS SELECT * FROM (VALUES {classes}) "
        "t(setting, class, code, description)"
    )
    con.execute(
        "CREATE MACRO synthea_system(s) AS coalesce((SELECT name FROM systems WHERE "
        "systems.code_system = upper(s)), s)"
    )


def _files() -> dict[str, str]:
    """Each file's rows: a query giving the columns the contract fills (others: placeholders)."""
    return {
        "patients.csv": """SELECT sid('patient', patient_id) AS "Id",
                birth_year || '-01-01' AS "BIRTHDATE", death_date AS "DEATHDATE",
                CASE WHEN sex IN ('M', 'F') THEN sex END AS "GENDER",
                '0.0' AS "HEALTHCARE_EXPENSES", '0.0' AS "HEALTHCARE_COVERAGE", '0' AS "INCOME"
            FROM c_patients""",
        "encounters.csv": f"""SELECT sid('encounter', encounter_id) AS "Id",
                instant(arrival_time) AS "START", instant(departure_time) AS "STOP",
                sid('patient', patient_id) AS "PATIENT",
                sid('organization', site_id) AS "ORGANIZATION",
                sid('provider', clinician_id) AS "PROVIDER", '{PAYER}' AS "PAYER",
                coalesce(k.class, e.setting) AS "ENCOUNTERCLASS", k.code AS "CODE",
                k.description AS "DESCRIPTION", '0.00' AS "BASE_ENCOUNTER_COST",
                '0.00' AS "TOTAL_CLAIM_COST", '0.00' AS "PAYER_COVERAGE"
            FROM c_encounters e LEFT JOIN classes k USING (setting)""",
        "conditions.csv": """SELECT local_date(recorded_time) AS "START",
                sid('patient', patient_id) AS "PATIENT",
                sid('encounter', encounter_id) AS "ENCOUNTER",
                synthea_system(code_system) AS "SYSTEM", code AS "CODE",
                code_system || ' ' || code AS "DESCRIPTION"
            FROM c_diagnoses""",
        "observations.csv": f"""SELECT instant(collected_time) AS "DATE",
                sid('patient', patient_id) AS "PATIENT",
                sid('encounter', encounter_id) AS "ENCOUNTER", 'laboratory' AS "CATEGORY",
                loinc AS "CODE", 'LOINC ' || loinc AS "DESCRIPTION",
                coalesce(value_num, value_text) AS "VALUE", unit AS "UNITS",
                CASE WHEN value_num IS NOT NULL THEN 'numeric' ELSE 'text' END AS "TYPE"
            FROM c_labs
            UNION ALL
            SELECT instant(recorded_time), sid('patient', patient_id),
                sid('encounter', encounter_id), 'exam',
                CASE WHEN code_system = 'LOCAL' THEN '{FLOWSHEET_PREFIX}' || code ELSE code END,
                'site flowsheet row ' || code, result, NULL, 'text'
            FROM c_findings""",
        "procedures.csv": """SELECT instant(coalesce(performed_time, ordered_time)) AS "START",
                sid('patient', patient_id) AS "PATIENT",
                sid('encounter', encounter_id) AS "ENCOUNTER",
                synthea_system(code_system) AS "SYSTEM", code AS "CODE",
                code_system || ' ' || code AS "DESCRIPTION", '0.00' AS "BASE_COST"
            FROM c_orders WHERE status = 'completed'""",
        # A combination drug is one record in Synthea (one row per ingredient in the contract).
        "medications.csv": f"""SELECT instant(start_time) AS "START",
                instant(end_time) AS "STOP", sid('patient', patient_id) AS "PATIENT",
                '{PAYER}' AS "PAYER", sid('encounter', encounter_id) AS "ENCOUNTER",
                rxnorm AS "CODE", string_agg(DISTINCT ingredient, ' / ' ORDER BY ingredient)
                AS "DESCRIPTION", '0.00' AS "BASE_COST", '0.00' AS "PAYER_COVERAGE",
                '1' AS "DISPENSES", '0.00' AS "TOTALCOST"
            FROM c_medications
            GROUP BY patient_id, encounter_id, rxnorm, start_time, end_time,
                     CASE WHEN rxnorm IS NULL THEN medication_id END""",
        "organizations.csv": """SELECT DISTINCT sid('organization', site_id) AS "Id",
                'Synthetic Organization' AS "NAME", '0' AS "REVENUE", '0' AS "UTILIZATION"
            FROM c_encounters WHERE site_id IS NOT NULL""",
        "providers.csv": """SELECT DISTINCT sid('provider', clinician_id) AS "Id",
                sid('organization', site_id) AS "ORGANIZATION",
                'Synthetic Clinician' AS "NAME", 'U' AS "GENDER",
                'GENERAL PRACTICE' AS "SPECIALITY", '0' AS "ENCOUNTERS", '0' AS "PROCEDURES"
            FROM c_encounters WHERE clinician_id IS NOT NULL""",
    }


def _select(con: duckdb.DuckDBPyConnection, name: str, query: str) -> str:
    """``query`` as the file's full header: placeholders and blanks for the columns it lacks."""
    given = set(con.sql(f"SELECT * FROM ({query}) LIMIT 0").columns)
    columns = [
        f'q."{c}"'
        if c in given
        else (f"'{PLACEHOLDERS[c]}' AS \"{c}\"" if c in PLACEHOLDERS else f'NULL AS "{c}"')
        for c in HEADERS[name]
    ]
    return f"SELECT {', '.join(columns)} FROM ({query}) q"


def _copy(con: duckdb.DuckDBPyConnection, query: str, path: Path) -> None:
    target = str(path).replace("'", "''")
    con.execute(f"COPY ({query}) TO '{target}' (FORMAT csv, HEADER)")


# The site's own codes -> the contract's concepts: flowsheet rows in observations.csv (codes
# LOINC by the data dictionary, so that is their source_system) and LOCAL order codes.
SITE_CODE_MAP = f"""
SELECT * FROM (
    SELECT DISTINCT 'LOINC' AS source_system,
           CASE WHEN code_system = 'LOCAL' THEN '{FLOWSHEET_PREFIX}' || code ELSE code END
           AS source_code, code_system, code,
           'site flowsheet row recorded in observations.csv' AS description
    FROM c_findings WHERE code_system IN ('LOCAL', 'SNOMEDCT')
    UNION
    SELECT DISTINCT '{SITE_ORDER_SYSTEM}', code, 'LOCAL', code, 'site order code'
    FROM c_orders WHERE code_system = 'LOCAL' AND status = 'completed'
) ORDER BY ALL
"""
