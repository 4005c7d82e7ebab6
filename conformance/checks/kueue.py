"""Kueue admission: quota is reserved for jobs that fit, others wait (and say why) until quota
frees, and a ClusterQueue only serves the namespaces it selects."""

from __future__ import annotations

import time

from conformance.checks._kueue import (
    admitted,
    kueue_api,
    pending_reason,
    private_queues,
    queued_job,
    seconds_since,
    wait_workload,
    workload_of,
)
from conformance.checks._status import condition
from conformance.checks.registry import check
from conformance.cluster import Cluster, ObjectRef
from conformance.cluster.wait import WaitTimeout
from conformance.evidence import Evidence
from conformance.failures import fail
from conformance.fixtures import Kube
from conformance.settings import Settings

HOLD_S = 600


@check("kueue.api-served", requirements=["kueue_admission"])
def test_api_served(cluster: Cluster, evidence: Evidence) -> None:
    """Kueue's API is served (v1beta2, or v1beta1 on older Kueue)."""
    evidence.observe("api", kueue_api(cluster))


def _job_unsuspended(kube: Kube, name: str) -> None:
    kube.cluster.wait_for(
        "batch/v1", "Job", lambda jobs: (jobs and jobs[0]["spec"].get("suspend") is False) or None,
        awaiting=f"Job {kube.namespace}/{name} to be unsuspended", timeout_s=60,
        namespace=kube.namespace, name=name,
    )  # fmt: skip


def _pods_running(kube: Kube, job: str, count: int) -> None:
    kube.cluster.wait_for(
        "v1", "Pod",
        lambda found: len([p for p in found if (p.get("status") or {}).get("phase")
                           in ("Running", "Succeeded")]) >= count or None,
        awaiting=f"{count} pod(s) of Job {job} to run", timeout_s=120,
        namespace=kube.namespace, label_selector=f"batch.kubernetes.io/job-name={job}",
    )  # fmt: skip


@check("kueue.admits-fitting-job", requirements=["kueue_admission"])
def test_admits_fitting_job(kube: Kube, evidence: Evidence) -> None:
    """A job that fits its queue's quota is admitted, unsuspended, and its pods run."""
    queues = private_queues(kube, {"cpu": "2"})
    start = time.monotonic()
    created = kube.apply(queued_job("fits", queues.local_queue, parallelism=2))
    if created["spec"].get("suspend") is not True:
        fail(
            expected=f"Job {kube.namespace}/fits (queue {queues.local_queue}) to be suspended "
            "by Kueue's webhook at creation",
            observed=f"spec.suspend={created['spec'].get('suspend')}",
            next_step="check Kueue's mutating webhook for batch/v1 Jobs",
        )
    try:
        wl = wait_workload(kube, queues.api, "fits", admitted, "the Workload of Job fits "
                           "to be Admitted")  # fmt: skip
    except WaitTimeout as exc:
        fail(expected=f"Job {kube.namespace}/fits to be admitted by ClusterQueue "
             f"{queues.cluster_queue} (quota cpu: 2, job asks 2)", observed=str(exc),
             next_step=f"kubectl get workloads -n {kube.namespace} -o yaml")  # fmt: skip
    evidence.observe("admission_latency_s", seconds_since(start))
    evidence.object(f"Workload/{kube.namespace}/{wl['metadata']['name']}")
    evidence.observe("quota_reserved", condition(wl, "QuotaReserved"))
    _job_unsuspended(kube, "fits")
    _pods_running(kube, "fits", 2)


@check("kueue.holds-until-quota-frees", requirements=["kueue_admission"])
def test_holds_until_quota_frees(kube: Kube, evidence: Evidence) -> None:
    """A job that does not fit stays suspended, its Workload says why, and it is admitted once
    the job holding the quota is gone."""
    queues = private_queues(kube, {"cpu": "1"})
    kube.apply(queued_job("first", queues.local_queue, hold_s=HOLD_S))
    wait_workload(kube, queues.api, "first", admitted, "the first job to be admitted")
    kube.apply(queued_job("second", queues.local_queue, hold_s=HOLD_S))
    waiting = wait_workload(
        kube, queues.api, "second",
        lambda wl: (condition(wl, "QuotaReserved") or {}).get("status") == "False",
        "the second job's Workload to report why it waits",
    )  # fmt: skip
    reason = pending_reason(waiting)
    evidence.observe("second_waiting_because", reason)
    job = kube.cluster.get(ObjectRef("batch/v1", "Job", "second", kube.namespace)) or {}
    if admitted(waiting) or job.get("spec", {}).get("suspend") is not True:
        fail(
            expected=f"Job {kube.namespace}/second to stay suspended while first holds the only "
            f"cpu of ClusterQueue {queues.cluster_queue}",
            observed=f"suspend={job.get('spec', {}).get('suspend')}, Workload: {reason}",
            next_step="Kueue admitted over quota: check the ClusterQueue's nominalQuota",
        )
    freed = time.monotonic()
    kube.cluster.delete(ObjectRef("batch/v1", "Job", "first", kube.namespace), background=True)
    wait_workload(kube, queues.api, "second", admitted,
                  "the second job to be admitted once the first is gone")  # fmt: skip
    evidence.observe("admitted_after_quota_freed_s", seconds_since(freed))
    _job_unsuspended(kube, "second")


@check("kueue.namespace-selector-enforced", requirements=["kueue_admission"])
def test_namespace_selector_enforced(
    kube: Kube, kaic_settings: Settings, evidence: Evidence
) -> None:
    """A ClusterQueue does not admit jobs from namespaces its selector does not match."""
    queues = private_queues(kube, {"cpu": "4"}, select_namespace=f"{kube.namespace}-other")
    kube.apply(queued_job("outsider", queues.local_queue))
    find = workload_of("outsider")
    try:
        wl = kube.cluster.wait_for(
            queues.api, "Workload", lambda wls: ((w := find(wls)) is not None and admitted(w)
            and w) or None, awaiting="the outsider's Workload to be admitted (it must not be)",
            timeout_s=kaic_settings.observe_window_s, namespace=kube.namespace,
        )  # fmt: skip
    except WaitTimeout:
        workloads = kube.cluster.list_objects(queues.api, "Workload", namespace=kube.namespace)
        current = find(workloads)
        evidence.observe("outsider_waiting_because", pending_reason(current) if current else "")
        return
    fail(
        expected=f"ClusterQueue {queues.cluster_queue} (selecting namespace "
        f"{kube.namespace}-other only) not to admit Job {kube.namespace}/outsider",
        observed=f"Workload {wl['metadata']['name']} Admitted",
        next_step="check the ClusterQueue's namespaceSelector handling in Kueue",
    )
