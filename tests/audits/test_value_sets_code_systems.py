"""Value sets carry SNOMED CT beside ICD-10-CM, so one measure works on contract, OMOP, Synthea
and FHIR sources: exact membership of the SNOMED codes added, a negative case for every
judgement call, well-formed codes in every set, the uncertain SNOMED codes pinned with their
verify note, and the codes said to be confirmed in the public OMOP sample really there."""

from __future__ import annotations

import csv
import io
import re
import zipfile
from pathlib import Path

import pytest

from chartaudit.audits.valuesets import VALUE_SET_DIR, load_value_sets
from chartaudit.schemas.models import DIAGNOSIS_CODE_PATTERNS, LOINC_PATTERN

VALUE_SETS = load_value_sets()
OMOP_ZIP = (
    Path(__file__).resolve().parents[3]
    / "shared"
    / "datasets"
    / "omop-synthea27nj"
    / "Synthea27Nj_5.4.zip"
)
OMOP_CONFIRMED = "confirmed: OMOP Synthea27Nj CONCEPT table"

# Well-formedness per system: the contract's own patterns where it has them.
CODE_PATTERNS = {
    **DIAGNOSIS_CODE_PATTERNS,
    "LOINC": LOINC_PATTERN,
    "CPT": r"^[0-9]{4}[0-9A-Z]$",
    "HCPCS": r"^[A-Z][0-9]{4}$",
    "LOCAL": r"^[a-z][a-z0-9_]*$",
    "INGREDIENT": r"^[a-z][a-z -]*[a-z]$",
}

# The value sets measures apply to the diagnoses table, and the SNOMED codes each must hold.
SNOMED_MEMBERS = {
    "cauda_equina_dx": {"192970008"},
    "leg_numbness_dx": {"23056005", "309537005", "429783005", "44077006", "91019004"},
    "low_back_pain_dx": {"279039007", "278860009"},
    "pad_dx": {"400047006", "399957001", "792845002", "792844003"},
    "pad_claudication_or_rest_pain_dx": {"792845002", "792844003"},
    "rls_dx": {"32914008", "1052284009"},
    "polyneuropathy": {"302226006"},
    "diabetic_neuropathy": {
        "368581000119106",
        "1511000119107",
        "71791000119104",
        "713706002",
        "713705003",
        "427027005",
        "427571000",
    },
    "parkinsons_dx": {"49049000"},
    "hiv_dx": {"86406008", "62479008", "91947003"},
    "spinal_infection_dx": {"203241002"},
    "transplant_status": {"161665007", "152621000119105", "108631000119101", "153351000119102"},
    "palliative_or_hospice": {"103735009", "385763009"},
}
# Diagnosis value sets deliberately left without SNOMED CT: no concept as narrow as the ICD list
# (laterality, lumbar level) was found.
ICD_ONLY = {
    "lumbar_fracture_dx",
    "amputation_left_leg",
    "amputation_right_leg",
    "bilateral_amputation",
}

