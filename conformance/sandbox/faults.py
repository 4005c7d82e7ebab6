"""The sandbox's faults: what each one changes in the running cluster, and the node objects they
shape. Applied at start (`kaic sandbox up --break`) or to a running sandbox (`kaic sandbox break`,
undone by `kaic sandbox mend`, see live_faults.py); docs/sandbox.md lists them."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import yaml

from conformance.resources import data_path
from conformance.sandbox import topology

Obj = dict[str, Any]


@dataclass(frozen=True)
class Fault:
    summary: str
    # What a running sandbox redoes to apply or remove it (see live_faults.py).
    realized_by: str
    # The component it changes; a sandbox started without it cannot have the fault.
    needs: str = ""


FAULTS: dict[str, Fault] = {
    "device-plugin-no-devices": Fault(
        "device-plugin nodes advertise GPUs; their pods see none", "nodes"),
    "device-plugin-shares-devices": Fault(
        "the device plugin hands the same GPUs to every pod that asks (in-use ones too)",
        "nodes"),
    "device-plugin-unhealthy": Fault(
        "the device plugin reports every GPU unhealthy: nvidia.com/gpu allocatable 0", "nodes"),
    "dra-class-selects-nothing": Fault(
        "the DeviceClass's selector matches none of the published devices", "nodes",
        "dra-driver"),
    "gpu-nodes-untainted": Fault("the GPU nodes carry no NoSchedule taint", "nodes"),
    "gpu-visible-without-request": Fault(
        "pods on GPU nodes that asked for none see them all", "nodes"),
    "lws-group-restart": Fault("LeaderWorkerSets never recreate their group", "policy", "lws"),
    "endpoint-picker-load-blind": Fault(
        "endpoint pickers pick at random: blind to queues, KV cache and prefixes", "policy",
        "gateway"),
    "routes-ignore-weights": Fault(
        "every new HTTPRoute's backends get equal weights: traffic splits evenly", "policy",
        "gateway"),
    "routes-ignore-header-matches": Fault(
        "every new HTTPRoute matches on paths only: header matches are dropped", "policy",
        "gateway"),
    "routes-strip-prefill-header": Fault(
        "every new HTTPRoute drops x-prefiller-host-port: decode pods never learn their prefill "
        "pod", "policy", "gateway"),
    "lws-webhook-down": Fault("LWS webhooks registered, nothing serving them", "lws", "lws"),
    "kueue-no-wait-for-pods-ready": Fault(
        "Kueue without waitForPodsReady: no all-or-nothing", "kueue", "kueue"),
    "driver-version-mismatch": Fault(
        "GPU hosts run another driver than their labels/slices say", "nodes"),
    "driver-version-skew": Fault(
        "the last GPU node of each kind runs (and says) another driver", "nodes"),
    "time-slicing-no-replicas": Fault(
        "labelled time-slicing, but each GPU advertised once", "nodes"),
    "prometheus-no-workload-scrape": Fault(
        "Prometheus runs, but scrapes only itself", "prometheus", "prometheus"),
    "adapter-no-vllm-rule": Fault(
        "prometheus-adapter serves custom metrics, none of vLLM's", "adapter",
        "prometheus-adapter"),
    "exporter-no-memory": Fault(
        "the GPU exporter reports no memory metrics", "exporter", "accelerator-exporter"),
    "exporter-no-pod-mapping": Fault(
        "the GPU exporter does not say which pod holds a device", "exporter",
        "accelerator-exporter"),
    "exporter-utilization-frozen": Fault(
        "the GPU exporter's utilization is stuck (every device reads as loaded)", "exporter",
        "accelerator-exporter"),
    "scheduler-ignores-resource-fit": Fault(
        "the scheduler's profile skips the resource-fit filter: pods land where their GPUs do "
        "not fit", "scheduler"),
    "endpoint-picker-down": Fault(
        "endpoint pickers' pods look Ready, but no picker runs", "nodes"),
    "kuberay-operator-down": Fault(
        "KubeRay's operator scaled to 0: no controller, its webhook unserved", "kuberay",
        "kuberay"),
    "kuberay-watches-own-namespace": Fault(
        "KubeRay's operator reconciles only ray-system; its webhook answers everywhere",
        "kuberay", "kuberay"),
    "autoscaler-no-growth": Fault(
        "the autoscaler's GPU NodePool is limited to 0 GPUs: it can add no node",
        "autoscaler", "autoscaler"),
    "autoscaler-no-scale-down": Fault(
        "the autoscaler's GPU NodePool has a disruption budget of 0 nodes: it never removes one",
        "autoscaler", "autoscaler"),
}  # fmt: skip
# The driver version the driver faults put on nodes (older than the topology's).
OTHER_DRIVER = "535.183.1"
# Faults the probe runtime makes real on the nodes they concern (a node label tells it); they
# apply to pods started after the label is set.
NODE_FAULTS = {
    "device-plugin-no-devices": ("device-plugin",),
    "device-plugin-shares-devices": ("device-plugin",),
    "gpu-visible-without-request": ("device-plugin", "dra"),
    "endpoint-picker-down": ("cpu", "device-plugin", "dra"),
}


def policy_docs(fault: str) -> list[Obj]:
    """The admission objects of a fault made by policy (fixtures/sandbox/faults/<fault>.yaml)."""
    path = data_path("fixtures") / "sandbox" / "faults" / f"{fault}.yaml"
    return [d for d in yaml.safe_load_all(path.read_text()) if d] if path.exists() else []


def node_specs(
    nodes: Sequence[topology.NodeSpec], breaks: Sequence[str]
) -> list[topology.NodeSpec]:
    """The topology's nodes with the driver faults applied (what is loaded vs advertised)."""
    out = list(nodes)
    for i, spec in enumerate(out):
        if spec.kind not in topology.GPU_KINDS:
            continue
        if "driver-version-mismatch" in breaks:
            out[i] = spec = replace(spec, host_driver_version=OTHER_DRIVER)
        last = not any(n.kind == spec.kind for n in out[i + 1 :])
        if "driver-version-skew" in breaks and last:
            out[i] = replace(spec, driver_version=OTHER_DRIVER, host_driver_version=OTHER_DRIVER)
    return out


