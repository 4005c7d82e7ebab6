"""Who refused an operator's invalid object: only its own webhook or its CRD's schema count."""

from __future__ import annotations

from conformance.checks.operator import Refusal, denied_by

HOOKS = ["mleaderworkerset.kb.io", "vleaderworkerset.kb.io"]


def test_a_denial_names_the_webhook() -> None:
    said = 'admission webhook "vleaderworkerset.kb.io" denied the request: spec.rollout: Invalid'
    assert denied_by(said, HOOKS) == "vleaderworkerset.kb.io"
    assert denied_by('admission webhook "other.example.com" denied the request', HOOKS) is None


def test_rbac_and_webhook_failures_are_not_validation() -> None:
    rbac = Refusal(403, 'leaderworkersets.leaderworkerset.x-k8s.io is forbidden: User "u" '
                   "cannot create resource", None)  # fmt: skip
    assert not rbac.by_schema
    down = Refusal(500, 'failed calling webhook "vleaderworkerset.kb.io": connection refused', None)
    assert not down.by_schema
    other = Refusal(422, 'admission webhook "x.example.com" denied the request: nope', None)
    assert not other.by_schema


def test_a_schema_refusal_counts() -> None:
    schema = Refusal(422, 'LeaderWorkerSet.leaderworkerset.x-k8s.io "x" is invalid: spec.'
                     "replicas: Invalid value: -1", None)  # fmt: skip
    assert schema.by_schema
