"""The benchmark's figures as tables: Rich on the terminal, Markdown for the README.

    .venv/bin/python benchmarks/report.py [benchmarks/results/latest.json]

prints the README's performance table (Markdown) from a JSON file written by benchmarks/run.py.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

DATA_PATH = ("read", "validate", "load", "audit", "summarise", "publish")
E2E_SECONDS, E2E_MB, FLOOR_RATIO, GROWTH = 60, 3 * 1024, 5, 11
LARGE, SMALL = 1_000_000, 100_000


def _seconds(size: dict[str, Any], names: tuple[str, ...]) -> float:
    return sum(s["seconds"] for s in size["stages"] if s["stage"] in names)


def with_totals(size: dict[str, Any]) -> dict[str, Any]:
    data_path = _seconds(size, DATA_PATH)
    total = _seconds(size, (*DATA_PATH, "report"))
    floor = size["floor"]["seconds"]
    return {
        **size,
        "data_path_seconds": round(data_path, 2),
        "run_seconds": round(total, 2),
        "data_path_to_floor": round(data_path / floor, 1),
        "run_to_floor": round(total / floor, 1),
    }


def _size(results: dict[str, Any], patients: int) -> dict[str, Any] | None:
    return next((s for s in results["sizes"] if s["patients"] == patients), None)


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, judged on the figures (None: that size was not run)."""
    large, small = _size(results, LARGE), _size(results, SMALL)
    e2e = large and large["end_to_end"]
    growth = large and small and round(large["run_seconds"] / small["run_seconds"], 1)
    return [
        {
            "target": f"1M patients end to end (chartaudit run, Prefect included) <= {E2E_SECONDS}"
            f" s, peak RSS of the process tree < {E2E_MB // 1024} GB",
            "figure": e2e and f"{e2e['seconds']:.0f} s, {e2e['peak_rss_tree_mb']:,} MB",
            "met": e2e and e2e["seconds"] <= E2E_SECONDS and e2e["peak_rss_tree_mb"] < E2E_MB,
        },
        {
            "target": f"data path (read to publish) within {FLOOR_RATIO}x the DuckDB floor, 1M",
            "figure": large and f"{large['data_path_to_floor']}x",
            "met": large and large["data_path_to_floor"] <= FLOOR_RATIO,
        },
        {
            "target": f"100k -> 1M: run time (stages) grows by <= {GROWTH}x",
            "figure": growth and f"{growth}x",
            "met": growth and growth <= GROWTH,
        },
    ]


def with_targets(results: dict[str, Any]) -> dict[str, Any]:
    sized = {**results, "sizes": [with_totals(s) for s in results["sizes"]]}
    return {**sized, "targets": targets(sized)}


def rows(results: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows: per stage and total, per size seconds, input rows/s and peak MB."""
    sizes = results["sizes"]
    header = ["stage"]
    for s in sizes:
        n = f"{s['patients']:,}"
        header += [f"{n}: s", f"{n}: rows/s", f"{n}: peak MB"]
    names = [f["stage"] for f in sizes[0]["stages"]]
    if sizes[0].get("load_within_audit"):
        names = [("load + audit" if n == "audit" else n) for n in names]
    table = []
    for i, name in enumerate(names):
        line = [name]
        for s in sizes:
            f = s["stages"][i]
            line += [f"{f['seconds']:.2f}", f"{f['rows_per_second']:,}", f"{f['peak_rss_mb']:,}"]
        table.append(line)
    for label, key in (
        ("data path (read to publish)", "data_path_seconds"),
        ("run total (all stages)", "run_seconds"),
    ):
        table.append([label, *(c for s in sizes for c in _total_cells(s, key))])
    table.append(["DuckDB floor (read every file into a table)"])
    for s in sizes:
        f = s["floor"]
        table[-1] += [f"{f['seconds']:.2f}", f"{f['rows_per_second']:,}", f"{f['peak_rss_mb']:,}"]
    table.append(["run / floor (data path / floor)"])
    for s in sizes:
        table[-1] += [f"{s['run_to_floor']}x ({s['data_path_to_floor']}x)", "", ""]
    table.append(["`chartaudit run`, Prefect included (peak: process tree)"])
    for s in sizes:
        e = s["end_to_end"]
        table[-1] += [f"{e['seconds']:.1f}", "", f"{e['peak_rss_tree_mb']:,}"]
    table.append(["generate (once, cached; not part of a run)"])
    for s in sizes:
        g = s["generate"]
        table[-1] += [f"{g['seconds']:.0f}", "", f"{g['peak_rss_tree_mb']:,}"]
    return header, table


def _total_cells(size: dict[str, Any], key: str) -> list[str]:
    """Seconds, input rows/s and the largest stage peak (data path: without report's)."""
    seconds = size[key]
    names = DATA_PATH if key == "data_path_seconds" else (*DATA_PATH, "report")
    peak = max(f["peak_rss_mb"] for f in size["stages"] if f["stage"] in names)
    return [f"{seconds:.2f}", f"{round(size['input_rows'] / seconds):,}", f"{peak:,}"]


def caption(results: dict[str, Any]) -> str:
    m = results["machine"]
    sizes = ", ".join(
        f"{s['patients']:,} patients = {s['input_rows']:,} input rows ({s['format']})"
        for s in results["sizes"]
    )
    return (
        f"{results['date']}, {m['cpu']}, {m['nproc']} cores, {m['ram_gb']} GB RAM; {sizes};"
        f" peak memory: {results['sizes'][0]['peak_source']}"
    )


def verdict(met: bool | None) -> str:
    return "not run" if met is None else "met" if met else "NOT met"


def markdown(results: dict[str, Any]) -> str:
    header, table = rows(results)
    lines = [f"Measured {caption(results)}.", ""]
    lines += ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(line) + " |" for line in table]
    lines += ["", "| target | measured | |", "|---|---|---|"]
    lines += [
        f"| {t['target']} | {t['figure'] or ''} | {verdict(t['met'])} |" for t in results["targets"]
    ]
    return "\n".join(lines) + "\n"


def print_tables(results: dict[str, Any]) -> None:
    header, table = rows(results)
    out = Console()
    figures = Table(title=caption(results))
    for i, column in enumerate(header):
        figures.add_column(column, justify="left" if i == 0 else "right")
    for line in table:
        figures.add_row(*line)
    out.print(figures)
    goals = Table(title="targets")
    for column in ("target", "measured", ""):
        goals.add_column(column)
    for t in results["targets"]:
        goals.add_row(t["target"], t["figure"] or "", verdict(t["met"]))
    out.print(goals)


if __name__ == "__main__":
    path = Path(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/results/latest.json")
    print(markdown(json.loads(path.read_text(encoding="utf-8"))), end="")
