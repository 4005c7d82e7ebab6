"""What the inference routing checks share: the Gateway under test (the suite's own, on an
Accepted GatewayClass, or the one `--gateway` names), model-server backends, routes and their
status, and traffic sent from inside the cluster with the agent's `traffic` command.

Traffic comes from a pod, not from the runner, so that the gateway is reached the way the
platform's own clients reach it, whatever its address is (a load balancer, a cluster IP)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from conformance.checks import _monitoring as mon
from conformance.checks import _status as st
from conformance.checks._accelerators import agent_report, finished_pod
from conformance.cluster import Cluster, ObjectRef, WaitTimeout
from conformance.evidence import Evidence
from conformance.failures import fail
from conformance.fixtures import Kube
from conformance.probes import pods
from conformance.settings import Settings

Obj = dict[str, Any]
GATEWAY_API = "gateway.networking.k8s.io/v1"
GATEWAY_GROUP = "gateway.networking.k8s.io"
GATEWAY_KINDS = ("GatewayClass", "Gateway", "HTTPRoute")
# Above 1024, so that implementations need not remap the port for an unprivileged proxy.
LISTENER_PORT = 8080
# Clouds provision a load balancer for a new Gateway: minutes, not seconds.
PROGRAMMED_TIMEOUT_S = 300
ROUTE_TIMEOUT_S = 120
# How long a client waits for a route the gateway has accepted to carry traffic.
WARMUP_S = 60
# Implementations that run the data plane in the Gateway's namespace (Istio, kgateway, Envoy
# Gateway's namespace mode) put their proxy pods in the check's namespace; those need not meet
# `restricted`, so these checks' namespaces enforce `baseline` (the suite's own pods still meet
# `restricted`).
GATEWAY_PODS = "baseline"
INSTALL_HINT = ("install the Gateway API CRDs (standard channel) and a Gateway API "
                "implementation (e.g. Envoy Gateway, Istio, kgateway)")  # fmt: skip


@dataclass(frozen=True)
class Gateway:
    namespace: str
    name: str
    address: str
    port: int
    class_name: str
    own: bool

    @property
    def ref(self) -> str:
        return f"Gateway/{self.namespace}/{self.name}"

    def parent_ref(self) -> Obj:
        return {"group": GATEWAY_GROUP, "kind": "Gateway", "name": self.name,
                "namespace": self.namespace}  # fmt: skip

    def url(self, path: str = "/v1/completions") -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"http://{host}:{self.port}{path}"


def require_gateway_api(cluster: Cluster) -> None:
    missing = [k for k in GATEWAY_KINDS if not cluster.serves(GATEWAY_API, k)]
    if missing:
        fail(
            expected=f"the Gateway API ({GATEWAY_API}: {', '.join(GATEWAY_KINDS)}) to be served",
            observed=f"not served: {', '.join(missing)}",
            next_step=INSTALL_HINT,
        )


def accepted_class(cluster: Cluster, wanted: str) -> Obj:
    classes = cluster.list_objects(GATEWAY_API, "GatewayClass")
    candidates = [c for c in classes if not wanted or c["metadata"]["name"] == wanted]
    for gateway_class in candidates:
        if st.is_true((gateway_class.get("status") or {}).get("conditions"), "Accepted"):
            return gateway_class
    seen = "; ".join(
        f"{c['metadata']['name']} ({c['spec'].get('controllerName')}): "
        f"{st.brief((c.get('status') or {}).get('conditions'))}"
        for c in classes
    )  # fmt: skip
    fail(
        expected=f"GatewayClass {wanted} to be Accepted by its controller"
        if wanted
        else "a GatewayClass Accepted by its controller",
        observed=f"{len(classes)} GatewayClass(es): {seen or 'none'}",
        next_step=INSTALL_HINT + "; kubectl get gatewayclasses",
    )


def _programmed(objs: list[Obj]) -> Obj | None:
    if not objs:
        return None
    status = objs[0].get("status") or {}
    ready = st.is_true(status.get("conditions"), "Programmed") and status.get("addresses")
    return objs[0] if ready else None


def wait_programmed(kube: Kube, namespace: str, name: str) -> Obj:
    try:
        return kube.cluster.wait_for(GATEWAY_API, "Gateway", _programmed,
                                     awaiting=f"Gateway/{namespace}/{name} to be Programmed",
                                     timeout_s=PROGRAMMED_TIMEOUT_S, namespace=namespace,
                                     name=name)  # fmt: skip
    except WaitTimeout:
        current = kube.cluster.get(ObjectRef(GATEWAY_API, "Gateway", name, namespace)) or {}
        status = current.get("status") or {}
        fail(
            expected=f"Gateway/{namespace}/{name} to get an address and be Programmed",
            observed=f"conditions: {st.brief(status.get('conditions'))}; addresses: "
            f"{[a.get('value') for a in status.get('addresses') or []]}",
            next_step=f"kubectl -n {namespace} describe gateway {name}; the gateway "
            "controller's logs",
        )


def _listener_port(gateway: Obj) -> int:
    listeners = gateway["spec"].get("listeners") or []
    http = [li for li in listeners if li.get("protocol") == "HTTP"]
    if not http:
        ref = f"Gateway/{gateway['metadata']['namespace']}/{gateway['metadata']['name']}"
        fail(
            expected=f"{ref} to have an HTTP listener",
            observed=f"listeners {[(li.get('name'), li.get('protocol')) for li in listeners]}",
        )
    return int(http[0]["port"])


def gateway_manifest(name: str, class_name: str) -> Obj:
    return {
        "apiVersion": GATEWAY_API,
        "kind": "Gateway",
        "metadata": {"name": name},
        "spec": {
            "gatewayClassName": class_name,
            "listeners": [{"name": "http", "protocol": "HTTP", "port": LISTENER_PORT,
                           "allowedRoutes": {"namespaces": {"from": "Same"}}}],
        },
    }  # fmt: skip


def gateway_under_test(kube: Kube, settings: Settings, evidence: Evidence) -> Gateway:
    """The Gateway the check routes through, Programmed and with an address."""
    require_gateway_api(kube.cluster)
    if settings.gateway:
        namespace, name = settings.gateway.split("/", 1)
        if kube.cluster.get(ObjectRef(GATEWAY_API, "Gateway", name, namespace)) is None:
            fail(expected=f"the Gateway --gateway names, Gateway/{namespace}/{name}",
                 observed="it does not exist", next_step="kubectl get gateways -A")  # fmt: skip
        gateway, own = wait_programmed(kube, namespace, name), False
    else:
        gateway_class = accepted_class(kube.cluster, settings.gateway_class)
        evidence.observe("gateway_class", {
            "name": gateway_class["metadata"]["name"],
            "controller": gateway_class["spec"].get("controllerName"),
        })  # fmt: skip
        name = "kaic-gateway"
        kube.apply(gateway_manifest(name, gateway_class["metadata"]["name"]))
        gateway, own = wait_programmed(kube, kube.namespace, name), True
    status = gateway["status"]
    found = Gateway(
        namespace=gateway["metadata"]["namespace"], name=gateway["metadata"]["name"],
        address=str(status["addresses"][0]["value"]), port=_listener_port(gateway),
        class_name=gateway["spec"]["gatewayClassName"], own=own,
    )  # fmt: skip
    evidence.observe("gateway", {"name": found.ref, "address": found.address,
                                 "port": found.port,
                                 "conditions": st.brief(status.get("conditions"))})  # fmt: skip
    return found


def backend(kube: Kube, name: str, *, model: str = "", replicas: int = 1,
            labels: dict[str, str] | None = None) -> list[str]:  # fmt: skip
    """`replicas` model-server pods (`name-0`, ...) labelled `app.kubernetes.io/name: name`
    behind a Service `name` (port 8000); the pods' names once Ready."""
    selector = {"app.kubernetes.io/name": name, **(labels or {})}
    names = [f"{name}-{i}" for i in range(replicas)]
    for pod in names:
        kube.apply(mon.model_server(pod, model=model, labels=selector))
    kube.apply({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
        "spec": {"selector": {"app.kubernetes.io/name": name},
                 "ports": [{"name": "http", "port": mon.SERVE_PORT, "targetPort": "http"}]},
    })  # fmt: skip
    for pod in names:
        mon.ready_pod(kube, pod)
    return names


