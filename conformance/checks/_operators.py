"""What kaic knows about the AI operators it verifies (`--operator`): their CRDs, API groups,
controller Deployments, and a custom resource each one's webhook must reject and one its
controller must reconcile. Detection: an operator is installed when one of its CRDs exists."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from conformance.checks._kueue import kueue_api
from conformance.cluster import Cluster
from conformance.failures import fail
from conformance.probes import PROBE_IMAGE, pods
from conformance.settings import OPERATORS, Settings

Obj = dict[str, Any]
CRD_API = "apiextensions.k8s.io/v1"
WEBHOOK_KINDS = ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration")
WEBHOOK_API = "admissionregistration.k8s.io/v1"


@dataclass(frozen=True)
class Probe:
    """A custom resource to create in the check's namespace (`name`), and when it counts as
    reconciled: `done(object as stored) -> description of the progress seen, or None`."""

    build: Callable[[Cluster, str], list[Obj]]
    done: Callable[[Obj], str | None]
    awaiting: str


@dataclass(frozen=True)
class Operator:
    name: str
    crds: tuple[str, ...]
    deployments: tuple[str, ...]
    webhook_names: tuple[str, ...]  # how its webhook configurations' names start
    invalid: Callable[[Cluster, str], Obj]  # denied by its validating webhook or its schema
    invalid_why: str
    valid: Probe
    groups: tuple[str, ...] = field(default=())

    @property
    def api_groups(self) -> set[str]:
        return set(self.groups) | {crd.split(".", 1)[1] for crd in self.crds}


def _conditions(obj: Obj) -> list[Obj]:
    return list((obj.get("status") or {}).get("conditions") or [])


def _true_condition(obj: Obj, *types: str) -> str | None:
    for cond in _conditions(obj):
        if cond.get("status") == "True" and (not types or cond.get("type") in types):
            return f"condition {cond['type']}=True ({cond.get('reason', '')})"
    return None


# --- LeaderWorkerSet -------------------------------------------------------------------------

LWS_API = "leaderworkerset.x-k8s.io/v1"


def _lws(name: str, size: int, **rollout: int) -> Obj:
    template = pods.pod(name, [pods.container(command=(
        "python", "-m", "conformance.agent", "env", "LWS_", "--hold", "600"))],
        tolerate_gpus=False)["spec"]  # fmt: skip
    template["restartPolicy"] = "Always"
    spec: Obj = {"replicas": 1, "leaderWorkerTemplate": {"size": size, "workerTemplate": {
        "metadata": {"labels": {"app.kubernetes.io/name": name}}, "spec": template}}}  # fmt: skip
    if rollout:
        spec["rolloutStrategy"] = {"type": "RollingUpdate",
                                   "rollingUpdateConfiguration": dict(rollout)}  # fmt: skip
    return {"apiVersion": LWS_API, "kind": "LeaderWorkerSet", "metadata": {"name": name},
            "spec": spec}  # fmt: skip


def _lws_progress(lws: Obj) -> str | None:
    status = lws.get("status") or {}
    if status.get("readyReplicas", 0) >= 1:
        return f"readyReplicas {status['readyReplicas']}; " + (_true_condition(lws) or "")
    return None


# --- Kueue -----------------------------------------------------------------------------------


def _kueue_invalid(cluster: Cluster, name: str) -> Obj:
    return {"apiVersion": kueue_api(cluster), "kind": "ResourceFlavor", "metadata": {"name": name},
            "spec": {"nodeTaints": [{"key": "kaic.dev/probe", "value": "not a label value!",
                                     "effect": "NoSchedule"}]}}  # fmt: skip


def _kueue_valid(cluster: Cluster, name: str) -> list[Obj]:
    api = kueue_api(cluster)
    return [
        {"apiVersion": api, "kind": "ResourceFlavor", "metadata": {"name": name}},
        {"apiVersion": api, "kind": "ClusterQueue", "metadata": {"name": name},
         "spec": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": name}},
                  "resourceGroups": [{"coveredResources": ["cpu"], "flavors": [
                      {"name": name, "resources": [{"name": "cpu", "nominalQuota": "1"}]}]}]}},
    ]  # fmt: skip


# --- KubeRay ---------------------------------------------------------------------------------

RAY_API = "ray.io/v1"
RAY_IMAGE = "rayproject/ray:2.52.0"
RAY_USER = 1000  # the image's user `ray`


def _ray_cluster(name: str, *groups: str) -> Obj:
    def template(role: str) -> Obj:
        ray = {"name": f"ray-{role}", "image": RAY_IMAGE,
               "securityContext": pods.restricted(RAY_USER)}  # fmt: skip
        return {"spec": {"containers": [ray]}}

    workers = [{"groupName": g, "replicas": 1, "minReplicas": 1, "maxReplicas": 1,
                "rayStartParams": {}, "template": template("worker")} for g in groups]  # fmt: skip
    return {"apiVersion": RAY_API, "kind": "RayCluster", "metadata": {"name": name},
            "spec": {"headGroupSpec": {"rayStartParams": {}, "template": template("head")},
                     "workerGroupSpecs": workers}}  # fmt: skip


def _ray_progress(cluster: Obj) -> str | None:
    """Its head and worker pods created and Ready (RayClusterProvisioned), state ready."""
    status = cluster.get("status") or {}
    provisioned = _true_condition(cluster, "RayClusterProvisioned")
    if status.get("state") != "ready" or not provisioned:
        return None
    head = (status.get("head") or {}).get("podName", "?")
    return (f"state ready, head pod {head}, {status.get('readyWorkerReplicas', 0)} worker(s) "
            f"ready; {provisioned}")  # fmt: skip


# --- Kubeflow Trainer ------------------------------------------------------------------------

TRAINER_API = "trainer.kubeflow.org/v1alpha1"


def _train_job(name: str, runtime: str) -> Obj:
    return {"apiVersion": TRAINER_API, "kind": "TrainJob", "metadata": {"name": name},
            "spec": {"runtimeRef": {"name": runtime, "kind": "TrainingRuntime"}}}  # fmt: skip


def _training_runtime(name: str) -> Obj:
    """One node running one container (Pod Security restricted), as Trainer's runtimes do."""
    node = {"name": "node", "image": PROBE_IMAGE, "command": ["python", "-m",
            "conformance.agent", "env", "PET_"], "securityContext": pods.restricted()}  # fmt: skip
    job = {"metadata": {"labels": {"trainer.kubeflow.org/trainjob-ancestor-step": "trainer"}},
           "spec": {"template": {"spec": {"containers": [node]}}}}  # fmt: skip
    return {"apiVersion": TRAINER_API, "kind": "TrainingRuntime", "metadata": {"name": name},
            "spec": {"mlPolicy": {"numNodes": 1},
                     "template": {"spec": {"replicatedJobs": [
                         {"name": "node", "replicas": 1, "template": job}]}}}}  # fmt: skip


