"""Measure files: a mistake names the file and the place, never a Python traceback."""

from __future__ import annotations

from datetime import date

import pytest
import yaml

from chartaudit.audits.engine import Catalogue
from chartaudit.audits.measure import MEASURE_DIR, MeasureError
from chartaudit.audits.measure_parser import read_measure

CATALOGUE = Catalogue.load()


def write(tmp_path, change) -> object:
    data = yaml.safe_load((MEASURE_DIR / "LN-01.yaml").read_text())
    change(data)
    path = tmp_path / "LN-01.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(colour="red"), "top level: unknown key(s) ['colour']"),
        (lambda d: d["numerator"].update(value_set="spine_mris"), "unknown value set 'spine_mris'"),
        (
            lambda d: d["numerator"].update(time="scan_time"),
            "table orders has no column 'scan_time'",
        ),
        (lambda d: d["numerator"]["window"].update(end="12 hours"), "window bound '12 hours'"),
        (lambda d: d["index"].update(trigger="visit"), "index: trigger must be one of"),
        (lambda d: d["numerator"].update(table="scans"), "unknown table 'scans'"),
        (lambda d: d.update(unit="case"), "unit: must be one of"),
        (
            lambda d: d["exclusions"][1].update(value_set="spine_mri"),
            "table encounters has no codes to match value set 'spine_mri'",
        ),
        (
            lambda d: d["exclusions"].append(
                {"reason": "x", "table": "patients", "scope": "index_encounter"}
            ),
            "table patients has no encounter to match the index encounter",
        ),
        (
            lambda d: d["numerator"].update(window={"start": "-24h", "after": "-1h", "end": "1h"}),
            "numerator.window: give one lower bound (start or after) and one upper bound",
        ),
        (
            lambda d: d["index"].update(episodes="monthly"),
            "index: episodes must be like 30d, or first, or each, not 'monthly'",
        ),
        (
            lambda d: d.update(numerator={"label": "x", "component": "sensation"}),
            "numerator: unknown component 'sensation'; known: []",
        ),
        (
            lambda d: d.update(
                numerator={"label": "x", "table": "orders", "fails_if": [{"reason": "r"}]}
            ),
            "numerator: fails_if takes no other criterion beside it",
        ),
        (
            lambda d: d["numerator"].update(earliest_among="spine_mri"),
            "numerator: earliest_among needs earliest_per and a known value set",
        ),
        (
            lambda d: d["versions"][0].update(numerator={"label": "x", "table": "orders"}),
            "versions[0]: a version that changes the populations needs `changes`",
        ),
        (
            lambda d: d["numerator"].update(where={"value_num": "< 50"}),
            "table orders has no column 'value_num'",
        ),
        (
            lambda d: d["index"].update(trigger="patient"),
            "index: an event trigger takes events; other triggers take none",
        ),
        (lambda d: d.update(target=0.9), "target: target and target_source go together"),
        (
            lambda d: d.update(target=90, target_source="a guideline"),
            "target: 90 is not a rate from 0 to 1 (e.g. 0.9 for 90 %)",
        ),
        (
            lambda d: d.update(target="high", target_source="a guideline"),
            "target: 'high' is not a rate from 0 to 1",
        ),
    ],
)
def test_a_broken_measure_names_file_and_place(tmp_path, change, message):
    path = write(tmp_path, change)
    with pytest.raises(MeasureError) as error:
        read_measure(path, set(CATALOGUE.value_sets))
    assert str(error.value).startswith("LN-01.yaml: ")
    assert message in str(error.value)


def test_every_measure_cites_its_seed_statement_and_has_a_version_for_each_ruleset():
    for measure in CATALOGUE.measures:
        assert measure.source.startswith("Seed, ")
        for ruleset in ("source-2025", "evidence-2026"):
            assert measure.version_for(ruleset, date(2026, 10, 1)) is not None


def test_no_version_is_in_effect_before_the_rule_sets_begin():
    measure = CATALOGUE.measure("LN-01")
    assert measure.version_for("source-2025", date(2024, 12, 1)) is None


def test_a_key_written_twice_is_refused_with_its_line(tmp_path):
    path = tmp_path / "LN-01.yaml"
    path.write_text((MEASURE_DIR / "LN-01.yaml").read_text() + "unit: patient\n")
    with pytest.raises(MeasureError, match=r"LN-01.yaml: line \d+, column 1: key 'unit' is"):
        read_measure(path, set(CATALOGUE.value_sets))


def test_ln03_judges_exactly_the_ln01_episodes():
    """Precise reading 10: LN-03's index is LN-01's, written twice; they must stay equal."""
    ln01, ln03 = CATALOGUE.measure("LN-01"), CATALOGUE.measure("LN-03")
    assert ln03.index == ln01.index
    assert ln03.exclusions == ()


def test_ln09_is_ln08s_index_for_patients_without_earlier_diabetes():
    ln08, ln09 = CATALOGUE.measure("LN-08").index, CATALOGUE.measure("LN-09").index
    assert (ln09.trigger, ln09.events, ln09.episodes) == (ln08.trigger, ln08.events, ln08.episodes)
    assert ln09.require.children[:2] == ln08.require.children
    (diabetes,) = ln09.require.children[2:]
    assert diabetes.value_set == "diabetes" and diabetes.window.end.strict


def test_rule_sets_change_only_ln10_to_ln13():
    """Precise reading 20: evidence-2026 changes outcomes of LN-10, LN-11 and LN-12 only, and
    adds LN-13's informational rate."""
    differ = {m.id for m in CATALOGUE.measures if any(v.overrides for v in m.versions)}
    assert differ == {"LN-10", "LN-11", "LN-12", "LN-13"}
    ln13 = CATALOGUE.measure("LN-13")
    changed = ln13.definition(ln13.version_for("evidence-2026", date(2026, 10, 1)))
    assert set(ln13.versions[1].overrides) == {"also_report"}
    assert changed.numerator == ln13.numerator


def test_a_target_is_read_with_its_source(tmp_path):
    path = write(tmp_path, lambda d: d.update(target=0.9, target_source="Toy  guideline,\n 2026"))
    measure = read_measure(path, set(CATALOGUE.value_sets))
    assert (measure.target, measure.target_source) == (0.9, "Toy guideline, 2026")
    assert all(m.target is None for m in CATALOGUE.measures)  # no source gives one