def http_route(name: str, gateway: Gateway, rules: Sequence[Obj]) -> Obj:
    return {
        "apiVersion": GATEWAY_API, "kind": "HTTPRoute", "metadata": {"name": name},
        "spec": {"parentRefs": [gateway.parent_ref()], "rules": list(rules)},
    }  # fmt: skip


def v1_rule(backend_refs: list[Obj], headers: Sequence[Obj] = ()) -> Obj:
    """A rule for the OpenAI API's paths (/v1...), with header matches if any."""
    match: Obj = {"path": {"type": "PathPrefix", "value": "/v1"}}
    if headers:
        match["headers"] = list(headers)
    return {"matches": [match], "backendRefs": backend_refs}


def weighted_rule(weights: dict[str, int]) -> Obj:
    """One rule for every /v1 request, split between Services by weight."""
    return v1_rule([service_ref(n, w) for n, w in weights.items()])


def model_rules(header: str, backends: dict[str, str]) -> list[Obj]:
    """A rule per model (the header's exact value) to the Service serving it."""
    return [v1_rule([service_ref(backend)], [{"type": "Exact", "name": header, "value": model}])
            for model, backend in backends.items()]  # fmt: skip


def service_ref(name: str, weight: int | None = None) -> Obj:
    ref: Obj = {"name": name, "port": mon.SERVE_PORT}
    if weight is not None:
        ref["weight"] = weight
    return ref


def parent_status(obj: Obj, gateway: Gateway) -> Obj | None:
    """The entry of `status.parents` (Gateway API routes, InferencePools) for the gateway."""
    own_namespace = obj["metadata"].get("namespace")
    for parent in (obj.get("status") or {}).get("parents") or []:
        ref = parent.get("parentRef") or {}
        if ref.get("name") == gateway.name and (
            ref.get("namespace") or own_namespace) == gateway.namespace:  # fmt: skip
            return dict(parent)
    return None


