"""`make bench`, FHIR part: wall time and peak memory of `chartaudit run --format fhir` on a
FHIR R4 Bulk Data export of about 1 GB (issue 9: peak memory under 2 GB).

    .venv/bin/python benchmarks/fhir_memory.py [--gb 1.0] [--keep DIR]   # DIR: .bench/fhir-1gb

Generates a synthetic contract extract large enough (sample_data/generator.py), writes it as
NDJSON (sample_data/formats/fhir.py), then runs the real command as a child process and samples
/proc every 0.1 s for the resident memory of the whole process tree (the command and everything
it starts, Prefect's temporary server included): the peak of that sum is the figure judged
against 2 GB. Also shown: the largest single process's own peak (the kernel's VmHWM, like
ru_maxrss, read for every process of the tree while it runs). Generating and writing run in
their own process first, so they are not counted.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from proc import run_sampled  # benchmarks/proc.py (this folder is sys.path[0] for a script)

LIMIT_MB = 2048
BYTES_PER_PATIENT = 5_600  # NDJSON written per generated patient (13 months), measured
PERIOD = "2026-10"  # the generator's last month: the last whole month of the extract
PREPARE = (
    "import sys; from pathlib import Path;"
    " from chartaudit.sample_data.generator import generate_extract;"
    " from chartaudit.sample_data.formats.fhir import write_fhir;"
    " root = Path(sys.argv[1]);"
    " generate_extract(root / 'contract', patients=int(sys.argv[2]), dirty=False);"
    " write_fhir(root / 'contract', root / 'fhir')"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=1.0, help="NDJSON size to aim for")
    parser.add_argument(
        "--keep",
        type=Path,
        help="reuse/keep the export in this folder (default: .bench/fhir-<gb>gb)",
    )
    args = parser.parse_args()
    # Cached like make bench's extracts (.bench/ is git-ignored): the export is made once.
    root = (args.keep or Path(".bench") / f"fhir-{args.gb:g}gb").resolve()
    patients = int(args.gb * 1e9 / BYTES_PER_PATIENT)
    if not (root / "fhir" / "bulk-export-manifest.json").exists():
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", PREPARE, str(root), str(patients)], check=True)
        print(f"generated and wrote {patients:,} patients in {time.perf_counter() - started:.0f} s")
    fhir = root / "fhir"
    size = sum(p.stat().st_size for p in fhir.glob("*.ndjson"))
    work = root / "run"
    work.mkdir(exist_ok=True)
    (work / "chartaudit.toml").write_text(f'[sources]\ncode_map = "{fhir / "site-code-map.csv"}"\n')
    env_home = {"PREFECT_HOME": str(work / ".prefect")}
    os.environ.update(env_home)
    chartaudit = Path(sys.executable).parent / "chartaudit"
    command = [str(chartaudit), "run", str(fhir), "--format", "fhir", "--period", PERIOD]
    command += ["--warehouse", str(work / "audit.duckdb"), "--out", str(work / "out")]
    status, seconds, peak, largest = run_sampled(command, work, work / "run.log")
    if status != 0:
        print((work / "run.log").read_text(encoding="utf-8", errors="replace")[-3000:])
    verdict = "under" if peak < LIMIT_MB else "OVER"
    print(f"FHIR NDJSON input: {size / 1e9:.2f} GB ({size:,} bytes) in {fhir}")
    print(f"chartaudit run --format fhir --period {PERIOD}: exit {status}, {seconds:.0f} s")
    print(f"peak RSS, whole process tree (sampled every 0.1 s): {peak:,.0f} MB")
    print(f"peak RSS, largest single process (its VmHWM): {largest:,.0f} MB")
    print(f"{verdict} the 2 GB limit")
    shutil.rmtree(work, ignore_errors=True)  # the run's warehouse and reports; the export stays
    if status != 0:
        sys.exit(status)


if __name__ == "__main__":
    main()
