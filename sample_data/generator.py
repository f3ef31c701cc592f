"""Synthetic monthly extract with a known answer key.

:func:`generate_extract` writes a contract-shaped extract folder (seven tables, ``manifest.json``)
plus three files the loader ignores: ``expected_quarantine.csv`` (every deliberately dirty row),
``expected_data_quality.csv`` (every row that loads with a data-quality warning) and
``answer_key.csv`` (every case of all fifteen measures under both rule sets, with its outcome and
the scenario of its patient), which an independent judge (``answer_key``) computes from the
written files. Output is a pure function of the arguments: one ``random.Random(seed)``, no wall
clock, same bytes every run.

Patients are made in batches of ``batch_patients`` (:data:`BATCH_PATIENTS`), so a million fit in
bounded memory: after each batch every table is flushed, the judge judges that batch's rows as
written (patients are independent: no row of one patient bears on another's cases) into a part of
the key, and ``progress`` hears of it. The batch size changes neither the tables nor the key: one
random stream runs through all batches (the run-wide id counters and month round-robins of
``chart.Context`` are sequential state anyway, so per-batch streams would buy nothing), and the
parts are merged in the order one whole-extract sort gives (``answer_key.merge_key_parts``).

Each patient belongs to one scenario (the ``scenarios_ln*`` modules, ``dirty``); most are
background patients who produce no case. A scenario declares what it intends for the measure it
was written for (``chart.Scenario.intent``); the tests check the judged key against it.

The committed demo extract (``sample_data/demo_extract/``) is the default call with
DEMO_PATIENTS patients; regenerate it after changing anything here with::

    .venv/bin/python -c "from chartaudit.sample_data.generator import write_demo_extract as w; w()"
"""

from __future__ import annotations

import json
import random
import re
import shutil
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path

from chartaudit.sample_data import (
    GeneratorArgumentError,
    scenarios_ln01,
    scenarios_ln02_04,
    scenarios_ln05,
    scenarios_ln06,
    scenarios_ln07,
    scenarios_ln08_10,
    scenarios_ln11_13,
    scenarios_ln14_15,
)
from chartaudit.sample_data import dirty as dirty_scenarios
from chartaudit.sample_data.answer_key import judge, merge_key_parts, write_key_part
from chartaudit.sample_data.background import background_patient
from chartaudit.sample_data.chart import Chart, Context, Scenario
from chartaudit.sample_data.clock import Clock, Unplaceable
from chartaudit.sample_data.sink import ExtractSink

DEMO_DIR = Path(__file__).parent / "demo_extract"
BACKGROUND = "background"
SOURCE = "chartaudit synthetic generator"
# Patients per batch: the judge holds one batch's rows as Python objects (about 20 kB a patient).
BATCH_PATIENTS = 20_000
KEY_PARTS = ".answer_key_parts"  # a scratch folder inside the extract, removed when done

MODULES = (
    scenarios_ln01,
    scenarios_ln02_04,
    scenarios_ln05,
    scenarios_ln06,
    scenarios_ln07,
    scenarios_ln08_10,
    scenarios_ln11_13,
    scenarios_ln14_15,
)
CASE_SCENARIOS: dict[str, Scenario] = {
    label: scenario for module in MODULES for label, scenario in module.SCENARIOS.items()
}
# Per episode measure, a filler scenario with short spans and at least one patient per month
# (see Chart.place_episode), so every coverage month has cases of every episode measure.
FILLERS: dict[str, str] = {m: label for module in MODULES for m, label in module.FILLER.items()}


@dataclass(frozen=True)
class GeneratedExtract:
    """What :func:`generate_extract` wrote."""

    out_dir: Path
    tables: dict[str, Path]
    manifest: Path
    answer_key: Path
    expected_quarantine: Path
    expected_data_quality: Path
    row_counts: dict[str, int]
    case_counts: dict[str, dict[str, dict[str, int]]]  # rule set -> measure -> outcome -> cases
    quarantine_rows: int
    scenario_counts: dict[str, int]  # patients per scenario (background included)
    scenario_patients: dict[str, tuple[str, ...]]  # patient ids per non-background scenario


def scenario_counts(patients: int, months: int, *, dirty_rows: bool) -> dict[str, int]:
    """Patients per scenario: scaled by ``patients``, each at least once."""
    catalogue = {**CASE_SCENARIOS, **(dirty_scenarios.SCENARIOS if dirty_rows else {})}
    counts = {
        label: max(1, round(scenario.weight * patients / 1000))
        for label, scenario in catalogue.items()
    }
    for filler in FILLERS.values():
        counts[filler] = max(counts[filler], months)
    special = sum(counts.values())
    if special > patients:
        raise GeneratorArgumentError(
            f"patients={patients} is too few for every scenario; use >= {special}"
        )
    counts[BACKGROUND] = patients - special
    return counts


def assign_scenarios(rng: random.Random, counts: dict[str, int]) -> list[str]:
    labels = [label for label, count in counts.items() for _ in range(count)]
    rng.shuffle(labels)
    return labels


