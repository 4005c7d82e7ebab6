"""The AI stack in the sandbox: Kueue admission, LWS groups, the probe runtime, and the faults
that remove or break each of them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from conformance import sandbox as sbx
from conformance.cluster import Cluster
from conformance.cluster.wait import WaitTimeout
from conformance.probes import PROBE_IMAGE
from tests.integration.conftest import BARE, admin_of, broken
from tests.integration.test_sandbox import scratch_namespace

pytestmark = pytest.mark.sandbox
Obj = dict[str, Any]
LWS_NAME = "leaderworkerset.sigs.k8s.io/name"


@pytest.fixture
def ns(admin: Cluster) -> Iterator[str]:
    yield from scratch_namespace(admin)


def queued_job(namespace: str, queue: str = "lq") -> list[Obj]:
    return [
        {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "LocalQueue",
         "metadata": {"name": queue, "namespace": namespace},
         "spec": {"clusterQueue": "sandbox"}},
        {"apiVersion": "batch/v1", "kind": "Job",
         "metadata": {"name": "queued", "namespace": namespace,
                      "labels": {"kueue.x-k8s.io/queue-name": queue}},
         "spec": {"parallelism": 2, "completions": 2, "template": {"spec": {
             "restartPolicy": "Never",
             "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10",
                             "resources": {"requests": {"cpu": "1"}}}]}}}},
    ]  # fmt: skip


def test_job_for_a_local_queue_is_suspended_then_admitted(admin: Cluster, ns: str) -> None:
    lq, job = queued_job(ns)
    admin.apply(lq)
    created = admin.apply(job)
    # Kueue's mutating webhook suspends the Job at creation, before any pod exists.
    assert created["spec"]["suspend"] is True
    workload = admin.wait_for(
        "kueue.x-k8s.io/v1beta2", "Workload",
        lambda wls: next((w for w in wls if any(
            c["type"] == "Admitted" and c["status"] == "True"
            for c in (w.get("status") or {}).get("conditions") or [])), None),
        awaiting="the Job's Workload to be admitted", timeout_s=60, namespace=ns,
    )  # fmt: skip
    assert workload["status"]["admission"]["clusterQueue"] == "sandbox"
    admin.wait_for("batch/v1", "Job", lambda jobs: jobs and jobs[0]["spec"]["suspend"] is False,
                   awaiting="the Job to be unsuspended", timeout_s=60, namespace=ns,
                   name="queued")  # fmt: skip


def test_waitforpodsready_is_configured(sandbox: Any) -> None:
    config = (sandbox.directory / "kueue-config.yaml").read_text()
    assert "waitForPodsReady" in config
    assert "blockAdmission: true" in config


def lws(namespace: str, size: int = 3) -> Obj:
    return {
        "apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet",
        "metadata": {"name": "group", "namespace": namespace},
        "spec": {"replicas": 1, "leaderWorkerTemplate": {"size": size, "workerTemplate": {
            "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]}}}},
    }  # fmt: skip


def running_group(cluster: Cluster, namespace: str, size: int = 3) -> list[Obj]:
    return cluster.wait_for(
        "v1", "Pod",
        lambda pods: pods if len([p for p in pods if (p.get("status") or {}).get("phase")
                                  == "Running"]) == size else None,
        awaiting=f"{size} running pods of the group", timeout_s=60, namespace=namespace,
        label_selector=f"{LWS_NAME}=group",
    )  # fmt: skip


def test_lws_creates_its_group_with_labels_and_env(admin: Cluster, ns: str) -> None:
    admin.apply(lws(ns))
    pods = {p["metadata"]["labels"]["leaderworkerset.sigs.k8s.io/worker-index"]: p
            for p in running_group(admin, ns)}  # fmt: skip
    assert set(pods) == {"0", "1", "2"}
    leader = pods["0"]
    assert leader["metadata"]["labels"]["leaderworkerset.sigs.k8s.io/group-index"] == "0"
    env = {e["name"]: e.get("value") for e in pods["2"]["spec"]["containers"][0]["env"]}
    assert env["LWS_GROUP_SIZE"] == "3"
    assert env["LWS_WORKER_INDEX"] == "2"
    assert env["LWS_LEADER_ADDRESS"].startswith("group-0.group.")


def test_lws_recreates_the_group_when_a_worker_is_deleted(admin: Cluster, ns: str) -> None:
    admin.apply(lws(ns))
    before = {p["metadata"]["uid"] for p in running_group(admin, ns)}
    admin.core.delete_namespaced_pod("group-0-1", ns)
    admin.wait_for(
        "v1", "Pod",
        lambda pods: len(pods) == 3 and not before & {p["metadata"]["uid"] for p in pods}
        and all((p.get("status") or {}).get("phase") == "Running" for p in pods),
        awaiting="a whole new group (3 new pod UIDs)", timeout_s=90, namespace=ns,
        label_selector=f"{LWS_NAME}=group",
    )  # fmt: skip


def probe_pod(namespace: str, name: str, code: str, **spec: Any) -> Obj:
    container = {"name": "probe", "image": PROBE_IMAGE, "command": ["python", "-c", code]}
    container.update(spec.pop("container", {}))
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace},
            "spec": {"restartPolicy": "Never", "containers": [container], **spec}}  # fmt: skip


def finished(cluster: Cluster, namespace: str, name: str) -> Obj:
    return cluster.wait_for(
        "v1", "Pod", lambda pods: pods[0] if pods and (pods[0].get("status") or {}).get("phase")
        in ("Succeeded", "Failed") else None,
        awaiting=f"pod {name} to finish", timeout_s=60, namespace=namespace, name=name,
    )  # fmt: skip


PRINT_DEVICES = (
    "import json, os; print(json.dumps({k: v for k, v in os.environ.items() "
    "if k.startswith(('GPU_DEVICE_', 'NVIDIA_VISIBLE_DEVICES', 'KAIC_POD_IP'))}))"
)


def test_probe_pod_sees_its_dra_devices_and_logs_come_back(admin: Cluster, ns: str) -> None:
    admin.apply({
        "apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaimTemplate",
        "metadata": {"name": "two", "namespace": ns},
        "spec": {"spec": {"devices": {"requests": [
            {"name": "gpu", "exactly": {"deviceClassName": "gpu.example.com", "count": 2}}]}}},
    })  # fmt: skip
    admin.apply(probe_pod(
        ns, "sees", PRINT_DEVICES,
        resourceClaims=[{"name": "gpu", "resourceClaimTemplateName": "two"}],
        container={"resources": {"claims": [{"name": "gpu"}]}},
    ))  # fmt: skip
    pod = finished(admin, ns, "sees")
    assert pod["status"]["phase"] == "Succeeded"
    seen = json.loads(admin.pod_logs("sees", ns).strip().splitlines()[-1])
    # The generated claim is released once the pod is done; its devices came from the slice of
    # the node the scheduler chose.
    [node_slice] = admin.list_objects(
        "resource.k8s.io/v1",
        "ResourceSlice",
        field_selector=f"spec.nodeName={pod['spec']['nodeName']}",
    )
    published = {d["name"] for d in node_slice["spec"]["devices"]}
    devices = {seen["GPU_DEVICE_0"], seen["GPU_DEVICE_1"]}
    assert len(devices) == 2
    assert devices <= published
    assert "GPU_DEVICE_2" not in seen
    assert seen["KAIC_POD_IP"] == pod["status"]["podIP"]


def test_probe_pod_exit_code_sets_the_phase(admin: Cluster, ns: str) -> None:
    admin.apply(probe_pod(ns, "fails", "import sys; print('bye'); sys.exit(7)"))
    pod = finished(admin, ns, "fails")
    assert pod["status"]["phase"] == "Failed"
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 7
    assert admin.pod_logs("fails", ns).strip() == "bye"


def device_plugin_probe(namespace: str) -> Obj:
    """Two GPUs on gpu-dp-0 (not gpu-ts-0, where two time-sliced replicas are one GPU)."""
    return probe_pod(
        namespace, "dp", PRINT_DEVICES, nodeSelector={"kubernetes.io/hostname": "gpu-dp-0"},
        tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists"}],
        container={"resources": {"limits": {"nvidia.com/gpu": "2"}}},
    )  # fmt: skip


def test_device_plugin_probe_sees_its_gpus(admin: Cluster, ns: str) -> None:
    admin.apply(device_plugin_probe(ns))
    finished(admin, ns, "dp")
    seen = json.loads(admin.pod_logs("dp", ns).strip().splitlines()[-1])
    assert len(seen["NVIDIA_VISIBLE_DEVICES"].split(",")) == 2


def test_fault_device_plugin_no_devices(admin: Cluster, sandbox: sbx.Sandbox, ns: str) -> None:
    with broken(sandbox, "device-plugin-no-devices"):
        node = {n["metadata"]["name"]: n for n in admin.list_objects("v1", "Node")}["gpu-dp-0"]
        assert node["status"]["allocatable"]["nvidia.com/gpu"] == "4"  # still advertised
        admin.apply(device_plugin_probe(ns))
        finished(admin, ns, "dp")
    seen = json.loads(admin.pod_logs("dp", ns).strip().splitlines()[-1])
    assert "NVIDIA_VISIBLE_DEVICES" not in seen


@pytest.mark.box(without=BARE)
def test_fault_without_kueue_and_lws(box: sbx.Sandbox) -> None:
    cluster = admin_of(box)
    assert not cluster.serves("kueue.x-k8s.io/v1beta2", "ClusterQueue")
    assert not cluster.serves("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet")
    assert "kueue" not in box.pids
    assert "lws" not in box.pids
    namespace = next(scratch_namespace(cluster))
    _, job = queued_job(namespace)
    created = cluster.apply(job)  # nobody holds it back
    assert not created["spec"].get("suspend")


def test_fault_lws_group_restart_leaves_the_group_alone(
    admin: Cluster, sandbox: sbx.Sandbox, ns: str
) -> None:
    with broken(sandbox, "lws-group-restart"):
        group_not_restarted(admin, ns)
    # The controller tried, and the API server refused it.
    assert "sandbox fault lws-group-restart" in (sandbox.directory / "logs" / "lws.log").read_text()


def group_not_restarted(cluster: Cluster, namespace: str) -> None:
    stored = cluster.apply(lws(namespace))
    # The object is untouched: it is the controller that cannot act.
    assert stored["spec"]["leaderWorkerTemplate"]["restartPolicy"] == "RecreateGroupOnPodRestart"
    pods = {p["metadata"]["name"]: p["metadata"]["uid"] for p in running_group(cluster, namespace)}
    cluster.core.delete_namespaced_pod("group-0-1", namespace)
    replaced = cluster.wait_for(
        "v1", "Pod",
        lambda ps: ps if len(ps) == 3 and {p["metadata"]["uid"] for p in ps} != set(pods.values())
        and all((p.get("status") or {}).get("phase") == "Running" for p in ps) else None,
        awaiting="the deleted worker to come back", timeout_s=60, namespace=namespace,
        label_selector=f"{LWS_NAME}=group",
    )  # fmt: skip
    now = {p["metadata"]["name"]: p["metadata"]["uid"] for p in replaced}
    assert now["group-0"] == pods["group-0"], "the leader must survive: no group restart"
    assert now["group-0-2"] == pods["group-0-2"]
    assert now["group-0-1"] != pods["group-0-1"]
    with pytest.raises(WaitTimeout):
        cluster.wait_for("v1", "Pod", lambda ps: next((p for p in ps if p["metadata"]["uid"]
                                                       != pods["group-0"]), None),
                         awaiting="a new leader", timeout_s=10, namespace=namespace,
                         name="group-0")  # fmt: skip
