"""The real Kueue and LeaderWorkerSet controllers, run out of cluster with their webhooks on
loopback: CRDs from the pinned modules, webhook configurations pointing at `https://127.0.0.1`
with a CA bundle the API server trusts."""

from __future__ import annotations

import base64
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from conformance.cluster import Cluster
from conformance.sandbox import pki, processes
from conformance.sandbox.netns import call as netns_call
from conformance.sandbox.processes import free_port

Obj = dict[str, Any]
Apply = Callable[[Cluster, Obj], None]

KUEUE_NAMESPACE = "kueue-system"
KUEUE_CONFIG = "kueue-config.yaml"
LWS_CONFIG = "lws-config.yaml"
# Where the fault `lws-webhook-down` registers the LWS webhooks: an address nothing serves, so the
# API server's calls are refused, as when the webhook Service has no ready endpoints.
UNSERVED_URL = "https://127.0.0.1:1"
LWS_NAMESPACE = "lws-system"
# Webhooks kept from the upstream manifests: those of the integrations the sandbox enables.
KUEUE_GROUPS = {"kueue.x-k8s.io", "batch", "", "leaderworkerset.x-k8s.io"}
LWS_GROUPS = {"leaderworkerset.x-k8s.io", ""}
# LWS runs as a user of its own (still cluster-admin), so that admission can tell its requests
# apart: the fault `lws-group-restart` denies this user's pod deletions (fixtures/sandbox/faults).
LWS_USER = "kaic-sandbox:lws-controller"
LWS_KUBECONFIG = "lws-kubeconfig"
# The Kueue CRDs whose versions differ and that Kueue converts (its cert manager's list).
KUEUE_CONVERTED = frozenset(
    {
        f"{plural}.kueue.x-k8s.io"
        for plural in ("localqueues", "clusterqueues", "workloads", "cohorts", "multikueueclusters")
    }
)


@dataclass(frozen=True)
class Controller:
    name: str
    pid: int
    health_url: str
    log: Path
    netns: str | None = None


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


# libyaml's loader where PyYAML has it: the CRDs the sandbox installs are megabytes of YAML
# (KubeRay's four alone took 4 s in the pure-Python loader, 0.6 s in libyaml's).
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def docs(path: Path) -> list[Obj]:
    return [d for d in yaml.load_all(path.read_text(), Loader=_LOADER) if d]


def _crds(
    directory: Path,
    conversion_url: str | None,
    ca_pem: bytes,
    converted: frozenset[str] = frozenset(),
) -> list[Obj]:
    crds = []
    for path in sorted(directory.glob("*.yaml")):
        for crd in docs(path):
            if conversion_url and crd["metadata"]["name"] in converted:
                crd["spec"]["conversion"] = {
                    "strategy": "Webhook",
                    "webhook": {
                        "conversionReviewVersions": ["v1"],
                        "clientConfig": {
                            "url": conversion_url,
                            "caBundle": base64.b64encode(ca_pem).decode(),
                        },
                    },
                }
            crds.append(crd)
    return crds


def _kustomize_patches(folder: Path) -> dict[tuple[str, str], Obj]:
    """The webhook patches of the folder's kustomization (namespace and object selectors that
    keep, e.g., LWS's pod webhooks to LWS pods), by (configuration name, webhook name)."""
    kustomization = folder / "kustomization.yaml"
    if not kustomization.exists():
        return {}
    patches: dict[tuple[str, str], Obj] = {}
    for entry in yaml.safe_load(kustomization.read_text()).get("patches") or []:
        text = (folder / entry["path"]).read_text() if "path" in entry else entry.get("patch", "")
        for doc in yaml.safe_load_all(text):
            if isinstance(doc, list):  # JSON 6902 ops replacing whole webhooks (LWS)
                target = (entry.get("target") or {}).get("name", "")
                for op in doc:
                    value = op.get("value")
                    if op.get("path", "").startswith("/webhooks/") and isinstance(value, dict):
                        patches[(target, value["name"])] = value
                continue
            for hook in (doc or {}).get("webhooks") or []:  # strategic merge (Kueue)
                patches[(doc["metadata"]["name"], hook["name"])] = hook
    return patches


def _webhooks(
    manifest: Path, prefix: str, base_url: str, ca_pem: bytes, groups: set[str]
) -> list[Obj]:
    configs = []
    patches = _kustomize_patches(manifest.parent)
    for config in docs(manifest):
        kept = []
        for hook in config.get("webhooks", []):
            patch = patches.get((config["metadata"]["name"], hook["name"]), {})
            hook.update({k: v for k, v in patch.items() if k != "clientConfig"})
            hook_groups = {g for rule in hook.get("rules", []) for g in rule.get("apiGroups", [])}
            if not hook_groups <= groups:
                continue
            path = hook["clientConfig"]["service"]["path"]
            hook["clientConfig"] = {
                "url": f"{base_url}{path}",
                "caBundle": base64.b64encode(ca_pem).decode(),
            }
            kept.append(hook)
        config["metadata"] = {"name": f"{prefix}{config['metadata']['name']}"}
        config["webhooks"] = kept
        configs.append(config)
    return configs


