"""Accelerator metrics exporters: finding them (NVIDIA dcgm-exporter, AMD device-metrics-exporter,
or `--metrics-endpoint`), scraping them through the API server's proxy, and reading their text
format with a real Prometheus parser into one record per device, whichever vendor's names."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families

from conformance.cluster import Cluster, ProxyTarget
from conformance.failures import fail
from conformance.settings import Settings

Obj = dict[str, Any]
# label selector -> vendor, default port
EXPORTER_SELECTORS = {
    "app=nvidia-dcgm-exporter": ("nvidia", 9400),
    "app.kubernetes.io/name=dcgm-exporter": ("nvidia", 9400),
    "app=dcgm-exporter": ("nvidia", 9400),
    "app.kubernetes.io/name=device-metrics-exporter": ("amd", 5000),
    "app=amd-device-metrics-exporter": ("amd", 5000),
}
UTILIZATION = ("DCGM_FI_DEV_GPU_UTIL", "gpu_gfx_activity")
MEMORY_USED = ("DCGM_FI_DEV_FB_USED", "gpu_used_vram")
MEMORY_OTHER = ("DCGM_FI_DEV_FB_FREE", "DCGM_FI_DEV_FB_TOTAL", "gpu_total_vram", "gpu_free_vram")
TEMPERATURE = ("DCGM_FI_DEV_GPU_TEMP", "gpu_junction_temperature", "gpu_edge_temperature")
POWER = ("DCGM_FI_DEV_POWER_USAGE", "gpu_package_power", "gpu_power_usage")
INTERCONNECT_PREFIXES = ("DCGM_FI_PROF_NVLINK", "DCGM_FI_DEV_NVLINK", "xgmi_", "gpu_xgmi")
DEVICE_LABELS = ("UUID", "gpu_uuid", "uuid", "gpu", "gpu_id")
NODE_LABELS = ("Hostname", "hostname", "node", "kubernetes_node")


@dataclass(frozen=True)
class Exporter:
    where: str  # how the report names it
    node: str  # the node it runs on ("" for an endpoint given by URL)
    target: ProxyTarget | None = None
    url: str = ""

    def scrape(self, cluster: Cluster) -> str:
        if self.target is not None:
            reply = cluster.proxy("GET", self.target, "/metrics", timeout=30)
            status, text = reply.status, reply.text
        else:
            response = requests.get(self.url, timeout=30)
            status, text = response.status_code, response.text
        if status != 200:
            fail(
                expected=f"the accelerator metrics exporter {self.where} to answer /metrics",
                observed=f"HTTP {status}: {text[:200]!r}",
                next_step="check the exporter's pod and logs",
            )
        return text


def _running(pod: Obj) -> bool:
    """Running is enough: what counts is whether it answers (readiness may lag a probe)."""
    status = pod.get("status") or {}
    return status.get("phase") == "Running" and bool(status.get("podIP"))


def _port(pod: Obj, default: int) -> int:
    for container in pod["spec"].get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") == "metrics":
                return int(port["containerPort"])
    return default


def find_exporters(cluster: Cluster, settings: Settings) -> list[Exporter]:
    """Every running exporter pod (one per node, as DaemonSets run them), or the given endpoint."""
    if settings.metrics_endpoint:
        return [Exporter(settings.metrics_endpoint, "", url=settings.metrics_endpoint)]
    found: dict[tuple[str, str], Exporter] = {}
    for selector, (_vendor, default_port) in EXPORTER_SELECTORS.items():
        for pod in cluster.list_objects("v1", "Pod", label_selector=selector):
            meta = pod["metadata"]
            if not _running(pod) or (meta["namespace"], meta["name"]) in found:
                continue
            target = ProxyTarget("pods", meta["namespace"], meta["name"], _port(pod, default_port))
            found[(meta["namespace"], meta["name"])] = Exporter(
                str(target), pod["spec"].get("nodeName", ""), target=target
            )
    if not found:
        fail(
            expected="an accelerator metrics exporter (NVIDIA dcgm-exporter or AMD "
            "device-metrics-exporter, found by its pods' labels) or one given with "
            "--metrics-endpoint",
            observed=f"no running pod labelled {' or '.join(EXPORTER_SELECTORS)}",
            next_step="deploy the vendor's exporter (the GPU operator's dcgm-exporter, AMD's "
            "device-metrics-exporter) on the accelerator nodes",
        )
    return sorted(found.values(), key=lambda e: (e.node, e.where))


@dataclass
class Device:
    node: str
    device: str
    utilization: float | None = None
    memory_used: float | None = None
    memory_other: dict[str, float] = field(default_factory=dict)
    temperature: float | None = None
    power: float | None = None
    interconnect: dict[str, float] = field(default_factory=dict)
    pods: set[tuple[str, str]] = field(default_factory=set)  # (namespace, pod)

    def summary(self) -> Obj:
        return {
            "utilization": self.utilization, "memory_used": self.memory_used,
            **self.memory_other, "temperature": self.temperature, "power": self.power,
            **({"interconnect": self.interconnect} if self.interconnect else {}),
            **({"pods": sorted("/".join(p) for p in self.pods)} if self.pods else {}),
        }  # fmt: skip


def _first(labels: dict[str, str], names: tuple[str, ...]) -> str:
    return next((labels[n] for n in names if labels.get(n)), "")


def parse(text: str, default_node: str) -> dict[tuple[str, str], Device]:
    """(node, device id) -> what the exporter says about it."""
    devices: dict[tuple[str, str], Device] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            device_id = _first(labels, DEVICE_LABELS)
            if not device_id:
                continue
            node = _first(labels, NODE_LABELS) or default_node
            device = devices.setdefault((node, device_id), Device(node, device_id))
            name, value = sample.name, float(sample.value)
            if name in UTILIZATION:
                device.utilization = value
            elif name in MEMORY_USED:
                device.memory_used = value
            elif name in MEMORY_OTHER:
                device.memory_other[name] = value
            elif name in TEMPERATURE:
                device.temperature = value
            elif name in POWER:
                device.power = value
            elif name.startswith(INTERCONNECT_PREFIXES):
                device.interconnect[name] = value
            if labels.get("pod") and labels.get("namespace"):
                device.pods.add((labels["namespace"], labels["pod"]))
    return devices


def scrape_all(cluster: Cluster, exporters: list[Exporter]) -> dict[tuple[str, str], Device]:
    devices: dict[tuple[str, str], Device] = {}
    for exporter in exporters:
        devices |= parse(exporter.scrape(cluster), exporter.node)
    return devices
