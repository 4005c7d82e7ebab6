"""The sandbox's accelerator metrics exporter. It EMULATES HARDWARE TELEMETRY: the sandbox's GPUs
do not exist, so this stands in for NVIDIA's dcgm-exporter on one emulated node and reports the
emulated devices' state in dcgm-exporter's format (metric names, labels, `pod`/`namespace`/
`container` attribution).

What it reports is driven by what really happens in the sandbox: the devices are the node's, from
the sandbox topology; attribution comes from `podresources/<node>.json`, which the probe runtime
writes as the kubelet's PodResources API would list it (what dcgm-exporter reads); utilization is
high while a probe agent runs `burn` on the device (it touches `gpu-load/<node>/<uuid>`), and
memory in use follows. Run by the probe runtime as the pod of a DaemonSet (image
`kaic-sandbox/gpu-exporter`): `python -m conformance.sandbox.gpu_exporter --dir D --node N`.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from conformance.sandbox import topology

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


def holders(directory: Path, node: str) -> dict[str, list[Obj]]:
    """UUID -> the containers holding it (several where the GPU is time-sliced)."""
    try:
        entries: list[Obj] = json.loads((directory / "podresources" / f"{node}.json").read_text())
    except (OSError, ValueError):
        return {}
    out: dict[str, list[Obj]] = {}
    for entry in entries:
        for uuid in entry.get("devices") or []:
            out.setdefault(uuid, []).append(entry)
    return out


def loaded(directory: Path, node: str, uuid: str) -> bool:
    path = directory / "gpu-load" / node / uuid
    try:
        return time.time() - path.stat().st_mtime < LOAD_FRESH_S
    except OSError:
        return False


def metrics(
    directory: Path,
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
    held_by = holders(directory, node) if pod_mapping else {}
    for index, uuid in devices(node):
        busy = frozen or loaded(directory, node, uuid)
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
    parser.add_argument("--dir", type=Path, required=True, help="the sandbox's directory")
    parser.add_argument("--node", default=os.environ.get("NODE_NAME", ""))
    parser.add_argument("--host", default=os.environ.get("POD_IP") or "0.0.0.0")
    parser.add_argument("--port", type=int, default=PORT)
    parser.add_argument("--no-memory", action="store_true", help="leave out the FB metrics")
    parser.add_argument("--no-pod-mapping", action="store_true", help="no pod/namespace labels")
    parser.add_argument("--frozen", action="store_true", help="utilization stuck at loaded")
    args = parser.parse_args()

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
                    args.dir,
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
