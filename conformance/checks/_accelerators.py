"""What the accelerator checks share: finding the DRA driver and class to probe, running a
probe pod to completion and reading the agent's report, and matching what the pod saw against
what the cluster allocated."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from kubernetes.client import ApiException

from conformance.cluster import Cluster, ObjectRef, WaitTimeout, meter
from conformance.cluster.discovery import DRA_DRIVERS
from conformance.cluster.wait import describe, describe_all
from conformance.failures import fail
from conformance.fixtures import Kube
from conformance.settings import Settings

Obj = dict[str, Any]
DRA_API = "resource.k8s.io/v1"
PROBE_TIMEOUT_S = 180
HOLD = ("python", "-m", "conformance.agent", "devices", "--hold", "600")
# NVIDIA GPU feature discovery's labels for shared GPUs (time-slicing, MPS).
STRATEGY_LABEL = "nvidia.com/gpu.sharing-strategy"
REPLICAS_LABEL = "nvidia.com/gpu.replicas"


@dataclass(frozen=True)
class DraTarget:
    driver: str
    device_class: str
    slices: tuple[Obj, ...]

    def devices(self) -> dict[tuple[str, str], Obj]:
        """(pool, device name) -> device, over every published slice of the driver."""
        return {
            (s["spec"]["pool"]["name"], d["name"]): d
            for s in self.slices
            for d in s["spec"].get("devices") or []
        }

    def devices_per_node(self) -> dict[str, int]:
        """Node name -> how many devices the driver publishes for it."""
        per_node: dict[str, int] = {}
        for s in self.slices:
            if s["spec"].get("nodeName"):
                name = s["spec"]["nodeName"]
                per_node[name] = per_node.get(name, 0) + len(s["spec"].get("devices") or [])
        return per_node

    def node_of(self, pool: str) -> str | None:
        return next(
            (s["spec"].get("nodeName") for s in self.slices if s["spec"]["pool"]["name"] == pool),
            None,
        )


def _class_matches_driver(device_class: Obj, driver: str) -> bool:
    if device_class["metadata"]["name"] == driver:
        return True
    for selector in (device_class.get("spec") or {}).get("selectors") or []:
        expression = (selector.get("cel") or {}).get("expression", "")
        if f"'{driver}'" in expression or f'"{driver}"' in expression:
            return True
    return False


def dra_target(cluster: Cluster, settings: Settings) -> DraTarget:
    """The DRA driver and DeviceClass to probe; fails the check when the cluster has none."""
    if not cluster.serves(DRA_API, "ResourceSlice"):
        fail(
            expected=f"the DRA API {DRA_API} to be served",
            observed="no ResourceSlice resource in API discovery",
            next_step="on Kubernetes 1.34+ it is on by default; check --runtime-config",
        )
    slices = cluster.list_objects(DRA_API, "ResourceSlice")
    classes = cluster.list_objects(DRA_API, "DeviceClass")
    drivers = sorted({s["spec"]["driver"] for s in slices if s["spec"].get("devices")})
    if settings.accelerator != "auto":
        drivers = [d for d in drivers if d == DRA_DRIVERS.get(settings.accelerator)]
    for driver in drivers:
        for device_class in classes:
            if _class_matches_driver(device_class, driver):
                return DraTarget(
                    driver,
                    device_class["metadata"]["name"],
                    tuple(s for s in slices if s["spec"]["driver"] == driver),
                )
    fail(
        expected="a DeviceClass whose selector matches devices published in ResourceSlices"
        + (f" by the {settings.accelerator} driver" if settings.accelerator != "auto" else ""),
        observed=f"{len(classes)} DeviceClass(es) "
        f"[{', '.join(c['metadata']['name'] for c in classes)}] and {len(slices)} "
        f"ResourceSlice(s) with devices from drivers [{', '.join(drivers)}]",
        next_step="install the accelerator's DRA driver (its kubelet plugin publishes "
        "ResourceSlices) and its DeviceClass; kubectl get resourceslices,deviceclasses",
    )


def finished_pod(kube: Kube, name: str, timeout_s: float = PROBE_TIMEOUT_S) -> Obj:
    return kube.cluster.wait_for(
        "v1",
        "Pod",
        lambda pods: (
            pods[0]
            if pods and (pods[0].get("status") or {}).get("phase") in ("Succeeded", "Failed")
            else None
        ),
        awaiting=f"probe pod {kube.namespace}/{name} to run to completion",
        timeout_s=timeout_s,
        namespace=kube.namespace,
        name=name,
    )


def agent_report(kube: Kube, pod: Obj, container: str = "probe") -> Obj:
    """The agent's JSON report from the container's log (the pod must have succeeded)."""
    name = pod["metadata"]["name"]
    logs = kube.cluster.pod_logs(name, kube.namespace, container)
    ref = f"Pod/{kube.namespace}/{name}"
    if pod["status"]["phase"] != "Succeeded":
        fail(
            expected=f"probe {ref} to exit 0",
            observed=f"phase {pod['status']['phase']}; log tail: {logs.strip()[-300:]!r}",
            next_step=f"kubectl -n {kube.namespace} describe pod {name}",
        )
    for line in reversed(logs.strip().splitlines()):
        try:
            report: Obj = json.loads(line)
        except ValueError:
            continue
        return report
    raise RuntimeError(f"no JSON report in the log of {ref} container {container}: {logs[-300:]!r}")


def _reserved_for(claim: Obj, pod_name: str) -> bool:
    reserved = (claim.get("status") or {}).get("reservedFor") or []
    return any(r.get("name") == pod_name for r in reserved)


def _unschedulable(pod: Obj) -> bool:
    return any(
        c.get("type") == "PodScheduled" and c.get("reason") == "Unschedulable"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


def _allocated(claim: Obj) -> bool:
    return bool((claim.get("status") or {}).get("allocation"))


FINAL_GRACE_S = 10.0


def _every_device_free(cluster: Cluster, target: DraTarget) -> bool:
    """No claim anywhere holds a device of the driver: then a pod the scheduler still cannot
    place will stay so, since nothing it waits for can be freed."""
    for claim in cluster.list_objects(DRA_API, "ResourceClaim"):
        if any(r.get("driver") == target.driver for r in allocation_results(claim)):
            return False
    return True


def allocated_claims(
    kube: Kube, pod_name: str, count: int, timeout_s: float, target: DraTarget | None = None
) -> list[Obj]:
    """Wait until the pod's `count` claims are allocated and reserved for it; return them.

    Watches the pod: once it is bound its claims are allocated. With `target`, stops early once
    the scheduler has found the pod unschedulable while every device of the target's driver is
    free, and still does FINAL_GRACE_S later (a final answer: the Unschedulable condition may
    date from when other claims held the devices, and the scheduler retries once they are
    freed). Fails with the scheduler's reason either way."""
    started = time.monotonic()

    def decided(found: list[Obj], may_end: bool) -> list[Obj] | str | None:
        pod = found[0] if found else {}
        if pod.get("spec", {}).get("nodeName"):
            claims = kube.cluster.list_objects(DRA_API, "ResourceClaim", namespace=kube.namespace)
            mine = [c for c in claims if _reserved_for(c, pod_name) and _allocated(c)]
            return mine if len(mine) >= count else None
        if may_end and target and _unschedulable(pod) and _every_device_free(kube.cluster, target):
            return "final"
        return None

    def wait(seconds: float, may_end: bool) -> list[Obj] | str:
        def condition(found: list[Obj]) -> list[Obj] | str | None:
            return decided(found, may_end)

        try:
            result = cast("list[Obj] | str", kube.cluster.wait_for(
                "v1", "Pod", condition, timeout_s=seconds,
                namespace=kube.namespace, name=pod_name,
                awaiting=f"{count} ResourceClaim(s) of pod {pod_name} to be allocated and "
                "reserved for it",
            ))  # fmt: skip
        except WaitTimeout:
            return "timeout"
        return result

    got = wait(timeout_s, may_end=True)
    if got == "final":  # give the scheduler its retry, then look again
        got = wait(FINAL_GRACE_S, may_end=False)
        if got == "timeout":
            got = wait(max(1.0, timeout_s - (time.monotonic() - started)), may_end=True)
    if isinstance(got, list):
        return got
    pod = kube.cluster.get(ObjectRef("v1", "Pod", pod_name, kube.namespace))
    claims = kube.cluster.list_objects(DRA_API, "ResourceClaim", namespace=kube.namespace)
    when = (
        f"unschedulable after {time.monotonic() - started:.0f} s with every device of "
        f"{target.driver} free, so it stays so"
        if got == "final" and target
        else f"not allocated within {timeout_s:.0f} s"
    )
    fail(
        expected=f"{count} ResourceClaim(s) of Pod/{kube.namespace}/{pod_name} allocated by the "
        "scheduler",
        observed=f"{when}: {describe(pod) if pod else 'the pod is gone'}; {describe_all(claims)}",
        next_step=f"kubectl -n {kube.namespace} describe pod {pod_name} (the scheduler's "
        "events); the DeviceClass's selectors against the driver's devices (kubectl get "
        "deviceclasses,resourceslices -o yaml)",
    )


