"""`chartaudit export --format fhir`: every resource parses with the FHIR models, the counts are
latest_measure_summary's, the not-met lists are the warehouse's not-met patients, and
--suppress-below hides exactly what the CSV export hides. On the warehouse the real pipeline wrote
(test_export's fixture, one run), and on the small hand-made one for the edge cases."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import polars as pl
import pydantic
import pytest
from fhir.resources.R4B.list import List as FhirList
from fhir.resources.R4B.measurereport import MeasureReport

from chartaudit.reports.export import write_export
from chartaudit.reports.fhir_measure_report import write_fhir_export
from chartaudit.reports.render import ReportError
from chartaudit.storage import warehouse
from tests.flows.test_cli import chartaudit
from tests.reports.conftest import summarise_run

# The module-scoped warehouse the real pipeline wrote for test_export (one run): pytest finds the
# fixture by its name in this module; `pipeline` below asks for it.
from tests.reports.test_export import published  # noqa: F401

PERIOD = "2026-10"
FOLDER = f"chartaudit-{PERIOD}-fhir"
POPULATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/measure-population"
MEASURE_URL = "https://chartaudit.example/fhir/Measure/"
PATIENT_ID_SYSTEM = "https://chartaudit.example/fhir/NamingSystem/patient-id"
RUN_ID_SYSTEM = "https://chartaudit.example/fhir/NamingSystem/run-id"
IMPROVEMENT_SYSTEM = "http://terminology.hl7.org/CodeSystem/measure-improvement-notation"
STRATUM_KEY = ["measure_id", "stratum_kind", "stratum"]
# The codes R4 binds these elements to (required bindings; the models check types, not these).
REPORT_STATUSES = {"complete", "pending", "error"}
REPORT_TYPES = {"individual", "subject-list", "summary", "data-collection"}
MEASURE_POPULATIONS = {
    "initial-population", "numerator", "numerator-exclusion", "denominator",
    "denominator-exclusion", "denominator-exception", "measure-population",
    "measure-population-exclusion", "measure-observation",
}  # fmt: skip
LIST_STATUSES = {"current", "retired", "entered-in-error"}
LIST_MODES = {"working", "snapshot", "changes"}


@pytest.fixture
def pipeline(request: pytest.FixtureRequest) -> Path:
    """The pipeline-built warehouse file."""
    path, _ = request.getfixturevalue("published")
    return path


def _fhir(path: Path, out: Path, below: int | None = None, period: str = PERIOD) -> Path:
    with warehouse.connect(path, read_only=True) as con:
        return write_fhir_export(con, period, out, suppress_below=below, warehouse_name=str(path))


def _latest(path: Path, sql: str) -> pl.DataFrame:
    with warehouse.connect(path, read_only=True) as con:
        return con.sql(sql, params={"period": PERIOD}).pl()


def _resources(folder: Path) -> dict[str, dict[str, Any]]:
    """Every file, parsed by its FHIR model (a refusal fails the test), by file name."""
    models = {"MeasureReport": MeasureReport, "List": FhirList}
    resources = {}
    for file in sorted(folder.iterdir()):
        resource = json.loads(file.read_text(encoding="utf-8"))
        models[resource["resourceType"]].model_validate(resource)
        assert file.name == f"{resource['resourceType']}-{resource['id']}.json"
        resources[file.name] = resource
    return resources


def _codes_in_r4_bindings(resources: dict[str, dict[str, Any]]) -> None:
    for resource in resources.values():
        if resource["resourceType"] == "List":
            assert resource["status"] in LIST_STATUSES and resource["mode"] in LIST_MODES
            continue
        assert resource["status"] in REPORT_STATUSES and resource["type"] in REPORT_TYPES
        for group in resource.get("group", []):
            populations = group.get("population", []) + [
                p
                for s in group.get("stratifier", [])
                for st in s["stratum"]
                for p in st["population"]
            ]
            for population in populations:
                (coding,) = population["code"]["coding"]
                if coding["system"] == POPULATION_SYSTEM:
                    assert coding["code"] in MEASURE_POPULATIONS


def _no_empty_values(value: Any) -> None:
    """FHIR JSON has no empty object, array or string, and no null."""
    assert value not in ({}, [], "", None)
    if isinstance(value, dict):
        for item in value.values():
            _no_empty_values(item)
    elif isinstance(value, list):
        for item in value:
            _no_empty_values(item)


def _counts(element: dict[str, Any]) -> dict[str, int]:
    return {p["code"]["coding"][0]["code"]: p["count"] for p in element["population"]}


def _expected_counts(row: dict[str, Any]) -> dict[str, int]:
    """The FHIR populations of a measure_summary row: FHIR's denominator holds the exclusions
    (the score divides by denominator - exclusion); pending cases are initial population only."""
    return {
        "initial-population": row["met"] + row["not_met"] + row["excluded"] + row["pending"],
        "denominator": row["denominator"] + row["excluded"],
        "denominator-exclusion": row["excluded"],
        "numerator": row["met"],
    }


def _stratum_name(value: dict[str, Any]) -> str | None:
    """The warehouse's stratum of a FHIR stratum value: None for the data-absent one."""
    if "coding" in value:
        assert value == {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/data-absent-reason",
                    "code": "unknown",
                }
            ],
            "text": "(not recorded)",
        }
        return None
    assert set(value) == {"text"}
    return value["text"]


