"""Real nodes: a kubelet with a containerd of its own (Debian's runc, the CNI reference plugins)
per node, each node in network and mount namespaces of its own (see holder_command), joined to
the sandbox's network namespace as a machine on its network.

Node i has the address 10.243.0.(i+1) on `eth0`, a default route via the sandbox's gateway
address (169.254.1.1, answered by proxy ARP on the sandbox side, where the API server listens),
and the pod range 10.244.(128+i).0/24, routed to it from the sandbox's namespace; KWOK's pods take
10.244.0.0/17, so the two never share an address. Its pods get their network from CNI's `ptp`
and `host-local` plugins, as containerd's CRI plugin calls them.

Each node's processes and containers live in a cgroup tree of their own (`kaic-<sandbox>-<node>`
in every cgroup v1 hierarchy): the kubelet's `cgroupRoot`, with containerd and the kubelet in its
`system` child, so that containerd's shims, which leave their parent, are found and stopped with
the containers. `teardown` kills what is left there (the node's mounts go with its mount
namespace) and removes the cgroups.

Root on this host has no CAP_SYS_RESOURCE, so no process may lower its `oom_score_adj`:
containerd's `restrict_oom_score_adj` keeps the kubelet's negative values (for pause and
Guaranteed pods) at containerd's own, instead of runc failing to start them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from conformance.errors import KaicError
from conformance.sandbox import faults, images, netns, pki, processes, registry, topology
from conformance.sandbox.pod_network import GATEWAY

RUNC = Path("/usr/sbin/runc")  # Debian's runc (the Makefile installs it)
CNI_BIN = Path("/usr/lib/cni")  # Debian's containernetworking-plugins
CGROUP_FS = Path("/sys/fs/cgroup")
RUN_ROOT = Path("/run/kaic")  # sockets: short paths (a unix socket path has 108 bytes)
LABEL = ("kaic.dev/real-node", "true")
# The system node: only pods that say so land there (the sandbox's in-cluster components, later).
TAINT = {"key": LABEL[0], "value": LABEL[1], "effect": "NoSchedule"}
KUBELET_PORT = 10250
# Where a GPU node's emulated hardware is, in its mount namespace (hostPath for its exporter).
EMULATED_GPU = Path("/var/lib/kaic-emulated-gpu")
DEVICE_PLUGIN = "kaic-gpu-device-plugin"
# A GPU node's containers run through it (a runc wrapper, as NVIDIA's container runtime is).
GPU_RUNTIME = "kaic-nvidia-container-runtime"
# What a kubelet sets on the host (its kernel tunables): saved before the first real node of this
# host starts, put back when the last one is torn down.
KUBELET_SYSCTLS = (
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "kernel.panic",
    "kernel.panic_on_oops",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
)
SAVED_SYSCTLS = RUN_ROOT / "host-sysctls.json"
Record = Callable[[str, int], None]
Obj = dict[str, Any]


@dataclass(frozen=True)
class RealNode:
    name: str
    index: int
    spec: topology.NodeSpec | None = None  # None: the system node
    labels: tuple[tuple[str, str], ...] = (LABEL,)
    taints: tuple[Obj, ...] = (TAINT,)
    driver: str = ""  # the loaded NVIDIA driver, as /sys/module/nvidia/version says it
    plugin_faults: tuple[str, ...] = ()  # the faults its emulated device plugin makes

    @property
    def ip(self) -> str:
        return f"10.243.0.{self.index + 1}"

    @property
    def pod_cidr(self) -> str:
        return f"10.244.{128 + self.index}.0/24"

    @property
    def uuids(self) -> list[str]:
        """Its GPUs' UUIDs by index, as the driver enumerates them."""
        return [topology.gpu_uuid(self.name, i) for i in range(self.spec.gpus if self.spec else 0)]

    @property
    def gpus_allocatable(self) -> str | None:
        """`nvidia.com/gpu` as its kubelet should advertise it, given its plugin's faults."""
        if self.spec is None or not self.driver:
            return None
        if "device-plugin-unhealthy" in self.plugin_faults:
            return "0"
        single = "time-slicing-no-replicas" in self.plugin_faults
        return str(self.spec.gpus * (1 if single else self.spec.replicas))

    @property
    def link(self) -> str:
        """The sandbox's end of the node's cable."""
        return f"kn{self.index}{self.name[:8]}"


