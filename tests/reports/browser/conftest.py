"""The report opened in a real browser: Debian's Chromium, driven by Playwright.

One browser for the whole session (starting Chromium costs about half a second, a page a few
milliseconds); each test opens its own context and page. Two reports are built once per session
by the real pipeline steps (tests/flows/test_pipeline.py runs the same steps):

- the demo report: every month 2025-10..2026-10 of the bundled demo extract audited into one
  warehouse, then the report for 2026-10, so every trend has 13 months;
- the hostile report: the demo extract with its sites and departments renamed
  `<script>alert(1)</script>` and `=HYPERLINK("x")`, audited for 2026-10.

Chromium is the system's (/usr/bin/chromium, which `make test` installs); Playwright's own
browser download is never used (docs/decisions.md, "The report is tested in Debian's Chromium").
When it is missing the tests fail, not skip: CI must run them.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import polars as pl
import pytest

from chartaudit.flows import steps
from chartaudit.reports.render import render_report
from chartaudit.sample_data import DEMO_EXTRACT
from chartaudit.storage import warehouse

CHROMIUM = Path("/usr/bin/chromium")
# Headless, no sandbox (tests run as root on CI), and nothing that calls home: without the
# background-networking, component-update and sync switches Chromium tries to reach Google at
# start, which this network refuses. Playwright adds a fresh temporary --user-data-dir itself.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

REPORT_PERIOD = "2026-10"
DEMO_MONTHS = [f"2025-{m}" for m in ("10", "11", "12")] + [f"2026-{m:02d}" for m in range(1, 11)]
GENERATED_AT = datetime(2026, 11, 8, 6, 0, tzinfo=UTC)

XSS_SITE = "<script>alert(1)</script>"
FORMULA_SITE = '=HYPERLINK("x")'


def audit_months(extract: Path, warehouse_path: Path, work_root: Path, months: list[str]) -> None:
    """Each month through the flow's steps, in order, as the Prefect flow runs them (later
    months judge again the earlier months' pending cases, as in production)."""
    for period in months:
        work = work_root / f"work-{period}"
        work.mkdir(parents=True)
        plan = steps.load_step(extract, work, period)
        with warehouse.run_lock(warehouse_path, plan.record):
            warehouse.begin_run(warehouse_path, plan.record)
            steps.validate_step(work)
            steps.audit_step(work, warehouse_path)
            steps.summarise_step(work)
            steps.publish_step(work, warehouse_path)
        shutil.rmtree(work)


@dataclass(frozen=True)
class BuiltReport:
    warehouse: Path
    html: Path
    seconds: float

    @property
    def url(self) -> str:
        return self.html.resolve().as_uri()

    def connect(self) -> duckdb.DuckDBPyConnection:
        return warehouse.connect(self.warehouse, read_only=True)


def build_report(extract: Path, root: Path, months: list[str]) -> BuiltReport:
    started = time.perf_counter()
    warehouse_path = root / "audit.duckdb"
    audit_months(extract, warehouse_path, root, months)
    with warehouse.connect(warehouse_path, read_only=True) as con:
        html = render_report(con, months[-1], root / "out", generated_at=GENERATED_AT)
    return BuiltReport(warehouse_path, html, time.perf_counter() - started)


@pytest.fixture(scope="session")
def demo_report(tmp_path_factory) -> BuiltReport:
    """The demo extract audited month by month over its 13 months; the report of the last."""
    built = build_report(DEMO_EXTRACT, tmp_path_factory.mktemp("demo-report"), DEMO_MONTHS)
    print(
        f"\ndemo report: {len(DEMO_MONTHS)} months audited in {built.seconds:.1f} s: {built.html}"
    )
    return built


def hostile_extract(folder: Path) -> Path:
    """The demo extract with SITE-A and SITE-B renamed to markup and to a spreadsheet formula,
    and every department of those sites renamed the other way round."""
    shutil.copytree(DEMO_EXTRACT, folder)
    encounters = folder / "encounters.csv"
    frame = pl.read_csv(encounters, infer_schema=False)
    renamed = {"SITE-A": XSS_SITE, "SITE-B": FORMULA_SITE}
    swapped = {"SITE-A": FORMULA_SITE, "SITE-B": XSS_SITE}
    site = pl.col("site_id")
    frame = frame.with_columns(
        department=pl.when(site.is_in(list(renamed)))
        .then(site.replace(swapped))
        .otherwise(pl.col("department")),
        site_id=site.replace(renamed),
    )
    frame.write_csv(encounters)
    return folder


@pytest.fixture(scope="session")
def hostile_report(tmp_path_factory) -> BuiltReport:
    root = tmp_path_factory.mktemp("hostile-report")
    extract = hostile_extract(root / "extract")
    return build_report(extract, root, [REPORT_PERIOD])


# --------------------------------------------------------------------------------------------
# The browser.


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests need Debian's chromium "
            "(`make test` installs it; or `apt-get install chromium`)",
            pytrace=False,
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail(
            "Playwright is missing: `make install` installs the dev extras, which hold it",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@dataclass
class Visit:
    """One page and everything it did: console messages, page errors, dialogs and every
    request the browser made for it (each request is aborted unless it is the file itself)."""

    page: object
    console: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)


def open_page(browser, url: str, **context_options) -> Visit:
    context = browser.new_context(**context_options)
    page = context.new_page()
    visit = Visit(page)
    page.on("console", lambda m: visit.console.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: visit.errors.append(str(e)))
    page.on("dialog", lambda d: (visit.dialogs.append(f"{d.type}: {d.message}"), d.dismiss()))

    def route(r):
        visit.requests.append(r.request.url)
        if r.request.url == url:
            r.continue_()
        else:
            r.abort()

    context.route("**/*", route)
    page.goto(url, wait_until="load")
    return visit


@pytest.fixture
def visit(browser) -> Iterator:
    """open(url, **context options) -> Visit; every context it opened is closed after the test."""
    opened = []

    def open_(url: str, **options) -> Visit:
        v = open_page(browser, url, **options)
        opened.append(v)
        return v

    yield open_
    for v in opened:
        v.page.context.close()
