"""Probe pod manifests: the kaic image running the agent, restricted-Pod-Security compliant."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from conformance.probes import PROBE_IMAGE

Obj = dict[str, Any]
DEVICES_COMMAND = ("python", "-m", "conformance.agent", "devices")
GPU_TOLERATIONS = (
    {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "amd.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
)


def restricted(user: int = 65532) -> Obj:
    """A container securityContext that Pod Security `restricted` admits (check namespaces
    enforce it)."""
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
        "runAsUser": user,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container(
    name: str = "probe",
    *,
    command: Sequence[str] = DEVICES_COMMAND,
    claims: Sequence[str] = (),
    limits: Mapping[str, str] | None = None,
) -> Obj:
    resources: Obj = {}
    if claims:
        resources["claims"] = [{"name": c} for c in claims]
    if limits:
        resources["limits"] = dict(limits)
    return {
        "name": name,
        "image": PROBE_IMAGE,
        "command": list(command),
        "resources": resources,
        "securityContext": restricted(),
    }


def pod(
    name: str,
    containers: Sequence[Obj],
    *,
    claim_templates: Mapping[str, str] | None = None,
    tolerate_gpus: bool = True,
    node_name: str | None = None,
    labels: Mapping[str, str] | None = None,
) -> Obj:
    """A run-to-completion pod; `claim_templates` maps pod claim names to template names."""
    spec: Obj = {"restartPolicy": "Never", "containers": list(containers)}
    if claim_templates:
        spec["resourceClaims"] = [
            {"name": claim, "resourceClaimTemplateName": template}
            for claim, template in claim_templates.items()
        ]
    if tolerate_gpus:
        spec["tolerations"] = [dict(t) for t in GPU_TOLERATIONS]
    if node_name:
        spec["nodeName"] = node_name
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": dict(labels or {"app.kubernetes.io/name": name})},
        "spec": spec,
    }


def claim_template(
    name: str,
    device_class: str,
    *,
    count: int = 1,
    selectors: Sequence[str] = (),
    api_version: str = "resource.k8s.io/v1",
) -> Obj:
    exactly: Obj = {"deviceClassName": device_class, "count": count}
    if selectors:
        exactly["selectors"] = [{"cel": {"expression": s}} for s in selectors]
    return {
        "apiVersion": api_version,
        "kind": "ResourceClaimTemplate",
        "metadata": {"name": name},
        "spec": {"spec": {"devices": {"requests": [{"name": "gpu", "exactly": exactly}]}}},
    }
