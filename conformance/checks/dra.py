"""Dynamic Resource Allocation: the API, device classes matching published devices, and claims
allocated by the scheduler to pods that then see exactly their devices."""

from __future__ import annotations

from typing import Any

from conformance.checks._accelerators import (
    DRA_API,
    PROBE_TIMEOUT_S,
    agent_report,
    allocated_claims,
    allocation_results,
    delete_pod,
    device_ids,
    dra_target,
    finished_pod,
    seen_matches,
)
from conformance.checks.registry import check
from conformance.cluster import Cluster
from conformance.cluster.discovery import group_versions
from conformance.evidence import Evidence
from conformance.failures import fail
from conformance.fixtures import Kube
from conformance.probes import pods
from conformance.profiles import Profile
from conformance.settings import Settings

Obj = dict[str, Any]
SCHEDULE_TIMEOUT_S = 120


@check("dra.api-served", requirements=["dra_support"])
def test_api_served(cluster: Cluster, profile: Profile, evidence: Evidence) -> None:
    """resource.k8s.io is served at the version the profile's Kubernetes release expects."""
    served = [gv for gv in group_versions(cluster) if gv.startswith("resource.k8s.io/")]
    evidence.observe("served", served)
    minor = int((profile.kubernetes_version or profile.kubernetes_minimum or "1.34").split(".")[1])
    if minor >= 34 and DRA_API not in served:
        fail(
            expected=f"{DRA_API} to be served (on by default from Kubernetes 1.34)",
            observed=f"resource.k8s.io versions served: {served or 'none'}",
            next_step="check the API server's --runtime-config and feature gates",
        )
    if minor < 34 and not {"resource.k8s.io/v1beta1", "resource.k8s.io/v1beta2"} & set(served):
        fail(
            expected="resource.k8s.io/v1beta1 or v1beta2 to be served (DRA is beta and opt-in "
            "on 1.33)",
            observed=f"resource.k8s.io versions served: {served or 'none'}",
            next_step="enable the DynamicResourceAllocation feature gate and "
            "--runtime-config=resource.k8s.io/v1beta1=true on the API server",
        )


@check("dra.class-matches-devices", requirements=["dra_support"])
def test_class_matches_devices(kube: Kube, kaic_settings: Settings, evidence: Evidence) -> None:
    """A DeviceClass selects devices that a driver publishes in ResourceSlices: a claim for one
    device of the class is allocated one of them."""
    target = dra_target(kube.cluster, kaic_settings)
    evidence.observe("driver", target.driver)
    evidence.observe("device_class", target.device_class)
    evidence.observe("devices", len(target.devices()))
    evidence.observe("nodes", sorted({s["spec"].get("nodeName", "") for s in target.slices}))
    evidence.object(f"DeviceClass/{target.device_class}")
    _, results, _ = _claim_probe(kube, kaic_settings, evidence, "class-probe", 1)
    got = [(r.get("pool"), r.get("device")) for r in results]
    foreign = [f"{pool}/{device}" for pool, device in got if (pool, device) not in target.devices()]
    if foreign or not got:
        fail(
            expected=f"a claim of DeviceClass {target.device_class} to get one of the "
            f"{len(target.devices())} devices {target.driver} publishes",
            observed=f"allocated {foreign or 'nothing'}",
            next_step=f"kubectl get deviceclass {target.device_class} -o yaml (its selectors) "
            "and kubectl get resourceslices",
        )


def _claim_probe(
    kube: Kube, settings: Settings, evidence: Evidence, name: str, count: int,
    selectors: tuple[str, ...] = (),
) -> tuple[Obj, list[Obj], Obj]:  # fmt: skip
    """Claim `count` devices through a template, run the agent; return pod, results, report."""
    target = dra_target(kube.cluster, settings)
    kube.apply(pods.claim_template(name, target.device_class, count=count, selectors=selectors))
    kube.apply(pods.pod(name, [pods.container(claims=["gpu"])], claim_templates={"gpu": name}))
    [claim] = allocated_claims(kube, name, 1, SCHEDULE_TIMEOUT_S, target)
    results = allocation_results(claim)
    evidence.object(f"ResourceClaim/{kube.namespace}/{claim['metadata']['name']}")
    evidence.observe("allocated", [
        {k: r.get(k) for k in ("request", "driver", "pool", "device")} for r in results
    ])  # fmt: skip
    pod = finished_pod(kube, name)
    return pod, results, agent_report(kube, pod)