# ResolvedRefs=False reasons no later event changes for an unchanged object (a missing backend,
# BackendNotFound, may still appear): waiting longer for True is pointless.
FINAL_REASONS = ("InvalidKind", "RefNotPermitted", "UnsupportedProtocol")


def _settled_false(obj: Obj, conditions: list[Obj], wanted: dict[str, str]) -> bool:
    generation = obj["metadata"].get("generation")
    for kind, status in wanted.items():
        found = st.find(conditions, kind) or {}
        if (status == "True" and found.get("status") == "False"
                and found.get("reason") in FINAL_REASONS
                and found.get("observedGeneration", generation) == generation):  # fmt: skip
            return True
    return False


def wait_parent_conditions(
    kube: Kube, api_version: str, kind: str, name: str, gateway: Gateway,
    wanted: dict[str, str], timeout_s: float = ROUTE_TIMEOUT_S,
) -> Obj:  # fmt: skip
    """Wait until the object's status for `gateway` has each condition type at the wanted
    status ("True"/"False"); fail naming what it has instead (at once when a reference can
    never resolve, see FINAL_REASONS)."""

    def conditions(obj: Obj) -> list[Obj]:
        return list((parent_status(obj, gateway) or {}).get("conditions") or [])

    def holds(found: list[Obj]) -> bool:
        return bool(found) and all(
            (st.find(found, t) or {}).get("status") == s for t, s in wanted.items()
        )

    def settled(objs: list[Obj]) -> Obj | None:
        if not objs:
            return None
        found = conditions(objs[0])
        return objs[0] if holds(found) or _settled_false(objs[0], found, wanted) else None

    ref = f"{kind}/{kube.namespace}/{name}"
    want = ", ".join(f"{t}={s}" for t, s in wanted.items())
    try:
        current = kube.cluster.wait_for(api_version, kind, settled,
                                        awaiting=f"{ref} to have {want} from {gateway.ref}",
                                        timeout_s=timeout_s, namespace=kube.namespace,
                                        name=name)  # fmt: skip
    except WaitTimeout:
        current = kube.cluster.get(ObjectRef(api_version, kind, name, kube.namespace)) or {}
    if current and holds(conditions(current)):
        return current
    parent = parent_status(current, gateway) if current else None
    parents = [p.get("parentRef", {}).get("name")
               for p in (current.get("status") or {}).get("parents") or []]  # fmt: skip
    fail(
        expected=f"{ref} to have {want} in its status for {gateway.ref}",
        observed=f"{st.brief(parent.get('conditions'))}"
        if parent
        else f"no status from {gateway.ref} (parents: {parents})",
        next_step=f"kubectl -n {kube.namespace} get {kind.lower()} {name} -o yaml",
    )


def traffic(
    kube: Kube, gateway: Gateway, name: str, *, count: int, models: Sequence[str] = (),
    model_header: str = "", prompt_prefix: str = "", warmup_s: float = WARMUP_S,
    warmup_until: str = "success",
) -> Obj:  # fmt: skip
    """Run the agent's `traffic` command in a pod against the gateway; its report (counts by
    status, by serving pod and by model). The warm-up waits for a success, or for any HTTP
    answer (`warmup_until="answer"`) where errors are what is expected."""
    command = ["python", "-m", "conformance.agent", "traffic", "--url", gateway.url(),
               "--count", str(count), "--warmup", str(warmup_s),
               "--warmup-until", warmup_until]  # fmt: skip
    for model in models:
        command += ["--model", model]
    if model_header:
        command += ["--model-header", model_header]
    if prompt_prefix:
        command += ["--prompt-prefix", prompt_prefix]
    kube.apply(pods.pod(name, [pods.container(command=command)], tolerate_gpus=False))
    report = agent_report(kube, finished_pod(kube, name, timeout_s=warmup_s + 60 + count))
    kube.evidence.observe(f"traffic_{name}", report)
    return report


def require_all_ok(report: Obj, gateway: Gateway, what: str) -> None:
    if report.get("ok") != report.get("sent"):
        fail(
            expected=f"every request through {gateway.ref} ({gateway.url()}) to be answered "
            f"by {what}",
            observed=f"{report.get('ok')} of {report.get('sent')} answered (status counts "
            f"{report.get('status')}, errors {report.get('errors')}, warm-up "
            f"{report.get('warmup_error', 'ok')}){_when_failed(report)}",
            next_step=f"kubectl -n {gateway.namespace} describe gateway {gateway.name}; the "
            "gateway's data-plane logs",
        )


def _when_failed(report: Obj) -> str:
    window = report.get("failed_requests")
    if not window:
        return ""
    return (f"; not answered: requests {window['first']}..{window['last']}, "
            f"{window['from_s']}-{window['to_s']} s into the run")  # fmt: skip
