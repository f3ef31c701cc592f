"""The HTML report and the Markdown summary, rendered from the hand-written warehouse."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import duckdb
import pytest

from chartaudit.reports import render
from chartaudit.reports.formatting import NOT_RECORDED
from chartaudit.reports.render import ReportError, render_markdown_summary, render_report
from tests.reports.conftest import (
    DQ_XSS,
    LARGE,
    LOPS,
    REFLEXES,
    REJUDGED_XSS,
    SLR,
    SMALL,
    summarise_run,
)

GENERATED_AT = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
XSS_SITE = "<script>alert(1)</script>"
TO = "\u2192"  # what a case was -> what it became


def _ci(low: str, high: str) -> str:
    """An interval as the report prints it (an en dash between the percentages)."""
    return f"{low}\u2013{high} %"


class _Tables(HTMLParser):
    """Every table's rows as lists of cell texts (entities decoded, whitespace collapsed)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: list[list[list[str]]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def _rows(page: str) -> list[list[str]]:
    parser = _Tables()
    parser.feed(page)
    return [row for table in parser.tables for row in table]


def _without_own_script(page: str) -> str:
    """The page without its one script (the drill-down's), which ends the body."""
    start = page.index("<script>")
    assert page.index("</script>") == page.rindex("</script>")  # only one
    return page[:start] + page[page.index("</script>") :]


def _text(page: str) -> str:
    """Visible text, tags removed and whitespace collapsed (entities left as written)."""
    body = re.sub(r"<style>.*?</style>", " ", page, flags=re.S)
    body = re.sub(r"</?(?:span|a)\b[^>]*>", "", body)  # inline: no word break
    return " ".join(re.sub(r"<[^>]+>", " ", body).split())


@pytest.fixture
def page(warehouse: duckdb.DuckDBPyConnection, tmp_path: Path) -> str:
    path = render_report(warehouse, "2026-10", tmp_path / "out", generated_at=GENERATED_AT)
    assert path == tmp_path / "out" / "chartaudit-2026-10.html"
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temporary left
    return path.read_text(encoding="utf-8")


def test_header_shows_the_latest_succeeded_run(page: str) -> None:
    text = _text(page)  # the header is a <dl>: check its visible text
    assert "Audit month 2026-10" in text
    assert "Rule set source-2025" in text
    assert "Run r-new (finished 2026-11-05 08:05 +00:00)" in text
    assert "Extract x-2026-10-b" in text
    assert "Time zone Europe/London" in text
    assert "Data cover up to 2026-11-04 23:59 +00:00" in text
    assert "Code version 0.1.0" in text
    assert "Report generated 2026-11-20 09:30 +00:00" in text
    # Nothing from the older succeeded run or the later failed run.
    for stale in ("r-old", "r-fail", "x-old", "OLDSITE", "FAILSITE", "OLD", "FAILED RUN", "7,777"):
        assert stale not in page


def test_summary_table_counts_rates_and_intervals(page: str) -> None:
    rows = _rows(page)
    assert [
        "LN-01",
        "Spine MRI within 12 h of a cauda equina red flag",
        "1",
        "66.7 %",
        _ci("30.0", "90.3"),
        "6",
        "4",
        "2",
        "1",
        "1",
        "-8.3 pp",  # 2026-09's latest run (the rejudge run): 3 of 4 = 75.0 %
    ] in rows
    assert [
        "LN-05",
        "Spine MRI within 2 weeks for intermediate-risk leg numbness",
        "1",
        "—",
        "—",
        "0",
        "0",
        "0",
        "0",
        "0",
        "—",
    ] in rows
    assert [
        "LN-07",
        "Annual 10-g monofilament screening in diabetes",
        "2",
        "66.7 %",
        _ci("20.8", "93.9"),
        "3",
        "2",
        "1",
        "0",
        "0",
        "—",  # 2026-09 has no LN-07 case: no rate to compare
    ] in rows


