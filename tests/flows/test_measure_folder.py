"""A measure is a file: a toy measure in a folder named in settings (or on the command line) is
picked up, compiled, run, stored and reported with no Python change; a broken one is refused
with the file and the place, before anything runs."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import duckdb
import pytest

from chartaudit.audits.engine import Catalogue
from chartaudit.flows.settings import load_settings
from tests.flows.test_cli import chartaudit

TOY_MEASURE = """\
# A site's own measure: a foot inspection at every visit of a patient known to have diabetes.
id: TOY-01
title: Foot inspection at diabetic visits
unit: episode
type: process
source: >
  Seed, "Diabetic Peripheral Neuropathy": annual screening to prevent foot ulceration (a toy
  measure for the test suite).
target: 0.85
target_source: A toy site goal, for the test suite
versions:
  - version: "1"
    rulesets: [source-2025, evidence-2026]
    effective_from: 2025-01-01
index:
  trigger: encounter
  episodes: 30d
  require:
    all_of:
      - table: encounters
        scope: index_encounter
        where: {setting: outpatient}
        label: clinic visit
      - {table: diagnoses, value_set: diabetes, window: {end: 0m}, label: diabetes}
numerator:
  label: foot inspection documented in the visit
  table: findings
  value_set: site_foot_inspection
  where: {result: [normal, abnormal]}
  scope: index_encounter
"""

TOY_VALUE_SET = """\
code_system,code,description,note
LOCAL,foot_inspection,Foot inspected (site flowsheet row),
"""

TOY_DECK = """\
measure: TOY-01
period: "2026-10"
timezone: America/Chicago
coverage_end: "2026-11-01 00:00"
cases:
  - name: inspected at the visit, met
    rows:
      encounters: [{encounter_id: A1, setting: outpatient, arrival_time: "2026-10-05 09:00"}]
      diagnoses: [{encounter_id: A1, code: "E11.9", recorded_time: "2026-10-05 08:00"}]
      findings:
        - encounter_id: A1
          code: foot_inspection
          result: normal
          recorded_time: "2026-10-05 09:30"
    expect: met
  - name: not inspected, not met
    rows:
      encounters: [{encounter_id: B1, setting: outpatient, arrival_time: "2026-10-05 09:00"}]
      diagnoses: [{encounter_id: B1, code: "E11.9", recorded_time: "2026-10-05 08:00"}]
    expect: not_met
  - name: no diabetes, no case
    rows:
      encounters: [{encounter_id: C1, setting: outpatient, arrival_time: "2026-10-05 09:00"}]
    expect: []
