"""The sandbox's real components and emulated hardware, and its fault knobs."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from conformance import sandbox as sbx
from conformance.cluster import Cluster, ObjectRef
from conformance.sandbox import processes
from tests.integration.conftest import BARE, admin_of

pytestmark = pytest.mark.sandbox
Obj = dict[str, Any]


@pytest.fixture
def ns(admin: Cluster) -> Iterator[str]:
    yield from scratch_namespace(admin)


def scratch_namespace(cluster: Cluster) -> Iterator[str]:
    name = f"it-{uuid.uuid4().hex[:8]}"
    cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    cluster.wait_for("v1", "ServiceAccount", lambda o: o or None, awaiting="default SA",
                     timeout_s=60, namespace=name, name="default")  # fmt: skip
    yield name
    cluster.delete(ObjectRef("v1", "Namespace", name))


def nodes_by_name(cluster: Cluster) -> dict[str, Obj]:
    return {n["metadata"]["name"]: n for n in cluster.list_objects("v1", "Node")}


def ready(node: Obj) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"]["conditions"])


def test_nodes_ready_with_the_default_topology(sandbox: sbx.Sandbox, admin: Cluster) -> None:
    nodes = nodes_by_name(admin)
    assert set(nodes) == {"cpu-0", "gpu-dp-0", "gpu-dp-1", "gpu-ts-0", "gpu-dra-0", "gpu-dra-1",
                          *sandbox.real_nodes}  # fmt: skip
    assert all(ready(n) for n in nodes.values())
    for name in ("gpu-dp-0", "gpu-dp-1"):
        node = nodes[name]
        assert node["status"]["allocatable"]["nvidia.com/gpu"] == "4"
        assert {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"} in node[
            "spec"
        ]["taints"]
        labels = node["metadata"]["labels"]
        assert labels["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
        assert labels["nvidia.com/gpu.count"] == "4"
        assert labels["nvidia.com/gpu.memory"] == "81559"
        assert labels["nvidia.com/cuda.driver-version.full"] == "570.124.6"
    shared = nodes["gpu-ts-0"]
    assert shared["status"]["allocatable"]["nvidia.com/gpu"] == "3"  # 1 GPU, 3 time slices
    assert shared["metadata"]["labels"]["nvidia.com/gpu.count"] == "1"
    assert shared["metadata"]["labels"]["nvidia.com/gpu.sharing-strategy"] == "time-slicing"
    assert "nvidia.com/gpu" not in nodes["cpu-0"]["status"]["allocatable"]
    assert not nodes["cpu-0"]["spec"].get("taints")


def test_dra_devices_are_published(admin: Cluster) -> None:
    classes = [
        c["metadata"]["name"] for c in admin.list_objects("resource.k8s.io/v1", "DeviceClass")
    ]
    assert classes == ["gpu.example.com"]
    slices = {s["spec"]["nodeName"]: s for s in admin.list_objects("resource.k8s.io/v1",
                                                                   "ResourceSlice")}  # fmt: skip
    assert set(slices) == {"gpu-dra-0", "gpu-dra-1"}
    devices = slices["gpu-dra-0"]["spec"]["devices"]
    assert [d["name"] for d in devices] == ["gpu-0", "gpu-1", "gpu-2", "gpu-3"]
    attrs = devices[2]["attributes"]
    assert attrs["index"] == {"int": 2}
    assert attrs["uuid"]["string"].startswith("GPU-")
    assert attrs["driverVersion"] == {"version": "570.124.6"}
    assert devices[0]["capacity"]["memory"]["value"] == "81559Mi"


def claim_pod(namespace: str) -> tuple[Obj, Obj]:
    template = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaimTemplate",
        "metadata": {"name": "one-gpu", "namespace": namespace},
        "spec": {"spec": {"devices": {"requests": [
            {"name": "gpu", "exactly": {"deviceClassName": "gpu.example.com", "count": 1}}
        ]}}},
    }  # fmt: skip
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "claims-gpu", "namespace": namespace},
        "spec": {
            "resourceClaims": [{"name": "gpu", "resourceClaimTemplateName": "one-gpu"}],
            "containers": [
                {
                    "name": "c",
                    "image": "registry.k8s.io/pause:3.10",
                    "resources": {"claims": [{"name": "gpu"}]},
                }
            ],
        },
    }
    return template, pod


def test_claim_from_template_is_allocated_and_pod_lands_on_the_device_node(
    admin: Cluster, ns: str
) -> None:
    template, pod = claim_pod(ns)
    admin.apply(template)
    admin.apply(pod)
    running = admin.wait_for(
        "v1", "Pod", lambda pods: next((p for p in pods if p["status"].get("phase") == "Running"),
                                       None),
        awaiting="the claiming pod to run", timeout_s=60, namespace=ns, name="claims-gpu",
    )  # fmt: skip
    node = running["spec"]["nodeName"]
    assert node in ("gpu-dra-0", "gpu-dra-1")
    [claim] = admin.list_objects("resource.k8s.io/v1", "ResourceClaim", namespace=ns)
    [result] = claim["status"]["allocation"]["devices"]["results"]
    assert result["driver"] == "gpu.example.com"
    assert result["pool"] == node, "the scheduler must pick a device of the pod's node"
    assert result["device"].startswith("gpu-")
    assert {
        "resource": "pods",
        "name": "claims-gpu",
        "uid": running["metadata"]["uid"],
    }.items() <= (claim["status"]["reservedFor"][0].items())


def test_device_plugin_gpus_are_scheduled_by_extended_resource(admin: Cluster, ns: str) -> None:
    admin.apply({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "dp", "namespace": ns},
        "spec": {"tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}],
                 "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10",
                                 "resources": {"limits": {"nvidia.com/gpu": "4"}}}]},
    })  # fmt: skip
    pod = admin.wait_for(
        "v1", "Pod", lambda pods: pods[0] if pods and pods[0]["spec"].get("nodeName") else None,
        awaiting="scheduling", timeout_s=60, namespace=ns, name="dp",
    )  # fmt: skip
    assert pod["spec"]["nodeName"] in ("gpu-dp-0", "gpu-dp-1")


def unschedulable(pods: list[Obj]) -> Obj | None:
    for pod in pods:
        for cond in pod.get("status", {}).get("conditions", []) or []:
            if cond["type"] == "PodScheduled" and cond.get("reason") == "Unschedulable":
                return cond
    return None


@pytest.mark.box(without=BARE)
def test_without_dra_driver_no_devices_exist_and_claims_cannot_be_met(box: sbx.Sandbox) -> None:
    cluster = admin_of(box)
    assert cluster.list_objects("resource.k8s.io/v1", "ResourceSlice") == []
    assert cluster.list_objects("resource.k8s.io/v1", "DeviceClass") == []
    namespaces = scratch_namespace(cluster)
    namespace = next(namespaces)
    template, pod = claim_pod(namespace)
    cluster.apply(template)
    cluster.apply(pod)
    cond = cluster.wait_for("v1", "Pod", unschedulable, awaiting="the pod to be unschedulable",
                            timeout_s=60, namespace=namespace)  # fmt: skip
    assert "gpu.example.com" in cond["message"]


def test_down_stops_every_process_and_frees_the_port(tmp_path: Path) -> None:
    directory = tmp_path / "box"
    box = sbx.up(directory)
    port = int(box.server.rsplit(":", 1)[1])
    assert sbx.is_running(directory)
    assert processes.listening(port)
    stopped = sbx.down(directory)
    assert set(stopped) == set(box.pids)
    assert not any(processes.alive(pid) for pid in box.pids.values())
    assert not processes.listening(port)
    assert not directory.exists()


def test_service_account_tokens_work_and_rbac_is_enforced(admin: Cluster, ns: str) -> None:
    token = admin.core.create_namespaced_service_account_token(
        "default", ns, {"spec": {"audiences": ["https://kubernetes.default.svc.cluster.local"]}}
    ).status.token
    cfg = client.Configuration()
    cfg.host = admin.configuration.host
    cfg.ssl_ca_cert = admin.configuration.ssl_ca_cert
    cfg.api_key = {"authorization": f"Bearer {token}"}
    as_sa = client.CoreV1Api(client.ApiClient(cfg))
    with pytest.raises(client.ApiException) as denied:
        as_sa.list_node()
    assert denied.value.status == 403  # authenticated as the SA, refused by RBAC
    assert f"system:serviceaccount:{ns}:default" in str(denied.value.body)
    cfg.api_key = {"authorization": "Bearer not-a-token"}
    with pytest.raises(client.ApiException) as unknown:
        client.CoreV1Api(client.ApiClient(cfg)).list_node()
    assert unknown.value.status == 401