SYSTEM = RealNode("system-0", 0)


def nodes(
    specs: Iterable[topology.NodeSpec], topo: dict[str, Any], breaks: Sequence[str] = ()
) -> tuple[RealNode, ...]:
    """The system node, and the topology's nodes marked `real` (GPU nodes whose GPUs the
    emulated device plugin serves), shaped by the faults as their KWOK twins would be."""
    found = [SYSTEM]
    for spec in faults.node_specs(list(specs), breaks):
        if not spec.real:
            continue
        if spec.kind not in ("cpu", "device-plugin"):
            raise KaicError(f"sandbox topology: {spec.name}: a real node of kind {spec.kind} is "
                            "not supported yet (cpu or device-plugin)")  # fmt: skip
        labels = {LABEL[0]: LABEL[1], **topology.node_labels(spec, topo),
                  **faults.fault_labels(spec, breaks)}  # fmt: skip
        taints = faults.taints(spec, breaks)
        driver = topology.nvidia_module_version(spec.host_driver(topo))
        found.append(RealNode(spec.name, len(found), spec, tuple(labels.items()), tuple(taints),
                              driver if spec.kind == "device-plugin" else "",
                              tuple(faults.plugin_faults(spec, breaks))))  # fmt: skip
    return tuple(found)


def write_hardware(directory: Path, node: RealNode) -> None:
    """What the node's emulated GPUs and driver show: the loaded driver's version, as the
    kernel module prints it in /sys/module/nvidia/version, and the device plugin's faults."""
    own = node_dir(directory, node) / "gpu"
    (own / "sys-module" / "nvidia").mkdir(parents=True, exist_ok=True)
    (own / "sys-module" / "nvidia" / "version").write_text(f"{node.driver}\n")
    (own / "faults").write_text("".join(f"{f}\n" for f in node.plugin_faults))
    (own / "gpus").write_text("".join(f"{u}\n" for u in node.uuids))


def missing() -> str | None:
    """Why real nodes cannot run here, if they cannot."""
    if os.geteuid() != 0:
        return "real nodes need root"
    for path, package in ((RUNC, "runc"), (CNI_BIN / "ptp", "containernetworking-plugins"),
                          (images.BUSYBOX, "busybox-static")):  # fmt: skip
        if not path.exists():
            return f"{path} is missing (Debian's {package}; `make setup` installs it)"
    if not (CGROUP_FS / "pids").is_dir():
        return f"no cgroup v1 pids hierarchy at {CGROUP_FS / 'pids'}"
    return None


def _sandbox_id(directory: Path) -> str:
    return hashlib.sha256(str(directory.resolve()).encode()).hexdigest()[:8]


def cgroup(directory: Path, node: RealNode) -> str:
    return f"kaic-{_sandbox_id(directory)}-{node.name}"


def node_dir(directory: Path, node: RealNode) -> Path:
    return directory / "nodes" / node.name


def run_dir(directory: Path, node: RealNode) -> Path:
    return RUN_ROOT / _sandbox_id(directory) / node.name


def _hierarchies() -> list[Path]:
    """The mounted cgroup v1 hierarchies."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        kind = fields[fields.index("-") + 1]
        if kind == "cgroup" and fields[4].startswith(f"{CGROUP_FS}/"):
            found.append(Path(fields[4]))
    return sorted(found)


def start(
    nodes: tuple[RealNode, ...],
    directory: Path,
    sandbox_netns: str,
    api_port: int,
    ca: pki.CA,
    bin_dir: Path,
    registry_port: int,
    cluster_dns: list[str],
    logs: Path,
    record: Record,
) -> None:
    """Start every real node's containerd and kubelet (they register themselves)."""
    _save_sysctls()
    for node in nodes:
        holder = _start_namespace(directory, node, logs, record)
        _connect(node, sandbox_netns, netns.path_of(holder))
        _make_cgroups(directory, node)
        _start_containerd(directory, node, holder, bin_dir, registry_port, logs, record)
        _start_kubelet(directory, node, holder, api_port, ca, bin_dir, cluster_dns, logs, record)
        if node.driver:
            _start_device_plugin(directory, node, holder, bin_dir, logs, record)


