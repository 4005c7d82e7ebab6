"""Kueue's pod-group integration in the sandbox: plain pods labelled as one group are gated
until Kueue admits the group as a whole, then scheduled together."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from conformance.cluster import Cluster
from tests.integration.test_sandbox import scratch_namespace

pytestmark = pytest.mark.sandbox
Obj = dict[str, Any]
GATE = "kueue.x-k8s.io/admission"


@pytest.fixture
def ns(admin: Cluster) -> Iterator[str]:
    yield from scratch_namespace(admin)


def group_pod(namespace: str, name: str, total: int) -> Obj:
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace,
                     "labels": {"kueue.x-k8s.io/queue-name": "lq",
                                "kueue.x-k8s.io/pod-group-name": "gang"},
                     "annotations": {"kueue.x-k8s.io/pod-group-total-count": str(total)}},
        "spec": {"restartPolicy": "Never", "containers": [
            {"name": "c", "image": "registry.k8s.io/pause:3.10",
             "resources": {"requests": {"cpu": "1"}}}]},
    }  # fmt: skip


def gates(pod: Obj) -> set[str]:
    return {g["name"] for g in pod["spec"].get("schedulingGates") or []}


def test_pod_group_is_gated_until_whole_then_admitted_together(admin: Cluster, ns: str) -> None:
    admin.apply({"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "LocalQueue",
                 "metadata": {"name": "lq", "namespace": ns},
                 "spec": {"clusterQueue": "sandbox"}})  # fmt: skip
    first = admin.apply(group_pod(ns, "gang-0", total=2))
    assert GATE in gates(first), "Kueue's webhook gates a queued pod at creation"
    # One pod of two: the group is incomplete; Kueue makes no Workload for it yet, and the pod
    # stays gated and unscheduled.
    assert admin.list_objects("kueue.x-k8s.io/v1beta2", "Workload", namespace=ns) == []
    [pod] = admin.list_objects("v1", "Pod", namespace=ns)
    assert GATE in gates(pod)
    assert not pod["spec"].get("nodeName")
    admin.apply(group_pod(ns, "gang-1", total=2))
    running = admin.wait_for(
        "v1", "Pod",
        lambda pods: pods if len(pods) == 2 and all(
            not gates(p) and (p.get("status") or {}).get("phase") == "Running" for p in pods
        ) else None,
        awaiting="both pods ungated and running", timeout_s=60, namespace=ns,
    )  # fmt: skip
    assert {p["metadata"]["name"] for p in running} == {"gang-0", "gang-1"}
    [workload] = admin.list_objects("kueue.x-k8s.io/v1beta2", "Workload", namespace=ns)
    assert any(c["type"] == "Admitted" and c["status"] == "True"
               for c in workload["status"]["conditions"])  # fmt: skip
    assert workload["spec"]["podSets"][0]["count"] == 2
