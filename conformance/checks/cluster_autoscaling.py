"""Cluster autoscaling, by the peers' strictest procedure: pods sized so that they cannot all run
on the accelerator node group as it is (N+1 pods that each need a whole node's accelerators, or
one pod for a group with no node) are pinned to the group; one must be Unschedulable, then run on
a node that did not exist before (by UID); once the pods are gone the added nodes must go and the
group shrink back. Not applicable where no cluster autoscaler (or Karpenter) runs.

Waits are `--autoscaler-timeout` (default 15 min) each way, as real clouds need. The pods are
deleted whatever happens; the nodes are the autoscaler's to remove, and the check reports how far
the scale-down got when it ends."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from conformance.checks._accelerators import DEVICE_PLUGIN_RESOURCES, allocatable
from conformance.checks._node_groups import GROUP_LABELS, NodeGroup, Sizing, choose, node_groups
from conformance.checks._node_groups import sizing as size_pods
from conformance.checks.registry import check
from conformance.cluster import Cluster, ObjectRef, WaitTimeout
from conformance.cluster.discovery import DRA_DRIVERS
from conformance.evidence import Evidence
from conformance.failures import fail, not_applicable
from conformance.fixtures import Kube
from conformance.probes import pods
from conformance.settings import Settings

Obj = dict[str, Any]
AUTOSCALER_SELECTORS = ("app.kubernetes.io/name=cluster-autoscaler", "app=cluster-autoscaler",
                        "app.kubernetes.io/name=karpenter")  # fmt: skip
HOLD = ("python", "-m", "conformance.agent", "devices", "--hold", "3600")
EVENTS_SHOWN = 3


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


def accelerator_nodes(cluster: Cluster) -> set[str]:
    """Nodes offering a device plugin's accelerators or publishing DRA devices of a GPU driver."""
    names = {
        n["metadata"]["name"]
        for n in cluster.list_objects("v1", "Node")
        if any(allocatable(n, r) for r in DEVICE_PLUGIN_RESOURCES.values())
    }
    if cluster.serves("resource.k8s.io/v1", "ResourceSlice"):
        drivers = set(DRA_DRIVERS.values())
        names |= {
            s["spec"]["nodeName"]
            for s in cluster.list_objects("resource.k8s.io/v1", "ResourceSlice")
            if s["spec"].get("nodeName") and s["spec"].get("driver") in drivers
        }
    return names


@dataclass
class Watched:
    """What the pod and node watches saw: who was Unschedulable, where pods ran, node counts."""

    group: NodeGroup
    started: float = field(default_factory=time.monotonic)
    unschedulable: set[str] = field(default_factory=set)
    placed: dict[str, str] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)

    def see_pods(self, found: list[Obj]) -> None:
        for pod in found:
            name, status = pod["metadata"]["name"], pod.get("status") or {}
            if any(c.get("type") == "PodScheduled" and c.get("status") == "False"
                   and c.get("reason") == "Unschedulable"
                   for c in status.get("conditions") or []):  # fmt: skip
                self.unschedulable.add(name)
            if status.get("phase") == "Running" and pod["spec"].get("nodeName"):
                self.placed[name] = pod["spec"]["nodeName"]

    def see_nodes(self, cluster: Cluster) -> dict[str, str]:
        """The group's nodes now (UID -> name), recorded in the history when the count changed."""
        found = cluster.list_objects("v1", "Node", label_selector=self.group.selector)
        now = {n["metadata"]["uid"]: n["metadata"]["name"] for n in found}
        if not self.history or self.history[-1]["nodes"] != len(now):
            self.history.append({"t_s": round(time.monotonic() - self.started),
                                 "nodes": len(now)})  # fmt: skip
        return now


def _start_pods(kube: Kube, group: NodeGroup, plan: Sizing) -> list[str]:
    names = []
    for i in range(plan.pods):
        templates, asked = plan.request.ask(kube, f"fill-{i}", plan.per_pod)
        pod = pods.pod(f"fill-{i}", [pods.container(command=HOLD, **asked)],
                       claim_templates=templates)  # fmt: skip
        pod["spec"]["nodeSelector"] = {group.label: group.value}
        kube.apply(pod)
        names.append(f"fill-{i}")
    return names


def _pod_events(cluster: Cluster, namespace: str, name: str) -> str:
    """The newest events of a pod (the scheduler's and the autoscaler's say why it waits)."""
    events = cluster.list_objects("v1", "Event", namespace=namespace,
                                  field_selector=f"involvedObject.name={name}")  # fmt: skip
    events.sort(key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""))
    said = [f"{e.get('reason')} from {_reporter(e)}: {str(e.get('message') or '')[:300]}"
            for e in events[-EVENTS_SHOWN:]]  # fmt: skip
    return "; ".join(said) or "no events"


def _reporter(event: Obj) -> str:
    return str((event.get("source") or {}).get("component") or event.get("reportingComponent")
               or "?")  # fmt: skip


