"""`make bench`: the monthly run on generated extracts of 100,000 and 1,000,000 patients.

    .venv/bin/python benchmarks/run.py [--patients 100000 1000000] [--format parquet]
        [--cache .bench] [--json benchmarks/results/latest.json]

Per size: the extract is generated once into the cache folder (``.bench/``, git-ignored; reused
while present, with the figures of its generation); then, in a process of its own
(benchmarks/stages.py), the DuckDB floor and the run's stages (read, validate, load, audit,
summarise, publish, report) with wall time, input rows per second and peak resident memory each;
then `chartaudit run EXTRACT --period 2026-10`, Prefect included, as a child process with its
wall time and the peak resident memory of its process tree. All figures go to one JSON file
(default benchmarks/results/latest.json, committed with the README table made from it:
``python benchmarks/report.py benchmarks/results/latest.json``). Figures depend on the machine
(recorded in the JSON); compare runs on the same one.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from proc import run_sampled
from report import print_tables, with_targets
from stages import PERIOD

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def machine() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    models = [
        line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if "model name" in line
    ]
    pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return {
        "host": platform.node(),
        "nproc": os.cpu_count(),
        "ram_gb": round(pages / 2**30, 1),
        "cpu": models[0] if models else platform.processor(),
        "python": platform.python_version(),
    }


def child_env() -> dict[str, str]:
    """As the Makefile sets it: Prefect's state in the project folder, nothing phones home."""
    env = dict(os.environ)
    env.setdefault("PREFECT_HOME", str(ROOT / ".prefect"))
    env.update(PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1")
    return env


def sampled(command: list[str], cwd: Path, log: Path) -> dict[str, Any]:
    status, seconds, tree, largest = run_sampled(command, cwd, log, child_env())
    if status != 0:
        sys.exit(f"error: {' '.join(command)} exited {status}; see {log}")
    return {
        "seconds": round(seconds, 2),
        "peak_rss_tree_mb": round(tree),
        "largest_mb": round(largest),
    }


def extract_for(cache: Path, patients: int, fmt: str) -> tuple[Path, dict[str, Any]]:
    """The cached extract of this size and format, generated (and timed) when missing."""
    extract = cache / f"extract-{patients}-{fmt}"
    figures = cache / f"extract-{patients}-{fmt}.generate.json"
    if not (extract / "answer_key.csv").exists() or not figures.exists():
        shutil.rmtree(extract, ignore_errors=True)
        print(f"generating {patients:,} patients ({fmt}) into {extract} …", flush=True)
        command = [str(BIN / "chartaudit"), "generate", str(extract), "--patients", str(patients)]
        command += ["--format", fmt]
        figures.write_text(json.dumps(sampled(command, ROOT, cache / "generate.log")) + "\n")
    return extract, json.loads(figures.read_text())


def one_size(cache: Path, patients: int, fmt: str) -> dict[str, Any]:
    extract, generated = extract_for(cache, patients, fmt)
    scratch = cache / f"run-{patients}-{fmt}"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    print(f"{patients:,} patients: floor and stages …", flush=True)
    out = scratch / "stages.json"
    stages = [sys.executable, str(Path(__file__).with_name("stages.py"))]
    subprocess.run([*stages, str(extract), str(scratch / "steps"), str(out)], check=True)
    figures = json.loads(out.read_text())
    print(f"{patients:,} patients: chartaudit run, Prefect included …", flush=True)
    command = [str(BIN / "chartaudit"), "run", str(extract.resolve()), "--period", PERIOD]
    command += ["--warehouse", str(scratch / "e2e.duckdb"), "--out", str(scratch / "e2e-out")]
    end_to_end = sampled(command, scratch, scratch / "e2e.log")
    return {
        "patients": patients,
        "format": fmt,
        "generate": generated,
        **figures,
        "end_to_end": end_to_end,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--format", dest="fmt", choices=("parquet", "csv"), default="parquet")
    parser.add_argument("--cache", type=Path, default=ROOT / ".bench")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks/results/latest.json")
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    sizes = [one_size(args.cache, n, args.fmt) for n in args.patients]
    results = with_targets(
        {"date": datetime.now(UTC).strftime("%Y-%m-%d"), "machine": machine(), "sizes": sizes}
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print_tables(results)
    print(f"figures written to {args.json}")


if __name__ == "__main__":
    main()
