"""De-identification guards: direct-identifier column names and identifier-looking values.

The pipeline accepts de-identified extracts only (extract contract, "De-identification"):

* a column whose *name* marks a direct identifier rejects the whole extract (``layout.py``);
* a string *value* that looks like an SSN, a phone number, an e-mail address or a person's name
  with a cue (an honorific, ``Dr. Roe``, or a label, ``name: Roe``) quarantines its row
  (``validation.py``), and the value itself is never written anywhere: quarantine shows a
  placeholder such as ``<redacted ssn-like value>`` instead;
* a quarantined value of any rule that is shaped like a bare name (two to four capitalised
  words, ``Jane Roe``) is masked too (``mask_quarantine_value``): a faulty value is only shown,
  so masking a harmless one (``Home Visit``) costs little, while quarantining every loaded row
  with two capitalised words would lose ``Hospital Medicine`` and ``Not Detected``.

Column names are matched on tokens, not substrings: the name is split at camelCase boundaries
and at every non-alphanumeric character and lower-cased (``PatientName`` -> ``patient``,
``name``), so ``department``, ``site_id``, ``clinician_id`` and ``birth_year`` pass while
``first_name``, ``DateOfBirth`` and ``home_zip`` do not.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import polars as pl

# --- column names -------------------------------------------------------------------------------
#
# HIPAA-style direct identifiers (45 CFR 164.514(b)(2)) that plausibly appear as EHR export
# columns. Each entry is (what it marks, token runs). A column is a direct identifier when its
# token list contains one of the runs contiguously, e.g. ("first", "name") matches
# ``patient_first_name``. Single glued tokens cover exports that do not separate words
# (``firstname``, ``dateofbirth``). Ordinary words such as ``city``, ``department``, ``site``,
# ``birth_year`` or ``site_name`` are deliberately NOT listed: they are not direct identifiers.
DIRECT_IDENTIFIER_TOKEN_RUNS: tuple[tuple[str, tuple[tuple[str, ...], ...]], ...] = (
    (
        "person name",
        (
            ("patient", "name"),
            ("pt", "name"),
            ("first", "name"),
            ("last", "name"),
            ("full", "name"),
            ("given", "name"),
            ("family", "name"),
            ("middle", "name"),
            ("maiden", "name"),
            ("name", "first"),
            ("name", "last"),
            ("surname",),
            ("forename",),
            ("patientname",),
            ("firstname",),
            ("lastname",),
            ("fullname",),
            ("givenname",),
            ("familyname",),
            ("middlename",),
            ("maidenname",),
        ),
    ),
    (
        "address",
        (
            ("address",),
            ("addr",),
            ("street",),
            ("zip",),
            ("zipcode",),
            ("postcode",),
            ("postal", "code"),
            ("postalcode",),
        ),
    ),
    ("phone number", (("phone",), ("telephone",), ("phonenumber",), ("fax",))),
    ("e-mail address", (("email",), ("e", "mail"), ("emailaddress",))),
    ("social security number", (("ssn",), ("social", "security"), ("socialsecurity",))),
    (
        "medical record number",
        (("mrn",), ("medical", "record"), ("medicalrecord",), ("medicalrecordnumber",)),
    ),
    (
        "full birth date",
        (
            ("birth", "date"),
            ("birth", "dt"),
            ("date", "of", "birth"),
            ("dob",),
            ("birthdate",),
            ("dateofbirth",),
        ),
    ),
)

# Names that are identifiers only on their own: a bare ``name`` column is a person's name, while
# ``site_name`` or ``drug_name`` are not.
BARE_IDENTIFIER_NAMES: dict[tuple[str, ...], str] = {("name",): "person name"}

_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_NON_ALNUM = re.compile(r"[^a-z0-9]+")


def name_tokens(column_name: str) -> tuple[str, ...]:
    """``"PatientFirst-Name"`` -> ``("patient", "first", "name")``."""
    spaced = _CAMEL_BOUNDARY.sub("_", column_name.strip())
    return tuple(t for t in _NON_ALNUM.split(spaced.lower()) if t)


def _contains_run(tokens: tuple[str, ...], run: tuple[str, ...]) -> bool:
    n = len(run)
    return any(tokens[i : i + n] == run for i in range(len(tokens) - n + 1))


def identifier_kind(column_name: str) -> str | None:
    """What direct identifier a column name marks (``"person name"``, ...), or None."""
    tokens = name_tokens(column_name)
    if tokens in BARE_IDENTIFIER_NAMES:
        return BARE_IDENTIFIER_NAMES[tokens]
    for kind, runs in DIRECT_IDENTIFIER_TOKEN_RUNS:
        if any(_contains_run(tokens, run) for run in runs):
            return kind
    return None


def identifier_columns(column_names: Iterable[str]) -> list[tuple[str, str]]:
    """(column, kind) for every column name that marks a direct identifier, in input order."""
    found = []
    for name in column_names:
        kind = identifier_kind(name)
        if kind is not None:
            found.append((name, kind))
    return found


# --- values -------------------------------------------------------------------------------------
#
# Rust-regex patterns (polars) for free-text values that look like direct identifiers. They are
# searched anywhere in a string. Phone numbers need separators so that bare digit codes (SNOMED
# CT ids, RxNorm codes, pseudonymous ids) never match; LOINC codes (``2345-7``) and ISO dates do
# not match either. A name is recognised only by a cue: an honorific written as one (``Dr``,
# ``Mrs.``, then a capitalised word) or a name label (``name:``, ``surname=``). A bare ``Jane
# Roe`` is not: without a dictionary or a language model it cannot be told from ``Hospital
# Medicine`` or ``Not Detected`` (docs/decisions.md, "Names in free text").
IDENTIFIER_VALUE_PATTERNS: tuple[tuple[str, str], ...] = (
    ("ssn", r"\b\d{3}-\d{2}-\d{4}\b"),
    (
        "phone",
        r"(?:\+\d{1,3}[ .-]?)?(?:\(\d{3}\)[ .-]?|\b\d{3}[ .-])\d{3}[ .-]\d{4}\b",
    ),
    ("email", r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"),
    (
        "name",
        r"\b(?:Mr|Mrs|Ms|Mx|Miss|Dr|Prof)\.?\s+\p{Lu}\p{Ll}+"
        r"|(?i:\b(?:sur|first|last|full|given|family|maiden|middle|patient|pt)?\s?name)"
        r"\s*[:=]\s*\p{L}",
    ),
)

# A whole value shaped like a bare name: two to four capitalised words. Masked in quarantine only.
NAME_SHAPED_VALUE = r"^\s*\p{Lu}[\p{L}'-]*(?:\s+\p{Lu}[\p{L}'-]*){1,3}\s*$"


def redacted_placeholder(kind: str) -> str:
    """What quarantine shows instead of an identifier-looking value."""
    return f"<redacted {kind}-like value>"


def identifier_value_kind(value: pl.Expr) -> pl.Expr:
    """String expression: "ssn" / "phone" / "email" / "name" when the value looks like one."""
    kind: pl.Expr = pl.lit(None, dtype=pl.String)
    # Build from the last pattern to the first so that the first matching pattern wins.
    for name, pattern in reversed(IDENTIFIER_VALUE_PATTERNS):
        kind = pl.when(value.str.contains(pattern)).then(pl.lit(name)).otherwise(kind)
    return kind


def identifier_placeholder(value: pl.Expr) -> pl.Expr:
    """``redacted_placeholder(kind)`` where the value looks like an identifier, else null."""
    return pl.concat_str(pl.lit("<redacted "), identifier_value_kind(value), pl.lit("-like value>"))


def mask_identifier_values(value: pl.Expr) -> pl.Expr:
    """The value, or its placeholder when it looks like an identifier (for stored text)."""
    return pl.coalesce(identifier_placeholder(value), value)


def mask_quarantine_value(value: pl.Expr) -> pl.Expr:
    """What quarantine stores of a faulty value: identifier-like values and values shaped like a
    bare name (``Jane Roe``) become placeholders; anything else is kept for the data manager."""
    name_shaped = pl.when(value.str.contains(NAME_SHAPED_VALUE)).then(
        pl.lit(redacted_placeholder("name"))
    )
    return pl.coalesce(identifier_placeholder(value), name_shaped, value)


def masked_shape(value: pl.Expr) -> pl.Expr:
    """A value with every letter shown as ``x`` and every digit as ``9`` (``999-99-9999``): what
    a scan may print to show what it found without printing it."""
    return value.str.replace_all(r"\p{L}", "x").str.replace_all(r"\p{N}", "9")
