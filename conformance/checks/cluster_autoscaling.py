"""Cluster autoscaling, by the peers' procedure: an accelerator node group of N nodes gets N+1
pods that each need a whole node's accelerators; one stays Pending until the autoscaler adds a
node, then all run; once they are gone the group shrinks back to N. Not applicable where no
cluster autoscaler (or Karpenter) runs.

Waits are `--autoscaler-timeout` (default 15 min) each way, as real clouds need. The pods are
deleted whatever happens; the nodes are the autoscaler's to remove, and the check reports how far
the scale-down got when it ends."""

from __future__ import annotations

import math
import time
from collections import defaultdict
from typing import Any

from conformance.checks._accelerators import DeviceRequest, device_request
from conformance.checks.registry import check
from conformance.cluster import Cluster, ObjectRef, WaitTimeout
from conformance.evidence import Evidence
from conformance.failures import fail, not_applicable
from conformance.fixtures import Kube
from conformance.probes import pods
from conformance.settings import Settings

Obj = dict[str, Any]
# Node labels naming a node's group, by provider (the kwok provider's last).
GROUP_LABELS = (
    "eks.amazonaws.com/nodegroup", "cloud.google.com/gke-nodepool",
    "kubernetes.azure.com/agentpool", "karpenter.sh/nodepool",
    "node.kubernetes.io/instance-group", "kwok-nodegroup",
)  # fmt: skip
AUTOSCALER_SELECTORS = ("app.kubernetes.io/name=cluster-autoscaler", "app=cluster-autoscaler",
                        "app.kubernetes.io/name=karpenter")  # fmt: skip
HOLD = ("python", "-m", "conformance.agent", "devices", "--hold", "3600")


def autoscaler(cluster: Cluster) -> str | None:
    """What scales nodes here, if anything: the cluster-autoscaler's pods or status ConfigMap,
    or Karpenter's NodePools."""
    for selector in AUTOSCALER_SELECTORS:
        found = cluster.list_objects("v1", "Pod", label_selector=selector)
        if found:
            meta = found[0]["metadata"]
            return f"Pod/{meta['namespace']}/{meta['name']} ({selector})"
    status = cluster.get(ObjectRef("v1", "ConfigMap", "cluster-autoscaler-status", "kube-system"))
    if status is not None:
        return "ConfigMap/kube-system/cluster-autoscaler-status"
    if cluster.serves("karpenter.sh/v1", "NodePool"):
        return "Karpenter (karpenter.sh/v1 NodePool)"
    return None


def node_groups(cluster: Cluster, request: DeviceRequest) -> dict[str, list[Obj]]:
    """'label=value' -> the accelerator nodes of that group."""
    accelerated = set(request.nodes(cluster))
    groups: dict[str, list[Obj]] = defaultdict(list)
    for node in cluster.list_objects("v1", "Node"):
        if node["metadata"]["name"] not in accelerated:
            continue
        labels = node["metadata"].get("labels") or {}
        label = next((k for k in GROUP_LABELS if labels.get(k)), None)
        if label:
            groups[f"{label}={labels[label]}"].append(node)
    return dict(groups)


def _accelerators(node: Obj, request: DeviceRequest) -> int:
    allocatable = (node.get("status") or {}).get("allocatable") or {}
    return int(allocatable.get(request.resource or "", 0) or 0) or 1


def _group_nodes(cluster: Cluster, selector: str) -> list[str]:
    return sorted(n["metadata"]["name"]
                  for n in cluster.list_objects("v1", "Node", label_selector=selector))  # fmt: skip


