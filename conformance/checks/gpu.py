"""GPU scheduling through a device plugin's extended resource (nvidia.com/gpu, amd.com/gpu)."""

from __future__ import annotations

from typing import Any

from conformance.checks._accelerators import allocatable, device_plugin_resource
from conformance.checks.registry import check
from conformance.cluster import Cluster
from conformance.evidence import Evidence
from conformance.failures import fail, not_applicable
from conformance.fixtures import Kube
from conformance.probes import pods
from conformance.settings import Settings

Obj = dict[str, Any]
SCHEDULE_TIMEOUT_S = 120
PAUSE = ("python", "-m", "conformance.agent", "devices", "--hold", "600")
NO_FIT_CHECK = (
    "the scheduler places pods without checking their requests against what nodes "
    "have: check its configuration (the NodeResourcesFit filter plugin)"
)


def _resource(cluster: Cluster, settings: Settings) -> str:
    resource = device_plugin_resource(cluster, settings)
    if resource is None:
        if settings.allocation_mode == "device-plugin":
            fail(
                expected="nodes advertising a device plugin's GPU resource "
                "(nvidia.com/gpu or amd.com/gpu)",
                observed="no node has one allocatable",
                next_step="install the vendor's device plugin (kubectl get nodes -o "
                "custom-columns=N:.metadata.name,GPU:.status.allocatable)",
            )
        not_applicable(
            "no-device-plugin-resources",
            "no device plugin GPU resource on any node (accelerators come through DRA)",
        )
    return resource


def _capacity(cluster: Cluster, resource: str) -> dict[str, int]:
    """Allocatable `resource` per node."""
    return {n["metadata"]["name"]: allocatable(n, resource)
            for n in cluster.list_objects("v1", "Node")}  # fmt: skip


def _gpu_pod(name: str, resource: str, count: int, node: str | None = None) -> Obj:
    manifest = pods.pod(name, [pods.container(command=PAUSE, limits={resource: str(count)})])
    if node:
        manifest["spec"]["nodeSelector"] = {"kubernetes.io/hostname": node}
    return manifest


def _scheduled_or_unschedulable(kube: Kube, name: str) -> Obj:
    def decided(found: list[Obj]) -> Obj | None:
        for pod in found:
            if pod["spec"].get("nodeName"):
                return pod
            for cond in (pod.get("status") or {}).get("conditions") or []:
                if cond["type"] == "PodScheduled" and cond.get("reason") == "Unschedulable":
                    return pod
        return None

    return kube.cluster.wait_for(
        "v1", "Pod", decided, awaiting=f"the scheduler to place or reject pod {name}",
        timeout_s=SCHEDULE_TIMEOUT_S, namespace=kube.namespace, name=name,
    )  # fmt: skip


def _scheduler_message(pod: Obj) -> str:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond["type"] == "PodScheduled":
            return str(cond.get("message", ""))
    return ""


@check("gpu.resource-advertised", requirements=["gpu_scheduling"])
def test_resource_advertised(cluster: Cluster, kaic_settings: Settings, evidence: Evidence) -> None:
    """GPU nodes advertise the device plugin's resource as allocatable, at least one each."""
    resource = _resource(cluster, kaic_settings)
    nodes = cluster.list_objects("v1", "Node")
    advertised = {n["metadata"]["name"]: allocatable(n, resource) for n in nodes
                  if allocatable(n, resource)}  # fmt: skip
    evidence.observe("resource", resource)
    evidence.observe("allocatable", advertised)
    listed = [n["metadata"]["name"] for n in nodes
              if resource in ((n.get("status") or {}).get("capacity") or {})]  # fmt: skip
    zero = sorted(set(listed) - set(advertised))
    evidence.observe("nodes_with_none_allocatable", zero)
    if not advertised:
        fail(
            expected=f"at least one node with {resource} allocatable",
            observed=f"{resource} is 0 allocatable on every node that lists it ({len(listed)})",
            next_step="the device plugin reports its devices unhealthy or lost them: check its "
            f"pods' logs and kubectl describe node (Capacity vs Allocatable of {resource})",
        )


@check("gpu.pod-lands-on-gpu-node", requirements=["gpu_scheduling"])
def test_pod_lands_on_gpu_node(kube: Kube, kaic_settings: Settings, evidence: Evidence) -> None:
    """A pod asking for 1 GPU is scheduled onto a node that has one."""
    resource = _resource(kube.cluster, kaic_settings)
    kube.apply(_gpu_pod("one-gpu", resource, 1))
    pod = _scheduled_or_unschedulable(kube, "one-gpu")
    node = pod["spec"].get("nodeName")
    capacity = _capacity(kube.cluster, resource)
    evidence.observe("node", node)
    gpu_nodes = [n for n, c in capacity.items() if c]
    if not node:
        fail(
            expected=f"Pod/{kube.namespace}/one-gpu ({resource}: 1) to be scheduled on a GPU node",
            observed=f"not scheduled; scheduler: {_scheduler_message(pod)}",
            next_step=f"kubectl describe pod; GPU nodes: {gpu_nodes}",
        )
    if capacity.get(node, 0) < 1:
        fail(
            expected=f"Pod/{kube.namespace}/one-gpu ({resource}: 1) to be scheduled on a GPU node",
            observed=f"scheduled on {node}, which has no {resource} allocatable",
            next_step=f"{NO_FIT_CHECK}; GPU nodes: {gpu_nodes}",
        )