def _namespace(name: str) -> Obj:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def wait_crds(cluster: Cluster, crds: list[Obj]) -> None:
    names = {c["metadata"]["name"] for c in crds}

    def established(objs: list[Obj]) -> bool | None:
        done = {
            o["metadata"]["name"]
            for o in objs
            if any(
                c["type"] == "Established" and c["status"] == "True"
                for c in (o.get("status") or {}).get("conditions") or []
            )
        }
        return names <= done or None

    cluster.wait_for("apiextensions.k8s.io/v1", "CustomResourceDefinition", established,
                     awaiting="CRDs to be Established", timeout_s=60)  # fmt: skip


def start_kueue(
    cluster: Cluster,
    apply: Apply,
    bin_dir: Path,
    data: Path,
    work: Path,
    *,
    with_lws: bool,
    netns: str | None = None,
    wait_for_pods_ready: bool = True,
    ports: Callable[[], int] = free_port,
    kubeconfig: Path | None = None,
) -> Controller:
    """Kueue as a platform runs it: Jobs and pod groups, all-or-nothing (waitForPodsReady)."""
    certs = work / "kueue-certs"
    certs.mkdir(parents=True)
    service = "kueue-webhook-service"
    # Kueue's own cert manager keeps a CA in a Secret and injects it; we seed that Secret with a
    # CA and a serving cert that is also valid for 127.0.0.1, so the API server can call us there.
    ca = pki.CA(certs, "kueue-ca", hosts=("kueue-ca",))
    crt, key = ca.issue("tls", f"{service}.{KUEUE_NAMESPACE}.svc",
                        hosts=(f"{service}.{KUEUE_NAMESPACE}.svc", "127.0.0.1"))  # fmt: skip
    ca_pem = ca.cert_path.read_bytes()
    apply(cluster, _namespace(KUEUE_NAMESPACE))
    apply(cluster, {
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": "kueue-webhook-server-cert", "namespace": KUEUE_NAMESPACE},
        "data": {k: base64.b64encode(p.read_bytes()).decode() for k, p in {
            "ca.crt": ca.cert_path, "ca.key": certs / "kueue-ca.key",
            "tls.crt": crt, "tls.key": key}.items()},
    })  # fmt: skip
    port, health = ports(), ports()
    base = f"https://127.0.0.1:{port}"
    crds = _crds(data / "kueue/config/components/crd/bases", f"{base}/convert", ca_pem,
                 KUEUE_CONVERTED)  # fmt: skip
    for crd in crds:
        apply(cluster, crd)
    wait_crds(cluster, crds)
    frameworks = ["batch/job", "pod"] + (["leaderworkerset.x-k8s.io/leaderworkerset"]
                                          if with_lws else [])  # fmt: skip
    config = {
        "apiVersion": "config.kueue.x-k8s.io/v1beta2",
        "kind": "Configuration",
        "namespace": KUEUE_NAMESPACE,
        "health": {"healthProbeBindAddress": f"127.0.0.1:{health}"},
        "metrics": {"bindAddress": "0"},
        "webhook": {"port": port, "host": "127.0.0.1", "certDir": str(certs)},
        "leaderElection": {"leaderElect": False},
        "internalCertManagement": {"enable": True, "webhookServiceName": service},
        "integrations": {"frameworks": frameworks},
    }
    set_wait_for_pods_ready(config, wait_for_pods_ready)
    config_path = work / KUEUE_CONFIG
    config_path.write_text(yaml.safe_dump(config))
    for hook in _webhooks(data / "kueue/config/components/webhook/manifests.yaml", "kueue-",
                          base, ca_pem, KUEUE_GROUPS if with_lws else KUEUE_GROUPS - {
                              "leaderworkerset.x-k8s.io"}):  # fmt: skip
        apply(cluster, hook)
    log = work / "logs" / "kueue.log"
    pid = processes.start("kueue", _kueue_command(bin_dir, config_path, kubeconfig or
                                                  work / "kubeconfig"),
                          work / "logs", netns=netns)  # fmt: skip
    return Controller("kueue", pid, f"http://127.0.0.1:{health}/readyz", log, netns)


def set_wait_for_pods_ready(config: Obj, on: bool) -> None:
    """All-or-nothing admission, off only for the fault `kueue-no-wait-for-pods-ready`."""
    config.pop("waitForPodsReady", None)
    if on:
        config["waitForPodsReady"] = {
            "timeout": "5m",
            "blockAdmission": True,
            "requeuingStrategy": {"timestamp": "Eviction"},
        }


def _kueue_command(bin_dir: Path, config: Path, kubeconfig: Path) -> list[str]:
    return [str(bin_dir / "kueue"), "--config", str(config), "--kubeconfig", str(kubeconfig),
            "--feature-gates", "VisibilityOnDemand=false"]  # fmt: skip


