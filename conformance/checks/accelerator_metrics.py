"""Accelerator metrics: the vendor's exporter reports utilization and memory for every device the
nodes advertise, attributes a device to the pod holding it, and follows the device's load."""

from __future__ import annotations

from conformance.checks import _exporters as exp
from conformance.checks._accelerators import (
    DRA_API,
    DeviceRequest,
    device_plugin_resource,
    device_request,
    dra_target,
    running_report,
)
from conformance.checks.registry import check
from conformance.cluster import Cluster, ObjectRef
from conformance.cluster.wait import poll_or_fail
from conformance.evidence import Evidence
from conformance.failures import fail, not_applicable
from conformance.fixtures import Kube
from conformance.probes import pods
from conformance.settings import Settings

Obj = exp.Obj
COUNT_LABELS = ("nvidia.com/gpu.count", "amd.com/gpu.count")
BURN = ("python", "-m", "conformance.agent", "burn", "--seconds", "300")
LOADED_ABOVE = 50.0


def advertised_devices(
    cluster: Cluster, settings: Settings
) -> tuple[list[str], dict[str, tuple[int, set[str]]]]:
    """Every accelerator the nodes advertise, by DRA and by device plugins (as
    --allocation-mode allows): (how, node -> (physical devices, the UUIDs it publishes))."""
    out: dict[str, tuple[int, set[str]]] = {}
    how = []
    mode = settings.allocation_mode
    if mode in ("auto", "dra") and cluster.serves(DRA_API, "ResourceSlice"):
        try:
            dra = dra_target(cluster, settings)
        except AssertionError:
            dra = None
        if dra is not None:
            how.append(f"DRA ({dra.device_class})")
            for (pool, _name), device in dra.devices().items():
                owner = dra.node_of(pool) or ""
                count, uuids = out.get(owner, (0, set()))
                uuid = ((device.get("attributes") or {}).get("uuid") or {}).get("string")
                out[owner] = (count + 1, uuids | ({uuid} if uuid else set()))
    resource = device_plugin_resource(cluster, settings) if mode != "dra" else None
    if resource:
        how.append(f"device plugin ({resource})")
        for node in cluster.list_objects("v1", "Node"):
            labels = node["metadata"].get("labels") or {}
            allocatable = int(((node.get("status") or {}).get("allocatable") or {})
                              .get(resource, 0) or 0)  # fmt: skip
            if allocatable:
                # time-slicing advertises each GPU several times; the count label is physical
                count = next((int(labels[k]) for k in COUNT_LABELS
                              if labels.get(k, "").isdigit()), allocatable)  # fmt: skip
                out[node["metadata"]["name"]] = (count, set())
    if not out:
        device_request(cluster, settings)  # fails, saying what the cluster offers
    return how, out


@check("accelerator-metrics.per-device", requirements=["accelerator_metrics"])
def test_per_device(cluster: Cluster, kaic_settings: Settings, evidence: Evidence) -> None:
    """Every accelerator the nodes advertise has utilization and memory metrics, under the
    device ids the nodes publish."""
    how, expected = advertised_devices(cluster, kaic_settings)
    exporters = exp.find_exporters(cluster, kaic_settings)
    evidence.observe("exporters", [e.where for e in exporters])
    devices = exp.scrape_all(cluster, exporters)
    by_node: dict[str, list[exp.Device]] = {}
    for device in devices.values():
        by_node.setdefault(device.node, []).append(device)
    evidence.observe("devices", {n: {d.device: d.summary() for d in ds}
                                 for n, ds in sorted(by_node.items())})  # fmt: skip
    evidence.observe("recorded", {
        "temperature": any(d.temperature is not None for d in devices.values()),
        "power": any(d.power is not None for d in devices.values()),
        "interconnect": any(d.interconnect for d in devices.values()),
    })  # fmt: skip
    problems = []
    for node, (count, uuids) in sorted(expected.items()):
        reported = by_node.get(node, [])
        complete = [d for d in reported if d.utilization is not None and d.memory_used is not None]
        if len(complete) < count:
            lacking = [d.device for d in reported if d not in complete]
            shown = ", ".join(lacking[:2]) + (f" and {len(lacking) - 2} more" if len(lacking) > 2
                                              else "")  # fmt: skip
            without = f" (without memory or utilization: {shown})" if lacking else ""
            problems.append(
                f"Node/{node}: {len(complete)} of its {count} device(s) with utilization and "
                f"memory{without}"
            )
        missing = sorted(uuids - {d.device for d in reported})
        if missing:
            problems.append(f"Node/{node}: no metrics for published device(s) {missing}")
    if problems:
        fail(
            expected=f"utilization ({exp.UTILIZATION[0]}) and memory ({exp.MEMORY_USED[0]}) "
            f"metrics for every accelerator advertised ({' and '.join(how)})",
            observed="; ".join(problems),
            next_step="check the exporter runs on every accelerator node and its collectors "
            "include utilization and framebuffer memory (dcgm-exporter's counters CSV)",
        )


def _burning_pod(kube: Kube, request: DeviceRequest, name: str) -> Obj:
    templates, asked = request.ask(kube, name, 1)
    manifest = pods.pod(name, [pods.container(command=BURN, **asked)], claim_templates=templates)
    kube.apply(manifest)
    return running_report(kube, name)


