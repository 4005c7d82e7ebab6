"""What the metrics checks share: finding the cluster's Prometheus and asking it things, and
running the agent's model server as a workload the monitoring system should discover."""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import dataclass
from typing import Any

import requests
from kubernetes.client import ApiException

from conformance.checks import _status as st
from conformance.cluster import Cluster, ObjectRef, ProxyTarget
from conformance.failures import fail
from conformance.fixtures import Kube
from conformance.probes import pods
from conformance.settings import Settings

Obj = dict[str, Any]
SERVE_PORT = 8000
SERVE_COMMAND = ("python", "-m", "conformance.agent", "serve", "--port", str(SERVE_PORT))
PROMETHEUS_PORTS = (9090,)
PROMETHEUS_PORT_NAMES = ("web", "http-web", "http")
NOT_PROMETHEUS = ("alertmanager", "operator", "node-exporter", "pushgateway", "adapter",
                  "kube-state", "blackbox", "grafana", "thanos-sidecar")  # fmt: skip
MONITORING_API = "monitoring.coreos.com/v1"


class PrometheusError(RuntimeError):
    pass


@dataclass(frozen=True)
class Prometheus:
    """A Prometheus HTTP API, reached through the API server's service proxy or at a URL."""

    where: str
    service: ProxyTarget | None = None
    url: str = ""

    def api(self, cluster: Cluster, path: str, params: dict[str, str]) -> Any:
        query = urllib.parse.urlencode(params)
        if self.service is not None:
            reply = cluster.proxy("GET", self.service, f"{path}?{query}", timeout=30)
            status, text = reply.status, reply.text
        else:
            response = requests.get(f"{self.url.rstrip('/')}{path}", params=params, timeout=30)
            status, text = response.status_code, response.text
        try:
            body = json.loads(text)
        except ValueError:
            body = {}
        if status != 200 or body.get("status") != "success":
            raise PrometheusError(f"{self.where} answered {path} with HTTP {status}: "
                                  f"{body.get('error') or text[:200]!r}")  # fmt: skip
        return body["data"]

    def query(self, cluster: Cluster, promql: str) -> list[Obj]:
        data = self.api(cluster, "/api/v1/query", {"query": promql})
        return list(data.get("result") or [])

    def active_targets(self, cluster: Cluster) -> list[Obj]:
        data = self.api(cluster, "/api/v1/targets", {"state": "active"})
        return list(data.get("activeTargets") or [])


def _port(service: Obj) -> int | str | None:
    for port in (service.get("spec") or {}).get("ports") or []:
        if port.get("port") in PROMETHEUS_PORTS or port.get("name") in PROMETHEUS_PORT_NAMES:
            return int(port["port"])
    return None


def _looks_like_prometheus(service: Obj) -> bool:
    meta = service["metadata"]
    labels = meta.get("labels") or {}
    named = "prometheus" in (labels.get("app.kubernetes.io/name", "") + labels.get("app", "")
                             + meta["name"])  # fmt: skip
    return named and not any(word in meta["name"] for word in NOT_PROMETHEUS)


def find_prometheus(cluster: Cluster, settings: Settings) -> Prometheus:
    """`--prometheus-url`, else a Service that looks like Prometheus (non-headless first)."""
    if settings.prometheus_url:
        return Prometheus(settings.prometheus_url, url=settings.prometheus_url)
    candidates = []
    services = cluster.list_objects("v1", "Service")
    for service in services:
        port = _port(service)
        if port is None or not _looks_like_prometheus(service):
            continue
        meta = service["metadata"]
        headless = (service.get("spec") or {}).get("clusterIP") == "None"
        candidates.append((headless, meta["namespace"], meta["name"], port))
    if not candidates:
        fail(
            expected="a Prometheus in the cluster (a Service named or labelled prometheus with "
            "port 9090 or `web`) or one given with --prometheus-url",
            observed=f"no such Service among the cluster's {len(services)} Services",
            next_step="install the platform's monitoring stack (e.g. kube-prometheus-stack), or "
            "pass --prometheus-url to the one the platform uses",
        )
    _headless, namespace, name, port = sorted(candidates)[0]
    target = ProxyTarget("services", namespace, name, port)
    return Prometheus(str(target), service=target)


@dataclass(frozen=True)
class Discovery:
    """How the suite asked the monitoring system to scrape its workload."""

    annotations: dict[str, str]
    pod_monitor: Obj | None
    namespace_labels: dict[str, str]

    def describe(self) -> str:
        ways = ["prometheus.io/scrape annotations"]
        if self.pod_monitor is not None:
            ways.insert(0, f"PodMonitor {self.pod_monitor['metadata']['name']}")
        return " and ".join(ways)


def _match_labels(selector: Obj | None) -> dict[str, str]:
    return dict((selector or {}).get("matchLabels") or {})


