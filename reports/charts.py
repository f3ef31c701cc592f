"""The report's charts: matplotlib figures rendered to SVG text that the page inlines.

Each chart is one ``<svg>`` with no external reference and nothing that changes between two
renderings of the same numbers:

- a bare ``Figure`` is drawn (no pyplot, so no GUI backend and no global figure list) and saved as
  SVG inside an ``rc_context`` that fixes ``svg.hashsalt`` (matplotlib's ids are hashes salted
  by it, random otherwise) and the font;
- text is drawn as paths (``svg.fonttype: path``): the chart looks the same on every machine
  whatever fonts it has, and no label is text a reader's browser could lay out differently;
  the words are in the figure's caption and the chart-data table beside it;
- ``text.parse_math`` is off, so a site named ``$x$`` is drawn as written;
- the XML prologue, the comment naming matplotlib's web site, ``<metadata>`` (it carries a
  date and URLs) and the namespace declarations (an inline SVG in HTML needs none) are dropped;
  ids are prefixed per chart so that two charts in one page never share one; the fixed width and
  height go, so the page's CSS scales the chart to its column (the viewBox keeps the shape).
"""

from __future__ import annotations

import functools
import io
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import matplotlib
import polars as pl
from matplotlib.figure import Figure

_RC = {
    "svg.hashsalt": "chartaudit",
    "svg.fonttype": "path",
    "font.family": "DejaVu Sans",
    "font.size": 8,
    "text.parse_math": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlesize": 9,
}
INK = "#1d232a"
POINT = "#0969da"
SIGNAL = "#cf222e"
LIMIT = "#57606a"
TARGET = "#1a7f37"
# Site names longer than this are shortened in the chart (the table beside it has them whole).
LABEL_CHARS = 28


@dataclass(frozen=True)
class SiteRate:
    site: str
    rate: float
    ci_low: float
    ci_high: float
    # False for the row of cases with no site recorded: its label is drawn in italics, as the
    # page prints it, so a real site of the same name is told apart.
    recorded: bool = True


def _svg(figure: Figure, prefix: str, label: str) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None})
    return _inline(buffer.getvalue(), prefix, label)


def _with_settings(draw: Callable[..., str]) -> Callable[..., str]:
    """Run a whole chart function under the chart settings: a label's Text reads some of them
    (``text.parse_math``) when it is made, not when it is saved."""

    @functools.wraps(draw)
    def wrapper(*args, **kwargs) -> str:
        with matplotlib.rc_context(_RC):
            return draw(*args, **kwargs)

    return wrapper


def _inline(text: str, prefix: str, label: str) -> str:
    """matplotlib's SVG document as an element for an HTML page (see the module docstring)."""
    text = re.sub(r"<\?xml[^>]*\?>|<!DOCTYPE[^>]*>|<!--.*?-->", "", text, flags=re.S)
    text = re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.S)
    text = re.sub(r"<style[^>]*>.*?</style>", "", text, flags=re.S)
    text = re.sub(r"\n\s*", "\n", text)
    text = re.sub(r'\bid="([^"]+)"', lambda m: f'id="{prefix}-{m.group(1)}"', text)
    text = re.sub(r'(href="|url\()#([^")]+)', lambda m: f"{m.group(1)}#{prefix}-{m.group(2)}", text)
    label = label.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")
    view_box = re.search(r'<svg[^>]*\sviewBox="([^"]*)"', text)
    if view_box is None:
        raise ValueError("matplotlib wrote an SVG without a viewBox")
    opening = f'<svg role="img" aria-label="{label}" viewBox="{view_box.group(1)}">'
    return re.sub(r"<svg[^>]*>", lambda _: opening, text, count=1).strip()


def _pct_axis(axes, label: str) -> None:
    axes.set_ylim(0, 1.04)
    axes.set_yticks([0, 0.25, 0.5, 0.75, 1.0], ["0 %", "25 %", "50 %", "75 %", "100 %"])
    axes.set_ylabel(label)
    axes.grid(axis="y", color="#d0d7de", linewidth=0.5)
    axes.set_axisbelow(True)