def _scale_up(kube: Kube, seen: Watched, plan: Sizing, names: list[str], timeout: float) -> None:
    def all_running(found: list[Obj]) -> bool | None:
        seen.see_pods(found)
        seen.see_nodes(kube.cluster)
        return len(seen.placed) >= len(names) or None

    waiting = time.monotonic()
    try:
        kube.cluster.wait_for(
            "v1", "Pod", all_running, timeout_s=timeout, namespace=kube.namespace,
            awaiting=f"{len(names)} pods needing {plan.per_pod} accelerator(s) each to run on "
            f"group {seen.group.selector} ({len(seen.group.nodes)} nodes before)",
        )  # fmt: skip
    except WaitTimeout:
        pending = [n for n in names if n not in seen.placed]
        fail(
            expected=f"the autoscaler to add a node to {seen.group.selector} for the pod(s) that "
            f"cannot run ({plan.why})",
            observed=f"{', '.join(pending)} still not running after "
            f"{time.monotonic() - waiting:.0f} s; node count over time {seen.history}; "
            f"events of {pending[0]}: {_pod_events(kube.cluster, kube.namespace, pending[0])}",
            next_step=f"kubectl describe pod -n {kube.namespace} {pending[0]}, and the "
            "autoscaler's log (Karpenter: kubectl get nodeclaims, and the NodePool's limits; "
            "cluster-autoscaler: TriggeredScaleUp / NotTriggerScaleUp events); a larger "
            "--autoscaler-timeout if the cloud is slow",
        )


def _grown(seen: Watched, now: dict[str, str], names: list[str]) -> dict[str, str]:
    """The nodes added (UID -> name), asserting that a pod which could not be placed ran on one."""
    before = seen.group.uids()
    added = {uid: name for uid, name in now.items() if uid not in before}
    on_added = [p for p in names if seen.placed.get(p) in added.values()]
    where = {p: seen.placed.get(p) for p in names}
    if not on_added:
        fail(
            expected=f"a pod that does not fit on {seen.group.selector} as it was to run on a node "
            "the autoscaler added",
            observed=f"every pod ran on a node that existed before ({where}; nodes before "
            f"{sorted(before.values())}), so no scale-up was shown",
            next_step="the group's nodes had room the check did not expect (their accelerators' "
            "allocatable changed during the check?); run it again, or name a group with "
            "--autoscaler-node-group",
        )
    if not seen.unschedulable & set(on_added):
        fail(
            expected="a pod on an added node to have been Unschedulable first (the scale-up was "
            "for it)",
            observed=f"pods on added nodes {on_added} were never reported Unschedulable",
            next_step="kubectl get events: was the node added for another reason?",
        )
    return added


def _scale_down(kube: Kube, seen: Watched, added: dict[str, str], timeout: float) -> None:
    before = len(seen.group.nodes)

    def shrunk(_found: list[Obj]) -> bool | None:
        now = seen.see_nodes(kube.cluster)
        return (len(now) <= before and not set(now) & set(added)) or None

    waiting = time.monotonic()
    try:
        kube.cluster.wait_for(
            "v1", "Node", shrunk, timeout_s=timeout, label_selector=seen.group.selector,
            awaiting=f"{seen.group.selector} to shrink back to {before} nodes",
        )  # fmt: skip
    except WaitTimeout:
        left = {uid: name for uid, name in seen.see_nodes(kube.cluster).items() if uid in added}
        fail(
            expected=f"the nodes the autoscaler added to {seen.group.selector} to be removed once "
            f"their pods are gone (back to {before} nodes)",
            observed=f"added nodes {sorted(left.values()) or 'none'} still there after "
            f"{time.monotonic() - waiting:.0f} s; node count over time {seen.history}",
            next_step="the autoscaler's scale-down settings (Karpenter: the NodePool's "
            "disruption consolidationPolicy, consolidateAfter and budgets; cluster-autoscaler: "
            "scale-down-enabled, scale-down-unneeded-time), its log, or a larger "
            "--autoscaler-timeout",
        )


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
    groups = node_groups(kube.cluster, accelerator_nodes(kube.cluster))
    wanted = kaic_settings.autoscaler_node_group
    group = choose(groups, wanted)
    if group is None:
        fail(
            expected=f"an accelerator node group{f' named {wanted}' if wanted else ''} (nodes "
            f"labelled with one of {', '.join(GROUP_LABELS)}, or a Karpenter NodePool offering "
            "accelerators)",
            observed=f"groups {sorted(g.selector for g in groups) or 'none'}",
            next_step="name the group with --autoscaler-node-group",
        )
    plan = size_pods(kube.cluster, kaic_settings, group)
    evidence.observe("node_group", group.selector)
    evidence.observe("nodes_before", {name: uid for uid, name in group.uids().items()})
    evidence.observe("sizing", {"pods": plan.pods, "accelerators_per_pod": plan.per_pod,
                                "asked_as": plan.request.describe(), "why": plan.why})  # fmt: skip
    seen = Watched(group)
    timeout = kaic_settings.autoscaler_timeout_s
    try:
        names = _start_pods(kube, group, plan)
        _scale_up(kube, seen, plan, names, timeout)
        added = _grown(seen, seen.see_nodes(kube.cluster), names)
        evidence.observe("nodes_added", {name: uid for uid, name in added.items()})
        evidence.observe("pods", {p: seen.placed.get(p) for p in names})
        evidence.observe("unschedulable_first", sorted(seen.unschedulable))
        evidence.observe("scaled_up_after_s", round(time.monotonic() - seen.started))
        for name in names:
            kube.cluster.delete(ObjectRef("v1", "Pod", name, kube.namespace))
        _scale_down(kube, seen, added, timeout)
        evidence.observe("scaled_down_after_s", round(time.monotonic() - seen.started))
    finally:
        evidence.observe("node_history", seen.history)
