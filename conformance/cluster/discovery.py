"""What the cluster serves and has: version, API groups, CRDs, nodes and their accelerators."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from conformance.cluster.client import Cluster

# Extended resources that device plugins advertise, by accelerator vendor.
DEVICE_PLUGIN_RESOURCES = {"nvidia": "nvidia.com/gpu", "amd": "amd.com/gpu"}
# DRA driver names, by accelerator vendor.
DRA_DRIVERS = {"nvidia": "gpu.nvidia.com", "amd": "gpu.amd.com", "example": "gpu.example.com"}


@dataclass(frozen=True)
class ApiResource:
    group_version: str
    name: str
    kind: str
    namespaced: bool
    verbs: tuple[str, ...]


@dataclass
class NodeInfo:
    name: str
    ready: bool
    labels: dict[str, str]
    allocatable: dict[str, str]
    taints: list[str]
    dra_devices: dict[str, int] = field(default_factory=dict)  # driver -> device count

    def device_plugin_gpus(self) -> dict[str, int]:
        out = {}
        for vendor, resource in DEVICE_PLUGIN_RESOURCES.items():
            count = _int(self.allocatable.get(resource))
            if count:
                out[vendor] = count
        return out


@dataclass
class ClusterInfo:
    version: str
    group_versions: list[str]
    crds: list[str]
    nodes: list[NodeInfo]

    def serves(self, group_version: str) -> bool:
        return group_version in self.group_versions

    def accelerators(self) -> dict[str, set[str]]:
        """Vendor -> allocation modes seen on nodes ("device-plugin", "dra")."""
        found: dict[str, set[str]] = {}
        for node in self.nodes:
            for vendor in node.device_plugin_gpus():
                found.setdefault(vendor, set()).add("device-plugin")
            for driver in node.dra_devices:
                for vendor, name in DRA_DRIVERS.items():
                    if driver == name:
                        found.setdefault(vendor, set()).add("dra")
        return found


def _int(value: str | None) -> int:
    try:
        return int(value) if value is not None else 0
    except ValueError:
        return 0


def group_versions(cluster: Cluster) -> list[str]:
    out = ["v1"]
    groups: Any = cluster.get_path("/apis")
    for group in groups.get("groups", []):
        out.extend(v["groupVersion"] for v in group.get("versions", []))
    return out


def api_resources(cluster: Cluster, group_version: str) -> list[ApiResource]:
    path = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
    listing: Any = cluster.get_path(path)
    return [
        ApiResource(
            group_version=group_version,
            name=r["name"],
            kind=r["kind"],
            namespaced=bool(r.get("namespaced")),
            verbs=tuple(r.get("verbs", [])),
        )
        for r in listing.get("resources", [])
        if "/" not in r["name"]
    ]


def preferred_group_versions(cluster: Cluster) -> list[str]:
    out = ["v1"]
    groups: Any = cluster.get_path("/apis")
    for group in groups.get("groups", []):
        preferred = group.get("preferredVersion") or group["versions"][0]
        out.append(preferred["groupVersion"])
    return out


def nodes(cluster: Cluster) -> list[NodeInfo]:
    found = []
    for node in cluster.list_objects("v1", "Node"):
        status = node.get("status") or {}
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in status.get("conditions") or []
        )
        taints = [
            f"{t['key']}{'=' + t['value'] if t.get('value') else ''}:{t['effect']}"
            for t in (node.get("spec") or {}).get("taints") or []
        ]
        found.append(
            NodeInfo(
                name=node["metadata"]["name"],
                ready=ready,
                labels=dict(node["metadata"].get("labels", {})),
                allocatable=dict(status.get("allocatable", {})),
                taints=taints,
            )
        )
    return found


def discover(cluster: Cluster) -> ClusterInfo:
    versions = group_versions(cluster)
    crds = []
    if "apiextensions.k8s.io/v1" in versions:
        crds = [
            c["metadata"]["name"]
            for c in cluster.list_objects("apiextensions.k8s.io/v1", "CustomResourceDefinition")
        ]
    node_infos = nodes(cluster)
    if "resource.k8s.io/v1" in versions:
        by_name = {n.name: n for n in node_infos}
        for rs in cluster.list_objects("resource.k8s.io/v1", "ResourceSlice"):
            spec = rs.get("spec", {})
            node = by_name.get(spec.get("nodeName", ""))
            if node is not None:
                driver = spec.get("driver", "")
                node.dra_devices[driver] = node.dra_devices.get(driver, 0) + len(
                    spec.get("devices", []) or []
                )
    return ClusterInfo(
        version=cluster.server_version(),
        group_versions=versions,
        crds=sorted(crds),
        nodes=node_infos,
    )
