"""Pod autoscaling: a HorizontalPodAutoscaler on a model server's custom metric (vLLM's waiting
requests, through custom.metrics.k8s.io) scales an accelerator Deployment up under load and back
down after. Not applicable where no custom-metrics API is registered."""

from __future__ import annotations

import time
from typing import Any

from conformance.checks import _monitoring as mon
from conformance.checks._accelerators import device_request
from conformance.checks.registry import check
from conformance.cluster import Cluster, WaitTimeout
from conformance.cluster.wait import poll_until
from conformance.evidence import Evidence
from conformance.failures import fail
from conformance.fixtures import Kube
from conformance.settings import Settings

Obj = dict[str, Any]
CUSTOM_METRICS = "custom.metrics.k8s.io"
WAITING = "num_requests_waiting"
TARGET_PER_POD = 5
LOAD = 30  # waiting requests reported by the first pod: wants ceil(30 / 5) = 6 > MAX pods
MAX_REPLICAS = 3
NAME = "model-server"


def custom_metrics_version(cluster: Cluster) -> str | None:
    groups = cluster.get_path("/apis").get("groups") or []
    for group in groups:
        if group.get("name") == CUSTOM_METRICS:
            return str((group.get("preferredVersion") or {}).get("groupVersion"))
    return None


def waiting_metric(cluster: Cluster, group_version: str) -> tuple[str | None, list[str]]:
    """The pods metric carrying vLLM's waiting requests, and every pods metric served."""
    resources = cluster.get_path(f"/apis/{group_version}").get("resources") or []
    names = sorted(r["name"].split("/", 1)[1] for r in resources
                   if r.get("name", "").startswith("pods/"))  # fmt: skip
    return next((n for n in names if WAITING in n), None), names


def deployment(kube: Kube, settings: Settings) -> Obj:
    request = device_request(kube.cluster, settings)
    templates, asked = request.ask(kube, NAME, 1)
    pod = mon.model_server(NAME, accelerator=asked, claim_templates=templates)
    labels = {"app.kubernetes.io/name": NAME, "app.kubernetes.io/component": "model-server"}
    how = mon.discovery(kube.cluster, NAME, labels)
    if how.pod_monitor is not None:
        kube.apply(how.pod_monitor)
    spec = pod["spec"] | {"restartPolicy": "Always"}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": NAME},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels, "annotations": how.annotations},
                              "spec": spec}},
    }  # fmt: skip


def hpa(metric: str) -> Obj:
    fast = {"stabilizationWindowSeconds": 0,
            "policies": [{"type": "Pods", "value": MAX_REPLICAS, "periodSeconds": 5}]}  # fmt: skip
    return {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": NAME},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": NAME},
            "minReplicas": 1, "maxReplicas": MAX_REPLICAS,
            "metrics": [{"type": "Pods", "pods": {
                "metric": {"name": metric},
                "target": {"type": "AverageValue", "averageValue": str(TARGET_PER_POD)}}}],
            "behavior": {"scaleUp": fast, "scaleDown": fast},
        },
    }  # fmt: skip


def _pods(kube: Kube) -> list[Obj]:
    return kube.cluster.list_objects("v1", "Pod", namespace=kube.namespace,
                                     label_selector=f"app.kubernetes.io/name={NAME}")  # fmt: skip


def _set_load(kube: Kube, pod: str, depth: int) -> None:
    reply = kube.cluster.proxy("POST", mon.server(kube, pod), "/control",
                               body={"queue_depth": depth})  # fmt: skip
    if reply.status != 200:
        fail(
            expected=f"the model server Pod/{kube.namespace}/{pod} to take /control",
            observed=f"HTTP {reply.status}: {reply.text[:200]!r}",
            next_step=f"kubectl -n {kube.namespace} logs {pod}",
        )


