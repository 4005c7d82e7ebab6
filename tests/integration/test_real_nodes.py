"""Real nodes: a kubelet with its own containerd runs pods as containers (runc, CNI), beside
KWOK's nodes, and `down` leaves none of it behind."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conformance import sandbox as sbx
from conformance.cluster import Cluster, ObjectRef
from conformance.probes import PROBE_IMAGE
from conformance.sandbox import images, processes, real_nodes, topology
from conformance.sandbox.build import KUBERNETES_VERSION
from tests.integration.conftest import admin_of

pytestmark = pytest.mark.sandbox
Obj = dict[str, Any]
NODE = real_nodes.SYSTEM
GPU_NODE = "gpu-dp-1"  # real in the default topology
RESTRICTED = {"runAsNonRoot": True, "runAsUser": 65532, "allowPrivilegeEscalation": False,
              "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]},
              "seccompProfile": {"type": "RuntimeDefault"}}  # fmt: skip


def kubectl(box: sbx.Sandbox, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [str(Path(box.cache) / "bin" / "kubectl"), "--kubeconfig", str(box.kubeconfig), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)


def pod_on_the_real_node(name: str, namespace: str, script: str) -> Obj:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace},
            "spec": {"nodeSelector": {"kubernetes.io/hostname": NODE.name},
                     "tolerations": [{"key": real_nodes.LABEL[0], "operator": "Exists"}],
                     "containers": [{
                         "name": "probe", "image": images.BUSYBOX_IMAGE,
                         "imagePullPolicy": "IfNotPresent",  # from the sandbox's registry
                         "command": ["/bin/sh", "-c", script],
                         "securityContext": RESTRICTED,
                         "readinessProbe": {"exec": {"command": ["/bin/test", "-f", "/tmp/ready"]},
                                            "periodSeconds": 1},
                         "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}]}],
                     "volumes": [{"name": "tmp", "emptyDir": {}}]}}  # fmt: skip


def wait_ready(cluster: Cluster, namespace: str, name: str) -> Obj:
    def ready(objs: list[Obj]) -> Obj | None:
        conditions = (objs[0].get("status") or {}).get("conditions") or [] if objs else []
        return objs[0] if any(c["type"] == "Ready" and c["status"] == "True"
                              for c in conditions) else None  # fmt: skip

    found: Obj = cluster.wait_for("v1", "Pod", ready, awaiting=f"Pod/{namespace}/{name} Ready",
                                  timeout_s=90, namespace=namespace, name=name)  # fmt: skip
    return found


@pytest.fixture
def restricted_ns(admin: Cluster) -> Iterator[str]:
    name = f"it-real-{uuid.uuid4().hex[:6]}"
    admin.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": {
        "pod-security.kubernetes.io/enforce": "restricted"}}})  # fmt: skip
    admin.wait_for("v1", "ServiceAccount", lambda o: o or None, awaiting="default SA",
                   timeout_s=60, namespace=name, name="default")  # fmt: skip
    yield name
    admin.delete(ObjectRef("v1", "Namespace", name))


def test_a_real_node_registers_its_kubelet_and_container_runtime(
    sandbox: sbx.Sandbox, admin: Cluster
) -> None:
    node = admin.get(ObjectRef("v1", "Node", NODE.name))
    assert node is not None, f"no Node {NODE.name}"
    info = node["status"]["nodeInfo"]
    assert info["kubeletVersion"] == KUBERNETES_VERSION
    assert info["containerRuntimeVersion"].startswith("containerd://2.4.2")
    assert {"type": "InternalIP", "address": NODE.ip} in node["status"]["addresses"]
    assert real_nodes.TAINT in node["spec"]["taints"]
    assert node["metadata"]["labels"][real_nodes.LABEL[0]] == real_nodes.LABEL[1]
    ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}
    assert ready["Ready"] == "True"
    status = sbx.describe(sandbox.directory)  # kaic sandbox status
    assert f"real node {NODE.name}: Ready, kubelet {KUBERNETES_VERSION}, containerd://2.4.2" in (
        status
    )


def test_a_pod_runs_as_a_container_under_restricted(
    sandbox: sbx.Sandbox, admin: Cluster, restricted_ns: str
) -> None:
    script = "echo started as $(id -u); touch /tmp/ready; exec sleep 3600"
    admin.apply(pod_on_the_real_node("probe", restricted_ns, script))
    pod = wait_ready(admin, restricted_ns, "probe")  # readiness: an exec probe, by the kubelet
    assert pod["spec"]["nodeName"] == NODE.name
    assert pod["status"]["podIP"].startswith(NODE.pod_cidr.rsplit(".", 2)[0] + ".")
    logs = kubectl(sandbox, "-n", restricted_ns, "logs", "probe")
    assert logs.stdout.strip() == "started as 65532", logs.stderr
    cgroup = kubectl(sandbox, "-n", restricted_ns, "exec", "probe", "--", "/bin/cat",
                     "/proc/self/cgroup")  # fmt: skip
    assert f"/{real_nodes.cgroup(sandbox.directory, NODE)}/kubepods" in cgroup.stdout, cgroup
    write = kubectl(sandbox, "-n", restricted_ns, "exec", "probe", "--", "/bin/touch", "/x")
    assert write.returncode != 0
    assert "Read-only file system" in write.stdout + write.stderr


def test_the_probe_image_built_here_runs_a_probe_under_restricted(
    sandbox: sbx.Sandbox, admin: Cluster, restricted_ns: str
) -> None:
    """The project's Dockerfile, built with buildah on a debootstrapped Debian base, pushed by
    `up` to the sandbox's registry and pulled from there by its public name, runs the probe agent
    as the checks' pods do."""
    admin.apply(agent_pod("agent", restricted_ns, NODE.name))
    wait_ready(admin, restricted_ns, "agent")
    report = json.loads(kubectl(sandbox, "-n", restricted_ns, "logs", "agent").stdout)
    assert report["hostname"] == "agent"
    assert report["gpu_device_nodes"] == []  # no GPU on this node, none asked for
    assert report["nvml"]["available"] is False


