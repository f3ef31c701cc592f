"""The RxNorm clinical drug -> ingredient map (sources/maps/rxnorm_ingredients.csv): every row
names an ingredient as the INGREDIENT value sets spell it, a positive strength (or an empty one
with a note), no (drug, ingredient) twice, the measures' drugs that Synthea emits are all there,
and the drugs said to be confirmed in the public OMOP sample are there with that name."""

from __future__ import annotations

import csv
import io
import re
import zipfile
from pathlib import Path

import duckdb
import pytest

from chartaudit.audits.valuesets import load_value_sets
from chartaudit.sources.code_maps import RXNORM_INGREDIENTS, RXNORM_MAP_FILE, load_code_maps

OMOP_ZIP = (
    Path(__file__).resolve().parents[3]
    / "shared"
    / "datasets"
    / "omop-synthea27nj"
    / "Synthea27Nj_5.4.zip"
)
COLUMNS = ["rxnorm", "description", "ingredient", "ingredient_rxnorm", "strength_mg", "note"]
OMOP_CONFIRMED = "clinical drug name from the OMOP Synthea27Nj CONCEPT table"
# Ingredients no INGREDIENT value set names: acetaminophen (kept so a combination maps whole)
# and metformin (in measures.md's ingredient list, in no value set yet).
OTHER_INGREDIENTS = {"acetaminophen", "metformin"}
# The measures' drugs as Synthea's modules emit them (RxNorm code -> ingredients).
SYNTHEA_DRUGS = {
    "483438": {"pregabalin"},
    "596926": {"duloxetine"},
    "835603": {"tramadol"},
    "310325": {"ferrous sulfate"},
    "860975": {"metformin"},
    "1049683": {"oxycodone"},
    "1049221": {"acetaminophen", "oxycodone"},
    "1049635": {"acetaminophen", "oxycodone"},
    "1049625": {"acetaminophen", "oxycodone"},
    "1049504": {"oxycodone"},
    "1860154": {"oxycodone"},
}


def _rows() -> list[dict[str, str]]:
    with RXNORM_MAP_FILE.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == COLUMNS
        return list(reader)


ROWS = _rows()


def _ingredient_names() -> set[str]:
    return {
        rule.low
        for vs in load_value_sets().values()
        for rule in vs.rules
        if rule.code_system == "INGREDIENT"
    }


def test_every_row_names_an_ingredient_spelled_as_the_value_sets_spell_it():
    known = _ingredient_names() | OTHER_INGREDIENTS
    assert [r["ingredient"] for r in ROWS if r["ingredient"] not in known] == []
    assert all(r["ingredient"] == r["ingredient"].strip().lower() for r in ROWS)
    assert {"gabapentin enacarbil", "ferrous sulfate"} <= known
    assert {r["ingredient"] for r in ROWS} - OTHER_INGREDIENTS <= _ingredient_names()


def test_every_strength_is_a_positive_number_or_empty_with_a_note():
    for row in ROWS:
        if row["strength_mg"] == "":
            assert row["note"], row
        else:
            assert float(row["strength_mg"]) > 0, row


def test_strength_is_the_ingredients_mg_in_the_drug_name():
    mismatched = [
        (r["rxnorm"], r["ingredient"], r["strength_mg"])
        for r in ROWS
        if not re.search(
            rf"{r['ingredient'].split()[0]}[a-z ]* {re.escape(r['strength_mg'])} MG",
            r["description"],
            re.IGNORECASE,
        )
    ]
    assert mismatched == []


def test_no_drug_and_ingredient_pair_twice_and_codes_are_rxnorm_shaped():
    pairs = [(r["rxnorm"], r["ingredient"]) for r in ROWS]
    assert len(pairs) == len(set(pairs))
    assert all(re.fullmatch(r"[0-9]{4,8}", r["rxnorm"]) for r in ROWS)
    assert all(re.fullmatch(r"[0-9]{0,8}", r["ingredient_rxnorm"]) for r in ROWS)
    assert all(r["note"] for r in ROWS if r["ingredient_rxnorm"] == "")


def test_the_measures_drugs_synthea_emits_map_to_their_ingredients():
    mapped: dict[str, set[str]] = {}
    for row in ROWS:
        mapped.setdefault(row["rxnorm"], set()).add(row["ingredient"])
    assert {code: mapped.get(code) for code in SYNTHEA_DRUGS} == SYNTHEA_DRUGS


def test_the_first_eight_rows_are_kept():
    assert [(r["rxnorm"], r["ingredient"], r["strength_mg"]) for r in ROWS[:8]] == [
        ("483438", "pregabalin", "100"),
        ("596926", "duloxetine", "20"),
        ("835603", "tramadol", "50"),
        ("310325", "ferrous sulfate", "325"),
        ("860975", "metformin", "500"),
        ("1049683", "oxycodone", "10"),
        ("1049221", "acetaminophen", "325"),
        ("1049221", "oxycodone", "5"),
    ]


def test_a_contraceptive_pack_with_ferrous_fumarate_placebo_days_is_not_an_iron_supplement():
    # Synthea emits 1359133 (Estrostep Fe): its ferrous fumarate tablets fill the pill-free
    # week, so mapping it would count contraception as iron treatment in LN-12.
    assert [r for r in ROWS if r["rxnorm"] == "1359133"] == []


def test_the_adapters_table_reads_every_row_with_its_strength():
    con = duckdb.connect()
    load_code_maps(con, None)
    got = con.sql(
        f"SELECT count(*), count(strength_mg), min(strength_mg) FROM {RXNORM_INGREDIENTS}"
    ).fetchall()
    assert got == [(len(ROWS), len(ROWS), 2.5)]
    row = con.sql(
        f"SELECT ingredient, strength_mg FROM {RXNORM_INGREDIENTS} WHERE rxnorm = '1049635' "
        "ORDER BY ingredient"
    ).fetchall()
    assert row == [("acetaminophen", 325.0), ("oxycodone", 2.5)]


def test_drugs_said_confirmed_in_the_omop_sample_are_there_with_that_name():
    if not OMOP_ZIP.exists():
        pytest.skip(f"public OMOP sample not found at {OMOP_ZIP} (../shared)")
    with zipfile.ZipFile(OMOP_ZIP) as archive:
        text = archive.read("CONCEPT.csv").decode("utf-8")
    names = {
        row["concept_code"]: row["concept_name"]
        for row in csv.DictReader(io.StringIO(text))
        if row["vocabulary_id"] == "RxNorm"
    }
    claimed = [r for r in ROWS if r["note"].startswith(OMOP_CONFIRMED)]
    assert len({r["rxnorm"] for r in claimed}) == 11
    wrong = [
        (r["rxnorm"], r["description"])
        for r in claimed
        if names.get(r["rxnorm"], "").lower() != r["description"].lower()
    ]
    assert wrong == []
