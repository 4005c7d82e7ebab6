"""The sandbox's monitoring system: a real Prometheus (built from its Go module) deployed as a
cluster deploys it: a Deployment in `monitoring` with its own ServiceAccount and RBAC,
discovering pods through the API server with in-cluster credentials, behind the Service
`monitoring/prometheus`. The probe runtime runs its pod (image `kaic-sandbox/prometheus`), so it
listens at a pod IP that the API server's proxy accepts."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from conformance.cluster import Cluster, ProxyTarget
from conformance.errors import KaicError
from conformance.probes import PROBE_IMAGE
from conformance.sandbox import real_nodes

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
                 f"--web.listen-address=$(POD_IP):{PORT}", "--storage.tsdb.retention.time=2h",
                 # /-/reload, as the Prometheus Operator's config reloader calls it
                 "--web.enable-lifecycle"],
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


def deployment_ready(cluster: Cluster, namespace: str, name: str, what: str) -> None:
    cluster.wait_for(
        "apps/v1", "Deployment",
        lambda found: found if found and (found[0].get("status") or {}).get("readyReplicas")
        else None,
        awaiting=f"{what} (Deployment {namespace}/{name}) to be ready", timeout_s=90,
        namespace=namespace, name=name,
    )  # fmt: skip


def deploy(
    cluster: Cluster, apply: Apply, work: Path, node: str, *, scrape_workloads: bool
) -> None:
    """Deploy Prometheus on `node` and wait until it is Ready."""
    config_file = work / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config(scrape_workloads=scrape_workloads)))
    for obj in manifests(config_file, node):
        apply(cluster, obj)
    deployment_ready(cluster, NAMESPACE, NAME, "Prometheus")
    answering(cluster, ProxyTarget("services", NAMESPACE, NAME, PORT), "/-/ready")


def reconfigure(cluster: Cluster, work: Path, *, scrape_workloads: bool) -> None:
    """The running Prometheus given a new scrape configuration and told to reload it."""
    (work / "prometheus.yml").write_text(yaml.safe_dump(config(scrape_workloads=scrape_workloads)))
    reply = cluster.proxy("POST", ProxyTarget("services", NAMESPACE, NAME, PORT), "/-/reload")
    if reply.status != 200:
        raise KaicError(f"sandbox: Prometheus did not reload its configuration: HTTP "
                        f"{reply.status} {reply.text[:200]}")  # fmt: skip


EXPORTER_NAMESPACE = "gpu-operator"
EXPORTER_NAME = "nvidia-dcgm-exporter"
EXPORTER_IMAGE = "kaic-sandbox/gpu-exporter:0.1.0"
EXPORTER_PORT = 9400
EXPORTER_NODES_LABEL = "kaic.dev/exporter-nodes"  # kwok | real: which DaemonSet a pod is of
POD_RESOURCES_DIR = "/var/lib/kubelet/pod-resources"
GPU_LOAD = str(real_nodes.EMULATED_GPU / "load")  # where `burn` marks a real node's GPUs busy


# exporter fault -> the emulated exporter's flag that makes it
EXPORTER_FAULT_FLAGS = {
    "exporter-no-memory": "--no-memory",
    "exporter-no-pod-mapping": "--no-pod-mapping",
    "exporter-utilization-frozen": "--frozen",
}


def _on_gpu_nodes(gpu_kinds: list[str], real: bool) -> Obj:
    """Node affinity: the GPU nodes that KWOK runs, or those a real kubelet runs."""
    kind = {"key": "kaic.dev/sandbox-node-kind", "operator": "In", "values": gpu_kinds}
    where = {"key": real_nodes.LABEL[0], "operator": "In" if real else "DoesNotExist",
             **({"values": [real_nodes.LABEL[1]]} if real else {})}  # fmt: skip
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [kind, where]}]}}}  # fmt: skip


def _exporter_container(directory: Path, real: bool, flags: list[str]) -> Obj:
    """On a KWOK node, the probe runtime runs the exporter (image `kaic-sandbox/gpu-exporter`);
    on a real node, the kubelet runs it from the probe image, as root (dcgm-exporter reads the
    kubelet's root-only PodResources socket too), with the node's socket and load folder."""
    args = ["--node", "$(NODE_NAME)", "--port", str(EXPORTER_PORT), *flags]
    container: Obj = {
        "name": "exporter", "image": EXPORTER_IMAGE, "args": ["--dir", str(directory), *args],
        "env": [{"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
        "ports": [{"name": "metrics", "containerPort": EXPORTER_PORT, "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"path": "/health", "port": "metrics"},
                           "periodSeconds": 5, "timeoutSeconds": 5},
    }  # fmt: skip
    if real:
        container |= {
            "image": PROBE_IMAGE, "command": ["python", "-m", "conformance.sandbox.gpu_exporter"],
            "args": ["--podresources", f"{POD_RESOURCES_DIR}/kubelet.sock",
                     "--load-dir", GPU_LOAD, *args],
            "securityContext": {"runAsUser": 0},
            "volumeMounts": [{"name": "pod-resources", "mountPath": POD_RESOURCES_DIR},
                             {"name": "gpu-load", "mountPath": GPU_LOAD,
                              "readOnly": True}],
        }  # fmt: skip
    return container


def _exporter_daemonset(directory: Path, gpu_kinds: list[str], flags: list[str], real: bool) -> Obj:
    nodes = "real" if real else "kwok"
    name = f"{EXPORTER_NAME}-real" if real else EXPORTER_NAME
    labels = {"app": EXPORTER_NAME, "app.kubernetes.io/name": "dcgm-exporter",
              "app.kubernetes.io/part-of": "kaic-sandbox", EXPORTER_NODES_LABEL: nodes}  # fmt: skip
    annotations = {"prometheus.io/scrape": "true", "prometheus.io/port": str(EXPORTER_PORT)}
    pod: Obj = {"affinity": _on_gpu_nodes(gpu_kinds, real),
                "tolerations": [{"operator": "Exists"}],
                "containers": [_exporter_container(directory, real, flags)]}  # fmt: skip
    if real:
        pod["volumes"] = [
            {"name": "pod-resources", "hostPath": {"path": POD_RESOURCES_DIR}},
            {"name": "gpu-load", "hostPath": {"path": GPU_LOAD}},
        ]
    return {
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": name, "namespace": EXPORTER_NAMESPACE, "labels": labels},
        "spec": {"selector": {"matchLabels": {"app": EXPORTER_NAME, EXPORTER_NODES_LABEL: nodes}},
                 # a changed exporter (a fault, mended) replaces every node's pod at once
                 "updateStrategy": {"type": "RollingUpdate",
                                    "rollingUpdate": {"maxUnavailable": "100%"}},
                 "template": {"metadata": {"labels": labels, "annotations": annotations},
                              "spec": pod}},
    }  # fmt: skip


def exporter_manifests(
    directory: Path, gpu_kinds: list[str], faults: Sequence[str], real_nodes: bool = False
) -> list[Obj]:
    """As the GPU operator deploys dcgm-exporter: one emulated exporter per GPU node (see
    gpu_exporter.py), scraped by Prometheus through its annotations. Two DaemonSets, one per kind
    of node (KWOK's, real), under one app label and Service."""
    flags = [EXPORTER_FAULT_FLAGS[f] for f in faults if f in EXPORTER_FAULT_FLAGS]
    meta = {"namespace": EXPORTER_NAMESPACE, "labels": {"app": EXPORTER_NAME}}
    daemonsets = [_exporter_daemonset(directory, gpu_kinds, flags, real=False)]
    if real_nodes:
        daemonsets.append(_exporter_daemonset(directory, gpu_kinds, flags, real=True))
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": EXPORTER_NAMESPACE}},
        *daemonsets,
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": EXPORTER_NAME, **meta},
         "spec": {"selector": {"app": EXPORTER_NAME},
                  "ports": [{"name": "metrics", "port": EXPORTER_PORT,
                             "targetPort": "metrics"}]}},
    ]  # fmt: skip


