"""The cluster-autoscaling check's groups and pod sizing: whatever the group, the pods it starts
cannot all run without a node the group did not have (N+1 pods of a whole node's accelerators,
also for DRA nodes, whose devices are not in the node's allocatable)."""

from __future__ import annotations

from typing import Any, cast

import pytest

from conformance.checks._node_groups import NodeGroup, choose, node_groups, sizing
from conformance.cluster import Cluster
from conformance.failures import CheckFailure
from conformance.settings import Settings

Obj = dict[str, Any]


class Fake:
    def __init__(self, nodes: list[Obj], pools: tuple[Obj, ...] = (),
                 slices: tuple[Obj, ...] = ()) -> None:  # fmt: skip
        self.objects = {("v1", "Node"): nodes, ("karpenter.sh/v1", "NodePool"): list(pools),
                        ("resource.k8s.io/v1", "ResourceSlice"): list(slices),
                        ("resource.k8s.io/v1", "DeviceClass"): [
                            {"metadata": {"name": "gpu.example.com"}}]}  # fmt: skip

    def list_objects(self, api_version: str, kind: str, **_: Any) -> list[Obj]:
        return self.objects[(api_version, kind)]

    def serves(self, api_version: str, kind: str) -> bool:
        return (api_version, kind) != ("karpenter.sh/v1", "NodePool") or bool(
            self.objects[(api_version, kind)]
        )


def node(name: str, gpus: int = 0, **labels: str) -> Obj:
    return {"metadata": {"name": name, "uid": f"uid-{name}", "labels": labels},
            "status": {"allocatable": {"cpu": "8", "nvidia.com/gpu": str(gpus)}}}  # fmt: skip


def pool(name: str, limits: Obj) -> Obj:
    return {"metadata": {"name": name}, "spec": {"limits": limits, "template": {"spec": {}}}}


def dra_slice(node_name: str, devices: int) -> Obj:
    return {"spec": {"nodeName": node_name, "driver": "gpu.example.com",
                     "pool": {"name": node_name},
                     "devices": [{"name": f"gpu-{i}"} for i in range(devices)]}}  # fmt: skip


def test_a_labelled_group_of_four_gpu_nodes_gets_one_pod_more_than_its_nodes() -> None:
    eks = "eks.amazonaws.com/nodegroup"
    cluster = cast(Cluster, Fake([node("a", 4, **{eks: "gpus"}), node("b", 8, **{eks: "gpus"}),
                                  node("cpu", 0, **{eks: "cpus"})]))  # fmt: skip
    groups = node_groups(cluster, {"a", "b"})
    group = choose(groups, "")
    assert group is not None
    assert group.selector == "eks.amazonaws.com/nodegroup=gpus"
    plan = sizing(cluster, Settings("t"), group)
    # 3 pods of 8: at most one per node of either size, so the third needs a new node
    assert (plan.pods, plan.per_pod, plan.request.resource) == (3, 8, "nvidia.com/gpu")


def test_dra_nodes_are_sized_by_their_published_devices_not_as_one() -> None:
    label = {"kwok-nodegroup": "dra"}
    cluster = cast(Cluster, Fake([node("d0", 0, **label), node("d1", 0, **label)],
                                 slices=(dra_slice("d0", 4), dra_slice("d1", 4))))  # fmt: skip
    group = choose(node_groups(cluster, {"d0", "d1"}), "")
    assert group is not None
    plan = sizing(cluster, Settings("t"), group)
    assert (plan.pods, plan.per_pod, plan.request.mode) == (3, 4, "dra")


def test_an_empty_karpenter_nodepool_offering_gpus_is_a_group_that_needs_one_pod() -> None:
    pools = (pool("general", {"cpu": "100"}), pool("gpu", {"nvidia.com/gpu": "8"}))
    cluster = cast(Cluster, Fake([node("cpu-0")], pools=pools))
    group = choose(node_groups(cluster, set()), "")
    assert group is not None
    assert (group.selector, group.nodes) == ("karpenter.sh/nodepool=gpu", ())
    plan = sizing(cluster, Settings("t"), group)
    assert (plan.pods, plan.per_pod, plan.request.resource) == (1, 1, "nvidia.com/gpu")


def test_a_named_group_without_accelerators_fails_naming_its_nodes() -> None:
    cluster = cast(Cluster, Fake([node("c", 0, **{"kwok-nodegroup": "cpu"})]))
    group = NodeGroup("kwok-nodegroup", "cpu", tuple(cluster.list_objects("v1", "Node")))
    with pytest.raises(CheckFailure, match=r"observed nodes \['c'\] offer none"):
        sizing(cluster, Settings("t"), group)


def test_a_nodepool_whose_nodes_have_gpus_is_chosen_though_its_spec_names_none() -> None:
    """Cloud GPU NodePools often select instances by a GPU-count requirement of their own."""
    pools = (pool("general", {"cpu": "100"}), pool("accelerated", {"cpu": "100"}))
    nodes = [node("c", 0, **{"karpenter.sh/nodepool": "general"}),
             node("g", 4, **{"karpenter.sh/nodepool": "accelerated"})]  # fmt: skip
    cluster = cast(Cluster, Fake(nodes, pools=pools))
    group = choose(node_groups(cluster, {"g"}), "")
    assert group is not None
    assert group.selector == "karpenter.sh/nodepool=accelerated"
    assert (sizing(cluster, Settings("t"), group).pods, group.uids()) == (2, {"uid-g": "g"})
