"""What the cluster-autoscaling check scales: a group of accelerator nodes, found by the label a
provider puts on a group's nodes, or as a Karpenter NodePool (which may have no node yet); and
how to size probe pods so that they cannot all run without a node the group did not have."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from conformance.checks._accelerators import (
    DEVICE_PLUGIN_RESOURCES,
    DeviceRequest,
    allocatable,
    device_request,
)
from conformance.cluster import Cluster
from conformance.failures import fail
from conformance.settings import Settings

Obj = dict[str, Any]
KARPENTER_LABEL = "karpenter.sh/nodepool"
NODEPOOL_API = "karpenter.sh/v1"
# Node labels naming a node's group, by provider (the kwok provider's last).
GROUP_LABELS = (
    "eks.amazonaws.com/nodegroup", "cloud.google.com/gke-nodepool",
    "kubernetes.azure.com/agentpool", KARPENTER_LABEL,
    "node.kubernetes.io/instance-group", "kwok-nodegroup",
)  # fmt: skip


@dataclass(frozen=True)
class NodeGroup:
    label: str
    value: str
    nodes: tuple[Obj, ...] = ()
    nodepool: Obj | None = None  # the Karpenter NodePool it is, if it is one
    # its nodes are accelerator nodes, or (a NodePool) its spec names an accelerator resource
    accelerated: bool = True

    @property
    def selector(self) -> str:
        return f"{self.label}={self.value}"

    def uids(self) -> dict[str, str]:
        """Node UID -> name: a node replaced under the same name is a new node."""
        return {n["metadata"]["uid"]: n["metadata"]["name"] for n in self.nodes}

    def resource(self) -> str | None:
        """The device-plugin resource a NodePool's nodes offer, by its limits or template."""
        if self.nodepool is None:
            return None
        spec = self.nodepool.get("spec") or {}
        said = json.dumps([spec.get("limits") or {}, spec.get("template") or {}])
        return next((r for r in DEVICE_PLUGIN_RESOURCES.values() if r in said), None)


@dataclass(frozen=True)
class Sizing:
    request: DeviceRequest
    per_pod: int
    pods: int
    why: str


def node_groups(cluster: Cluster, accelerated: set[str]) -> list[NodeGroup]:
    """Groups of the accelerator nodes (names in `accelerated`) by their group label, and every
    Karpenter NodePool, with the nodes it has now (none is a group too: it can grow)."""
    nodes = cluster.list_objects("v1", "Node")
    by_group: dict[tuple[str, str], list[Obj]] = {}
    for node in nodes:
        labels = node["metadata"].get("labels") or {}
        label = next((k for k in GROUP_LABELS if labels.get(k)), None)
        if label and node["metadata"]["name"] in accelerated:
            by_group.setdefault((label, labels[label]), []).append(node)
    groups = {key: NodeGroup(*key, tuple(found)) for key, found in by_group.items()}
    if cluster.serves(NODEPOOL_API, "NodePool"):
        for pool in cluster.list_objects(NODEPOOL_API, "NodePool"):
            key = (KARPENTER_LABEL, pool["metadata"]["name"])
            members = tuple(n for n in nodes if _label(n, KARPENTER_LABEL) == key[1])
            group = NodeGroup(*key, members, pool)
            offers = bool(group.resource()) or any(
                n["metadata"]["name"] in accelerated for n in members
            )
            groups[key] = NodeGroup(*key, members, pool, offers)
    return list(groups.values())


def _label(node: Obj, key: str) -> str | None:
    return (node["metadata"].get("labels") or {}).get(key)


def choose(groups: list[NodeGroup], wanted: str) -> NodeGroup | None:
    """The group named `wanted`, else one with accelerator nodes, else a NodePool whose spec
    names an accelerator resource (it may have no node yet)."""
    if wanted:
        return next((g for g in groups if g.value == wanted), None)
    offering = [g for g in groups if g.accelerated]
    return next((g for g in offering if g.nodes), None) or next(iter(offering), None)


def sizing(cluster: Cluster, settings: Settings, group: NodeGroup) -> Sizing:
    """N+1 pods that each need a whole node's accelerators, for a group of N nodes (one pod of
    one accelerator for an empty NodePool): whatever the nodes run already, they cannot all fit."""
    count = len(group.nodes)
    if not group.nodes:
        resource = (group.resource() or DEVICE_PLUGIN_RESOURCES.get(settings.accelerator)
                    or DEVICE_PLUGIN_RESOURCES["nvidia"])  # fmt: skip
        why = "the group has no node: one pod of one accelerator cannot run without one"
        return Sizing(DeviceRequest("device-plugin", resource=resource), 1, 1, why)
    for resource in DEVICE_PLUGIN_RESOURCES.values():
        most = max(allocatable(n, resource) for n in group.nodes)
        if most:
            return Sizing(DeviceRequest("device-plugin", resource=resource), most, count + 1,
                          f"{count} node(s) with at most {most} {resource} each: {count + 1} pods "
                          f"of {most} cannot run without another node")  # fmt: skip
    request = device_request(cluster, settings)
    if request.dra is not None:
        names = {n["metadata"]["name"] for n in group.nodes}
        per_node = request.dra.devices_per_node()
        most = max((per_node[n] for n in names if n in per_node), default=0)
        if most:
            return Sizing(request, most, count + 1,
                          f"{count} node(s) with at most {most} DRA devices of "
                          f"{request.dra.device_class} each: {count + 1} pods of {most} cannot run "
                          "without another node")  # fmt: skip
    fail(
        expected=f"the nodes of group {group.selector} to offer accelerators (a device plugin's "
        "resource or DRA devices)",
        observed=f"nodes {sorted(n['metadata']['name'] for n in group.nodes)} offer none",
        next_step="name an accelerator node group with --autoscaler-node-group",
    )
