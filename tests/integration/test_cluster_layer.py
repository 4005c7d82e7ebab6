"""The cluster layer against a real API server: discovery, apply with labels, waits."""

from __future__ import annotations

import re
from typing import Any

import pytest

from conformance.cluster import Cluster, ConnectOptions, ObjectRef, WaitTimeout, connect
from conformance.cluster.discovery import discover
from conformance.cluster.labels import MANAGED_BY, RUN_ID

pytestmark = pytest.mark.sandbox


@pytest.fixture(scope="module")
def cluster(sandbox_box: Any) -> Cluster:
    return connect(ConnectOptions(kubeconfig=str(sandbox_box.kubeconfig)), run_id="it-layer")


def test_discovery_finds_version_apis_crds_and_accelerators(cluster: Cluster) -> None:
    info = discover(cluster)
    assert info.version.startswith("v1.35.")
    assert info.serves("resource.k8s.io/v1")
    assert "clusterqueues.kueue.x-k8s.io" in info.crds
    assert "leaderworkersets.leaderworkerset.x-k8s.io" in info.crds
    assert info.accelerators() == {"nvidia": {"device-plugin"}, "example": {"dra"}}
    nodes = {n.name: n for n in info.nodes}
    assert nodes["gpu-dp-0"].device_plugin_gpus() == {"nvidia": 4}
    assert nodes["gpu-dra-1"].dra_devices == {"gpu.example.com": 4}
    assert "nvidia.com/gpu=present:NoSchedule" in nodes["gpu-dp-1"].taints


def test_apply_labels_every_object_and_is_idempotent(cluster: Cluster) -> None:
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "it-layer-apply"}}
    first = cluster.apply(body, check_id="demo.apply")
    second = cluster.apply(body, check_id="demo.apply")
    try:
        labels = second["metadata"]["labels"]
        assert labels[MANAGED_BY] == "kaic"
        assert labels[RUN_ID] == "it-layer"
        assert labels["kaic.dev/check"] == "demo.apply"
        assert first["metadata"]["uid"] == second["metadata"]["uid"]
    finally:
        assert cluster.delete(ObjectRef("v1", "Namespace", "it-layer-apply"))


def test_wait_timeout_says_what_was_awaited_and_the_last_state(cluster: Cluster) -> None:
    with pytest.raises(WaitTimeout) as err:
        cluster.wait_for(
            "v1", "Node", lambda nodes: None, awaiting="a node that never comes",
            timeout_s=2, label_selector="type=kwok",
        )  # fmt: skip
    message = str(err.value)
    assert message.startswith("timed out after 2s waiting for a node that never comes; last state:")
    assert re.search(r"Node/cpu-0\(.*Ready=True", message)
    assert message.endswith(
        ". Next: kubectl describe node -l type=kwok (its conditions and events), and the logs of "
        "the controller that should act on it"
    )


def test_wait_returns_as_soon_as_the_condition_holds(cluster: Cluster) -> None:
    ns = "it-layer-wait"
    cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    try:
        cluster.apply({"apiVersion": "v1", "kind": "ConfigMap",
                       "metadata": {"name": "c", "namespace": ns}, "data": {"k": "v"}})  # fmt: skip
        got = cluster.wait_for("v1", "ConfigMap", lambda cms: cms[0]["data"] if cms else None,
                               awaiting="the ConfigMap", timeout_s=10, namespace=ns,
                               name="c")  # fmt: skip
        assert got == {"k": "v"}
    finally:
        cluster.delete(ObjectRef("v1", "Namespace", ns))