def build_patient(ctx: Context, patient_id: str, label: str) -> Chart:
    """All rows of one patient; a scenario that does not fit the coverage becomes background."""
    chart = Chart(ctx, patient_id, label)
    entry = CASE_SCENARIOS.get(label) or dirty_scenarios.SCENARIOS.get(label)
    builder = entry.build if entry else None
    try:
        if builder is None:
            background_patient(chart)
        else:
            builder(chart)
    except Unplaceable:
        chart.scenario = BACKGROUND
        background_patient(chart)
    chart.write_patient()
    return chart


def manifest(clock: Clock, *, end_month: str, seed: int, timezone: str) -> dict[str, str]:
    return {
        "extract_id": f"synthetic-{end_month}-s{seed}",
        "source": SOURCE,
        "timezone": timezone,
        "coverage_start": clock.first_day.isoformat(),
        "coverage_end": clock.last_day.isoformat(),
        "created": f"{clock.created.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}",
    }


def write_batch(ctx: Context, numbers: range, labels: list[str], key_part: Path) -> dict[str, str]:
    """Write the patients numbered ``numbers`` (``labels``: every patient's scenario, from 1)
    and judge them into ``key_part``; returns each non-background patient's scenario."""
    scenario_of: dict[str, str] = {}
    for number in numbers:
        chart = build_patient(ctx, f"PT{number:06d}", labels[number - 1])
        if chart.scenario != BACKGROUND:
            scenario_of[chart.patient_id] = chart.scenario
    out_dir = ctx.sink.out_dir
    cases = judge(out_dir, ctx.sink.end_batch(), ctx.sink.quarantined_lines())
    write_key_part(key_part, cases, scenario_of)
    return scenario_of


def generate_extract(
    out_dir: Path,
    *,
    patients: int = 1500,
    months: int = 13,
    seed: int = 7,
    end_month: str = "2026-10",
    timezone: str = "America/Chicago",
    fmt: str = "csv",
    dirty: bool = True,
    batch_patients: int = BATCH_PATIENTS,
    progress: Callable[[int, int], None] | None = None,
) -> GeneratedExtract:
    """Write a synthetic extract of ``months`` calendar months ending with ``end_month``;
    ``progress(done, patients)`` is called after each batch of ``batch_patients``."""
    if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", end_month):
        raise GeneratorArgumentError(f"end_month must look like 2026-10, not {end_month!r}")
    if batch_patients < 1:
        raise GeneratorArgumentError(f"batch_patients must be at least 1, not {batch_patients}")
    out_dir = Path(out_dir)
    rng = random.Random(seed)
    clock = Clock(timezone, end_month, months)
    counts = scenario_counts(patients, months, dirty_rows=dirty)
    sink = ExtractSink(out_dir, fmt)
    manifest_path = out_dir / "manifest.json"  # first: the judge reads the coverage from it
    content = manifest(clock, end_month=end_month, seed=seed, timezone=timezone)
    manifest_path.write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
    ctx = Context(rng=rng, clock=clock, sink=sink, fillers=frozenset(FILLERS.values()))
    labels = assign_scenarios(rng, counts)
    placed: Counter[str] = Counter()  # patients per scenario
    scenario_patients: dict[str, list[str]] = {}
    parts_dir = out_dir / KEY_PARTS
    shutil.rmtree(parts_dir, ignore_errors=True)
    parts_dir.mkdir()
    parts = []
    for start in range(0, patients, batch_patients):
        numbers = range(start + 1, min(start + batch_patients, patients) + 1)
        parts.append(parts_dir / f"{len(parts):05d}.csv")
        batch = write_batch(ctx, numbers, labels, parts[-1])
        placed.update(batch.values())
        for patient_id, label in batch.items():
            scenario_patients.setdefault(label, []).append(patient_id)
        if progress is not None:
            progress(numbers[-1], patients)
    if patients > placed.total():
        placed[BACKGROUND] = patients - placed.total()
    quarantine_rows = len(sink.quarantine)
    quarantine_path, data_quality_path = sink.close()
    key_path = out_dir / "answer_key.csv"
    case_counts = merge_key_parts(parts, key_path)
    shutil.rmtree(parts_dir)
    return GeneratedExtract(
        out_dir=out_dir,
        tables={name: table.path for name, table in sink.tables.items()},
        manifest=manifest_path,
        answer_key=key_path,
        expected_quarantine=quarantine_path,
        expected_data_quality=data_quality_path,
        row_counts={name: table.count for name, table in sink.tables.items()},
        case_counts=case_counts,
        quarantine_rows=quarantine_rows,
        scenario_counts=dict(sorted(placed.items())),
        scenario_patients={k: tuple(v) for k, v in sorted(scenario_patients.items())},
    )


# Enough patients that the demo month has cases of every outcome, at about 3.5 MB.
DEMO_PATIENTS = 3000
# 26 months (2024-09 to 2026-10): the 13 months the demo audits (2025-10 to 2026-10) and, before
# them, the longest look-back of any measure (LN-14: 365 days and one 30-day episode), so every
# measure is computable in every month the demo audits (audits/lookback.py).
DEMO_MONTHS = 26


def write_demo_extract(out_dir: Path = DEMO_DIR) -> GeneratedExtract:
    """(Re)write the committed demo extract: the defaults with DEMO_PATIENTS patients over
    DEMO_MONTHS months (``chartaudit generate DIR --patients 3000 --months 26``)."""
    return generate_extract(out_dir, patients=DEMO_PATIENTS, months=DEMO_MONTHS)
