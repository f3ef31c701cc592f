"""Measure files: a mistake names the file and the place, never a Python traceback."""

from __future__ import annotations

from datetime import date

import pytest
import yaml

from chartaudit.audits.engine import Catalogue
from chartaudit.audits.measure import MEASURE_DIR, MeasureError, read_measure

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