def _fhir_rows(resources: dict[str, dict[str, Any]]) -> dict[tuple, tuple]:
    """{(measure, kind, stratum): (populations, score)} of every summary report and stratum."""
    rows = {}
    for resource in resources.values():
        if resource.get("type") != "summary":
            continue
        measure_id = resource["measure"].removeprefix(MEASURE_URL).split("|")[0]
        for group in resource.get("group", []):
            if "population" in group:
                score = group.get("measureScore", {}).get("value")
                rows[(measure_id, "all", None)] = (_counts(group), score)
            for stratifier in group.get("stratifier", []):
                (kind,) = (c["coding"][0]["code"] for c in stratifier["code"])
                for stratum in stratifier["stratum"]:
                    key = (measure_id, kind, _stratum_name(stratum["value"]))
                    assert key not in rows
                    score = stratum.get("measureScore", {}).get("value")
                    rows[key] = (_counts(stratum), score)
    return rows


def _summary_rows(summary: pl.DataFrame) -> dict[tuple, tuple]:
    """The rows with counts (a not-computable measure has none), as _fhir_rows gives them."""
    return {
        (r["measure_id"], r["stratum_kind"], r["stratum"]): (_expected_counts(r), r["rate"])
        for r in summary.iter_rows(named=True)
        if r["denominator"] is not None
    }


