"""Kueue admission checks pass on the sandbox and fail without Kueue, naming what is missing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from conformance import sandbox as sbx
from tests.integration.conftest import BARE, broken
from tests.integration.test_accelerator_checks import run, statuses

pytestmark = pytest.mark.sandbox

KUEUE = [
    "kueue.api-served", "kueue.admits-fitting-job", "kueue.holds-until-quota-frees",
    "kueue.namespace-selector-enforced",
]  # fmt: skip


def test_kueue_admission_passes_on_the_sandbox(sandbox: Any, tmp_path: Path) -> None:
    checks = run(sandbox, tmp_path, "--check", "kueue.*", profile="batch")
    assert statuses(checks) == dict.fromkeys(KUEUE, "passed")
    held = checks["kueue.holds-until-quota-frees"]["evidence"]["observed"]
    assert "insufficient unused quota for cpu" in held["second_waiting_because"]
    outsider = checks["kueue.namespace-selector-enforced"]["evidence"]["observed"]
    assert "doesn't match ClusterQueue selector" in outsider["outsider_waiting_because"]


@pytest.mark.box(without=BARE)
def test_without_kueue_every_admission_check_fails(box: sbx.Sandbox, tmp_path: Path) -> None:
    checks = run(box, tmp_path, "--check", "kueue.*", profile="batch")
    assert statuses(checks) == dict.fromkeys(KUEUE, "failed")
    assert all("Kueue's API (kueue.x-k8s.io" in c["message"] for c in checks.values())


LWS = [
    "lws.api-served", "lws.group-created", "lws.group-restart-on-delete",
    "lws.group-restart-on-failure", "lws.restart-policy-none",
]  # fmt: skip


def test_lws_gang_restart_passes_on_the_sandbox(sandbox: Any, tmp_path: Path) -> None:
    checks = run(sandbox, tmp_path, "--check", "lws.*", profile="batch")
    assert statuses(checks) == dict.fromkeys(LWS, "passed")
    env = checks["lws.group-created"]["evidence"]["observed"]["env_seen"]
    assert env["group-0-2"]["LWS_WORKER_INDEX"] == "2"
    assert checks["lws.group-restart-on-delete"]["evidence"]["observed"]["recovered_s"] > 0


def test_lws_without_group_restart_fails_the_restart_checks(
    sandbox: sbx.Sandbox, tmp_path: Path
) -> None:
    with broken(sandbox, "lws-group-restart") as box:
        checks = run(box, tmp_path, "--check", "lws.*", profile="batch")
    assert statuses(checks) == {
        "lws.api-served": "passed",
        "lws.group-created": "passed",
        "lws.group-restart-on-delete": "failed",
        "lws.group-restart-on-failure": "failed",
        "lws.restart-policy-none": "passed",
    }
    message = checks["lws.group-restart-on-delete"]["message"]
    assert "recreate all 3 pods of group 0 after deleting Pod group-0-1" in message
    assert "pods kept with their old UIDs: ['group-0', 'group-0-2']" in message


@pytest.mark.box(without=BARE)
def test_without_lws_every_lws_check_fails(box: sbx.Sandbox, tmp_path: Path) -> None:
    checks = run(box, tmp_path, "--check", "lws.*", profile="batch")
    assert statuses(checks) == dict.fromkeys(LWS, "failed")
    assert all("LeaderWorkerSet API" in c["message"] for c in checks.values())


GANG = ["gang.fitting-gang-runs", "gang.unfit-gang-never-partial", "gang.waits-for-pods-ready"]


def test_gang_scheduling_passes_on_the_sandbox(sandbox: Any, tmp_path: Path) -> None:
    checks = run(sandbox, tmp_path, "--check", "gang.*", profile="batch")
    assert statuses(checks) == dict.fromkeys(GANG, "passed")
    waiting = checks["gang.waits-for-pods-ready"]["evidence"]["observed"]["next_waiting_because"]
    assert "PodsReady" in waiting


def test_without_wait_for_pods_ready_gangs_are_not_all_or_nothing(
    sandbox: sbx.Sandbox, tmp_path: Path
) -> None:
    with broken(sandbox, "kueue-no-wait-for-pods-ready") as box:
        checks = run(box, tmp_path, "--check", "gang.*", profile="batch")
    assert checks["gang.waits-for-pods-ready"]["status"] == "failed"
    assert "/next to wait while the admitted gang" in checks["gang.waits-for-pods-ready"]["message"]
    assert checks["gang.fitting-gang-runs"]["status"] == "passed"


@pytest.mark.box(without=BARE)
def test_without_kueue_no_gang_scheduler(box: sbx.Sandbox, tmp_path: Path) -> None:
    checks = run(box, tmp_path, "--check", "gang.*", profile="batch")
    assert statuses(checks) == dict.fromkeys(GANG, "failed")


OPERATOR = [
    "operator.crds-established", "operator.controller-ready", "operator.webhooks-ready",
    "operator.invalid-rejected", "operator.valid-reconciled",
]  # fmt: skip


def test_operators_pass_on_the_sandbox(sandbox: Any, tmp_path: Path) -> None:
    checks = run(sandbox, tmp_path, "--check", "operator.*")
    assert statuses(checks) == dict.fromkeys(OPERATOR, "passed")
    ready = checks["operator.controller-ready"]["evidence"]["observed"]
    # KubeRay and Trainer run in the cluster as their manifests install them; Kueue and LWS run
    # as processes
    assert ready["kuberay"] == {"Deployment/ray-system/kuberay-operator": "1/1 ready"}
    assert ready["kubeflow-trainer"] == {
        "Deployment/kubeflow-system/kubeflow-trainer-controller-manager": "1/1 ready"}  # fmt: skip
    assert sorted(s.split(":")[0] for s in ready["outside_the_cluster"]) == ["kueue", "lws"]
    assert set(checks["operator.crds-established"]["evidence"]["observed"]["crds"]) == {
        "lws", "kueue", "kuberay", "kubeflow-trainer",
    }  # fmt: skip
    refused = checks["operator.invalid-rejected"]["evidence"]["observed"]
    assert (
        'admission webhook "vleaderworkerset.kb.io" denied the request' in refused["lws"]["message"]
    )
    assert 'admission webhook "vresourceflavor.kb.io" denied' in refused["kueue"]["message"]
    assert refused["lws"]["denied_by"] == "vleaderworkerset.kb.io"
    assert refused["kuberay"]["denied_by"] == "vraycluster.kb.io"
    assert "worker group names must be unique" in refused["kuberay"]["message"]
    assert refused["kubeflow-trainer"]["denied_by"] == "validator.trainjob.trainer.kubeflow.org"
    assert "specified trainingRuntime must be created before the TrainJob is created" in (
        refused["kubeflow-trainer"]["message"])  # fmt: skip
    answered = checks["operator.webhooks-ready"]["evidence"]["observed"]
    assert 'admission webhook "vleaderworkerset.kb.io" denied' in answered["lws"]["answered"]
    assert 'admission webhook "vraycluster.kb.io" denied' in answered["kuberay"]["answered"]
    reconciled = checks["operator.valid-reconciled"]["evidence"]["observed"]["reconciled"]
    assert "Available=True" in reconciled["lws"]["progress"]
    assert "Active=True" in reconciled["kueue"]["progress"]
    assert reconciled["kuberay"]["progress"].startswith("state ready, head pod ")
    assert "1 worker(s) ready; condition RayClusterProvisioned=True" in (
        reconciled["kuberay"]["progress"])  # fmt: skip
    # a TrainJob -> its JobSet -> a Job -> a pod that ran (the agent) and succeeded
    assert reconciled["kubeflow-trainer"]["progress"] == (
        "condition Complete=True (AllJobsCompleted); jobs {'node': '1 succeeded'}")  # fmt: skip


def test_an_operator_that_is_down_fails_every_step_but_its_crds(
    sandbox: sbx.Sandbox, tmp_path: Path
) -> None:
    with broken(sandbox, "kuberay-operator-down") as box:
        checks = run(box, tmp_path, "--check", "operator.*", "--operator", "kuberay")
    assert statuses(checks) == {**dict.fromkeys(OPERATOR, "failed"),
                                "operator.crds-established": "passed"}  # fmt: skip
    assert "Deployment/ray-system/kuberay-operator (kuberay): 0/0 ready" in (
        checks["operator.controller-ready"]["message"])  # fmt: skip
    assert "kuberay: an invalid object (a RayCluster with two worker groups of one name) was " \
        "not denied by its webhooks" in checks["operator.webhooks-ready"]["message"]  # fmt: skip
    for check_id in ("operator.invalid-rejected", "operator.valid-reconciled"):
        assert 'failed calling webhook "vraycluster.kb.io"' in checks[check_id]["message"]
    assert "a valid RayCluster (kuberay) to be admitted" in (
        checks["operator.valid-reconciled"]["message"])  # fmt: skip


def test_an_operator_whose_webhook_is_down_fails(sandbox: sbx.Sandbox, tmp_path: Path) -> None:
    with broken(sandbox, "lws-webhook-down") as box:
        checks = run(box, tmp_path, "--check", "operator.*", "--operator", "lws")
    assert checks["operator.crds-established"]["status"] == "passed"
    for check_id in ("operator.invalid-rejected", "operator.valid-reconciled"):
        assert checks[check_id]["status"] == "failed", check_id
        assert 'failed calling webhook "mleaderworkerset.kb.io"' in checks[check_id]["message"]
    assert "lws: its webhook does not answer" in checks["operator.invalid-rejected"]["message"]
    # the webhook is registered with a CA bundle, but nothing answers it
    ready = checks["operator.webhooks-ready"]
    assert ready["status"] == "failed"
    assert "lws: an invalid object (rolloutStrategy maxUnavailable 0 with maxSurge 0) was not " \
        "denied by its webhooks" in ready["message"]  # fmt: skip
    assert "failed calling webhook" in ready["message"]
    assert "a valid LeaderWorkerSet (lws)" in checks["operator.valid-reconciled"]["message"]


def test_an_operator_that_admits_but_never_reconciles_fails_valid_reconciled(
    sandbox: sbx.Sandbox, tmp_path: Path
) -> None:
    """Its webhook answers (the invalid object is refused), but the RayCluster it admitted in
    the check's namespace is never reconciled: the failure is at reconciliation itself."""
    with broken(sandbox, "kuberay-watches-own-namespace") as box:
        checks = run(box, tmp_path, "--check", "operator.*", "--operator", "kuberay",
                     "--timeout-scale", "0.25")  # fmt: skip
    assert statuses(checks) == {**dict.fromkeys(OPERATOR, "passed"),
                                "operator.valid-reconciled": "failed"}  # fmt: skip
    message = checks["operator.valid-reconciled"]["message"]
    assert "waiting for kuberay to reconcile RayCluster" in message
    assert "its head and worker pods to be created and Ready" in message


@pytest.mark.box(without=BARE)
def test_operators_that_are_not_installed(box: sbx.Sandbox, tmp_path: Path) -> None:
    named = run(box, tmp_path / "named", "--check", "operator.*", "--operator", "lws")
    assert statuses(named) == dict.fromkeys(OPERATOR, "failed")
    for check in named.values():
        assert (
            "missing: CustomResourceDefinition/leaderworkersets.leaderworkerset.x-k8s.io"
            in (check["message"])
        )
    # none installed: robust_controller's MUST fails, it is never not-applicable
    detected = run(box, tmp_path / "auto", "--check", "operator.*")
    assert statuses(detected) == dict.fromkeys(OPERATOR, "failed")
    assert detected["operator.crds-established"]["message"].startswith(
        "expected at least one AI operator kaic can verify installed (lws, kueue"
    )
