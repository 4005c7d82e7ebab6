"""The sandbox's cluster DNS: a real CoreDNS (built from its Go module) deployed as clusters
deploy it: Deployment `kube-system/coredns` with its own ServiceAccount and RBAC, answering for
`cluster.local` from Services and EndpointSlices, behind the Service `kube-system/kube-dns` at
the fixed ClusterIP the probe runtime writes into pods' resolv.conf (kube-proxy routes it). No
upstream resolver: names outside the cluster do not resolve, as the sandbox has no way out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from conformance.cluster import Cluster
from conformance.sandbox.monitoring import Apply, deployment_ready

Obj = dict[str, Any]
NAMESPACE = "kube-system"
NAME = "coredns"
SERVICE = "kube-dns"
CLUSTER_IP = "10.96.0.10"
IMAGE = "kaic-sandbox/coredns:1.14.7"
LABELS = {"k8s-app": "kube-dns", "app.kubernetes.io/part-of": "kaic-sandbox"}
# listeners at the pod's IP; no health listener (it took 8080, where Envoy listens on every
# address, while the sandbox's pods shared one network namespace)
COREFILE = """\
.:53 {
    bind {$POD_IP}
    errors
    ready {$POD_IP}:8181
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 5
    }
    cache 5
}
"""


def manifests(corefile: Path) -> list[Obj]:
    """Everything but the Corefile, which the pod reads from `corefile` (the sandbox runtime
    mounts no ConfigMaps)."""
    meta = {"namespace": NAMESPACE, "labels": LABELS}
    container = {
        "name": "coredns", "image": IMAGE, "args": ["-conf", str(corefile)],
        "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
        "ports": [{"name": "dns", "containerPort": 53, "protocol": "UDP"},
                  {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"},
                  {"name": "ready", "containerPort": 8181, "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"path": "/ready", "port": "ready"}, "periodSeconds": 2},
    }  # fmt: skip
    role = "kaic-sandbox:coredns"
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": NAME, **meta}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": role, "labels": LABELS},
         "rules": [{"apiGroups": [""], "resources": ["services", "pods", "namespaces"],
                    "verbs": ["list", "watch"]},
                   {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
                    "verbs": ["list", "watch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": role, "labels": LABELS},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                     "name": role},
         "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": NAMESPACE}]},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": NAME, **meta},
         "spec": {"replicas": 1, "selector": {"matchLabels": {"k8s-app": "kube-dns"}},
                  "template": {"metadata": {"labels": LABELS},
                               "spec": {"serviceAccountName": NAME, "dnsPolicy": "Default",
                                        "containers": [container]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": SERVICE, **meta},
         "spec": {"selector": {"k8s-app": "kube-dns"}, "clusterIP": CLUSTER_IP,
                  "ports": [{"name": "dns", "port": 53, "targetPort": 53, "protocol": "UDP"},
                            {"name": "dns-tcp", "port": 53, "targetPort": 53,
                             "protocol": "TCP"}]}},
    ]  # fmt: skip


def deploy(cluster: Cluster, apply: Apply, work: Path) -> None:
    """Deploy CoreDNS and wait until it is Ready."""
    corefile = work / "Corefile"
    corefile.write_text(COREFILE)
    for obj in manifests(corefile):
        apply(cluster, obj)
    deployment_ready(cluster, NAMESPACE, NAME, "CoreDNS")
