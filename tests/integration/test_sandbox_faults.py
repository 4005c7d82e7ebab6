"""More faults, each a real change in the running cluster, shown next to the healthy behaviour:
a GPU leak to pods that asked for none, LWS webhooks down, Kueue without all-or-nothing.

Each fault is applied to the shared sandbox for the test (kaic sandbox break) and mended after.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes.client import ApiException

from conformance import sandbox as sbx
from conformance.cli import main
from conformance.cluster import Cluster, ObjectRef
from conformance.cluster.wait import WaitTimeout
from tests.integration.conftest import BARE, broken
from tests.integration.test_sandbox import scratch_namespace
from tests.integration.test_sandbox_stack import PRINT_DEVICES, finished, lws, probe_pod

pytestmark = pytest.mark.sandbox
Obj = dict[str, Any]


@pytest.fixture
def healthy_ns(admin: Cluster) -> Iterator[tuple[Cluster, str]]:
    for namespace in scratch_namespace(admin):
        yield admin, namespace


def devices_seen_without_request(cluster: Cluster, namespace: str, node: str) -> Obj:
    pod = probe_pod(
        namespace, f"no-request-{node}", PRINT_DEVICES,
        nodeName=node, tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists"}],
    )  # fmt: skip
    cluster.apply(pod)
    done = finished(cluster, namespace, pod["metadata"]["name"])
    assert done["status"]["phase"] == "Succeeded"
    seen: Obj = json.loads(cluster.pod_logs(pod["metadata"]["name"], namespace).splitlines()[-1])
    return seen


def test_healthy_gpu_nodes_show_no_device_to_pods_that_asked_for_none(
    healthy_ns: tuple[Cluster, str],
) -> None:
    cluster, namespace = healthy_ns
    for node in ("gpu-dp-0", "gpu-dra-0"):  # a real node and a KWOK one
        seen = devices_seen_without_request(cluster, namespace, node)
        # the probe runtime (KWOK's nodes) adds the pod's IP; a kubelet does not
        assert set(seen) - {"KAIC_POD_IP"} == set(), f"{node} leaked devices: {seen}"


def test_fault_gpu_visible_without_request(
    sandbox: sbx.Sandbox, healthy_ns: tuple[Cluster, str]
) -> None:
    cluster, namespace = healthy_ns
    with broken(sandbox, "gpu-visible-without-request"):
        dp = devices_seen_without_request(cluster, namespace, "gpu-dp-0")
        dra = devices_seen_without_request(cluster, namespace, "gpu-dra-0")
    assert len(dp["NVIDIA_VISIBLE_DEVICES"].split(",")) == 4
    assert {k: v for k, v in dra.items() if k.startswith("GPU_DEVICE_")} == {
        f"GPU_DEVICE_{i}": f"gpu-{i}" for i in range(4)
    }


def test_fault_lws_webhook_down(sandbox: sbx.Sandbox, healthy_ns: tuple[Cluster, str]) -> None:
    with broken(sandbox, "lws-webhook-down"):
        lws_webhook_down(*healthy_ns)
    cluster, namespace = healthy_ns
    assert cluster.apply(lws(namespace))["metadata"]["uid"], "mended: LWS admits again"


def lws_webhook_down(cluster: Cluster, namespace: str) -> None:
    hooks = cluster.list_objects(
        "admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration"
    )
    assert any(h["metadata"]["name"].startswith("lws-") for h in hooks), "still registered"
    with pytest.raises(ApiException) as caught:
        cluster.apply(lws(namespace))
    assert "failed calling webhook" in str(caught.value.body)
    assert "leaderworkerset" in str(caught.value.body)
    # Pods not of an LWS do not go through LWS's pod webhooks (its objectSelector), so they work.
    cluster.apply(probe_pod(namespace, "plain", "print('ok')"))
    assert finished(cluster, namespace, "plain")["status"]["phase"] == "Succeeded"


def job(namespace: str, name: str, resources: Obj) -> Obj:
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": namespace,
                     "labels": {"kueue.x-k8s.io/queue-name": "lq"}},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [
            {"name": "c", "image": "registry.k8s.io/pause:3.10",
             "resources": {"requests": resources, "limits": resources}}]}}},
    }  # fmt: skip


def admitted(name: str) -> Any:
    def check(workloads: list[Obj]) -> Obj | None:
        for wl in workloads:
            owners = {o["name"] for o in wl["metadata"].get("ownerReferences") or []}
            conditions = (wl.get("status") or {}).get("conditions") or []
            if name in owners and any(
                c["type"] == "Admitted" and c["status"] == "True" for c in conditions
            ):
                return wl
        return None

    return check


def second_job_admitted_while_first_is_not_ready(cluster: Cluster, namespace: str) -> bool:
    """Job `stuck` is admitted (its GPU fits the quota) but its pod can never be scheduled (no
    toleration for the GPU taint), so it is never ready. With waitForPodsReady.blockAdmission
    Kueue admits nothing else meanwhile; without it, job `next` is admitted at once."""
    cluster.apply({"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "LocalQueue",
                   "metadata": {"name": "lq", "namespace": namespace},
                   "spec": {"clusterQueue": "sandbox"}})  # fmt: skip
    cluster.apply(job(namespace, "stuck", {"nvidia.com/gpu": "1", "cpu": "1"}))
    cluster.wait_for("kueue.x-k8s.io/v1beta2", "Workload", admitted("stuck"),
                     awaiting="job stuck to be admitted", timeout_s=60,
                     namespace=namespace)  # fmt: skip
    cluster.apply(job(namespace, "next", {"cpu": "1"}))
    try:
        cluster.wait_for("kueue.x-k8s.io/v1beta2", "Workload", admitted("next"),
                         awaiting="job next to be admitted", timeout_s=15,
                         namespace=namespace)  # fmt: skip
    except WaitTimeout:
        return False
    return True


def test_healthy_kueue_blocks_admission_until_pods_are_ready(
    healthy_ns: tuple[Cluster, str],
) -> None:
    assert not second_job_admitted_while_first_is_not_ready(*healthy_ns)


def test_fault_kueue_no_wait_for_pods_ready(
    sandbox: sbx.Sandbox, healthy_ns: tuple[Cluster, str]
) -> None:
    with broken(sandbox, "kueue-no-wait-for-pods-ready"):
        assert second_job_admitted_while_first_is_not_ready(*healthy_ns)


POLICY = ObjectRef(
    "admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicy",
    "kaic-sandbox-fault-lws-group-restart",
)  # fmt: skip


def test_break_and_mend_through_the_cli(
    sandbox: sbx.Sandbox, admin: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    where = ["--dir", str(sandbox.directory)]
    assert main(["sandbox", "break", "lws-group-restart", *where]) == 0
    assert "Broken now: lws-group-restart" in capsys.readouterr().out
    assert admin.get(POLICY) is not None
    assert "broken on purpose: lws-group-restart" in sbx.describe(sandbox.directory)
    assert main(["sandbox", "break", "lws-group-restart", *where]) == 0
    assert "lws-group-restart: already broken, nothing to do" in capsys.readouterr().err
    assert main(["sandbox", "mend", "lws-group-restart", *where]) == 0
    assert "Broken now: nothing" in capsys.readouterr().out
    assert admin.get(POLICY) is None
    assert "broken on purpose" not in sbx.describe(sandbox.directory)


@pytest.mark.box(without=BARE)
def test_a_fault_of_a_component_left_out_is_one_clear_error(
    box: sbx.Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["sandbox", "break", "lws-webhook-down", "--dir", str(box.directory)])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("lws-webhook-down: this sandbox was started without lws, which it changes")
    assert len(err.splitlines()) == 1