# Judgement calls: a code that is NOT in the set, with the reason.
NOT_MEMBERS = [
    ("cauda_equina_dx", "363477002", "malignant neoplasm of cauda equina is a tumour, not CES"),
    ("leg_numbness_dx", "279039007", "low back pain alone is not leg numbness"),
    ("low_back_pain_dx", "23056005", "sciatica is leg numbness/pain, not a low back pain code"),
    (
        "pad_dx",
        "51274000",
        "atherosclerosis of extremity arteries, unspecified: I70.20x is not listed",
    ),
    ("pad_dx", "63491006", "intermittent claudication as a symptom is not a PAD diagnosis"),
    ("pad_claudication_or_rest_pain_dx", "400047006", "PVD without claudication or rest pain"),
    ("rls_dx", "49049000", "Parkinson's disease"),
    ("parkinsons_dx", "722557007", "parkinsonism due to HIV is secondary parkinsonism (G21)"),
    ("polyneuropathy", "368581000119106", "diabetic neuropathy is E11.4x, in diabetic_neuropathy"),
    ("hiv_dx", "31676001", "an HIV antigen test is not an HIV diagnosis"),
    ("malignancy_history", "92691004", "carcinoma in situ of prostate is D07.5, not C00-C96"),
    ("malignancy_history", "126906006", "neoplasm of prostate: behaviour not coded"),
    ("malignancy_history", "162573006", "suspected lung cancer"),
    (
        "lumbar_fracture_dx",
        "15724005",
        "vertebral column fracture: level not coded, S32.0 is lumbar",
    ),
    ("lumbar_fracture_dx", "443165006", "osteoporotic fracture is M80, not S32.0"),
    ("transplant_status", "698306007", "awaiting transplantation of kidney is not transplanted"),
    ("amputation_left_leg", "161622006", "history of lower limb amputation: side not coded"),
    (
        "bilateral_amputation",
        "161622006",
        "history of lower limb amputation: one or both not coded",
    ),
    ("spine_mri", "698354004", "MRI for brain volume"),
    ("diabetes", "15777000", "prediabetes"),
]

# SNOMED CT codes kept with a verify note (secondary source only): pinned so none is dropped or
# "confirmed" silently.
SNOMED_VERIFY = {
    ("cauda_equina_dx", "192970008"),
    ("hiv_dx", "91947003"),
    ("leg_numbness_dx", "23056005"),
    ("leg_numbness_dx", "309537005"),
    ("leg_numbness_dx", "429783005"),
    ("leg_numbness_dx", "44077006"),
    ("leg_numbness_dx", "91019004"),
    ("low_back_pain_dx", "279039007"),
    ("malignancy_history", "363346000"),
    ("pad_claudication_or_rest_pain_dx", "792845002"),
    ("pad_claudication_or_rest_pain_dx", "792844003"),
    ("pad_dx", "400047006"),
    ("pad_dx", "399957001"),
    ("pad_dx", "792845002"),
    ("pad_dx", "792844003"),
    ("palliative_or_hospice", "103735009"),
    ("palliative_or_hospice", "385763009"),
    ("parkinsons_dx", "49049000"),
    ("polyneuropathy", "302226006"),
    ("rls_dx", "32914008"),
    ("rls_dx", "1052284009"),
    ("spinal_infection_dx", "203241002"),
    *{
        (name, code)
        for name in ("diabetes", "diabetic_neuropathy")
        for code in (
            "1511000119107",
            "71791000119104",
            "713706002",
            "713705003",
            "427027005",
            "427571000",
        )
    },
}


def _snomed_codes(name: str) -> set[str]:
    return {r.low for r in VALUE_SETS[name].rules if r.code_system == "SNOMEDCT"}


@pytest.mark.parametrize("name", sorted(SNOMED_MEMBERS))
def test_each_diagnosis_value_set_holds_exactly_its_snomed_codes(name):
    assert _snomed_codes(name) == SNOMED_MEMBERS[name]
    assert all(VALUE_SETS[name].matches("SNOMEDCT", code) for code in SNOMED_MEMBERS[name])


def test_named_codes_match_in_their_set_and_only_with_their_system():
    assert VALUE_SETS["rls_dx"].matches("SNOMEDCT", "32914008")
    assert VALUE_SETS["cauda_equina_dx"].matches("SNOMEDCT", " 192970008 ")
    assert not VALUE_SETS["rls_dx"].matches("ICD10CM", "32914008")
    assert not VALUE_SETS["rls_dx"].matches("SNOMEDCT", "3291400")  # exact, not a prefix
    assert VALUE_SETS["rls_dx"].matches("ICD10CM", "G25.81")  # the ICD code is still there