def test_strata_tables_include_the_cases_with_no_site_or_setting(page: str) -> None:
    rows = _rows(page)
    assert ["Site", "S2", "50.0 %", _ci("9.5", "90.5"), "2", "1", "1", "0", "1"] in rows
    assert ["Site", NOT_RECORDED, "0.0 %", _ci("0.0", "79.3"), "1", "0", "1", "0", "0"] in rows
    assert ["Setting", "ed", "100.0 %", _ci("51.0", "100.0"), "4", "4", "0", "1", "1"] in rows
    assert ["Setting", NOT_RECORDED, "100.0 %", _ci("20.7", "100.0"), "1", "1", "0", "0", "0"] in (
        rows
    )
    # The label is its own element and the row's stratum is empty (NULL), so a real value that
    # reads the same is told apart; the note says so under each table that has such a row.
    ln01 = _section(page, "LN-01")
    missing = '<em class="not-recorded">(not recorded)</em>'
    # Sites: in the site chart's data and in the strata table.
    assert ln01.count('data-stratum-kind="site" data-stratum="">') == 2
    assert f'data-stratum-kind="site" data-stratum="">\n      <td>{missing}</td>' in ln01
    assert ln01.count('data-stratum-kind="setting" data-stratum="">') == 1
    assert f"<td>Site</td>\n      <td>{missing}</td>" in ln01
    assert f"<td>Setting</td>\n      <td>{missing}</td>" in ln01
    note = "in italics, groups the cases whose site or setting the extract does not record"
    assert note in _text(ln01)
    assert note not in _text(_section(page, "LN-04"))  # every LN-04 case has both


def _section(page: str, measure_id: str) -> str:
    """The HTML of one measure's detail section."""
    start = page.index(
        f'<section class="measure" id="measure-{measure_id}" data-measure="{measure_id}">'
    )
    ends = [page.find('<section class="measure"', start + 1), page.index('<section id="appendix">')]
    return page[start : min(end for end in ends if end > 0)]


def test_timing_for_the_reference_line_measure(page: str) -> None:
    # From timing_summary. LN-01 hours to event among met + not_met: 1, 2, 3.5, 6, 20 (p04's
    # late scan) and p05 without a scan; the excluded p06's scan at 0.5 h counts nowhere.
    rows = _rows(_section(page, "LN-01"))
    timing = rows[rows.index(["Cases in the denominator", "6"]) :][:8]
    assert timing == [
        ["Cases in the denominator", "6"],
        ["Cases with the event recorded", "5"],
        ["Median hours, index to event", "3.5 h"],
        ["90th percentile hours, index to event", "14.4 h"],
        ["Median hours, arrival to event", "5.0 h"],
        ["90th percentile hours, arrival to event", "15.6 h"],
        ["Within 4 h of the index (reference line, not the pass mark)", "3 of 6 (50.0 %)"],
        ["Within 12 h of the index (the window: the pass mark)", "4 of 6 (66.7 %)"],
    ]
    text = _text(_section(page, "LN-01"))
    assert "The 4 h line is reported for reference, not the pass mark" in text
    assert (
        "A not-met case's event time is its late event (after the window) when there is one, so "
        "the times include late events; cases without any event are counted in the denominator "
        "but have no time."
    ) in text
    # LN-05 (timeliness) has a row but no case at all: its section says "No case this month" and
    # shows no timing. LN-04 and LN-07 have no row.
    assert page.count("Median hours, index to event") == 1
    for measure_id in ("LN-04", "LN-05", "LN-07"):
        assert "Timing" not in _section(page, measure_id)


