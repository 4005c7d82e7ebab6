"""`devices`: what accelerators this container can see, from every angle the runtime offers."""

from __future__ import annotations

import glob
import os
import re
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
# Where a container sees the host's loaded kernel driver: sysfs (visible in every container on the
# host) and, for NVIDIA, the /proc file the container toolkit exposes. Per driver, first found wins.
DRIVER_VERSION_FILES = {
    "nvidia": ("/sys/module/nvidia/version", "/proc/driver/nvidia/version"),
    "amdgpu": ("/sys/module/amdgpu/version",),
}
_PROC_NVIDIA = re.compile(r"Kernel Module\s+(?:for \S+\s+)?(\d+(?:\.\d+)+)")
# Emulation hook: the sandbox's probe runtime points this at a per-container tree that stands in
# for the host's /dev, /sys and /proc (it has no GPUs). Unset in real pods.
ROOT_ENV = "KAIC_AGENT_ROOT"


def device_nodes(root: str = "/") -> list[str]:
    found: set[str] = set()
    for pattern in DEVICE_NODE_PATTERNS:
        for path in glob.glob(os.path.join(root, pattern.lstrip("/"))):
            found.add("/" + os.path.relpath(path, root))
    return sorted(found)


def driver_versions(root: str = "/") -> dict[str, str]:
    """Kernel driver versions this container can read, by driver ("nvidia": "570.124.06")."""
    found: dict[str, str] = {}
    for driver, paths in DRIVER_VERSION_FILES.items():
        for path in paths:
            try:
                text = Path(root, path.lstrip("/")).read_text(errors="replace")
            except OSError:
                continue
            match = _PROC_NVIDIA.search(text) if path.startswith("/proc") else None
            version = match.group(1) if match else text.strip().split()[0] if text.strip() else ""
            if version:
                found[driver] = version
                break
    return found


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
    root: str | None = None,
    environ: Mapping[str, str] | None = None,
    read_nvml: Callable[[], dict[str, Any]] = nvml.read,
) -> dict[str, Any]:
    environ = os.environ if environ is None else environ
    root = root or environ.get(ROOT_ENV) or "/"
    env = device_env(environ)
    nodes = device_nodes(root)
    return {
        "hostname": os.uname().nodename,
        "device_nodes": nodes,
        "gpu_device_nodes": [n for n in nodes if is_gpu_node(n)],
        "env": env,
        "visible_devices": visible_devices(env),
        "drivers": driver_versions(root),
        "nvml": read_nvml(),
    }
