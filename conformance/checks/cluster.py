"""The cluster itself: it answers, is healthy, and runs the version the profile targets."""

from __future__ import annotations

from conformance.checks.registry import check
from conformance.cluster import Cluster
from conformance.evidence import Evidence
from conformance.failures import fail
from conformance.profiles import Profile, parse_minor


@check("cluster.reachable", requirements=["cluster_baseline"])
def test_reachable(cluster: Cluster, evidence: Evidence) -> None:
    """The API server answers, reports ready, and serves the core API."""
    evidence.observe("server", cluster.server)
    evidence.observe("version", cluster.server_version())
    readyz = str(cluster.get_path("/readyz")).strip()
    evidence.observe("readyz", readyz)
    if readyz != "ok":
        fail(
            expected="GET /readyz to answer 'ok'",
            observed=f"{readyz!r}",
            next_step=f"kubectl get --raw '/readyz?verbose' against {cluster.server}",
        )
    core = cluster.get_path("/api")
    versions = core.get("versions", []) if isinstance(core, dict) else []
    evidence.observe("core_versions", versions)
    if "v1" not in versions:
        fail(
            expected="GET /api to list the core group version v1",
            observed=f"versions {versions}",
            next_step="check the API server's --runtime-config and any proxy in front of it",
        )


@check("cluster.version-supported", requirements=["cluster_baseline"])
def test_version_supported(cluster: Cluster, profile: Profile, evidence: Evidence) -> None:
    """The server runs the Kubernetes minor the profile certifies (or newer, for a minimum)."""
    version = cluster.server_version()
    evidence.observe("server_version", version)
    got = parse_minor(version)
    if got is None:
        fail(
            expected="a server version like v1.35.2",
            observed=f"GET /version gitVersion {version!r}",
            next_step="the API server binary was built without version information",
        )
    wanted = profile.kubernetes_version or profile.kubernetes_minimum
    evidence.observe("profile_version", profile.kubernetes_version)
    evidence.observe("profile_minimum", profile.kubernetes_minimum)
    if wanted is None:
        return
    target = parse_minor(wanted)
    assert target is not None  # profiles are validated to hold "1.NN"
    if profile.kubernetes_version and got != target:
        fail(
            expected=f"Kubernetes {wanted}.x for profile {profile.name}",
            observed=f"server version {version}",
            next_step=f"run the profile for your version (kaic list shows them, e.g. "
            f"--profile cncf-ai-v{got[0]}.{got[1]}) or upgrade the cluster",
        )
    if profile.kubernetes_minimum and got < target:
        fail(
            expected=f"Kubernetes {wanted} or newer for profile {profile.name}",
            observed=f"server version {version}",
            next_step="upgrade the cluster",
        )