def _train_progress(job: Obj) -> str | None:
    """Its JobSet ran to completion (condition Complete), with the jobs it counted."""
    complete = _true_condition(job, "Complete")
    if not complete:
        return None
    jobs = {j.get("name"): f"{j.get('succeeded', 0)} succeeded"
            for j in (job.get("status") or {}).get("jobsStatus") or []}  # fmt: skip
    return f"{complete}; jobs {jobs}"


KNOWN: dict[str, Operator] = {
    "lws": Operator(
        "lws",
        crds=("leaderworkersets.leaderworkerset.x-k8s.io",),
        deployments=("lws-controller-manager",),
        webhook_names=("lws-",),
        invalid=lambda _cluster, name: _lws(name, 2, maxUnavailable=0, maxSurge=0),
        invalid_why="rolloutStrategy maxUnavailable 0 with maxSurge 0",
        valid=Probe(
            lambda _cluster, name: [_lws(name, 2)],
            _lws_progress,
            "its group to be created and ready (status.readyReplicas)",
        ),
    ),
    "kueue": Operator(
        "kueue",
        crds=(
            "clusterqueues.kueue.x-k8s.io",
            "localqueues.kueue.x-k8s.io",
            "resourceflavors.kueue.x-k8s.io",
            "workloads.kueue.x-k8s.io",
        ),
        deployments=("kueue-controller-manager",),
        webhook_names=("kueue-",),
        invalid=_kueue_invalid,
        invalid_why="a ResourceFlavor taint whose value is not a label value",
        valid=Probe(
            _kueue_valid,
            lambda cq: _true_condition(cq, "Active"),
            "the ClusterQueue to become Active",
        ),
    ),
    "kuberay": Operator(
        "kuberay",
        crds=("rayclusters.ray.io", "rayjobs.ray.io", "rayservices.ray.io"),
        deployments=("kuberay-operator",),
        webhook_names=("kuberay-", "ray-"),
        invalid=lambda _cluster, name: _ray_cluster(name, "workers", "workers"),
        invalid_why="a RayCluster with two worker groups of one name",
        valid=Probe(
            lambda _cluster, name: [_ray_cluster(name, "workers")],
            _ray_progress,
            "its head and worker pods to be created and Ready (state ready, RayClusterProvisioned)",
        ),
    ),
    "kubeflow-trainer": Operator(
        "kubeflow-trainer",
        crds=(
            "trainjobs.trainer.kubeflow.org",
            "trainingruntimes.trainer.kubeflow.org",
            "clustertrainingruntimes.trainer.kubeflow.org",
        ),
        deployments=("kubeflow-trainer-controller-manager",),
        webhook_names=(
            "kubeflow-trainer-",
            "trainer-",
            "validator.trainer.kubeflow.org",
            "defaulter.trainer.kubeflow.org",
        ),
        invalid=lambda _cluster, name: _train_job(name, f"{name}-missing"),
        invalid_why="a TrainJob whose TrainingRuntime does not exist",
        valid=Probe(
            lambda _cluster, name: [_training_runtime(name), _train_job(name, name)],
            _train_progress,
            "its JobSet, Jobs and pods to run to completion (condition Complete)",
        ),
    ),
}
assert tuple(KNOWN) == OPERATORS


