"""The sandbox's stand-in for a container runtime, for probe pods only.

KWOK simulates every pod's lifecycle without running anything. For pods of the kaic probe image
that landed on a KWOK node, this process runs the container's command as a local process, with
the pod's environment plus what the device layer would inject, writes its output as CRI logs
that KWOK serves to `kubectl logs`, and sets the pod's phase from the exit code. Run as
`python -m conformance.sandbox.probe_runtime --kubeconfig K --dir D`.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from kubernetes.client import ApiException

from conformance.cluster import Cluster, ObjectRef
from conformance.cluster.connect import ConnectOptions, load_configuration
from conformance.probes import is_probe_image
from conformance.sandbox import topology

Obj = dict[str, Any]
FAULT_LABEL = "kaic.dev/sandbox-fault"


def now() -> str:
    return (
        datetime.datetime.now(datetime.UTC)
        .isoformat(timespec="microseconds")
        .replace("+00:00", "Z")
    )


@dataclass
class Running:
    key: str
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    stopped: bool = False


class ProbeRuntime:
    def __init__(self, cluster: Cluster, directory: Path) -> None:
        self.cluster = cluster
        self.directory = directory
        self.running: dict[str, Running] = {}
        self.lock = threading.Lock()
        self.device_plugin_in_use: dict[str, set[int]] = {}  # node -> GPU indices handed out
        self.allocations: dict[str, tuple[str, list[int]]] = {}  # pod key -> (node, indices)
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
        if node["metadata"].get("labels", {}).get(FAULT_LABEL) == "device-plugin-no-devices":
            return {}  # the fault: GPUs are advertised and allocated, but none reach the pod
        name = node["metadata"]["name"]
        with self.lock:
            used = self.device_plugin_in_use.setdefault(name, set())
            spec = self.node_kinds.get(name)
            free = [i for i in range(spec.gpus if spec else 0) if i not in used][:count]
            used.update(free)
            node_name, held = self.allocations.get(key, (name, []))
            self.allocations[key] = (node_name, held + free)
        uuids = [topology.gpu_uuid(name, i) for i in free]
        return {"NVIDIA_VISIBLE_DEVICES": ",".join(uuids)}

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
        env |= self.dra_env(pod, container)
        env |= self.device_plugin_env(key, container, node)
        return env

    def command(self, container: Obj) -> list[str]:
        cmd = list(container.get("command") or []) + list(container.get("args") or [])
        if not cmd:
            return [sys.executable, "-m", "conformance.agent"]
        if cmd[0] in ("python", "python3") or cmd[0].endswith(("/python", "/python3")):
            cmd[0] = sys.executable
        return cmd

    def start(self, pod: Obj) -> None:
        meta = pod["metadata"]
        key = f"{meta['namespace']}/{meta['name']}/{meta['uid']}"
        node = self.cluster.get(ObjectRef("v1", "Node", pod["spec"]["nodeName"])) or {
            "metadata": {"name": pod["spec"]["nodeName"]}
        }
        run = Running(key)
        with self.lock:
            if key in self.running:
                return
            self.running[key] = run
        workdir = self.directory / "pods" / meta["namespace"] / meta["name"]
        logs: list[Obj] = []
        for container in pod["spec"]["containers"]:
            if not is_probe_image(container.get("image", "")):
                continue
            cdir = workdir / container["name"]
            cdir.mkdir(parents=True, exist_ok=True)
            log_path = cdir / "0.log"
            proc = subprocess.Popen(
                self.command(container), cwd=cdir, env=self.env_for(key, pod, container, node),
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
            run.procs.append(proc)
            log = log_path.open("a", encoding="utf-8")
            for stream, name in ((proc.stdout, "stdout"), (proc.stderr, "stderr")):
                threading.Thread(target=copy_cri, args=(stream, name, log), daemon=True).start()
            logs.append({"containers": [container["name"]], "logsFile": str(log_path),
                         "follow": True})  # fmt: skip
        if logs:
            self.apply_logs(meta, logs)
        threading.Thread(target=self.reap, args=(pod, run), daemon=True).start()

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

    def reap(self, pod: Obj, run: Running) -> None:
        started = now()
        codes = [proc.wait() for proc in run.procs]
        if run.stopped:
            return
        failed = any(codes)
        statuses = []
        for container, code in zip(
            [c for c in pod["spec"]["containers"] if is_probe_image(c.get("image", ""))],
            codes,
            strict=True,
        ):
            statuses.append({
                "name": container["name"], "image": container["image"], "imageID": "",
                "containerID": f"kaic://{run.key}/{container['name']}", "ready": False,
                "restartCount": 0, "started": False,
                "state": {"terminated": {"exitCode": code, "reason": "Error" if code else
                                         "Completed", "startedAt": started,
                                         "finishedAt": now()}},
            })  # fmt: skip
        patch = {"status": {
            "phase": "Failed" if failed else "Succeeded",
            "containerStatuses": statuses,
            "conditions": [{"type": "Ready", "status": "False", "reason": "PodCompleted",
                            "lastTransitionTime": now()},
                           {"type": "ContainersReady", "status": "False",
                            "reason": "PodCompleted", "lastTransitionTime": now()}],
        }}  # fmt: skip
        meta = pod["metadata"]
        try:
            self.cluster.core.patch_namespaced_pod_status(meta["name"], meta["namespace"], patch)
        except ApiException as exc:
            print(f"cannot set the phase of {meta['name']}: {exc.reason}", flush=True)
        self.release(run.key)

    def release(self, key: str) -> None:
        with self.lock:
            node, held = self.allocations.pop(key, ("", []))
            self.device_plugin_in_use.get(node, set()).difference_update(held)

    def stop(self, key_prefix: str) -> None:
        with self.lock:
            keys = [k for k in self.running if k.startswith(key_prefix)]
            runs = [self.running.pop(k) for k in keys]
        for run in runs:
            run.stopped = True
            self.release(run.key)
            for proc in run.procs:
                if proc.poll() is None:
                    # Each probe has its own process group: take its children down with it.
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(proc.pid, signal.SIGKILL)

    # --- watching -----------------------------------------------------------------------------

    def handle(self, event_type: str, pod: Obj) -> None:
        meta, spec, status = pod["metadata"], pod.get("spec") or {}, pod.get("status") or {}
        prefix = f"{meta['namespace']}/{meta['name']}/{meta.get('uid')}"
        if event_type == "DELETED" or meta.get("deletionTimestamp"):
            self.stop(prefix)
            return
        if not any(is_probe_image(c.get("image", "")) for c in spec.get("containers") or []):
            return
        if status.get("phase") == "Running" and status.get("podIP") and spec.get("nodeName"):
            self.start(pod)

    def events(self) -> Iterator[tuple[str, Obj]]:
        pods = self.cluster.resource("v1", "Pod")
        while True:
            listing = pods.get().to_dict()
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
    args = parser.parse_args()
    cfg, context = load_configuration(ConnectOptions(kubeconfig=args.kubeconfig))
    runtime = ProbeRuntime(Cluster(cfg, context=context, run_id="sandbox"), args.dir)

    # `kaic sandbox down` signals only this process's group; probes run in groups of their own
    # (so that deleting one pod kills just its processes), so stop them all before exiting.
    # No lock here: the signal may arrive while this (main) thread holds it.
    def shutdown(signum: int, _frame: object) -> None:
        for run in list(runtime.running.values()):
            run.stopped = True
            for proc in run.procs:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
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
