"""Metrics and autoscaling checks pass on the sandbox (a real Prometheus discovering pods, the
emulated GPU exporter, prometheus-adapter) and fail or are not applicable, naming what is
missing, when a part of the monitoring stack is absent or broken: broken in place on the shared
sandbox, or left out of one started without it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conformance import sandbox as sbx
from tests.integration.conftest import BARE, broken
from tests.integration.test_accelerator_checks import run, statuses

pytestmark = pytest.mark.sandbox

SERVICE = ["ai-service-metrics.discovered", "ai-service-metrics.queried"]
ACCELERATOR = [
    "accelerator-metrics.per-device", "accelerator-metrics.pod-attribution",
    "accelerator-metrics.utilization-follows-load",
]  # fmt: skip
# Also without the Gateway API (test_inference_routing.py uses this sandbox too, and
# test_platform_faults.py, which needs neither).
NO_PROMETHEUS = {"without": ["prometheus", "gateway"]}
# Also without kube-proxy (test_sandbox_network.py uses it), Kueue, LWS and the DRA driver.
NO_EXPORTER = {"without": BARE}


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


@pytest.mark.box(**NO_PROMETHEUS)
def test_without_prometheus_ai_service_metrics_fail(box: sbx.Sandbox, tmp_path: Path) -> None:
    checks = run(box, tmp_path, "--check", "ai-service-metrics.*")
    assert statuses(checks) == dict.fromkeys(SERVICE, "failed")
    for check in checks.values():
        assert "expected a Prometheus in the cluster" in check["message"]
        assert "--prometheus-url" in check["message"]


def test_prometheus_not_scraping_workloads_fails_discovery(
    sandbox: sbx.Sandbox, tmp_path: Path
) -> None:
    # the discovery wait is 150 s for real clusters; a fifth of it is plenty for 2 s scrapes
    with broken(sandbox, "prometheus-no-workload-scrape") as box:
        checks = run(box, tmp_path, "--check", "ai-service-metrics.*", "--timeout-scale", "0.2")
    assert statuses(checks) == dict.fromkeys(SERVICE, "failed")
    for check in checks.values():
        message = check["message"]
        assert "to discover and scrape the model server Pod/" in message
        assert "Service/monitoring/prometheus:9090" in message
        assert "of the pod: none" in message


def test_accelerator_metrics_pass_on_the_sandbox(sandbox: Any, tmp_path: Path) -> None:
    checks = run(sandbox, tmp_path, "--check", "accelerator-metrics.*")
    assert statuses(checks) == dict.fromkeys(ACCELERATOR, "passed")
    per_device = checks["accelerator-metrics.per-device"]["evidence"]["observed"]
    assert len(per_device["exporters"]) == 5  # one per GPU node
    assert len(per_device["devices"]["gpu-dp-0"]) == 4
    assert len(per_device["devices"]["gpu-ts-0"]) == 1  # time-slicing: one physical GPU
    assert per_device["recorded"] == {"temperature": True, "power": True, "interconnect": False}
    attributed = checks["accelerator-metrics.pod-attribution"]["evidence"]["observed"]
    assert attributed["attributed"] == attributed["pod_was_given"]
    assert len(attributed["attributed"]) == 1
    history = checks["accelerator-metrics.utilization-follows-load"]["evidence"]["observed"]
    values = [v for reading in history["utilization_history"] for v in reading.values()]
    assert values[0] > 50
    assert values[-1] < 50


def test_an_exporter_without_memory_metrics_fails_per_device(
    sandbox: sbx.Sandbox, tmp_path: Path
) -> None:
    with broken(sandbox, "exporter-no-memory") as box:
        checks = run(box, tmp_path, "--check", "accelerator-metrics.*")
    assert statuses(checks) == {
        "accelerator-metrics.per-device": "failed",
        "accelerator-metrics.pod-attribution": "passed",
        "accelerator-metrics.utilization-follows-load": "passed",
    }
    message = checks["accelerator-metrics.per-device"]["message"]
    assert "memory (DCGM_FI_DEV_FB_USED)" in message
    assert "Node/gpu-dp-0: 0 of its 4 device(s) with utilization and memory" in message
    assert "Node/gpu-ts-0: 0 of its 1 device(s)" in message


HALF_WAITS = ("--timeout-scale", "0.5")


def test_an_exporter_without_pod_mapping_and_with_stale_utilization_fails(
    sandbox: sbx.Sandbox, tmp_path: Path
) -> None:
    """Two faults of one exporter, each failing the check named for it: no pod labels fail
    attribution; utilization stuck at its loaded value fails the fall back after the load."""
    with broken(sandbox, "exporter-no-pod-mapping", "exporter-utilization-frozen") as box:
        # the faults hold for good: half the waits tell as well as whole ones
        checks = run(box, tmp_path, "--check", "accelerator-metrics.*", *HALF_WAITS)
    assert statuses(checks) == {
        "accelerator-metrics.per-device": "passed",
        "accelerator-metrics.pod-attribution": "failed",
        "accelerator-metrics.utilization-follows-load": "failed",
    }
    attribution = checks["accelerator-metrics.pod-attribution"]["message"]
    assert "to report the device held by Pod/" in attribution
    assert "with labels pod and namespace" in attribution
    assert "DCGM_EXPORTER_KUBERNETES=true" in attribution
    stale = checks["accelerator-metrics.utilization-follows-load"]["message"]
    assert "to fall below 50% once Pod/" in stale
    assert "the exporter reports stale values" in stale


@pytest.mark.box(**NO_EXPORTER)
def test_without_an_exporter_accelerator_metrics_fail(box: sbx.Sandbox, tmp_path: Path) -> None:
    checks = run(box, tmp_path, "--check", "accelerator-metrics.*")
    assert statuses(checks) == dict.fromkeys(ACCELERATOR, "failed")
    for check in checks.values():
        assert "expected an accelerator metrics exporter" in check["message"]
        assert "--metrics-endpoint" in check["message"]


def test_pod_autoscaling_on_a_custom_metric(sandbox: Any, tmp_path: Path) -> None:
    checks = run(sandbox, tmp_path, "--check", "pod-autoscaling.*")
    assert statuses(checks) == {"pod-autoscaling.custom-metric": "passed"}
    observed = checks["pod-autoscaling.custom-metric"]["evidence"]["observed"]
    assert observed["custom_metrics_api"] == "custom.metrics.k8s.io/v1beta1"
    assert observed["metric"] == "vllm_num_requests_waiting"
    current = [h["current"] for h in observed["replica_history"] if h["current"] is not None]
    assert current[0] == 1
    assert max(current) == 3  # the HPA's maxReplicas: the load asked for 6
    assert current[-1] == 1


def test_an_adapter_without_vllms_rule_fails_pod_autoscaling(
    sandbox: sbx.Sandbox, tmp_path: Path
) -> None:
    """The custom-metrics API is there, the HPA could scale, but on no model-server metric."""
    with broken(sandbox, "adapter-no-vllm-rule") as box:
        checks = run(box, tmp_path, "--check", "pod-autoscaling.*", *HALF_WAITS)
    got = checks["pod-autoscaling.custom-metric"]
    assert got["status"] == "failed"
    assert got["message"].startswith(
        "expected custom.metrics.k8s.io/v1beta1 to serve a pods metric for vLLM's waiting requests"
    )
    assert "add a rule for vllm:num_requests_waiting" in got["message"]


@pytest.mark.box(**NO_EXPORTER)
def test_without_a_metrics_adapter_pod_autoscaling_fails(box: sbx.Sandbox, tmp_path: Path) -> None:
    """HPA is served but nothing can scale it on a custom metric: the checklist's capability is
    missing, so the MUST fails (it is never not-applicable: every platform serves HPA)."""
    checks = run(box, tmp_path, "--check", "pod-autoscaling.*")
    assert statuses(checks) == {"pod-autoscaling.custom-metric": "failed"}
    results = json.loads((tmp_path / "results.json").read_text())
    (requirement,) = [r for r in results["requirements"] if r["id"] == "pod_autoscaling"]
    assert requirement["status"] == "failed"
    message = checks["pod-autoscaling.custom-metric"]["message"]
    assert message.startswith("expected a custom-metrics API (custom.metrics.k8s.io) so that")
    assert "observed no APIService serves it. Next: install a metrics adapter" in message
