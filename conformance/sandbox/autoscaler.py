"""The sandbox's cluster autoscaler: the real Karpenter with its KWOK cloud provider, out of
cluster. It watches for pods the scheduler cannot place, launches a NodeClaim from the NodePool
`gpu` for them (the provider creates the Node, which the sandbox's KWOK runs, as a cloud would
boot an instance) and removes the node again once it is empty (consolidation). Only the machine
is emulated: the instance type is the topology's GPU node, its GPU labels are those GPU feature
discovery would put on it."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from conformance.cluster import Cluster
from conformance.sandbox import controllers, processes, topology

Obj = dict[str, Any]
Apply = Callable[..., None]

VERSION = "v1.14.1"
NODEPOOL = "gpu"
NODE_CLASS = "sandbox"
INSTANCE_TYPE = "gpu-4x-h100"
ZONE = "sandbox-a"
INSTANCE_TYPES_FILE = "karpenter-instance-types.json"
# How many GPU nodes it may add at most (NodePool limits), so that a runaway never fills the VM.
# Four: two runs of the check at once (an admin and an in-cluster run, as the tests do) may need
# three.
MAX_NODES = 4
# The NodePool waits this long after a node's last pod left before removing it (the upstream
# examples use 30 s to minutes; a test cluster shortens it, as for the HPA's sync period).
CONSOLIDATE_AFTER = "5s"
# Labels Karpenter sets on a node itself and refuses in a NodePool's template.
_KARPENTER_SETS = ("kubernetes.io/hostname", "kubernetes.io/os", "kubernetes.io/arch")


def gpu_node_spec() -> topology.NodeSpec:
    """What one added node is: a device-plugin GPU node of the topology's size."""
    _topo, nodes = topology.load()
    gpus = max((n.gpus for n in nodes if n.kind == "device-plugin" and n.replicas == 1), default=4)
    return topology.NodeSpec("karpenter-gpu", "device-plugin", gpus)


def instance_types() -> list[Obj]:
    """The one instance type the KWOK provider offers (its --instance-types-file-path format)."""
    topo, _nodes = topology.load()
    spec = gpu_node_spec()
    return [{
        "name": INSTANCE_TYPE,
        "offerings": [{"Price": 4.0, "Available": True, "Requirements": [
            {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["on-demand"]},
            {"key": "topology.kubernetes.io/zone", "operator": "In", "values": [ZONE]},
        ]}],
        "architecture": "amd64",
        "operatingSystems": ["linux"],
        "resources": {**topo["node_resources"], "nvidia.com/gpu": str(spec.gpus)},
    }]  # fmt: skip


def node_class() -> Obj:
    return {
        "apiVersion": "karpenter.kwok.sh/v1alpha1",
        "kind": "KWOKNodeClass",
        "metadata": {"name": NODE_CLASS},
    }


def node_class_ready() -> Obj:
    """KWOKNodeClass has no controller of its own (its cloud has nothing to resolve): it is
    marked Ready, as Karpenter's own KWOK test environment does, or no NodePool becomes Ready."""
    return {
        **node_class(),
        "status": {"conditions": [{
            "type": "Ready", "status": "True", "reason": "Ready", "message": "",
            "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 1,
        }]},
    }  # fmt: skip


