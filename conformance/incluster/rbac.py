"""The least privilege kaic needs, derived from what the checks and the cleanup do.

Every rule names who needs it. Namespaced rules sit in the ClusterRole because each check runs in
a fresh namespace the suite creates; kaic never reads objects it did not create, except the
cluster-scoped inventory (nodes, DRA slices and classes, CRDs). Server-side apply needs `patch`,
and `create` where the object does not exist yet. Discovery (/api, /apis, /version, /readyz) is
granted to every authenticated user by the built-in `system:discovery` and
`system:public-info-viewer` roles.

The integration test `tests/integration/test_incluster.py` runs the suite bound to exactly this
role and compares with an admin run; a new check that needs more fails there with
`forbidden: <verb> <resource>`.
"""

from __future__ import annotations

from typing import Any

READ = ["get", "list", "watch"]
MANAGE = ["get", "list", "watch", "create", "patch", "delete"]

# (api group, resources, verbs, who needs it)
RULES: list[tuple[str, list[str], list[str], str]] = [
    ("", ["namespaces"], MANAGE, "a fresh namespace per check; the end-of-run sweep"),
    (
        "",
        ["serviceaccounts"],
        MANAGE,
        "a new namespace is ready once its default account exists; inference-pool.*: the "
        "endpoint picker's own account",
    ),
    ("", ["pods"], MANAGE, "probe pods of every check"),
    ("", ["pods/log"], ["get"], "the probe agent's report is its log"),
    ("", ["nodes"], READ, "accelerator inventory: capacity, labels, taints"),
    (
        "",
        ["configmaps"],
        ["get"],
        "cluster-autoscaling.*: kube-system/cluster-autoscaler-status tells an autoscaler runs",
    ),
    (
        "karpenter.sh",
        ["nodepools"],
        ["get", "list"],
        "cluster-autoscaling.*: Karpenter's NodePools are node groups it can grow",
    ),
    (
        "",
        ["events"],
        ["list"],
        "cluster-autoscaling.*: the scheduler's and the autoscaler's events on a pod that waits",
    ),
    ("batch", ["jobs"], MANAGE, "kueue.* and gang.* submit Jobs"),
    ("resource.k8s.io", ["deviceclasses", "resourceslices"], READ, "dra.* inventory"),
    (
        "resource.k8s.io",
        ["resourceclaims", "resourceclaimtemplates"],
        MANAGE,
        "dra.* and secure_access.* claim devices",
    ),
    (
        "apiextensions.k8s.io",
        ["customresourcedefinitions"],
        ["get", "list"],
        "operator.*: the operators' CRDs present and Established",
    ),
    (
        "",
        ["services"],
        MANAGE,
        "operator.*: the Services webhooks call; ai-service-metrics.*: finding Prometheus; "
        "gateway-api.* and inference-pool.*: the model servers' and the picker's Services",
    ),
    (
        "",
        ["pods/proxy"],
        ["get", "create"],
        "ai-service-metrics.*: requests to the model server; accelerator-metrics.*: scraping the "
        "exporters",
    ),
    ("", ["services/proxy"], ["get"], "ai-service-metrics.*: Prometheus queries"),
    (
        "monitoring.coreos.com",
        ["podmonitors"],
        MANAGE,
        "ai-service-metrics.*: where the Prometheus operator runs, a PodMonitor for the server",
    ),
    (
        "monitoring.coreos.com",
        ["prometheuses"],
        ["get", "list"],
        "ai-service-metrics.*: which PodMonitors each Prometheus selects",
    ),
    (
        "discovery.k8s.io",
        ["endpointslices"],
        ["get", "list"],
        "operator.*: a webhook Service has ready endpoints",
    ),
    (
        "apps",
        ["deployments"],
        MANAGE,
        "operator.*: the controller is Available; pod-autoscaling.*: the Deployment it scales",
    ),
    (
        "autoscaling",
        ["horizontalpodautoscalers"],
        MANAGE,
        "pod-autoscaling.*: the HPA under test",
    ),
    (
        "admissionregistration.k8s.io",
        ["validatingwebhookconfigurations", "mutatingwebhookconfigurations"],
        ["get", "list"],
        "operator.*: each webhook has a CA bundle and a backend",
    ),
    (
        "kueue.x-k8s.io",
        ["resourceflavors", "clusterqueues", "localqueues"],
        MANAGE,
        "kueue.* and gang.* create a private flavor and queues",
    ),
    ("kueue.x-k8s.io", ["workloads"], READ, "admission of Kueue workloads"),
    ("gateway.networking.k8s.io", ["gatewayclasses"], READ, "gateway-api.*: an Accepted class"),
    (
        "gateway.networking.k8s.io",
        ["gateways", "httproutes"],
        MANAGE,
        "gateway-api.* and inference-pool.*: the suite's Gateway and routes",
    ),
    ("inference.networking.k8s.io", ["inferencepools"], MANAGE, "inference-pool.*: the pools"),
    (
        "inference.networking.x-k8s.io",
        ["inferenceobjectives", "inferencemodelrewrites"],
        READ,
        "inference-pool.*: granted on to the endpoint picker (RBAC allows granting only what one "
        "holds)",
    ),
    (
        "rbac.authorization.k8s.io",
        ["roles", "rolebindings"],
        MANAGE,
        "inference-pool.*: the endpoint picker's Role (read pods and pools) and its binding",
    ),
    (
        "leaderworkerset.x-k8s.io",
        ["leaderworkersets"],
        MANAGE,
        "lws.* groups; operator.* (lws) valid and invalid LeaderWorkerSets",
    ),
    ("ray.io", ["rayclusters"], MANAGE, "operator.* (kuberay): valid and invalid RayClusters"),
    (
        "trainer.kubeflow.org",
        ["trainjobs", "trainingruntimes"],
        MANAGE,
        "operator.* (kubeflow-trainer): a TrainingRuntime, valid and invalid TrainJobs",
    ),
]


def rules() -> list[dict[str, Any]]:
    return [
        {"apiGroups": [group], "resources": list(resources), "verbs": list(verbs)}
        for group, resources, verbs, _why in RULES
    ]


def cluster_role(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": name, "labels": dict(labels)},
        "rules": rules(),
    }


def cluster_role_binding(
    name: str, role: str, service_account: str, namespace: str, labels: dict[str, str]
) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": name, "labels": dict(labels)},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [{"kind": "ServiceAccount", "name": service_account, "namespace": namespace}],
    }