class Replicas:
    """The HPA's replica history, recorded from its watch events."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.history: list[dict[str, Any]] = []

    def at_least(self, count: int) -> Any:
        return lambda found: self._record(found, lambda r: r >= count)

    def at_most(self, count: int) -> Any:
        return lambda found: self._record(found, lambda r: r <= count)

    def _record(self, found: list[Obj], good: Any) -> Obj | None:
        status = (found[0].get("status") or {}) if found else {}
        current, desired = status.get("currentReplicas"), status.get("desiredReplicas")
        last = self.history[-1] if self.history else {}
        if (last.get("current"), last.get("desired")) != (current, desired) or not last:
            self.history.append({"t_s": round(time.monotonic() - self.started, 1),
                                 "current": current, "desired": desired})  # fmt: skip
        return found[0] if current is not None and good(current) else None


def _wait_hpa(kube: Kube, condition: Any, awaiting: str, history: Replicas) -> None:
    try:
        kube.cluster.wait_for("autoscaling/v2", "HorizontalPodAutoscaler", condition,
                              awaiting=awaiting, timeout_s=180, namespace=kube.namespace,
                              name=NAME)  # fmt: skip
    except WaitTimeout as exc:
        fail(
            expected=f"HorizontalPodAutoscaler/{kube.namespace}/{NAME} {awaiting}",
            observed=f"replica history {history.history}; {exc}",
            next_step=f"kubectl -n {kube.namespace} describe hpa {NAME} (its conditions say "
            "whether it could read the metric)",
        )


@check("pod-autoscaling.custom-metric", requirements=["pod_autoscaling"])
def test_custom_metric(kube: Kube, kaic_settings: Settings, evidence: Evidence) -> None:
    """An HPA on the model server's waiting requests scales its accelerator Deployment up under
    load and back down after."""
    version = custom_metrics_version(kube.cluster)
    if version is None:
        fail(
            expected=f"a custom-metrics API ({CUSTOM_METRICS}) so that an HPA can scale an "
            "accelerator workload on a model server's metrics",
            observed="no APIService serves it",
            next_step="install a metrics adapter (prometheus-adapter, KEDA) that serves "
            f"{CUSTOM_METRICS} from the cluster's Prometheus (kubectl get apiservices)",
        )
    evidence.observe("custom_metrics_api", version)
    kube.apply(deployment(kube, kaic_settings))
    first = mon.ready_pod_of(kube, f"app.kubernetes.io/name={NAME}")
    seen: list[str] = []

    def served() -> tuple[str | None, str]:
        metric, names = waiting_metric(kube.cluster, version)
        seen[:] = names
        return metric, f"pods metrics served: {names}"

    try:
        metric = poll_until(served, awaiting=f"{version} to serve vLLM's waiting requests",
                            timeout_s=120 * kube.cluster.timeout_scale, interval_s=2)  # fmt: skip
    except WaitTimeout:
        fail(
            expected=f"{version} to serve a pods metric for vLLM's waiting requests "
            f"(a name containing {WAITING}) once a model server is scraped",
            observed=f"pods metrics {seen or 'none'}",
            next_step="add a rule for vllm:num_requests_waiting to the metrics adapter's "
            "configuration (prometheus-adapter: seriesQuery with namespace and pod labels)",
        )
    evidence.observe("metric", metric)
    replicas = Replicas()
    kube.apply(hpa(metric))
    _set_load(kube, first, LOAD)
    started = time.monotonic()
    _wait_hpa(
        kube,
        replicas.at_least(2),
        f"to scale up (load: {LOAD} waiting requests on "
        f"Pod/{kube.namespace}/{first}, target {TARGET_PER_POD} per pod)",
        replicas,
    )
    up_s = time.monotonic() - started
    for pod in _pods(kube):
        if (pod.get("status") or {}).get("podIP"):
            _set_load(kube, pod["metadata"]["name"], 0)
    started = time.monotonic()
    _wait_hpa(kube, replicas.at_most(1), "to scale back down to 1 once the load is gone", replicas)
    evidence.observe("replica_history", replicas.history)
    evidence.observe("scaled_up_after_s", round(up_s, 1))
    evidence.observe("scaled_down_after_s", round(time.monotonic() - started, 1))
