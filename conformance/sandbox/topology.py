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
Obj = dict[str, Any]


@dataclass(frozen=True)
class NodeSpec:
    name: str
    kind: str
    gpus: int = 0


def load() -> tuple[dict[str, Any], list[NodeSpec]]:
    raw = yaml.safe_load((data_path("fixtures") / "sandbox" / "topology.yaml").read_text())
    nodes = [NodeSpec(n["name"], n["kind"], int(n.get("gpus", 0))) for n in raw["nodes"]]
    return raw, nodes


def gpu_uuid(node: str, index: int) -> str:
    return f"GPU-{uuid.uuid5(uuid.NAMESPACE_DNS, f'{node}.{index}.kaic.dev')}"


def node_manifest(spec: NodeSpec, topo: dict[str, Any]) -> tuple[Obj, Obj]:
    """The Node object and its status (capacity/allocatable), applied separately."""
    gpu = topo["gpu"]
    labels = {
        KWOK_LABEL[0]: KWOK_LABEL[1],
        NODE_KIND_LABEL: spec.kind,
        "kubernetes.io/hostname": spec.name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
    }
    resources = dict(topo["node_resources"])
    taints: list[Obj] = []
    if spec.kind == "device-plugin":
        labels |= {
            "nvidia.com/gpu.present": "true",
            "nvidia.com/gpu.product": gpu["product"],
            "nvidia.com/gpu.count": str(spec.gpus),
            "nvidia.com/gpu.memory": str(gpu["memory_mib"]),
            "nvidia.com/cuda.driver-version.full": gpu["driver_version"],
            "nvidia.com/cuda.driver.major": gpu["driver_version"].split(".")[0],
        }
        resources["nvidia.com/gpu"] = str(spec.gpus)
        taints.append(GPU_TAINT)
    if spec.kind == "dra":
        labels["kaic.dev/dra-driver"] = DRA_DRIVER
    node: Obj = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": spec.name,
            "labels": labels,
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
        },
        "spec": {"taints": taints},
    }
    status: Obj = {"status": {"capacity": resources, "allocatable": resources}}
    return node, status


def device_class() -> Obj:
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "DeviceClass",
        "metadata": {"name": DRA_DRIVER},
        "spec": {"selectors": [{"cel": {"expression": f"device.driver == '{DRA_DRIVER}'"}}]},
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
                "driverVersion": {"version": gpu["driver_version"]},
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
