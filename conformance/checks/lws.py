"""LeaderWorkerSet: groups are created with their labels and env, and a failed or lost member
brings the whole group back (RecreateGroupOnPodRestart), leaving other groups alone."""

from __future__ import annotations

import time
from typing import Any

from conformance.checks._accelerators import running_report
from conformance.checks.registry import check
from conformance.cluster import Cluster
from conformance.cluster.wait import WaitTimeout
from conformance.evidence import Evidence
from conformance.failures import fail
from conformance.fixtures import Kube
from conformance.probes import pods

Obj = dict[str, Any]
API = "leaderworkerset.x-k8s.io/v1"
NAME_LABEL = "leaderworkerset.sigs.k8s.io/name"
GROUP_LABEL = "leaderworkerset.sigs.k8s.io/group-index"
WORKER_LABEL = "leaderworkerset.sigs.k8s.io/worker-index"
SIZE = 3
READY_TIMEOUT_S = 180
# A group that restarts reuses the image already on its nodes: it is back quickly or not at all.
RECREATE_TIMEOUT_S = 60
FAIL_AFTER_S = 20


def _lws(name: str, *, replicas: int = 1, restart: str = "RecreateGroupOnPodRestart",
         fail_worker: int | None = None) -> Obj:  # fmt: skip
    command = ["python", "-m", "conformance.agent", "env", "LWS_", "--hold", "3600"]
    if fail_worker is not None:
        command += ["--fail-after", str(FAIL_AFTER_S), "--fail-if",
                    f"LWS_WORKER_INDEX={fail_worker}"]  # fmt: skip
    template = pods.pod(name, [pods.container(command=command)], tolerate_gpus=False)["spec"]
    template["restartPolicy"] = "Always"
    return {
        "apiVersion": API, "kind": "LeaderWorkerSet", "metadata": {"name": name},
        "spec": {"replicas": replicas, "leaderWorkerTemplate": {
            "size": SIZE, "restartPolicy": restart,
            "workerTemplate": {"metadata": {"labels": {"app.kubernetes.io/name": name}},
                               "spec": template}}},
    }  # fmt: skip


def _require_api(cluster: Cluster) -> None:
    if not cluster.serves(API, "LeaderWorkerSet"):
        fail(
            expected=f"the LeaderWorkerSet API {API} to be served",
            observed="no LeaderWorkerSet resource in API discovery",
            next_step="install LWS (https://lws.sigs.k8s.io/docs/installation/)",
        )


def _running(pod: Obj) -> bool:
    status = pod.get("status") or {}
    return status.get("phase") == "Running" and not pod["metadata"].get("deletionTimestamp")


def _groups_running(
    kube: Kube,
    name: str,
    replicas: int,
    *,
    avoid: frozenset[str] | set[str] = frozenset(),
    awaiting: str = "",
    timeout_s: float = READY_TIMEOUT_S,
) -> list[Obj]:
    """Wait for replicas*SIZE running pods of the set, none of whose UIDs are in `avoid`."""

    def ready(found: list[Obj]) -> list[Obj] | None:
        live = [p for p in found if _running(p)]
        if len(live) == replicas * SIZE and len(found) == len(live):
            return live if not {p["metadata"]["uid"] for p in live} & avoid else None
        return None

    return kube.cluster.wait_for(
        "v1", "Pod", ready, awaiting=awaiting or f"{replicas} group(s) of {SIZE} running pods "
        f"of LeaderWorkerSet {name}", timeout_s=timeout_s, namespace=kube.namespace,
        label_selector=f"{NAME_LABEL}={name}",
    )  # fmt: skip


def _uids(found: list[Obj], group: str | None = None) -> dict[str, str]:
    return {
        p["metadata"]["name"]: p["metadata"]["uid"]
        for p in found
        if group is None or p["metadata"]["labels"].get(GROUP_LABEL) == group
    }


@check("lws.api-served", requirements=["lws_gang_restart"])
def test_api_served(cluster: Cluster, evidence: Evidence) -> None:
    """The LeaderWorkerSet API is served."""
    _require_api(cluster)
    evidence.observe("api", API)


