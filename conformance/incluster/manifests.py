"""What `kaic plugin` and `kaic manifests` print: a Sonobuoy plugin, or a standalone Job."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml

from conformance.incluster import rbac
from conformance.probes import PROBE_IMAGE

NAME = "kaic"
SOURCE_URL = "https://github.com/kaic-dev/kaic"
RESULTS_DIR = "/tmp/sonobuoy/results"
RESULT_FILES = {"junit": "junit.xml", "manual": "manual-results.yaml"}
LABELS = {"app.kubernetes.io/name": "kaic", "app.kubernetes.io/component": "runner"}


def entrypoint_args(profile: str, result_format: str, extra: Sequence[str]) -> list[str]:
    return ["entrypoint", "--profile", profile, "--result-format", result_format, *extra]


def _security_context() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def sonobuoy_plugin(
    profile: str, image: str = PROBE_IMAGE, result_format: str = "junit", extra: Sequence[str] = ()
) -> dict[str, Any]:
    """A Sonobuoy plugin definition (sonobuoy run --plugin <file>)."""
    return {
        "sonobuoy-config": {
            "driver": "Job",
            "plugin-name": NAME,
            "result-format": result_format,
            "result-files": [RESULT_FILES[result_format]],
            "description": f"Kubernetes AI conformance (kaic), profile {profile}: deploys probe "
            "workloads and asserts what the cluster did.",
            "source-url": SOURCE_URL,
        },
        "spec": {
            "name": "plugin",
            "image": image,
            "imagePullPolicy": "IfNotPresent",
            "command": ["kaic"],
            "args": entrypoint_args(profile, result_format, extra),
            "env": [{"name": "SONOBUOY_RESULTS_DIR", "value": RESULTS_DIR}],
            "securityContext": _security_context(),
            "volumeMounts": [
                {"name": "results", "mountPath": RESULTS_DIR},
                {"name": "tmp", "mountPath": "/tmp"},
            ],
        },
        "extra-volumes": [{"name": "tmp", "emptyDir": {}}],
    }


def job_manifests(
    profile: str,
    image: str = PROBE_IMAGE,
    namespace: str = "kaic",
    linger_s: int = 600,
    extra: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """Namespace, ServiceAccount, least-privilege ClusterRole and binding, and the Job."""
    labels = dict(LABELS)
    args = [*entrypoint_args(profile, "junit", extra), "--linger", str(linger_s)]
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": NAME, "namespace": namespace, "labels": labels},
        "spec": {
            "backoffLimit": 0,
            "ttlSecondsAfterFinished": 86400,
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "serviceAccountName": NAME,
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": NAME,
                            "image": image,
                            "command": ["kaic"],
                            "args": args,
                            "securityContext": _security_context(),
                            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                        }
                    ],
                    "volumes": [{"name": "tmp", "emptyDir": {}}],
                },
            },
        },
    }
    return [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": namespace, "labels": labels},
        },
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": NAME, "namespace": namespace, "labels": labels},
        },
        rbac.cluster_role(NAME, labels),
        rbac.cluster_role_binding(NAME, NAME, NAME, namespace, labels),
        job,
    ]


def dump_all(documents: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(documents, sort_keys=False, width=100)
