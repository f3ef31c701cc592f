"""The report as a reader's browser shows it: it loads cleanly and offline, every chart and table
is on screen, the drill-down filter and sort work (and the table is whole without scripting),
hostile names stay text, and it prints on A4 and Letter."""

from __future__ import annotations

import re
import struct

import pytest

from chartaudit.reports.render import NOT_MET_ROW_CAP
from tests.reports.browser.conftest import FORMULA_SITE, REPORT_PERIOD, XSS_SITE

pytestmark = pytest.mark.browser

CSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"

# What the browser lays out and shows, per element: a box of non-zero size, not hidden by CSS.
VISIBLE_JS = """el => {
    const box = el.getBoundingClientRect();
    const style = getComputedStyle(el);
    return box.width > 0 && box.height > 0 && style.visibility !== 'hidden'
        && style.display !== 'none';
}"""


def test_the_harness_sees_requests_console_errors_and_dialogs(visit, tmp_path):
    """The recorders the tests below rely on do catch what they are meant to catch."""
    page = tmp_path / "noisy.html"
    page.write_text(
        "<!doctype html><title>noisy</title>"
        '<img src="https://example.invalid/pixel.png">'
        '<img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=">'
        "<script>console.error('bad'); alert('hi'); null.x;</script>",
        encoding="utf-8",
    )
    seen = visit(page.as_uri())
    assert seen.requests == [page.as_uri(), "https://example.invalid/pixel.png"]
    # The blocked image is a console error too (in either order).
    assert sorted(seen.console) == ["error: Failed to load resource: net::ERR_FAILED", "error: bad"]
    assert seen.dialogs == ["alert: hi"]
    assert len(seen.errors) == 1 and "null" in seen.errors[0]


def test_the_page_loads_offline_without_a_console_message_or_error(visit, demo_report):
    seen = visit(demo_report.url)
    # The file itself, and nothing else: no font, script, style or image from anywhere.
    assert seen.requests == [demo_report.url]
    assert seen.console == []
    assert seen.errors == []
    assert seen.dialogs == []


def test_the_page_declares_a_content_security_policy_that_allows_nothing_external(
    visit, demo_report
):
    page = visit(demo_report.url).page
    policies = page.locator('head meta[http-equiv="Content-Security-Policy"]')
    assert policies.count() == 1
    assert policies.get_attribute("content") == CSP


def measure_ids(report) -> list[str]:
    with report.connect() as con:
        rows = con.execute(
            "SELECT DISTINCT measure_id FROM latest_measure_summary WHERE period = ? ORDER BY 1",
            [REPORT_PERIOD],
        ).fetchall()
    return [r[0] for r in rows]


def test_each_measure_has_a_visible_p_chart_and_site_chart(visit, demo_report):
    page = visit(demo_report.url).page
    sections = page.locator("section.measure")
    assert sections.evaluate_all("els => els.map(e => e.dataset.measure)") == measure_ids(
        demo_report
    )
    for measure in measure_ids(demo_report):
        for kind in ("pchart", "sites"):
            figure = page.locator(f'figure.chart[data-chart="{kind}"][data-measure="{measure}"]')
            assert figure.count() == 1, (measure, kind)
            assert figure.locator("figcaption").count() == 1, (measure, kind)
    charts = page.locator("figure.chart")
    assert charts.count() == 2 * len(measure_ids(demo_report))
    for chart in charts.all():
        svg = chart.locator("svg")
        assert svg.count() == 1
        svg.scroll_into_view_if_needed()
        box = svg.bounding_box()
        assert box is not None and box["width"] > 50 and box["height"] > 50
        assert svg.evaluate(VISIBLE_JS)


def test_each_p_chart_has_a_table_of_its_thirteen_months(visit, demo_report):
    """The demo warehouse holds 13 audited months, so every p-chart's data table lists 13."""
    page = visit(demo_report.url).page
    for measure in measure_ids(demo_report):
        data = page.locator(
            f'figure.chart[data-chart="pchart"][data-measure="{measure}"]'
            " + details.chart-data table.data tbody tr"
        )
        assert data.count() == 13, measure


def test_every_table_outside_a_closed_details_is_visible(visit, demo_report):
    page = visit(demo_report.url).page
    tables = page.locator("table")
    assert tables.count() > 0
    hidden = page.evaluate(
        f"""() => [...document.querySelectorAll('table')]
            .filter(t => !t.closest('details:not([open])'))
            .filter(t => !({VISIBLE_JS})(t))
            .map(t => t.id || t.className || t.outerHTML.slice(0, 80))"""
    )
    assert hidden == []


