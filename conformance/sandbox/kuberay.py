"""The sandbox's KubeRay: the real ray-operator (built from its Go module) deployed as its
kustomize configuration with webhooks (`config/default-with-webhooks`) installs it: namespace
`ray-system`, the upstream ClusterRole, Deployment `kuberay-operator`, the RayCluster validating
webhook behind Service `kuberay-webhook-service`, served with a certificate from the sandbox CA
(where the upstream configuration has cert-manager issue one). Ray's own pods (head, workers)
are not run: KWOK reports them Running and Ready, which is all the RayCluster controller reads."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from conformance.cluster import Cluster
from conformance.sandbox import controllers, pki
from conformance.sandbox.monitoring import Apply, deployment_ready

Obj = dict[str, Any]
VERSION = "v1.6.2"
NAMESPACE = "ray-system"
NAME = "kuberay-operator"
IMAGE = f"kaic-sandbox/kuberay-operator:{VERSION}"
DATA = "kuberay/config"
LABELS = {"app.kubernetes.io/name": "kuberay", "app.kubernetes.io/component": NAME}
WEBHOOK_SERVICE = "kuberay-webhook-service"
WEBHOOK_PORT = 9443
CERT_SECRET = "webhook-server-cert"
# controller-runtime reads its serving certificate from $TMPDIR/k8s-webhook-server/serving-certs;
# the sandbox's runtime mounts volumes only where the host has the parent folder, so the
# certificate goes under a folder of its own, named by TMPDIR (upstream: /tmp).
CERT_ROOT = "/kuberay-webhook"
# main.go serves only the RayCluster webhook; the upstream file also lists RayJob's and
# RayService's, which would refuse every such object (nothing serves them).
SERVED_WEBHOOKS = ("vraycluster.kb.io",)


def _rbac(data: Path) -> list[Obj]:
    role = controllers.docs(data / DATA / "rbac" / "role.yaml")
    binding = controllers.docs(data / DATA / "rbac" / "role_binding.yaml")
    for doc in binding:
        for subject in doc.get("subjects") or []:
            subject["namespace"] = NAMESPACE
    return [*role, *binding]


def _webhook(data: Path, ca_pem: bytes) -> Obj:
    (config,) = controllers.docs(data / DATA / "webhook" / "manifests.yaml")
    config["metadata"] = {"name": "kuberay-validating-webhook-configuration", "labels": LABELS}
    config["webhooks"] = [h for h in config["webhooks"] if h["name"] in SERVED_WEBHOOKS]
    for hook in config["webhooks"]:
        hook["clientConfig"]["service"] |= {"name": WEBHOOK_SERVICE, "namespace": NAMESPACE}
        hook["clientConfig"]["caBundle"] = base64.b64encode(ca_pem).decode()
    return config


def _deployment(replicas: int) -> Obj:
    container = {
        "name": NAME, "image": IMAGE,
        "args": ["--feature-gates=RayClusterStatusConditions=true",
                 "--enable-leader-election=false", "--metrics-addr=:8080",
                 "--health-probe-bind-address=:8082"],
        "env": [{"name": "ENABLE_WEBHOOKS", "value": "true"},
                {"name": "TMPDIR", "value": CERT_ROOT}],
        "ports": [{"name": "http", "containerPort": 8080},
                  {"name": "webhook-server", "containerPort": WEBHOOK_PORT}],
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": 8082}, "periodSeconds": 2},
        "volumeMounts": [{"name": "cert", "readOnly": True,
                          "mountPath": f"{CERT_ROOT}/k8s-webhook-server/serving-certs"}],
    }  # fmt: skip
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": LABELS},
        "spec": {"replicas": replicas, "strategy": {"type": "Recreate"},
                 "selector": {"matchLabels": LABELS},
                 "template": {"metadata": {"labels": LABELS},
                              "spec": {"serviceAccountName": NAME, "containers": [container],
                                       "volumes": [{"name": "cert", "secret": {
                                           "secretName": CERT_SECRET}}]}}},
    }  # fmt: skip


def operator_deployment(breaks: list[str] | tuple[str, ...] = ()) -> Obj:
    """The operator's Deployment; `kuberay-operator-down` scales it to 0 (its pods are gone,
    its webhook Service has no endpoint)."""
    return _deployment(0 if "kuberay-operator-down" in breaks else 1)


def manifests(data: Path, ca: pki.CA, breaks: list[str] | tuple[str, ...] = ()) -> list[Obj]:
    host = f"{WEBHOOK_SERVICE}.{NAMESPACE}.svc"
    crt, key = ca.issue(WEBHOOK_SERVICE, host, hosts=(host, f"{host}.cluster.local"))
    certs = {"tls.crt": crt.read_bytes(), "tls.key": key.read_bytes(),
             "ca.crt": ca.cert_path.read_bytes()}  # fmt: skip
    meta = {"namespace": NAMESPACE, "labels": LABELS}
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": NAME, **meta}},
        *_rbac(data),
        {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
         "metadata": {"name": CERT_SECRET, **meta},
         "data": {k: base64.b64encode(v).decode() for k, v in certs.items()}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": WEBHOOK_SERVICE, **meta},
         "spec": {"selector": LABELS,
                  "ports": [{"port": 443, "targetPort": WEBHOOK_PORT, "protocol": "TCP"}]}},
        operator_deployment(breaks),
        _webhook(data, ca.cert_path.read_bytes()),
    ]  # fmt: skip


def deploy(
    cluster: Cluster, apply: Apply, data: Path, ca: pki.CA, breaks: list[str] | tuple[str, ...]
) -> None:
    """Install the Ray CRDs and the operator (`wait_ready` waits for it, so that the sandbox
    deploys the rest meanwhile)."""
    crds = [doc for path in sorted((data / DATA / "crd" / "bases").glob("*.yaml"))
            for doc in controllers.docs(path)]  # fmt: skip
    for crd in crds:
        apply(cluster, crd)
    controllers.wait_crds(cluster, crds)
    for obj in manifests(data, ca, breaks):
        apply(cluster, obj)


def wait_ready(cluster: Cluster, breaks: list[str] | tuple[str, ...]) -> None:
    """Until the operator is Ready (unless the fault keeps it down)."""
    if "kuberay-operator-down" not in breaks:
        deployment_ready(cluster, NAMESPACE, NAME, "the KubeRay operator")
