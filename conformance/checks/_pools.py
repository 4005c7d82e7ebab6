"""An InferencePool behind the Gateway under test: model-server pods, the real endpoint picker
(`--epp-image`, with the RBAC the upstream chart gives it), the pool, and an HTTPRoute to it."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from conformance.checks import _gateway as gw
from conformance.checks import _monitoring as mon
from conformance.cluster import ProxyTarget
from conformance.cluster.wait import WaitTimeout
from conformance.failures import fail
from conformance.fixtures import Kube
from conformance.probes import pods
from conformance.settings import Settings

Obj = dict[str, Any]
POOL_API = "inference.networking.k8s.io/v1"
POOL_GROUP = "inference.networking.k8s.io"
POOL_LABEL = "kaic.dev/inference-pool"
EPP_PORT = 9002
EPP_HEALTH_PORT = 9003
EPP_READY_TIMEOUT_S = 180
ROUTE_SEEN_S = 30


@dataclass(frozen=True)
class Pool:
    name: str
    pods: list[str]
    picker: str  # the endpoint picker's Service (and Deployment) name
    gateway: gw.Gateway

    def control(self, kube: Kube, pod: str, **report: float) -> None:
        """Make one model server report, e.g., a queue depth (see the agent's /control)."""
        target = ProxyTarget("pods", kube.namespace, pod, mon.SERVE_PORT)
        reply = kube.cluster.proxy("POST", target, "/control", body=report)
        if reply.status != 200:
            raise RuntimeError(f"POST /control to {pod}: HTTP {reply.status} {reply.text[:200]}")


def require_pool_api(kube: Kube) -> None:
    gw.require_gateway_api(kube.cluster)
    if not kube.cluster.serves(POOL_API, "InferencePool"):
        fail(
            expected=f"the Gateway API Inference Extension ({POOL_API} InferencePool) served",
            observed="InferencePool is not served",
            next_step="install the InferencePool CRD and a gateway that implements it",
        )


def picker_objects(
    name: str, pool: str, image: str, extra_args: Sequence[str] = ()
) -> list[Obj]:  # fmt: skip
    """The endpoint picker as the upstream chart deploys it (one replica, its own
    ServiceAccount reading pods and pools), without TLS-protected metrics."""
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/component": "endpoint-picker"}
    rules = [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "watch", "list"]},
        {"apiGroups": [POOL_GROUP], "resources": ["inferencepools"],
         "verbs": ["get", "watch", "list"]},
        {"apiGroups": ["inference.networking.x-k8s.io"],
         "resources": ["inferenceobjectives", "inferencemodelrewrites"],
         "verbs": ["get", "watch", "list"]},
    ]  # fmt: skip
    container = {
        "name": "epp", "image": image,
        "args": ["--pool-name", pool, "--pool-namespace", "$(POD_NAMESPACE)",
                 "--pool-group", POOL_GROUP, "--zap-encoder", "json", "--tracing=false",
                 "--metrics-endpoint-auth=false", *extra_args],
        "env": [{"name": "POD_NAMESPACE",
                 "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}],
        "ports": [{"name": "grpc", "containerPort": EPP_PORT},
                  {"name": "grpc-health", "containerPort": EPP_HEALTH_PORT},
                  {"name": "metrics", "containerPort": 9090}],
        "readinessProbe": {"tcpSocket": {"port": EPP_HEALTH_PORT}, "periodSeconds": 2},
        "securityContext": pods.restricted(),
    }  # fmt: skip
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": name}, "rules": rules},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": name},
         "subjects": [{"kind": "ServiceAccount", "name": name}],
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
         "spec": {"replicas": 1, "strategy": {"type": "Recreate"},
                  "selector": {"matchLabels": labels},
                  "template": {"metadata": {"labels": labels},
                               "spec": {"serviceAccountName": name,
                                        "containers": [container]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
         "spec": {"selector": labels,
                  "ports": [{"name": "grpc-ext-proc", "port": EPP_PORT, "targetPort": EPP_PORT,
                             "appProtocol": "http2"},
                            {"name": "http-metrics", "port": 9090, "targetPort": 9090}]}},
    ]  # fmt: skip


def pool_manifest(name: str, picker: str, failure_mode: str) -> Obj:
    return {
        "apiVersion": POOL_API, "kind": "InferencePool", "metadata": {"name": name},
        "spec": {"selector": {"matchLabels": {POOL_LABEL: name}},
                 "targetPorts": [{"number": mon.SERVE_PORT}],
                 "endpointPickerRef": {"name": picker, "port": {"number": EPP_PORT},
                                       "failureMode": failure_mode}},
    }  # fmt: skip


def pool_route(name: str, gateway: gw.Gateway, pool: str) -> Obj:
    pool_ref = {"group": POOL_GROUP, "kind": "InferencePool", "name": pool}
    return gw.http_route(name, gateway, [gw.v1_rule([pool_ref])])


def deploy_pool(
    kube: Kube, settings: Settings, *, name: str = "pool", replicas: int = 3,
    failure_mode: str = "FailClose", picker: str = "",
) -> Pool:  # fmt: skip
    """The pool's pods, its endpoint picker (unless `picker` names another Service, deployed
    or not), the pool and its route, on the Gateway under test; waits for the pods and the
    picker to be Ready, not for any status (callers assert that)."""
    require_pool_api(kube)
    gateway = gw.gateway_under_test(kube, settings, kube.evidence)
    pods = gw.backend(kube, f"{name}-server", replicas=replicas, labels={POOL_LABEL: name})
    own_picker = not picker
    picker = picker or f"{name}-epp"
    if own_picker:
        for obj in picker_objects(picker, name, settings.epp_image):
            kube.apply(obj)
        mon.ready_pod_of(kube, f"app.kubernetes.io/name={picker}",
                         timeout_s=EPP_READY_TIMEOUT_S)  # fmt: skip
    route_then_pool(kube, name, gateway, picker, failure_mode)
    return Pool(name, pods, picker, gateway)


def route_then_pool(
    kube: Kube, name: str, gateway: gw.Gateway, picker: str, failure_mode: str = "FailClose"
) -> None:  # fmt: skip
    """The route first, and the pool once the gateway has seen the route: Envoy AI Gateway
    v1.0.0 writes a pool's status when it reconciles the pool, and a pool reconciled before its
    route reached the controller kept an empty status (parents: []) for good."""
    kube.apply(pool_route(f"{name}-route", gateway, name))
    _route_seen(kube, f"{name}-route", gateway)
    kube.apply(pool_manifest(name, picker, failure_mode))


def _route_seen(kube: Kube, route: str, gateway: gw.Gateway) -> None:
    """Until the gateway has written the route's status (it may be unresolved: the pool does
    not exist yet); if it never does, the callers' waits report that."""
    with contextlib.suppress(WaitTimeout):
        kube.cluster.wait_for(
            gw.GATEWAY_API, "HTTPRoute",
            lambda objs: objs if objs and gw.parent_status(objs[0], gateway) else None,
            awaiting=f"HTTPRoute {kube.namespace}/{route} to have a status from {gateway.ref}",
            timeout_s=ROUTE_SEEN_S, namespace=kube.namespace, name=route,
        )  # fmt: skip


def wait_accepted(kube: Kube, pool: str, gateway: gw.Gateway) -> None:
    """Until the pool's route and the pool are Accepted with their references resolved."""
    for api, kind, name in ((gw.GATEWAY_API, "HTTPRoute", f"{pool}-route"),
                            (POOL_API, "InferencePool", pool)):  # fmt: skip
        gw.wait_parent_conditions(kube, api, kind, name, gateway,
                                  {"Accepted": "True", "ResolvedRefs": "True"})  # fmt: skip
