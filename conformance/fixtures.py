"""The fixtures a check asks for: the cluster, its own namespace, evidence, cleanup."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from conformance.checks.registry import MARKER
from conformance.cluster import Cluster, ObjectRef, connect
from conformance.cluster.cleanup import Registry
from conformance.cluster.discovery import ClusterInfo, discover
from conformance.cluster.labels import KEEP, kaic_labels
from conformance.errors import KaicError
from conformance.evidence import Evidence
from conformance.profiles import Profile, load_profile
from conformance.settings import Settings

SETTINGS_KEY = pytest.StashKey[Settings]()
EVIDENCE_KEY = pytest.StashKey[Evidence]()
FAILED_KEY = pytest.StashKey[bool]()


class Kube:
    """One check's handle on the cluster: applies into its namespace, labels and cleans up."""

    def __init__(self, cluster: Cluster, namespace: str, check_id: str, evidence: Evidence) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.check_id = check_id
        self.evidence = evidence
        self.registry = Registry()

    def apply(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        body = dict(manifest)
        meta = dict(body.get("metadata", {}))
        res = self.cluster.resource(body["apiVersion"], body["kind"])
        if res.namespaced:
            meta.setdefault("namespace", self.namespace)
        body["metadata"] = meta
        self.evidence.manifest(body)
        out = self.cluster.apply(body, check_id=self.check_id)
        ref = ObjectRef.of(out)
        self.evidence.object(ref)
        if ref.namespace != self.namespace:
            self.registry.add(ref)
        return out


def _check_mark(request: pytest.FixtureRequest) -> pytest.Mark:
    mark: pytest.Mark | None = request.node.get_closest_marker(MARKER)
    if mark is None:
        raise pytest.UsageError(
            f"{request.node.nodeid} uses a kaic fixture but has no @check(...) marker"
        )
    return mark


@pytest.fixture(scope="session")
def kaic_settings(request: pytest.FixtureRequest) -> Settings:
    return request.config.stash[SETTINGS_KEY]


@pytest.fixture(scope="session")
def profile(kaic_settings: Settings) -> Profile:
    """The profile this run verifies."""
    return load_profile(kaic_settings.profile)


@pytest.fixture(scope="session")
def cluster(kaic_settings: Settings) -> Cluster:
    """The cluster under test (connected and answering), shared by every check of a worker."""
    try:
        return connect(kaic_settings.connect, kaic_settings.run_id)
    except KaicError as exc:
        raise ConnectionError(str(exc)) from None


@pytest.fixture(scope="session")
def cluster_info(cluster: Cluster) -> ClusterInfo:
    return discover(cluster)


@pytest.fixture
def check_id(request: pytest.FixtureRequest) -> str:
    return str(_check_mark(request).args[0])


@pytest.fixture
def evidence(request: pytest.FixtureRequest) -> Evidence:
    ev = Evidence()
    request.node.stash[EVIDENCE_KEY] = ev
    return ev


@pytest.fixture
def namespace(
    request: pytest.FixtureRequest, cluster: Cluster, check_id: str, kaic_settings: Settings
) -> Iterator[str]:
    """A fresh namespace for this check, deleted afterwards (kept on failure if asked)."""
    level = str(_check_mark(request).kwargs.get("pod_security", "restricted"))
    name = f"kaic-{check_id.replace('.', '-')}-{kaic_settings.run_id.rsplit('-', 1)[-1]}"[:63]
    labels = kaic_labels(cluster.run_id, check_id)
    labels["pod-security.kubernetes.io/enforce"] = level
    cluster.apply(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}
    )
    ref = ObjectRef("v1", "Namespace", name)
    try:
        # Pods are refused until the service account controller has made "default".
        cluster.wait_for(
            "v1",
            "ServiceAccount",
            lambda objs: objs or None,
            awaiting=f"ServiceAccount {name}/default (created by the controller manager)",
            timeout_s=60,
            namespace=name,
            name="default",
        )
        yield name
    finally:
        if kaic_settings.keep_on_failure and request.node.stash.get(FAILED_KEY, False):
            cluster.apply(
                {
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {"name": name, "labels": {**labels, KEEP: "true"}},
                }
            )
        else:
            cluster.delete(ref)


@pytest.fixture
def kube(
    request: pytest.FixtureRequest,
    cluster: Cluster,
    namespace: str,
    check_id: str,
    evidence: Evidence,
    kaic_settings: Settings,
) -> Iterator[Kube]:
    handle = Kube(cluster, namespace, check_id, evidence)
    try:
        yield handle
    finally:
        if kaic_settings.keep_on_failure and request.node.stash.get(FAILED_KEY, False):
            for ref in handle.registry.refs:
                cluster.label(ref, {KEEP: "true"})
        else:
            problems = handle.registry.delete_all(cluster)
            if problems:
                raise RuntimeError("could not delete: " + "; ".join(problems))