def test_measures_with_no_case_in_the_denominator(
    warehouse: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    warehouse.execute(
        "UPDATE case_results SET outcome = 'excluded' WHERE run_id = 'r-new'"
        " AND measure_id IN ('LN-01', 'LN-04', 'LN-07') AND outcome IN ('met', 'not_met')"
    )
    summarise_run(warehouse, "r-new")
    page = render_report(warehouse, "2026-10", tmp_path).read_text(encoding="utf-8")
    assert "No case in the denominator this month, so no timing to report." in _text(
        _section(page, "LN-01")
    )
    assert (
        f"No case in the denominator this month, so no component rates ({SMALL}; {LARGE}; "
        f"{REFLEXES}; {SLR})."
    ) in _text(_section(page, "LN-04"))
    assert (
        f"No case in the denominator this month, so nothing to report beside the rate ({LOPS})."
    ) in _text(_section(page, "LN-07"))
    assert "No case this month" not in page.replace(_section(page, "LN-05"), "")


def test_timing_in_days_for_a_two_week_window(
    warehouse: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    # LN-05 (14 d = 336 h): scans at 50 h, 216 h and (late, not met) 400 h, and one never
    # scanned. Median 216; p90 at rank 1.8: 216 + 0.8 * 184 = 363.2. Arrival 2.4 h earlier.
    def case(patient: str, outcome: str, hours: float | None) -> tuple:
        return (patient, outcome, hours, None if hours is None else hours + 2.4)

    for patient, outcome, hours, arrival in (
        case("p31", "met", 50.0),
        case("p32", "met", 216.0),
        case("p33", "not_met", 400.0),
        case("p34", "not_met", None),
    ):
        warehouse.execute(
            "INSERT INTO case_results (run_id, period, measure_id, measure_version, unit,"
            " patient_id, index_time, outcome, evidence, hours_to_event, hours_from_arrival)"
            " VALUES ('r-new', '2026-10', 'LN-05', '1', 'episode', ?, TIMESTAMPTZ"
            " '2026-10-02 10:00:00+00', ?, 'e', ?, ?)",
            [patient, outcome, hours, arrival],
        )
    summarise_run(warehouse, "r-new")
    page = render_report(warehouse, "2026-10", tmp_path).read_text(encoding="utf-8")
    rows = _rows(_section(page, "LN-05"))
    timing = rows[rows.index(["Cases in the denominator", "4"]) :][:7]
    assert timing == [
        ["Cases in the denominator", "4"],
        ["Cases with the event recorded", "3"],
        ["Median hours, index to event", "216.0 h (9.0 d)"],
        ["90th percentile hours, index to event", "363.2 h (15.1 d)"],
        ["Median hours, arrival to event", "218.4 h (9.1 d)"],
        ["90th percentile hours, arrival to event", "365.6 h (15.2 d)"],
        ["Within 14 d of the index (the window: the pass mark)", "2 of 4 (50.0 %)"],
    ]
    assert "reference line" not in _section(page, "LN-05")


def test_not_met_cases_with_evidence_in_local_time(page: str) -> None:
    rows = _rows(page)
    # BST (+01:00) before 25 October 2026, GMT (+00:00) after.
    # patient, encounter, site, department, setting, index time, reason, evidence in words.
    # This warehouse has no canonical tables and its cases no evidence ids: the judge's words
    # are the reason (tests/reports/test_cases.py resolves ids into words).
    none_found = "no qualifying record found"
    assert [
        "p05",
        "e-p05",
        NOT_RECORDED,
        NOT_RECORDED,
        NOT_RECORDED,
        "2026-10-10 08:00 +01:00",
        'no spine MRI ordered; <b>see chart</b> & "nursing notes"',
        none_found,
    ] in rows
    assert [
        "p04",
        "e-p04",
        "S2",
        NOT_RECORDED,  # this warehouse has no encounters table: no department
        "inpatient",
        "2026-10-28 23:30 +00:00",
        "spine MRI (order O-9) at 20.0 h, after the 12 h window",
        none_found,
    ] in rows
    assert [
        "p13",
        "—",
        "S2",
        NOT_RECORDED,
        "outpatient",
        "2026-10-31 23:00 +00:00",
        "no monofilament exam in the 12 months to 2026-10-31",
        none_found,
    ] in rows
    missing = '<em class="not-recorded">(not recorded)</em>'
    for field in ("site_id", "department", "setting"):
        assert f'<td data-field="{field}">{missing}</td>' in page
    # Met, excluded and pending cases are not listed as not met.
    assert '<td data-field="patient_id">p05</td>' in page
    for patient in ("p01", "p06", "p07", "p11"):
        assert f'<td data-field="patient_id">{patient}</td>' not in page
    text = _text(page)
    assert "Not met (2)" in text
    assert "1 pending: window still open at coverage end; judged again next month." in text


def test_every_value_is_escaped(page: str) -> None:
    assert XSS_SITE not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script" not in _without_own_script(page).lower()
    assert "<b>see chart</b>" not in page
    assert "&lt;b&gt;see chart&lt;/b&gt; &amp; &#34;nursing notes&#34;" in page


def test_self_contained(page: str) -> None:
    assert re.search(r"https?:|ftp:|//\w", page.lower()) is None  # no URL of any kind
    assert "<link" not in page.lower()
    assert "src=" not in page.lower()
    assert "<style>" in page
    # References stay inside the page: each chart's own ids.
    assert set(re.findall(r'(?:href="|url\()(.)', page)) <= {"#"}
    assert (
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; style-src'
        " 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">"
    ) in page


def test_every_num_cell_has_a_data_field(page: str) -> None:
    cells = re.findall(r'<td class="num[^"]*"[^>]*>', page)
    assert len(cells) > 100
    assert [c for c in cells if "data-field=" not in c] == []
    assert '<tr data-source="load_counts" data-run="r-new" data-table-name="orders">' in page
    assert '<td class="num" data-field="quarantined_rows">4</td>' in page


def test_data_quality_section(page: str) -> None:
    rows = _rows(page)
    # table, files, input, loaded, of them with warnings, quarantined
    assert ["encounters", "encounters.csv", "100", "98", "3", "2"] in rows
    assert ["orders", "orders_1.csv, orders_2.csv", "50", "46", "1", "4"] in rows
    assert ["orders", "col_10", "rule_10", "11", "orders_1.csv line 1010"] in rows
    assert ["orders", "col_01", "rule_01", "2", "orders_1.csv line 110"] in rows
    assert not any(row[:3] == ["orders", "col_00", "rule_00"] for row in rows)  # 11th of 10
    assert "old_rule" not in page
    assert "66 problems found in 11 (table, column, rule) groups" in _text(page)


def test_data_quality_warnings_are_listed_beside_quarantine(page: str) -> None:
    start = page.index('<h3 id="data-quality-warnings">')
    section = page[start : page.index("</section>", start)]
    assert _rows(section)[1:] == [
        # table, column, rule, count, first line, first value
        [
            "encounters",
            "departure_time",
            "time_order",
            "3",
            "encounters.csv line 5",
            "departure 5 before arrival_time",
        ],
        ["orders", "performed_time", "time_order", "1", "orders_1.csv line 12", DQ_XSS],
    ]
    assert "4 warnings in 2 (table, column, rule) groups" in _text(section)
    assert "<b onmouseover" not in page
    assert "&lt;b onmouseover=&#34;alert(4)&#34;&gt;late&lt;/b&gt;" in section
    assert "old_warning" not in page


def test_not_met_list_is_capped(
    warehouse: duckdb.DuckDBPyConnection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(render, "NOT_MET_ROW_CAP", 1)
    page = render_report(warehouse, "2026-10", tmp_path).read_text(encoding="utf-8")
    assert '<td data-field="patient_id">p05</td>' in page  # the earliest index time is kept
    assert '<td data-field="patient_id">p04</td>' not in page
    assert "Not met (2)" in _text(page)
    assert (
        "Only the first 1 not-met cases (earliest index time) are listed; 1 more were omitted"
        in (_text(page))
    )


def test_run_without_time_zone_falls_back_to_utc(
    warehouse: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    warehouse.execute("UPDATE runs SET timezone = NULL WHERE run_id = 'r-new'")
    page = render_report(warehouse, "2026-10", tmp_path).read_text(encoding="utf-8")
    assert "the run recorded no time zone; times are shown in UTC" in page
    assert "2026-10-10 07:00 +00:00" in page


def test_no_succeeded_run_is_a_clear_error(
    warehouse: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    for period in ("2026-12", "2026-11"):  # nothing at all; only a failed run
        with pytest.raises(ReportError, match=f"no succeeded run for period {period} in ") as info:
            render_report(warehouse, period, tmp_path / "out")
        assert "audit.duckdb" in str(info.value)
        assert "chartaudit run" in str(info.value)
        with pytest.raises(ReportError):
            render_markdown_summary(warehouse, period)
    assert not (tmp_path / "out").exists()


def test_bad_period_is_rejected(warehouse: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    for period in ("../2026-10", "2026-13", "2026-1", "2026-10/x"):
        with pytest.raises(ReportError, match="YYYY-MM"):
            render_report(warehouse, period, tmp_path)


def test_empty_warehouse_is_a_clear_error(tmp_path: Path) -> None:
    con = duckdb.connect()
    with pytest.raises(ReportError, match="in-memory warehouse"):
        render_report(con, "2026-10", tmp_path)


def test_markdown_summary(warehouse: duckdb.DuckDBPyConnection) -> None:
    text = render_markdown_summary(warehouse, "2026-10")
    lines = text.splitlines()
    assert lines[2] == (
        "| Measure | Rate | 95 % CI | Denominator | Met | Not met | Excluded | Pending |"
    )
    assert (
        "| LN-01 Spine MRI within 12 h of a cauda equina red flag | 66.7 % | "
        + _ci("30.0", "90.3")
        + " "
        "| 6 | 4 | 2 | 1 | 1 |"
    ) in lines
    assert "| LN-05 Spine MRI within 2 weeks for intermediate-risk leg numbness | — | — " in text
    assert [line[:7] for line in lines if line.startswith("| LN-")] == [
        "| LN-01",
        "| LN-04",
        "| LN-05",
        "| LN-07",
    ]
    assert "r-new" in lines[0]
    assert "OLD" not in text
    assert lines[-2:] == [
        "",
        f"Pending cases of earlier months judged again by this run: 2026-09 LN-01: 2 pending {TO}"
        f" met, 1 pending {TO} not met; 2026-09 LN-05: 1 pending {TO} met.",
    ]


def test_markdown_summary_without_cases_judged_again(warehouse) -> None:
    warehouse.execute("DELETE FROM rejudged_cases")
    lines = render_markdown_summary(warehouse, "2026-10").splitlines()
    assert lines[-1].startswith("| LN-07 ")
    assert not any("judged again" in line for line in lines)


def test_markdown_summary_of_a_rejudged_month(warehouse) -> None:
    lines = render_markdown_summary(warehouse, "2026-09").splitlines()
    assert "r-sep-rj" in lines[0]
    assert lines[-1] == (
        "Pending cases of this month judged again by run r-new on extract x-2026-10-b: 2026-09 "
        f"LN-01: 2 pending {TO} met, 1 pending {TO} not met; 2026-09 LN-05: 1 pending {TO} met."
    )


def test_markdown_escapes_pipes(warehouse: duckdb.DuckDBPyConnection) -> None:
    warehouse.execute(
        "UPDATE measures SET title = 'MRI | scan\nwithin <2> weeks' "
        "WHERE run_id = 'r-new' AND measure_id = 'LN-05'"
    )
    row = next(
        line
        for line in render_markdown_summary(warehouse, "2026-10").splitlines()
        if "LN-05" in line
    )
    assert row.startswith("| LN-05 MRI \\| scan within &lt;2&gt; weeks | — |")
    assert row.count(" | ") == 7  # 8 cells, no extra column from the title's pipe


def test_every_measure_of_the_run_has_a_section(page: str) -> None:
    ids = re.findall(r'<section class="measure" id="measure-([^"]+)" data-measure="\1">', page)
    assert ids == ["LN-01", "LN-04", "LN-05", "LN-07"]
    assert "No case this month: no chart matched the measure, so there is no rate." in _text(
        _section(page, "LN-05")
    )
    assert "No case this month" not in _section(page, "LN-01")


def test_component_table(page: str) -> None:
    rows = _rows(_section(page, "LN-04"))
    start = rows.index(["Component", "Cases with it", "Denominator", "Rate", "95 % interval"])
    # In the measure file's order; the excluded and the pending case count for none.
    assert rows[start + 1 : start + 5] == [
        [SMALL, "2", "3", "66.7 %", _ci("20.8", "93.9")],
        [LARGE, "1", "3", "33.3 %", _ci("6.1", "79.2")],
        [REFLEXES, "1", "3", "33.3 %", _ci("6.1", "79.2")],
        [SLR, "0", "3", "0.0 %", _ci("0.0", "56.1")],  # a component no case has
    ]
    assert "Also reported" not in _section(page, "LN-04")
    assert "Component" not in _section(page, "LN-07")


def test_also_reported_table_counts_the_denominator_cases(page: str) -> None:
    # From component_summary (kind also_report): among met + not met, no longer over all cases.
    rows = _rows(_section(page, "LN-07"))
    start = rows.index(["Fact", "Cases with it", "Denominator", "Share", "95 % interval"])
    assert rows[start + 1 : start + 2] == [[LOPS, "1", "3", "33.3 %", _ci("6.1", "79.2")]]
    assert page.count("<h4>Also reported</h4>") == 1


def test_version_and_rule_set_change_line(page: str) -> None:
    ln07 = _text(_section(page, "LN-07"))
    assert "Version 2, rule set source-2025." in ln07
    assert (
        "Rule set source-2025 (version 2): Counts a SNOMEDCT 134388005 finding as well as a LOCAL"
        " monofilament_10g one."
    ) in ln07
    ln01 = _text(_section(page, "LN-01"))
    assert "Version 1, rule set source-2025." in ln01
    assert page.count('<p class="ruleset">') == 1  # only LN-07's version changes anything


def _judged_again(page: str) -> str:
    start = page.index('<section id="judged-again">')
    return page[start : page.index("</section>", start)]


def test_earlier_months_judged_again(page: str) -> None:
    section = _judged_again(page)
    text = _text(section)
    assert "Earlier months judged again" in text
    assert f"2026-09 LN-01: 2 pending {TO} met, 1 pending {TO} not met" in text
    assert f"2026-09 LN-05: 1 pending {TO} met" in text
    assert "2026-09 LN-05: Spine MRI within 2 weeks" in text
    rows = _rows(section)
    header = ["Patient (pseudonym)", "Encounter", "Index time (local)", "Was", "Now", "Evidence"]
    assert rows == [
        header,
        ["s02", "e-s02", "2026-09-30 21:00 +01:00", "pending", "met", "spine MRI at 10.0 h"],
        ["s03", "e-s03", "2026-09-30 22:30 +01:00", "pending", "met", "spine MRI at 11.5 h"],
        ["s04", "e-s04", "2026-09-30 23:00 +01:00", "pending", "not met", REJUDGED_XSS],
        header,
        ["s05", "e-s05", "2026-09-25 11:00 +01:00", "pending", "met", "spine MRI at 100.0 h"],
    ]


def test_cases_judged_again_are_capped(
    warehouse: duckdb.DuckDBPyConnection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(render, "REJUDGED_ROW_CAP", 1)
    section = _judged_again(render_report(warehouse, "2026-10", tmp_path).read_text("utf-8"))
    patients = [row[0] for row in _rows(section) if row[0] != "Patient (pseudonym)"]
    assert patients == ["s02", "s05"]
    text = _text(section)
    assert f"2026-09 LN-01: 2 pending {TO} met, 1 pending {TO} not met" in text  # counts stay
    assert "Only the first 1 cases (earliest index time) are listed; 2 more were omitted." in text
    assert text.count("more were omitted") == 1


def test_no_earlier_month_judged_again_is_one_sentence(
    warehouse: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    warehouse.execute("DELETE FROM rejudged_cases")
    section = _judged_again(render_report(warehouse, "2026-10", tmp_path).read_text("utf-8"))
    assert _text(section) == (
        "Earlier months judged again No pending case of an earlier month was judged again by this"
        " run."
    )


@pytest.fixture
def september(warehouse: duckdb.DuckDBPyConnection, tmp_path: Path) -> str:
    path = render_report(warehouse, "2026-09", tmp_path / "sep", generated_at=GENERATED_AT)
    return path.read_text(encoding="utf-8")


def test_a_rejudged_month_says_so_in_its_header(september: str) -> None:
    text = _text(september[: september.index("</header>")])
    assert "Run r-sep-rj (finished 2026-11-05 08:04 +00:00)" in text
    assert (
        "Judged again pending cases judged again by run r-new on extract x-2026-10-b; first"
        " audited by run r-sep"
    ) in text
    assert "Extract x-2026-10-b" in text
    # The final outcomes: LN-01 3 met (s01, s02, s03) and 1 not met (s04), nothing pending.
    assert [
        "LN-01",
        "Spine MRI within 12 h of a cauda equina red flag",
        "1",
        "75.0 %",
        _ci("30.1", "95.4"),
        "4",
        "3",
        "1",
        "0",
        "0",
        "—",  # 2026-08 has no run
    ] in _rows(september)


def test_a_rejudged_month_lists_its_own_cases_judged_again(september: str) -> None:
    section = _judged_again(september)
    text = _text(section)
    assert "Pending cases of this month judged again" in text
    assert "Run r-new judged again the cases of this month that were pending in run r-sep" in text
    assert f"2026-09 LN-01: 2 pending {TO} met, 1 pending {TO} not met" in text
    assert [row[0] for row in _rows(section)][1:4] == ["s02", "s03", "s04"]


def test_a_rejudged_months_data_quality_is_the_triggering_runs(september: str) -> None:
    start = september.index("<h2>Data quality</h2>")
    section = september[start : september.index("</section>", start)]
    assert (
        "A rejudge run loads no data of its own: the rows below are those of the run that"
        " triggered it, r-new, which loaded extract x-2026-10-b."
    ) in _text(section)
    rows = _rows(section)
    assert ["encounters", "encounters.csv", "100", "98", "3", "2"] in rows  # r-new's
    assert ["orders", "col_10", "rule_10", "11", "orders_1.csv line 1010"] in rows
    assert "66 problems found in 11 (table, column, rule) groups" in _text(section)
    # Nothing of the first audit's own loading (r-sep), nor of any other run.
    for other in ("september_encounters.csv", "sep_rule", "x-2026-09", "7,777", "old_rule"):
        assert other not in september


def test_the_new_sections_escape_what_they_print(
    warehouse: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    hostile = '<img src=x onerror="alert(3)">&'
    warehouse.execute(
        "UPDATE measures SET changes = $h WHERE run_id = 'r-new' AND measure_id = 'LN-07'",
        {"h": hostile},
    )
    warehouse.execute(
        "UPDATE component_summary SET name = $h WHERE run_id = 'r-new' AND name = $n",
        {"h": hostile, "n": SLR},
    )
    warehouse.execute(
        "UPDATE rejudged_cases SET patient_id = $h WHERE patient_id = 's05'", {"h": hostile}
    )
    for period in ("2026-10", "2026-09"):
        page = render_report(warehouse, period, tmp_path / period).read_text(encoding="utf-8")
        assert "<img" not in page and "<i>" not in page
        assert "<script" not in _without_own_script(page).lower()
        assert (
            "&lt;script&gt;alert(&#34;again&#34;)&lt;/script&gt; &amp; &lt;i&gt;late&lt;/i&gt;"
            in (page)
        )
        escaped = "&lt;img src=x onerror=&#34;alert(3)&#34;&gt;&amp;"
        # 2026-10: the changes line, the component's name in its cell and in its row's data-name,
        # the case judged again; 2026-09: the case judged again.
        assert page.count(escaped) == (4 if period == "2026-10" else 1)
    # The Markdown line escapes them too.
    warehouse.execute("UPDATE rejudged_cases SET measure_id = 'LN|<b>' WHERE patient_id = $h",
                      {"h": hostile})  # fmt: skip
    line = render_markdown_summary(warehouse, "2026-10").splitlines()[-1]
    assert f"2026-09 LN\\|&lt;b&gt;: 1 pending {TO} met." in line


def test_an_older_warehouse_is_a_clear_error(
    warehouse: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    warehouse.execute("DROP VIEW latest_component_summary")
    with pytest.raises(ReportError, match="older chartaudit"):
        render_report(warehouse, "2026-10", tmp_path)


def test_a_warehouse_from_before_targets_and_definitions_still_reports(
    warehouse: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    for column in ("target", "target_source", "definition"):
        warehouse.execute(f"ALTER TABLE measures DROP COLUMN {column}")
    page = render_report(warehouse, "2026-10", tmp_path).read_text(encoding="utf-8")
    start = page.index('<article class="definition" id="definition-LN-01"')
    article = _text(page[start : page.index("</article>", start)])
    assert "Source: src" in article
    assert (
        "This run did not record the definition in words (it was written by an older chartaudit,"
        " or the measure is not in its catalogue); chartaudit measures show LN-01 prints the"
        " current one."
    ) in article
    assert "Target" not in article
