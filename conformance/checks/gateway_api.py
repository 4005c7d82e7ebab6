"""AI inference through the Gateway API: a Gateway of the platform's own implementation gets an
address and is Programmed, and real OpenAI-style requests sent through it from inside the
cluster are split by weight between two model servers and routed by model name."""

from __future__ import annotations

from conformance.checks import _gateway as gw
from conformance.checks._gateway import GATEWAY_PODS
from conformance.checks._stats import tolerance
from conformance.checks.registry import check
from conformance.evidence import Evidence
from conformance.failures import fail
from conformance.fixtures import Kube
from conformance.settings import Settings

WEIGHTS = {"backend-a": 70, "backend-b": 30}
# 800 requests: a correct gateway fails 0.08 % of runs (FALSE_FAIL at most 0.1 %); one 10 points
# off the weights (60/40 or 80/20) passes 0.4 % or 0.08 % of runs (docs/results.md).
SPLIT_REQUESTS = 800
FALSE_FAIL = 0.001
SPLIT_SHARE = WEIGHTS["backend-a"] / sum(WEIGHTS.values())
SPLIT_TOLERANCE = tolerance(SPLIT_REQUESTS, SPLIT_SHARE, FALSE_FAIL)
MODELS = {"kaic-alpha": "alpha", "kaic-beta": "beta"}  # model -> backend serving it
ROUTED_REQUESTS = 60


@check("gateway-api.gateway-programmed", requirements=["ai_inference"], pod_security=GATEWAY_PODS)
def test_gateway_programmed(kube: Kube, kaic_settings: Settings, evidence: Evidence) -> None:
    """The Gateway API is served, a GatewayClass is Accepted, and a Gateway gets an address and
    is Programmed."""
    gw.gateway_under_test(kube, kaic_settings, evidence)


@check("gateway-api.weighted-split", requirements=["ai_inference"], pod_security=GATEWAY_PODS)
def test_weighted_split(kube: Kube, kaic_settings: Settings, evidence: Evidence) -> None:
    """An HTTPRoute splitting 70/30 between two model servers is Accepted with its references
    resolved, and 800 completions through the gateway split within binomial tolerance."""
    gateway = gw.gateway_under_test(kube, kaic_settings, evidence)
    served_by = {name: gw.backend(kube, name)[0] for name in WEIGHTS}
    kube.apply(gw.http_route("weighted", gateway, [gw.weighted_rule(WEIGHTS)]))
    gw.wait_parent_conditions(kube, gw.GATEWAY_API, "HTTPRoute", "weighted", gateway,
                              {"Accepted": "True", "ResolvedRefs": "True"})  # fmt: skip
    report = gw.traffic(kube, gateway, "split-client", count=SPLIT_REQUESTS)
    gw.require_all_ok(report, gateway, "backend-a or backend-b")
    counts = {name: report["pods"].get(pod, 0) for name, pod in served_by.items()}
    evidence.observe("split", {"weights": WEIGHTS, "counts": counts})
    expected_a = SPLIT_REQUESTS * SPLIT_SHARE
    if abs(counts["backend-a"] - expected_a) > SPLIT_TOLERANCE or sum(counts.values()) != (
        SPLIT_REQUESTS
    ):
        fail(
            expected=f"{SPLIT_REQUESTS} requests split {WEIGHTS} by the HTTPRoute's weights: "
            f"backend-a {expected_a:.0f} ± {SPLIT_TOLERANCE} (a correct gateway falls outside "
            f"in under {FALSE_FAIL:.1%} of runs)",
            observed=f"served: {counts} (by pod: {report['pods']})",
            next_step=f"kubectl -n {kube.namespace} get httproute weighted -o yaml; the "
            "gateway's route configuration (weights on its backends)",
        )


@check("gateway-api.header-routing", requirements=["ai_inference"], pod_security=GATEWAY_PODS)
def test_header_routing(kube: Kube, kaic_settings: Settings, evidence: Evidence) -> None:
    """Requests naming two models (in the body, and in the header the platform routes on,
    `--model-header`) each reach only the model server of that model."""
    gateway = gw.gateway_under_test(kube, kaic_settings, evidence)
    header = kaic_settings.model_header
    pod_of = {model: gw.backend(kube, backend, model=model)[0]
              for model, backend in MODELS.items()}  # fmt: skip
    kube.apply(gw.http_route("by-model", gateway, gw.model_rules(header, MODELS)))
    gw.wait_parent_conditions(kube, gw.GATEWAY_API, "HTTPRoute", "by-model", gateway,
                              {"Accepted": "True", "ResolvedRefs": "True"})  # fmt: skip
    report = gw.traffic(kube, gateway, "model-client", count=ROUTED_REQUESTS,
                        models=list(MODELS), model_header=header)  # fmt: skip
    evidence.observe("routing", {"header": header, "served_by": report["pods_by_model"]})
    gw.require_all_ok(report, gateway, "the server of the model asked for")
    wrong = {model: counts for model, counts in report["pods_by_model"].items()
             if set(counts) != {pod_of[model]}}  # fmt: skip
    if wrong or set(report["pods_by_model"]) != set(MODELS):
        fail(
            expected=f"each model's requests (header {header}) served only by its own server "
            f"({pod_of})",
            observed=f"served: {report['pods_by_model']}",
            next_step=f"kubectl -n {kube.namespace} get httproute by-model -o yaml",
        )