@check("gpu.oversized-pending", requirements=["gpu_scheduling"])
def test_oversized_pending(kube: Kube, kaic_settings: Settings, evidence: Evidence) -> None:
    """A request larger than any node has stays Pending with Insufficient <resource>."""
    resource = _resource(kube.cluster, kaic_settings)
    count = max(_capacity(kube.cluster, resource).values()) + 1
    kube.apply(_gpu_pod("too-big", resource, count))
    pod = _scheduled_or_unschedulable(kube, "too-big")
    message = _scheduler_message(pod)
    evidence.observe("requested", count)
    evidence.observe("scheduler_message", message)
    expected = (f"Pod/{kube.namespace}/too-big ({resource}: {count}, more than any node) to "
                f"stay Pending with 'Insufficient {resource}'")  # fmt: skip
    placed = pod["spec"].get("nodeName")
    if placed:
        has = _capacity(kube.cluster, resource).get(placed, 0)
        fail(expected=expected, observed=f"scheduled on {placed}, which has {has} {resource}",
             next_step=NO_FIT_CHECK)  # fmt: skip
    if f"Insufficient {resource}" not in message:
        fail(expected=expected, observed=f"Pending, but the scheduler says {message!r}",
             next_step="the nodes' advertised capacity or the scheduler's accounting")  # fmt: skip


@check("gpu.no-oversubscription", requirements=["gpu_scheduling"])
def test_no_oversubscription(kube: Kube, kaic_settings: Settings, evidence: Evidence) -> None:
    """Two pods that together ask for more GPUs than a node has do not both land on it."""
    resource = _resource(kube.cluster, kaic_settings)
    node, count = max(_capacity(kube.cluster, resource).items(), key=lambda kv: kv[1])
    each = count // 2 + 1
    kube.apply(_gpu_pod("first", resource, each, node))
    first = _scheduled_or_unschedulable(kube, "first")
    if not first["spec"].get("nodeName"):
        fail(
            expected=f"Pod/{kube.namespace}/first ({resource}: {each}) to fit on {node} "
            f"({count} allocatable)",
            observed=f"unschedulable: {_scheduler_message(first)}",
            next_step=f"are {resource} on {node} already in use?",
        )
    kube.apply(_gpu_pod("second", resource, each, node))
    second = _scheduled_or_unschedulable(kube, "second")
    evidence.observe("node", node)
    evidence.observe("each", each)
    evidence.observe("second", second["spec"].get("nodeName") or _scheduler_message(second))
    if second["spec"].get("nodeName"):
        fail(
            expected=f"Pod/{kube.namespace}/second to stay Pending: with first it asks for "
            f"{2 * each} {resource} on {node}, which has {count}",
            observed=f"both scheduled on {node}",
            next_step=f"the node over-advertises {resource}, or {NO_FIT_CHECK}",
        )


@check("gpu.taint-respected", requirements=["gpu_scheduling"])
def test_taint_respected(kube: Kube, kaic_settings: Settings, evidence: Evidence) -> None:
    """A pod without the GPU toleration is not placed on a tainted GPU node."""
    resource = _resource(kube.cluster, kaic_settings)
    gpu_nodes = {n for n, c in _capacity(kube.cluster, resource).items() if c}
    tainted = [
        n for n in kube.cluster.list_objects("v1", "Node")
        if n["metadata"]["name"] in gpu_nodes
        and any(t.get("effect") == "NoSchedule" for t in (n.get("spec") or {}).get("taints") or [])
    ]  # fmt: skip
    if not tainted:
        fail(
            expected="the GPU nodes to carry a NoSchedule taint (e.g. nvidia.com/gpu) that keeps "
            "pods asking for no GPU off them",
            observed=f"none of the {len(gpu_nodes)} nodes with {resource} has one",
            next_step="taint them (kubectl taint nodes NODE nvidia.com/gpu=present:NoSchedule, "
            "or the GPU operator's node configuration)",
        )
    node = tainted[0]["metadata"]["name"]
    manifest = pods.pod("intruder", [pods.container(command=PAUSE)], tolerate_gpus=False)
    manifest["spec"]["nodeSelector"] = {"kubernetes.io/hostname": node}
    kube.apply(manifest)
    pod = _scheduled_or_unschedulable(kube, "intruder")
    evidence.observe("node", node)
    evidence.observe("taints", tainted[0]["spec"]["taints"])
    if pod["spec"].get("nodeName"):
        fail(
            expected=f"Pod/{kube.namespace}/intruder (no toleration) to stay off tainted {node}",
            observed=f"scheduled on {pod['spec']['nodeName']}",
            next_step="check the taint's effect and the scheduler's TaintToleration plugin",
        )