@_with_settings
def p_chart_svg(
    chart: pl.DataFrame,
    *,
    chart_id: str,
    rate_label: str,
    target: float | None = None,
) -> str:
    """The p-chart of one measure: points (signals in red), centre line, the limits as steps
    that follow each month's denominator, and the target when there is one. ``chart`` is
    reports.spc.p_chart's frame, one row per month shown."""
    periods = chart["period"].to_list()
    x = list(range(len(periods)))
    # Fixed margins, not a layout engine: that would draw every chart twice (2x the time).
    figure = Figure(figsize=(6.8, 2.6))
    figure.subplots_adjust(left=0.125, right=0.98, bottom=0.25, top=0.88)
    axes = figure.add_subplot()
    axes.step(x, chart["upper"].to_list(), where="mid", color=LIMIT, linewidth=0.8,
              linestyle=(0, (4, 2)), label="3-sigma limits")  # fmt: skip
    axes.step(x, chart["lower"].to_list(), where="mid", color=LIMIT, linewidth=0.8,
              linestyle=(0, (4, 2)))  # fmt: skip
    centre = chart["centre"].drop_nulls()
    if centre.len():
        axes.axhline(centre[0], color=INK, linewidth=1, label="centre line")
    rates = chart["rate"].to_list()
    axes.plot(x, rates, color=POINT, linewidth=1, marker="o", markersize=3.5, label="monthly rate")
    flagged = chart["beyond"] | chart["in_run"]
    signal_x = [i for i, hit in zip(x, flagged.to_list(), strict=True) if hit]
    if signal_x:
        axes.plot(signal_x, [rates[i] for i in signal_x], linestyle="none", marker="o",
                  markersize=6, markerfacecolor="none", markeredgecolor=SIGNAL,
                  markeredgewidth=1.4, label="signal")  # fmt: skip
    if target is not None:
        axes.axhline(target, color=TARGET, linewidth=1, linestyle=":", label="target")
    axes.set_xlim(-0.5, len(x) - 0.5)
    step = max(1, -(-len(x) // 12))  # at most 12 month labels
    axes.set_xticks(x[::step], periods[::step], rotation=45, ha="right")
    _pct_axis(axes, rate_label)
    axes.legend(loc="lower left", bbox_to_anchor=(0, 1.0), fontsize=7, ncols=5, frameon=False)
    return _svg(figure, chart_id, f"p-chart of monthly rates, {periods[0]} to {periods[-1]}")


def _short(name: str) -> str:
    return name if len(name) <= LABEL_CHARS else name[: LABEL_CHARS - 1] + "\u2026"


@_with_settings
def sites_svg(
    sites: Sequence[SiteRate], *, overall: float | None, chart_id: str, rate_label: str
) -> str:
    """A forest chart: each site's rate with its 95 % Wilson interval, one row per site, and the
    overall rate as a vertical reference line."""
    width, height = 6.8, 1.0 + 0.28 * len(sites)
    figure = Figure(figsize=(width, height))
    labels = [_short(s.site) for s in sites]
    # About 0.065 in per character of 8 pt text, plus the ticks: room for the longest name.
    left = (0.25 + 0.065 * max(len(label) for label in labels)) / width
    figure.subplots_adjust(left=left, right=0.97, bottom=0.55 / height, top=1 - 0.35 / height)
    axes = figure.add_subplot()
    y = list(range(len(sites)))[::-1]  # the first site on top
    rates = [s.rate for s in sites]
    errors = [
        [s.rate - s.ci_low for s in sites],
        [s.ci_high - s.rate for s in sites],
    ]
    axes.errorbar(rates, y, xerr=errors, fmt="o", color=POINT, markersize=4, capsize=2,
                  linewidth=1, label="site rate, 95 % interval")  # fmt: skip
    if overall is not None:
        axes.axvline(overall, color=INK, linewidth=1, linestyle="--", label="all sites")
    axes.set_yticks(y, labels)
    for tick, site in zip(axes.get_yticklabels(), sites, strict=True):
        tick.set_fontstyle("normal" if site.recorded else "italic")
    axes.set_ylim(-0.7, len(sites) - 0.3)
    axes.set_xlim(0, 1.0)
    axes.set_xticks([0, 0.25, 0.5, 0.75, 1.0], ["0 %", "25 %", "50 %", "75 %", "100 %"])
    axes.set_xlabel(rate_label)
    axes.grid(axis="x", color="#d0d7de", linewidth=0.5)
    axes.set_axisbelow(True)
    axes.legend(loc="lower left", bbox_to_anchor=(0, 1.0), fontsize=7, ncols=2, frameon=False)
    return _svg(figure, chart_id, "site rates with 95 % intervals")
