"""The probe runtime behaves like a kubelet where checks can see it: restart policy and
restartCount, readiness and liveness probes, and LWS reacting to a container that failed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client import ApiException

from conformance.cluster import Cluster, ObjectRef
from conformance.cluster.wait import poll_until
from conformance.probes import PROBE_IMAGE
from tests.integration.test_sandbox import scratch_namespace
from tests.integration.test_sandbox_stack import LWS_NAME, finished, probe_pod, running_group

pytestmark = pytest.mark.sandbox
Obj = dict[str, Any]


@pytest.fixture
def ns(admin: Cluster) -> Iterator[str]:
    yield from scratch_namespace(admin)


def container_status(pod: Obj) -> Obj:
    statuses: list[Obj] = (pod.get("status") or {}).get("containerStatuses") or []
    return statuses[0] if statuses else {}


def condition(pod: Obj, kind: str) -> str | None:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond["type"] == kind:
            return str(cond["status"])
    return None


def test_restart_policy_always_restarts_and_counts(admin: Cluster, ns: str) -> None:
    pod = probe_pod(ns, "crashes", "print('once more'); raise SystemExit(3)")
    pod["spec"]["restartPolicy"] = "Always"
    admin.apply(pod)
    seen = admin.wait_for(
        "v1", "Pod",
        lambda ps: ps[0] if ps and container_status(ps[0]).get("restartCount", 0) >= 2 else None,
        awaiting="two restarts", timeout_s=60, namespace=ns, name="crashes",
    )  # fmt: skip
    assert seen["status"]["phase"] == "Running", "a restarted container's pod stays Running"
    last = container_status(seen)["lastState"]["terminated"]
    assert last["exitCode"] == 3


def test_restart_policy_on_failure_stops_after_success(
    admin: Cluster, ns: str, tmp_path: Path
) -> None:
    marker = tmp_path / "failed-once"
    code = (
        f"import pathlib, sys; p = pathlib.Path({str(marker)!r})\n"
        "if not p.exists(): p.touch(); sys.exit(1)\n"
        "print('second time lucky')\n"
    )
    pod = probe_pod(ns, "flaky", code)
    pod["spec"]["restartPolicy"] = "OnFailure"
    admin.apply(pod)
    done = finished(admin, ns, "flaky")
    assert done["status"]["phase"] == "Succeeded"
    assert container_status(done)["restartCount"] == 1
    assert admin.pod_logs("flaky", ns).strip() == "second time lucky"


SERVE_LATE = (
    "import http.server, os, time\n"
    "time.sleep(3)\n"
    "http.server.HTTPServer((os.environ['KAIC_POD_IP'], 8080),"
    " http.server.SimpleHTTPRequestHandler).serve_forever()\n"
)


def test_readiness_probe_gates_ready(admin: Cluster, ns: str) -> None:
    pod = probe_pod(
        ns, "late", SERVE_LATE,
        container={"ports": [{"name": "http", "containerPort": 8080}],
                   "readinessProbe": {"httpGet": {"path": "/", "port": "http"},
                                      "periodSeconds": 1, "failureThreshold": 1}},
    )  # fmt: skip
    admin.apply(pod)
    admin.wait_for("v1", "Pod", lambda ps: ps and condition(ps[0], "Ready") == "False",
                   awaiting="not Ready while nothing listens", timeout_s=30, namespace=ns,
                   name="late")  # fmt: skip
    ready = admin.wait_for(
        "v1", "Pod", lambda ps: ps[0] if ps and condition(ps[0], "Ready") == "True" else None,
        awaiting="Ready once the server answers", timeout_s=30, namespace=ns, name="late",
    )  # fmt: skip
    assert container_status(ready)["ready"] is True
    assert container_status(ready)["restartCount"] == 0


def test_liveness_probe_failure_restarts_the_container(admin: Cluster, ns: str) -> None:
    pod = probe_pod(
        ns, "wedged", "import time; time.sleep(3600)",
        container={"livenessProbe": {"tcpSocket": {"port": 9}, "periodSeconds": 1,
                                     "failureThreshold": 2}},
    )  # fmt: skip
    pod["spec"]["restartPolicy"] = "Always"
    admin.apply(pod)
    admin.wait_for(
        "v1", "Pod", lambda ps: ps and container_status(ps[0]).get("restartCount", 0) >= 1,
        awaiting="a restart after failed liveness probes", timeout_s=30, namespace=ns,
        name="wedged",
    )  # fmt: skip


def test_lws_recreates_the_group_when_a_worker_container_fails(
    admin: Cluster, ns: str, tmp_path: Path
) -> None:
    """Not a deleted pod: worker 1's process exits non-zero once; the runtime restarts it
    (restartCount 1) and the real LWS controller recreates the whole group."""
    marker = tmp_path / "fail-worker-1"
    marker.touch()
    code = (
        "import os, pathlib, time\n"
        f"p = pathlib.Path({str(marker)!r})\n"
        "time.sleep(1)\n"
        "if os.environ.get('LWS_WORKER_INDEX') == '1' and p.exists():\n"
        "    p.unlink(); raise SystemExit(1)\n"
        "time.sleep(3600)\n"
    )
    admin.apply({
        "apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet",
        "metadata": {"name": "group", "namespace": ns},
        "spec": {"replicas": 1, "leaderWorkerTemplate": {"size": 3, "workerTemplate": {
            "spec": {"containers": [{"name": "probe", "image": PROBE_IMAGE,
                                     "command": ["python", "-c", code]}]}}}},
    })  # fmt: skip
    first = {p["metadata"]["uid"] for p in running_group(admin, ns)}
    admin.wait_for(
        "v1", "Pod",
        lambda pods: len(pods) == 3 and not first & {p["metadata"]["uid"] for p in pods}
        and all((p.get("status") or {}).get("phase") == "Running" for p in pods),
        awaiting="a whole new group (3 new pod UIDs)", timeout_s=90, namespace=ns,
        label_selector=f"{LWS_NAME}=group",
    )  # fmt: skip
    assert not marker.exists(), "worker 1 failed once"
    events = admin.list_objects("v1", "Event", namespace=ns,
                                field_selector="reason=RecreateGroupOnPodRestart")  # fmt: skip
    assert events, "the LWS controller recorded the group restart"


WHOAMI = (
    "from kubernetes import client, config\n"
    "config.load_incluster_config()\n"
    "review = client.AuthenticationV1Api().create_self_subject_review(\n"
    "    {'apiVersion': 'authentication.k8s.io/v1', 'kind': 'SelfSubjectReview'})\n"
    "print(review.status.user_info.username)\n"
)


def test_probe_gets_in_cluster_credentials(admin: Cluster, ns: str) -> None:
    """The standard in-cluster config works: API address in the env, and the pod's own bound
    service-account token (at the standard path when the sandbox runs as root)."""
    admin.apply(probe_pod(ns, "whoami", WHOAMI))
    done = finished(admin, ns, "whoami")
    logs = admin.pod_logs("whoami", ns).strip()
    assert done["status"]["phase"] == "Succeeded", logs
    assert logs.splitlines()[-1] == f"system:serviceaccount:{ns}:default"


def test_job_of_probe_pods_ends_as_its_process_does(admin: Cluster, ns: str) -> None:
    """KWOK completes every Job pod at once; not probe pods (any tag of the probe image)."""
    admin.apply({
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "fails", "namespace": ns},
        "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never", "containers": [
            {"name": "probe", "image": "localhost:5000/dev/kaic-probe:dev",
             "command": ["python", "-c", "import time; time.sleep(2); raise SystemExit(4)"]}]}}},
    })  # fmt: skip
    job = admin.wait_for(
        "batch/v1", "Job",
        lambda jobs: next((j for j in jobs for c in (j.get("status") or {}).get("conditions")
                           or [] if c["type"] in ("Failed", "Complete")
                           and c["status"] == "True"), None),
        awaiting="the Job to end", timeout_s=60, namespace=ns, name="fails",
    )  # fmt: skip
    assert any(c["type"] == "Failed" for c in job["status"]["conditions"])
    [pod] = admin.list_objects("v1", "Pod", namespace=ns, label_selector="job-name=fails")
    assert container_status(pod)["state"]["terminated"]["exitCode"] == 4
    # Other images keep KWOK's simulated lifecycle: their Job completes at once.
    admin.apply({
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "sim", "namespace": ns},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [
            {"name": "c", "image": "registry.k8s.io/pause:3.10"}]}}},
    })  # fmt: skip
    admin.wait_for(
        "batch/v1", "Job", lambda jobs: jobs and (jobs[0].get("status") or {}).get("succeeded"),
        awaiting="the simulated Job to succeed", timeout_s=60, namespace=ns, name="sim",
    )  # fmt: skip


def test_a_probed_pod_is_never_ready_before_its_probe_passes(admin: Cluster, ns: str) -> None:
    """KWOK's own stage reports every pod Ready as it starts it; a pod with a readiness probe
    must start NotReady, as under a kubelet (so a Service never sends it traffic early)."""
    pod = probe_pod(
        ns, "gated", SERVE_LATE,
        container={"ports": [{"name": "http", "containerPort": 8080}],
                   "readinessProbe": {"httpGet": {"path": "/", "port": "http"},
                                      "periodSeconds": 1}},
    )  # fmt: skip
    seen: list[str | None] = []

    def ready_at_last(pods: list[Obj]) -> Obj | None:
        if pods:
            seen.append(condition(pods[0], "Ready"))
        return pods[0] if pods and seen[-1] == "True" else None

    admin.apply(pod)
    admin.wait_for("v1", "Pod", ready_at_last, awaiting="Ready once the server answers",
                   timeout_s=60, namespace=ns, name="gated")  # fmt: skip
    # Ready is reported once, last, after NotReady (KWOK alone: [None, None, 'True'])
    assert "False" in seen[: seen.index("True")], f"Ready before its probe passed: {seen}"


SERVE_AFTER_4S = (
    "import socket, time\n"
    "time.sleep(4)\n"
    "s = socket.socket(); s.bind(('0.0.0.0', 8080)); s.listen()\n"
    "print('listening', flush=True)\n"
    "while True: s.accept()[0].close()\n"
)


def test_a_startup_probe_holds_liveness_back(admin: Cluster, ns: str) -> None:
    """A liveness probe that would kill a slow starter at once waits, as in the kubelet, until
    the startup probe has passed."""
    # Ungated, this liveness probe kills the container 2 s in, before it listens (4 s in); two
    # failures, not one, so that a single slow answer under load does not restart it later.
    tcp = {"tcpSocket": {"port": 8080}, "periodSeconds": 1, "failureThreshold": 2}
    pod = probe_pod(ns, "slow-start", SERVE_AFTER_4S,
                    container={"startupProbe": {**tcp, "failureThreshold": 30},
                               "livenessProbe": tcp})  # fmt: skip
    pod["spec"]["restartPolicy"] = "Always"
    admin.apply(pod)

    def listening() -> tuple[bool, str]:  # a log line: nothing to watch
        pod_now = admin.get(ObjectRef("v1", "Pod", "slow-start", ns)) or {}
        if (pod_now.get("status") or {}).get("phase") != "Running":
            return False, "not running yet"
        try:
            logs = admin.pod_logs("slow-start", ns)
        except ApiException as exc:  # 400 until the runtime has the container's log
            return False, f"no log yet ({exc.status})"
        return "listening" in logs, f"restarts {container_status(pod_now).get('restartCount')}"

    poll_until(listening, awaiting="the slow starter to listen", timeout_s=60)
    pod_now = admin.get(ObjectRef("v1", "Pod", "slow-start", ns)) or {}
    assert container_status(pod_now)["restartCount"] == 0
