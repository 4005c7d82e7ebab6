"""The sandbox's monitoring system: a real Prometheus (built from its Go module) deployed as a
cluster deploys it: a Deployment in `monitoring` with its own ServiceAccount and RBAC,
discovering pods through the API server with in-cluster credentials, behind the Service
`monitoring/prometheus`. The probe runtime runs its pod (image `kaic-sandbox/prometheus`), so it
listens at a pod IP that the API server's proxy accepts."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from conformance.cluster import Cluster

Obj = dict[str, Any]
Apply = Callable[[Cluster, Obj], None]
NAMESPACE = "monitoring"
NAME = "prometheus"
PORT = 9090
IMAGE = "kaic-sandbox/prometheus:3.16.0"
SCRAPE_INTERVAL = "2s"
LABELS = {"app.kubernetes.io/name": "prometheus", "app.kubernetes.io/part-of": "kaic-sandbox"}


def workload_job() -> Obj:
    """The usual annotation-driven pod scraping (`prometheus.io/scrape|port|path`)."""
    meta = "__meta_kubernetes_pod_"
    return {
        "job_name": "kubernetes-pods",
        "kubernetes_sd_configs": [{"role": "pod"}],  # in-cluster credentials
        "relabel_configs": [
            {"source_labels": [f"{meta}annotation_prometheus_io_scrape"], "action": "keep",
             "regex": "true"},
            {"source_labels": [f"{meta}phase"], "action": "keep", "regex": "Running"},
            {"source_labels": [f"{meta}annotation_prometheus_io_path"], "action": "replace",
             "target_label": "__metrics_path__", "regex": "(.+)"},
            {"source_labels": ["__address__", f"{meta}annotation_prometheus_io_port"],
             "action": "replace", "regex": r"([^:]+)(?::\d+)?;(\d+)", "replacement": "$1:$2",
             "target_label": "__address__"},
            {"action": "labelmap", "regex": f"{meta}label_(.+)"},
            {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
            {"source_labels": [f"{meta}name"], "target_label": "pod"},
            {"source_labels": [f"{meta}node_name"], "target_label": "node"},
        ],
    }  # fmt: skip


def config(*, scrape_workloads: bool) -> Obj:
    jobs: list[Obj] = [{"job_name": "prometheus",
                        "static_configs": [{"targets": [f"localhost:{PORT}"]}]}]  # fmt: skip
    if scrape_workloads:
        jobs.append(workload_job())
    return {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
        "scrape_configs": jobs,
    }


def manifests(config_file: Path, node: str) -> list[Obj]:
    """Everything but the configuration, which the pod reads from `config_file` (the sandbox
    runtime mounts no ConfigMaps)."""
    meta = {"namespace": NAMESPACE, "labels": LABELS}
    container = {
        "name": "prometheus",
        "image": IMAGE,
        "args": [f"--config.file={config_file}", "--storage.tsdb.path=data",
                 f"--web.listen-address=$(POD_IP):{PORT}", "--storage.tsdb.retention.time=2h"],
        "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
        "ports": [{"name": "web", "containerPort": PORT, "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"path": "/-/ready", "port": "web"}, "periodSeconds": 2},
    }  # fmt: skip
    selector = {"app.kubernetes.io/name": "prometheus"}
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": NAME, **meta}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": "kaic-sandbox:prometheus", "labels": LABELS},
         "rules": [{"apiGroups": [""], "resources": ["pods", "services", "endpoints", "nodes"],
                    "verbs": ["get", "list", "watch"]},
                   {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
                    "verbs": ["get", "list", "watch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": "kaic-sandbox:prometheus", "labels": LABELS},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                     "name": "kaic-sandbox:prometheus"},
         "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": NAMESPACE}]},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": NAME, **meta},
         "spec": {"replicas": 1, "selector": {"matchLabels": selector},
                  "template": {"metadata": {"labels": LABELS},
                               "spec": {"serviceAccountName": NAME,
                                        "nodeSelector": {"kubernetes.io/hostname": node},
                                        "containers": [container]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": NAME, **meta},
         "spec": {"selector": selector,
                  "ports": [{"name": "web", "port": PORT, "targetPort": "web"}]}},
    ]  # fmt: skip


def deploy(
    cluster: Cluster, apply: Apply, work: Path, node: str, *, scrape_workloads: bool
) -> None:
    """Deploy Prometheus on `node` and wait until it is Ready."""
    config_file = work / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config(scrape_workloads=scrape_workloads)))
    for obj in manifests(config_file, node):
        apply(cluster, obj)
    cluster.wait_for(
        "apps/v1", "Deployment",
        lambda found: found if found and (found[0].get("status") or {}).get("readyReplicas")
        else None,
        awaiting="Prometheus (Deployment monitoring/prometheus) to be ready", timeout_s=90,
        namespace=NAMESPACE, name=NAME,
    )  # fmt: skip
