"""Metrics checks pass on the sandbox (a real Prometheus discovering pods) and fail, naming what
is missing, without Prometheus or when it does not scrape workloads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import MakeSandbox
from tests.integration.test_accelerator_checks import run, statuses

pytestmark = pytest.mark.sandbox

SERVICE = ["ai-service-metrics.discovered", "ai-service-metrics.queried"]


def test_ai_service_metrics_pass_on_the_sandbox(sandbox: Any, tmp_path: Path) -> None:
    checks = run(sandbox, tmp_path, "--check", "ai-service-metrics.*")
    assert statuses(checks) == dict.fromkeys(SERVICE, "passed")
    found = checks["ai-service-metrics.discovered"]["evidence"]["observed"]
    assert found["prometheus"] == "Service/monitoring/prometheus:9090"
    assert found["target"]["health"] == "up"
    assert found["target"]["scrapeUrl"].endswith(":8000/metrics")
    queried = checks["ai-service-metrics.queried"]["evidence"]["observed"]
    # what Prometheus returned for the pod, after the suite's 12 requests, queue depth set to 5
    assert queried["metrics"]["request count"] == 12
    assert queried["metrics"]["latency histogram"] == 12
    assert queried["metrics"]["queue depth"] == 5
    assert queried["metrics"]["latency_buckets"] >= 10


def test_without_prometheus_ai_service_metrics_fail(
    sandbox_factory: MakeSandbox, tmp_path: Path
) -> None:
    box = sandbox_factory(without=["prometheus"])
    checks = run(box, tmp_path, "--check", "ai-service-metrics.*")
    assert statuses(checks) == dict.fromkeys(SERVICE, "failed")
    for check in checks.values():
        assert "expected a Prometheus in the cluster" in check["message"]
        assert "--prometheus-url" in check["message"]


def test_prometheus_not_scraping_workloads_fails_discovery(
    sandbox_factory: MakeSandbox, tmp_path: Path
) -> None:
    box = sandbox_factory(breaks=["prometheus-no-workload-scrape"])
    # the discovery wait is 150 s for real clusters; a fifth of it is plenty for 2 s scrapes
    checks = run(box, tmp_path, "--check", "ai-service-metrics.*", "--timeout-scale", "0.2")
    assert statuses(checks) == dict.fromkeys(SERVICE, "failed")
    for check in checks.values():
        message = check["message"]
        assert "to discover and scrape the model server Pod/" in message
        assert "Service/monitoring/prometheus:9090" in message
        assert "of the pod: none" in message