def deploy_exporter(
    cluster: Cluster,
    apply: Apply,
    directory: Path,
    gpu_kinds: list[str],
    faults: Sequence[str],
    real_nodes: bool = False,
) -> None:
    manifests = exporter_manifests(directory, gpu_kinds, faults, real_nodes)
    for obj in manifests:
        apply(cluster, obj)

    def ready(found: list[Obj]) -> list[Obj] | None:
        """Every GPU node runs a ready pod of the current template (also after a change)."""
        if not found:
            return None
        status = found[0].get("status") or {}
        wanted = status.get("desiredNumberScheduled") or 0
        current = status.get("observedGeneration", 0) >= found[0]["metadata"]["generation"]
        counts = [status.get(k) for k in ("updatedNumberScheduled", "numberReady")]
        return found if wanted and current and counts == [wanted, wanted] else None

    for name in (o["metadata"]["name"] for o in manifests if o["kind"] == "DaemonSet"):
        cluster.wait_for("apps/v1", "DaemonSet", ready, timeout_s=180,
                         awaiting=f"the GPU exporter (DaemonSet {EXPORTER_NAMESPACE}/{name}) to "
                         "be ready on every GPU node",
                         namespace=EXPORTER_NAMESPACE, name=name)  # fmt: skip
    for pod in cluster.list_objects("v1", "Pod", namespace=EXPORTER_NAMESPACE,
                                    label_selector=f"app={EXPORTER_NAME}"):  # fmt: skip
        if pod["metadata"].get("deletionTimestamp"):
            continue
        answering(cluster, ProxyTarget("pods", EXPORTER_NAMESPACE, pod["metadata"]["name"],
                                       EXPORTER_PORT), "/health")  # fmt: skip