def holder_command(own: Path) -> list[str]:
    """The node's namespaces' holder: a network namespace, and a mount namespace in which
    /var/lib/kubelet and /var/log/pods are the node's own (the kubelet has fixed paths there,
    such as the device plugins' socket; tmpfs over /var/lib and /var/log gives them mount
    points without touching the host's). What containerd and the kubelet mount stays in it and
    goes with it."""
    script = " && ".join([
        "mount -t tmpfs -o mode=755 kaic-node /var/lib", f"mkdir /var/lib/kubelet {EMULATED_GPU}",
        f"mount --bind {own / 'kubelet'} /var/lib/kubelet",
        f"mount --bind {own / 'gpu'} {EMULATED_GPU}",
        "mount -t tmpfs -o mode=755 kaic-node /var/log", "mkdir /var/log/pods /var/log/containers",
        f"mount --bind {own / 'pod-logs'} /var/log/pods", "exec sleep infinity",
    ])  # fmt: skip
    return ["unshare", "--net", "--mount", "--propagation", "private", "--", "sh", "-c", script]


def _start_namespace(directory: Path, node: RealNode, logs: Path, record: Record) -> int:
    own = node_dir(directory, node)
    for sub in ("kubelet", "pod-logs", "gpu"):
        (own / sub).mkdir(parents=True, exist_ok=True)
    name = f"{node.name}-namespaces"
    pid = processes.start(name, holder_command(own), logs)
    record(name, pid)
    processes.wait_until(f"{node.name}'s namespaces", lambda: _mounted(pid), pid,
                         logs / f"{name}.log", timeout_s=10)  # fmt: skip
    return pid


def _mounted(pid: int) -> bool:
    with contextlib.suppress(OSError):
        return "/var/log/pods " in Path(f"/proc/{pid}/mountinfo").read_text()
    return False


def enter(holder: int, cmd: list[str]) -> list[str]:
    return ["nsenter", f"--net=/proc/{holder}/ns/net", f"--mount=/proc/{holder}/ns/mnt", "--",
            *cmd]  # fmt: skip


def _ip(args: str, namespace: str) -> None:
    cmd = ["nsenter", f"--net={namespace}", "--", "ip", *args.split()]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise KaicError(f"real node network: `ip {args}`: {done.stderr.strip()}")


def _sysctl(namespace: str, key: str, value: str) -> None:
    path = f"/proc/sys/{key.replace('.', '/')}"
    cmd = ["nsenter", f"--net={namespace}", "--", "sh", "-c", f"echo {value} > {path}"]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise KaicError(f"real node network: setting {key}: {done.stderr.strip()}")


def _connect(node: RealNode, sandbox: str, holder: str) -> None:
    """A veth pair as the node's cable to the sandbox's network."""
    pid = holder.split("/")[2]
    _ip(f"link add {node.link} type veth peer name eth0 netns {pid}", sandbox)
    _ip(f"addr add {GATEWAY}/32 dev {node.link}", sandbox)
    _sysctl(sandbox, f"net.ipv4.conf.{node.link}.proxy_arp", "1")
    _ip(f"link set {node.link} up", sandbox)
    _ip(f"route replace {node.ip}/32 dev {node.link}", sandbox)
    # in the `local` table, where the whole pod range is local (see netns.py): more specific
    _ip(f"route replace {node.pod_cidr} via {node.ip} dev {node.link} table local", sandbox)
    _ip("link set lo up", holder)
    _ip(f"addr add {node.ip}/32 dev eth0", holder)
    _ip("link set eth0 up", holder)
    _ip(f"route add {GATEWAY} dev eth0 scope link", holder)
    _ip(f"route add default via {GATEWAY} dev eth0", holder)
    _sysctl(holder, "net.ipv4.ip_forward", "1")


