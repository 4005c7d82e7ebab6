"""What the real nodes are configured with, and the images they start with (no processes)."""

from __future__ import annotations

import hashlib
import io
import ipaddress
import json
import tarfile
import tomllib
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from conformance.errors import KaicError
from conformance.probes import PROBE_IMAGE
from conformance.sandbox import images, netns, probe_image, real_nodes, registry, topology

NODE = real_nodes.SYSTEM


def _real_topology(kinds: tuple[str, ...] = ("cpu", "device-plugin")) -> tuple[
    list[topology.NodeSpec], dict[str, Any]
]:  # fmt: skip
    """The default topology with every node of these kinds real."""
    topo, specs = topology.load()
    return [replace(s, real=s.kind in kinds) for s in specs], topo


def test_a_real_gpu_node_is_labelled_and_tainted_as_its_kwok_twin_would_be() -> None:
    specs, topo = _real_topology()
    nodes = {n.name: n for n in real_nodes.nodes(specs, topo)}
    assert set(nodes) == {"system-0", "cpu-0", "gpu-dp-0", "gpu-dp-1", "gpu-ts-0"}
    assert [n.index for n in nodes.values()] == list(range(len(nodes)))
    gpu = nodes["gpu-dp-1"]
    kwok, _status = topology.node_manifest(next(s for s in specs if s.name == "gpu-dp-1"), topo)
    labels = dict(gpu.labels)
    assert labels.pop(real_nodes.LABEL[0]) == real_nodes.LABEL[1]
    assert labels.items() <= kwok["metadata"]["labels"].items()
    assert labels["nvidia.com/gpu.count"] == "4"
    assert gpu.taints == (topology.GPU_TAINT,)  # not the system's taint
    assert gpu.driver == "570.124.06"  # as /sys/module/nvidia/version prints 570.124.6
    assert (nodes["cpu-0"].driver, nodes["cpu-0"].taints) == ("", ())
    assert nodes["system-0"].taints == (real_nodes.TAINT,)
    config = real_nodes.kubelet_config(Path("/tmp/x"), gpu, Path("ca"), (Path("c"), Path("k")), [])
    assert config["registerWithTaints"] == [topology.GPU_TAINT]


def test_a_real_dra_node_is_refused_until_its_driver_runs_there() -> None:
    specs, topo = _real_topology(("dra",))
    with pytest.raises(KaicError, match="gpu-dra-0: a real node of kind dra is not supported"):
        real_nodes.nodes(specs, topo)


def members(archive: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}  # type: ignore[union-attr]


def test_an_image_archive_names_the_image_and_its_layer_digest() -> None:
    files = [images.File("/bin/tool", b"\x7fELF..."), images.File("/bin/sh", link="tool")]
    archive = images.archive("example.com/team/tool:1.0", files, ["/bin/tool"], "65532")
    found = members(archive)
    manifest = json.loads(found["manifest.json"])
    assert manifest == [{"Config": "config.json", "RepoTags": ["example.com/team/tool:1.0"],
                         "Layers": ["layer.tar"]}]  # fmt: skip
    config = json.loads(found["config.json"])
    digest = hashlib.sha256(found["layer.tar"]).hexdigest()
    assert config["rootfs"]["diff_ids"] == [f"sha256:{digest}"]
    assert config["config"]["User"] == "65532"
    with tarfile.open(fileobj=io.BytesIO(found["layer.tar"])) as layer:
        entries = {m.name: m for m in layer}
    assert entries["bin"].isdir()
    assert entries["bin/tool"].mode == 0o755
    assert entries["bin/sh"].issym()
    assert entries["bin/sh"].linkname == "tool"
    # the same files make the same image: cached by content
    assert images.archive("example.com/team/tool:1.0", files, ["/bin/tool"], "65532") == archive


def test_containerd_keeps_to_the_nodes_own_folders_and_runc() -> None:
    directory = Path("/tmp/some/sandbox")
    config = tomllib.loads(real_nodes.containerd_config(directory, NODE, Path("/bin-dir")))
    own = real_nodes.node_dir(directory, NODE)
    assert config["root"] == str(own / "containerd")
    socket = config["grpc"]["address"]
    assert socket.startswith(str(real_nodes.RUN_ROOT))
    assert len(socket) < 108
    runtime = config["plugins"]["io.containerd.cri.v1.runtime"]
    # this host gives no CAP_SYS_RESOURCE: runc could not lower a container's oom_score_adj
    assert runtime["restrict_oom_score_adj"] is True
    runc = runtime["containerd"]["runtimes"]["runc"]["options"]
    assert runc["BinaryName"] == str(real_nodes.RUNC)
    assert runc["SystemdCgroup"] is False
    images_ = config["plugins"]["io.containerd.cri.v1.images"]
    assert images_["pinned_images"]["sandbox"] == images.PAUSE_IMAGE
    assert runtime["cni"]["conf_dir"] == str(own / "cni")
    assert images_["registry"]["config_path"] == str(own / "certs.d")
    # a GPU node's containers go through the emulated NVIDIA container runtime, which runs runc
    specs, topo = _real_topology()
    gpu = {n.name: n for n in real_nodes.nodes(specs, topo)}["gpu-dp-1"]
    config = tomllib.loads(real_nodes.containerd_config(directory, gpu, Path("/bin-dir")))
    runtime = config["plugins"]["io.containerd.cri.v1.runtime"]
    wrapper = runtime["containerd"]["runtimes"]["runc"]["options"]["BinaryName"]
    assert wrapper == f"/bin-dir/{real_nodes.GPU_RUNTIME}"