def answering(cluster: Cluster, target: ProxyTarget, path: str, timeout_s: float = 60) -> None:
    """Until `target` answers through the API server's proxy. KWOK may call a pod Ready before
    the runtime has started its process; this is what a client will need, so wait for it."""
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        try:
            reply = cluster.proxy("GET", target, path, timeout=5)
        except Exception as exc:  # connection errors surface as urllib3's, not OSError
            last = str(exc)
        else:
            if reply.status == 200:
                return
            last = f"HTTP {reply.status} {reply.text[:100]!r}"
        time.sleep(0.5)
    raise KaicError(f"sandbox: {target} does not answer {path} after {timeout_s:.0f}s: {last}")


ADAPTER = "prometheus-adapter"
ADAPTER_IMAGE = "kaic-sandbox/prometheus-adapter:0.12.0"
ADAPTER_PORT = 6443
CUSTOM_METRICS = "custom.metrics.k8s.io"


def adapter_config(with_vllm: bool = True) -> Obj:
    """vLLM's load gauges per pod, as the metric names HPAs use (`vllm:` becomes `vllm_`).
    Without vLLM's rule (the fault `adapter-no-vllm-rule`) it serves only the pods' CPU."""
    if not with_vllm:
        return {"rules": [{
            "seriesQuery": 'process_cpu_seconds_total{namespace!="",pod!=""}',
            "resources": {"overrides": {"namespace": {"resource": "namespace"},
                                        "pod": {"resource": "pod"}}},
            "name": {"matches": "^(.*)_total$", "as": "${1}_per_second"},
            "metricsQuery": "sum(rate(<<.Series>>{<<.LabelMatchers>>}[1m])) by (<<.GroupBy>>)",
        }]}  # fmt: skip
    return {"rules": [{
        "seriesQuery": '{__name__=~"vllm:num_requests_waiting|vllm:num_requests_running|'
                       'vllm:kv_cache_usage_perc",namespace!="",pod!=""}',
        "resources": {"overrides": {"namespace": {"resource": "namespace"},
                                    "pod": {"resource": "pod"}}},
        "name": {"matches": "^vllm:(.*)$", "as": "vllm_${1}"},
        "metricsQuery": "sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)",
    }]}  # fmt: skip