# --------------------------------------------------------------------------------------------
# The drill-down.


def busiest_drilldown(report) -> tuple[str, int]:
    """The measure with the most not-met cases that the page lists in full, and their count;
    among those whose cases have more than one index time (a patient-level measure's cases all
    share the month's end), so that sorting by it has something to do."""
    with report.connect() as con:
        return con.execute(
            """SELECT measure_id, count(*) AS n FROM latest_case_results
               WHERE period = ? AND outcome = 'not_met'
               GROUP BY measure_id HAVING n <= ? AND count(DISTINCT index_time) > 1
               ORDER BY n DESC, measure_id LIMIT 1""",
            [REPORT_PERIOD, NOT_MET_ROW_CAP],
        ).fetchone()


def not_met_cases_matching(report, measure: str, text: str) -> int:
    """Not-met cases of the measure whose shown identifiers, site, setting or evidence hold the
    text (any case)."""
    with report.connect() as con:
        return con.execute(
            """SELECT count(*) FROM latest_case_results
               WHERE period = ? AND outcome = 'not_met' AND measure_id = ?
                 AND concat_ws(' ', patient_id, encounter_id, site_id, setting, evidence)
                     ILIKE '%' || ? || '%'""",
            [REPORT_PERIOD, measure, text],
        ).fetchone()[0]


def visible_rows(table) -> list[str]:
    return table.locator("tbody tr").evaluate_all(
        f"rows => rows.filter({VISIBLE_JS}).map(r => r.innerText)"
    )


def test_the_drilldown_filter_keeps_exactly_the_matching_rows(visit, demo_report):
    measure, total = busiest_drilldown(demo_report)
    page = visit(demo_report.url).page
    table = page.locator(f"table.cases#cases-{measure}")
    assert table.locator("tbody tr").count() == total
    search = page.locator(f'input.case-filter[aria-controls="cases-{measure}"]')
    count = page.locator(f'section.drilldown[data-measure="{measure}"] output.case-count')

    with demo_report.connect() as con:
        patient, site = con.execute(
            """SELECT patient_id, site_id FROM latest_case_results
               WHERE period = ? AND outcome = 'not_met' AND measure_id = ?
               ORDER BY index_time DESC, patient_id LIMIT 1""",
            [REPORT_PERIOD, measure],
        ).fetchone()
    # A patient id typed in lower case; then a site, which many rows share.
    for typed in (patient.lower(), site.lower()):
        search.fill(typed)
        matching = not_met_cases_matching(demo_report, measure, typed)
        assert 0 < matching < total, typed
        rows = visible_rows(table)
        assert len(rows) == matching, typed
        assert all(typed in row.lower() for row in rows)
        assert count.inner_text() == f"{matching} of {total} cases"

    search.fill("")
    assert len(visible_rows(table)) == total
    assert count.inner_text() == f"{total} of {total} cases"


def column_texts(table, index: int) -> list[str]:
    return table.locator(f"tbody tr td:nth-child({index + 1})").all_inner_texts()


def test_a_sort_button_orders_the_rows_by_index_time_then_reverses(visit, demo_report):
    measure, _ = busiest_drilldown(demo_report)
    page = visit(demo_report.url).page
    table = page.locator(f"table.cases#cases-{measure}")
    headers = table.locator("thead th").all_inner_texts()
    index = next(i for i, h in enumerate(headers) if re.search(r"index time", h, re.I))
    button = table.locator("thead th").nth(index).locator("button.sort")
    assert button.count() == 1
    before = sorted(visible_rows(table))
    times = column_texts(table, index)
    assert len(set(times)) > 1  # else any order would pass

    button.click()
    assert column_texts(table, index) == sorted(times)
    button.click()
    assert column_texts(table, index) == sorted(times, reverse=True)
    assert sorted(visible_rows(table)) == before  # the same rows, only reordered


def test_without_scripting_every_drilldown_table_is_whole_and_has_no_controls(visit, demo_report):
    with demo_report.connect() as con:
        expected = dict(
            con.execute(
                """SELECT measure_id, least(count(*), ?) FROM latest_case_results
                   WHERE period = ? AND outcome = 'not_met' GROUP BY measure_id""",
                [NOT_MET_ROW_CAP, REPORT_PERIOD],
            ).fetchall()
        )
    seen = visit(demo_report.url, java_script_enabled=False)
    page = seen.page
    assert page.locator("input.case-filter").count() == 0
    assert page.locator("output.case-count").count() == 0
    assert page.locator("button.sort").count() == 0
    shown = {}
    for table in page.locator("table.cases").all():
        measure = table.get_attribute("id").removeprefix("cases-")
        shown[measure] = len(visible_rows(table))
    assert shown == expected
    assert seen.requests == [demo_report.url]


