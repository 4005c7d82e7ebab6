"""cluster-autoscaling.accelerator-group against the sandbox's real Karpenter (KWOK provider): it
passes by a real scale-up and scale-down, fails naming the step when the NodePool can add no
node or never removes one, and is not applicable only where no autoscaler runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conformance import sandbox as sbx
from conformance.sandbox import autoscaler
from tests.integration.conftest import BARE, admin_of, broken
from tests.integration.test_accelerator_checks import run, statuses

pytestmark = pytest.mark.sandbox
CHECK = "cluster-autoscaling.accelerator-group"
GROUP = f"karpenter.sh/nodepool={autoscaler.NODEPOOL}"
# Karpenter adds a node within seconds here and removes an empty one within about 30 s; half a
# minute each way shows a fault (the scale-down fault only needs the scale-up to succeed).
SHORT = ("--autoscaler-timeout", "30")


def test_karpenter_adds_a_gpu_node_for_the_pod_that_cannot_run_and_removes_it(
    sandbox: sbx.Sandbox, tmp_path: Path
) -> None:
    checks = run(sandbox, tmp_path, "--check", "cluster-autoscaling.*")
    assert statuses(checks) == {CHECK: "passed"}, checks[CHECK]["message"]
    seen = checks[CHECK]["evidence"]["observed"]
    assert seen["autoscaler"] == "Karpenter (karpenter.sh/v1 NodePool)"
    assert seen["node_group"] == GROUP
    assert seen["nodes_before"] == {}
    assert seen["sizing"]["pods"] == 1
    (added,) = seen["nodes_added"]  # one node, by name, with a UID that did not exist before
    assert seen["pods"] == {"fill-0": added}
    assert seen["unschedulable_first"] == ["fill-0"]
    counts = [h["nodes"] for h in seen["node_history"]]
    assert counts[0] == 0
    assert max(counts) == 1
    assert counts[-1] == 0
    assert admin_of(sandbox).list_objects("v1", "Node", label_selector=GROUP) == []


def test_a_nodepool_that_may_not_grow_fails_at_the_scale_up(
    sandbox: sbx.Sandbox, tmp_path: Path
) -> None:
    with broken(sandbox, "autoscaler-no-growth") as box:
        checks = run(box, tmp_path, "--check", "cluster-autoscaling.*", *SHORT)
    assert statuses(checks) == {CHECK: "failed"}
    message = checks[CHECK]["message"]
    assert message.startswith(f"expected the autoscaler to add a node to {GROUP} for the pod(s)")
    assert "observed fill-0 still not running after" in message
    # Karpenter's own event on the pod says why
    assert "FailedScheduling from karpenter: " in message
    assert "all available instance types exceed limits for nodepool" in message
    assert "the NodePool's limits" in message


def test_a_nodepool_that_never_removes_a_node_fails_at_the_scale_down(
    sandbox: sbx.Sandbox, tmp_path: Path
) -> None:
    with broken(sandbox, "autoscaler-no-scale-down") as box:
        checks = run(box, tmp_path, "--check", "cluster-autoscaling.*", *SHORT)
        assert statuses(checks) == {CHECK: "failed"}
        message = checks[CHECK]["message"]
        assert message.startswith(f"expected the nodes the autoscaler added to {GROUP} to be "
                                  "removed once their pods are gone (back to 0 nodes)")  # fmt: skip
        assert "still there after" in message
        assert "consolidateAfter and budgets" in message
        assert len(admin_of(box).list_objects("v1", "Node", label_selector=GROUP)) == 1
    # mended: the budget allows it again, and Karpenter removed the node before `mend` returned
    assert admin_of(sandbox).list_objects("v1", "Node", label_selector=GROUP) == []


@pytest.mark.box(without=BARE)
def test_without_an_autoscaler_cluster_autoscaling_is_not_applicable(
    box: sbx.Sandbox, tmp_path: Path
) -> None:
    checks = run(box, tmp_path, "--check", "cluster-autoscaling.*")
    assert statuses(checks) == {CHECK: "skipped"}
    assert checks[CHECK]["condition"] == "no-autoscaler"
    results: dict[str, Any] = json.loads((tmp_path / "results.json").read_text())
    (requirement,) = [r for r in results["requirements"] if r["id"] == "cluster_autoscaling"]
    assert requirement["status"] == "not-applicable"
    assert "no-autoscaler" in requirement["not_applicable_when"]
    assert "no cluster autoscaler found" in requirement["reason"]
