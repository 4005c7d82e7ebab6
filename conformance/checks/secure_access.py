"""Secure accelerator access: a pod sees exactly the accelerators it was given, no more."""

from __future__ import annotations

from conformance.checks._accelerators import (
    HOLD,
    agent_report,
    device_request,
    finished_pod,
    running_report,
    sees_nothing,
    what_it_saw,
)
from conformance.checks.registry import check
from conformance.evidence import Evidence
from conformance.failures import fail, not_applicable
from conformance.fixtures import Kube
from conformance.probes import pods
from conformance.settings import Settings

MAX_NODES = 8  # accelerator nodes no-request-no-device probes, one pod each


@check("secure-access.no-request-no-device", requirements=["secure_accelerator_access"])
def test_no_request_no_device(kube: Kube, kaic_settings: Settings, evidence: Evidence) -> None:
    """A pod that asked for no accelerator sees none, on every accelerator node (at most
    MAX_NODES of them, the count in the evidence)."""
    request = device_request(kube.cluster, kaic_settings)
    nodes = request.nodes(kube.cluster)
    probed = nodes[:MAX_NODES]
    evidence.observe("mode", request.describe())
    evidence.observe("coverage", {"accelerator_nodes": len(nodes), "probed": probed})
    for i, node in enumerate(probed):
        kube.apply(pods.pod(f"no-request-{i}", [pods.container()], node_name=node))
    seen = {}
    for i, node in enumerate(probed):
        report = agent_report(kube, finished_pod(kube, f"no-request-{i}"))
        seen[node] = report
        if not sees_nothing(report):
            evidence.observe("seen", seen)
            fail(
                expected=f"Pod/{kube.namespace}/no-request-{i} (no accelerator requested) on "
                f"{node} to see no accelerator",
                observed=what_it_saw(report),
                next_step="the container runtime exposes GPUs to every container (e.g. NVIDIA "
                "runtime as default with NVIDIA_VISIBLE_DEVICES=all): restrict it to allocated "
                "ones",
            )
    evidence.observe("seen", seen)


@check("secure-access.only-claiming-container", requirements=["secure_accelerator_access"])
def test_only_claiming_container(kube: Kube, kaic_settings: Settings, evidence: Evidence) -> None:
    """In a two-container pod only the container holding the request sees the device."""
    request = device_request(kube.cluster, kaic_settings)
    templates, asked = request.ask(kube, "split", 1)
    kube.apply(pods.pod("split", [pods.container("holder", **asked), pods.container("other")],
                        claim_templates=templates))  # fmt: skip
    pod = finished_pod(kube, "split")
    holder, other = agent_report(kube, pod, "holder"), agent_report(kube, pod, "other")
    evidence.observe("holder_saw", holder.get("visible_devices"))
    evidence.observe("other_saw", other.get("visible_devices"))
    if len(holder.get("visible_devices") or []) != 1:
        fail(
            expected=f"container holder of Pod/{kube.namespace}/split to see its 1 device "
            f"({request.describe()})",
            observed=what_it_saw(holder),
            next_step="check the driver's device injection for that container",
        )
    if not sees_nothing(other):
        fail(
            expected=f"container other of Pod/{kube.namespace}/split (no request) to see nothing",
            observed=what_it_saw(other),
            next_step="devices leak to sibling containers: check the runtime's device injection",
        )


@check("secure-access.disjoint-devices", requirements=["secure_accelerator_access"])
def test_disjoint_devices(kube: Kube, kaic_settings: Settings, evidence: Evidence) -> None:
    """Two pods running at once on one node get different devices."""
    request = device_request(kube.cluster, kaic_settings)
    node = request.nodes(kube.cluster)[0]
    seen = {}
    for name in ("first", "second"):
        templates, asked = request.ask(kube, name, 1)
        manifest = pods.pod(name, [pods.container(command=HOLD, **asked)],
                            claim_templates=templates)  # fmt: skip
        manifest["spec"]["nodeSelector"] = {"kubernetes.io/hostname": node}
        kube.apply(manifest)
        seen[name] = running_report(kube, name).get("visible_devices") or []
    evidence.observe("node", node)
    evidence.observe("seen", seen)
    if (
        len(seen["first"]) != 1
        or len(seen["second"]) != 1
        or set(seen["first"]) & set(seen["second"])
    ):
        fail(
            expected=f"pods first and second in {kube.namespace}, running together on {node} "
            "with 1 device each, to see one device each, and different ones",
            observed=f"first saw {seen['first']}, second saw {seen['second']}",
            next_step="two workloads share one accelerator: check the device plugin's or "
            "driver's allocation",
        )


@check("secure-access.count-matches", requirements=["secure_accelerator_access"])
def test_count_matches(kube: Kube, kaic_settings: Settings, evidence: Evidence) -> None:
    """A pod that asked for 2 accelerators, on a node that does not share them, sees exactly 2."""
    request = device_request(kube.cluster, kaic_settings)
    nodes = request.nodes(kube.cluster, count=2)
    if not nodes:
        not_applicable(
            "no-node-with-two-accelerators",
            f"no node offers 2 accelerators of its own ({request.describe()}); nodes that share "
            "GPUs (time-slicing, MPS) are not asked",
        )
    templates, asked = request.ask(kube, "two", 2)
    manifest = pods.pod("two", [pods.container(**asked)], claim_templates=templates)
    manifest["spec"]["nodeSelector"] = {"kubernetes.io/hostname": nodes[0]}
    kube.apply(manifest)
    evidence.observe("node", nodes[0])
    report = agent_report(kube, finished_pod(kube, "two"))
    visible = report.get("visible_devices") or []
    evidence.observe("mode", request.describe())
    evidence.observe("seen", visible)
    if len(set(visible)) != 2:
        fail(
            expected=f"Pod/{kube.namespace}/two to see exactly the 2 devices it requested "
            f"({request.describe()})",
            observed=what_it_saw(report),
            next_step="check the device plugin's or driver's injection into the container",
        )