"""


def toy_folder(root: Path, measure: str = TOY_MEASURE) -> Path:
    folder = root / "site-measures"
    for sub, name, text in (
        ("measures", "TOY-01.yaml", measure),
        ("value_sets", "site_foot_inspection.csv", TOY_VALUE_SET),
        ("decks", "TOY-01.yaml", TOY_DECK),
    ):
        (folder / sub).mkdir(parents=True, exist_ok=True)
        (folder / sub / name).write_text(text, encoding="utf-8")
    return folder


def test_a_toy_measure_named_in_settings_is_run_stored_and_reported(generated, tmp_path):
    toy_folder(tmp_path)
    (tmp_path / "chartaudit.toml").write_text('[measures]\nfolders = ["site-measures"]\n')
    done = chartaudit(
        "run", generated, "--period", "2026-10", cwd=tmp_path, prefect_home=tmp_path / "prefect"
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    with duckdb.connect(str(tmp_path / "audit.duckdb"), read_only=True) as con:
        measures = [r[0] for r in con.execute("SELECT measure_id FROM measures").fetchall()]
        outcomes = dict(
            con.execute(
                "SELECT outcome, count(*) FROM latest_case_results"
                " WHERE measure_id = 'TOY-01' GROUP BY 1"
            ).fetchall()
        )
        summary = con.execute(
            "SELECT denominator, met, not_met FROM latest_measure_summary"
            " WHERE measure_id = 'TOY-01' AND stratum_kind = 'all'"
        ).fetchall()
        stored = con.execute(
            "SELECT target, target_source, definition FROM measures WHERE measure_id = 'TOY-01'"
        ).fetchall()
    assert len(measures) == 16 and "TOY-01" in measures
    assert outcomes.get("met", 0) > 0 and outcomes.get("not_met", 0) > 0
    assert summary == [
        (outcomes["met"] + outcomes["not_met"], outcomes["met"], outcomes["not_met"])
    ]
    assert [row[:2] for row in stored] == [(0.85, "A toy site goal, for the test suite")]
    assert stored[0][2].startswith("Index: an encounter (index time = arrival)")
    report = (tmp_path / "reports" / "out" / "chartaudit-2026-10.html").read_text()
    assert "TOY-01" in report and "Foot inspection at diabetic visits" in report
    assert "Target 85.0 % (A toy site goal, for the test suite)." in report  # the trend line


def test_the_measures_commands_take_the_folder_from_the_command_line(tmp_path):
    folder = toy_folder(tmp_path)
    listed = chartaudit("measures", "--measures", folder, "list")
    assert listed.returncode == 0, listed.stderr
    assert "TOY-01" in listed.stdout and "LN-15" in listed.stdout
    tested = chartaudit("measures", "--measures", folder, "test", "TOY-01")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "6 of 6 deck case runs passed (3 cases" in tested.stdout
    shown = chartaudit("measures", "--measures", folder, "show", "TOY-01")
    assert shown.returncode == 0, shown.stderr
    assert "foot inspection documented in the visit" in shown.stdout
    assert "site_foot_inspection" in shown.stdout and "WITH RECURSIVE" in shown.stdout


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda text: text.replace("value_set: site_foot_inspection", "value_set: foot_checks"),
            "TOY-01.yaml: numerator: unknown value set 'foot_checks'"
            " (no value_sets/foot_checks.csv)",
        ),
        (
            lambda text: text.replace("window: {end: 0m}", "window: {end: 2 weeks}"),
            "TOY-01.yaml: index.require.all_of[1].window: window bound '2 weeks' is not like"
            " -24h, 12h, 14d or an anchor",
        ),
        (
            lambda text: text.replace("title: Foot", "title: Foot\ntitle: Feet"),
            "TOY-01.yaml: line 4, column 1: key 'title' is written twice",
        ),
        (
            lambda text: text.replace("  trigger: encounter", "  trigger: encounter\n  events: x"),
            "TOY-01.yaml: index: an event trigger takes events; other triggers take none",
        ),
    ],
)
def test_a_broken_measure_file_is_refused_naming_file_and_place(
    generated, tmp_path, change, message
):
    folder = toy_folder(tmp_path, change(TOY_MEASURE))
    done = chartaudit("run", generated, "--period", "2026-10", "--measures", folder, cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [f"error: {message}"], done.stderr
    assert not (tmp_path / "audit.duckdb").exists()  # refused before anything was written


def test_a_value_set_may_not_silently_replace_a_built_in_one(tmp_path):
    folder = toy_folder(tmp_path)
    (folder / "value_sets" / "diabetes.csv").write_text(TOY_VALUE_SET)
    with pytest.raises(ValueError, match=r"diabetes\.csv: value set 'diabetes' is already defined"):
        Catalogue.load([folder])


def test_a_folder_without_measures_is_named(tmp_path):
    with pytest.raises(ValueError, match="not a measure folder"):
        Catalogue.load([tmp_path])


def test_settings_file_and_environment(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "chartaudit.toml").write_text('[measures]\nfolders = ["a", "/srv/b"]\n')
    assert load_settings().measures.folders == [tmp_path / "a", Path("/srv/b")]
    monkeypatch.setenv("CHARTAUDIT_MEASURES__FOLDERS", json.dumps(["/srv/c"]))
    assert load_settings().measures.folders == [Path("/srv/c")]
    monkeypatch.setenv("CHARTAUDIT_MEASURES__FOLDERS", "not json")
    with pytest.raises(ValueError, match="CHARTAUDIT"):
        load_settings()


def test_a_malformed_settings_file_is_one_clear_error(tmp_path):
    (tmp_path / "chartaudit.toml").write_text(
        textwrap.dedent("""\
        [measures]
        folder = ["a"]
        """)
    )
    done = chartaudit("measures", "list", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.startswith(
        "error: chartaudit.toml or CHARTAUDIT_* variables: measures.folder"
    )