def allocation_results(claim: Obj) -> list[Obj]:
    return list(((claim["status"].get("allocation") or {}).get("devices") or {}).get("results")
                or [])  # fmt: skip


def device_ids(device: Obj, name: str) -> set[str]:
    """How a pod may name a device: its DRA name, or its uuid attribute."""
    ids = {name}
    uuid = ((device.get("attributes") or {}).get("uuid") or {}).get("string")
    if uuid:
        ids.add(uuid)
    return ids


def seen_matches(seen: Sequence[str], allocated: Iterable[set[str]]) -> bool:
    """Each allocated device is seen exactly once, and nothing else is seen."""
    remaining = list(seen)
    for ids in allocated:
        hit = next((s for s in remaining if s in ids), None)
        if hit is None:
            return False
        remaining.remove(hit)
    return not remaining


def delete_pod(kube: Kube, name: str) -> None:
    kube.cluster.delete(ObjectRef("v1", "Pod", name, kube.namespace))


def allocatable(node: Obj, resource: str) -> int:
    return int(((node.get("status") or {}).get("allocatable") or {}).get(resource, 0) or 0)


def shares_gpus(node: Obj) -> bool:
    labels = node["metadata"].get("labels") or {}
    return (
        labels.get(STRATEGY_LABEL, "none") not in ("none", "")
        or int(labels.get(REPLICAS_LABEL, "1") or 1) > 1
    )


