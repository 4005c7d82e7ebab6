"""Robust controllers: an AI operator's CRDs are established, its controller runs, its webhooks
are wired and answer, an invalid custom resource is refused with a message and a valid one is
reconciled. Per operator named by --operator, or every known one installed."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass

from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic.exceptions import DynamicApiError

from conformance.checks import _status as st
from conformance.checks._operators import (
    Obj,
    Operator,
    crds_by_name,
    operators_to_verify,
    require_installed,
    webhook_configurations,
)
from conformance.checks.registry import check
from conformance.cluster import Cluster
from conformance.evidence import Evidence
from conformance.failures import fail, not_applicable
from conformance.fixtures import Kube
from conformance.settings import Settings

RECONCILE_TIMEOUT_S = 120
# An operator's webhook may check an object against others it reads from its informer cache
# (Kubeflow Trainer's TrainJob validator looks up its runtime there): an object created right
# after the one it refers to can be denied for a moment. Nothing to watch for that cache: a
# denial is retried for this long before it counts.
ADMIT_RETRY_S = 10


def _api_message(exc: Exception) -> str:
    body = getattr(exc, "body", None) or ""
    try:
        return str(json.loads(body).get("message", body))
    except (ValueError, AttributeError, TypeError):
        return str(body or exc)


@check("operator.crds-established", requirements=["robust_controller"])
def test_crds_established(cluster: Cluster, kaic_settings: Settings, evidence: Evidence) -> None:
    """Every CRD of the operator exists and is Established with its names accepted."""
    crds = crds_by_name(cluster)
    problems = []
    seen: dict[str, dict[str, list[str]]] = {}
    for op in operators_to_verify(cluster, kaic_settings):
        require_installed(crds, op)  # detected ones may lack some of their CRDs
        seen[op.name] = {}
        for name in op.crds:
            crd = crds[name]
            seen[op.name][name] = [v["name"] for v in crd["spec"]["versions"] if v.get("served")]
            for cond in ("Established", "NamesAccepted"):
                if not st.holds(crd, cond):
                    problems.append(f"CustomResourceDefinition/{name} ({op.name}) is not {cond}")
    evidence.observe("crds", seen)
    if problems:
        fail(
            expected="the operators' CRDs to be Established with their names accepted",
            observed="; ".join(problems),
            next_step="kubectl get crd <name> -o yaml: the conditions say why",
        )


def _service_pods(cluster: Cluster, service: Obj) -> list[Obj]:
    selector = (service.get("spec") or {}).get("selector") or {}
    if not selector:
        return []
    return cluster.list_objects(
        "v1", "Pod", namespace=service["metadata"]["namespace"],
        label_selector=",".join(f"{k}={v}" for k, v in selector.items()),
    )  # fmt: skip


def _service(cluster: Cluster, ref: Obj) -> Obj | None:
    found = cluster.list_objects(
        "v1", "Service", namespace=ref["namespace"], field_selector=f"metadata.name={ref['name']}"
    )
    return found[0] if found else None


def _webhook_services(cluster: Cluster, op: Operator) -> tuple[list[Obj], list[str]]:
    """(Services the operator's webhooks call, URLs they call instead)."""
    services: dict[tuple[str, str], Obj] = {}
    urls: list[str] = []
    for config in webhook_configurations(cluster, op):
        for hook in config.get("webhooks") or []:
            client = hook.get("clientConfig") or {}
            if client.get("url"):
                urls.append(client["url"])
            elif client.get("service"):
                ref = client["service"]
                found = _service(cluster, ref)
                if found:
                    services[(ref["namespace"], ref["name"])] = found
    return list(services.values()), sorted(set(urls))


@check("operator.controller-ready", requirements=["robust_controller"])
def test_controller_ready(cluster: Cluster, kaic_settings: Settings, evidence: Evidence) -> None:
    """The operator's controller runs: its Deployment is Available, or the pods behind its
    webhook Service are Ready."""
    problems, skipped = [], []
    checked = 0
    for op in operators_to_verify(cluster, kaic_settings):
        checked += 1
        deployments = [d for d in cluster.list_objects("apps/v1", "Deployment")
                       if d["metadata"]["name"] in op.deployments]  # fmt: skip
        services, urls = _webhook_services(cluster, op)
        if deployments:
            for dep in deployments:
                ref = f"Deployment/{dep['metadata']['namespace']}/{dep['metadata']['name']}"
                status = dep.get("status") or {}
                ready, wanted = status.get("readyReplicas", 0), dep["spec"].get("replicas", 1)
                evidence.observe(op.name, {ref: f"{ready}/{wanted} ready"})
                if not st.holds(dep, "Available") or ready < max(wanted, 1):
                    problems.append(f"{ref} ({op.name}): {ready}/{wanted} ready, "
                                    f"Available={st.holds(dep, 'Available')}")  # fmt: skip
        elif services:
            pods = [p for s in services for p in _service_pods(cluster, s)]
            ready = [p for p in pods if st.holds(p, "Ready")]
            evidence.observe(op.name, {"pods": [p["metadata"]["name"] for p in pods],
                                       "ready": len(ready)})  # fmt: skip
            if not ready:
                names = ", ".join(f"Service/{s['metadata']['namespace']}/{s['metadata']['name']}"
                                  for s in services)  # fmt: skip
                problems.append(f"no Ready pod behind {names} ({op.name})")
        elif urls:
            checked -= 1
            servers = sorted({u.split("/", 3)[2] for u in urls if u.count("/") >= 2})
            skipped.append(
                f"{op.name}: its controller runs outside the cluster (webhooks served at "
                f"{', '.join(servers)}); operator.valid-reconciled shows it works"
            )
        else:
            problems.append(
                f"{op.name}: no Deployment named {' or '.join(op.deployments)} and "
                "no webhook Service to find its controller by"
            )
    evidence.observe("outside_the_cluster", skipped)
    if problems:
        fail(
            expected="each operator's controller to be running and Ready",
            observed="; ".join(problems),
            next_step="kubectl describe the Deployment and its pods; check the controller logs",
        )
    if skipped and not checked:
        not_applicable("controller-outside-cluster", "; ".join(skipped))


def _endpoints_ready(cluster: Cluster, service: Obj) -> int:
    slices = cluster.list_objects(
        "discovery.k8s.io/v1", "EndpointSlice", namespace=service["metadata"]["namespace"],
        label_selector=f"kubernetes.io/service-name={service['metadata']['name']}",
    )  # fmt: skip
    return sum(1 for s in slices for e in s.get("endpoints") or []
               if (e.get("conditions") or {}).get("ready"))  # fmt: skip


@dataclass(frozen=True)
class Refusal:
    """How the API server answered a dry-run creation of an operator's invalid object."""

    status: int | None  # None: it was accepted
    message: str
    webhook: str | None  # the operator's webhook that denied it, if one did

    @property
    def by_schema(self) -> bool:
        return (
            self.status == 422
            and self.webhook is None
            and "admission webhook" not in (self.message)
        )


def denied_by(message: str, hooks: list[str]) -> str | None:
    """The webhook among `hooks` that the API server says denied the request, if any."""
    return next((h for h in hooks if f'admission webhook "{h}" denied' in message), None)


def submit_invalid(kube: Kube, op: Operator, hooks: list[str]) -> Refusal:
    body = op.invalid(kube.cluster, kube.namespace)
    if kube.cluster.resource(body["apiVersion"], body["kind"]).namespaced:
        body["metadata"]["namespace"] = kube.namespace
    try:
        kube.cluster.dry_run_create(body)
    except (ApiException, DynamicApiError) as exc:
        message = _api_message(exc)
        return Refusal(exc.status, message, denied_by(message, hooks))
    return Refusal(None, "accepted", None)


def _hook_names(configs: list[Obj], kind: str | None = None) -> list[str]:
    return [h["name"] for c in configs
            if kind in (None, c["kind"]) for h in c.get("webhooks") or []]  # fmt: skip


@check("operator.webhooks-ready", requirements=["robust_controller"])
def test_webhooks_ready(kube: Kube, kaic_settings: Settings, evidence: Evidence) -> None:
    """Every webhook of the operator has a CA bundle and a Service with ready endpoints when it
    calls one, and its validating webhook answers: it denies an invalid object (dry run)."""
    problems: list[str] = []
    for op in operators_to_verify(kube.cluster, kaic_settings):
        configs = webhook_configurations(kube.cluster, op)
        hooks = _webhook_facts(kube.cluster, configs, problems)
        validating = _hook_names(configs, "ValidatingWebhookConfiguration")
        answered = "not probed: it registers no validating webhook"
        if validating:
            refusal = submit_invalid(kube, op, validating)
            answered = refusal.message
            if refusal.webhook is None:
                problems.append(f"{op.name}: an invalid object ({op.invalid_why}) was not denied "
                                f"by its webhooks {validating}: {refusal.message}")  # fmt: skip
        evidence.observe(op.name, {"webhooks": hooks or "no webhooks", "answered": answered})
    if problems:
        fail(
            expected="each operator webhook to have a CA bundle and a serving backend that "
            "answers (it denies an invalid object)",
            observed="; ".join(problems),
            next_step="check cert-manager / the operator's cert rotation, its webhook Service "
            "and pods, and the API server's logs for calls to the webhook",
        )


def _webhook_facts(cluster: Cluster, configs: list[Obj], problems: list[str]) -> dict[str, Obj]:
    hooks = {}
    for config in configs:
        ref = f"{config['kind']}/{config['metadata']['name']}"
        for hook in config.get("webhooks") or []:
            client = hook.get("clientConfig") or {}
            where = client.get("url") or "service {namespace}/{name}".format(
                **client.get("service", {"namespace": "?", "name": "?"})
            )
            hooks[hook["name"]] = {"calls": where, "failurePolicy": hook.get("failurePolicy")}
            if not client.get("caBundle"):
                problems.append(f"{ref} webhook {hook['name']} has no caBundle")
            if client.get("service"):
                svc = client["service"]
                found = _service(cluster, svc)
                if found is None:
                    problems.append(f"{ref} webhook {hook['name']} calls missing "
                                    f"Service/{svc['namespace']}/{svc['name']}")  # fmt: skip
                elif not _endpoints_ready(cluster, found):
                    problems.append(f"{ref} webhook {hook['name']}: "
                                    f"Service/{svc['namespace']}/{svc['name']} has no ready "
                                    "endpoint")  # fmt: skip
    return hooks


@check("operator.invalid-rejected", requirements=["robust_controller"])
def test_invalid_rejected(kube: Kube, kaic_settings: Settings, evidence: Evidence) -> None:
    """A custom resource the operator must refuse is refused, with a reason, by the operator's
    own webhook or its CRD's schema (dry run: nothing is stored); an RBAC refusal or any other
    answer does not count."""
    problems = []
    for op in operators_to_verify(kube.cluster, kaic_settings):
        what = f"an invalid object ({op.invalid_why})"
        refusal = submit_invalid(kube, op, _hook_names(webhook_configurations(kube.cluster, op)))
        evidence.observe(op.name, {"submitted": what, "status": refusal.status,
                                   "message": refusal.message,
                                   "denied_by": refusal.webhook or
                                   ("schema" if refusal.by_schema else None)})  # fmt: skip
        if refusal.status is None:
            problems.append(f"{op.name}: {what} was accepted")
        elif "failed calling webhook" in refusal.message:
            problems.append(f"{op.name}: its webhook does not answer: {refusal.message}")
        elif refusal.webhook is None and not refusal.by_schema:
            problems.append(f"{op.name}: {what} was refused, but not by its webhook or schema "
                            f"(HTTP {refusal.status}): {refusal.message}")  # fmt: skip
    if problems:
        fail(
            expected="each operator to refuse an invalid custom resource with a message from "
            "its own webhook or schema",
            observed="; ".join(problems),
            next_step="check the operator's validating webhook configuration and its server",
        )


def _admit(kube: Kube, operator: str, body: Obj, retry_s: float) -> None:
    """Create `body`; a webhook's denial is retried for `retry_s` (see ADMIT_RETRY_S)."""
    deadline = time.monotonic() + retry_s
    while True:
        try:
            kube.apply(body)
            return
        except (ApiException, DynamicApiError) as exc:
            message = _api_message(exc)
            if "denied the request" not in message or time.monotonic() > deadline:
                fail(
                    expected=f"a valid {body['kind']} ({operator}) to be admitted",
                    observed=f"refused: {message}",
                    next_step=f"the {operator} webhooks or API are unavailable; see "
                    "operator.webhooks-ready",
                )
        time.sleep(1)


@check("operator.valid-reconciled", requirements=["robust_controller"])
def test_valid_reconciled(kube: Kube, kaic_settings: Settings, evidence: Evidence) -> None:
    """A valid custom resource is admitted and the controller moves its status forward."""
    reconciled = {}
    for op in operators_to_verify(kube.cluster, kaic_settings):
        objects = op.valid.build(kube.cluster, kube.namespace)
        start = time.monotonic()
        for i, body in enumerate(objects):
            _admit(kube, op.name, body, retry_s=ADMIT_RETRY_S if i else 0)
        last, done = objects[-1], op.valid.done

        def progressed(found: list[Obj], done: Callable[[Obj], str | None] = done) -> Obj | None:
            return found[0] if found and done(found[0]) else None

        stored = kube.cluster.wait_for(
            last["apiVersion"], last["kind"], progressed,
            awaiting=f"{op.name} to reconcile {last['kind']} {last['metadata']['name']}: "
            f"{op.valid.awaiting}",
            timeout_s=RECONCILE_TIMEOUT_S, name=last["metadata"]["name"],
            namespace=kube.namespace if kube.cluster.resource(
                last["apiVersion"], last["kind"]).namespaced else None,
        )  # fmt: skip
        reconciled[op.name] = {
            "object": f"{last['kind']}/{last['metadata']['name']}",
            "progress": done(stored),
            "seconds": round(time.monotonic() - start, 1),
        }
    evidence.observe("reconciled", reconciled)