def _exporter_on(kube: Kube, settings: Settings, node: str) -> exp.Exporter:
    exporters = exp.find_exporters(kube.cluster, settings)
    mine = [e for e in exporters if e.node in (node, "")]
    if not mine:
        fail(
            expected=f"an accelerator metrics exporter on Node/{node}",
            observed=f"exporters only on {sorted({e.node for e in exporters})}",
            next_step="check the exporter DaemonSet's node selector and tolerations",
        )
    return mine[0]


def _node_of(kube: Kube, name: str) -> str:
    pod = kube.cluster.get(ObjectRef("v1", "Pod", name, kube.namespace)) or {"spec": {}}
    return str(pod["spec"].get("nodeName", ""))


@check("accelerator-metrics.pod-attribution", requirements=["accelerator_metrics"])
def test_pod_attribution(kube: Kube, kaic_settings: Settings, evidence: Evidence) -> None:
    """A pod holding an accelerator appears in the exporter's metrics with its pod and
    namespace, on the device it was given."""
    request = device_request(kube.cluster, kaic_settings)
    name = "holder"
    report = _burning_pod(kube, request, name)
    node = _node_of(kube, name)
    exporter = _exporter_on(kube, kaic_settings, node)
    ours = (kube.namespace, name)
    seen: dict[str, list[str]] = {}

    def probe() -> tuple[list[exp.Device] | None, str]:
        devices = exp.parse(exporter.scrape(kube.cluster), node)
        held = [d for d in devices.values() if ours in d.pods]
        seen.update({d.device: sorted("/".join(p) for p in d.pods) for d in devices.values()})
        return held or None, f"pods per device: {seen}"

    held = poll_or_fail(
        probe,
        awaiting=f"{exporter.where} to attribute a device to Pod/{kube.namespace}/{name}",
        timeout_s=90 * kube.cluster.timeout_scale,
        expected=f"the exporter on Node/{node} to report the device held by "
        f"Pod/{kube.namespace}/{name} with labels pod and namespace",
        next_step="enable the exporter's pod mapping (dcgm-exporter: "
        "DCGM_EXPORTER_KUBERNETES=true and the kubelet pod-resources socket mounted)",
    )
    evidence.observe("node", node)
    evidence.observe("attributed", sorted(d.device for d in held))
    given = set(report.get("devices") or [])
    evidence.observe("pod_was_given", sorted(given))
    if given and given != {d.device for d in held}:
        fail(
            expected=f"the metrics of Pod/{kube.namespace}/{name} on the device it was given "
            f"{sorted(given)}",
            observed=f"attributed on {sorted(d.device for d in held)}",
            next_step="the exporter's pod mapping disagrees with the device plugin / DRA driver",
        )


@check("accelerator-metrics.utilization-follows-load", requirements=["accelerator_metrics"])
def test_utilization_follows_load(kube: Kube, kaic_settings: Settings, evidence: Evidence) -> None:
    """The utilization of a device rises while the agent loads it."""
    request = device_request(kube.cluster, kaic_settings)
    name = "burner"
    report = _burning_pod(kube, request, name)
    if report.get("load") != "emulated" or not report.get("devices"):
        not_applicable(
            "load-not-observable",
            f"utilization under load not observable: {report.get('reason')}",
        )
    node = _node_of(kube, name)
    exporter = _exporter_on(kube, kaic_settings, node)
    devices = set(report["devices"])
    history: list[dict[str, float | None]] = []

    def utilization() -> dict[str, float | None]:
        found = exp.parse(exporter.scrape(kube.cluster), node)
        values = {d.device: d.utilization for d in found.values() if d.device in devices}
        history.append(values)
        return values

    def probe() -> tuple[bool, str]:
        values = utilization()
        busy = bool(values) and all((v or 0) > LOADED_ABOVE for v in values.values())
        return busy, f"utilization {values}"

    poll_or_fail(
        probe,
        awaiting=f"the utilization of {sorted(devices)} to rise above {LOADED_ABOVE:g}%",
        timeout_s=60 * kube.cluster.timeout_scale,
        expected=f"the utilization of {sorted(devices)} on Node/{node} to rise above "
        f"{LOADED_ABOVE:g}% while Pod/{kube.namespace}/{name} loads it",
        next_step="check the exporter's sampling interval and that it reads this device",
    )
    loaded_samples = len(history)  # the readings before this one were taken under load
    # and it falls back once the load stops (the probe pod goes)
    kube.cluster.delete(ObjectRef("v1", "Pod", name, kube.namespace))

    def idle() -> tuple[bool, str]:
        values = utilization()
        return all((v or 0) < LOADED_ABOVE for v in values.values()), f"utilization {values}"

    poll_or_fail(
        idle,
        awaiting=f"the utilization of {sorted(devices)} to fall back",
        timeout_s=60 * kube.cluster.timeout_scale,
        expected=f"the utilization of {sorted(devices)} on Node/{node} to fall below "
        f"{LOADED_ABOVE:g}% once Pod/{kube.namespace}/{name} is gone",
        next_step="the exporter reports stale values; check its sampling",
    )
    evidence.observe("utilization_history", history)
    evidence.observe("utilization_loaded_samples", loaded_samples)
