"""`chartaudit validate --format`: the adaptation's lines first, then the contract's checks, with
a quarantined row named at the source's own file and line (flows/sourcing.py, provenance)."""

from __future__ import annotations

import re

from chartaudit.sample_data.formats.fhir import write_fhir
from tests.flows.test_cli import chartaudit
from tests.sources.story import write_story


def test_validate_a_fhir_export_names_the_ndjson_file_and_line(tmp_path):
    source = tmp_path / "fhir"
    write_fhir(write_story(tmp_path / "story"), source)
    patients = source / "Patient.ndjson"
    lines = patients.read_text().splitlines()
    lines[2] = lines[2].replace('"birthDate":"1950"', '"birthDate":"19x0"')  # P3, line 3
    patients.write_text("\n".join(lines) + "\n")
    (tmp_path / "chartaudit.toml").write_text(
        f'[sources]\ncode_map = "{source / "site-code-map.csv"}"\n'
    )

    result = chartaudit("validate", source, cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith("extract format: fhir (FHIR NDJSON files found (")
    assert "adapted rows: patients 7, encounters 8," in out
    assert re.search(r"│ patients +│ Patient\.ndjson +│ +7 │ +6 │ +1 │", out)
    assert re.search(
        r"│ patients +│ birth_year +│ unparseable_int +│ +1 │ Patient\.ndjson line 3 ", out
    )
    assert re.search(
        r"│ encounters +│ patient_id +│ foreign_key +│ +2 │ Encounter\.ndjson line 3 ", out
    )
    assert "patients.parquet" not in out  # the adapted file is never what the user is shown
