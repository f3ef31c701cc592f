"""prefect.yaml: the monthly deployment points at the real flow with a valid schedule, and
Prefect's telemetry is off wherever chartaudit runs it."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import yaml
from prefect.flows import load_flow_from_entrypoint

ROOT = Path(__file__).resolve().parents[2]


def deployment() -> dict:
    config = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    (found,) = [d for d in config["deployments"] if d["name"] == "monthly-audit"]
    return found


def test_the_deployment_runs_the_monthly_audit_flow_with_its_parameters(monkeypatch):
    entry = deployment()["entrypoint"]
    assert entry.startswith("flows/"), "the flow lives in the top-level flows/ folder"
    monkeypatch.chdir(ROOT)  # Prefect resolves the entrypoint from the deployment's folder
    flow = load_flow_from_entrypoint(entry)
    assert flow.name == "monthly-audit"
    accepted = set(inspect.signature(flow.fn).parameters)
    assert set(deployment()["parameters"]) <= accepted


def test_the_schedule_is_06_00_on_the_2nd_in_a_real_time_zone():
    (schedule,) = deployment()["schedules"]
    assert schedule["cron"] == "0 6 2 * *"
    ZoneInfo(schedule["timezone"])  # raises for an unknown zone


def test_telemetry_is_off_once_chartaudit_flows_is_imported(tmp_path):
    """From a folder without our pyproject.toml, and with the variables unset."""
    script = (
        "import os, chartaudit.flows; from prefect.settings import Settings;"
        "print(Settings().server.analytics_enabled, os.environ['DO_NOT_TRACK'])"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("DO_NOT_TRACK",)}
    env = {k: v for k, v in env.items() if not k.startswith("PREFECT_SERVER_ANALYTICS")}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "1"]
