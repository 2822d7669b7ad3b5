"""The alert rules, their unit tests, the example Prometheus configuration and the Grafana dashboard (ops/): valid
for promtool, and every metric they name is one the metrics endpoint serves (and every metric it serves is on the
dashboard)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from backend.api.app import api
from backend.settings import PROJECT_ROOT, get_settings

PROMETHEUS = PROJECT_ROOT / "ops" / "prometheus"
DASHBOARD = PROJECT_ROOT / "ops" / "grafana" / "waitwell-dashboard.json"
TOKEN = "metrics-token-for-the-ops-tests-0123"
# The alert names the runbooks (docs/runbooks/) refer to.
ALERTS = {
    "WaitwellHighErrorRate",
    "WaitwellHighLatencyP95",
    "WaitwellQueueDepthGrowing",
    "WaitwellDeadLetters",
    "WaitwellRateLimitBreachSpike",
    "WaitwellBeatNotRunning",
    "WaitwellOffersExpiringUnanswered",
    "WaitwellDatabaseDown",
    "WaitwellRedisDown",
}
METRIC_NAME = re.compile(r"\bwaitwell_[a-z0-9_]*[a-z0-9]")
HISTOGRAM_SERIES = ("_bucket", "_count", "_sum")


def promtool(*args: str, cwd: Path = PROMETHEUS) -> subprocess.CompletedProcess[str]:
    path = shutil.which("promtool")
    assert path, "promtool is missing: `make test` installs it (Debian's prometheus package)"
    return subprocess.run([path, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def rules() -> list[dict[str, Any]]:
    document = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def expressions() -> Iterator[tuple[str, str]]:
    """(where, PromQL) of every alert rule and every dashboard query."""
    for rule in rules():
        yield f"alert {rule['alert']}", rule["expr"]
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel.get("targets", []):
            yield f"panel {panel['title']!r}", target["expr"]


# -- promtool ---------------------------------------------------------------------------------------------------


def test_promtool_checks_the_rules() -> None:
    done = promtool("check", "rules", "alerts.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 9 rules found" in done.stdout


def test_promtool_unit_tests_of_the_rules_pass() -> None:
    done = promtool("test", "rules", "alerts_test.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_the_example_prometheus_configuration_is_valid(tmp_path: Path) -> None:
    """prometheus.yml as shipped, with its two file paths pointed at this checkout's rules and a token file."""
    (tmp_path / "metrics_token").write_text(TOKEN)
    text = (PROMETHEUS / "prometheus.yml").read_text()
    text = text.replace("/etc/prometheus/waitwell/alerts.yml", str(PROMETHEUS / "alerts.yml"))
    text = text.replace("/etc/prometheus/waitwell/metrics_token", str(tmp_path / "metrics_token"))
    (tmp_path / "prometheus.yml").write_text(text)
    done = promtool("check", "config", "prometheus.yml", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_is_there_with_a_runbook_and_a_firing_test() -> None:
    by_name = {rule["alert"]: rule for rule in rules()}
    assert set(by_name) == ALERTS
    for name, rule in by_name.items():
        runbook = rule["annotations"]["runbook_url"]
        assert re.fullmatch(r"docs/runbooks/[a-z0-9-]+\.md", runbook), (name, runbook)
        assert rule["annotations"]["summary"] and rule["labels"]["severity"] in {"page", "ticket"}, name
    tests = yaml.safe_load((PROMETHEUS / "alerts_test.yml").read_text())["tests"]
    cases = [case for test in tests for case in test["alert_rule_test"]]
    fires = {case["alertname"] for case in cases if case.get("exp_alerts")}
    quiet = {case["alertname"] for case in cases if not case.get("exp_alerts")}
    assert fires == ALERTS, f"alerts without a case where they fire: {ALERTS - fires}"
    assert quiet == ALERTS, f"alerts without a case where they stay quiet: {ALERTS - quiet}"


# -- names ------------------------------------------------------------------------------------------------------


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch, db: Any) -> tuple[set[str], dict[str, str]]:
    """(every series name the endpoint exposes or declares, the type of each declared metric)."""
    monkeypatch.setattr(get_settings(), "metrics_token", TOKEN)
    with TestClient(api) as client:
        response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200, response.text
    names: set[str] = set()
    types: dict[str, str] = {}
    for line in response.text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            names.add(name)
            types[name] = kind
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names, types


def exists(name: str, names: set[str], types: dict[str, str]) -> bool:
    """A name as served, or a histogram's _bucket/_count/_sum series (never a blind strip of any suffix)."""
    if name in names:
        return True
    return any(
        name.endswith(suffix) and types.get(name.removesuffix(suffix)) == "histogram" for suffix in HISTOGRAM_SERIES
    )


def test_every_metric_of_the_rules_and_the_dashboard_is_served(served: tuple[set[str], dict[str, str]]) -> None:
    names, types = served
    used = {(where, name) for where, expr in expressions() for name in METRIC_NAME.findall(expr)}
    assert len({name for _, name in used}) >= 15
    missing = sorted(f"{where}: {name}" for where, name in used if not exists(name, names, types))
    assert not missing, "names no metric of backend/observability/metrics.py serves:\n" + "\n".join(missing)


def test_every_served_metric_is_on_the_dashboard(served: tuple[set[str], dict[str, str]]) -> None:
    _, types = served
    queried = {name for where, expr in expressions() if where.startswith("panel") for name in METRIC_NAME.findall(expr)}
    families = {name for name in types if name.startswith("waitwell_")}
    assert len(families) >= 20
    shown = {
        family for family in families
        if family in queried or any(family + suffix in queried for suffix in HISTOGRAM_SERIES)
    }  # fmt: skip
    assert families - shown == set(), f"metrics no dashboard panel shows: {sorted(families - shown)}"
