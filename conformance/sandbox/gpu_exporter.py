"""The sandbox's accelerator metrics exporter. It EMULATES HARDWARE TELEMETRY: the sandbox's GPUs
do not exist, so this stands in for NVIDIA's dcgm-exporter on one emulated node and reports the
emulated devices' state in dcgm-exporter's format (metric names, labels, `pod`/`namespace`/
`container` attribution).

What it reports is driven by what really happens in the sandbox: the devices are the node's, from
the sandbox topology; utilization is high while a probe agent runs `burn` on the device (it
touches a file named for the GPU's UUID), and memory in use follows. Attribution comes from the
kubelet's PodResources API, which dcgm-exporter reads too. Two sources, one per kind of node:

- a KWOK node (`--dir D`): the probe runtime runs it as the pod of a DaemonSet (image
  `kaic-sandbox/gpu-exporter`) and writes `D/podresources/<node>.json` as the PodResources API
  would list it; the load marks are in `D/gpu-load/<node>/`;
- a real node (`--podresources SOCKET --load-dir DIR`): its kubelet runs it from the probe image
  with the node's PodResources socket and the emulated GPUs' load folder as hostPath volumes.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from conformance.sandbox import podresources, topology

Obj = dict[str, Any]
PORT = 9400
IDLE_MIB = 0
HELD_MIB = 512  # a context on the device
LOADED_UTIL = 97
LOAD_FRESH_S = 5.0  # `burn` refreshes its file every second


@functools.cache
def _topology() -> tuple[dict[str, Any], tuple[topology.NodeSpec, ...]]:
    topo, nodes = topology.load()
    return topo, tuple(nodes)


def devices(node: str) -> list[tuple[int, str]]:
    """(index, UUID) of each physical GPU of `node`: as the probe runtime (the emulated host)
    says, else as the topology says (a node the autoscaler added is only in the former)."""
    _topo, nodes = _topology()
    spec = next((n for n in nodes if n.name == node), None)
    count = os.environ.get(topology.NODE_GPUS_ENV) or (spec.gpus if spec else 0)
    return [(i, topology.gpu_uuid(node, i)) for i in range(int(count))]


@dataclass(frozen=True)
class Source:
    """Where the exporter learns which containers hold the node's GPUs, and where their load
    marks are."""

    entries: Callable[[], list[Obj]]  # as PodResources lists them: pod, namespace, container
    load_dir: Path

    def holders(self) -> dict[str, list[Obj]]:
        """UUID -> the containers holding it (several where the GPU is time-sliced: the device
        plugin names a replica `<uuid>::<n>`)."""
        out: dict[str, list[Obj]] = {}
        for entry in self.entries():
            for device in entry.get("devices") or []:
                out.setdefault(str(device).split("::", 1)[0], []).append(entry)
        return out

    def loaded(self, uuid: str) -> bool:
        try:
            return time.time() - (self.load_dir / uuid).stat().st_mtime < LOAD_FRESH_S
        except OSError:
            return False


def probe_runtime_source(directory: Path, node: str) -> Source:
    def entries() -> list[Obj]:
        try:
            found: list[Obj] = json.loads((directory / "podresources" / f"{node}.json").read_text())
        except (OSError, ValueError):
            return []
        return found

    return Source(entries, directory / "gpu-load" / node)


def kubelet_source(socket: str, load_dir: Path) -> Source:
    def entries() -> list[Obj]:
        return podresources.list_devices(socket, "nvidia.com/gpu")

    return Source(entries, load_dir)


def metrics(
    source: Source,
    node: str,
    *,
    with_memory: bool = True,
    pod_mapping: bool = True,
    frozen: bool = False,
) -> str:
    topo, _nodes = _topology()
    gpu = topo["gpu"]
    model = str(gpu["product"]).replace("-", " ")
    total = int(gpu["memory_mib"])
    driver = str(gpu["driver_version"])
    families: dict[str, tuple[str, list[str]]] = {
        "DCGM_FI_DEV_GPU_UTIL": ("GPU utilization (in %).", []),
        "DCGM_FI_DEV_FB_USED": ("Framebuffer memory used (in MiB).", []),
        "DCGM_FI_DEV_FB_FREE": ("Framebuffer memory free (in MiB).", []),
        "DCGM_FI_DEV_GPU_TEMP": ("GPU temperature (in C).", []),
        "DCGM_FI_DEV_POWER_USAGE": ("Power draw (in W).", []),
    }
    if not with_memory:  # the fault `exporter-no-memory`: a collectors file without FB fields
        families.pop("DCGM_FI_DEV_FB_USED")
        families.pop("DCGM_FI_DEV_FB_FREE")
    # the faults `exporter-no-pod-mapping` (no kubelet pod-resources mapping) and
    # `exporter-utilization-frozen` (stale readings: every device reads as loaded, always)
    held_by = source.holders() if pod_mapping else {}
    for index, uuid in devices(node):
        busy = frozen or source.loaded(uuid)
        util = LOADED_UTIL if busy else 0
        used = IDLE_MIB + (HELD_MIB if held_by.get(uuid) else 0) + (total // 2 if busy else 0)
        values = {
            "DCGM_FI_DEV_GPU_UTIL": util, "DCGM_FI_DEV_FB_USED": used,
            "DCGM_FI_DEV_FB_FREE": total - used, "DCGM_FI_DEV_GPU_TEMP": 34 + util // 3,
            "DCGM_FI_DEV_POWER_USAGE": round(72.5 + util * 6.1, 3),
        }  # fmt: skip
        base = (f'gpu="{index}",UUID="{uuid}",pci_bus_id="00000000:{index + 0x18:02X}:00.0",'
                f'device="nvidia{index}",modelName="{model}",Hostname="{node}",'
                f'DCGM_FI_DRIVER_VERSION="{driver}"')  # fmt: skip
        owners = held_by.get(uuid) or [{}]
        for owner in owners:
            labels = base
            if owner:
                labels += (f',container="{owner["container"]}",namespace="{owner["namespace"]}",'
                           f'pod="{owner["pod"]}"')  # fmt: skip
            for name in families:
                families[name][1].append(f"{name}{{{labels}}} {values[name]}")
    lines = []
    for name, (help_text, samples) in families.items():
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", *samples]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dir", type=Path, help="the sandbox's directory (on a KWOK node)")
    parser.add_argument("--podresources", help="the kubelet's PodResources socket (real node)")
    parser.add_argument("--load-dir", type=Path, help="the emulated GPUs' load marks (real node)")
    parser.add_argument("--node", default=os.environ.get("NODE_NAME", ""))
    parser.add_argument("--host", default=os.environ.get("POD_IP") or "0.0.0.0")
    parser.add_argument("--port", type=int, default=PORT)
    parser.add_argument("--no-memory", action="store_true", help="leave out the FB metrics")
    parser.add_argument("--no-pod-mapping", action="store_true", help="no pod/namespace labels")
    parser.add_argument("--frozen", action="store_true", help="utilization stuck at loaded")
    args = parser.parse_args()
    if args.dir:
        source = probe_runtime_source(args.dir, args.node)
    elif args.podresources and args.load_dir:
        source = kubelet_source(args.podresources, args.load_dir)
    else:
        parser.error("give --dir, or --podresources and --load-dir")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *log_args: Any) -> None:
            pass

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path not in ("/metrics", "/health"):
                self.send_error(404)
                return
            body = (
                b"ok\n"
                if path == "/health"
                else metrics(
                    source,
                    args.node,
                    with_memory=not args.no_memory,
                    pod_mapping=not args.no_pod_mapping,
                    frozen=args.frozen,
                ).encode()
            )
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer((args.host, args.port), Handler)
    print(f"emulated dcgm-exporter for {args.node} on {args.host}:{args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