def restart_kueue(
    work: Path,
    bin_dir: Path,
    kubeconfig: Path,
    pid: int,
    netns: str | None,
    *,
    wait_for_pods_ready: bool,
) -> Controller:
    """Kueue's configuration changed and its one process restarted, as an operator rolls it out
    (same ports, certificates and CRDs)."""
    config_path = work / KUEUE_CONFIG
    config = yaml.safe_load(config_path.read_text())
    set_wait_for_pods_ready(config, wait_for_pods_ready)
    config_path.write_text(yaml.safe_dump(config))
    processes.stop([pid])
    pid = processes.start("kueue", _kueue_command(bin_dir, config_path, kubeconfig),
                          work / "logs", netns=netns)  # fmt: skip
    health = config["health"]["healthProbeBindAddress"]
    return Controller("kueue", pid, f"http://{health}/readyz", work / "logs" / "kueue.log", netns)


def kueue_platform_queues() -> list[Obj]:
    """A flavor and a cluster queue with quota for every node's resources, as a platform would."""
    return [
        {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "ResourceFlavor",
         "metadata": {"name": "default-flavor"}},
        {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "ClusterQueue",
         "metadata": {"name": "sandbox"},
         "spec": {"namespaceSelector": {}, "resourceGroups": [{
             "coveredResources": ["cpu", "memory", "nvidia.com/gpu"],
             "flavors": [{"name": "default-flavor", "resources": [
                 {"name": "cpu", "nominalQuota": "64"},
                 {"name": "memory", "nominalQuota": "512Gi"},
                 {"name": "nvidia.com/gpu", "nominalQuota": "8"}]}]}]}},
    ]  # fmt: skip


def start_lws(
    cluster: Cluster,
    apply: Apply,
    bin_dir: Path,
    data: Path,
    work: Path,
    ca: pki.CA,
    netns: str | None = None,
    webhook_down: bool = False,
    ports: Callable[[], int] = free_port,
) -> Controller:
    certs = work / "lws-certs"
    certs.mkdir(parents=True)
    crt, key = ca.issue("lws-webhook", "lws-webhook", hosts=("127.0.0.1",))
    (certs / "tls.crt").write_bytes(crt.read_bytes())
    (certs / "tls.key").write_bytes(key.read_bytes())
    ca_pem = ca.cert_path.read_bytes()
    apply(cluster, _namespace(LWS_NAMESPACE))
    port, health = ports(), ports()
    base = f"https://127.0.0.1:{port}"
    crds = _crds(data / "lws/config/crd/bases", None, ca_pem)
    for crd in crds:
        apply(cluster, crd)
    wait_crds(cluster, crds)
    config = {
        "apiVersion": "config.lws.x-k8s.io/v1alpha1",
        "kind": "Configuration",
        "health": {"healthProbeBindAddress": f"127.0.0.1:{health}"},
        "metrics": {"bindAddress": "0"},
        "webhook": {"port": port, "host": "127.0.0.1", "certDir": str(certs)},
        "leaderElection": {"leaderElect": False},
        "internalCertManagement": {"enable": False},
    }
    config_path = work / LWS_CONFIG
    config_path.write_text(yaml.safe_dump(config))
    for hook in lws_webhooks(data, base, ca_pem, down=webhook_down):
        apply(cluster, hook)
    log = work / "logs" / "lws.log"
    pid = processes.start(
        "lws",
        [
            str(bin_dir / "lws"),
            "--config",
            str(config_path),
            "--kubeconfig",
            str(work / LWS_KUBECONFIG),
        ],
        work / "logs",
        env={"POD_NAMESPACE": LWS_NAMESPACE, "NAMESPACE": LWS_NAMESPACE},
        netns=netns,
    )
    return Controller("lws", pid, f"http://127.0.0.1:{health}/readyz", log, netns)


def lws_webhooks(data: Path, base_url: str, ca_pem: bytes, *, down: bool) -> list[Obj]:
    """LWS's webhook configurations, at `base_url`, or at UNSERVED_URL for `lws-webhook-down`."""
    return _webhooks(data / "lws/config/webhook/manifests.yaml", "lws-",
                     UNSERVED_URL if down else base_url, ca_pem, LWS_GROUPS)  # fmt: skip


def lws_webhook_url(work: Path) -> str:
    """Where the running LWS serves its webhooks (its configuration's port)."""
    config = yaml.safe_load((work / LWS_CONFIG).read_text())
    return f"https://127.0.0.1:{config['webhook']['port']}"


def wait_ready(controller: Controller, timeout_s: float = 90) -> None:
    def ready() -> bool:
        return netns_call(controller.netns, lambda: _ready(controller.health_url))

    processes.wait_until(controller.name, ready, controller.pid, controller.log,
                         timeout_s=timeout_s)  # fmt: skip
