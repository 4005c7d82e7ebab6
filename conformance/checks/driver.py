"""Driver and runtime management: every accelerator node says which driver it runs, nodes of one
pool agree, and the driver a pod actually gets is the one advertised."""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass

from conformance.checks._accelerators import (
    DeviceRequest,
    Obj,
    agent_report,
    device_request,
    finished_pod,
)
from conformance.checks.registry import check
from conformance.cluster import Cluster
from conformance.evidence import Evidence
from conformance.failures import fail
from conformance.fixtures import Kube
from conformance.probes import pods
from conformance.settings import Settings

# Node labels carrying the driver version: NVIDIA GPU feature discovery (full, or split in older
# releases) and AMD's node labeller.
FULL_LABELS = ("nvidia.com/cuda.driver-version.full", "amd.com/gpu.driver-version")
SPLIT_LABELS = ("nvidia.com/cuda.driver.major", "nvidia.com/cuda.driver.minor",
                "nvidia.com/cuda.driver.rev")  # fmt: skip
PRODUCT_LABELS = ("nvidia.com/gpu.product", "amd.com/gpu.product-name")
DRA_ATTRIBUTE = "driverVersion"
MAX_PROBED_NODES = 4


@dataclass(frozen=True)
class Advertised:
    node: str
    version: str  # "" when the node says nothing
    pool: str  # nodes that should agree: same driver and product
    source: str


def same_version(a: str, b: str) -> bool:
    """570.124.06 (kernel module) equals 570.124.6 (semver, as DRA attributes carry it)."""
    return _numbers(a) == _numbers(b)