# Faults a real GPU node's emulated device plugin and container runtime make themselves (they
# read them from a file).
PLUGIN_FAULTS = ("device-plugin-no-devices", "device-plugin-shares-devices",
                 "device-plugin-unhealthy", "gpu-visible-without-request",
                 "time-slicing-no-replicas")  # fmt: skip


def fault_labels(spec: topology.NodeSpec, breaks: Sequence[str]) -> dict[str, str]:
    """`faults.kaic.dev/<fault>` for the faults the node's runtime makes (see NODE_FAULTS)."""
    return {f"faults.kaic.dev/{f}": "true" for f in breaks if spec.kind in NODE_FAULTS.get(f, ())}


def taints(spec: topology.NodeSpec, breaks: Sequence[str]) -> list[Obj]:
    found = topology.node_taints(spec)
    return [t for t in found if t != topology.GPU_TAINT or "gpu-nodes-untainted" not in breaks]


def plugin_faults(spec: topology.NodeSpec, breaks: Sequence[str]) -> list[str]:
    return [f for f in breaks if f in PLUGIN_FAULTS and spec.kind == "device-plugin"]


def node_objects(
    spec: topology.NodeSpec, topo: dict[str, Any], breaks: Sequence[str]
) -> tuple[Obj, Obj]:
    node, status = topology.node_manifest(spec, topo)
    node["metadata"]["labels"] |= fault_labels(spec, breaks)
    node["spec"]["taints"] = taints(spec, breaks)
    if "device-plugin-unhealthy" in breaks and "nvidia.com/gpu" in status["status"]["capacity"]:
        # capacity stays; a plugin that marks its devices unhealthy advertises none allocatable
        status["status"]["allocatable"] = {**status["status"]["allocatable"], "nvidia.com/gpu": "0"}
    if "time-slicing-no-replicas" in breaks and spec.replicas > 1:
        # the labels still promise replicas, the device plugin advertises each GPU once
        for resources in status["status"].values():
            resources["nvidia.com/gpu"] = str(spec.gpus)
    return node, status


def cluster_objects(
    breaks: Sequence[str], with_dra: bool, skip: Collection[str] = ()
) -> Iterable[tuple[Obj, bool]]:
    """Every KWOK node object (and its status, flagged True) and ResourceSlice, faults applied;
    not the nodes in `skip`, which a real kubelet registers."""
    topo, loaded = topology.load()
    for spec in node_specs(loaded, breaks):
        if spec.name in skip:
            continue
        node, status = node_objects(spec, topo, breaks)
        yield node, False
        yield {"apiVersion": "v1", "kind": "Node", "metadata": node["metadata"], **status}, True
        if with_dra and spec.kind == "dra":
            yield topology.resource_slice(spec, topo), False
