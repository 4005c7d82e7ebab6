"""What a wait that timed out says of the objects it watched: the scheduler's reason for a pod
that stays Pending, whether a claim was allocated."""

from __future__ import annotations

from conformance.cluster.wait import describe

PENDING = {
    "kind": "Pod",
    "metadata": {"name": "split"},
    "status": {
        "phase": "Pending",
        "conditions": [{
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": "0/6 nodes are available: 6 cannot allocate all claims.",
        }],
    },
}  # fmt: skip


def test_a_pending_pod_says_why() -> None:
    assert describe(PENDING) == (
        "Pod/split(phase=Pending, PodScheduled=False "
        "[Unschedulable: 0/6 nodes are available: 6 cannot allocate all claims.])"
    )


def test_true_conditions_stay_short_and_claims_say_if_allocated() -> None:
    ready = {"kind": "Pod", "metadata": {"name": "p"},
             "status": {"phase": "Running", "conditions": [
                 {"type": "Ready", "status": "True", "reason": "x", "message": "y"}]}}  # fmt: skip
    assert describe(ready) == "Pod/p(phase=Running, Ready=True)"
    claim = {"kind": "ResourceClaim", "metadata": {"name": "c"}, "status": {}}
    assert describe(claim) == "ResourceClaim/c(not allocated)"
    claim["status"] = {"allocation": {"devices": {}}}
    assert describe(claim) == "ResourceClaim/c(allocated)"