def _numbers(version: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", version))


def _label_version(labels: dict[str, str]) -> tuple[str, str]:
    for label in FULL_LABELS:
        if labels.get(label):
            return labels[label], f"label {label}"
    if all(labels.get(label) for label in SPLIT_LABELS):
        return ".".join(labels[label] for label in SPLIT_LABELS), "labels nvidia.com/cuda.driver.*"
    return "", ""


def _dra_attribute(device: Obj) -> str:
    value = (device.get("attributes") or {}).get(DRA_ATTRIBUTE) or {}
    return str(value.get("version") or value.get("string") or "")


def advertised(cluster: Cluster, request: DeviceRequest) -> list[Advertised]:
    """What each accelerator node advertises: DRA device attributes, else node labels."""
    found: list[Advertised] = []
    if request.dra is not None:
        for slice_ in request.dra.slices:
            spec = slice_["spec"]
            node = spec.get("nodeName") or ""
            for device in spec.get("devices") or []:
                attributes = device.get("attributes") or {}
                product = attributes.get("productName") or attributes.get("model") or {}
                found.append(Advertised(
                    node, _dra_attribute(device),
                    f"{spec['driver']} {product.get('string', '')}".strip(),
                    f"ResourceSlice/{slice_['metadata']['name']} device {device['name']} "
                    f"attribute {DRA_ATTRIBUTE}",
                ))  # fmt: skip
        return found
    wanted = set(request.nodes(cluster))
    for node in cluster.list_objects("v1", "Node"):
        if node["metadata"]["name"] not in wanted:
            continue
        labels = node["metadata"].get("labels") or {}
        version, source = _label_version(labels)
        product = next((labels[p] for p in PRODUCT_LABELS if labels.get(p)), "")
        found.append(Advertised(node["metadata"]["name"], version,
                                f"{request.resource} {product.removesuffix('-SHARED')}".strip(),
                                source or "no driver version label"))  # fmt: skip
    return found


def by_node(entries: list[Advertised]) -> dict[str, Advertised]:
    """One entry per node (DRA publishes one per device; a node disagreeing with itself keeps
    its first and shows up in the pool comparison)."""
    out: dict[str, Advertised] = {}
    for entry in entries:
        out.setdefault(entry.node, entry)
    return out


@check("driver.version-advertised", requirements=["driver_runtime_management"])
def test_version_advertised(cluster: Cluster, kaic_settings: Settings, evidence: Evidence) -> None:
    """Every accelerator node advertises its driver version, and nodes of one pool agree."""
    request = device_request(cluster, kaic_settings)
    entries = advertised(cluster, request)
    evidence.observe("mode", request.describe())
    evidence.observe("versions", {e.node: e.version for e in by_node(entries).values()})
    silent = sorted({e.node for e in entries if not e.version})
    if silent:
        fail(
            expected=f"every accelerator node ({request.describe()}) to advertise its driver "
            f"version (DRA device attribute {DRA_ATTRIBUTE}, or label {FULL_LABELS[0]})",
            observed=f"none on {', '.join(f'Node/{n}' for n in silent)}",
            next_step="deploy the vendor's feature discovery (GPU feature discovery, AMD node "
            "labeller) or a DRA driver that publishes the driver version",
        )
    pools: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for entry in entries:
        pools[entry.pool][".".join(map(str, _numbers(entry.version)))].add(entry.node)
    evidence.observe("pools", {p: {v: sorted(n) for v, n in vs.items()} for p, vs in pools.items()})
    for pool, versions in pools.items():
        if len(versions) > 1:
            fail(
                expected=f"the nodes of pool {pool!r} to run one driver version",
                observed="; ".join(f"{v} on {', '.join(sorted(n))}"
                                   for v, n in sorted(versions.items())),
                next_step="finish the driver rollout (or pin the driver version in the "
                "operator's ClusterPolicy/DeviceConfig) so that every node of a pool matches",
            )  # fmt: skip


def _probe_nodes(entries: list[Advertised]) -> list[Advertised]:
    """Nodes to probe: one per distinct advertised version first, then others, at most a few."""
    nodes = list(by_node(entries).values())
    first: dict[tuple[str, tuple[int, ...]], Advertised] = {}
    for entry in nodes:
        first.setdefault((entry.pool, _numbers(entry.version)), entry)
    rest = [e for e in nodes if e not in first.values()]
    return (list(first.values()) + rest)[:MAX_PROBED_NODES]


def pod_driver_version(report: Obj) -> tuple[str, str]:
    """(version, where it was read) from the agent's report: NVML, else the kernel module."""
    nvml = report.get("nvml") or {}
    if nvml.get("available") and nvml.get("driver_version"):
        return str(nvml["driver_version"]), "NVML"
    drivers = report.get("drivers") or {}
    for name, version in sorted(drivers.items()):
        return str(version), f"the {name} kernel module"
    return "", ""


@check("driver.version-matches-pod", requirements=["driver_runtime_management"])
def test_version_matches_pod(kube: Kube, kaic_settings: Settings, evidence: Evidence) -> None:
    """A pod holding an accelerator reads the driver version its node advertises."""
    request = device_request(kube.cluster, kaic_settings)
    found = advertised(kube.cluster, request)
    targets = [t for t in _probe_nodes(found) if t.version]
    evidence.observe("coverage", {
        "accelerator_nodes": len(by_node(found)), "probed": len(targets),
        "sample": f"one node per advertised (pool, version), then others, at most "
                  f"{MAX_PROBED_NODES}",
    })  # fmt: skip
    if not targets:
        fail(
            expected="an accelerator node that advertises its driver version",
            observed=f"none ({request.describe()})",
            next_step="see driver.version-advertised",
        )
    names = {}
    for index, target in enumerate(targets):
        name = f"driver-{index}"
        templates, asked = request.ask(kube, name, 1)
        manifest = pods.pod(name, [pods.container(**asked)], claim_templates=templates)
        manifest["spec"]["nodeSelector"] = {"kubernetes.io/hostname": target.node}
        kube.apply(manifest)
        names[name] = target
    observed: dict[str, dict[str, str]] = {}
    mismatched = []
    for name, target in names.items():
        read, where = pod_driver_version(agent_report(kube, finished_pod(kube, name)))
        observed[target.node] = {"advertised": target.version, "pod": read, "read_from": where}
        if not read:
            fail(
                expected=f"Pod/{kube.namespace}/{name} on {target.node} (holding one accelerator) "
                "to read the driver version (NVML, /sys/module/nvidia/version, "
                "/proc/driver/nvidia/version or /sys/module/amdgpu/version)",
                observed="none of them is readable in the container",
                next_step="check the container runtime's configuration for accelerators (e.g. "
                "the NVIDIA container toolkit's runtime class) on that node",
            )
        if not same_version(read, target.version):
            mismatched.append(
                f"Node/{target.node} advertises {target.version} ({target.source}) "
                f"but Pod/{kube.namespace}/{name} reads {read} from {where}"
            )
    evidence.observe("nodes", observed)
    if mismatched:
        fail(
            expected="the driver version a pod gets to be the one its node advertises",
            observed="; ".join(mismatched),
            next_step="the labels or ResourceSlices are stale (restart feature discovery / the "
            "DRA driver after a driver upgrade) or the upgrade did not finish on that node",
        )
