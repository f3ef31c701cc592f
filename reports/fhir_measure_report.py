"""`chartaudit export --format fhir`: a period's results as FHIR R4 MeasureReport resources.

The folder ``<out>/chartaudit-YYYY-MM-fhir/`` holds, for the period's newest succeeded run, one
JSON file per resource, named ``<resourceType>-<id>.json``:

- ``MeasureReport-<measure>-<period>-summary``: type summary, one per measure. Its group gives the
  measure's populations and score, and two stratifiers (site, setting) give the same per stratum
  (R4's group.stratifier.stratum: the strata stay tied to the totals they split, and a stratum
  needs no element of its own to say which one it is; docs/decisions.md).
- ``MeasureReport-<measure>-<period>-not-met``: type subject-list, one per measure: one population
  (code ``not-met``) whose subjectResults is the List below, its count the List's length.
- ``List-<measure>-<period>-not-met-patients``: the patients with a not-met case, each once, by
  pseudonymous id (Reference.identifier, no Patient resource is exported).

Counts. chartaudit's denominator (met + not_met) leaves the excluded and pending cases out; FHIR's
proportion score is numerator / (denominator - denominator-exclusion). So: initial-population =
met + not_met + excluded + pending, denominator = met + not_met + excluded, denominator-exclusion =
excluded, numerator = met, measureScore = the rate. Pending cases are in the initial population
only (initial-population - denominator). A denominator of 0 has no score (measureScore left out,
as FHIR allows); a not-computable measure has no counts and no score (its narrative says why).

With ``suppress_below``, the rule of reports/suppression.py (the CSV export's) applies: a hidden
stratum is not written, a hidden `all` row leaves the group without counts, and the patients of
hidden strata are not listed. Every resource is validated with the FHIR model before anything is
written; the JSON has sorted keys and the run's own finishing time, so the same run gives the same
bytes. The folder is built beside its final name and renamed in, owner-only (reports/export.py).
"""

from __future__ import annotations

import html
import json
import shutil
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import duckdb
import polars as pl

# fhir.resources' R4B models: MeasureReport and List are element for element R4's (4.0.1), and no
# release of the package with plain R4 models runs on pydantic 2 (docs/decisions.md).
from fhir.resources.R4B.list import List as FhirList
from fhir.resources.R4B.measurereport import MeasureReport

from chartaudit.audits.period import AuditPeriod, parse_period
from chartaudit.reports.export import OWNER_ONLY_FILE, ExportRun, latest_run, swap_in
from chartaudit.reports.formatting import NOT_RECORDED
from chartaudit.reports.render import ReportError
from chartaudit.reports.suppression import (
    drop_suppressed_cases,
    suppress_summary,
    suppressed_strata,
)

# chartaudit's own names: canonical URLs under a placeholder host (an .example domain resolves
# nowhere); a site publishing its measures replaces it here.
BASE_URL = "https://chartaudit.example/fhir"
MEASURE_URL = f"{BASE_URL}/Measure"
STRATIFIER_SYSTEM = f"{BASE_URL}/CodeSystem/stratifier"
POPULATION_SYSTEM_LOCAL = f"{BASE_URL}/CodeSystem/measure-population"
PATIENT_ID_SYSTEM = f"{BASE_URL}/NamingSystem/patient-id"
RUN_ID_SYSTEM = f"{BASE_URL}/NamingSystem/run-id"

POPULATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/measure-population"
IMPROVEMENT_SYSTEM = "http://terminology.hl7.org/CodeSystem/measure-improvement-notation"
DATA_ABSENT_SYSTEM = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
LIST_EMPTY_SYSTEM = "http://terminology.hl7.org/CodeSystem/list-empty-reason"
XHTML = "http://www.w3.org/1999/xhtml"

# Population code -> the summary columns it adds up (see the module docstring).
POPULATIONS = {
    "initial-population": ("met", "not_met", "excluded", "pending"),
    "denominator": ("met", "not_met", "excluded"),
    "denominator-exclusion": ("excluded",),
    "numerator": ("met",),
}
NOT_MET_CODE = "not-met"
STRATIFIER_KINDS = ("site", "setting")
FHIR_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-.")
FHIR_ID_MAX = 64


