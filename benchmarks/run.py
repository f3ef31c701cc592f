"""`make bench`: time and memory of each step of a monthly run on a large synthetic extract.

    .venv/bin/python benchmarks/run.py [--patients 100000] [--keep DIR]

Runs the flow's plain steps (no Prefect: its temporary server adds a fixed 7-24 s) on a
generated 13-month extract and prints seconds and peak resident memory after each step.
Figures depend on the machine; compare runs on the same one.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from chartaudit.flows import steps
from chartaudit.storage import warehouse

GENERATE = (
    "import sys; from chartaudit.sample_data.generator import generate_extract;"
    " generate_extract(sys.argv[1], patients=int(sys.argv[2]))"
)


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--keep", type=Path, help="reuse/keep the extract in this folder")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="chartaudit-bench-"))
    extract = args.keep or root / "extract"
    timings: list[tuple[str, float, float]] = []

    def timed(name, action):
        start = time.perf_counter()
        result = action()
        timings.append((name, time.perf_counter() - start, peak_mb()))
        return result

    if not (extract / "manifest.json").exists():
        # In a child process, so the peak memory below is the run's own, not the generator's.
        timed(
            "generate (not part of a run; own process)",
            lambda: subprocess.run(
                [sys.executable, "-c", GENERATE, str(extract), str(args.patients)], check=True
            ),
        )
    rows = sum(1 for p in extract.glob("*.csv") for _ in p.open())
    work, path = root / "work", root / "audit.duckdb"
    work.mkdir()
    plan = timed("load: read + type", lambda: steps.load_step(extract, work, "2026-10"))
    with warehouse.run_lock(path, plan.record):
        warehouse.begin_run(path, plan.record)
        timed("validate", lambda: steps.validate_step(work))
        cases = timed("audit (15 measures)", lambda: steps.audit_step(work, path))
        timed("summarise", lambda: steps.summarise_step(work))
        timed("publish (one transaction)", lambda: steps.publish_step(work, path))
    timed("report", lambda: steps.report_step(path, "2026-10", root / "out"))

    table = Table(title=f"{args.patients:,} patients, {rows:,} CSV lines, {cases:,} cases")
    for column in ("step", "seconds", "peak RSS (MB)"):
        table.add_column(column, justify="left" if column == "step" else "right")
    for name, seconds, peak in timings:
        shown = "" if name.startswith("generate") else f"{peak:.0f}"
        table.add_row(name, f"{seconds:.2f}", shown)
    run_total = sum(s for n, s, _ in timings if not n.startswith("generate"))
    table.add_row("run total (without generate)", f"{run_total:.2f}", f"{peak_mb():.0f}")
    Console().print(table)
    print(f"warehouse size: {path.stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
