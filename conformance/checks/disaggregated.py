"""Disaggregated inference: where the platform runs prefill and decode in separate pods (llm-d's
`llm-d.ai/role` labels), one request sent through the gateway carries its request id through a
prefill pod and a decode pod, as both pods' logs show. Not applicable where no such deployment
exists: kaic cannot create the platform's disaggregation mechanism itself."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from conformance.checks import _gateway as gw
from conformance.checks import _status as st
from conformance.checks.registry import check
from conformance.cluster import Cluster
from conformance.evidence import Evidence
from conformance.failures import fail, not_applicable
from conformance.fixtures import Kube
from conformance.settings import Settings

Obj = dict[str, Any]
ROLE_LABEL = "llm-d.ai/role"
MODEL_LABEL = "llm-d.ai/model"
ROLES = ("prefill", "decode")


def disaggregated_pods(cluster: Cluster) -> dict[str, list[Obj]]:
    """Ready pods by role ("prefill", "decode"; llm-d's "prefill-decode" counts as neither)."""
    by_role: dict[str, list[Obj]] = defaultdict(list)
    for pod in cluster.list_objects("v1", "Pod", label_selector=ROLE_LABEL):
        role = pod["metadata"]["labels"].get(ROLE_LABEL, "")
        if role in ROLES and st.holds(pod, "Ready"):
            by_role[role].append(pod)
    return dict(by_role)


@check("disaggregated-inference.prefill-decode", requirements=["disaggregated_inference"])
def test_prefill_decode(kube: Kube, kaic_settings: Settings, evidence: Evidence) -> None:
    """One request id reaches both a prefill pod and a decode pod of the platform's
    disaggregated deployment."""
    by_role = disaggregated_pods(kube.cluster)
    evidence.observe("pods", {r: [f"{p['metadata']['namespace']}/{p['metadata']['name']}"
                                  for p in by_role.get(r, [])] for r in ROLES})  # fmt: skip
    if not all(by_role.get(r) for r in ROLES):
        not_applicable(
            "no-disaggregated-serving",
            f"no disaggregated serving found: no Ready pods labelled {ROLE_LABEL}=prefill and "
            "=decode (llm-d's convention) in any namespace",
        )
    if not kaic_settings.gateway:
        fail(expected="--gateway NAMESPACE/NAME: the Gateway that routes to the platform's "
             "prefill/decode deployment", observed="no --gateway given",
             next_step="rerun with --gateway")  # fmt: skip
    gateway = gw.gateway_under_test(kube, kaic_settings, evidence)
    model = by_role["decode"][0]["metadata"]["labels"].get(MODEL_LABEL, "")
    report = gw.traffic(kube, gateway, "pd-client", count=1, models=[model] if model else [],
                        model_header=kaic_settings.model_header)  # fmt: skip
    gw.require_all_ok(report, gateway, "the disaggregated deployment")
    request_id = f"{report['run']}-0"
    seen = {
        role: [p["metadata"]["name"] for p in pods
               if request_id in kube.cluster.pod_logs(p["metadata"]["name"],
                                                      p["metadata"]["namespace"])]
        for role, pods in by_role.items()
    }  # fmt: skip
    evidence.observe("request", {"x-request-id": request_id, "logged_by": seen})
    if not all(seen.get(r) for r in ROLES):
        fail(
            expected=f"request {request_id} to appear in the logs of a prefill pod and of a "
            "decode pod",
            observed=f"logged by {seen}",
            next_step="check that the routing sidecar forwards x-request-id and that the "
            "model servers log request ids",
        )