@check("cluster-autoscaling.accelerator-group", requirements=["cluster_autoscaling"])
def test_accelerator_group(kube: Kube, kaic_settings: Settings, evidence: Evidence) -> None:
    """An accelerator node group grows when an accelerator pod cannot be placed, and shrinks
    back when the pods are gone."""
    found = autoscaler(kube.cluster)
    if found is None and not kaic_settings.autoscaler_node_group:
        not_applicable(
            "no-autoscaler",
            "no cluster autoscaler found (no cluster-autoscaler pods or status ConfigMap, no "
            "Karpenter NodePools); pass --autoscaler-node-group if one runs outside the cluster",
        )
    evidence.observe("autoscaler", found or "given by --autoscaler-node-group")
    request = device_request(kube.cluster, kaic_settings)
    groups = node_groups(kube.cluster, request)
    wanted = kaic_settings.autoscaler_node_group
    chosen = next((g for g in groups if not wanted or g.split("=", 1)[1] == wanted), None)
    if chosen is None:
        fail(
            expected=f"an accelerator node group{f' named {wanted}' if wanted else ''} (nodes "
            f"labelled with one of {', '.join(GROUP_LABELS)})",
            observed=f"groups {sorted(groups) or 'none'}",
            next_step="name the group with --autoscaler-node-group",
        )
    before = [n["metadata"]["name"] for n in groups[chosen]]
    per_node = max(_accelerators(n, request) for n in groups[chosen])
    evidence.observe("node_group", chosen)
    evidence.observe("nodes_before", before)
    timeout = kaic_settings.autoscaler_timeout_s
    history: list[dict[str, Any]] = []
    started = time.monotonic()

    def nodes_now() -> list[str]:
        names = _group_nodes(kube.cluster, chosen)
        if not history or history[-1]["nodes"] != len(names):
            history.append({"t_s": round(time.monotonic() - started), "nodes": len(names)})
        return names

    count = len(before) + 1
    label, value = chosen.split("=", 1)
    for i in range(count):
        templates, asked = request.ask(kube, f"fill-{i}", per_node)
        pod = pods.pod(f"fill-{i}", [pods.container(command=HOLD, **asked)],
                       claim_templates=templates)  # fmt: skip
        pod["spec"]["nodeSelector"] = {label: value}
        kube.apply(pod)

    def all_running(found: list[Obj]) -> list[Obj] | None:
        nodes_now()
        running = [p for p in found if (p.get("status") or {}).get("phase") == "Running"]
        return running if len(running) >= count else None

    try:
        kube.cluster.wait_for("v1", "Pod", all_running, timeout_s=timeout,
                              awaiting=f"{count} pods needing {per_node} accelerator(s) each to "
                              f"run on group {chosen} ({len(before)} nodes)",
                              namespace=kube.namespace)  # fmt: skip
    except WaitTimeout as exc:
        fail(
            expected=f"the autoscaler to add a node to {chosen} for the pod that does not fit "
            f"({count} pods x {per_node} accelerator(s), {len(before)} nodes)",
            observed=f"node count over time {history}; {exc}",
            next_step="kubectl describe pod of the Pending one (events TriggeredScaleUp / "
            "NotTriggerScaleUp say why) and the autoscaler's log; a larger "
            "--autoscaler-timeout if the cloud is slow",
        )
    grown = nodes_now()
    evidence.observe("nodes_grown", grown)
    up_s = time.monotonic() - started
    for i in range(count):
        kube.cluster.delete(ObjectRef("v1", "Pod", f"fill-{i}", kube.namespace))
    evidence.observe("scaled_up_after_s", round(up_s))

    def shrunk(found: list[Obj]) -> list[Obj] | None:
        nodes_now()
        return found if len(found) <= len(before) else None

    try:
        kube.cluster.wait_for(
            "v1", "Node", shrunk, timeout_s=timeout, label_selector=chosen,
            awaiting=f"{chosen} to shrink back to {len(before)} nodes",
        )  # fmt: skip
    except WaitTimeout:
        fail(
            expected=f"{chosen} to shrink back to {len(before)} nodes once its pods are gone",
            observed=f"{len(nodes_now())} nodes after {math.ceil(timeout)} s; history {history}",
            next_step="check the autoscaler's scale-down settings (scale-down-unneeded-time, "
            "scale-down-enabled) or raise --autoscaler-timeout",
        )
    finally:
        evidence.observe("node_history", history)
