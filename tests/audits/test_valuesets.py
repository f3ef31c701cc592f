"""Value sets: what each code list holds, how codes match, and the uncertain codes kept on
purpose (each with a `verify` note, pinned here so nobody drops or "fixes" one silently)."""

from __future__ import annotations

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chartaudit.audits.valuesets import (
    VALUE_SET_DIR,
    ValueSetError,
    load_value_sets,
    read_value_set,
    value_set_sql,
)
from chartaudit.schemas.codes import normalise_code

VALUE_SETS = load_value_sets()

# measures.md marks these "(verify)": not confirmed against an official release.
UNCERTAIN = {
    ("spine_mri", "CPT", "72146"),
    ("spine_mri", "CPT", "72147"),
    ("spine_mri", "CPT", "72157"),
    ("monofilament_exam", "HCPCS", "G9226"),
    ("bilateral_amputation", "ICD10CM", "Q7203"),
    ("bilateral_amputation", "ICD10CM", "Q7223"),
    ("amputation_right_leg", "ICD10CM", "Z89511"),
    ("amputation_right_leg", "ICD10CM", "Z89611"),
    ("amputation_left_leg", "ICD10CM", "Z89512"),
    ("amputation_left_leg", "ICD10CM", "Z89612"),
    ("lumbar_imaging_any", "CPT", "72146"),
    ("lumbar_imaging_any", "CPT", "72147"),
    ("lumbar_imaging_any", "CPT", "72157"),
    ("lumbar_imaging_any", "CPT", "72131"),  # the CT range 72131..72133
    ("lumbar_imaging_any", "CPT", "72100"),
    ("lumbar_imaging_any", "CPT", "72110"),
    ("lumbar_imaging_any", "CPT", "72114"),
    ("lumbar_imaging_any", "CPT", "72120"),
    ("abi_test", "LOINC", "77194-9"),
}


def test_uncertain_codes_stay_listed_with_a_verify_note():
    flagged = {
        (name, rule.code_system, rule.low)
        for name, vs in VALUE_SETS.items()
        for rule in vs.rules
        # SNOMED CT codes with a verify note are pinned in test_value_sets_code_systems.py.
        if rule.note.startswith("verify") and rule.code_system != "SNOMEDCT"
    }
    assert flagged == UNCERTAIN


@pytest.mark.parametrize(
    ("value_set", "system", "code", "member"),
    [
        ("diabetes", "ICD10CM", "E11.42", True),
        ("diabetes", "ICD10CM", "e1142", True),
        ("diabetes", "ICD10CM", "R73.03", False),  # prediabetes is not diabetes
        ("diabetes", "SNOMEDCT", "15777000", False),
        ("diabetes", "SNOMEDCT", "368581000119106", True),
        ("malignancy_history", "ICD10CM", "C50.911", True),
        ("malignancy_history", "ICD10CM", "C96.9", True),
        ("malignancy_history", "ICD10CM", "C97", False),
        ("malignancy_history", "ICD10CM", "D03.9", False),
        ("malignancy_history", "ICD10CM", "Z85.3", True),
        ("leg_numbness_dx", "ICD10CM", "G57.11", True),
        ("diabetic_neuropathy", "ICD10CM", "E11.42", True),
        ("diabetic_neuropathy", "ICD10CM", "E08.49", True),
        ("diabetic_neuropathy", "ICD10CM", "E10.45", False),  # .45 is not a neuropathy code
        ("diabetic_neuropathy", "ICD10CM", "E11.9", False),
        ("diabetic_neuropathy", "SNOMEDCT", "368581000119106", True),
        ("polyneuropathy", "ICD10CM", "G62.9", True),
        ("polyneuropathy", "ICD10CM", "G63", True),
        ("polyneuropathy", "ICD10CM", "G61.0", False),  # Guillain-Barre: only G61.9 listed
        ("pad_dx", "ICD10CM", "I70.213", True),
        ("pad_dx", "ICD10CM", "I70.229", True),
        ("pad_dx", "ICD10CM", "I70.231", False),  # ulceration is not in the set
        ("pad_dx", "ICD10CM", "I73.9", True),
        ("pad_claudication_or_rest_pain_dx", "ICD10CM", "I70.222", True),
        ("pad_claudication_or_rest_pain_dx", "ICD10CM", "I73.9", False),
        ("lumbar_imaging_any", "CPT", "72132", True),
        ("lumbar_imaging_any", "CPT", "72141", False),  # cervical MRI
        ("parkinsons_dx", "ICD10CM", "G20.A1", True),
        ("iron_supplements", "INGREDIENT", "Ferrous Sulfate", True),
        ("iron_supplements", "INGREDIENT", "ferrous sulfate ", True),
        ("neuropathic_pain_agents", "INGREDIENT", "gabapentin enacarbil", False),
        ("rls_drugs", "INGREDIENT", "gabapentin enacarbil", True),
        ("leg_numbness_dx", "ICD10CM", "G58.0", False),
        ("leg_numbness_dx", "ICD10CM", "M54.5", False),
        ("leg_numbness_dx", "LOCAL", "Leg_Numbness", True),
        ("spine_mri", "CPT", "72148", True),
        ("spine_mri", "CPT", "72141", False),  # cervical MRI does not count
        ("cauda_equina_dx", "ICD10CM", "G834", True),
        ("cauda_equina_dx", "SNOMEDCT", "G834", False),  # the system must match too
    ],
)
def test_membership(value_set, system, code, member):
    assert VALUE_SETS[value_set].matches(system, code) is member


CODES = st.sampled_from(["ICD10CM", "SNOMEDCT", "LOCAL", "CPT", "HCPCS"]).flatmap(
    lambda system: st.tuples(
        st.just(system),
        st.from_regex(r"[A-Z][0-9]{1,2}(\.[0-9A-Z]{0,4})?", fullmatch=True)
        | st.sampled_from(["E11.9", "C00", "C96.Z", "Z85", "72148", "G9226", "leg_numbness"]),
    )
)


@settings(deadline=None, max_examples=60)  # each example opens a DuckDB: no per-example deadline
@given(st.lists(CODES, min_size=1, max_size=30))
def test_the_sql_predicate_agrees_with_the_python_twin(codes):
    con = duckdb.connect()
    rows = [(system, normalise_code(system, code)) for system, code in codes]
    con.execute("CREATE TABLE e (code_system VARCHAR, code VARCHAR)")
    con.executemany("INSERT INTO e VALUES (?, ?)", rows)
    for vs in VALUE_SETS.values():
        sql = f"SELECT code_system, code, {value_set_sql(vs, 'code_system', 'code')} FROM e"
        for system, code, member in con.execute(sql).fetchall():
            assert member == vs.matches(system, code), (vs.name, system, code)


def test_every_file_follows_the_format():
    assert sorted(VALUE_SETS) == sorted(p.stem for p in VALUE_SET_DIR.glob("*.csv"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("system,code\nCPT,1\n", "header must be code_system,code,description,note"),
        ("code_system,code,description,note\n", "the value set has no codes"),
        ("code_system,code,description,note\nICD10CM,C96..C00,x,\n", ":2: range C96..C00"),
        ("code_system,code,description,note\nCPT,72148';--,x,\n", ':2: code "72148\';--"'),
        ("code_system,code,description,note\n,72148,x,\n", ":2: code_system and code"),
    ],
)
def test_a_broken_file_is_named_with_its_line(tmp_path, text, message):
    path = tmp_path / "broken.csv"
    path.write_text(text)
    with pytest.raises(ValueSetError, match=r"broken\.csv") as error:
        read_value_set(path)
    assert message in str(error.value)