def fhir_folder(out_dir: Path, period: str) -> Path:
    """``out_dir/chartaudit-YYYY-MM-fhir``; a period that is not a month raises PeriodError
    before anything is read or written."""
    parse_period(period)
    return Path(out_dir) / f"chartaudit-{period}-fhir"


def write_fhir_export(
    con: duckdb.DuckDBPyConnection,
    period: str,
    out_dir: Path,
    *,
    suppress_below: int | None = None,
    warehouse_name: str = "the warehouse",
) -> Path:
    """Write the period's FHIR folder (replacing an older one) and return its path. A bad period,
    a period without a succeeded run or a resource the FHIR model refuses raises before anything
    is written."""
    target = fhir_folder(out_dir, period)
    run = latest_run(con, period, warehouse_name)
    resources = measure_resources(con, run, suppress_below)
    target.parent.mkdir(parents=True, exist_ok=True)
    # mkdtemp's folder is 0700: nobody else sees the files even before they are renamed in.
    building = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        for resource in resources:
            file = building / f"{resource['resourceType']}-{resource['id']}.json"
            file.write_text(resource_json(resource), encoding="utf-8")
            file.chmod(OWNER_ONLY_FILE)
        swap_in(building, target)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return target


def resource_json(resource: dict[str, Any]) -> str:
    """The resource as it is written: sorted keys, two-space indent, a final newline."""
    return json.dumps(resource, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def measure_resources(
    con: duckdb.DuckDBPyConnection, run: ExportRun, suppress_below: int | None
) -> list[dict[str, Any]]:
    """Per measure: its summary MeasureReport, its subject-list MeasureReport and their List, each
    validated by the FHIR model; by measure id."""
    summary = suppress_summary(_summary(con, run.run_id), suppress_below)
    not_met = drop_suppressed_cases(_not_met(con, run.run_id), suppressed_strata(summary))
    versions = _versions(con, run.run_id)
    context = _Context(run, suppress_below)
    resources = []
    for measure_id in summary["measure_id"].unique().sort().to_list():
        ids = _resource_ids(measure_id, run.period)
        rows = summary.filter(pl.col("measure_id") == measure_id).to_dicts()
        patients = (
            not_met.filter(pl.col("measure_id") == measure_id)["patient_id"].unique().sort()
        ).to_list()
        url = _canonical(measure_id, versions.get(measure_id))
        resources += [
            _validated(MeasureReport, context.summary_report(ids, url, rows)),
            _validated(MeasureReport, context.subject_list_report(ids, url, rows[0], patients)),
            _validated(FhirList, context.patient_list(ids, measure_id, rows, patients)),
        ]
    return resources


def _summary(con: duckdb.DuckDBPyConnection, run_id: str) -> pl.DataFrame:
    # The `all` row first, then site and setting strata by name, the one not recorded last.
    return con.sql(
        "SELECT * FROM latest_measure_summary WHERE run_id = $run_id ORDER BY measure_id,"
        " CASE stratum_kind WHEN 'all' THEN 0 WHEN 'site' THEN 1 ELSE 2 END, stratum NULLS LAST",
        params={"run_id": run_id},
    ).pl()


def _not_met(con: duckdb.DuckDBPyConnection, run_id: str) -> pl.DataFrame:
    return con.sql(
        "SELECT measure_id, period, patient_id, site_id, setting FROM latest_case_results"
        " WHERE run_id = $run_id AND outcome = 'not_met'",
        params={"run_id": run_id},
    ).pl()


def _versions(con: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, str]:
    rows = con.execute(
        "SELECT measure_id, any_value(measure_version) FROM measures WHERE run_id = $run_id"
        " GROUP BY measure_id",
        {"run_id": run_id},
    ).fetchall()
    return dict(rows)


def _canonical(measure_id: str, version: str | None) -> str:
    """The measure's canonical URL, ``|version`` when the run recorded one (FHIR's canonical
    form for a version of a definition)."""
    url = f"{MEASURE_URL}/{measure_id}"
    return f"{url}|{version}" if version else url


def _resource_ids(measure_id: str, period: str) -> dict[str, str]:
    """The measure's three resource ids. A FHIR id takes letters, digits, ``-`` and ``.`` (64 at
    most); a measure id with ``_`` (which measure files allow) is refused, not rewritten, so two
    measures can never share a resource."""
    base = f"{measure_id}-{period}"
    ids = {"summary": f"{base}-summary", "subject_list": f"{base}-not-met"}
    ids["list"] = f"{ids['subject_list']}-patients"
    if not set(measure_id) <= FHIR_ID_CHARS or len(ids["list"]) > FHIR_ID_MAX:
        raise ReportError(
            f"measure id {measure_id!r} cannot name a FHIR resource (letters, digits, - and .;"
            f" {FHIR_ID_MAX - len(ids['list']) + len(measure_id)} characters at most)"
        )
    return ids


def _validated(model: type, resource: dict[str, Any]) -> dict[str, Any]:
    """``resource`` unchanged once the FHIR model has parsed it (a refusal raises)."""
    model.model_validate(resource)
    return resource


def _concept(system: str, code: str, text: str | None = None) -> dict[str, Any]:
    concept: dict[str, Any] = {"coding": [{"system": system, "code": code}]}
    if text:
        concept["text"] = text
    return concept


def _narrative(sentences: list[str]) -> dict[str, str]:
    paragraphs = "".join(f"<p>{html.escape(s)}</p>" for s in sentences)
    return {"status": "generated", "div": f'<div xmlns="{XHTML}">{paragraphs}</div>'}


def _has_counts(row: dict[str, Any]) -> bool:
    """Shown and computed: a suppressed or not-computable row has no counts to give."""
    return not row["suppressed"] and row["denominator"] is not None


def _populations(row: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"code": _concept(POPULATION_SYSTEM, code), "count": sum(row[c] for c in columns)}
        for code, columns in POPULATIONS.items()
    ]


