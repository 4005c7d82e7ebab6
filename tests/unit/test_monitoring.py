"""The metrics checks' reading of what monitoring systems return, without a cluster."""

from __future__ import annotations

from typing import Any

import pytest

from conformance.checks import _monitoring as mon
from conformance.checks import autoscaling
from conformance.sandbox import monitoring


def service(name: str, labels: dict[str, str], ports: list[dict[str, Any]]) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "mon", "labels": labels},
            "spec": {"ports": ports}}  # fmt: skip


@pytest.mark.parametrize(
    ("svc", "is_prometheus"),
    [
        (service("prometheus-k8s", {}, [{"name": "web", "port": 9090}]), True),
        (
            service(
                "kps-prometheus",
                {"app": "kube-prometheus-stack-prometheus"},
                [{"name": "http-web", "port": 9090}],
            ),
            True,
        ),
        (service("metrics", {"app.kubernetes.io/name": "prometheus"}, [{"port": 9090}]), True),
        (service("prometheus-alertmanager", {}, [{"name": "web", "port": 9093}]), False),
        (service("prometheus-operator", {}, [{"name": "https", "port": 8443}]), False),
        (service("prometheus-adapter", {}, [{"name": "https", "port": 443}]), False),
        (service("grafana", {}, [{"name": "http", "port": 80}]), False),
    ],
)
def test_which_services_are_prometheus(svc: dict[str, Any], is_prometheus: bool) -> None:
    assert (mon._looks_like_prometheus(svc) and mon._port(svc) is not None) == is_prometheus


def test_series_of_a_pod_under_either_label_spelling() -> None:
    results = [
        {"metric": {"pod": "a", "namespace": "n"}, "value": [0, "3"]},
        {"metric": {"kubernetes_pod_name": "a", "kubernetes_namespace": "n"}, "value": [0, "4"]},
        {"metric": {"pod": "a", "namespace": "other"}, "value": [0, "5"]},
        {"metric": {"pod": "b", "namespace": "n"}, "value": [0, "6"]},
    ]
    mine = mon.pod_series(results, "n", "a")
    assert [mon.sample_value(s) for s in mine] == [3.0, 4.0]


def test_a_target_is_the_pods_by_discovery_labels_or_address() -> None:
    by_meta = {"discoveredLabels": {"__meta_kubernetes_pod_name": "a",
                                    "__meta_kubernetes_namespace": "n"}}  # fmt: skip
    assert mon.target_of(by_meta, "n", "a", "")
    assert not mon.target_of(by_meta, "other", "a", "")
    by_address = {"scrapeUrl": "http://10.0.0.7:8000/metrics", "labels": {}}
    assert mon.target_of(by_address, "n", "a", "10.0.0.7")
    assert not mon.target_of(by_address, "n", "a", "10.0.0.70")


def test_hpa_targets_the_deployment_on_the_metric() -> None:
    hpa = autoscaling.hpa("vllm_num_requests_waiting")
    spec = hpa["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                      "name": autoscaling.NAME}  # fmt: skip
    (metric,) = spec["metrics"]
    assert metric["pods"]["metric"]["name"] == "vllm_num_requests_waiting"
    # the load asks for more replicas than allowed, so the scale-up is to exactly maxReplicas
    per_pod = float(metric["pods"]["target"]["averageValue"])
    assert autoscaling.LOAD / per_pod > spec["maxReplicas"] > spec["minReplicas"] == 1
    assert spec["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 0


def test_replica_history_records_changes_only() -> None:
    replicas = autoscaling.Replicas()
    hpa = lambda current, desired: [  # noqa: E731
        {"status": {"currentReplicas": current, "desiredReplicas": desired}}
    ]
    up = replicas.at_least(2)
    assert up(hpa(1, 3)) is None
    assert up(hpa(1, 3)) is None
    assert up(hpa(3, 3)) is not None
    down = replicas.at_most(1)
    assert down(hpa(3, 1)) is None
    assert down(hpa(1, 1)) is not None
    assert [(h["current"], h["desired"]) for h in replicas.history] == [
        (1, 3), (3, 3), (3, 1), (1, 1),
    ]  # fmt: skip


def test_the_sandbox_prometheus_scrapes_workloads_unless_broken() -> None:
    jobs = {j["job_name"] for j in monitoring.config(scrape_workloads=True)["scrape_configs"]}
    assert jobs == {"prometheus", "kubernetes-pods"}
    broken = monitoring.config(scrape_workloads=False)["scrape_configs"]
    assert [j["job_name"] for j in broken] == ["prometheus"]


def test_the_adapter_exposes_the_waiting_requests_per_pod() -> None:
    (rule,) = monitoring.adapter_config()["rules"]
    assert "vllm:num_requests_waiting" in rule["seriesQuery"]
    assert rule["resources"]["overrides"]["pod"] == {"resource": "pod"}
    assert rule["name"] == {"matches": "^vllm:(.*)$", "as": "vllm_${1}"}
