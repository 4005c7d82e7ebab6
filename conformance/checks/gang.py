"""Gang scheduling (all-or-nothing) through Kueue: a gang that fits runs all together; one that
cannot fit gets no pod at all; and while an admitted gang's pods are not all ready, the queue
admits nothing else (waitForPodsReady), so gangs never half-start each other out."""

from __future__ import annotations

from typing import Any

from conformance.checks._kueue import (
    admitted,
    kueue_api,
    pending_reason,
    private_queues,
    queued_job,
    wait_workload,
    workload_of,
)
from conformance.checks.registry import check
from conformance.cluster.wait import WaitTimeout
from conformance.evidence import Evidence
from conformance.failures import fail
from conformance.fixtures import Kube
from conformance.settings import Settings

Obj = dict[str, Any]
GANG = 3
JOB_LABEL = "batch.kubernetes.io/job-name"


def _placed(pod: Obj) -> bool:
    return bool(pod["spec"].get("nodeName")) or (pod.get("status") or {}).get("phase") in (
        "Running", "Succeeded", "Failed",
    )  # fmt: skip


@check("gang.fitting-gang-runs", requirements=["gang_scheduling"])
def test_fitting_gang_runs(kube: Kube, evidence: Evidence) -> None:
    """A gang of 3 that fits its queue gets all 3 pods running together, then completes."""
    queues = private_queues(kube, {"cpu": str(GANG)})
    kube.apply(queued_job("gang", queues.local_queue, parallelism=GANG, hold_s=5))
    evidence.observe("gang_scheduler", f"kueue ({queues.api})")
    together = kube.cluster.wait_for(
        "v1", "Pod",
        lambda pods: pods if len([p for p in pods if (p.get("status") or {}).get("phase")
                                  == "Running"]) == GANG else None,
        awaiting=f"all {GANG} pods of Job {kube.namespace}/gang running at once",
        timeout_s=180, namespace=kube.namespace, label_selector=f"{JOB_LABEL}=gang",
    )  # fmt: skip
    evidence.observe("running_together", sorted(p["metadata"]["name"] for p in together))
    kube.cluster.wait_for(
        "batch/v1", "Job",
        lambda jobs: (jobs and any(c["type"] == "Complete" and c["status"] == "True"
                                  for c in (jobs[0].get("status") or {}).get("conditions")
                                  or [])) or None,
        awaiting=f"Job {kube.namespace}/gang to complete", timeout_s=180,
        namespace=kube.namespace, name="gang",
    )  # fmt: skip


@check("gang.unfit-gang-never-partial", requirements=["gang_scheduling"])
def test_unfit_gang_never_partial(kube: Kube, kaic_settings: Settings, evidence: Evidence) -> None:
    """A gang larger than its queue's quota never has any pod bound during the window."""
    window = kaic_settings.observe_window_s
    queues = private_queues(kube, {"cpu": str(GANG - 1)})
    kube.apply(queued_job("too-big", queues.local_queue, parallelism=GANG, hold_s=600))
    try:
        placed = kube.cluster.wait_for(
            "v1", "Pod", lambda pods: [p for p in pods if _placed(p)] or None,
            awaiting="any pod of the unfit gang to be placed (none may be)", timeout_s=window,
            namespace=kube.namespace, label_selector=f"{JOB_LABEL}=too-big",
        )  # fmt: skip
    except WaitTimeout:
        workloads = kube.cluster.list_objects(queues.api, "Workload", namespace=kube.namespace)
        wl = workload_of("too-big")(workloads)
        evidence.observe("observed_s", window)
        evidence.observe("waiting_because", pending_reason(wl) if wl else "")
        return
    fail(
        expected=f"none of the {GANG} pods of Job {kube.namespace}/too-big (quota for "
        f"{GANG - 1}) to be bound or running during {window:g}s",
        observed=f"{len(placed)} placed: "
        + ", ".join(f"{p['metadata']['name']} on {p['spec'].get('nodeName')}" for p in placed),
        next_step="the gang was partially started: check Kueue's job integration",
    )


@check("gang.waits-for-pods-ready", requirements=["gang_scheduling"])
def test_waits_for_pods_ready(kube: Kube, kaic_settings: Settings, evidence: Evidence) -> None:
    """While an admitted gang's pods cannot all become ready, the queue admits no other gang."""
    window = kaic_settings.observe_window_s
    kueue_api(kube.cluster)
    queues = private_queues(kube, {"cpu": str(2 * GANG)})
    stuck = queued_job("stuck", queues.local_queue, parallelism=GANG, hold_s=600)
    # One node name no node has: the gang is admitted by quota, but its pods can never run.
    stuck["spec"]["template"]["spec"]["nodeSelector"] = {"kaic.dev/no-such-node": "true"}
    kube.apply(stuck)
    wait_workload(kube, queues.api, "stuck", admitted, "the stuck gang to be admitted by quota")
    kube.apply(queued_job("next", queues.local_queue, parallelism=GANG, hold_s=600))
    try:
        wl = wait_workload(
            kube, queues.api, "next", admitted,
            "the next gang to be admitted (it must wait for the stuck gang's pods)",
            timeout_s=window,
        )  # fmt: skip
    except WaitTimeout:
        current = workload_of("next")(
            kube.cluster.list_objects(queues.api, "Workload", namespace=kube.namespace)
        )
        evidence.observe("next_waiting_because", pending_reason(current) if current else "")
        return
    fail(
        expected=f"Job {kube.namespace}/next to wait while the admitted gang "
        f"{kube.namespace}/stuck has pods that are not ready (Kueue waitForPodsReady with "
        "blockAdmission)",
        observed=f"Workload {wl['metadata']['name']} Admitted within {window:g}s",
        next_step="enable waitForPodsReady (blockAdmission: true) in Kueue's configuration",
    )