def _make_cgroups(directory: Path, node: RealNode) -> None:
    name = cgroup(directory, node)
    for hierarchy in _hierarchies():
        (hierarchy / name / "system").mkdir(parents=True, exist_ok=True)
        if hierarchy.name == "cpuset":  # a new cpuset has no CPUs nor memory nodes until given
            for sub in (hierarchy / name, hierarchy / name / "system"):
                for key in ("cpuset.cpus", "cpuset.mems"):
                    (sub / key).write_text((hierarchy / key).read_text())


def _in_cgroup(directory: Path, node: RealNode, cmd: list[str]) -> list[str]:
    """`cmd`, started inside the node's `system` cgroup of every hierarchy."""
    name = cgroup(directory, node)
    procs = " ".join(str(h / name / "system" / "cgroup.procs") for h in _hierarchies())
    script = f'for f in {procs}; do echo $$ > "$f"; done; exec "$@"'
    return ["sh", "-c", script, "sh", *cmd]


def containerd_config(directory: Path, node: RealNode, bin_dir: Path) -> str:
    own, run = node_dir(directory, node), run_dir(directory, node)
    runtime = bin_dir / GPU_RUNTIME if node.driver else RUNC
    cri = 'plugins."io.containerd.cri.v1'
    return f"""version = 3
root = "{own / "containerd"}"
state = "{run / "containerd"}"
[grpc]
  address = "{run / "containerd.sock"}"
[ttrpc]
  address = "{run / "containerd.sock.ttrpc"}"
[{cri}.images"]
  snapshotter = "overlayfs"
  [{cri}.images".pinned_images]
    sandbox = "{images.PAUSE_IMAGE}"
  [{cri}.images".registry]
    config_path = "{own / "certs.d"}"
[{cri}.runtime"]
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  cdi_spec_dirs = ["{own / "cdi"}"]
  [{cri}.runtime".containerd]
    default_runtime_name = "runc"
    [{cri}.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [{cri}.runtime".containerd.runtimes.runc.options]
        BinaryName = "{runtime}"
        SystemdCgroup = false
  [{cri}.runtime".cni]
    bin_dirs = ["{CNI_BIN}"]
    conf_dir = "{own / "cni"}"
[plugins."io.containerd.grpc.v1.cri"]
  disable_tcp_service = true
  stream_server_address = "{node.ip}"
"""


def cni_config(directory: Path, node: RealNode) -> dict[str, object]:
    return {"cniVersion": "1.0.0", "name": "kaic", "plugins": [
        {"type": "ptp", "ipMasq": False, "ipam": {
            "type": "host-local", "ranges": [[{"subnet": node.pod_cidr}]],
            "routes": [{"dst": "0.0.0.0/0"}],
            "dataDir": str(node_dir(directory, node) / "ipam")}},
        {"type": "loopback"}]}  # fmt: skip


def _start_containerd(
    directory: Path,
    node: RealNode,
    holder: int,
    bin_dir: Path,
    registry_port: int,
    logs: Path,
    record: Record,
) -> None:
    own, run = node_dir(directory, node), run_dir(directory, node)
    for sub in ("containerd", "cni", "cdi", "ipam"):
        (own / sub).mkdir(parents=True, exist_ok=True)
    registry.write_hosts(own / "certs.d", registry_port)
    run.mkdir(parents=True, exist_ok=True)
    (own / "containerd.toml").write_text(containerd_config(directory, node, bin_dir))
    (own / "cni" / "10-kaic.conflist").write_text(json.dumps(cni_config(directory, node)))
    name = f"{node.name}-containerd"
    cmd = [str(bin_dir / "containerd"), "--config", str(own / "containerd.toml")]
    # its shims are found on PATH beside it
    env = {"PATH": f"{bin_dir}:{os.environ.get('PATH', '')}"}
    pid = processes.start(name, enter(holder, _in_cgroup(directory, node, cmd)), logs, env)
    record(name, pid)
    processes.wait_until(f"{node.name}'s containerd", (run / "containerd.sock").exists, pid,
                         logs / f"{name}.log", timeout_s=30)  # fmt: skip