def discovery(cluster: Cluster, name: str, labels: dict[str, str]) -> Discovery:
    """Scrape annotations always; a PodMonitor too where the Prometheus operator runs, labelled
    so that every Prometheus it manages selects it."""
    annotations = {"prometheus.io/scrape": "true", "prometheus.io/port": str(SERVE_PORT),
                   "prometheus.io/path": "/metrics"}  # fmt: skip
    if not cluster.serves(MONITORING_API, "PodMonitor"):
        return Discovery(annotations, None, {})
    monitor_labels: dict[str, str] = {}
    namespace_labels: dict[str, str] = {}
    try:
        instances = cluster.list_objects(MONITORING_API, "Prometheus")
    except ApiException:
        instances = []  # may not be readable: the PodMonitor goes out unlabelled
    for instance in instances:
        spec = instance.get("spec") or {}
        monitor_labels |= _match_labels(spec.get("podMonitorSelector"))
        namespace_labels |= _match_labels(spec.get("podMonitorNamespaceSelector"))
    monitor = {
        "apiVersion": MONITORING_API,
        "kind": "PodMonitor",
        "metadata": {"name": name, "labels": monitor_labels},
        "spec": {
            "selector": {"matchLabels": labels},
            "podMetricsEndpoints": [{"port": "http", "path": "/metrics", "interval": "5s"}],
        },
    }
    return Discovery(annotations, monitor, namespace_labels)


def model_server(
    name: str,
    *,
    queue_depth: int = 0,
    accelerator: dict[str, Any] | None = None,
    claim_templates: dict[str, str] | None = None,
    model: str = "",
    labels: dict[str, str] | None = None,
) -> Obj:
    """A pod running the agent's model server, ready once it answers /health; `accelerator` is
    what the container asks for (claims or limits, from DeviceRequest.ask)."""
    command = [*SERVE_COMMAND, "--queue-depth", str(queue_depth)]
    if model:
        command += ["--model", model]
    container = pods.container("server", command=command, **(accelerator or {}))
    container["ports"] = [{"name": "http", "containerPort": SERVE_PORT, "protocol": "TCP"}]
    container["env"] = [
        {"name": name_, "valueFrom": {"fieldRef": {"fieldPath": path}}}
        for name_, path in (("POD_NAME", "metadata.name"), ("POD_NAMESPACE", "metadata.namespace"),
                            ("POD_IP", "status.podIP"))
    ]  # fmt: skip
    container["readinessProbe"] = {
        "httpGet": {"path": "/health", "port": "http"}, "periodSeconds": 2,
    }  # fmt: skip
    manifest = pods.pod(name, [container], tolerate_gpus=accelerator is not None,
                        claim_templates=claim_templates, labels=labels)  # fmt: skip
    manifest["spec"]["restartPolicy"] = "Always"
    return manifest


def deploy_model_server(kube: Kube, name: str, *, queue_depth: int = 0) -> tuple[Discovery, Obj]:
    """Deploy the model server with whatever makes the monitoring system scrape it; return how,
    and the pod once it is Ready."""
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/component": "model-server"}
    how = discovery(kube.cluster, name, labels)
    if how.namespace_labels:
        kube.cluster.label(ObjectRef("v1", "Namespace", kube.namespace), how.namespace_labels)
    manifest = model_server(name, queue_depth=queue_depth)
    manifest["metadata"]["labels"] = labels
    manifest["metadata"]["annotations"] = how.annotations
    kube.apply(manifest)
    if how.pod_monitor is not None:
        kube.apply(how.pod_monitor)
    return how, ready_pod(kube, name)


def _first_ready(found: list[Obj]) -> Obj | None:
    return next((pod for pod in found if st.holds(pod, "Ready")), None)


def ready_pod(kube: Kube, name: str, timeout_s: float = 120) -> Obj:
    return kube.cluster.wait_for("v1", "Pod", _first_ready, awaiting=f"Pod/{kube.namespace}/"
                                 f"{name} to be Ready", timeout_s=timeout_s,
                                 namespace=kube.namespace, name=name)  # fmt: skip


def ready_pod_of(kube: Kube, selector: str, timeout_s: float = 120) -> str:
    """The name of the first Ready pod matching `selector` in the check's namespace."""
    pod = kube.cluster.wait_for("v1", "Pod", _first_ready, awaiting=f"a Ready pod ({selector}) "
                                f"in {kube.namespace}", timeout_s=timeout_s,
                                namespace=kube.namespace, label_selector=selector)  # fmt: skip
    return str(pod["metadata"]["name"])


def server(kube: Kube, name: str) -> ProxyTarget:
    return ProxyTarget("pods", kube.namespace, name, SERVE_PORT)


POD_LABELS = ("pod", "kubernetes_pod_name", "pod_name")
NAMESPACE_LABELS = ("namespace", "kubernetes_namespace")


def of_pod(labels: dict[str, str], namespace: str, name: str) -> bool:
    """Whether a series or target is the pod's, whichever labels the scrape configuration
    gives it (kube-prometheus: pod/namespace; older annotation configs: kubernetes_*)."""
    return any(labels.get(k) == name for k in POD_LABELS) and any(
        labels.get(k) == namespace for k in NAMESPACE_LABELS
    )


def target_of(target: Obj, namespace: str, name: str, pod_ip: str) -> bool:
    discovered = target.get("discoveredLabels") or {}
    if discovered.get("__meta_kubernetes_pod_name") == name:
        return discovered.get("__meta_kubernetes_namespace") == namespace
    if of_pod(target.get("labels") or {}, namespace, name):
        return True
    return bool(pod_ip) and f"//{pod_ip}:" in str(target.get("scrapeUrl", ""))


def pod_series(results: list[Obj], namespace: str, name: str) -> list[Obj]:
    return [r for r in results if of_pod(r.get("metric") or {}, namespace, name)]


def sample_value(series: Obj) -> float:
    return float(series["value"][1])