@check("lws.group-created", requirements=["lws_gang_restart"])
def test_group_created(kube: Kube, evidence: Evidence) -> None:
    """A group of 3 comes up with the LWS labels, and each pod's process sees the LWS env."""
    _require_api(kube.cluster)
    kube.apply(_lws("group"))
    found = _groups_running(kube, "group", 1)
    seen: dict[str, Obj] = {}
    for pod in sorted(found, key=lambda p: p["metadata"]["name"]):
        name, labels = pod["metadata"]["name"], pod["metadata"]["labels"]
        env = running_report(kube, name).get("env", {})
        seen[name] = env
        index = labels.get(WORKER_LABEL)
        expected = {"LWS_GROUP_SIZE": str(SIZE), "LWS_WORKER_INDEX": index}
        wrong = {k: env.get(k) for k, v in expected.items() if env.get(k) != v}
        leader = env.get("LWS_LEADER_ADDRESS", "")
        if (
            index is None
            or labels.get(GROUP_LABEL) != "0"
            or wrong
            or not leader.startswith("group-0.")
        ):
            fail(
                expected=f"Pod/{kube.namespace}/{name} to carry the labels {GROUP_LABEL}=0 and "
                f"{WORKER_LABEL}, and its process to see LWS_GROUP_SIZE={SIZE}, its "
                "LWS_WORKER_INDEX and LWS_LEADER_ADDRESS=group-0.<service>...",
                observed=f"labels {labels}; env {env}",
                next_step="check the LWS controller's pod webhook (it injects the env)",
            )
    evidence.observe("env_seen", seen)


def _expect_group_recreated(
    kube: Kube, evidence: Evidence, before: list[Obj], cause: str, started: float
) -> None:
    old_group0 = _uids(before, "0")
    try:
        after = _groups_running(
            kube, "group", len(before) // SIZE, avoid=set(old_group0.values()),
            awaiting=f"group 0 to come back with {SIZE} new pods after {cause}",
            timeout_s=RECREATE_TIMEOUT_S,
        )  # fmt: skip
    except WaitTimeout:
        now = kube.cluster.list_objects("v1", "Pod", namespace=kube.namespace,
                                        label_selector=f"{NAME_LABEL}=group")  # fmt: skip
        kept = sorted(n for n, u in _uids(now, "0").items() if u in old_group0.values())
        fail(
            expected=f"LeaderWorkerSet {kube.namespace}/group (RecreateGroupOnPodRestart) to "
            f"recreate all {SIZE} pods of group 0 after {cause}",
            observed=f"pods kept with their old UIDs: {kept}",
            next_step="check the LWS controller's logs and the set's spec.leaderWorkerTemplate."
            "restartPolicy as stored",
        )
    evidence.observe("recovered_s", round(time.monotonic() - started, 3))
    untouched = _uids(before, "1")
    if untouched and _uids(after, "1") != untouched:
        fail(
            expected="group 1 to be untouched by group 0's restart",
            observed=f"group 1 UIDs changed: {untouched} -> {_uids(after, '1')}",
            next_step="the controller restarted more than the failed group",
        )


@check("lws.group-restart-on-delete", requirements=["lws_gang_restart"])
def test_group_restart_on_delete(kube: Kube, evidence: Evidence) -> None:
    """Deleting one worker recreates its whole group; the other group is untouched."""
    _require_api(kube.cluster)
    kube.apply(_lws("group", replicas=2))
    before = _groups_running(kube, "group", 2)
    started = time.monotonic()
    kube.cluster.core.delete_namespaced_pod("group-0-1", kube.namespace)
    _expect_group_recreated(kube, evidence, before, "deleting Pod group-0-1", started)


@check("lws.group-restart-on-failure", requirements=["lws_gang_restart"])
def test_group_restart_on_failure(kube: Kube, evidence: Evidence) -> None:
    """A worker whose container exits non-zero brings its whole group back."""
    _require_api(kube.cluster)
    kube.apply(_lws("group", fail_worker=1))
    before = _groups_running(kube, "group", 1)
    started = time.monotonic()
    cause = f"worker 1's container exits 1 ({FAIL_AFTER_S}s in)"
    _expect_group_recreated(kube, evidence, before, cause, started)


@check("lws.restart-policy-none", requirements=["lws_gang_restart"])
def test_restart_policy_none(kube: Kube, evidence: Evidence) -> None:
    """With restartPolicy None only the lost pod is replaced; its group mates keep running."""
    _require_api(kube.cluster)
    kube.apply(_lws("group", restart="None"))
    before = _uids(_groups_running(kube, "group", 1))
    kube.cluster.core.delete_namespaced_pod("group-0-1", kube.namespace)
    after = _uids(_groups_running(kube, "group", 1, avoid={before["group-0-1"]},
                                  awaiting="the deleted worker to be replaced"))  # fmt: skip
    evidence.observe("before", before)
    evidence.observe("after", after)
    if after["group-0"] != before["group-0"] or after["group-0-2"] != before["group-0-2"]:
        fail(
            expected=f"with restartPolicy None, only Pod {kube.namespace}/group-0-1 replaced",
            observed=f"UIDs before {before}, after {after}",
            next_step="the LWS controller ignores restartPolicy None",
        )
