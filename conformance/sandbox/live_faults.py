"""`kaic sandbox break FAULT` / `kaic sandbox mend FAULT`: a fault applied to, or removed from, a
running sandbox by redoing the one step that realizes it (faults.py says which): the nodes and
devices republished, an admission policy installed or removed, the LWS webhooks re-registered,
Kueue's configuration changed and its process restarted, Prometheus reloaded, the exporter's
DaemonSet rolled. No other component is restarted."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.dynamic.exceptions import DynamicApiError

from conformance.cluster import Cluster, ObjectRef
from conformance.errors import KaicError
from conformance.sandbox import (
    autoscaler,
    controllers,
    kuberay,
    lifecycle,
    monitoring,
    scheduler,
    topology,
)
from conformance.sandbox.build import built
from conformance.sandbox.faults import FAULTS, policy_docs
from conformance.sandbox.lifecycle import Progress, Sandbox
from conformance.settings import EPP_IMAGE

Obj = dict[str, Any]
Realize = Callable[[Sandbox, Cluster, Sequence[str], bool], None]
POLICY_WAIT_S = 30


def break_faults(directory: Path, names: Sequence[str], say: Progress) -> list[str]:
    """Apply `names` to the running sandbox; return those that were not applied already."""
    return _change(directory, names, True, say)


def mend_faults(directory: Path, names: Sequence[str], say: Progress) -> list[str]:
    """Remove `names` from the running sandbox; return those that were applied."""
    return _change(directory, names, False, say)


def _change(directory: Path, names: Sequence[str], broken: bool, say: Progress) -> list[str]:
    box = lifecycle.attach(directory)
    if not lifecycle.is_running(directory):
        raise KaicError(f"the sandbox in {directory} is not running (see: kaic sandbox status)")
    for name in names:
        _check_possible(box, name)
    todo = [n for n in dict.fromkeys(names) if (n in box.breaks) != broken]
    for name in dict.fromkeys(names):
        if name not in todo:
            say(f"{name}: {'already broken' if broken else 'not broken'}, nothing to do")
    if not todo:
        return []
    box.breaks = [*box.breaks, *todo] if broken else [b for b in box.breaks if b not in todo]
    cluster = lifecycle.admin(box)
    for step in dict.fromkeys(FAULTS[n].realized_by for n in todo):
        which = [n for n in todo if FAULTS[n].realized_by == step]
        say(f"{'breaking' if broken else 'mending'} {', '.join(which)}: {_STEP_SAYS[step]}")
        _REALIZE[step](box, cluster, which, broken)
    lifecycle.save(box)
    return todo


def _check_possible(box: Sandbox, name: str) -> None:
    if name not in FAULTS:
        raise KaicError(f"{name}: unknown fault (known: {', '.join(FAULTS)})")
    needs = FAULTS[name].needs
    if needs and needs in box.without:
        raise KaicError(f"{name}: this sandbox was started without {needs}, which it changes")
    in_cluster = ("prometheus", "exporter", "adapter", "kuberay")
    if FAULTS[name].realized_by in in_cluster and box.netns is None:
        raise KaicError(f"{name}: this sandbox runs no in-cluster {FAULTS[name].needs} (no "
                        "network namespace of its own: run as root)")  # fmt: skip


def _built(box: Sandbox) -> Path:
    cache = Path(box.cache) if box.cache else built()
    if cache is None or not cache.exists():
        raise KaicError("the sandbox's build is gone from the cache (kaic sandbox build)")
    return cache


def _nodes(box: Sandbox, cluster: Cluster, _names: Sequence[str], _broken: bool) -> None:
    lifecycle.publish_nodes(box, cluster, lambda _: None)


def _policy(_box: Sandbox, cluster: Cluster, names: Sequence[str], broken: bool) -> None:
    for name, doc in ((n, d) for n in names for d in policy_docs(n)):
        if not broken:
            cluster.delete(ObjectRef.of(doc))
            continue
        try:
            lifecycle.apply(cluster, doc)
        except DynamicApiError as exc:
            raise KaicError(f"{name}: the API server refused its {doc['kind']}: "
                            f"{_message(exc)[:300]}") from exc  # fmt: skip
    try:
        for name in names:
            _until_in_force(cluster, name, broken)
    finally:  # the canary pod a deletion-denying fault's probe needed
        if any(name in POLICY_SUBJECTS for name in names):
            cluster.delete(ObjectRef("v1", "Pod", CANARY_NAME, CANARY_NAMESPACE))


def _until_in_force(cluster: Cluster, fault: str, broken: bool) -> None:
    """The API server compiles admission policies a moment after they change; until then a
    controller could still do what the fault denies (or a route be admitted unchanged), or the
    reverse once mended. A dry run says when the change is in force (nothing to watch for that:
    polled)."""
    deadline = time.monotonic() + POLICY_WAIT_S
    while POLICY_IN_FORCE[fault](cluster, fault) != broken:
        if time.monotonic() > deadline:
            state = "in force" if broken else "lifted"
            raise KaicError(f"{fault}: the API server's admission policy was not {state} "
                            f"within {POLICY_WAIT_S}s")  # fmt: skip
        time.sleep(0.2)


def _message(exc: DynamicApiError) -> str:
    try:
        return str(json.loads(exc.body or "{}").get("message") or exc.reason)
    except ValueError:
        return str(exc.reason)


# Whose pod deletions each deletion-denying policy fault denies.
POLICY_SUBJECTS = {"lws-group-restart": controllers.LWS_USER}
CANARY_NAME, CANARY_NAMESPACE = "kaic-sandbox-fault-canary", "default"


def _denies_deletion(cluster: Cluster, fault: str) -> bool:
    """Whether a dry-run deletion of a canary pod (applied once, kept until _policy is done),
    as the fault's subject, is denied."""
    cluster.apply({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": CANARY_NAME, "namespace": CANARY_NAMESPACE},
        "spec": {"nodeName": lifecycle.monitoring_node(),
                 "containers": [{"name": "pause", "image": "registry.k8s.io/pause:3.10"}]},
    })  # fmt: skip
    impersonating = client.ApiClient(cluster.configuration, "Impersonate-User",
                                     POLICY_SUBJECTS[fault])  # fmt: skip
    impersonating.default_headers["Impersonate-Group"] = "system:masters"  # as its certificate
    return _denies(client.CoreV1Api(impersonating), fault)