DEVICE_PLUGIN_RESOURCES = {"nvidia": "nvidia.com/gpu", "amd": "amd.com/gpu"}


@dataclass(frozen=True)
class DeviceRequest:
    """How this run asks for accelerators: DRA claims, or a device plugin's extended resource."""

    mode: str
    dra: DraTarget | None = None
    resource: str | None = None

    def nodes(self, cluster: Cluster, count: int = 1) -> list[str]:
        """Nodes that can give one pod `count` devices of its own. Nodes that share GPUs
        (time-slicing, MPS) are left out: there several requested replicas may be one GPU."""
        if self.dra is not None:
            per_node = self.dra.devices_per_node()
            return sorted(name for name, devices in per_node.items() if devices >= count)
        return [
            n["metadata"]["name"]
            for n in cluster.list_objects("v1", "Node")
            if allocatable(n, self.resource or "") >= count and not shares_gpus(n)
        ]

    def ask(self, kube: Kube, name: str, count: int) -> tuple[dict[str, str], dict[str, Any]]:
        """Create what a pod needs to get `count` devices: (claim templates, container kwargs)."""
        if self.dra is not None:
            from conformance.probes.pods import claim_template

            kube.apply(claim_template(name, self.dra.device_class, count=count))
            return {"gpu": name}, {"claims": ["gpu"]}
        return {}, {"limits": {str(self.resource): str(count)}}

    def describe(self) -> str:
        if self.dra is not None:
            return f"DRA ({self.dra.device_class})"
        return f"device plugin ({self.resource})"