def crds_by_name(cluster: Cluster) -> dict[str, Obj]:
    crds = cluster.list_objects(CRD_API, "CustomResourceDefinition")
    return {c["metadata"]["name"]: c for c in crds}


def operators_to_verify(cluster: Cluster, settings: Settings) -> list[Operator]:
    """The operators named by --operator, else those installed; skips when there are none."""

    crds = crds_by_name(cluster)
    if settings.operators:
        named = [KNOWN[name] for name in settings.operators]
        for op in named:
            require_installed(crds, op)
        return named
    found = [op for op in KNOWN.values() if any(c in crds for c in op.crds)]
    if not found:
        fail(
            expected=f"at least one AI operator kaic can verify installed ({', '.join(KNOWN)})",
            observed="none of their CRDs is served",
            next_step="install one (the checklist asks for a complex AI operator with a CRD, "
            "e.g. Ray or Kubeflow); to name it explicitly, use --operator",
        )
    return found


def webhook_configurations(cluster: Cluster, operator: Operator) -> list[Obj]:
    """The operator's webhook configurations: by name, else those with a webhook for one of its
    API groups (other operators' configurations may cover its groups too: Kueue's covers LWS)."""
    configs = [c for kind in WEBHOOK_KINDS for c in cluster.list_objects(WEBHOOK_API, kind)]
    named = [c for c in configs if c["metadata"]["name"].startswith(operator.webhook_names)]
    if named:
        return named
    groups = operator.api_groups
    return [
        c for c in configs
        if any(set(rule.get("apiGroups") or []) & groups
               for hook in c.get("webhooks") or [] for rule in hook.get("rules") or [])
    ]  # fmt: skip


def require_installed(crds: dict[str, Obj], operator: Operator) -> None:
    missing = [c for c in operator.crds if c not in crds]
    if missing:
        fail(
            expected=f"operator {operator.name}'s CRDs to exist",
            observed=f"missing: {', '.join(f'CustomResourceDefinition/{c}' for c in missing)}",
            next_step=f"install {operator.name}, or leave it out of --operator",
        )