def _check_seen(kube: Kube, settings: Settings, pod: Obj, results: list[Obj], report: Obj) -> None:
    target = dra_target(kube.cluster, settings)
    devices = target.devices()
    name = f"Pod/{kube.namespace}/{pod['metadata']['name']}"
    node = pod["spec"].get("nodeName")
    for result in results:
        owner = target.node_of(result["pool"])
        if owner and owner != node:
            fail(
                expected=f"{name} to run on {owner}, the node owning device "
                f"{result['pool']}/{result['device']}",
                observed=f"it ran on {node}",
                next_step="check the driver's ResourceSlices (spec.nodeName per pool)",
            )
    allocated = [device_ids(devices.get((r["pool"], r["device"]), {}), r["device"])
                 for r in results]  # fmt: skip
    seen = report.get("visible_devices", [])
    if not seen_matches(seen, allocated):
        fail(
            expected=f"{name} to see exactly its allocated device(s) "
            f"{sorted(r['device'] for r in results)}",
            observed=f"the probe saw {seen} (device env {report.get('env')})",
            next_step=f"check the {target.driver} driver's container edits (CDI) on {node}",
        )


@check("dra.claim-allocated", requirements=["dra_support"])
def test_claim_allocated(kube: Kube, kaic_settings: Settings, evidence: Evidence) -> None:
    """A claim from a template is allocated by the scheduler, reserved for the pod, the pod lands
    on the device's node and sees exactly that device."""
    pod, results, report = _claim_probe(kube, kaic_settings, evidence, "one-device", 1)
    if len(results) != 1:
        fail(expected="1 allocated device", observed=f"{len(results)}: {results}")
    evidence.observe("node", pod["spec"].get("nodeName"))
    evidence.observe("seen", report.get("visible_devices"))
    _check_seen(kube, kaic_settings, pod, results, report)


@check("dra.claim-two-devices", requirements=["dra_support"])
def test_claim_two_devices(kube: Kube, kaic_settings: Settings, evidence: Evidence) -> None:
    """A claim for count 2 gets two distinct devices, and the pod sees both."""
    pod, results, report = _claim_probe(kube, kaic_settings, evidence, "two-devices", 2)
    distinct = {(r["pool"], r["device"]) for r in results}
    if len(distinct) != 2:
        fail(expected="2 distinct allocated devices", observed=f"{sorted(distinct)}")
    evidence.observe("seen", report.get("visible_devices"))
    _check_seen(kube, kaic_settings, pod, results, report)


def _attribute_choice(devices: dict[tuple[str, str], Obj], driver: str) -> tuple[str, str] | None:
    """A string attribute and value to select on, preferring one that not every device has."""
    values: dict[str, dict[str, int]] = {}
    for device in devices.values():
        for attr, value in (device.get("attributes") or {}).items():
            if isinstance(value, dict) and "string" in value and attr not in ("uuid",):
                bucket = values.setdefault(attr, {})
                bucket[value["string"]] = bucket.get(value["string"], 0) + 1
    ranked = sorted(
        ((attr, value, count) for attr, counts in values.items() for value, count in
         counts.items()),
        key=lambda t: (t[2] == len(devices), t[0] not in ("productName", "model", "type")),
    )  # fmt: skip
    return (ranked[0][0], ranked[0][1]) if ranked else None


@check("dra.cel-selector", requirements=["dra_support"])
def test_cel_selector(kube: Kube, kaic_settings: Settings, evidence: Evidence) -> None:
    """A CEL selector on a device attribute gets a device with that attribute value."""
    target = dra_target(kube.cluster, kaic_settings)
    choice = _attribute_choice(target.devices(), target.driver)
    if choice is None:
        fail(
            expected=f"devices of {target.driver} to carry string attributes to select on",
            observed="none", next_step="check the driver's ResourceSlices",
        )  # fmt: skip
    attr, value = choice
    expression = f'device.attributes["{target.driver}"].{attr} == "{value}"'
    evidence.observe("selector", expression)
    pod, results, report = _claim_probe(kube, kaic_settings, evidence, "selected", 1, (expression,))
    devices = target.devices()
    for result in results:
        got = (devices.get((result["pool"], result["device"]), {}).get("attributes") or {}).get(
            attr
        )
        if (got or {}).get("string") != value:
            fail(
                expected=f"a device with {attr}={value!r} (selector {expression})",
                observed=f"{result['pool']}/{result['device']} with {attr}={got}",
                next_step="the scheduler's DRA plugin ignored the selector",
            )
    _check_seen(kube, kaic_settings, pod, results, report)