def _canary_rule(cluster: Cluster) -> Obj:
    """The rule of an HTTPRoute created now (dry run): a header match and a weighted ref."""
    route = cluster.dry_run_create({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": CANARY_NAME, "namespace": CANARY_NAMESPACE},
        "spec": {"rules": [{
            "matches": [{"headers": [{"name": "x-kaic-canary", "value": "a"}]}],
            "backendRefs": [{"name": "canary", "port": 80, "weight": 7}],
        }]},
    })  # fmt: skip
    return dict(route["spec"]["rules"][0])


# What each route-rewriting policy fault does to a route created while it is in force.
ROUTE_REWRITES: dict[str, Callable[[Obj], bool]] = {
    "routes-strip-prefill-header": lambda rule: "x-prefiller-host-port" in str(rule.get("filters")),
    "routes-ignore-weights": lambda rule: rule["backendRefs"][0].get("weight") == 1,
    "routes-ignore-header-matches": lambda rule: not rule["matches"][0].get("headers"),
}


def _rewrites_routes(cluster: Cluster, fault: str) -> bool:
    return ROUTE_REWRITES[fault](_canary_rule(cluster))


def _configures_pickers(cluster: Cluster, _fault: str) -> bool:
    """Whether a picker Deployment created now (dry run) gets a configuration of the fault's."""
    labels = {"app": CANARY_NAME}
    deployment = cluster.dry_run_create({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": CANARY_NAME, "namespace": CANARY_NAMESPACE},
        "spec": {"selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels},
            "spec": {"containers": [{"name": "epp", "image": EPP_IMAGE, "args": ["--v=1"]}]},
        }},
    })  # fmt: skip
    return "--config-text" in deployment["spec"]["template"]["spec"]["containers"][0]["args"]


POLICY_IN_FORCE: dict[str, Callable[[Cluster, str], bool]] = {
    "lws-group-restart": _denies_deletion,
    **dict.fromkeys(ROUTE_REWRITES, _rewrites_routes),
    "endpoint-picker-load-blind": _configures_pickers,
}


