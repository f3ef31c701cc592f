"""The page's DOM contract, the trend charts, the drill-down and suppression, on a report of the
ten-month warehouse (tests/reports/trend_warehouse.py)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from chartaudit.reports import formatting as fmt
from chartaudit.reports.render import render_markdown_summary, render_report
from tests.reports.dom import parse
from tests.reports.trend_warehouse import (
    EVIDENCE_PATIENT,
    MONTHS,
    XSS_DEPARTMENT,
    XSS_SITE,
    build_trend_warehouse,
)

GENERATED_AT = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
CSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"
SUMMARY_FIELDS = {
    "denominator": lambda r: fmt.count(r["denominator"]),
    "met": lambda r: fmt.count(r["met"]),
    "not_met": lambda r: fmt.count(r["not_met"]),
    "excluded": lambda r: fmt.count(r["excluded"]),
    "pending": lambda r: fmt.count(r["pending"]),
    "rate": lambda r: fmt.pct(r["rate"]),
    "ci": lambda r: fmt.ci(r["ci_low"], r["ci_high"]),
}


@pytest.fixture(scope="module")
def trend_con(tmp_path_factory: pytest.TempPathFactory) -> Iterator[duckdb.DuckDBPyConnection]:
    con = build_trend_warehouse(tmp_path_factory.mktemp("trend") / "audit.duckdb")
    try:
        yield con
    finally:
        con.close()


def _render(con: duckdb.DuckDBPyConnection, out: Path, below: int | None = None) -> str:
    path = render_report(con, "2026-10", out, generated_at=GENERATED_AT, suppress_below=below)
    return path.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def page(trend_con, tmp_path_factory) -> str:
    return _render(trend_con, tmp_path_factory.mktemp("page"))


@pytest.fixture(scope="module")
def suppressed_page(trend_con, tmp_path_factory) -> str:
    return _render(trend_con, tmp_path_factory.mktemp("suppressed"), below=6)


def _summary_row(con, attrs: dict[str, str]) -> dict:
    cursor = con.execute(
        "SELECT * FROM latest_measure_summary WHERE measure_id = $m AND period = $p"
        " AND stratum_kind = $k AND coalesce(stratum, '') = $s",
        {"m": attrs["data-measure"], "p": attrs["data-period"],
         "k": attrs["data-stratum-kind"], "s": attrs["data-stratum"]},
    )  # fmt: skip
    names = [d[0] for d in cursor.description]
    rows = cursor.fetchall()
    assert len(rows) == 1, attrs
    return dict(zip(names, rows[0], strict=True))


# ------------------------------------------------------------------------------------------
# The DOM contract.


def test_head_has_the_csp_and_the_page_no_url(page: str) -> None:
    root = parse(page)
    metas = root.find_all("meta", http_equiv="Content-Security-Policy")
    assert [m.attrs["content"] for m in metas] == [CSP]
    assert metas[0].ancestor(lambda e: e.tag == "head") is not None
    assert re.search(r"https?:|ftp:|//\w", page) is None
    assert not root.find_all("img") and not root.find_all("link") and not root.find_all("iframe")


def test_one_section_per_measure_and_one_definition_each(page: str) -> None:
    root = parse(page)
    sections = root.find_all("section", cls="measure")
    assert [(s.attrs["id"], s.attrs["data-measure"]) for s in sections] == [
        ("measure-LN-01", "LN-01"),
        ("measure-LN-06", "LN-06"),
    ]
    appendix = root.find_all("section", id="appendix")
    assert len(appendix) == 1
    articles = appendix[0].find_all("article", cls="definition")
    assert [a.attrs["data-measure"] for a in articles] == ["LN-01", "LN-06"]
    assert "Source: Seed, red flags" in articles[0].text()


def test_every_chart_is_one_svg_with_a_caption_and_its_data(page: str) -> None:
    root = parse(page)
    figures = root.find_all("figure", cls="chart")
    kinds = [(f.attrs["data-chart"], f.attrs["data-measure"]) for f in figures]
    # LN-06 has one month with cases: a p-chart; its only site has 3 cases: a site chart.
    assert kinds == [("pchart", "LN-01"), ("sites", "LN-01"), ("pchart", "LN-06"),
                     ("sites", "LN-06")]  # fmt: skip
    for figure in figures:
        children = figure.elements()
        assert [c.tag for c in children] == ["svg", "figcaption"]
        assert len(figure.find_all("svg")) == 1  # no nested one
        following = figure.next_element()
        assert following.tag == "details" and "chart-data" in following.classes
        assert following.attrs["data-chart"] == figure.attrs["data-chart"]
        assert len(following.find_all("table", cls="data")) == 1
    pchart = root.find_all("details", cls="chart-data", data_chart="pchart", data_measure="LN-01")
    rows = pchart[0].find_all("table")[0].find_all("tr")
    assert [c.text() for c in rows[0].elements()] == [
        "Month", "Denominator", "Rate", "Centre", "Lower limit", "Upper limit", "Signal",
    ]  # fmt: skip
    assert [r.elements()[0].text() for r in rows[1:]] == MONTHS


def test_every_num_cell_has_a_field_and_every_field_a_keyed_source(page: str) -> None:
    root = parse(page)
    nums = root.find_all("td", cls="num")
    assert nums and all(td.attrs.get("data-field") for td in nums)
    for element in root.find_all():
        if "data-field" not in element.attrs:
            continue
        row = element.ancestor(lambda e: "data-source" in e.attrs)
        if row is None:  # a month without a run has no warehouse row: only dashes
            assert element.text() == "\u2014", element.attrs
            continue
        assert row.attrs["data-source"] in {
            "latest_measure_summary", "latest_component_summary", "latest_timing_summary",
            "latest_case_results", "load_counts", "quarantine", "data_quality",
        }  # fmt: skip


def test_every_measure_summary_number_equals_the_warehouse(trend_con, page: str) -> None:
    root = parse(page)
    checked = 0
    for row in root.find_all(data_source="latest_measure_summary"):
        stored = _summary_row(trend_con, row.attrs)
        for cell in [e for e in row.iter() if e.attrs.get("data-field") in SUMMARY_FIELDS]:
            assert cell.text() == SUMMARY_FIELDS[cell.attrs["data-field"]](stored), row.attrs
            checked += 1
    assert checked > 100


def test_the_pchart_numbers_are_the_hand_computed_ones(page: str) -> None:
    root = parse(page)
    details = root.find_all("details", cls="chart-data", data_chart="pchart", data_measure="LN-01")
    rows = [[c.text() for c in r.elements()] for r in details[0].find_all("tr")[1:]]
    # p̄ = 149/200 = 74.5 %; n = 20: 3 sqrt(0.745 * 0.255 / 20) = 0.29246, so the limits are
    # 45.3 % and 103.7 %, clipped to 100 %.
    assert rows[0] == ["2026-01", "20", "80.0 %", "74.5 %", "45.3 %", "100.0 %",
                       "run of 9 above the centre"]  # fmt: skip
    assert rows[8][-1] == "run of 9 above the centre"
    assert rows[9] == ["2026-10", "20", "20.0 %", "74.5 %", "45.3 %", "100.0 %",
                       "below the lower limit"]  # fmt: skip
    caption = root.find_all("figure", data_chart="pchart", data_measure="LN-01")[0].text()
    assert (
        "Signals: 2026-10 below the lower limit; 9 months in a row above the centre (2026-01 to"
        " 2026-09)." in caption
    )
    # LN-06: one month with cases, no limits; an overuse measure says what met means.
    ln06 = root.find_all("figure", data_chart="pchart", data_measure="LN-06")[0].text()
    assert "Limits need 2 or more months with a rate." in ln06
    assert "An overuse measure: met = the unneeded care did not happen" in ln06
    months = root.find_all("details", data_chart="pchart", data_measure="LN-06")[0]
    assert months.find_all("tr")[1].elements()[-1].text() == "no point: no case in the denominator"


def test_change_from_last_month(page: str) -> None:
    root = parse(page)
    row = root.find_all("table", cls="summary")[0].find_all("tr", data_measure="LN-01")[0]
    change = [c for c in row.elements() if c.attrs.get("data-field") == "change"]
    assert [c.text() for c in change] == ["-65.0 pp"]  # 4/20 in October, 17/20 in September
    ln06 = root.find_all("table", cls="summary")[0].find_all("tr", data_measure="LN-06")[0]
    assert ln06.elements()[-1].text() == "\u2014"  # not audited in September


def test_drill_down_rows_are_the_warehouse_not_met_cases(trend_con, page: str) -> None:
    root = parse(page)
    for measure in ("LN-01", "LN-06"):
        section = root.find_all("section", cls="drilldown", data_measure=measure)[0]
        table = section.find_all("table", cls="cases")[0]
        assert table.attrs["id"] == f"cases-{measure}"
        listed = [
            tuple(c.text() for c in row.elements()[:2] + row.elements()[4:5])
            for row in table.find_all("tbody")[0].find_all("tr")
        ]
        stored = trend_con.execute(
            "SELECT patient_id, encounter_id, setting FROM latest_case_results WHERE period ="
            " '2026-10' AND measure_id = $m AND outcome = 'not_met' ORDER BY index_time",
            {"m": measure},
        ).fetchall()
        assert listed == stored
    assert len(listed) == 1


def test_evidence_in_words_and_hostile_names_are_text(page: str) -> None:
    root = parse(page)
    table = root.find_all("table", id="cases-LN-01")[0]
    row = next(r for r in table.find_all("tr") if r.elements()[0].text() == EVIDENCE_PATIENT)
    assert [c.text() for c in row.elements()] == [
        EVIDENCE_PATIENT, f"e-{EVIDENCE_PATIENT}", XSS_SITE, XSS_DEPARTMENT, "emergency",
        "2026-10-05 10:00 -05:00", "no completed spine MRI between A and B",
        "nearest outside the window: MRI lumbar spine without contrast (CPT 72148), order OR1,"
        " ordered 2026-10-05 21:00, performed 2026-10-05 23:30, status completed",
    ]  # fmt: skip
    assert row.elements()[5].attrs["data-sort"] == "2026-10-05T15:00Z"
    # The site and department are text, never markup: no element came of them.
    assert "<script>alert(1)" not in page
    assert page.count("&lt;script&gt;alert(1)&lt;/script&gt;") > 10
    assert [s.text() for s in root.find_all("script")] != []
    assert len(root.find_all("script")) == 1
    assert "=HYPERLINK(&#34;x&#34;)" in page


def test_the_drill_down_script_is_inline_and_complete_without_it(page: str) -> None:
    root = parse(page)
    script = root.find_all("script")[0]
    body = root.find_all("body")[0]
    assert body.elements()[-1] is script and "src" not in script.attrs
    text = "".join(c for c in script.children if isinstance(c, str))
    for contract in ('"case-filter"', '"case-count"', '"aria-controls"', '"sort"', "hidden",
                     "beforeprint", " of ", " cases"):  # fmt: skip
        assert contract in text
    # Without scripting the page has no filter box: the tables are all there is.
    assert not root.find_all("input") and not root.find_all("button")


def test_target_line_is_drawn_and_named(trend_con, tmp_path: Path) -> None:
    trend_con.execute(
        "UPDATE measures SET target = 0.9, target_source = 'Toy guideline 2026'"
        " WHERE run_id = 'r10' AND measure_id = 'LN-01'"
    )
    try:
        root = parse(_render(trend_con, tmp_path))
    finally:
        trend_con.execute("UPDATE measures SET target = NULL, target_source = NULL")
    figure = root.find_all("figure", data_chart="pchart", data_measure="LN-01")[0]
    assert "Target 90.0 % (Toy guideline 2026)." in figure.text()
    definition = root.find_all("article", data_measure="LN-01")[0].text()
    assert "Target: 90.0 % (Toy guideline 2026)" in definition


def test_charts_are_deterministic(trend_con, tmp_path: Path, page: str) -> None:
    again = _render(trend_con, tmp_path)
    svgs = re.findall(r"<svg.*?</svg>", page, flags=re.S)
    assert svgs == re.findall(r"<svg.*?</svg>", again, flags=re.S)
    ids = re.findall(r'\sid="([^"]+)"', page)
    assert len(ids) == len(set(ids))  # no id shared by two charts


# ------------------------------------------------------------------------------------------
# Suppression (below 6): S2 (6) is shown by the primary rule but TINY (2) alone is hidden, so
# S2 goes too; inpatient (2) alone, so urgent_care (6) too; LN-06 (3 cases) is hidden whole.

HIDDEN = [("LN-01", "site", "S2"), ("LN-01", "site", "TINY"), ("LN-01", "setting", "inpatient"),
          ("LN-01", "setting", "urgent_care"), ("LN-06", "all", ""), ("LN-06", "site", "S2"),
          ("LN-06", "setting", "urgent_care")]  # fmt: skip


def test_suppressed_strata_show_no_number(trend_con, suppressed_page: str) -> None:
    root = parse(suppressed_page)
    seen = set()
    for row in root.find_all(data_source="latest_measure_summary", data_period="2026-10"):
        key = (row.attrs["data-measure"], row.attrs["data-stratum-kind"], row.attrs["data-stratum"])
        cells = [e for e in row.iter() if e.attrs.get("data-field") in {*SUMMARY_FIELDS, "change"}]
        if key in HIDDEN:
            seen.add(key)
            assert cells and all(c.text() == "<6" and "suppressed" in c.classes for c in cells)
        else:
            assert not any("suppressed" in c.classes for c in cells), key
    assert seen == set(HIDDEN)
    text = root.text()
    assert "Counts under 6 are suppressed (shown as \u201c<6\u201d)" in text


def test_suppressed_cases_charts_and_parts_are_left_out(suppressed_page: str) -> None:
    root = parse(suppressed_page)
    rows = root.find_all("table", id="cases-LN-01")[0].find_all("tbody")[0].find_all("tr")
    # Only the XSS site's (emergency) not-met cases: October's 4..11.
    assert [r.elements()[0].text() for r in rows] == [f"p10{i:02d}" for i in range(4, 12)]
    assert not root.find_all("table", id="cases-LN-06")
    sites = root.find_all("figure", data_chart="sites", data_measure="LN-01")[0]
    assert "Not drawn, suppressed (<6 or hidden so that a small site cannot be worked out): S2," \
        " TINY." in sites.text()  # fmt: skip
    drawn = root.find_all("details", data_chart="sites", data_measure="LN-01")[0]
    assert [r.attrs["data-stratum"] for r in drawn.find_all("tr")[1:]] == [XSS_SITE]
    # LN-06's only month is hidden: no point to draw, so no chart, and no site chart.
    assert not root.find_all("figure", data_measure="LN-06")
    month = root.find_all("details", data_chart="pchart", data_measure="LN-06")[0]
    assert month.find_all("tr")[-1].elements()[-1].text() == "no point: suppressed"
    section = root.find_all("section", id="measure-LN-06")[0].text()
    assert "Fewer than 6 cases in the denominator this month" in section
    assert "Timing" not in section and "Pending (" not in section


def test_no_suppressed_number_leaks_anywhere(trend_con, suppressed_page: str) -> None:
    # LN-06's October: 3 cases, 2 met: 66.7 % (20.8-93.9 %), 1 not met (33.3 %). None of these
    # is printed in its section, in any table, chart caption or heading.
    root = parse(suppressed_page)
    section = root.find_all("section", id="measure-LN-06")[0].text()
    numbers = set(re.findall(r"(?<![\w.])\d+(?:\.\d+)?", section))
    assert numbers.isdisjoint({"3", "66.7", "33.3", "20.8", "93.9"}), numbers
    assert "66.7" not in suppressed_page and "93.9" not in suppressed_page
    # S2's 6 and TINY's 2 cases of LN-01 are hidden with their rates (0.0 %).
    strata = root.find_all("section", id="measure-LN-01")[0].find_all("table", cls="strata")[0]
    for row in strata.find_all("tr")[1:]:
        if row.attrs["data-stratum"] in {"S2", "TINY", "inpatient", "urgent_care"}:
            assert [c.text() for c in row.elements()[2:]] == ["<6"] * 7


def test_markdown_summary_suppresses_too(trend_con) -> None:
    text = render_markdown_summary(trend_con, "2026-10", suppress_below=6)
    row = next(line for line in text.splitlines() if line.startswith("| LN-06"))
    assert row.count("&lt;6") == 7
    assert "Counts under 6 are suppressed" in text
    assert "| LN-01 Spine MRI within 12 h | 20.0 % |" in text


def test_bad_suppress_below_is_refused(trend_con, tmp_path: Path) -> None:
    from chartaudit.reports.render import ReportError

    with pytest.raises(ReportError, match="suppress_below must be a whole number of 1 or more"):
        _render(trend_con, tmp_path, below=0)
