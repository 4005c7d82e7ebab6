"""The sandbox's InferencePool support: a real Envoy AI Gateway controller (built from its Go
module), deployed as its Helm chart deploys it, as Envoy Gateway's extension server.

Envoy Gateway calls it (gRPC, port 1063) while translating routes: for an HTTPRoute whose backend
is an InferencePool it adds to Envoy an ext_proc filter calling the pool's endpoint picker (the
Service `endpointPickerRef` names) and an original-destination cluster that sends each request
to the pod the picker chose. It also writes the InferencePools' `status.parents`. Its pod
mutating webhook (for AIGatewayRoute sidecars) is registered as the chart does, served with a
certificate from the sandbox CA. Sandbox-only: its ServiceAccount is bound to cluster-admin."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from conformance.cluster import Cluster
from conformance.sandbox import controllers, pki
from conformance.sandbox.envoy_gateway import admin_account
from conformance.sandbox.monitoring import Apply, deployment_ready

Obj = dict[str, Any]
VERSION = "v1.0.0"
NAMESPACE = "envoy-ai-gateway-system"
NAME = "ai-gateway-controller"
IMAGE = f"kaic-sandbox/ai-gateway-controller:{VERSION}"
CRD_FOLDER = "ai-gateway/manifests/charts/ai-gateway-crds-helm/templates"
LABELS = {"app.kubernetes.io/name": "ai-gateway-helm", "app.kubernetes.io/part-of": "kaic-sandbox"}
EXTENSION_PORT = 1063
WEBHOOK_PORT = 9443
SERVICE_HOST = f"{NAME}.{NAMESPACE}.svc.cluster.local"
CERT_SECRET = "self-signed-cert-for-mutating-webhook"
POOL_BACKEND = {"group": "inference.networking.k8s.io", "kind": "InferencePool", "version": "v1"}


def extension_manager() -> Obj:
    """What Envoy Gateway's configuration needs to call this extension (the chart's values for
    Envoy Gateway, with the InferencePool add-on)."""
    return {
        "hooks": {"xdsTranslator": {
            "translation": {kind: {"includeAll": True}
                            for kind in ("listener", "route", "cluster", "secret")},
            "post": ["Translation", "Cluster", "Route"],
        }},
        "service": {"fqdn": {"hostname": SERVICE_HOST, "port": EXTENSION_PORT}},
        "backendResources": [POOL_BACKEND],
    }  # fmt: skip


def manifests(ca: pki.CA) -> list[Obj]:
    meta = {"namespace": NAMESPACE, "labels": LABELS}
    selector = {"app.kubernetes.io/instance": NAME}
    crt, key = ca.issue(NAME, f"{NAME}.{NAMESPACE}.svc",
                        hosts=(f"{NAME}.{NAMESPACE}.svc", SERVICE_HOST))  # fmt: skip
    certs = {"tls.crt": crt.read_bytes(), "tls.key": key.read_bytes(),
             "ca.crt": ca.cert_path.read_bytes()}  # fmt: skip
    container = {
        "name": "controller", "image": IMAGE,
        "args": ["--envoyGatewayNamespace=envoy-gateway-system", "--tlsCertDir=/certs",
                 f"--webhookPort={WEBHOOK_PORT}", "--enableLeaderElection=false",
                 "--logLevel=info", f"--port=:{EXTENSION_PORT}"],
        "env": [{"name": "POD_NAMESPACE",
                 "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                {"name": "DISABLE_PPROF", "value": "true"}],
        "ports": [{"name": "grpc", "containerPort": EXTENSION_PORT},
                  {"name": "webhook", "containerPort": WEBHOOK_PORT}],
        # the chart probes gRPC health; the sandbox runtime checks the port
        "readinessProbe": {"tcpSocket": {"port": EXTENSION_PORT}, "periodSeconds": 2},
        "volumeMounts": [{"name": "certs", "mountPath": "/certs", "readOnly": True}],
    }  # fmt: skip
    return [
        *admin_account(NAMESPACE, NAME, LABELS),
        {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
         "metadata": {"name": CERT_SECRET, **meta},
         "data": {k: base64.b64encode(v).decode() for k, v in certs.items()}},
        {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
         "metadata": {"name": f"envoy-ai-gateway-gateway-pod-mutator.{NAMESPACE}",
                      "labels": LABELS},
         "webhooks": [{
             "name": f"{NAME}.{NAMESPACE}.svc.cluster.local",
             "clientConfig": {"service": {"name": NAME, "namespace": NAMESPACE,
                                          "port": WEBHOOK_PORT, "path": "/mutate"}},
             "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
                        "resources": ["pods"]}],
             "objectSelector": {"matchLabels": {
                 "app.kubernetes.io/managed-by": "envoy-gateway"}},
             "sideEffects": "None", "admissionReviewVersions": ["v1"], "timeoutSeconds": 10,
             "failurePolicy": "Fail",
         }]},
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": NAME, **meta, "labels": {**LABELS, **selector}},
         "spec": {"replicas": 1, "selector": {"matchLabels": selector},
                  "template": {"metadata": {"labels": {**LABELS, **selector}},
                               "spec": {"serviceAccountName": NAME,
                                        "containers": [container],
                                        "volumes": [{"name": "certs",
                                                     "secret": {"secretName": CERT_SECRET}}]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": NAME, **meta},
         "spec": {"selector": selector,
                  "ports": [{"name": "grpc", "port": EXTENSION_PORT,
                             "targetPort": EXTENSION_PORT, "appProtocol": "grpc"},
                            {"name": "webhook", "port": WEBHOOK_PORT,
                             "targetPort": WEBHOOK_PORT}]}},
    ]  # fmt: skip


def deploy(cluster: Cluster, apply: Apply, data: Path, ca: pki.CA) -> None:
    """Install the AI Gateway CRDs, start the controller and wait until it is Ready."""
    crds = [doc for path in sorted((data / CRD_FOLDER).glob("*.yaml"))
            for doc in controllers.docs(path)]  # fmt: skip
    for crd in crds:
        apply(cluster, crd)
    controllers.wait_crds(cluster, crds)
    for obj in manifests(ca):
        apply(cluster, obj)
    deployment_ready(cluster, NAMESPACE, NAME, "Envoy AI Gateway's controller")