@check("dra.unsatisfiable-pending", requirements=["dra_support"])
def test_unsatisfiable_pending(kube: Kube, kaic_settings: Settings, evidence: Evidence) -> None:
    """A claim no node can satisfy leaves the pod Pending, and the scheduler says why."""
    target = dra_target(kube.cluster, kaic_settings)
    per_pool: dict[str, int] = {}
    for pool, _ in target.devices():
        per_pool[pool] = per_pool.get(pool, 0) + 1
    count = max(per_pool.values(), default=0) + 1
    evidence.observe("requested", count)
    name = "too-many"
    kube.apply(pods.claim_template(name, target.device_class, count=count))
    kube.apply(pods.pod(name, [pods.container(claims=["gpu"])], claim_templates={"gpu": name}))

    def unschedulable(found: list[Obj]) -> Obj | None:
        for pod in found:
            if (pod.get("status") or {}).get("phase") not in (None, "Pending"):
                return pod
            for cond in (pod.get("status") or {}).get("conditions") or []:
                if cond["type"] == "PodScheduled" and cond.get("reason") == "Unschedulable":
                    return pod
        return None

    pod = kube.cluster.wait_for(
        "v1", "Pod", unschedulable, awaiting=f"pod {name} to be reported unschedulable",
        timeout_s=SCHEDULE_TIMEOUT_S, namespace=kube.namespace, name=name,
    )  # fmt: skip
    phase = pod["status"].get("phase")
    if phase != "Pending":
        fail(
            expected=f"pod {name} claiming {count} devices (more than any node has) to stay "
            "Pending",
            observed=f"phase {phase} on node {pod['spec'].get('nodeName')}",
            next_step="the scheduler allocated more devices than a node publishes",
        )
    condition = next(c for c in pod["status"]["conditions"] if c["type"] == "PodScheduled")
    evidence.observe("scheduler_message", condition.get("message", ""))
    evidence.object(f"Pod/{kube.namespace}/{name}")


@check("dra.claim-released", requirements=["dra_support"])
def test_claim_released(kube: Kube, kaic_settings: Settings, evidence: Evidence) -> None:
    """When the pod is gone, its generated claim is deleted and its device deallocated: a new
    claim that selects exactly that device (by its uuid) gets it."""
    target = dra_target(kube.cluster, kaic_settings)
    pod, results, _ = _claim_probe(kube, kaic_settings, evidence, "released", 1)
    name = pod["metadata"]["name"]
    [held] = results
    uuid = ((target.devices().get((held["pool"], held["device"]), {}).get("attributes") or {})
            .get("uuid") or {}).get("string")  # fmt: skip
    delete_pod(kube, name)

    def gone(claims: list[Obj]) -> bool:
        return not any(_owned_by(c, name) for c in claims)

    kube.cluster.wait_for(
        DRA_API, "ResourceClaim", lambda claims: gone(claims) or None,
        awaiting=f"the claim generated for pod {name} to be deleted with the pod",
        timeout_s=PROBE_TIMEOUT_S, namespace=kube.namespace,
    )  # fmt: skip
    evidence.observe("released", f"{held['pool']}/{held['device']}")
    if not uuid:
        fail(
            expected=f"the devices of {target.driver} to carry a uuid attribute, to claim the "
            "released one again",
            observed=f"{held['pool']}/{held['device']} has none",
            next_step="check the driver's ResourceSlices",
        )
    again = f'device.attributes["{target.driver}"].uuid == "{uuid}"'
    _, results, _ = _claim_probe(kube, kaic_settings, evidence, "again", 1, (again,))
    evidence.observe("claimed_again", [f"{r['pool']}/{r['device']}" for r in results])


def _owned_by(claim: Obj, pod: str) -> bool:
    owners = claim.get("metadata", {}).get("ownerReferences") or []
    return any(o.get("kind") == "Pod" and o.get("name") == pod for o in owners)
