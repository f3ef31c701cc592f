"""The code maps adapters share, as DuckDB tables on the adapter's connection.

- ``local_code_map`` (source_system, source_code, code_system, code): a site's own flowsheet,
  order or observation codes mapped to the contract's concepts (LOCAL finding names, or a
  standard system's code), from the CSV named by ``[sources] code_map`` in chartaudit.toml
  (``flows/settings.py``); empty when none is named. Columns of the CSV: source_system,
  source_code, code_system, code, and any others (a description, a note) ignored. A site adds
  a mapping by editing the file: no code changes.
- ``rxnorm_ingredients`` (rxnorm, ingredient, strength_mg): RxNorm clinical drugs (SCD) to the
  generic ingredient(s) the measures match on (one row per drug and ingredient), and the
  ingredient's strength in mg per unit when it has one,
  from ``maps/rxnorm_ingredients.csv`` (a value-set-like file: one row per drug, a note on
  every code not confirmed against an RxNorm release).
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from chartaudit.schemas.errors import reject

__all__ = ["LOCAL_CODE_MAP", "RXNORM_INGREDIENTS", "RXNORM_MAP_FILE", "load_code_maps"]

LOCAL_CODE_MAP = "local_code_map"
RXNORM_INGREDIENTS = "rxnorm_ingredients"
RXNORM_MAP_FILE = Path(__file__).parent / "maps" / "rxnorm_ingredients.csv"
CODE_MAP_COLUMNS = ("source_system", "source_code", "code_system", "code")
TARGET_SYSTEMS = ("LOCAL", "SNOMEDCT", "ICD10CM", "CPT", "HCPCS", "LOINC")


def load_code_maps(con: duckdb.DuckDBPyConnection, code_map: Path | None) -> None:
    """Create ``local_code_map`` and ``rxnorm_ingredients`` on ``con``."""
    con.execute(
        f"CREATE TEMP TABLE {LOCAL_CODE_MAP} (source_system VARCHAR, source_code VARCHAR, "
        "code_system VARCHAR, code VARCHAR)"
    )
    if code_map is not None:
        _load_local_code_map(con, Path(code_map))
    con.execute(
        f"CREATE TEMP TABLE {RXNORM_INGREDIENTS} AS SELECT trim(rxnorm) AS rxnorm, "
        "lower(trim(ingredient)) AS ingredient, TRY_CAST(strength_mg AS DOUBLE) AS strength_mg "
        "FROM read_csv(?, all_varchar = true, header = true)",
        [str(RXNORM_MAP_FILE)],
    )


def _load_local_code_map(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    if not path.is_file():
        raise reject(f"code map {path} (setting [sources] code_map) does not exist")
    try:
        header = [
            d[0]
            for d in con.sql(
                "SELECT * FROM read_csv(?, all_varchar = true, header = true) LIMIT 0",
                params=[str(path)],
            ).description
        ]
    except duckdb.Error as exc:
        raise reject(f"code map {path} cannot be read as CSV ({exc})") from None
    missing = [c for c in CODE_MAP_COLUMNS if c not in header]
    if missing:
        raise reject(
            f"code map {path} has no column {missing[0]}; its columns are "
            f"{', '.join(CODE_MAP_COLUMNS)} (and any others, ignored)"
        )
    con.execute(
        f"INSERT INTO {LOCAL_CODE_MAP} SELECT DISTINCT trim(source_system), trim(source_code), "
        "upper(trim(code_system)), trim(code) FROM read_csv(?, all_varchar = true, header = true)",
        [str(path)],
    )
    bad = con.sql(
        f"SELECT source_system, source_code, code_system, code FROM {LOCAL_CODE_MAP} "
        f"WHERE code_system IS NULL OR code_system NOT IN ({', '.join(map(repr, TARGET_SYSTEMS))})"
        " OR code IS NULL ORDER BY ALL LIMIT 1"
    ).fetchall()
    if bad:
        system, code, target, concept = bad[0]
        problem = (
            "to no code_system or no code; give both"
            if target is None or concept is None
            else f"to code_system {target!r}, which is not one of {', '.join(TARGET_SYSTEMS)}"
        )
        raise reject(f"code map {path} maps {system} {code} {problem}")
    doubled = con.sql(
        f"SELECT source_system, source_code FROM {LOCAL_CODE_MAP} GROUP BY ALL "
        "HAVING count(*) > 1 LIMIT 1"
    ).fetchall()
    if doubled:
        raise reject(
            f"code map {path} maps {doubled[0][0]} {doubled[0][1]} to more than one concept; "
            "keep one row for it"
        )