def _listed_patients(resources: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    """{measure: patient ids} through each subject-list report's List, checking the count."""
    listed = {}
    for resource in resources.values():
        if resource.get("type") != "subject-list":
            continue
        measure_id = resource["measure"].removeprefix(MEASURE_URL).split("|")[0]
        ((population,),) = (g["population"] for g in resource["group"])
        assert population["code"]["coding"] == [
            {"system": "https://chartaudit.example/fhir/CodeSystem/measure-population",
             "code": "not-met"}
        ]  # fmt: skip
        list_id = population["subjectResults"]["reference"].removeprefix("List/")
        entries = resources[f"List-{list_id}.json"].get("entry", [])
        assert all(e["item"]["type"] == "Patient" for e in entries)
        assert {e["item"]["identifier"]["system"] for e in entries} <= {PATIENT_ID_SYSTEM}
        listed[measure_id] = [e["item"]["identifier"]["value"] for e in entries]
        assert population.get("count", 0) == len(listed[measure_id])
    return listed


def _not_met_patients(cases: pl.DataFrame) -> dict[str, list[str]]:
    grouped = cases.group_by("measure_id").agg(pl.col("patient_id").unique().sort())
    return dict(grouped.iter_rows())


def test_every_resource_validates_and_its_counts_are_latest_measure_summarys(pipeline, tmp_path):
    path = pipeline
    folder = _fhir(path, tmp_path / "out")
    assert folder == tmp_path / "out" / FOLDER
    resources = _resources(folder)
    summary = _latest(path, "SELECT * FROM latest_measure_summary WHERE period = $period")
    measures = sorted(set(summary["measure_id"]))
    assert measures == [f"LN-{i:02d}" for i in range(1, 16)]
    assert set(resources) == {
        name
        for m in measures
        for name in (
            f"MeasureReport-{m}-{PERIOD}-summary.json",
            f"MeasureReport-{m}-{PERIOD}-not-met.json",
            f"List-{m}-{PERIOD}-not-met-patients.json",
        )
    }
    _codes_in_r4_bindings(resources)
    for resource in resources.values():
        _no_empty_values(resource)
    # Every stratum of every measure, exactly: counts and score (None: denominator 0).
    assert _fhir_rows(resources) == _summary_rows(summary)
    # LN-14's look-back reaches before this extract: no counts, no score, the reason in words.
    (reason,) = summary.filter(pl.col("status") == "not_computable")["status_reason"]
    assert reason.startswith("not computable for this period: needs data from 2025-09-01")
    ln14 = resources[f"MeasureReport-LN-14-{PERIOD}-summary.json"]
    assert "group" not in ln14
    assert f"<p>No counts and no score: {reason}.</p>" in ln14["text"]["div"]
    assert summary.filter(pl.col("denominator") == 0).height > 0  # the no-score case is in it


def test_reports_name_the_measure_version_the_month_and_the_run(pipeline, tmp_path):
    path = pipeline
    resources = _resources(_fhir(path, tmp_path / "out"))
    run = _latest(
        path, "SELECT run_id, finished_at, timezone FROM latest_runs WHERE period = $period"
    )
    zone = ZoneInfo(run["timezone"].item())
    month = {
        "start": datetime(2026, 10, 1, tzinfo=zone).isoformat(),
        "end": datetime(2026, 10, 31, 23, 59, 59, tzinfo=zone).isoformat(),
    }
    versions = dict(
        _latest(
            path,
            "SELECT DISTINCT measure_id, measure_version FROM measures"
            " WHERE run_id = (SELECT run_id FROM latest_runs WHERE period = $period)",
        ).iter_rows()
    )
    finished = run["finished_at"].item().astimezone(UTC).isoformat(timespec="seconds")
    reports = [r for r in resources.values() if r["resourceType"] == "MeasureReport"]
    assert len(reports) == 30
    for report in reports:
        measure_id = (
            report["id"].removesuffix(f"-{PERIOD}-summary").removesuffix(f"-{PERIOD}-not-met")
        )
        assert report["measure"] == f"{MEASURE_URL}{measure_id}|{versions[measure_id]}"
        assert report["status"] == "complete"
        # The month in the extract's zone, its last second included (FHIR's period end).
        assert report["period"] == month
        assert report["identifier"] == [{"system": RUN_ID_SYSTEM, "value": run["run_id"].item()}]
        assert report["date"] == finished  # the run's, not the export's: the same bytes again


def test_the_not_met_lists_are_the_warehouses_not_met_patients(pipeline, tmp_path):
    path = pipeline
    resources = _resources(_fhir(path, tmp_path / "out"))
    cases = _latest(
        path,
        "SELECT measure_id, patient_id FROM latest_case_results"
        " WHERE period = $period AND outcome = 'not_met'",
    )
    listed = _listed_patients(resources)
    expected = _not_met_patients(cases)
    assert {m: p for m, p in listed.items() if p} == expected
    assert len(listed) == 15 and 0 < len(expected) < 15
    # An empty list says why: not judged this month (LN-14), or judged with none not met.
    for measure_id in set(listed) - set(expected):
        empty = resources[f"List-{measure_id}-{PERIOD}-not-met-patients.json"]
        reason = "notstarted" if measure_id == "LN-14" else "nilknown"
        assert empty["emptyReason"]["coding"][0]["code"] == reason, measure_id
        assert "entry" not in empty and "note" not in empty


def test_suppression_hides_exactly_what_the_csv_export_hides(pipeline, tmp_path):
    path = pipeline
    fhir = _resources(_fhir(path, tmp_path / "fhir", below=11))
    with warehouse.connect(path, read_only=True) as con:
        csv = write_export(con, PERIOD, tmp_path / "csv", suppress_below=11)
    _codes_in_r4_bindings(fhir)
    summary = pl.read_parquet(csv / "measure_summary.parquet")
    shown = summary.filter(~pl.col("suppressed"))
    assert summary["suppressed"].sum() > 0
    # The FHIR strata are exactly the CSV export's shown rows, with the same counts; a hidden
    # `all` row leaves a group without populations (its shown strata, if any, stay).
    assert _fhir_rows(fhir) == _summary_rows(shown)
    # The patients listed are exactly those of the not-met CSVs.
    csv_patients = {
        file.name.removesuffix("-not-met.csv"): sorted(
            set(pl.read_csv(file, infer_schema=False)["patient_id"])
        )
        for file in csv.glob("*-not-met.csv")
    }
    listed = _listed_patients(fhir)
    assert listed == csv_patients
    all_not_met = _not_met_patients(
        _latest(path, "SELECT measure_id, patient_id FROM latest_case_results"
                " WHERE period = $period AND outcome = 'not_met'")
    )  # fmt: skip
    assert sum(map(len, listed.values())) < sum(map(len, all_not_met.values()))
    hidden_all = set(
        summary.filter(pl.col("suppressed") & (pl.col("stratum_kind") == "all"))["measure_id"]
    )
    assert hidden_all
    for measure_id in hidden_all:
        report = fhir[f"MeasureReport-{measure_id}-{PERIOD}-summary.json"]
        assert all(
            "population" not in g and "measureScore" not in g for g in report.get("group", [])
        )
        assert "Counts withheld: the denominator is under 11" in report["text"]["div"]
        (subject_list,) = fhir[f"MeasureReport-{measure_id}-{PERIOD}-not-met.json"]["group"]
        assert "count" not in subject_list["population"][0]
        patients = fhir[f"List-{measure_id}-{PERIOD}-not-met-patients.json"]
        assert patients["emptyReason"]["coding"][0]["code"] == "withheld"
    note = "Suppression applied, N = 11: strata with a denominator of 1 to 10"
    assert all(
        r["note"][0]["text"].startswith(note) for r in fhir.values() if r["resourceType"] == "List"
    )


def test_the_command_writes_owner_only_files_the_same_bytes_each_time(pipeline, tmp_path):
    path = pipeline
    out = tmp_path / "out"
    done = chartaudit(
        "export", "--format", "fhir", "--period", PERIOD, "--warehouse", path, "--out", out
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"export: {(out / FOLDER).resolve()}"
    assert [p.name for p in out.iterdir()] == [FOLDER]
    files = sorted((out / FOLDER).iterdir())
    assert len(files) == 45
    assert stat.S_IMODE((out / FOLDER).stat().st_mode) == 0o700
    assert {stat.S_IMODE(p.stat().st_mode) for p in files} == {0o600}
    first = {p.name: p.read_bytes() for p in files}
    again = _fhir(path, tmp_path / "again")
    assert {p.name: p.read_bytes() for p in again.iterdir()} == first
    for name, data in first.items():
        assert (
            data.decode()
            == json.dumps(json.loads(data), sort_keys=True, indent=2, ensure_ascii=False) + "\n"
        ), name


def test_an_unknown_format_is_refused_and_writes_nothing(pipeline, tmp_path):
    path = pipeline
    done = chartaudit(
        "export",
        "--format",
        "xml",
        "--period",
        PERIOD,
        "--warehouse",
        path,
        "--out",
        tmp_path / "out",
    )
    assert done.returncode == 2
    assert "'xml' is not one of 'csv', 'fhir'" in done.stderr
    assert not (tmp_path / "out").exists()


# The hand-made warehouse (tests/reports/conftest.py): Europe/London, LN-01 strata with a site
# of no name, LN-05 with no case (denominator 0); here LN-04 is made not computable.
LN04_REASON = "not computable for this period: its look-back starts before the extract"


def _not_computable_ln04(con) -> None:
    con.execute(
        "UPDATE measures SET status = 'not_computable', status_reason = ?"
        " WHERE run_id = 'r-new' AND measure_id = 'LN-04'",
        [LN04_REASON],
    )
    con.execute("DELETE FROM case_results WHERE run_id = 'r-new' AND measure_id = 'LN-04'")
    summarise_run(con, "r-new")


def _pop(code: str, count: int) -> dict[str, Any]:
    return {"code": {"coding": [{"system": POPULATION_SYSTEM, "code": code}]}, "count": count}


def test_the_ln07_summary_report_is_exactly_this(warehouse, tmp_path):
    folder = write_fhir_export(warehouse, PERIOD, tmp_path)
    report = json.loads((folder / f"MeasureReport-LN-07-{PERIOD}-summary.json").read_text())
    site = {"system": "https://chartaudit.example/fhir/CodeSystem/stratifier", "code": "site"}
    setting = {**site, "code": "setting"}
    not_recorded = {
        "coding": [
            {
                "system": "http://terminology.hl7.org/CodeSystem/data-absent-reason",
                "code": "unknown",
            }
        ],
        "text": "(not recorded)",
    }

    def scored(met: int, not_met: int) -> dict[str, Any]:
        counts = [("initial-population", met + not_met), ("denominator", met + not_met),
                  ("denominator-exclusion", 0), ("numerator", met)]  # fmt: skip
        return {
            "measureScore": {"value": met / (met + not_met)},
            "population": [_pop(*c) for c in counts],
        }

    assert report == {
        "resourceType": "MeasureReport",
        "id": "LN-07-2026-10-summary",
        "identifier": [{"system": RUN_ID_SYSTEM, "value": "r-new"}],
        "status": "complete",
        "type": "summary",
        "measure": "https://chartaudit.example/fhir/Measure/LN-07|2",
        "date": "2026-11-05T08:05:00+00:00",
        # Europe/London: BST at the month's start, GMT at its end.
        "period": {"start": "2026-10-01T00:00:00+01:00", "end": "2026-10-31T23:59:59+00:00"},
        "improvementNotation": {"coding": [{"system": IMPROVEMENT_SYSTEM, "code": "increase"}]},
        "text": {
            "status": "generated",
            "div": '<div xmlns="http://www.w3.org/1999/xhtml"><p>LN-07, 2026-10, run r-new.</p>'
            "<p>Pending cases (not judged yet) are in the initial population only; excluded cases"
            " are the denominator exclusion.</p></div>",
        },
        "group": [
            {
                **scored(2, 1),
                "stratifier": [
                    {"code": [{"coding": [site], "text": "site"}],
                     "stratum": [{"value": {"text": "S1"}, **scored(2, 0)},
                                 {"value": {"text": "S2"}, **scored(0, 1)}]},
                    {"code": [{"coding": [setting], "text": "setting"}],
                     "stratum": [{"value": {"text": "outpatient"}, **scored(1, 1)},
                                 {"value": not_recorded, **scored(1, 0)}]},
                ],
            }
        ],
    }  # fmt: skip
    MeasureReport.model_validate(report)


def test_not_computable_and_empty_measures_have_no_score(warehouse, tmp_path):
    _not_computable_ln04(warehouse)
    resources = _resources(write_fhir_export(warehouse, PERIOD, tmp_path))
    ln04 = resources[f"MeasureReport-LN-04-{PERIOD}-summary.json"]
    assert "group" not in ln04  # no counts, no strata: nothing to give
    assert f"No counts and no score: {LN04_REASON}." in ln04["text"]["div"]
    (ln04_list,) = resources[f"MeasureReport-LN-04-{PERIOD}-not-met.json"]["group"]
    assert "count" not in ln04_list["population"][0]
    assert resources[f"List-LN-04-{PERIOD}-not-met-patients.json"]["emptyReason"] == {
        "coding": [
            {
                "system": "http://terminology.hl7.org/CodeSystem/list-empty-reason",
                "code": "notstarted",
            }
        ]
    }
    # LN-05 ran with no case: zero counts, no score.
    (ln05,) = resources[f"MeasureReport-LN-05-{PERIOD}-summary.json"]["group"]
    codes = ("initial-population", "denominator", "denominator-exclusion", "numerator")
    assert ln05 == {"population": [_pop(code, 0) for code in codes]}
    ln05_text = resources[f"MeasureReport-LN-05-{PERIOD}-summary.json"]["text"]["div"]
    assert "<p>No case in the denominator: no score.</p>" in ln05_text
    # LN-01: pending is initial population only, excluded is in the denominator and excluded.
    (ln01,) = resources[f"MeasureReport-LN-01-{PERIOD}-summary.json"]["group"]
    assert _counts(ln01) == {
        "initial-population": 8,
        "denominator": 7,
        "denominator-exclusion": 1,
        "numerator": 4,
    }
    assert ln01["measureScore"] == {"value": 4 / 6}
    assert _listed_patients(resources) == {
        "LN-01": ["p04", "p05"],
        "LN-04": [],
        "LN-05": [],
        "LN-07": ["p13"],
    }


def test_the_model_refuses_what_r4_refuses(warehouse, tmp_path):
    # The check the tests rely on can fail: a report without its period, an unknown element.
    folder = write_fhir_export(warehouse, PERIOD, tmp_path)
    report = json.loads((folder / f"MeasureReport-LN-01-{PERIOD}-summary.json").read_text())
    for broken in ({k: v for k, v in report.items() if k != "period"}, {**report, "score": 1}):
        with pytest.raises(pydantic.ValidationError):
            MeasureReport.model_validate(broken)


def test_a_measure_id_that_cannot_be_a_fhir_id_is_refused_before_writing(warehouse, tmp_path):
    warehouse.execute("UPDATE measure_summary SET measure_id = 'LN_07' WHERE measure_id = 'LN-07'")
    with pytest.raises(ReportError, match=r"measure id 'LN_07' cannot name a FHIR resource"):
        write_fhir_export(warehouse, PERIOD, tmp_path / "out")
    assert not (tmp_path / "out").exists()