def node_pool(breaks: Sequence[str] = ()) -> Obj:
    """The NodePool of GPU nodes, shaped by the autoscaler faults: `autoscaler-no-growth` caps
    its GPUs at 0 (limits forbid any node), `autoscaler-no-scale-down` has a disruption budget
    of 0 nodes (it never removes one)."""
    topo, _nodes = topology.load()
    node, _status = topology.node_manifest(gpu_node_spec(), topo)
    labels = {k: v for k, v in node["metadata"]["labels"].items() if k not in _KARPENTER_SETS}
    annotations = {topology.HOST_DRIVER_ANNOTATION:
                   node["metadata"]["annotations"][topology.HOST_DRIVER_ANNOTATION]}  # fmt: skip
    gpus = 0 if "autoscaler-no-growth" in breaks else MAX_NODES * gpu_node_spec().gpus
    budget = "0" if "autoscaler-no-scale-down" in breaks else "100%"
    return {
        "apiVersion": "karpenter.sh/v1",
        "kind": "NodePool",
        "metadata": {"name": NODEPOOL},
        "spec": {
            "template": {
                "metadata": {"labels": labels, "annotations": annotations},
                "spec": {
                    "nodeClassRef": {"group": "karpenter.kwok.sh", "kind": "KWOKNodeClass",
                                     "name": NODE_CLASS},
                    "requirements": [
                        {"key": "node.kubernetes.io/instance-type", "operator": "In",
                         "values": [INSTANCE_TYPE]},
                        {"key": "karpenter.sh/capacity-type", "operator": "In",
                         "values": ["on-demand"]},
                    ],
                    "taints": node["spec"]["taints"],
                    "expireAfter": "Never",
                },
            },
            "limits": {"nvidia.com/gpu": str(gpus)},
            "disruption": {"consolidationPolicy": "WhenEmptyOrUnderutilized",
                           "consolidateAfter": CONSOLIDATE_AFTER,
                           "budgets": [{"nodes": budget}]},
        },
    }  # fmt: skip


def crds(data: Path) -> list[Obj]:
    root = data / "karpenter"
    return [
        crd
        for folder in ("pkg/apis/crds", "kwok/apis/crds")
        for path in sorted((root / folder).glob("*.yaml"))
        for crd in controllers.docs(path)
    ]


def start(
    cluster: Cluster,
    apply: Apply,
    bin_dir: Path,
    data: Path,
    work: Path,
    kubeconfig: Path,
    *,
    netns: str | None,
    breaks: Sequence[str],
    ports: Callable[[], int],
) -> controllers.Controller:
    """Install Karpenter's CRDs, the node class and the NodePool, and start the controller."""
    installed = crds(data)
    for crd in installed:
        apply(cluster, crd)
    controllers.wait_crds(cluster, installed)
    apply(cluster, node_class())
    apply(cluster, node_class_ready(), status=True)
    apply(cluster, node_pool(breaks))
    types = work / INSTANCE_TYPES_FILE
    types.write_text(json.dumps(instance_types(), indent=1))
    health = ports()
    pid = processes.start("karpenter", [str(bin_dir / "karpenter")], work / "logs", env={
        "KUBECONFIG": str(kubeconfig),
        "DISABLE_LEADER_ELECTION": "true",
        "METRICS_PORT": str(ports()),
        "HEALTH_PROBE_PORT": str(health),
        "INSTANCE_TYPES_FILE_PATH": str(types),
        # a pending pod is acted on after 1 s without new ones, at most 3 s after the first
        "BATCH_IDLE_DURATION": "1s",
        "BATCH_MAX_DURATION": "3s",
        "SYSTEM_NAMESPACE": "kube-system",
        "LOG_LEVEL": "info",
    }, netns=netns)  # fmt: skip
    return controllers.Controller(
        "karpenter", pid, f"http://127.0.0.1:{health}/readyz", work / "logs" / "karpenter.log",
        netns,
    )  # fmt: skip


NODES_GONE_S = 120


def wait_no_nodes(cluster: Cluster, timeout_s: float = NODES_GONE_S) -> None:
    """Until the NodePool has no node left (Karpenter removes empty ones after
    CONSOLIDATE_AFTER)."""
    cluster.wait_for(
        "v1", "Node", lambda nodes: None if nodes else True,
        label_selector=f"karpenter.sh/nodepool={NODEPOOL}", timeout_s=timeout_s,
        awaiting=f"Karpenter to remove the empty nodes of NodePool {NODEPOOL}",
    )  # fmt: skip