def _denies(as_user: client.CoreV1Api, fault: str) -> bool:
    try:
        as_user.delete_namespaced_pod(CANARY_NAME, CANARY_NAMESPACE, dry_run="All")
    except client.ApiException as exc:
        if exc.status == 403 and fault in str(exc.body):
            return True
        raise KaicError(f"{fault}: a dry-run deletion to test the policy was refused: "
                        f"{exc.status} {exc.reason}") from exc  # fmt: skip
    return False


def _lws(box: Sandbox, cluster: Cluster, _names: Sequence[str], broken: bool) -> None:
    ca_pem = (box.directory / "pki" / "ca.crt").read_bytes()
    url = controllers.lws_webhook_url(box.directory)
    for hook in controllers.lws_webhooks(_built(box) / "data", url, ca_pem, down=broken):
        lifecycle.apply(cluster, hook)


def _kueue(box: Sandbox, _cluster: Cluster, _names: Sequence[str], broken: bool) -> None:
    kueue = controllers.restart_kueue(
        box.directory, _built(box) / "bin", box.component_kubeconfig, box.pids["kueue"], box.netns,
        wait_for_pods_ready=not broken,
    )  # fmt: skip
    box.pids["kueue"] = kueue.pid
    lifecycle.save(box)
    controllers.wait_ready(kueue)


def _prometheus(box: Sandbox, cluster: Cluster, _names: Sequence[str], broken: bool) -> None:
    monitoring.reconfigure(cluster, box.directory, scrape_workloads=not broken)


def _exporter(box: Sandbox, cluster: Cluster, _names: Sequence[str], _broken: bool) -> None:
    monitoring.deploy_exporter(cluster, lifecycle.apply, box.directory, list(topology.GPU_KINDS),
                               box.breaks, lifecycle.has_real_gpu_nodes(box))  # fmt: skip


def _adapter(box: Sandbox, cluster: Cluster, _names: Sequence[str], _broken: bool) -> None:
    monitoring.deploy_adapter(cluster, lifecycle.apply, box.directory, lifecycle.monitoring_node(),
                              box.breaks)  # fmt: skip


def _autoscaler(box: Sandbox, cluster: Cluster, _names: Sequence[str], broken: bool) -> None:
    lifecycle.apply(cluster, autoscaler.node_pool(box.breaks))
    if not broken:  # mended: what the fault kept is removed now, so the next user starts clean
        autoscaler.wait_no_nodes(cluster)


def _kuberay(box: Sandbox, cluster: Cluster, _names: Sequence[str], broken: bool) -> None:
    lifecycle.apply(cluster, kuberay.operator_deployment(box.breaks))
    kuberay.wait_ready(cluster, box.breaks)


def _scheduler(box: Sandbox, _cluster: Cluster, _names: Sequence[str], _broken: bool) -> None:
    box.pids["kube-scheduler"] = scheduler.restart(
        box.directory, box.component_kubeconfig, box.pids["kube-scheduler"], box.netns, box.breaks
    )
    lifecycle.save(box)


_REALIZE: dict[str, Realize] = {
    "nodes": _nodes, "policy": _policy, "lws": _lws, "kueue": _kueue, "scheduler": _scheduler,
    "prometheus": _prometheus, "exporter": _exporter, "adapter": _adapter,
    "autoscaler": _autoscaler, "kuberay": _kuberay,
}  # fmt: skip
_STEP_SAYS = {
    "nodes": "republishing the nodes and their devices (new pods see the change)",
    "policy": "changing the admission policy in the API server",
    "lws": "re-registering the LWS webhooks",
    "kueue": "restarting Kueue with its changed configuration",
    "scheduler": "restarting kube-scheduler with its changed profile",
    "prometheus": "reloading Prometheus with its changed scrape configuration",
    "exporter": "rolling the GPU exporter's DaemonSet",
    "adapter": "rolling prometheus-adapter with its changed rules",
    "autoscaler": "changing the autoscaler's NodePool",
    "kuberay": "scaling KubeRay's operator Deployment",
}
