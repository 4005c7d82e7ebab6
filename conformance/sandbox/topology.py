"""The emulated hardware: KWOK nodes, and the DRA objects an example-style driver would publish."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import yaml

from conformance.resources import data_path

DRA_DRIVER = "gpu.example.com"
KWOK_LABEL = ("type", "kwok")
NODE_KIND_LABEL = "kaic.dev/sandbox-node-kind"
GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
# The driver version the emulated host has loaded (what /sys/module/nvidia/version says); the
# probe runtime shows it to probe pods. Labels and ResourceSlices carry the advertised version.
HOST_DRIVER_ANNOTATION = "kaic.dev/sandbox-host-driver-version"
GPU_KINDS = ("device-plugin", "dra")
Obj = dict[str, Any]


@dataclass(frozen=True)
class NodeSpec:
    name: str
    kind: str
    gpus: int = 0
    replicas: int = 1  # time-slicing: each physical GPU advertised this many times
    driver_version: str = ""  # advertised; "" = the topology's gpu.driver_version
    host_driver_version: str = ""  # loaded on the emulated host; "" = the advertised one
    # run by a real kubelet (real_nodes.py) where the sandbox has real nodes, else by KWOK
    real: bool = False

    def advertised_driver(self, topo: dict[str, Any]) -> str:
        return self.driver_version or str(topo["gpu"]["driver_version"])

    def host_driver(self, topo: dict[str, Any]) -> str:
        return self.host_driver_version or self.advertised_driver(topo)


def nvidia_module_version(version: str) -> str:
    """570.124.6 (semver, as DRA publishes it) -> 570.124.06, as the kernel module prints it."""
    parts = version.split(".")
    return ".".join(parts[:2] + [p.zfill(2) for p in parts[2:]])


def load() -> tuple[dict[str, Any], list[NodeSpec]]:
    raw = yaml.safe_load((data_path("fixtures") / "sandbox" / "topology.yaml").read_text())
    nodes = [
        NodeSpec(
            n["name"],
            n["kind"],
            int(n.get("gpus", 0)),
            int(n.get("time_slicing", 1)),
            real=bool(n.get("real", False)),
        )
        for n in raw["nodes"]
    ]
    return raw, nodes


def spec_of(node: Obj, known: dict[str, NodeSpec]) -> NodeSpec | None:
    """The emulated hardware of a node: the topology's entry, or, for a node the autoscaler
    added (not in the topology), what its GPU feature discovery labels say it has."""
    name = node["metadata"]["name"]
    if name in known:
        return known[name]
    labels = node["metadata"].get("labels") or {}
    kind = labels.get(NODE_KIND_LABEL)
    if kind not in GPU_KINDS:
        return None
    replicas = int(labels.get("nvidia.com/gpu.replicas", "1") or 1)
    return NodeSpec(name, kind, int(labels.get("nvidia.com/gpu.count", "0") or 0), replicas)


# What the probe runtime tells host-level components (the GPU exporter) about their node's
# emulated GPUs, as a node's driver would enumerate them.
NODE_GPUS_ENV = "KAIC_EMULATED_NODE_GPUS"


def gpu_uuid(node: str, index: int) -> str:
    return f"GPU-{uuid.uuid5(uuid.NAMESPACE_DNS, f'{node}.{index}.kaic.dev')}"


def node_labels(spec: NodeSpec, topo: dict[str, Any]) -> dict[str, str]:
    """The labels of a node of this kind, less what a kubelet sets itself (hostname, os, arch):
    for GPU nodes, as NVIDIA GPU feature discovery labels them."""
    gpu = topo["gpu"]
    labels = {NODE_KIND_LABEL: spec.kind}
    if spec.kind == "device-plugin":
        driver = spec.advertised_driver(topo)
        labels |= {
            "nvidia.com/gpu.present": "true",
            "nvidia.com/gpu.product": gpu["product"],
            "nvidia.com/gpu.count": str(spec.gpus),
            "nvidia.com/gpu.memory": str(gpu["memory_mib"]),
            "nvidia.com/cuda.driver-version.full": driver,
            "nvidia.com/cuda.driver.major": driver.split(".")[0],
        }
        if spec.replicas > 1:
            labels |= {
                "nvidia.com/gpu.product": f"{gpu['product']}-SHARED",
                "nvidia.com/gpu.sharing-strategy": "time-slicing",
                "nvidia.com/gpu.replicas": str(spec.replicas),
            }
    if spec.kind == "dra":
        labels["kaic.dev/dra-driver"] = DRA_DRIVER
    return labels


def node_taints(spec: NodeSpec) -> list[Obj]:
    return [GPU_TAINT] if spec.kind == "device-plugin" else []


def node_manifest(spec: NodeSpec, topo: dict[str, Any]) -> tuple[Obj, Obj]:
    """The KWOK Node object and its status (capacity/allocatable), applied separately."""
    labels = {
        KWOK_LABEL[0]: KWOK_LABEL[1],
        "kubernetes.io/hostname": spec.name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        **node_labels(spec, topo),
    }
    resources = dict(topo["node_resources"])
    annotations = {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"}
    if spec.kind in GPU_KINDS:
        annotations[HOST_DRIVER_ANNOTATION] = spec.host_driver(topo)
    if spec.kind == "device-plugin":
        resources["nvidia.com/gpu"] = str(spec.gpus * spec.replicas)
    node: Obj = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": spec.name,
            "labels": labels,
            "annotations": annotations,
        },
        "spec": {"taints": node_taints(spec)},
    }
    status: Obj = {"status": {"capacity": resources, "allocatable": resources}}
    return node, status


def device_class(selects_nothing: bool = False) -> Obj:
    expression = f"device.driver == '{DRA_DRIVER}'"
    if selects_nothing:  # a misconfigured class: a model none of the devices is
        expression += f" && device.attributes['{DRA_DRIVER}'].model == 'no-such-gpu'"
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "DeviceClass",
        "metadata": {"name": DRA_DRIVER},
        "spec": {"selectors": [{"cel": {"expression": expression}}]},
    }


def resource_slice(spec: NodeSpec, topo: dict[str, Any]) -> Obj:
    gpu = topo["gpu"]
    devices = [
        {
            "name": f"gpu-{i}",
            "attributes": {
                "index": {"int": i},
                "uuid": {"string": gpu_uuid(spec.name, i)},
                "model": {"string": gpu["product"]},
                "productName": {"string": gpu["product"]},
                "driverVersion": {"version": spec.advertised_driver(topo)},
            },
            "capacity": {"memory": {"value": f"{gpu['memory_mib']}Mi"}},
        }
        for i in range(spec.gpus)
    ]
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceSlice",
        "metadata": {"name": f"{spec.name}-{DRA_DRIVER}"},
        "spec": {
            "driver": DRA_DRIVER,
            "nodeName": spec.name,
            "pool": {"name": spec.name, "generation": 1, "resourceSliceCount": 1},
            "devices": devices,
        },
    }