def device_plugin_resource(cluster: Cluster, settings: Settings) -> str | None:
    vendors = (
        [settings.accelerator] if settings.accelerator != "auto" else list(DEVICE_PLUGIN_RESOURCES)
    )
    allocatable: set[str] = set()
    for node in cluster.list_objects("v1", "Node"):
        allocatable |= set((node.get("status") or {}).get("allocatable") or {})
    for vendor in vendors:
        resource = DEVICE_PLUGIN_RESOURCES.get(vendor)
        if resource and resource in allocatable:
            return resource
    return None


def device_request(cluster: Cluster, settings: Settings) -> DeviceRequest:
    """--allocation-mode resolved: DRA when the cluster publishes devices, else the plugin."""
    mode = settings.allocation_mode
    if mode in ("dra", "auto") and cluster.serves(DRA_API, "ResourceSlice"):
        try:
            return DeviceRequest("dra", dra=dra_target(cluster, settings))
        except AssertionError:
            if mode == "dra":
                raise
    resource = device_plugin_resource(cluster, settings)
    if resource:
        return DeviceRequest("device-plugin", resource=resource)
    fail(
        expected=f"accelerators offered by DRA or a device plugin (--allocation-mode {mode}, "
        f"--accelerator {settings.accelerator})",
        observed="no ResourceSlices with a matching DeviceClass and no node advertising "
        f"{' or '.join(DEVICE_PLUGIN_RESOURCES.values())}",
        next_step="install the accelerator's DRA driver or device plugin",
    )


def running_report(kube: Kube, name: str, container: str = "probe") -> Obj:
    """The agent's report from a pod that keeps running (`devices --hold`), read as it comes."""
    kube.cluster.wait_for(
        "v1", "Pod",
        lambda pods: pods[0] if pods and (pods[0].get("status") or {}).get("phase")
        in ("Running", "Succeeded", "Failed") else None,
        awaiting=f"probe pod {kube.namespace}/{name} to start", timeout_s=PROBE_TIMEOUT_S,
        namespace=kube.namespace, name=name,
    )  # fmt: skip
    # A running container's log can be briefly unavailable (the runtime has not attached it yet);
    # nothing can be watched for that, so retry with backoff until the deadline.
    deadline = time.monotonic() + 60 * kube.cluster.timeout_scale
    delay = 0.1
    while True:
        try:
            for line in kube.cluster.follow_log(name, kube.namespace, container, timeout_s=60):
                try:
                    report: Obj = json.loads(line)
                except ValueError:
                    continue
                return report
            raise RuntimeError(f"pod {kube.namespace}/{name} printed no report")
        except ApiException as exc:
            if exc.status != 400 or time.monotonic() + delay > deadline:
                raise
        with meter.blocked():
            time.sleep(delay)
        delay = min(delay * 2, 2.0)


def sees_nothing(report: Obj) -> bool:
    nvml = report.get("nvml") or {}
    return not (report.get("visible_devices") or report.get("gpu_device_nodes")
                or (nvml.get("available") and nvml.get("gpus")))  # fmt: skip


def what_it_saw(report: Obj) -> str:
    nvml = report.get("nvml") or {}
    gpus = [g.get("uuid") for g in nvml.get("gpus") or []] if nvml.get("available") else []
    return (f"devices {report.get('visible_devices')}, device nodes "
            f"{report.get('gpu_device_nodes')}, NVML GPUs {gpus}")  # fmt: skip
