"""The sandbox's Kubeflow Trainer and JobSet, built from their Go modules and deployed as their
manifests install them (Trainer's `manifests/base`, JobSet's `config/default`): CRDs, the
upstream ClusterRoles, Deployments `kubeflow-system/kubeflow-trainer-controller-manager` and
`jobset-system/jobset-controller-manager`, their webhook configurations (kustomize patches
applied) behind their Services. Where upstream each generates its webhook certificate at start
(a rotator that writes a Secret and waits for the kubelet to update the mounted volume, which
the sandbox's runtime does not do), the sandbox issues it from its CA and turns the rotator off
in each one's configuration file. A TrainJob becomes a JobSet, the JobSet Jobs, and the Jobs
pods, which KWOK completes at once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from conformance.cluster import Cluster
from conformance.sandbox import controllers, incluster, pki
from conformance.sandbox.monitoring import Apply, deployment_ready

Obj = dict[str, Any]
TRAINER_VERSION = "v2.3.0"
JOBSET_VERSION = "v0.12.0"
CONFIG_FILE = "controller_manager_config.yaml"
# a folder the host lacks (see incluster.CERTS_UNDER_TMPDIR on where volumes can be mounted)
CONFIG_DIR = "/config"


def _config_map(name: str, namespace: str, config: Obj) -> Obj:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace},
            "data": {CONFIG_FILE: yaml.safe_dump(config)}}  # fmt: skip


def _deployment(
    name: str, namespace: str, labels: dict[str, str], container: Obj, volumes: list[Obj]
) -> Obj:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"serviceAccountName": name, "containers": [container],
                                       "volumes": volumes}}},
    }  # fmt: skip


def _manager(image: str, args: list[str], env: list[Obj], mounts: list[Obj]) -> Obj:
    return {
        "name": "manager", "image": image, "args": args, "env": env,
        "ports": [{"name": "health", "containerPort": 8081},
                  {"name": "webhook", "containerPort": incluster.WEBHOOK_PORT}],
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": 8081}, "periodSeconds": 2},
        "volumeMounts": mounts,
    }  # fmt: skip


# --- JobSet ----------------------------------------------------------------------------------

JOBSET_NS = "jobset-system"
JOBSET = "jobset-controller-manager"
JOBSET_LABELS = {"app.kubernetes.io/name": "jobset", "control-plane": "controller-manager"}
JOBSET_HOOKS = incluster.Webhooks("jobset-webhook-service", JOBSET_NS,
                                  "jobset-webhook-server-cert", JOBSET_LABELS)  # fmt: skip
JOBSET_CERTS = "/jobset-certs"


def _jobset(data: Path, ca: pki.CA) -> list[Obj]:
    root = data / "jobset" / "config" / "components"
    config = {
        "apiVersion": "config.jobset.x-k8s.io/v1alpha1", "kind": "Configuration",
        "leaderElection": {"leaderElect": False},
        "internalCertManagement": {"enable": False},
        "webhook": {"port": incluster.WEBHOOK_PORT, "certDir": JOBSET_CERTS},
        "health": {"healthProbeBindAddress": ":8081"},
        "metrics": {"bindAddress": "0"},
    }  # fmt: skip
    container = _manager(
        f"kaic-sandbox/jobset:{JOBSET_VERSION}",
        [f"--config={CONFIG_DIR}/{CONFIG_FILE}", "--zap-log-level=2"], [],
        [{"name": "config", "mountPath": CONFIG_DIR},
         {"name": "cert", "mountPath": JOBSET_CERTS, "readOnly": True}],
    )  # fmt: skip
    volumes = [{"name": "config", "configMap": {"name": "jobset-manager-config"}},
               {"name": "cert", "secret": {"secretName": JOBSET_HOOKS.secret}}]  # fmt: skip
    hooks = {d["kind"]: d for d in incluster.kustomized(root / "webhook")
             if d["kind"].endswith("WebhookConfiguration")}  # fmt: skip
    return [
        *incluster.namespace_and_account(JOBSET_NS, JOBSET, JOBSET_LABELS),
        *incluster.cluster_role(controllers.docs(root / "rbac" / "role.yaml"),
                                "jobset-manager-role", JOBSET, JOBSET_NS),
        _config_map("jobset-manager-config", JOBSET_NS, config),
        *JOBSET_HOOKS.objects(ca, JOBSET_LABELS),
        _deployment(JOBSET, JOBSET_NS, JOBSET_LABELS, container, volumes),
        *(JOBSET_HOOKS.point(hook, f"jobset-{hook['metadata']['name']}", ca)
          for hook in hooks.values()),
    ]  # fmt: skip


# --- Kubeflow Trainer ------------------------------------------------------------------------

TRAINER_NS = "kubeflow-system"
TRAINER = "kubeflow-trainer-controller-manager"
TRAINER_LABELS = {"app.kubernetes.io/name": "trainer", "app.kubernetes.io/component": "manager",
                  "app.kubernetes.io/part-of": "kubeflow"}  # fmt: skip
TRAINER_HOOKS = incluster.Webhooks(TRAINER, TRAINER_NS, "kubeflow-trainer-webhook-cert",
                                   TRAINER_LABELS)  # fmt: skip
TRAINER_TMP = "/kubeflow-trainer"  # its TMPDIR (see incluster.CERTS_UNDER_TMPDIR)


def _trainer(data: Path, ca: pki.CA) -> list[Obj]:
    root = data / "trainer" / "manifests" / "base"
    config = {
        "apiVersion": "config.trainer.kubeflow.org/v1alpha1", "kind": "Configuration",
        "health": {"healthProbeBindAddress": ":8081", "readinessEndpointName": "readyz",
                   "livenessEndpointName": "healthz"},
        "metrics": {"bindAddress": "0"},
        "webhook": {"port": incluster.WEBHOOK_PORT},
        "leaderElection": {"leaderElect": False},
        "certManagement": {"enable": False},
    }  # fmt: skip
    container = _manager(
        f"kaic-sandbox/trainer-controller-manager:{TRAINER_VERSION}",
        [f"--config={CONFIG_DIR}/{CONFIG_FILE}"], [{"name": "TMPDIR", "value": TRAINER_TMP}],
        [{"name": "config", "mountPath": CONFIG_DIR},
         {"name": "cert", "readOnly": True,
          "mountPath": f"{TRAINER_TMP}/{incluster.CERTS_UNDER_TMPDIR}"}],
    )  # fmt: skip
    volumes = [{"name": "config", "configMap": {"name": "kubeflow-trainer-config"}},
               {"name": "cert", "secret": {"secretName": TRAINER_HOOKS.secret}}]  # fmt: skip
    hooks = [d for d in incluster.kustomized(root / "webhook")
             if d["kind"].endswith("WebhookConfiguration")]  # fmt: skip
    return [
        *incluster.namespace_and_account(TRAINER_NS, TRAINER, TRAINER_LABELS),
        *incluster.cluster_role(controllers.docs(root / "rbac" / "role.yaml"), TRAINER,
                                TRAINER, TRAINER_NS),
        _config_map("kubeflow-trainer-config", TRAINER_NS, config),
        *TRAINER_HOOKS.objects(ca, TRAINER_LABELS),
        _deployment(TRAINER, TRAINER_NS, TRAINER_LABELS, container, volumes),
        *(TRAINER_HOOKS.point(hook, hook["metadata"]["name"], ca) for hook in hooks),
    ]  # fmt: skip


def deploy(cluster: Cluster, apply: Apply, data: Path, ca: pki.CA) -> None:
    """JobSet's and Trainer's CRDs (JobSet's first: Trainer watches JobSets), then both
    controllers (`wait_ready` waits for them)."""
    crds = [*incluster.crds(data / "jobset" / "config" / "components" / "crd" / "bases"),
            *incluster.crds(data / "trainer" / "manifests" / "base" / "crds")]  # fmt: skip
    for crd in crds:
        apply(cluster, crd)
    controllers.wait_crds(cluster, crds)
    for obj in [*_jobset(data, ca), *_trainer(data, ca)]:
        apply(cluster, obj)


def wait_ready(cluster: Cluster) -> None:
    deployment_ready(cluster, JOBSET_NS, JOBSET, "the JobSet controller")
    deployment_ready(cluster, TRAINER_NS, TRAINER, "Kubeflow Trainer's controller manager")
