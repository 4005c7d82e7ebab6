"""What the Kueue checks share: the served API version, a private flavor/queue pair with a small
quota, queued Jobs, and reading their Workloads."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from conformance.checks._status import condition
from conformance.cluster import Cluster
from conformance.failures import fail
from conformance.fixtures import Kube
from conformance.probes import pods

Obj = dict[str, Any]
GROUP = "kueue.x-k8s.io"
VERSIONS = ("v1beta2", "v1beta1")
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
ADMISSION_TIMEOUT_S = 120


def kueue_api(cluster: Cluster) -> str:
    """The Kueue API version to use (v1beta2 from Kueue 0.16, else v1beta1); fails without one."""
    for version in VERSIONS:
        if cluster.serves(f"{GROUP}/{version}", "ClusterQueue"):
            return f"{GROUP}/{version}"
    fail(
        expected=f"Kueue's API ({GROUP} {' or '.join(VERSIONS)}) to be served",
        observed="no ClusterQueue resource in API discovery",
        next_step="install Kueue (https://kueue.sigs.k8s.io/docs/installation/)",
    )


@dataclass(frozen=True)
class Queues:
    api: str
    flavor: str
    cluster_queue: str
    local_queue: str


def private_queues(
    kube: Kube, quota: Mapping[str, str], *, select_namespace: str | None = None
) -> Queues:
    """A ResourceFlavor, a ClusterQueue with `quota` selecting the check's namespace (or
    `select_namespace`), and a LocalQueue in the check's namespace."""
    api = kueue_api(kube.cluster)
    name = kube.namespace
    kube.apply({"apiVersion": api, "kind": "ResourceFlavor", "metadata": {"name": name}})
    resources = [{"name": r, "nominalQuota": q} for r, q in quota.items()]
    selected = select_namespace or kube.namespace
    kube.apply({
        "apiVersion": api, "kind": "ClusterQueue", "metadata": {"name": name},
        "spec": {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": selected}},
            "resourceGroups": [{"coveredResources": list(quota),
                                "flavors": [{"name": name, "resources": resources}]}],
        },
    })  # fmt: skip
    kube.apply({"apiVersion": api, "kind": "LocalQueue",
                "metadata": {"name": "queue"}, "spec": {"clusterQueue": name}})  # fmt: skip
    kube.cluster.wait_for(
        api, "ClusterQueue", lambda cqs: (cqs and _active(cqs[0])) or None,
        awaiting=f"ClusterQueue {name} to be Active", timeout_s=60, name=name,
    )  # fmt: skip
    return Queues(api, name, name, "queue")


def _active(cq: Obj) -> bool:
    return any(
        c["type"] == "Active" and c["status"] == "True"
        for c in (cq.get("status") or {}).get("conditions") or []
    )


def queued_job(
    name: str, queue: str, *, parallelism: int = 1, requests: Mapping[str, str] | None = None,
    hold_s: float = 0,
) -> Obj:  # fmt: skip
    command = ["python", "-m", "conformance.agent", "devices"]
    if hold_s:
        command += ["--hold", str(hold_s)]
    container = pods.container(command=command)
    container["resources"] = {"requests": dict(requests or {"cpu": "1"}),
                              "limits": dict(requests or {"cpu": "1"})}  # fmt: skip
    template = pods.pod(name, [container])
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "labels": {QUEUE_LABEL: queue}},
        "spec": {"parallelism": parallelism, "completions": parallelism, "backoffLimit": 0,
                 "template": {"metadata": {"labels": {"app.kubernetes.io/name": name}},
                              "spec": template["spec"]}},
    }  # fmt: skip


def workload_of(job: str) -> Callable[[list[Obj]], Obj | None]:
    def find(workloads: list[Obj]) -> Obj | None:
        for wl in workloads:
            owners = wl["metadata"].get("ownerReferences") or []
            if any(o.get("kind") == "Job" and o.get("name") == job for o in owners):
                return wl
        return None

    return find


def wait_workload(
    kube: Kube, api: str, job: str, predicate: Callable[[Obj], bool], awaiting: str,
    timeout_s: float = ADMISSION_TIMEOUT_S,
) -> Obj:  # fmt: skip
    find = workload_of(job)

    def done(workloads: list[Obj]) -> Obj | None:
        wl = find(workloads)
        return wl if wl is not None and predicate(wl) else None

    return kube.cluster.wait_for(api, "Workload", done, awaiting=awaiting, timeout_s=timeout_s,
                                 namespace=kube.namespace)  # fmt: skip


def admitted(wl: Obj) -> bool:
    cond = condition(wl, "Admitted")
    return bool(cond and cond["status"] == "True")


def pending_reason(wl: Obj) -> str:
    cond = condition(wl, "QuotaReserved") or {}
    return f"{cond.get('reason', '')}: {cond.get('message', '')}".strip(": ")


def seconds_since(start: float) -> float:
    return round(time.monotonic() - start, 3)
