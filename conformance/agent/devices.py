"""`devices`: what accelerators this container can see, from every angle the runtime offers."""

from __future__ import annotations

import glob
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from conformance.agent import nvml

# Device nodes by vendor: NVIDIA GPUs and control nodes, AMD/Intel render nodes and AMD's KFD.
DEVICE_NODE_PATTERNS = (
    "/dev/nvidia[0-9]*",
    "/dev/nvidiactl",
    "/dev/nvidia-uvm",
    "/dev/nvidia-caps/*",
    "/dev/dri/renderD*",
    "/dev/kfd",
    "/dev/accel/accel*",
)
# Environment the device plugins and DRA drivers inject.
ENV_NAMES = (
    "NVIDIA_VISIBLE_DEVICES",
    "CUDA_VISIBLE_DEVICES",
    "AMD_VISIBLE_DEVICES",
    "ROCR_VISIBLE_DEVICES",
    "HIP_VISIBLE_DEVICES",
)
ENV_PREFIXES = ("GPU_DEVICE_",)
NONE_VALUES = {"", "void", "none"}


def device_nodes(root: str = "/") -> list[str]:
    found: set[str] = set()
    for pattern in DEVICE_NODE_PATTERNS:
        for path in glob.glob(os.path.join(root, pattern.lstrip("/"))):
            found.add("/" + os.path.relpath(path, root))
    return sorted(found)


def is_gpu_node(path: str) -> bool:
    """One node per GPU (/dev/nvidia0, /dev/dri/renderD128), not control nodes."""
    name = Path(path).name
    return name.startswith(("nvidia", "renderD")) and name[-1:].isdigit()


def device_env(environ: Mapping[str, str]) -> dict[str, str]:
    return {
        k: v for k, v in sorted(environ.items()) if k in ENV_NAMES or k.startswith(ENV_PREFIXES)
    }


def visible_devices(env: Mapping[str, str]) -> list[str]:
    """Device ids the runtime says this container got (UUIDs, indices or DRA device names)."""
    ids: list[str] = []
    for name in ("NVIDIA_VISIBLE_DEVICES", "AMD_VISIBLE_DEVICES"):
        value = env.get(name, "").strip()
        if value.lower() not in NONE_VALUES and value != "all":
            ids.extend(v.strip() for v in value.split(",") if v.strip())
    ids.extend(v for k, v in env.items() if k.startswith("GPU_DEVICE_"))
    return ids


def report(
    root: str = "/",
    environ: Mapping[str, str] | None = None,
    read_nvml: Callable[[], dict[str, Any]] = nvml.read,
) -> dict[str, Any]:
    env = device_env(os.environ if environ is None else environ)
    nodes = device_nodes(root)
    return {
        "hostname": os.uname().nodename,
        "device_nodes": nodes,
        "gpu_device_nodes": [n for n in nodes if is_gpu_node(n)],
        "env": env,
        "visible_devices": visible_devices(env),
        "nvml": read_nvml(),
    }