def adapter_manifests(config_file: Path, prometheus_url: str, node: str) -> list[Obj]:
    """prometheus-adapter as its chart installs it: a Deployment with the rights of an aggregated
    API server (delegated authentication and authorization), registered as the APIService of
    custom.metrics.k8s.io."""
    labels = {"app.kubernetes.io/name": ADAPTER, "app.kubernetes.io/part-of": "kaic-sandbox"}
    meta = {"namespace": NAMESPACE, "labels": labels}
    subject = [{"kind": "ServiceAccount", "name": ADAPTER, "namespace": NAMESPACE}]
    rbac = "rbac.authorization.k8s.io"
    container = {
        "name": "adapter", "image": ADAPTER_IMAGE,
        "args": [f"--prometheus-url={prometheus_url}", f"--config={config_file}",
                 f"--secure-port={ADAPTER_PORT}", "--bind-address=$(POD_IP)", "--cert-dir=certs",
                 "--metrics-relist-interval=5s", "--v=2"],
        "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
        "ports": [{"name": "https", "containerPort": ADAPTER_PORT, "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "https", "scheme": "HTTPS"},
                           "periodSeconds": 5, "timeoutSeconds": 5},
    }  # fmt: skip
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": ADAPTER, **meta}},
        {"apiVersion": f"{rbac}/v1", "kind": "ClusterRole",
         "metadata": {"name": f"kaic-sandbox:{ADAPTER}", "labels": labels},
         "rules": [{"apiGroups": [""], "resources": ["namespaces", "pods", "services", "nodes"],
                    "verbs": ["get", "list", "watch"]}]},
        {"apiVersion": f"{rbac}/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": f"kaic-sandbox:{ADAPTER}", "labels": labels},
         "roleRef": {"apiGroup": rbac, "kind": "ClusterRole", "name": f"kaic-sandbox:{ADAPTER}"},
         "subjects": subject},
        {"apiVersion": f"{rbac}/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": f"kaic-sandbox:{ADAPTER}:auth-delegator", "labels": labels},
         "roleRef": {"apiGroup": rbac, "kind": "ClusterRole", "name": "system:auth-delegator"},
         "subjects": subject},
        {"apiVersion": f"{rbac}/v1", "kind": "RoleBinding",
         "metadata": {"name": f"kaic-sandbox:{ADAPTER}:auth-reader", "namespace": "kube-system",
                      "labels": labels},
         "roleRef": {"apiGroup": rbac, "kind": "Role",
                     "name": "extension-apiserver-authentication-reader"},
         "subjects": subject},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": ADAPTER, **meta},
         "spec": {"replicas": 1, "selector": {"matchLabels": {"app.kubernetes.io/name": ADAPTER}},
                  "template": {"metadata": {"labels": labels},
                               "spec": {"serviceAccountName": ADAPTER,
                                        "nodeSelector": {"kubernetes.io/hostname": node},
                                        "containers": [container]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": ADAPTER, **meta},
         "spec": {"selector": {"app.kubernetes.io/name": ADAPTER},
                  "ports": [{"name": "https", "port": 443, "targetPort": "https"}]}},
        {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
         "metadata": {"name": f"v1beta1.{CUSTOM_METRICS}", "labels": labels},
         "spec": {"group": CUSTOM_METRICS, "version": "v1beta1",
                  "service": {"name": ADAPTER, "namespace": NAMESPACE, "port": 443},
                  # the adapter serves a self-signed certificate, as the chart's default does
                  "insecureSkipTLSVerify": True,
                  "groupPriorityMinimum": 100, "versionPriority": 100}},
    ]  # fmt: skip


def _rolled_out(found: list[Obj]) -> list[Obj] | None:
    if not found:
        return None
    meta, status = found[0]["metadata"], found[0].get("status") or {}
    want = found[0]["spec"].get("replicas", 1)
    done = (status.get("observedGeneration", 0) >= meta.get("generation", 0)
            and status.get("updatedReplicas") == want == status.get("availableReplicas")
            and status.get("replicas") == want)  # fmt: skip
    return found if done else None


def deploy_adapter(
    cluster: Cluster, apply: Apply, work: Path, node: str, faults: Sequence[str] = ()
) -> None:
    """After Prometheus: the adapter reaches it at its pod IP (the sandbox has no cluster DNS).
    A changed configuration rolls its pod (the adapter reads it at start)."""
    pods = cluster.list_objects("v1", "Pod", namespace=NAMESPACE,
                                label_selector="app.kubernetes.io/name=prometheus")  # fmt: skip
    ip = next((p["status"]["podIP"] for p in pods if (p.get("status") or {}).get("podIP")), "")
    config_file = work / "prometheus-adapter.yml"
    config = yaml.safe_dump(adapter_config("adapter-no-vllm-rule" not in faults))
    config_file.write_text(config)
    for obj in adapter_manifests(config_file, f"http://{ip}:{PORT}/", node):
        if obj["kind"] == "Deployment":
            digest = hashlib.sha256(config.encode()).hexdigest()[:12]
            obj["spec"]["template"]["metadata"]["annotations"] = {"kaic.dev/config": digest}
        apply(cluster, obj)
    cluster.wait_for("apps/v1", "Deployment", _rolled_out, timeout_s=90, namespace=NAMESPACE,
                     name=ADAPTER, awaiting="prometheus-adapter's pod of its current "
                     "configuration to be available")  # fmt: skip

    def available(found: list[Obj]) -> list[Obj] | None:
        conditions = ((found[0].get("status") or {}).get("conditions") or []) if found else []
        return found if any(c["type"] == "Available" and c["status"] == "True"
                            for c in conditions) else None  # fmt: skip

    cluster.wait_for("apiregistration.k8s.io/v1", "APIService", available, timeout_s=90,
                     awaiting=f"the APIService v1beta1.{CUSTOM_METRICS} (prometheus-adapter) to "
                     "be Available", name=f"v1beta1.{CUSTOM_METRICS}")  # fmt: skip