def test_with_scripting_each_drilldown_table_gets_one_filter_and_a_sort_button_per_column(
    visit, demo_report
):
    page = visit(demo_report.url).page
    tables = page.locator("table.cases").all()
    assert tables
    for table in tables:
        table_id = table.get_attribute("id")
        assert page.locator(f'input.case-filter[aria-controls="{table_id}"]').count() == 1
        headers = table.locator("thead th")
        assert table.locator("thead th button.sort").count() == headers.count() > 0


# --------------------------------------------------------------------------------------------
# Hostile names.


def test_a_site_or_department_named_like_markup_or_a_formula_shows_as_text(visit, hostile_report):
    seen = visit(hostile_report.url)
    page = seen.page
    assert seen.dialogs == []
    assert seen.errors == []
    for name in (XSS_SITE, FORMULA_SITE):
        # Some places it appears may be folded away (a closed <details>); one must show.
        shown = page.get_by_text(name, exact=True)
        assert shown.evaluate_all(f"els => els.filter({VISIBLE_JS}).length") > 0, name
    # No element was made from the name: the only scripts are the report's own.
    assert (
        page.locator("script").evaluate_all(
            "els => els.filter(e => e.textContent.includes('alert(1)')).length"
        )
        == 0
    )
    assert seen.requests == [hostile_report.url]


# --------------------------------------------------------------------------------------------
# The page as a picture, and on paper.


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_a_full_page_screenshot_is_saved(visit, demo_report, tmp_path):
    page = visit(demo_report.url, viewport={"width": 1280, "height": 900}).page
    target = tmp_path / "chartaudit-2026-10.png"
    page.screenshot(path=str(target), full_page=True)
    print(f"\nscreenshot: {target}")
    data = target.read_bytes()
    width, height = png_size(data)
    assert width == 1280
    # The whole page: 15 measures with two charts each are far taller than one screen.
    assert height == page.evaluate("document.documentElement.scrollHeight") > 5 * 900
    assert len(data) > 50_000


# Paper in CSS pixels (96 per inch) less 15 mm margins each side: the width a printout has for
# content at 100 % scale.
MM = 96 / 25.4
PAPER = {
    "A4": {"width_pt": 595.92, "height_pt": 842.88, "printable_px": int((210 - 30) * MM)},
    "Letter": {"width_pt": 612, "height_pt": 792, "printable_px": int((215.9 - 30) * MM)},
}
MEDIA_BOX = re.compile(rb"/MediaBox\s*\[\s*0\s+0\s+([\d.]+)\s+([\d.]+)\s*\]")


@pytest.mark.parametrize("paper", sorted(PAPER))
def test_the_printed_page_fits_the_paper_width(visit, demo_report, paper):
    width = PAPER[paper]["printable_px"]
    page = visit(demo_report.url, viewport={"width": width, "height": 1000}).page
    page.emulate_media(media="print")
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    too_wide = page.evaluate(
        """limit => [...document.querySelectorAll('body *')]
            .filter(e => e.getBoundingClientRect().right > limit + 0.5)
            .map(e => e.tagName.toLowerCase() + (e.className ? '.' + e.className : ''))
            .slice(0, 10)""",
        width,
    )
    assert too_wide == []


@pytest.mark.parametrize("paper", sorted(PAPER))
def test_the_report_prints_to_pdf_on_the_paper_size(visit, demo_report, paper, tmp_path):
    page = visit(demo_report.url).page
    page.emulate_media(media="print")
    pdf = page.pdf(format=paper, print_background=True)
    (tmp_path / f"report-{paper}.pdf").write_bytes(pdf)
    boxes = {(float(w), float(h)) for w, h in MEDIA_BOX.findall(pdf)}
    expected = (PAPER[paper]["width_pt"], PAPER[paper]["height_pt"])
    assert len(boxes) == 1
    ((w, h),) = boxes
    assert (w, h) == pytest.approx(expected, abs=1)
    pages = len(re.findall(rb"/Type\s*/Page\b", pdf))
    assert pages > 5  # the whole report, not a first page only