def agent_pod(name: str, namespace: str, node: str, gpus: int = 0) -> Obj:
    """The probe agent's `devices` report, from the probe image, as the checks' pods run it."""
    pod = pod_on_the_real_node(name, namespace, "")
    pod["spec"]["nodeSelector"] = {"kubernetes.io/hostname": node}
    pod["spec"]["tolerations"].append({"key": "nvidia.com/gpu", "operator": "Exists"})
    container = pod["spec"]["containers"][0]
    del container["readinessProbe"]
    container |= {
        "image": PROBE_IMAGE,
        "command": ["python", "-m", "conformance.agent", "devices", "--hold", "600"],
    }
    if gpus:
        container["resources"] = {"limits": {"nvidia.com/gpu": gpus}}
    return pod


def test_a_real_gpu_node_hands_its_gpus_to_a_container_through_the_device_plugin(
    sandbox: sbx.Sandbox, admin: Cluster, restricted_ns: str
) -> None:
    """gpu-dp-1 is real: its kubelet advertises the emulated device plugin's GPUs, and a
    container gets exactly the device nodes of the GPUs Allocate gave it, their UUIDs, and the
    loaded driver's version, as on an NVIDIA node; a container that asked for none gets none."""
    assert GPU_NODE in sandbox.real_nodes
    node = admin.get(ObjectRef("v1", "Node", GPU_NODE))
    assert node["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://")
    assert node["status"]["allocatable"]["nvidia.com/gpu"] == "4"
    assert topology.GPU_TAINT in node["spec"]["taints"]
    admin.apply(agent_pod("two", restricted_ns, GPU_NODE, gpus=2))
    admin.apply(agent_pod("none", restricted_ns, GPU_NODE))
    wait_ready(admin, restricted_ns, "two")
    wait_ready(admin, restricted_ns, "none")
    two = json.loads(kubectl(sandbox, "-n", restricted_ns, "logs", "two").stdout)
    uuids = {topology.gpu_uuid(GPU_NODE, i): i for i in range(4)}
    assert len(two["visible_devices"]) == 2
    assert set(two["visible_devices"]) <= set(uuids)
    assert two["gpu_device_nodes"] == sorted(
        f"/dev/nvidia{uuids[u]}" for u in two["visible_devices"]
    )
    assert "/dev/nvidiactl" in two["device_nodes"]
    assert two["drivers"] == {"nvidia": "570.124.06"}
    none = json.loads(kubectl(sandbox, "-n", restricted_ns, "logs", "none").stdout)
    assert (none["device_nodes"], none["visible_devices"], none["drivers"]) == ([], [], {})


def test_down_leaves_no_container_mount_or_cgroup_of_a_real_node(tmp_path: Path) -> None:
    directory = tmp_path / "box"
    box = sbx.up(directory, without=["gateway", "prometheus", "kueue", "lws", "autoscaler",
                                     "kuberay", "kubeflow-trainer"])  # fmt: skip
    try:
        cluster = admin_of(box)
        cluster.apply(pod_on_the_real_node("left", "default", "touch /tmp/ready; sleep 3600"))
        wait_ready(cluster, "default", "left")
        holder = box.pids[f"{NODE.name}-namespaces"]
        inside = Path(f"/proc/{holder}/mountinfo").read_text()
        # a running pod's rootfs, volumes and network namespace: in the node's mount namespace
        assert " overlay " in inside
        assert "/netns/cni-" in inside
        assert " /var/lib/kubelet " in inside
        assert real_nodes.mounts_under((directory,)) == []  # none of it on the host
    finally:
        sbx.down(directory)
    assert not processes.alive(holder)  # its mount namespace is gone with it
    assert real_nodes.mounts_under((directory, real_nodes.run_dir(directory, NODE))) == []
    group = real_nodes.cgroup(directory, NODE)
    assert list(real_nodes.CGROUP_FS.glob(f"*/{group}")) == []
    marks = (str(directory), str(real_nodes.run_dir(directory, NODE)))
    survivors = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(mark in text for mark in marks):
            survivors.append(text)
    assert survivors == []