def kubelet_config(directory: Path, node: RealNode, ca: Path, serving: tuple[Path, Path],
                   cluster_dns: list[str]) -> dict[str, object]:  # fmt: skip
    own = node_dir(directory, node)
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
        # this host has cgroup v1 only (a hybrid layout), which kubelet 1.35 refuses by default
        "failCgroupV1": False, "cgroupDriver": "cgroupfs",
        "cgroupRoot": f"/{cgroup(directory, node)}", "cgroupsPerQOS": True,
        "failSwapOn": False,
        "address": node.ip, "port": KUBELET_PORT, "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1", "healthzPort": 10248,
        "tlsCertFile": str(serving[0]), "tlsPrivateKeyFile": str(serving[1]),
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                           "x509": {"clientCAFile": str(ca)}},
        "authorization": {"mode": "Webhook"},
        "containerRuntimeEndpoint": f"unix://{run_dir(directory, node) / 'containerd.sock'}",
        "clusterDNS": cluster_dns, "clusterDomain": "cluster.local",
        "resolvConf": str(own / "resolv.conf"),
        # the node's disk is the host's: no evictions, no image garbage collection
        "evictionHard": {"memory.available": "1Mi", "nodefs.available": "0%",
                         "imagefs.available": "0%"},
        "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
        "localStorageCapacityIsolation": False,
        "makeIPTablesUtilChains": False, "serializeImagePulls": False, "maxPods": 110,
        "registerWithTaints": list(node.taints),
    }  # fmt: skip


def _start_kubelet(
    directory: Path,
    node: RealNode,
    holder: int,
    api_port: int,
    ca: pki.CA,
    bin_dir: Path,
    cluster_dns: list[str],
    logs: Path,
    record: Record,
) -> None:
    own = node_dir(directory, node)
    client = ca.issue(f"node-{node.name}", f"system:node:{node.name}", org="system:nodes",
                      client=True)  # fmt: skip
    serving = ca.issue(f"kubelet-{node.name}", node.name, hosts=(node.ip,))
    kubeconfig = {
        "apiVersion": "v1", "kind": "Config", "current-context": "node",
        "clusters": [{"name": "sandbox", "cluster": {"server": f"https://{GATEWAY}:{api_port}",
                                                     "certificate-authority": str(ca.cert_path)}}],
        "users": [{"name": node.name, "user": {
            "client-certificate": str(client[0]), "client-key": str(client[1])}}],
        "contexts": [{"name": "node", "context": {"cluster": "sandbox", "user": node.name}}],
    }  # fmt: skip
    (own / "kubeconfig").write_text(yaml.safe_dump(kubeconfig))
    (own / "resolv.conf").write_text("# the sandbox has no DNS but the cluster's\n")
    config = kubelet_config(directory, node, ca.cert_path, serving, cluster_dns)
    (own / "kubelet.yaml").write_text(yaml.safe_dump(config))
    name = f"{node.name}-kubelet"
    pid = processes.start(name, enter(holder, _in_cgroup(directory, node, [
        str(bin_dir / "kubelet"), "--config", str(own / "kubelet.yaml"),
        "--kubeconfig", str(own / "kubeconfig"),
        "--hostname-override", node.name, "--node-ip", node.ip,
        "--node-labels", ",".join(f"{k}={v}" for k, v in node.labels),
    ])), logs)  # fmt: skip
    record(name, pid)