def _scored(row: dict[str, Any]) -> dict[str, Any]:
    """Populations and, when the denominator is not 0, measureScore (the rate, 0..1)."""
    element: dict[str, Any] = {"population": _populations(row)}
    if row["rate"] is not None:
        element["measureScore"] = {"value": row["rate"]}
    return element


def _stratum_value(stratum: str | None) -> dict[str, Any]:
    """A site or setting as text; the stratum of cases with none recorded as data-absent
    `unknown`, so a real site that reads "(not recorded)" stays a different stratum."""
    if stratum is None:
        return _concept(DATA_ABSENT_SYSTEM, "unknown", NOT_RECORDED)
    return {"text": stratum}


def _stratifiers(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    stratifiers = []
    for kind in STRATIFIER_KINDS:
        strata = [
            {"value": _stratum_value(row["stratum"]), **_scored(row)}
            for row in rows
            if row["stratum_kind"] == kind and _has_counts(row)
        ]
        if strata:
            code = _concept(STRATIFIER_SYSTEM, kind, kind)
            stratifiers.append({"code": [code], "stratum": strata})
    return stratifiers


class _Context:
    """What every resource of one export shares: the run, its month and the suppression."""

    def __init__(self, run: ExportRun, suppress_below: int | None) -> None:
        self.run = run
        self.suppress_below = suppress_below
        # AuditPeriod wants a coverage end; only the month's bounds are read here.
        month = AuditPeriod.of(
            run.period, run.timezone, coverage_end=datetime.fromtimestamp(0, UTC)
        )
        zone = ZoneInfo(run.timezone)
        # FHIR's period end includes every instant that matches it: to the second, the month's
        # last second in the run's time zone.
        self.period = {
            "start": month.start.astimezone(zone).isoformat(timespec="seconds"),
            "end": (month.end - timedelta(seconds=1))
            .astimezone(zone)
            .isoformat(timespec="seconds"),
        }
        finished = run.finished_at or month.end
        self.date = finished.astimezone(UTC).isoformat(timespec="seconds")

    def _common(self, resource_id: str, report_type: str, url: str) -> dict[str, Any]:
        return {
            "resourceType": "MeasureReport",
            "id": resource_id,
            "identifier": [{"system": RUN_ID_SYSTEM, "value": self.run.run_id}],
            "status": "complete",
            "type": report_type,
            "measure": url,
            "date": self.date,
            "period": self.period,
        }

    def summary_report(
        self, ids: dict[str, str], url: str, rows: list[dict[str, Any]]
    ) -> dict[str, Any]:
        """The type-summary report: the `all` row (rows[0]) as the group, the strata below it."""
        total = rows[0]
        group = _scored(total) if _has_counts(total) else {}
        stratifiers = _stratifiers(rows)
        if stratifiers:
            group["stratifier"] = stratifiers
        report = self._common(ids["summary"], "summary", url)
        # Every rate is higher-is-better: overuse and safety measures are inverted (met = care
        # followed the guideline).
        report["improvementNotation"] = _concept(IMPROVEMENT_SYSTEM, "increase")
        report["text"] = _narrative(self._summary_sentences(total))
        if group:  # FHIR has no empty elements: a measure with nothing to give has no group
            report["group"] = [group]
        return report

    def _summary_sentences(self, total: dict[str, Any]) -> list[str]:
        sentences = [f"{total['measure_id']}, {self.run.period}, run {self.run.run_id}."]
        if total["status"] == "not_computable":
            sentences.append(f"No counts and no score: {total['status_reason']}.")
        elif total["suppressed"]:
            sentences.append(
                f"Counts withheld: the denominator is under {self.suppress_below}"
                " (--suppress-below)."
            )
        elif total["rate"] is None:
            sentences.append("No case in the denominator: no score.")
        sentences.append(
            "Pending cases (not judged yet) are in the initial population only;"
            " excluded cases are the denominator exclusion."
        )
        if self.suppress_below is not None:
            sentences.append(self._suppression_sentence())
        return sentences

    def _suppression_sentence(self) -> str:
        below = self.suppress_below
        return (
            f"Suppression applied, N = {below}: strata with a denominator of 1 to {below - 1}"
            " (and, where one alone would be hidden, the next-smallest of its kind) are left"
            " out, and so are their patients from the not-met lists."
        )

    def subject_list_report(
        self, ids: dict[str, str], url: str, total: dict[str, Any], patients: list[str]
    ) -> dict[str, Any]:
        """The subject-list report: one population, the not-met patients, as a List."""
        population: dict[str, Any] = {
            "code": _concept(
                POPULATION_SYSTEM_LOCAL,
                NOT_MET_CODE,
                "not met: in the denominator, not in the numerator (patients, each once)",
            ),
            "subjectResults": {"reference": f"List/{ids['list']}"},
        }
        if _has_counts(total):  # a count of 0 would say "none" where nothing can be said
            population["count"] = len(patients)
        report = self._common(ids["subject_list"], "subject-list", url)
        report["group"] = [{"population": [population]}]
        return report

    def patient_list(
        self, ids: dict[str, str], measure_id: str, rows: list[dict[str, Any]], patients: list[str]
    ) -> dict[str, Any]:
        """The List of the not-met patients: pseudonymous ids only."""
        resource: dict[str, Any] = {
            "resourceType": "List",
            "id": ids["list"],
            "status": "current",
            "mode": "snapshot",
            "title": f"{measure_id} {self.run.period}: patients with a not-met case",
            "date": self.date,
        }
        if patients:
            resource["entry"] = [
                {"item": {"type": "Patient", "identifier": _patient_identifier(p)}}
                for p in patients
            ]
        else:
            resource["emptyReason"] = _concept(LIST_EMPTY_SYSTEM, _empty_reason(rows))
        if self.suppress_below is not None:
            resource["note"] = [{"text": self._suppression_sentence()}]
        return resource


def _patient_identifier(patient_id: str) -> dict[str, str]:
    return {"system": PATIENT_ID_SYSTEM, "value": patient_id}


def _empty_reason(rows: list[dict[str, Any]]) -> str:
    """Why a not-met list is empty: not judged this month; withheld when any stratum of the
    measure is suppressed (whether its cases were met or not is not said: that is what is
    hidden); else judged with none to list."""
    if rows[0]["status"] == "not_computable":
        return "notstarted"
    if any(row["suppressed"] for row in rows):
        return "withheld"
    return "nilknown"
