"""The sandbox's KubeRay: the real ray-operator (built from its Go module) deployed as its
kustomize configuration with webhooks (`config/default-with-webhooks`) installs it: namespace
`ray-system`, the upstream ClusterRole, Deployment `kuberay-operator`, the RayCluster validating
webhook behind Service `kuberay-webhook-service`, served with a certificate from the sandbox CA
(where the upstream configuration has cert-manager issue one). Ray's own pods (head, workers)
are not run: KWOK reports them Running and Ready, which is all the RayCluster controller reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from conformance.cluster import Cluster
from conformance.sandbox import controllers, incluster, pki
from conformance.sandbox.monitoring import Apply, deployment_ready

Obj = dict[str, Any]
VERSION = "v1.6.2"
NAMESPACE = "ray-system"
NAME = "kuberay-operator"
IMAGE = f"kaic-sandbox/kuberay-operator:{VERSION}"
DATA = "kuberay/config"
LABELS = {"app.kubernetes.io/name": "kuberay", "app.kubernetes.io/component": NAME}
WEBHOOKS = incluster.Webhooks("kuberay-webhook-service", NAMESPACE, "webhook-server-cert", LABELS)
CERT_ROOT = "/kuberay-webhook"  # its TMPDIR (see incluster.CERTS_UNDER_TMPDIR)
# main.go serves only the RayCluster webhook; the upstream file also lists RayJob's and
# RayService's, which would refuse every such object (nothing serves them).
SERVED_WEBHOOKS = ("vraycluster.kb.io",)


def _deployment(replicas: int, watch: str = "") -> Obj:
    container = {
        "name": NAME, "image": IMAGE,
        "args": ["--feature-gates=RayClusterStatusConditions=true",
                 "--enable-leader-election=false", "--metrics-addr=:8080",
                 "--health-probe-bind-address=:8082",
                 *([f"--watch-namespace={watch}"] if watch else [])],
        "env": [{"name": "ENABLE_WEBHOOKS", "value": "true"},
                {"name": "TMPDIR", "value": CERT_ROOT}],
        "ports": [{"name": "http", "containerPort": 8080},
                  {"name": "webhook-server", "containerPort": incluster.WEBHOOK_PORT}],
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": 8082}, "periodSeconds": 2},
        "volumeMounts": [{"name": "cert", "readOnly": True,
                          "mountPath": f"{CERT_ROOT}/{incluster.CERTS_UNDER_TMPDIR}"}],
    }  # fmt: skip
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": LABELS},
        "spec": {"replicas": replicas, "strategy": {"type": "Recreate"},
                 "selector": {"matchLabels": LABELS},
                 "template": {"metadata": {"labels": LABELS},
                              "spec": {"serviceAccountName": NAME, "containers": [container],
                                       "volumes": [{"name": "cert", "secret": {
                                           "secretName": WEBHOOKS.secret}}]}}},
    }  # fmt: skip


def operator_deployment(breaks: list[str] | tuple[str, ...] = ()) -> Obj:
    """The operator's Deployment; `kuberay-operator-down` scales it to 0 (its pods are gone,
    its webhook Service has no endpoint); `kuberay-watches-own-namespace` has it reconcile only
    `ray-system` (its webhook still answers everywhere)."""
    watch = NAMESPACE if "kuberay-watches-own-namespace" in breaks else ""
    return _deployment(0 if "kuberay-operator-down" in breaks else 1, watch)


def manifests(data: Path, ca: pki.CA, breaks: list[str] | tuple[str, ...] = ()) -> list[Obj]:
    rbac = controllers.docs(data / DATA / "rbac" / "role.yaml")
    (config,) = controllers.docs(data / DATA / "webhook" / "manifests.yaml")
    return [
        *incluster.namespace_and_account(NAMESPACE, NAME, LABELS),
        *incluster.cluster_role(rbac, NAME, NAME, NAMESPACE),
        *WEBHOOKS.objects(ca, LABELS),
        operator_deployment(breaks),
        WEBHOOKS.point(config, "kuberay-validating-webhook-configuration", ca, SERVED_WEBHOOKS),
    ]


def deploy(
    cluster: Cluster, apply: Apply, data: Path, ca: pki.CA, breaks: list[str] | tuple[str, ...]
) -> None:
    """Install the Ray CRDs and the operator (`wait_ready` waits for it, so that the sandbox
    deploys the rest meanwhile)."""
    crds = incluster.crds(data / DATA / "crd" / "bases")
    for crd in crds:
        apply(cluster, crd)
    controllers.wait_crds(cluster, crds)
    for obj in manifests(data, ca, breaks):
        apply(cluster, obj)


def wait_ready(cluster: Cluster, breaks: list[str] | tuple[str, ...]) -> None:
    """Until the operator is Ready (unless the fault keeps it down)."""
    if "kuberay-operator-down" not in breaks:
        deployment_ready(cluster, NAMESPACE, NAME, "the KubeRay operator")
