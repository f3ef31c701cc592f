"""The HTML report and the Markdown summary, rendered from the hand-written warehouse."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import duckdb
import pytest

from chartaudit.reports import render
from chartaudit.reports.render import ReportError, render_markdown_summary, render_report

GENERATED_AT = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
XSS_SITE = "<script>alert(1)</script>"


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


def _text(page: str) -> str:
    """Visible text, tags removed and whitespace collapsed (entities left as written)."""
    body = re.sub(r"<style>.*?</style>", " ", page, flags=re.S)
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
    ] in rows


def test_strata_tables_include_unknown(page: str) -> None:
    rows = _rows(page)
    assert ["Site", "S2", "50.0 %", _ci("9.5", "90.5"), "2", "1", "1", "0", "1"] in rows
    assert ["Site", "unknown", "0.0 %", _ci("0.0", "79.3"), "1", "0", "1", "0", "0"] in rows
    assert ["Setting", "ed", "100.0 %", _ci("51.0", "100.0"), "4", "4", "0", "1", "1"] in rows
    assert ["Setting", "unknown", "100.0 %", _ci("20.7", "100.0"), "1", "1", "0", "0", "0"] in rows


def test_timing_for_the_reference_line_measure(page: str) -> None:
    rows = _rows(page)
    # LN-01 hours to event among met + not_met: 1, 2, 3.5, 6, 20 (one case without a scan).
    assert ["Median hours, index to event", "3.5 h"] in rows
    assert ["90th percentile hours, index to event", "14.4 h"] in rows
    assert ["Within 4.0 h of the index", "3 of 6 (50.0 %)"] in rows
    assert ["Median hours, arrival to event", "5.0 h"] in rows
    assert ["90th percentile hours, arrival to event", "15.6 h"] in rows
    assert page.count("Median hours, index to event") == 1  # only LN-01 has a reference line


def test_not_met_cases_with_evidence_in_local_time(page: str) -> None:
    rows = _rows(page)
    # BST (+01:00) before 25 October 2026, GMT (+00:00) after.
    assert [
        "p05",
        "e-p05",
        "unknown",
        "unknown",
        "2026-10-10 08:00 +01:00",
        'no spine MRI ordered; <b>see chart</b> & "nursing notes"',
    ] in rows
    assert [
        "p04",
        "e-p04",
        "S2",
        "inpatient",
        "2026-10-28 23:30 +00:00",
        "spine MRI (order O-9) at 20.0 h, after the 12 h window",
    ] in rows
    assert [
        "p13",
        "—",
        "S2",
        "outpatient",
        "2026-10-31 23:00 +00:00",
        "no monofilament exam in the 12 months to 2026-10-31",
    ] in rows
    # Met, excluded and pending cases are not listed as not met.
    for patient in ("p01", "p06", "p07", "p11"):
        assert f"<td>{patient}</td>" not in page
    text = _text(page)
    assert "Not met (2)" in text
    assert "1 pending: window still open at coverage end; judged again next month." in text


def test_every_value_is_escaped(page: str) -> None:
    assert XSS_SITE not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script" not in page.lower()
    assert "<b>see chart</b>" not in page
    assert "&lt;b&gt;see chart&lt;/b&gt; &amp; &#34;nursing notes&#34;" in page


def test_self_contained(page: str) -> None:
    assert "http" not in page.lower()
    assert "<link" not in page.lower()
    assert "src=" not in page.lower()
    assert "<style>" in page


def test_data_quality_section(page: str) -> None:
    rows = _rows(page)
    assert ["encounters", "encounters.csv", "100", "98", "2"] in rows
    assert ["orders", "orders_1.csv, orders_2.csv", "50", "46", "4"] in rows
    assert ["orders", "col_10", "rule_10", "11", "orders_1.csv line 1010"] in rows
    assert ["orders", "col_01", "rule_01", "2", "orders_1.csv line 110"] in rows
    assert not any(row[:3] == ["orders", "col_00", "rule_00"] for row in rows)  # 11th of 10
    assert "old_rule" not in page
    assert "66 problems found in 11 (table, column, rule) groups" in _text(page)


def test_not_met_list_is_capped(
    warehouse: duckdb.DuckDBPyConnection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(render, "NOT_MET_ROW_CAP", 1)
    page = render_report(warehouse, "2026-10", tmp_path).read_text(encoding="utf-8")
    assert "<td>p05</td>" in page  # the earliest index time is kept
    assert "<td>p04</td>" not in page
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
    assert len([line for line in lines if line.startswith("| LN-")]) == 3
    assert "r-new" in lines[0]
    assert "OLD" not in text


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


def test_also_reported_facts_are_counted_over_all_cases(warehouse, tmp_path) -> None:
    flag = "loss of protective sensation (abnormal 10-g monofilament in the 12 months)"
    cases = warehouse.execute(
        "SELECT count(*) FROM latest_case_results WHERE period = '2026-10' AND measure_id = 'LN-07'"
    ).fetchone()[0]
    warehouse.execute(
        "UPDATE case_results SET flags = [$flag] WHERE run_id = 'r-new' AND measure_id = 'LN-07'"
        " AND patient_id IN (SELECT min(patient_id) FROM case_results"
        " WHERE run_id = 'r-new' AND measure_id = 'LN-07')",
        {"flag": flag},
    )
    path = render_report(warehouse, "2026-10", tmp_path / "flags", generated_at=GENERATED_AT)
    rows = _rows(path.read_text(encoding="utf-8"))
    assert [flag, "1", str(cases)] in rows
    assert cases > 1