def _start_device_plugin(
    directory: Path, node: RealNode, holder: int, bin_dir: Path, logs: Path, record: Record
) -> None:
    """The emulated NVIDIA device plugin (fixtures/sandbox/components/emulated-gpu): it makes the
    GPUs' device nodes and registers nvidia.com/gpu with the kubelet, which it waits for."""
    assert node.spec is not None
    write_hardware(directory, node)
    name = f"{node.name}-device-plugin"
    pid = processes.start(name, enter(holder, _in_cgroup(directory, node, [
        str(bin_dir / DEVICE_PLUGIN), "--gpus", ",".join(node.uuids),
        "--replicas", str(node.spec.replicas), "--dev-root", str(EMULATED_GPU / "dev"),
        "--sys-module", str(EMULATED_GPU / "sys-module"), "--load-dir", str(EMULATED_GPU / "load"),
        "--faults", str(EMULATED_GPU / "faults"),
    ])), logs)  # fmt: skip
    record(name, pid)


def teardown(directory: Path) -> None:
    """Stop what the real nodes left running and remove what they made: processes in their
    cgroups (containers, containerd's shims), mounts, cgroups, runtime folders."""
    if os.geteuid() != 0:
        return  # real nodes never ran
    folders = sorted((directory / "nodes").iterdir()) if (directory / "nodes").is_dir() else []
    for node in (RealNode(folder.name, 0) for folder in folders):
        name = cgroup(directory, node)
        _kill_cgroup(CGROUP_FS / "pids" / name)
        _unmount_under((node_dir(directory, node), run_dir(directory, node)))
        # also where the kubelet made folders for hierarchies this host does not mount
        for hierarchy in (p for p in CGROUP_FS.iterdir() if p.is_dir()):
            _remove_cgroup(hierarchy / name)
        shutil.rmtree(run_dir(directory, node), ignore_errors=True)
    with contextlib.suppress(OSError):
        (RUN_ROOT / _sandbox_id(directory)).rmdir()
    if RUN_ROOT.is_dir() and not any(p.is_dir() for p in RUN_ROOT.iterdir()):
        _restore_sysctls()
        with contextlib.suppress(OSError):
            RUN_ROOT.rmdir()


def _sysctl_path(key: str) -> Path:
    return Path("/proc/sys") / key.replace(".", "/")


def _save_sysctls() -> None:
    RUN_ROOT.mkdir(parents=True, exist_ok=True)
    if not SAVED_SYSCTLS.exists():
        values = {k: _sysctl_path(k).read_text().strip() for k in KUBELET_SYSCTLS}
        SAVED_SYSCTLS.write_text(json.dumps(values))


def _restore_sysctls() -> None:
    if not SAVED_SYSCTLS.exists():
        return
    for key, value in json.loads(SAVED_SYSCTLS.read_text()).items():
        with contextlib.suppress(OSError):
            _sysctl_path(key).write_text(f"{value}\n")
    SAVED_SYSCTLS.unlink()


def _cgroup_pids(root: Path) -> list[int]:
    pids: list[int] = []
    for procs in root.rglob("cgroup.procs"):
        with contextlib.suppress(OSError, ValueError):
            pids += [int(line) for line in procs.read_text().split()]
    return pids


def _kill_cgroup(root: Path, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while root.is_dir() and (pids := _cgroup_pids(root)) and time.monotonic() < deadline:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)


def mounts_under(folders: tuple[Path, ...]) -> list[str]:
    """Mount points under these folders, deepest first."""
    roots = [str(f.resolve()) for f in folders]
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if any(point == r or point.startswith(r + "/") for r in roots):
            found.append(point)
    return sorted(set(found), key=lambda p: p.count("/"), reverse=True)


def _unmount_under(folders: tuple[Path, ...]) -> None:
    for point in mounts_under(folders):
        subprocess.run(["umount", "--lazy", point], capture_output=True, check=False)


def _remove_cgroup(root: Path) -> None:
    if not root.is_dir():
        return
    for sub in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        with contextlib.suppress(OSError):
            sub.rmdir()
    with contextlib.suppress(OSError):
        root.rmdir()
