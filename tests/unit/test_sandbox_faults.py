"""The sandbox's policy faults: each has its admission objects and a way to tell, from the API
server's answers, that it is in force; the route-rewriting policy is valid for the CRD it
changes (checked against a real API server in the integration tests)."""

from __future__ import annotations

from pathlib import Path

from conformance.sandbox import live_faults, scheduler
from conformance.sandbox.faults import FAULTS, policy_docs


def test_every_policy_fault_has_objects_and_a_probe() -> None:
    policy = [name for name, fault in FAULTS.items() if fault.realized_by == "policy"]
    assert "routes-strip-prefill-header" in policy
    for name in policy:
        kinds = [d["kind"] for d in policy_docs(name)]
        assert len(kinds) == 2, (name, kinds)
        assert kinds[1] == f"{kinds[0]}Binding", (name, kinds)
        assert name in live_faults.POLICY_IN_FORCE


def test_the_route_policy_removes_the_prefill_header_on_creation_only() -> None:
    policy, binding = policy_docs("routes-strip-prefill-header")
    rule = policy["spec"]["matchConstraints"]["resourceRules"][0]
    assert rule["resources"] == ["httproutes"]
    assert rule["operations"] == ["CREATE"]
    assert "x-prefiller-host-port" in policy["spec"]["variables"][0]["expression"]
    assert binding["spec"]["policyName"] == policy["metadata"]["name"]


def test_the_scheduler_fault_disables_only_the_resource_fit_filter() -> None:
    healthy = scheduler.config(Path("k"), [])
    assert healthy["profiles"] == [{"schedulerName": "default-scheduler"}]
    assert healthy["clientConnection"] == {"kubeconfig": "k"}
    broken = scheduler.config(Path("k"), [scheduler.IGNORES_FIT])
    assert broken["profiles"][0]["plugins"] == {
        "filter": {"disabled": [{"name": "NodeResourcesFit"}]}}  # fmt: skip
    assert FAULTS[scheduler.IGNORES_FIT].realized_by == "scheduler"
