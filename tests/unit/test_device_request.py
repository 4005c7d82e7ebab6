"""Which nodes the secure-access checks ask for devices: only nodes that give a pod its own."""

from __future__ import annotations

from typing import Any, cast

from conformance.checks._accelerators import DeviceRequest, DraTarget
from conformance.cluster import Cluster

Obj = dict[str, Any]


class Nodes:
    def __init__(self, *nodes: Obj) -> None:
        self.nodes = list(nodes)

    def list_objects(self, api_version: str, kind: str, **_: Any) -> list[Obj]:
        assert (api_version, kind) == ("v1", "Node")
        return self.nodes


def node(name: str, gpus: int, **labels: str) -> Obj:
    return {"metadata": {"name": name, "labels": labels},
            "status": {"allocatable": {"cpu": "8", "nvidia.com/gpu": str(gpus)}}}  # fmt: skip


def test_device_plugin_nodes_leave_out_shared_and_small_ones() -> None:
    cluster = cast(Cluster, Nodes(
        node("exclusive", 4),
        node("one-gpu", 1),
        node("time-sliced", 3, **{"nvidia.com/gpu.sharing-strategy": "time-slicing",
                                   "nvidia.com/gpu.replicas": "3"}),
        node("mps", 4, **{"nvidia.com/gpu.sharing-strategy": "mps"}),
        node("replicas-only", 4, **{"nvidia.com/gpu.replicas": "2"}),
        node("declared-none", 2, **{"nvidia.com/gpu.sharing-strategy": "none"}),
        node("cpu", 0),
    ))  # fmt: skip
    request = DeviceRequest("device-plugin", resource="nvidia.com/gpu")
    assert request.nodes(cluster) == ["exclusive", "one-gpu", "declared-none"]
    assert request.nodes(cluster, count=2) == ["exclusive", "declared-none"]


def test_dra_nodes_count_published_devices() -> None:
    def slice_(node_name: str, devices: int) -> Obj:
        return {"spec": {"nodeName": node_name, "pool": {"name": node_name},
                         "devices": [{"name": f"gpu-{i}"} for i in range(devices)]}}  # fmt: skip

    slices = (slice_("b", 1), slice_("a", 2), {"spec": {"pool": {"name": "net"}}})
    target = DraTarget("gpu.example.com", "gpu.example.com", slices)
    request = DeviceRequest("dra", dra=target)
    assert request.nodes(cast(Cluster, Nodes())) == ["a", "b"]
    assert request.nodes(cast(Cluster, Nodes()), count=2) == ["a"]
