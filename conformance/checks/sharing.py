"""GPU sharing and virtualized accelerators: what a node offers beyond one pod per GPU really
lets more pods use it. Not applicable, with the reason, where nothing is offered."""

from __future__ import annotations

from conformance.checks._accelerators import (
    HOLD,
    REPLICAS_LABEL,
    STRATEGY_LABEL,
    Obj,
    allocatable,
    running_report,
)
from conformance.checks.registry import check
from conformance.cluster import Cluster
from conformance.evidence import Evidence
from conformance.failures import fail, not_applicable
from conformance.fixtures import Kube
from conformance.probes import pods

# NVIDIA GPU feature discovery's labels for the physical count and vGPU.
COUNT_LABEL = "nvidia.com/gpu.count"
VGPU_LABEL = "nvidia.com/vgpu.present"
# With renameByDefault the shared replicas are advertised under their own name.
SHARED_RESOURCES = ("nvidia.com/gpu.shared", "nvidia.com/gpu")
SCHEDULE_TIMEOUT_S = 120


def _labels(node: Obj) -> dict[str, str]:
    return dict(node["metadata"].get("labels") or {})


def time_sliced_nodes(cluster: Cluster) -> list[Obj]:
    return [
        n for n in cluster.list_objects("v1", "Node")
        if _labels(n).get(STRATEGY_LABEL) == "time-slicing"
        or int(_labels(n).get(REPLICAS_LABEL, "1") or 1) > 1
    ]  # fmt: skip


def _scheduler_messages(found: list[Obj]) -> dict[str, str]:
    return {
        p["metadata"]["name"]: str(c.get("message", ""))
        for p in found
        for c in (p.get("status") or {}).get("conditions") or []
        if c["type"] == "PodScheduled" and c.get("reason") == "Unschedulable"
    }


def hold_together(kube: Kube, names: list[str], node: str, limits: dict[str, str]) -> list[Obj]:
    """Create one holding probe pod per name on `node`; wait until all run, or one cannot be
    scheduled (a failure naming the pods and the scheduler's reason)."""
    for name in names:
        manifest = pods.pod(name, [pods.container(command=HOLD, limits=limits)])
        manifest["spec"]["nodeSelector"] = {"kubernetes.io/hostname": node}
        kube.apply(manifest)

    def decided(found: list[Obj]) -> list[Obj] | None:
        mine = [p for p in found if p["metadata"]["name"] in names]
        running = [p for p in mine if (p.get("status") or {}).get("phase") == "Running"]
        if len(running) == len(names) or _scheduler_messages(mine):
            return mine
        return None

    found = kube.cluster.wait_for(
        "v1", "Pod", decided, namespace=kube.namespace, timeout_s=SCHEDULE_TIMEOUT_S,
        awaiting=f"pods {', '.join(names)} to run together on {node}",
    )  # fmt: skip
    pending = _scheduler_messages(found)
    if pending:
        running = len(found) - len(pending)
        fail(
            expected=f"{len(names)} pods, each asking {limits}, to run together on {node}",
            observed=f"{running} running; "
            + "; ".join(f"Pod/{kube.namespace}/{n} Pending: {m}" for n, m in pending.items()),
            next_step=f"kubectl describe node {node}: is the sharing configuration applied "
            "(the device plugin's config, its allocatable count)?",
        )
    return found


@check("sharing.time-slicing", requirements=["gpu_sharing"])
def test_time_slicing(kube: Kube, evidence: Evidence) -> None:
    """A time-sliced node runs more GPU pods at once than it has physical GPUs, on those GPUs."""
    nodes = time_sliced_nodes(kube.cluster)
    if not nodes:
        not_applicable(
            "no-gpu-sharing",
            f"no GPU sharing offered: no node labelled {STRATEGY_LABEL}=time-slicing or with "
            f"{REPLICAS_LABEL} > 1 (MIG partitions are not checked yet)",
        )
    node = nodes[0]
    name, labels = node["metadata"]["name"], _labels(node)
    physical = int(labels.get(COUNT_LABEL, "0") or 0)
    replicas = int(labels.get(REPLICAS_LABEL, "1") or 1)
    resource = next((r for r in SHARED_RESOURCES if allocatable(node, r)), SHARED_RESOURCES[-1])
    evidence.observe("node", name)
    evidence.observe("offered", {"physical": physical, "replicas": replicas,
                                 resource: allocatable(node, resource)})  # fmt: skip
    if physical < 1:
        fail(
            expected=f"Node/{name} (time-slicing) to say how many physical GPUs it has "
            f"({COUNT_LABEL})",
            observed=f"labels {sorted(k for k in labels if k.startswith('nvidia.com/'))}",
            next_step="deploy GPU feature discovery alongside the device plugin",
        )
    names = [f"shared-{i}" for i in range(physical + 1)]
    hold_together(kube, names, name, {resource: "1"})
    seen = {n: running_report(kube, n).get("visible_devices") or [] for n in names}
    evidence.observe("seen", seen)
    blind = [n for n, ids in seen.items() if len(ids) != 1]
    if blind:
        fail(
            expected=f"each of {len(names)} pods sharing Node/{name} to see one GPU",
            observed="; ".join(f"Pod/{kube.namespace}/{n} saw {seen[n]}" for n in blind),
            next_step="check the device plugin's injection for shared replicas",
        )
    distinct = {ids[0] for ids in seen.values()}
    evidence.observe("physical_gpus_used", len(distinct))
    if len(distinct) > physical:
        fail(
            expected=f"{len(names)} pods on Node/{name} to share its {physical} physical GPU(s)",
            observed=f"they saw {len(distinct)} different GPUs: {sorted(distinct)}",
            next_step=f"the node has more GPUs than {COUNT_LABEL} says, or replicas are not "
            "mapped to physical GPUs",
        )


@check("virtualized.vgpu-exposed", requirements=["virtualized_accelerator"])
def test_vgpu_exposed(kube: Kube, evidence: Evidence) -> None:
    """A vGPU node's accelerators are schedulable and a pod sees the one it asked for."""
    vgpu = [n for n in kube.cluster.list_objects("v1", "Node")
            if _labels(n).get(VGPU_LABEL) == "true"]  # fmt: skip
    if not vgpu:
        not_applicable(
            "no-virtualized-accelerators",
            f"no virtualized accelerators offered: no node labelled {VGPU_LABEL}=true",
        )
    node = vgpu[0]
    name = node["metadata"]["name"]
    resource = next((r for r in SHARED_RESOURCES[::-1] if allocatable(node, r)), "")
    evidence.observe("node", name)
    if not resource:
        fail(
            expected=f"Node/{name} (vGPU present) to advertise vGPUs as a schedulable resource",
            observed=f"allocatable: {(node.get('status') or {}).get('allocatable')}",
            next_step="deploy the device plugin for the vGPU guest driver",
        )
    hold_together(kube, ["vgpu"], name, {resource: "1"})
    seen = running_report(kube, "vgpu").get("visible_devices") or []
    evidence.observe("seen", seen)
    if len(seen) != 1:
        fail(
            expected=f"Pod/{kube.namespace}/vgpu on {name} to see the 1 vGPU it asked for",
            observed=f"it saw {seen}",
            next_step="check the device plugin's injection on the vGPU node",
        )