def test_every_value_set_a_measure_applies_to_diagnoses_is_covered_or_named_icd_only():
    measures = (VALUE_SET_DIR.parent / "measures").glob("*.yaml")
    used = {
        m.group(1)
        for path in measures
        for m in re.finditer(r"table: diagnoses, value_set: (\w+)", path.read_text())
    }
    used |= {
        m.group(1)
        for path in (VALUE_SET_DIR.parent / "measures").glob("*.yaml")
        for m in re.finditer(r"table: diagnoses\n\s+value_set: (\w+)", path.read_text())
    }
    assert "lumbar_fracture_dx" in used and "rls_dx" in used
    uncovered = used - set(SNOMED_MEMBERS) - ICD_ONLY - {"diabetes", "malignancy_history"}
    assert uncovered == set()
    assert _snomed_codes("diabetes") >= {"44054006", "368581000119106"}
    assert "363346000" in _snomed_codes("malignancy_history")
    assert all(_snomed_codes(name) == set() for name in ICD_ONLY)


@pytest.mark.parametrize(("name", "code", "why"), NOT_MEMBERS)
def test_judgement_calls_leave_these_codes_out(name, code, why):
    assert not VALUE_SETS[name].matches("SNOMEDCT", code), why


def test_spine_mri_with_region_not_coded_counts_as_spine_and_lumbar_imaging():
    for name in ("spine_mri", "lumbar_imaging_any"):
        assert VALUE_SETS[name].matches("SNOMEDCT", "241645008")
    assert not VALUE_SETS["spine_mri"].matches("CPT", "72141")  # cervical MRI still excluded


def test_every_code_in_every_value_set_is_well_formed_for_its_system():
    malformed = [
        (name, rule.code_system, bound)
        for name, vs in VALUE_SETS.items()
        for rule in vs.rules
        for bound in (rule.low, rule.high)
        if bound is not None
        and not (
            rule.code_system in CODE_PATTERNS
            # a prefix's or range's bound is a code's leading characters
            and (
                re.match(CODE_PATTERNS[rule.code_system], bound)
                or (rule.kind != "exact" and rule.code_system == "ICD10CM")
            )
        )
    ]
    assert malformed == []


# SNOMED codes on main before this change (measures.md lists them): no source note required.
PRE_EXISTING = {"134388005", "91161007", "401221002", "44054006", "46635009", "73211009"}


def test_every_added_snomed_code_is_named_and_says_where_it_was_confirmed():
    rules = [
        (name, rule)
        for name, vs in VALUE_SETS.items()
        for rule in vs.rules
        if rule.code_system == "SNOMEDCT"
    ]
    assert [(name, r.low) for name, r in rules if not r.description] == []
    unsourced = [
        (name, r.low)
        for name, r in rules
        if r.low not in PRE_EXISTING
        and not r.note.startswith(("confirmed:", "verify", "implies diabetes"))
        and not (name == "diabetic_neuropathy" and r.low == "368581000119106")
    ]
    assert unsourced == []


def test_uncertain_snomed_codes_stay_listed_with_a_verify_note():
    flagged = {
        (name, rule.low)
        for name, vs in VALUE_SETS.items()
        for rule in vs.rules
        if rule.code_system == "SNOMEDCT" and rule.note.startswith("verify")
    }
    assert flagged == SNOMED_VERIFY


def _omop_concepts() -> dict[tuple[str, str], str]:
    if not OMOP_ZIP.exists():
        pytest.skip(f"public OMOP sample not found at {OMOP_ZIP} (../shared)")
    with zipfile.ZipFile(OMOP_ZIP) as archive:
        text = archive.read("CONCEPT.csv").decode("utf-8")
    return {
        (row["vocabulary_id"], row["concept_code"]): row["concept_name"]
        for row in csv.DictReader(io.StringIO(text))
    }


def test_codes_said_confirmed_in_the_omop_sample_are_there_with_that_name():
    concepts = _omop_concepts()
    claimed = [
        (name, rule.low, rule.description)
        for name, vs in VALUE_SETS.items()
        for rule in vs.rules
        if rule.code_system == "SNOMEDCT" and rule.note.startswith(OMOP_CONFIRMED)
    ]
    assert len(claimed) == 19
    wrong = [c for c in claimed if concepts.get(("SNOMED", c[1])) != c[2]]
    assert wrong == []
