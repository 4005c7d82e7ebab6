"""What the sandbox's in-cluster operators (KubeRay, JobSet, Kubeflow Trainer) share: their
upstream manifests read as kustomize renders them (resources and JSON 6902 patches), their
webhooks pointed at their Service with the sandbox CA's bundle, and the serving certificate
that the upstream installs get from cert-manager or a rotator, issued by the sandbox CA."""

from __future__ import annotations

import base64
import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from conformance.sandbox import controllers, pki

Obj = dict[str, Any]
WEBHOOK_PORT = 9443
# controller-runtime's default certificate folder is $TMPDIR/k8s-webhook-server/serving-certs;
# the sandbox's runtime mounts a volume only where the host has its parent folder, so each
# operator whose certificate folder is not configurable gets TMPDIR pointing at a folder of its
# own (upstream: /tmp).
CERTS_UNDER_TMPDIR = "k8s-webhook-server/serving-certs"


def kustomized(folder: Path) -> list[Obj]:
    """The documents of `folder`'s kustomization: its resources with its JSON 6902 patches
    applied (what the operators' webhook folders use); name prefixes and namespaces are the
    caller's."""
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    docs = [d for r in kustomization.get("resources") or [] for d in controllers.docs(folder / r)]
    for entry in kustomization.get("patches") or []:
        ops = yaml.safe_load((folder / entry["path"]).read_text())
        target = entry.get("target") or {}
        for doc in docs:
            if doc["kind"] == target.get("kind") and target.get("name") in (
                None, doc["metadata"]["name"]):  # fmt: skip
                for op in ops:
                    _json6902(doc, op)
    return docs


def _json6902(doc: Obj, op: Obj) -> None:
    *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
    node: Any = doc
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    key: Any = int(last) if isinstance(node, list) and last != "-" else last
    if op["op"] == "remove":
        del node[key]
    elif op["op"] in ("add", "replace"):
        value = copy.deepcopy(op["value"])
        if isinstance(node, list) and (op["op"] == "add"):
            node.insert(len(node) if key == "-" else key, value)
        else:
            node[key] = value
    else:
        raise ValueError(f"unsupported JSON patch op {op['op']!r} in a sandbox manifest")


@dataclass(frozen=True)
class Webhooks:
    """An operator's webhook Service and serving certificate."""

    service: str
    namespace: str
    secret: str
    labels: dict[str, str]

    @property
    def host(self) -> str:
        return f"{self.service}.{self.namespace}.svc"

    def point(self, config: Obj, name: str, ca: pki.CA, served: tuple[str, ...] = ()) -> Obj:
        """`config` (a webhook configuration of the upstream manifests) named `name`, its
        webhooks (those in `served`, if given) calling this Service, trusting the sandbox CA."""
        config = copy.deepcopy(config)
        config["metadata"] = {"name": name, "labels": self.labels}
        if served:
            config["webhooks"] = [h for h in config["webhooks"] if h["name"] in served]
        bundle = base64.b64encode(ca.cert_path.read_bytes()).decode()
        for hook in config["webhooks"]:
            hook["clientConfig"]["service"] |= {"name": self.service, "namespace": self.namespace}
            hook["clientConfig"]["caBundle"] = bundle
        return config

    def objects(self, ca: pki.CA, selector: dict[str, str]) -> list[Obj]:
        """The Secret with the serving certificate and the Service (443 -> WEBHOOK_PORT)."""
        hosts = (self.host, f"{self.host}.cluster.local")
        crt, key = ca.issue(self.service, self.host, hosts=hosts)
        certs = {"tls.crt": crt.read_bytes(), "tls.key": key.read_bytes(),
                 "ca.crt": ca.cert_path.read_bytes()}  # fmt: skip
        meta = {"namespace": self.namespace, "labels": self.labels}
        return [
            {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
             "metadata": {"name": self.secret, **meta},
             "data": {k: base64.b64encode(v).decode() for k, v in certs.items()}},
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": self.service, **meta},
             "spec": {"selector": selector, "ports": [
                 {"name": "webhook", "port": 443, "targetPort": WEBHOOK_PORT,
                  "protocol": "TCP"}]}},
        ]  # fmt: skip


def cluster_role(docs: list[Obj], name: str, account: str, namespace: str) -> list[Obj]:
    """The operator's upstream ClusterRole (the first in `docs`) as `name`, bound to its
    ServiceAccount."""
    role = copy.deepcopy(next(d for d in docs if d["kind"] == "ClusterRole"))
    role["metadata"] = {"name": name}
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}],
    }  # fmt: skip
    return [role, binding]


def namespace_and_account(namespace: str, account: str, labels: dict[str, str]) -> list[Obj]:
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": account, "namespace": namespace, "labels": labels}},
    ]  # fmt: skip


def crds(folder: Path) -> list[Obj]:
    return [d for path in sorted(folder.glob("*.yaml")) for d in controllers.docs(path)
            if d.get("kind") == "CustomResourceDefinition"]  # fmt: skip