def test_images_keep_their_public_names_in_the_sandboxs_registry() -> None:
    assert registry.path_of(PROBE_IMAGE) == PROBE_IMAGE
    assert registry.path_of(images.PAUSE_IMAGE) == "registry.k8s.io/pause:3.10.1"
    assert registry.path_of("busybox:1.35") == "docker.io/library/busybox:1.35"
    assert registry.path_of("team/tool:1") == "docker.io/team/tool:1"
    with pytest.raises(KaicError, match="mirrors only"):
        registry.path_of("quay.io/x/y:1")
    hosts = tomllib.loads(registry.hosts_toml("ghcr.io", 20050))
    mirror = hosts["host"]["http://169.254.1.1:20050/v2/ghcr.io"]
    assert mirror == {"capabilities": ["pull", "resolve"], "override_path": True}


def test_each_sandbox_and_node_has_its_own_cgroup_root() -> None:
    a, b = Path("/tmp/a"), Path("/tmp/b")
    assert real_nodes.cgroup(a, NODE) != real_nodes.cgroup(b, NODE)
    config = real_nodes.kubelet_config(a, NODE, Path("ca.crt"), (Path("c"), Path("k")), [])
    assert config["cgroupRoot"] == f"/{real_nodes.cgroup(a, NODE)}"
    assert config["failCgroupV1"] is False  # this host has cgroup v1 only
    assert config["authentication"] == {"anonymous": {"enabled": False},
                                        "webhook": {"enabled": True},
                                        "x509": {"clientCAFile": "ca.crt"}}  # fmt: skip
    assert config["authorization"] == {"mode": "Webhook"}


def test_real_nodes_pods_never_share_an_address_with_kwoks() -> None:
    kwok = ipaddress.ip_network(netns.KWOK_POD_CIDR)
    whole = ipaddress.ip_network(netns.POD_CIDR)
    ranges = [ipaddress.ip_network(n.pod_cidr) for n in real_nodes.nodes(*_real_topology())]
    for i, pods in enumerate(ranges):
        assert pods.subnet_of(whole)
        assert not pods.overlaps(kwok)
        assert all(not pods.overlaps(other) for other in ranges[i + 1 :])
    cni = real_nodes.cni_config(Path("/tmp/x"), NODE)
    assert cni["plugins"][0]["ipam"]["ranges"] == [[{"subnet": NODE.pod_cidr}]]  # type: ignore[index]


def test_the_node_namespace_holder_gives_the_kubelet_its_own_fixed_paths() -> None:
    script = real_nodes.holder_command(Path("/d/nodes/system-0"))[-1]
    assert "mount --bind /d/nodes/system-0/kubelet /var/lib/kubelet" in script
    assert "mount --bind /d/nodes/system-0/pod-logs /var/log/pods" in script
    assert script.endswith("exec sleep infinity")


def test_the_probe_image_is_keyed_by_what_the_dockerfile_copies(tmp_path: Path) -> None:
    for name in probe_image.CONTEXT:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if "." in Path(name).name or name == "Dockerfile":
            path.write_text(name)
        else:
            (path / "a.py").parent.mkdir(parents=True, exist_ok=True)
            (path / "a.py").write_text("x = 1\n")
    key = probe_image.content_key(tmp_path)
    (tmp_path / "conformance" / "__pycache__").mkdir()
    (tmp_path / "conformance" / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"\0")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "t.py").write_text("not copied")
    assert probe_image.content_key(tmp_path) == key  # caches and files it does not copy
    (tmp_path / "conformance" / "a.py").write_text("x = 2\n")
    assert probe_image.content_key(tmp_path) != key


def test_faults_shape_a_real_gpu_node_as_they_shape_its_kwok_twin(tmp_path: Path) -> None:
    specs, topo = _real_topology()
    breaks = ["device-plugin-no-devices", "device-plugin-unhealthy", "gpu-nodes-untainted",
              "driver-version-mismatch", "lws-group-restart"]  # fmt: skip
    gpu = {n.name: n for n in real_nodes.nodes(specs, topo, breaks)}["gpu-dp-1"]
    assert gpu.plugin_faults == ("device-plugin-no-devices", "device-plugin-unhealthy")
    assert gpu.taints == ()
    assert gpu.driver == "535.183.01"  # the host runs another driver than its labels say
    assert dict(gpu.labels)["nvidia.com/cuda.driver-version.full"] == "570.124.6"
    assert dict(gpu.labels)["faults.kaic.dev/device-plugin-no-devices"] == "true"
    real_nodes.write_hardware(tmp_path, gpu)
    own = real_nodes.node_dir(tmp_path, gpu) / "gpu"
    assert (own / "sys-module" / "nvidia" / "version").read_text() == "535.183.01\n"
    assert (own / "faults").read_text().split() == list(gpu.plugin_faults)
    gpus = (own / "gpus").read_text().split()
    assert gpus == gpu.uuids
    assert gpus == [topology.gpu_uuid("gpu-dp-1", i) for i in range(4)]
    mended = {n.name: n for n in real_nodes.nodes(specs, topo)}["gpu-dp-1"]
    real_nodes.write_hardware(tmp_path, mended)
    assert (own / "faults").read_text() == ""
    assert (own / "sys-module" / "nvidia" / "version").read_text() == "570.124.06\n"
