"""Code normalisation shared by the loader and the value sets, so both compare like with like."""

from __future__ import annotations

import re

import polars as pl

# Systems whose codes are case-insensitive and written with or without a dot (E11.42 = E1142).
# Only the dot after the three-character category is dropped: a dot anywhere else (E1.142) is
# kept, so the code fails its well-formedness rule instead of silently becoming E1142.
DOTLESS_UPPER_SYSTEMS = ("ICD10CM",)
_CATEGORY_DOT = r"^([^.]{3})\."
UPPER_SYSTEMS = ("CPT", "HCPCS")
# LOCAL concept names and medication ingredients match in any case.
LOWER_SYSTEMS = ("LOCAL", "INGREDIENT")


def normalise_code(code_system: str, code: str) -> str:
    """The canonical spelling of one code, as stored in the warehouse and in value sets."""
    code = code.strip()
    if code_system in DOTLESS_UPPER_SYSTEMS:
        return re.sub(_CATEGORY_DOT, r"\1", code.upper())
    if code_system in UPPER_SYSTEMS:
        return code.upper()
    if code_system in LOWER_SYSTEMS:
        return code.lower()
    return code


def normalise_code_expr(system: pl.Expr, code: pl.Expr) -> pl.Expr:
    """``normalise_code`` as a polars expression, for whole columns at once."""
    stripped = code.str.strip_chars()
    return (
        pl.when(system.is_in(DOTLESS_UPPER_SYSTEMS))
        .then(stripped.str.to_uppercase().str.replace(_CATEGORY_DOT, "${1}"))
        .when(system.is_in(UPPER_SYSTEMS))
        .then(stripped.str.to_uppercase())
        .when(system.is_in(LOWER_SYSTEMS))
        .then(stripped.str.to_lowercase())
        .otherwise(stripped)
    )


def normalise_ingredient_expr(ingredient: pl.Expr) -> pl.Expr:
    """Ingredients match in any case and spacing: ``Ropinirole`` = ``ropinirole``."""
    return ingredient.str.strip_chars().str.to_lowercase()
